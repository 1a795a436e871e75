package outergate

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// managedClient is a client managed through the admin API, as a
// ClientStore keeps it: the same per-client fields as a Caddyfile client
// (the embedded Client, whose JSON it reuses, so that every per-client
// setting works for both), its secret's SHA-256 hash, the hashes of
// rotated-out secrets still in their grace period, and its history.
type managedClient struct {
	Client

	// Grace are previous secrets that keep working until their Until.
	Grace []graceHash `json:"grace,omitempty"`

	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	RotatedAt *time.Time `json:"rotated_at,omitempty"`

	// raw is the stored JSON this record was read from or written as, so
	// that a compare-and-swap compares what is stored.
	raw []byte
}

// graceHash is a rotated-out secret's hash and the end of its grace.
type graceHash struct {
	Hash  string    `json:"hash"`
	Until time.Time `json:"until"`
}

// maxGraceHashes bounds the rotated-out secrets kept per client; rotating
// more often than that within a grace period drops the oldest first.
const maxGraceHashes = 4

// maxGrace bounds a rotation's grace period.
const maxGrace = 30 * 24 * time.Hour

// maxClientIDLen bounds a managed client id: it is part of a storage key,
// a Redis key and log lines.
const maxClientIDLen = 128

// checkClientID says, in words an operator can act on, what is wrong with
// the id of a client to be managed; nil if nothing. The id becomes part of
// a file name (memory store) or a Redis key, hence the narrow alphabet.
func checkClientID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("id is required")
	case len(id) > maxClientIDLen:
		return fmt.Errorf("id is %d bytes long; at most %d", len(id), maxClientIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("id is not valid UTF-8")
	case strings.ContainsFunc(id, unicode.IsControl):
		return fmt.Errorf("id contains a control character")
	case !validClientID.MatchString(id):
		return fmt.Errorf("id %q: use letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// checkScope checks a client's space-separated scope: RFC 6749 §3.3 scope
// tokens (printable ASCII but for '"' and '\'), single spaces between.
func checkScope(scope string) error {
	if scope == "" {
		return nil
	}
	for s := range strings.SplitSeq(scope, " ") {
		if s == "" {
			return fmt.Errorf("scope %q: separate scopes by single spaces", scope)
		}
		for i := 0; i < len(s); i++ {
			if b := s[i]; b < 0x21 || b > 0x7e || b == '"' || b == '\\' {
				return fmt.Errorf("scope %q: a scope holds printable ASCII characters but '\"' and '\\'", scope)
			}
		}
	}
	return nil
}

// graceVerifier accepts a rotated-out secret until its grace ends.
type graceVerifier struct {
	secretVerifier
	until time.Time
}

func (v graceVerifier) verify(secret string) bool {
	ok := v.secretVerifier.verify(secret)
	return ok && time.Now().Before(v.until)
}

// provisionManaged turns a stored managed client into a Client of this
// handler: the same provisioning as a configured client (defaults from the
// handler), plus the grace secrets. Its tokens are bound (binding.go) to
// the client's creation rather than to a secret: a rotation leaves them
// valid until they expire, and a client created again under a deleted id
// inherits none of them.
func (h *Handler) provisionManaged(rec *managedClient) (*Client, error) {
	c := rec.Client
	c.SecretHashes = append([]string(nil), rec.SecretHashes...)
	c.verifiers, c.bindings = nil, nil
	if err := h.provisionClient(&c, caddy.NewReplacer()); err != nil {
		return nil, err
	}
	if c.ttl < time.Second {
		return nil, fmt.Errorf("client %q: token_ttl must be at least 1s, got %s", c.ID, c.ttl)
	}
	for i, g := range rec.Grace {
		v, err := parseSecretHash(g.Hash)
		if err != nil {
			return nil, fmt.Errorf("client %q: grace hash %d: %w", c.ID, i, err)
		}
		c.verifiers = append(c.verifiers, graceVerifier{v, g.Until})
	}
	binding := tokenBinding(h.Issuer, c.ID, "managed client created "+rec.CreatedAt.UTC().Format(time.RFC3339Nano))
	c.bindings = make([]string, len(c.verifiers))
	for i := range c.bindings {
		c.bindings[i] = binding
	}
	return &c, nil
}

// managedView is one handler's view of the managed clients of its store:
// the ClientStore's records, provisioned for this handler on first use
// and again whenever the record changes. A lookup costs two map reads,
// whatever the number of clients.
type managedView struct {
	h       *Handler
	store   ClientStore
	cache   sync.Map // id -> *viewEntry
	regKey  string   // the store's entry in clientStores
	release func() error
}

// viewEntry is a provisioned record; rec tells whether it is current.
type viewEntry struct {
	rec    *managedClient
	client *Client
}

// get returns the managed client id provisioned for the handler, or nil.
func (v *managedView) get(id string) *Client {
	if v == nil {
		return nil
	}
	rec := v.store.Lookup(id)
	if rec == nil {
		v.cache.Delete(id)
		return nil
	}
	if e, ok := v.cache.Load(id); ok && e.(*viewEntry).rec == rec {
		return e.(*viewEntry).client
	}
	c, err := v.h.provisionManaged(rec)
	if err != nil {
		// Checked when it was written; a record that no longer provisions
		// (changed code, edited storage) cannot authenticate.
		v.h.logger.Error("managed client unusable", zap.String("client_id", id), zap.Error(err))
		return nil
	}
	v.cache.Store(id, &viewEntry{rec: rec, client: c})
	return c
}

// provisionManagedClients gives the handler the managed clients of its
// token store, and the authenticator and protector with it.
func (h *Handler) provisionManagedClients(ctx caddy.Context) error {
	store, key, err := clientStoreFor(ctx, h.store, h.logger)
	if err != nil {
		return fmt.Errorf("managed clients: %w", err)
	}
	h.managed = &managedView{h: h, store: store, regKey: key, release: sync.OnceValue(func() error {
		_, err := clientStores.Delete(key)
		return err
	})}
	h.auth.managed = h.managed
	h.protect.managed = h.managed
	if h.limits != nil {
		h.limits.managed = h.managed
	}
	return nil
}

// releaseManagedClients drops the handler's hold on its ClientStore, once;
// h.managed stays, since the admin API may still be reading it.
func (h *Handler) releaseManagedClients() error {
	if h.managed == nil {
		return nil
	}
	return h.managed.release()
}

// lookupClient finds a client by id: configured first (the config wins
// over a managed client of the same id), then managed.
func lookupClient(configured map[string]*Client, managed *managedView, id string) *Client {
	if c, ok := configured[id]; ok {
		return c
	}
	return managed.get(id)
}

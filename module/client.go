package outergate

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"
)

// Client is one integrator allowed to obtain tokens.
type Client struct {
	// ID is the client_id the integrator presents.
	ID string `json:"id"`

	// SecretHashes are the hashes of the client's secret: `sha256:<64 hex>`
	// (SHA-256 of a high-entropy secret, such as the one `caddy outergate
	// new-client` generates) or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`).
	// Any one of them authenticates, which allows secret rotation.
	// Placeholders such as {env.CLIENT_HASH} are expanded.
	SecretHashes []string `json:"secret_hashes"`

	// Scope is the space-separated set of scopes this client may hold.
	// Default: the handler's scope.
	Scope string `json:"scope,omitempty"`

	// AuthMethod is how the client must authenticate on the token,
	// revocation and introspection endpoints: "basic" (HTTP Basic, RFC 8414
	// client_secret_basic), "post" (client_id and client_secret in the body,
	// client_secret_post) or "both". The other method is refused with 401
	// invalid_client (23020). Default: the handler's auth_method, "both".
	AuthMethod string `json:"auth_method,omitempty"`

	// Introspect is which tokens the client may introspect: "own" (its
	// own; any other token is {"active": false}) or "any" (every client's,
	// answered with sub, iss and nbf too: the role of a resource server,
	// RFC 7662). Default: "own".
	Introspect string `json:"introspect,omitempty"`

	// TokenTTL is the lifetime of this client's tokens (`expires_in`).
	// Default: the handler's token_ttl.
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`

	// RateLimit is this client's rate limit on protected requests;
	// {"off": true} for none. Default: the handler's rate_limit.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Quota is this client's request quota on protected requests;
	// {"off": true} for none. Default: the handler's quota.
	Quota *Quota `json:"quota,omitempty"`

	// MaxInFlight is how many protected requests of this client one
	// instance proxies at once; -1 for no cap. Default: 0, the handler's
	// max_in_flight.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	verifiers     []secretVerifier
	bindings      []string // per verifier: the binding of tokens issued with it (binding.go)
	scopes        []string
	ttl           time.Duration
	policy        *policy     // rate limit, quota, in-flight cap (ratelimit.go)
	auth          authMethods // parsed AuthMethod
	introspectAny bool        // Introspect is "any"
	// decoyEquivalents is how many of the verifiers are bcrypt at the
	// highest configured cost (failcost.go).
	decoyEquivalents int
	// decoyCost is that highest configured bcrypt cost, the decoy's (0
	// when no client has a bcrypt hash).
	decoyCost int
}

// secretVerifier checks a presented secret against one stored hash.
type secretVerifier interface {
	verify(secret string) bool
}

// sha256Verifier compares SHA-256(secret) in constant time.
type sha256Verifier [sha256.Size]byte

func (v sha256Verifier) verify(secret string) bool {
	sum := sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(sum[:], v[:]) == 1
}

// bcryptVerifier checks a bcrypt hash (constant time by construction).
// Like Caddy's basic_auth, it remembers secrets that matched, as SHA-256,
// so that a client asking for tokens often pays bcrypt's cost once; a wrong
// secret always pays it. The memory is bounded: bcrypt reads only the first
// 72 bytes, so one hash can match many secrets.
type bcryptVerifier struct {
	hash []byte
	cost int // bcrypt.Cost of hash
	mu   sync.Mutex
	ok   map[[sha256.Size]byte]struct{}
}

// maxBcryptCache bounds the remembered matches of one bcrypt hash.
const maxBcryptCache = 16

func newBcryptVerifier(hash []byte) *bcryptVerifier {
	cost, _ := bcrypt.Cost(hash)
	return &bcryptVerifier{hash: hash, cost: cost, ok: make(map[[sha256.Size]byte]struct{})}
}

func (v *bcryptVerifier) verify(secret string) bool {
	ok, _ := v.check(secret)
	return ok
}

// check is verify, and whether bcrypt ran in full (ran is false when a
// remembered match answered).
func (v *bcryptVerifier) check(secret string) (ok, ran bool) {
	sum := sha256.Sum256([]byte(secret))
	v.mu.Lock()
	_, hit := v.ok[sum]
	v.mu.Unlock()
	if hit {
		return true, false
	}
	if bcrypt.CompareHashAndPassword(v.hash, []byte(secret)) != nil {
		return false, true
	}
	v.mu.Lock()
	if len(v.ok) < maxBcryptCache {
		v.ok[sum] = struct{}{}
	}
	v.mu.Unlock()
	return true, true
}

// sha256Prefix marks a SHA-256 secret hash in the configuration.
const sha256Prefix = "sha256:"

// secretHash is the configuration form of a secret's SHA-256 hash, which
// parseSecretHash reads back.
func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return sha256Prefix + hex.EncodeToString(sum[:])
}

// parseSecretHash turns a configured hash into a verifier. The error never
// repeats the hash.
func parseSecretHash(s string) (secretVerifier, error) {
	switch {
	case strings.HasPrefix(s, sha256Prefix):
		raw, err := hex.DecodeString(strings.TrimPrefix(s, sha256Prefix))
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("sha256 secret hash must be sha256:<64 hex digits>")
		}
		var v sha256Verifier
		copy(v[:], raw)
		return v, nil
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("malformed bcrypt secret hash: %v", err)
		}
		return newBcryptVerifier([]byte(s)), nil
	default:
		return nil, fmt.Errorf("unsupported secret hash: want sha256:<hex> or a bcrypt hash ($2a$, $2b$, $2y$)")
	}
}

// decoyVerifier returns a verifier of the most expensive kind configured,
// checked against when the client is unknown, so that an unknown client
// costs the same work as a wrong secret.
func decoyVerifier(clients []Client) (secretVerifier, error) {
	cost := 0
	for _, c := range clients {
		for _, v := range c.verifiers {
			if b, ok := v.(*bcryptVerifier); ok {
				if n, err := bcrypt.Cost(b.hash); err == nil && n > cost {
					cost = n
				}
			}
		}
	}
	if cost == 0 {
		return sha256Verifier(sha256.Sum256([]byte(rand.Text()))), nil
	}
	// Hashing a bcrypt decoy costs ~50 ms; one per cost serves every
	// config load, so that a reload is as quick as stock Caddy's.
	val, _, err := decoys.LoadOrNew(decoyKey(cost), func() (caddy.Destructor, error) {
		h, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
		if err != nil {
			return nil, fmt.Errorf("generating decoy hash: %w", err)
		}
		return bcryptDecoy{newBcryptVerifier(h)}, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(bcryptDecoy).bcryptVerifier, nil
}

// decoys holds the bcrypt decoy hashes by cost across config loads.
var decoys = caddy.NewUsagePool()

func decoyKey(cost int) string { return fmt.Sprintf("decoy/bcrypt/%d", cost) }

// releaseDecoy drops a config's hold on the decoy of v, if v is one.
func releaseDecoy(v secretVerifier) {
	if b, ok := v.(*bcryptVerifier); ok {
		if cost, err := bcrypt.Cost(b.hash); err == nil {
			_, _ = decoys.Delete(decoyKey(cost))
		}
	}
}

// bcryptDecoy is the UsagePool value of a decoy; nothing to destruct.
type bcryptDecoy struct{ *bcryptVerifier }

func (bcryptDecoy) Destruct() error { return nil }

// authenticate checks a secret against every hash of the client; all are
// tried so that timing does not tell which one matched. binding is that of
// the first hash that matched (binding.go).
func (c *Client) authenticate(secret string) (binding string, ok bool) {
	binding, ok, _ = c.authenticatePaid(secret)
	return binding, ok
}

// authenticatePaid is authenticate, and paid: how many of the client's
// hashes at the decoy's cost were compared in full (not answered by the
// match cache), the part of a failure's work (failcost.go) the check did.
func (c *Client) authenticatePaid(secret string) (binding string, ok bool, paid int) {
	for i, v := range c.verifiers {
		var match bool
		if b, isBcrypt := v.(*bcryptVerifier); isBcrypt {
			var ran bool
			match, ran = b.check(secret)
			if ran && b.cost == c.decoyCost {
				paid++
			}
		} else {
			match = v.verify(secret)
		}
		if match && !ok {
			binding, ok = c.bindings[i], true
		}
	}
	return binding, ok, paid
}

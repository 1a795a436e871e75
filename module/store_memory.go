package outergate

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/patrickmn/go-cache"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
}

// memoryStores holds the process-wide token caches by name, so that tokens
// survive `caddy reload`: the new config's store finds the old one's cache.
var memoryStores = caddy.NewUsagePool()

// MemoryStore is the embedded token store (module outergate.stores.memory):
// a go-cache map from SHA-256(token) to its record, in this process only.
// Tokens survive config reloads but not a restart, and are not shared with
// other instances; use outergate.stores.redis for that.
type MemoryStore struct {
	// Name selects the process-wide cache this store uses. Handlers whose
	// stores have the same name share their tokens. Default: "default".
	Name string `json:"name,omitempty"`

	tokens *memoryTokens
	key    string
}

// memoryTokens is the pooled value behind a MemoryStore.
type memoryTokens struct {
	cache    *cache.Cache // string(TokenHash) -> *TokenRecord
	failures *cache.Cache // key -> *failureWindow
	mu       sync.Mutex   // guards byClient and the failure windows

	// byClient indexes the tokens of each client, for revocation, counting
	// and the per-client cap. Tombstones stay indexed, so that they count
	// against the cap (and go first when it is reached): what a client can
	// make the store keep is bounded by the cap, whatever it does.
	byClient map[string]map[TokenHash]indexEntry
	seq      uint64 // issue order, which milliseconds alone cannot give
}

// indexEntry is one token in its client's index.
type indexEntry struct {
	exp     int64  // expiry, Unix ms
	seq     uint64 // issue order within the process
	revoked bool   // a tombstone
}

// newMemoryTokens returns an empty process-wide token cache whose index
// follows go-cache's expirations.
func newMemoryTokens() *memoryTokens {
	m := &memoryTokens{
		// Expired tokens are refused on read; the janitor frees memory.
		cache:    cache.New(cache.NoExpiration, time.Minute),
		failures: cache.New(cache.NoExpiration, time.Minute),
		byClient: make(map[string]map[TokenHash]indexEntry),
	}
	m.cache.OnEvicted(func(k string, v any) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.unindex(v.(*TokenRecord).ClientID, TokenHash([]byte(k)))
	})
	return m
}

// unindex removes a token from its client's index; m.mu must be held.
func (m *memoryTokens) unindex(clientID string, key TokenHash) {
	if set := m.byClient[clientID]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(m.byClient, clientID)
		}
	}
}

// failureWindow counts failures, and the claims of attempts still being
// checked, until its end.
type failureWindow struct {
	n    int
	held int
	end  time.Time
}

// Destruct implements caddy.Destructor. go-cache's janitor stops when the
// cache is garbage collected; flushing frees the tokens at once.
func (m *memoryTokens) Destruct() error {
	m.cache.Flush()
	m.failures.Flush()
	return nil
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "outergate.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision finds or creates the named process-wide cache.
func (s *MemoryStore) Provision(ctx caddy.Context) error {
	if s.Name == "" {
		s.Name = "default"
	}
	s.key = "memory/" + s.Name
	val, _, err := memoryStores.LoadOrNew(s.key, func() (caddy.Destructor, error) {
		return newMemoryTokens(), nil
	})
	if err != nil {
		return err
	}
	s.tokens = val.(*memoryTokens)
	return nil
}

// Cleanup releases this config's hold on the cache.
func (s *MemoryStore) Cleanup() error {
	_, err := memoryStores.Delete(s.key)
	return err
}

// Save implements TokenStore.
func (s *MemoryStore) Save(_ context.Context, key TokenHash, rec TokenRecord, maxPerClient int) error {
	ttl := rec.ttl()
	if ttl <= 0 {
		return nil
	}
	m := s.tokens
	m.mu.Lock()
	set := m.byClient[rec.ClientID]
	if set == nil {
		set = make(map[TokenHash]indexEntry)
		m.byClient[rec.ClientID] = set
	}
	m.seq++
	set[key] = indexEntry{exp: rec.ExpiresAt, seq: m.seq}
	victims := oldestBeyond(set, maxPerClient, time.Now().UnixMilli(), key)
	m.mu.Unlock()

	m.cache.Set(string(key[:]), &rec, ttl)
	for _, v := range victims {
		// Deleted, not tombstoned: a client looping on the token endpoint
		// must not grow the store with issuance rate × token_ttl.
		m.cache.Delete(string(v[:])) // OnEvicted unindexes it
	}
	return nil
}

// revoke turns a live token into a tombstone that lives until the token
// would have expired, or until the client's cap evicts it. The tombstone
// stays in its client's index, marked, so that it counts against the cap.
// It reports whether the token was live.
func (m *memoryTokens) revoke(key TokenHash) bool {
	v, exp, ok := m.cache.GetWithExpiration(string(key[:]))
	if !ok || v.(*TokenRecord).Revoked {
		return false
	}
	tomb := *v.(*TokenRecord)
	tomb.Revoked = true
	m.mu.Lock()
	defer m.mu.Unlock()
	e, indexed := m.byClient[tomb.ClientID][key]
	if !indexed {
		return false // evicted meanwhile: already unknown, nothing to keep
	}
	e.revoked = true
	m.byClient[tomb.ClientID][key] = e
	if ttl := time.Until(exp); ttl > 0 {
		// Under m.mu, so that a concurrent eviction cannot leave a
		// tombstone outside the index (Set calls no OnEvicted).
		m.cache.Set(string(key[:]), &tomb, ttl)
	}
	return true
}

// oldestBeyond returns the tokens of set to evict so that at most max
// unexpired ones, live tokens and tombstones together, remain: tombstones
// first, then the earliest issued, never keep (the token being issued).
// With max <= 0 there is no cap.
func oldestBeyond(set map[TokenHash]indexEntry, max int, nowMs int64, keep TokenHash) []TokenHash {
	if max <= 0 || len(set) <= max {
		return nil
	}
	type entry struct {
		key TokenHash
		indexEntry
	}
	// before orders eviction: tombstones, then issue order.
	before := func(a, b entry) bool {
		if a.revoked != b.revoked {
			return a.revoked
		}
		return a.seq < b.seq
	}
	kept := make([]entry, 0, len(set))
	for k, e := range set {
		if e.exp > nowMs && k != keep {
			kept = append(kept, entry{k, e})
		}
	}
	over := len(kept) + 1 - max // keep counts too
	switch {
	case over <= 0:
		return nil
	case over == 1:
		// The steady state of a client at its cap: one pass, no sort.
		first := kept[0]
		for _, e := range kept[1:] {
			if before(e, first) {
				first = e
			}
		}
		return []TokenHash{first.key}
	}
	slices.SortFunc(kept, func(a, b entry) int {
		switch {
		case before(a, b):
			return -1
		case before(b, a):
			return 1
		}
		return 0
	})
	victims := make([]TokenHash, 0, over)
	for _, e := range kept[:over] {
		victims = append(victims, e.key)
	}
	return victims
}

// Load implements TokenStore.
func (s *MemoryStore) Load(_ context.Context, key TokenHash) (TokenRecord, bool, error) {
	v, ok := s.tokens.cache.Get(string(key[:]))
	if !ok {
		return TokenRecord{}, false, nil
	}
	rec := *v.(*TokenRecord)
	return rec, !rec.Revoked, nil
}

// RevokeToken implements TokenStore.
func (s *MemoryStore) RevokeToken(_ context.Context, key TokenHash) (bool, error) {
	return s.tokens.revoke(key), nil
}

// RevokeClient implements TokenStore.
func (s *MemoryStore) RevokeClient(_ context.Context, clientID string) (int, error) {
	s.tokens.mu.Lock()
	keys := make([]TokenHash, 0, len(s.tokens.byClient[clientID]))
	for k, e := range s.tokens.byClient[clientID] {
		if !e.revoked {
			keys = append(keys, k)
		}
	}
	s.tokens.mu.Unlock()
	n := 0
	for _, k := range keys {
		if s.tokens.revoke(k) {
			n++
		}
	}
	return n, nil
}

// CountClient implements TokenStore.
func (s *MemoryStore) CountClient(_ context.Context, clientID string) (int, error) {
	now := time.Now().UnixMilli()
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	n := 0
	for _, e := range s.tokens.byClient[clientID] {
		if e.exp > now && !e.revoked {
			n++
		}
	}
	return n, nil
}

// Failures implements FailureStore.
func (s *MemoryStore) Failures(_ context.Context, key string) (int, time.Time, error) {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	v, ok := s.tokens.failures.Get(key)
	if !ok {
		return 0, time.Time{}, nil
	}
	w := v.(*failureWindow)
	return w.n, w.end, nil
}

// AddFailure implements FailureStore.
func (s *MemoryStore) AddFailure(_ context.Context, key string, window time.Duration) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	if v, ok := s.tokens.failures.Get(key); ok {
		v.(*failureWindow).n++
		return nil
	}
	s.tokens.failures.Set(key, &failureWindow{n: 1, end: time.Now().Add(window)}, window)
	return nil
}

// ResetFailures implements FailureStore.
func (s *MemoryStore) ResetFailures(_ context.Context, key string) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	if v, ok := s.tokens.failures.Get(key); ok {
		w := v.(*failureWindow)
		if w.n = 0; w.held == 0 {
			s.tokens.failures.Delete(key)
		}
	}
	return nil
}

// Reserve implements FailureStore.
func (s *MemoryStore) Reserve(_ context.Context, key string, max int, window time.Duration) (bool, int, time.Time, error) {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	v, ok := s.tokens.failures.Get(key)
	if !ok {
		if max <= 0 {
			return false, 0, time.Time{}, nil
		}
		end := time.Now().Add(window)
		s.tokens.failures.Set(key, &failureWindow{held: 1, end: end}, window)
		return true, 0, end, nil
	}
	w := v.(*failureWindow)
	if w.n+w.held >= max {
		return false, w.n, w.end, nil
	}
	w.held++
	return true, w.n, w.end, nil
}

// Release implements FailureStore.
func (s *MemoryStore) Release(_ context.Context, key string, failed, reset bool, window time.Duration) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	v, ok := s.tokens.failures.Get(key)
	if !ok {
		if failed {
			s.tokens.failures.Set(key, &failureWindow{n: 1, end: time.Now().Add(window)}, window)
		}
		return nil
	}
	w := v.(*failureWindow)
	if w.held > 0 {
		w.held--
	}
	if reset {
		w.n = 0
	}
	if failed {
		w.n++
	}
	if w.n == 0 && w.held == 0 {
		s.tokens.failures.Delete(key)
	}
	return nil
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store memory [{
//	    name <name>
//	}]
func (s *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store module name
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "name":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if s.Name != "" {
				return d.Err("name already specified")
			}
			s.Name = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

// poolKey names the process-wide cache behind the store.
func (s *MemoryStore) poolKey() string { return s.key }

// Interface guards
var (
	_ Store                 = (*MemoryStore)(nil)
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ caddy.Destructor      = (*memoryTokens)(nil)
)

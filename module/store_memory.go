package outergate

import (
	"context"
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
// the tokens by SHA-256 in sharded maps of compact, pointer-free entries
// (tokenTable, store_memory_table.go), the failure counters in go-cache, in
// this process only. Tokens survive config reloads but not a restart, and
// are not shared with other instances; use outergate.stores.redis for that.
type MemoryStore struct {
	// Name selects the process-wide cache this store uses. Handlers whose
	// stores have the same name share their tokens. Default: "default".
	Name string `json:"name,omitempty"`

	tokens *memoryTokens
	key    string
}

// memoryTokens is the pooled value behind a MemoryStore.
type memoryTokens struct {
	table *tokenTable
	// failures are short-lived counters with a window each: go-cache's
	// expiring map and janitor are exactly that.
	failures *cache.Cache // key -> *failureWindow
	mu       sync.Mutex   // guards the failure windows
}

// newMemoryTokens returns an empty process-wide token cache.
func newMemoryTokens() *memoryTokens {
	return &memoryTokens{
		table:    newTokenTable(),
		failures: cache.New(cache.NoExpiration, time.Minute),
	}
}

// failureWindow counts failures until its end.
type failureWindow struct {
	n   int
	end time.Time
}

// Destruct implements caddy.Destructor: it stops the token janitor and
// frees the tokens at once (go-cache's janitor stops when the cache is
// garbage collected).
func (m *memoryTokens) Destruct() error {
	m.table.close()
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

// Save implements TokenStore. A token past its expiry is not stored. The
// lockouts are checked and the token written under the failure counters'
// lock, so that no failure counted meanwhile is missed.
func (s *MemoryStore) Save(_ context.Context, key TokenHash, rec TokenRecord, maxPerClient int, locks ...Lockout) error {
	if len(locks) > 0 {
		s.tokens.mu.Lock()
		defer s.tokens.mu.Unlock()
		if err := s.tokens.admitLocked(locks, time.Now()); err != nil {
			return err
		}
	}
	now := time.Now().UnixMilli()
	if rec.ExpiresAt <= now {
		return nil
	}
	return s.tokens.table.put(key, rec, 0, maxPerClient, now)
}

// Load implements TokenStore.
func (s *MemoryStore) Load(_ context.Context, key TokenHash) (TokenRecord, bool, error) {
	rec, ok := s.tokens.table.get(key, time.Now().UnixMilli())
	return rec, ok && !rec.Revoked, nil
}

// RevokeToken implements TokenStore: the token becomes a tombstone until it
// would have expired or its client's cap evicts it (tombstones count
// against max_tokens_per_client and go first).
func (s *MemoryStore) RevokeToken(_ context.Context, key TokenHash) (bool, error) {
	return s.tokens.table.revoke(key, time.Now().UnixMilli()), nil
}

// RevokeClient implements TokenStore.
func (s *MemoryStore) RevokeClient(_ context.Context, clientID string) (int, error) {
	return s.tokens.table.revokeClient(clientID, time.Now().UnixMilli()), nil
}

// CountClient implements TokenStore.
func (s *MemoryStore) CountClient(_ context.Context, clientID string) (int, error) {
	return s.tokens.table.countClient(clientID, time.Now().UnixMilli()), nil
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
	s.tokens.addFailureLocked(key, window)
	return nil
}

// ResetFailures implements FailureStore.
func (s *MemoryStore) ResetFailures(_ context.Context, key string) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	s.tokens.failures.Delete(key)
	return nil
}

// CountFailures implements FailureStore: all the counts in one step.
func (s *MemoryStore) CountFailures(_ context.Context, locks ...Lockout) ([]FailureCount, error) {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	out := make([]FailureCount, len(locks))
	for i, l := range locks {
		w := s.tokens.addFailureLocked(l.Key, l.Window)
		out[i] = FailureCount{N: w.n, End: w.end}
	}
	return out, nil
}

// Admit implements FailureStore.
func (s *MemoryStore) Admit(_ context.Context, locks ...Lockout) error {
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	return s.tokens.admitLocked(locks, time.Now())
}

// addFailureLocked counts one failure under key; the caller holds mu.
func (m *memoryTokens) addFailureLocked(key string, window time.Duration) *failureWindow {
	if v, ok := m.failures.Get(key); ok {
		w := v.(*failureWindow)
		w.n++
		return w
	}
	w := &failureWindow{n: 1, end: time.Now().Add(window)}
	m.failures.Set(key, w, window)
	return w
}

// admitLocked returns a *LockedOut for the first lockout at its limit at
// now, else forgets the failures of those that reset; the caller holds mu.
func (m *memoryTokens) admitLocked(locks []Lockout, now time.Time) error {
	for _, l := range locks {
		if v, ok := m.failures.Get(l.Key); ok {
			if w := v.(*failureWindow); w.n >= l.Max && w.end.After(now) {
				return &LockedOut{Key: l.Key, Until: w.end}
			}
		}
	}
	for _, l := range locks {
		if l.Reset {
			m.failures.Delete(l.Key)
		}
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

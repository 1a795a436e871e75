package outergate

import (
	"errors"
	"math"
	"slices"
	"sync"
	"time"
)

// tokenTable is the memory store's token state: the records by TokenHash in
// tableShards maps of fixed-size, pointer-free entries, the strings of the
// records interned once per (client, scope, binding), and each client's
// live tokens in issue order and tombstones in revocation order.
//
// Why not go-cache (which the store used before and still uses for the
// failure counters): go-cache keys by string and boxes each value in an
// interface, so a token cost a 32-byte key string, a map slot with an
// interface and an expiry, a heap-allocated *TokenRecord with two string
// headers, and an index entry beside it: 263 bytes per live token, spread
// over three allocations the GC had to mark, and three cache misses per
// lookup. Here a token is one 56-byte map slot the GC never scans (no
// pointers) plus 40 bytes in its client's index. See BENCHMARKS.md.
//
// Locking: Load takes only its shard's read lock. Writers take mu (the
// client index and the interned names) and then, one at a time, a shard's
// lock; the janitor takes a shard's lock, then mu, never both.
type tokenTable struct {
	shards [tableShards]tableShard

	mu      sync.Mutex
	clients map[string]*clientTokens
	names   principals

	stop     chan struct{}
	stopOnce sync.Once
}

// tableShards is the number of shards; shardOf picks one.
const tableShards = 64

// shardOf maps the first 10 bits of a TokenHash (a SHA-256, so uniform) to
// a shard, giving shard i a share of the tokens proportional to 2^(i/64):
// shards of equal size would all double their tables at the same token
// count, and a Go map just after it grows is under half full. Spread over
// one doubling, the shards cost about 105 bytes per token at any count,
// where equal ones cost between 84 and 134 (134 at exactly 1,000,000).
// It is computed once and only read.
var shardOf = func() (t [1 << 10]uint8) {
	var w [tableShards]float64
	sum := 0.0
	for i := range w {
		w[i] = math.Exp2(float64(i) / tableShards)
		sum += w[i]
	}
	acc, j := 0.0, 0
	for i := range w {
		acc += w[i] / sum * float64(len(t))
		for ; j < int(math.Round(acc)) && j < len(t); j++ {
			t[j] = uint8(i)
		}
	}
	return t
}()

// tableShard is one lock and map, padded to its own cache line.
type tableShard struct {
	mu sync.RWMutex
	m  map[TokenHash]tokenEntry
	_  [32]byte
}

// tokenEntry is one token: no pointers, so the shard maps are not scanned
// by the GC.
type tokenEntry struct {
	issued, exp int64  // TokenRecord.IssuedAt and ExpiresAt, Unix ms
	name        uint32 // the interned ClientID, Scope and Binding
	// graceS keeps the entry that many seconds past exp. Save always
	// stores 0; tests set it to model a store that has not purged an
	// expired token yet, so that the callers' own expiry checks are tried.
	graceS  uint16
	revoked bool
}

// until is when the entry stops being found, Unix ms.
func (e tokenEntry) until() int64 { return e.exp + int64(e.graceS)*1000 }

// clientTokens is one client's records: revocation of the client, counting,
// and the per-client cap read it. Tombstones stay indexed until they expire
// or the cap evicts them, so that they count against the cap (issue 12):
// whatever a client does, the store keeps at most the cap's worth of its
// records.
type clientTokens struct {
	tokens []clientToken // live tokens, oldest issued first
	tombs  []clientToken // revoked ones, oldest revoked first
	minExp int64         // nothing in tokens or tombs expires before this
}

type clientToken struct {
	key TokenHash
	exp int64
}

// principal is the strings of a record, interned.
type principal struct{ clientID, scope, binding string }

// principals interns the strings of the records, counting the entries that
// refer to each.
type principals struct {
	// chunks is written under tokenTable.mu before any shard holds an entry
	// naming it, and a slot is reused only after no entry names it, so a
	// reader holding a shard's lock can read the slot of an entry it found.
	chunks [principalChunks]*[principalChunk]principal
	ids    map[principal]uint32
	refs   []int32
	free   []uint32
}

const (
	principalChunk  = 1 << 12
	principalChunks = 1 << 12
)

// errTooManyPrincipals is returned when 16 M distinct (client, scope,
// binding) triples have tokens at once.
var errTooManyPrincipals = errors.New("memory store: too many distinct clients, scopes and bindings")

func newTokenTable() *tokenTable {
	t := &tokenTable{
		clients: make(map[string]*clientTokens),
		names:   principals{ids: make(map[principal]uint32)},
		stop:    make(chan struct{}),
	}
	for i := range t.shards {
		t.shards[i].m = make(map[TokenHash]tokenEntry)
	}
	go t.janitor(time.Minute)
	return t
}

// close stops the janitor and drops every token. The interned names stay
// until the table itself is garbage.
func (t *tokenTable) close() {
	t.stopOnce.Do(func() { close(t.stop) })
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.m = make(map[TokenHash]tokenEntry)
		sh.mu.Unlock()
	}
	t.clients = make(map[string]*clientTokens)
}

func (t *tokenTable) shard(key TokenHash) *tableShard {
	return &t.shards[shardOf[int(key[0])<<2|int(key[1])>>6]]
}

// get returns the record of key and whether it is stored (live, revoked, or
// expired within its grace).
func (t *tokenTable) get(key TokenHash, nowMs int64) (TokenRecord, bool) {
	sh := t.shard(key)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	e, ok := sh.m[key]
	if !ok || e.until() <= nowMs {
		return TokenRecord{}, false
	}
	p := t.names.get(e.name)
	return TokenRecord{ClientID: p.clientID, Scope: p.scope, Binding: p.binding, IssuedAt: e.issued, ExpiresAt: e.exp,
		Revoked: e.revoked}, true
}

// put stores rec under key, indexes it under its client, and then deletes
// the client's records until at most maxPerClient unexpired ones remain
// (no cap if maxPerClient <= 0): tombstones first, oldest revoked first,
// then the oldest issued live tokens, never the one just stored. Evicted
// records are deleted, not tombstoned: a client looping on the token
// endpoint must not grow the store with issuance rate × token_ttl.
func (t *tokenTable) put(key TokenHash, rec TokenRecord, graceS uint16, maxPerClient int, nowMs int64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, err := t.names.ref(principal{rec.ClientID, rec.Scope, rec.Binding})
	if err != nil {
		return err
	}
	sh := t.shard(key)
	sh.mu.Lock()
	old, existed := sh.m[key]
	sh.m[key] = tokenEntry{issued: rec.IssuedAt, exp: rec.ExpiresAt, name: id, graceS: graceS, revoked: rec.Revoked}
	sh.mu.Unlock()
	if existed {
		if c := t.clients[t.names.get(old.name).clientID]; c != nil {
			c.remove(key)
		}
		t.names.unref(old.name)
	}
	c := t.clients[rec.ClientID]
	if c == nil {
		c = &clientTokens{minExp: rec.ExpiresAt}
		t.clients[rec.ClientID] = c
	}
	tok := clientToken{key, rec.ExpiresAt}
	if rec.Revoked {
		c.tombs = append(c.tombs, tok)
		c.minExp = min(c.minExp, tok.exp)
		return nil
	}
	c.add(tok, maxPerClient)
	if maxPerClient <= 0 || len(c.tokens)+len(c.tombs) <= maxPerClient {
		return nil
	}
	if c.minExp <= nowMs {
		// Expired records do not count; the janitor deletes their entries.
		c.prune(nowMs)
	}
	over := len(c.tokens) + len(c.tombs) - maxPerClient
	if n := min(over, len(c.tombs)); n > 0 {
		for _, v := range c.tombs[:n] {
			t.delete(v.key)
		}
		c.tombs = slices.Delete(c.tombs, 0, n)
		over -= n
	}
	// The token just added is the newest, so the oldest are never it.
	if over > 0 {
		for _, v := range c.tokens[:over] {
			t.delete(v.key)
		}
		c.tokens = slices.Delete(c.tokens, 0, over)
	}
	return nil
}

// delete drops key's entry; t.mu must be held.
func (t *tokenTable) delete(key TokenHash) {
	sh := t.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	if ok {
		delete(sh.m, key)
	}
	sh.mu.Unlock()
	if ok {
		t.names.unref(e.name)
	}
}

// revoke turns a stored, unrevoked token into a tombstone, kept until the
// token would have expired or its client's cap evicts it, and moves it to
// its client's tombstones. It reports whether the token was live.
func (t *tokenTable) revoke(key TokenHash, nowMs int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.revokeLocked(key, nowMs)
}

func (t *tokenTable) revokeLocked(key TokenHash, nowMs int64) bool {
	sh := t.shard(key)
	sh.mu.Lock()
	e, ok := sh.m[key]
	live := ok && !e.revoked && e.until() > nowMs
	if live {
		e.revoked = true
		sh.m[key] = e
	}
	sh.mu.Unlock()
	if live {
		if c := t.clients[t.names.get(e.name).clientID]; c != nil {
			c.remove(key)
			c.tombs = append(c.tombs, clientToken{key, e.exp})
		}
	}
	return live
}

// revokeClient turns every live token of a client into a tombstone and
// returns how many there were.
func (t *tokenTable) revokeClient(clientID string, nowMs int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.clients[clientID]
	if c == nil {
		return 0
	}
	keys := make([]TokenHash, len(c.tokens))
	for i, tok := range c.tokens {
		keys[i] = tok.key
	}
	n := 0
	for _, k := range keys {
		if t.revokeLocked(k, nowMs) {
			n++
		}
	}
	return n
}

// countClient returns how many unexpired tokens a client has.
func (t *tokenTable) countClient(clientID string, nowMs int64) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	if c := t.clients[clientID]; c != nil {
		for _, tok := range c.tokens {
			if tok.exp > nowMs {
				n++
			}
		}
	}
	return n
}

// len returns how many entries (live tokens and tombstones) are stored.
func (t *tokenTable) len() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

// janitor purges expired entries every interval until close.
func (t *tokenTable) janitor(interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			t.purge(time.Now().UnixMilli())
		}
	}
}

// purge deletes the entries no longer found at nowMs and drops expired
// tokens from the client index, one shard at a time.
func (t *tokenTable) purge(nowMs int64) {
	var gone []uint32
	for i := range t.shards {
		sh := &t.shards[i]
		gone = gone[:0]
		sh.mu.Lock()
		for k, e := range sh.m {
			if e.until() <= nowMs {
				delete(sh.m, k)
				gone = append(gone, e.name)
			}
		}
		sh.mu.Unlock()
		if len(gone) > 0 {
			t.mu.Lock()
			for _, id := range gone {
				t.names.unref(id)
			}
			t.mu.Unlock()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, c := range t.clients {
		if c.minExp <= nowMs {
			c.prune(nowMs)
			if len(c.tokens) == 0 && len(c.tombs) == 0 {
				delete(t.clients, id)
			}
		}
	}
}

// add appends a token. A client with a cap gets room for exactly cap + 1
// tokens, the most it holds between an issuance and its eviction.
func (c *clientTokens) add(tok clientToken, maxPerClient int) {
	if len(c.tokens) == cap(c.tokens) {
		want := max(4, 2*len(c.tokens))
		if maxPerClient > 0 && len(c.tokens) < maxPerClient+1 {
			want = min(want, maxPerClient+1)
		}
		c.tokens = slices.Grow(c.tokens, want-len(c.tokens))
	}
	c.tokens = append(c.tokens, tok)
	c.minExp = min(c.minExp, tok.exp)
}

// prune drops the expired records and recomputes minExp.
func (c *clientTokens) prune(nowMs int64) {
	expired := func(tok clientToken) bool { return tok.exp <= nowMs }
	c.tokens = slices.DeleteFunc(c.tokens, expired)
	c.tombs = slices.DeleteFunc(c.tombs, expired)
	c.minExp = math.MaxInt64
	for _, tok := range c.tokens {
		c.minExp = min(c.minExp, tok.exp)
	}
	for _, tok := range c.tombs {
		c.minExp = min(c.minExp, tok.exp)
	}
}

// remove drops one record, live or tombstone.
func (c *clientTokens) remove(key TokenHash) {
	is := func(tok clientToken) bool { return tok.key == key }
	if i := slices.IndexFunc(c.tokens, is); i >= 0 {
		c.tokens = slices.Delete(c.tokens, i, i+1)
	} else if i := slices.IndexFunc(c.tombs, is); i >= 0 {
		c.tombs = slices.Delete(c.tombs, i, i+1)
	}
}

// ref interns n and counts one more entry naming it.
func (p *principals) ref(n principal) (uint32, error) {
	if id, ok := p.ids[n]; ok {
		p.refs[id]++
		return id, nil
	}
	var id uint32
	if k := len(p.free); k > 0 {
		id = p.free[k-1]
		p.free = p.free[:k-1]
	} else {
		if len(p.refs) == principalChunk*principalChunks {
			return 0, errTooManyPrincipals
		}
		id = uint32(len(p.refs))
		p.refs = append(p.refs, 0)
		if p.chunks[id/principalChunk] == nil {
			p.chunks[id/principalChunk] = new([principalChunk]principal)
		}
	}
	p.chunks[id/principalChunk][id%principalChunk] = n
	p.ids[n] = id
	p.refs[id] = 1
	return id, nil
}

// unref counts one entry less naming id, and frees it at zero.
func (p *principals) unref(id uint32) {
	if p.refs[id]--; p.refs[id] == 0 {
		slot := &p.chunks[id/principalChunk][id%principalChunk]
		delete(p.ids, *slot)
		*slot = principal{}
		p.free = append(p.free, id)
	}
}

// get returns the strings of id.
func (p *principals) get(id uint32) *principal {
	return &p.chunks[id/principalChunk][id%principalChunk]
}

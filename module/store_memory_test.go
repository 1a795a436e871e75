package outergate

import (
	"context"
	"crypto/sha256"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// provisionMemory provisions a MemoryStore with the given name; the caller
// cleans it up.
func provisionMemory(t *testing.T, name string) *MemoryStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	s := &MemoryStore{Name: name}
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return s
}

func liveRecord(client string, ttl time.Duration) TokenRecord {
	now := time.Now()
	return TokenRecord{ClientID: client, Scope: "read write", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(ttl).UnixMilli()}
}

func TestMemoryStoreSharing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		nameA     string
		nameB     string
		wantShare bool
	}{
		{name: "same name shares tokens (a reload keeps them)", nameA: "share-same", nameB: "share-same", wantShare: true},
		{name: "different names do not share", nameA: "share-a", nameB: "share-b", wantShare: false},
		{name: "default name is shared", nameA: "", nameB: "default", wantShare: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := provisionMemory(t, tc.nameA)
			b := provisionMemory(t, tc.nameB)
			defer a.Cleanup()
			defer b.Cleanup()

			key := hashToken("token-" + t.Name())
			want := liveRecord("app", time.Hour)
			if err := a.Save(ctx, key, want, 0); err != nil {
				t.Fatal(err)
			}
			got, found, err := b.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.wantShare {
				t.Fatalf("token saved in %q found in %q: %v, want %v", tc.nameA, tc.nameB, found, tc.wantShare)
			}
			if found && got != want {
				t.Fatalf("loaded %+v, want %+v", got, want)
			}
			failKey := "ip:" + t.Name()
			if err := a.AddFailure(ctx, failKey, time.Hour); err != nil {
				t.Fatal(err)
			}
			n, _, err := b.Failures(ctx, failKey)
			if err != nil {
				t.Fatal(err)
			}
			if (n == 1) != tc.wantShare {
				t.Fatalf("failure counted in %q seen %d times in %q", tc.nameA, n, tc.nameB)
			}
		})
	}
}

func TestMemoryStoreReloadKeepsTokens(t *testing.T) {
	// Caddy provisions the new config before it cleans up the old one.
	ctx := context.Background()
	old := provisionMemory(t, "reload")
	key := hashToken("survives-reload")
	if err := old.Save(ctx, key, liveRecord("app", time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	next := provisionMemory(t, "reload")
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := next.Load(ctx, key); !found {
		t.Fatal("token lost across a reload")
	}
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryStorePoolEntryGoneAfterCleanup(t *testing.T) {
	ctx := context.Background()
	a := provisionMemory(t, "pool-entry")
	b := provisionMemory(t, "pool-entry")
	key := "memory/pool-entry"
	if refs, ok := memoryStores.References(key); !ok || refs != 2 {
		t.Fatalf("references = %d, %v; want 2", refs, ok)
	}
	tok := hashToken("pool-entry-token")
	if err := a.Save(ctx, tok, liveRecord("app", time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if refs, ok := memoryStores.References(key); !ok || refs != 1 {
		t.Fatalf("after one cleanup references = %d, %v; want 1", refs, ok)
	}
	if err := b.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if refs, ok := memoryStores.References(key); ok || refs != 0 {
		t.Fatalf("after both cleanups references = %d, %v; want the entry gone", refs, ok)
	}
	c := provisionMemory(t, "pool-entry")
	defer c.Cleanup()
	if _, found, _ := c.Load(ctx, tok); found {
		t.Fatal("a fresh store after the last cleanup still holds the old token")
	}
}

func TestMemoryStoreSaveAndLoad(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name      string
		rec       TokenRecord
		wantFound bool
	}{
		{name: "live token is kept", rec: liveRecord("app", time.Hour), wantFound: true},
		{name: "past expiry stores nothing", rec: TokenRecord{ClientID: "app", IssuedAt: now.Add(-time.Hour).UnixMilli(), ExpiresAt: now.Add(-time.Second).UnixMilli()}},
		{name: "zero expiry stores nothing", rec: TokenRecord{ClientID: "app"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := provisionMemory(t, "save-"+tc.name)
			defer s.Cleanup()
			key := hashToken(tc.name)
			if err := s.Save(ctx, key, tc.rec, 0); err != nil {
				t.Fatal(err)
			}
			got, found, err := s.Load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.wantFound {
				t.Fatalf("found = %v, want %v", found, tc.wantFound)
			}
			if found && got != tc.rec {
				t.Fatalf("loaded %+v, want %+v", got, tc.rec)
			}
			if n := s.tokens.table.len(); n != map[bool]int{true: 1, false: 0}[tc.wantFound] {
				t.Fatalf("cache holds %d items", n)
			}
			if _, found, _ := s.Load(ctx, hashToken("other")); found {
				t.Fatal("unknown token found")
			}
		})
	}
}

func TestMemoryStoreLoadAfterExpiry(t *testing.T) {
	ctx := context.Background()
	s := provisionMemory(t, "expiry")
	defer s.Cleanup()
	key := hashToken("short-lived")
	exp := time.Now().UnixMilli() + 1000
	if err := s.Save(ctx, key, TokenRecord{ClientID: "app", IssuedAt: exp - 1000, ExpiresAt: exp}, 0); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Load(ctx, key); !found && time.Now().UnixMilli() < exp {
		t.Fatal("token missing before its expiry")
	}
	time.Sleep(time.Until(time.UnixMilli(exp)) + 20*time.Millisecond)
	if _, found, _ := s.Load(ctx, key); found {
		t.Fatal("token still loads after its expiry")
	}
}

func TestMemoryStoreFailures(t *testing.T) {
	ctx := context.Background()
	type step struct {
		add    int           // failures to add now
		window time.Duration // window given to AddFailure
		sleep  time.Duration // then wait
		wantN  int           // then Failures returns
		// wantEndMin and wantEndMax bound time.Until(end) when wantN > 0
		wantEndMin, wantEndMax time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{name: "no failures", steps: []step{{wantN: 0}}},
		{name: "failures add up inside the window", steps: []step{
			{add: 1, window: time.Hour, wantN: 1, wantEndMin: 59 * time.Minute, wantEndMax: time.Hour},
			{add: 4, window: time.Hour, wantN: 5, wantEndMin: 59 * time.Minute, wantEndMax: time.Hour},
		}},
		{name: "the window starts with the first failure and is not extended", steps: []step{
			{add: 1, window: time.Second, sleep: 300 * time.Millisecond, wantN: 1, wantEndMin: 0, wantEndMax: 700 * time.Millisecond},
			{add: 1, window: time.Second, wantN: 2, wantEndMin: 0, wantEndMax: 700 * time.Millisecond},
		}},
		{name: "the count ends with the window", steps: []step{
			{add: 3, window: 100 * time.Millisecond, sleep: 150 * time.Millisecond, wantN: 0},
		}},
		{name: "a failure after the window starts a new one", steps: []step{
			{add: 3, window: 100 * time.Millisecond, sleep: 150 * time.Millisecond, wantN: 0},
			{add: 1, window: time.Hour, wantN: 1, wantEndMin: 59 * time.Minute, wantEndMax: time.Hour},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := provisionMemory(t, "failures-"+tc.name)
			defer s.Cleanup()
			const key = "ip:192.0.2.1"
			for i, st := range tc.steps {
				for range st.add {
					if err := s.AddFailure(ctx, key, st.window); err != nil {
						t.Fatal(err)
					}
				}
				time.Sleep(st.sleep)
				n, end, err := s.Failures(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				if n != st.wantN {
					t.Fatalf("step %d: %d failures, want %d", i, n, st.wantN)
				}
				if n > 0 {
					if d := time.Until(end); d < st.wantEndMin || d > st.wantEndMax {
						t.Fatalf("step %d: window ends in %v, want %v..%v", i, d, st.wantEndMin, st.wantEndMax)
					}
				}
				if other, _, _ := s.Failures(ctx, "ip:198.51.100.1"); other != 0 {
					t.Fatalf("step %d: another key has %d failures", i, other)
				}
			}
		})
	}
}

func TestMemoryStoreConcurrentFailures(t *testing.T) {
	ctx := context.Background()
	a := provisionMemory(t, "concurrent")
	b := provisionMemory(t, "concurrent")
	defer a.Cleanup()
	defer b.Cleanup()
	var wg sync.WaitGroup
	for i := range 100 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			_ = s.AddFailure(ctx, "ip:x", time.Hour)
			_, _, _ = s.Failures(ctx, "ip:x")
			_ = s.Save(ctx, hashToken(string(rune('a'+i%26))+time.Now().String()), liveRecord("app", time.Hour), 0)
		})
	}
	wg.Wait()
	if n, _, _ := a.Failures(ctx, "ip:x"); n != 100 {
		t.Fatalf("%d failures counted, want 100", n)
	}
}

func TestMemoryStoreRevoke(t *testing.T) {
	ctx := context.Background()
	s := provisionMemory(t, "revoke")
	defer s.Cleanup()
	keys := map[string]TokenHash{}
	for _, name := range []string{"a1", "a2", "a3", "b1"} {
		keys[name] = hashToken(name)
		if err := s.Save(ctx, keys[name], liveRecord(name[:1], time.Hour), 0); err != nil {
			t.Fatal(err)
		}
	}
	if live, err := s.RevokeToken(ctx, keys["a1"]); err != nil || !live {
		t.Fatalf("RevokeToken(live) = %v, %v", live, err)
	}
	if live, _ := s.RevokeToken(ctx, keys["a1"]); live {
		t.Fatal("RevokeToken of a revoked token reports it live")
	}
	if _, found, _ := s.Load(ctx, keys["a1"]); found {
		t.Fatal("revoked token still loads")
	}
	if n, err := s.RevokeClient(ctx, "a"); err != nil || n != 2 {
		t.Fatalf("RevokeClient(a) = %d, %v; want 2", n, err)
	}
	for _, name := range []string{"a2", "a3"} {
		if _, found, _ := s.Load(ctx, keys[name]); found {
			t.Fatalf("token %s of a revoked client still loads", name)
		}
	}
	if _, found, _ := s.Load(ctx, keys["b1"]); !found {
		t.Fatal("another client's token was revoked")
	}
	if n, _ := s.RevokeClient(ctx, "nobody"); n != 0 {
		t.Fatalf("RevokeClient(nobody) = %d", n)
	}
}

// keep stores rec under key for d from now, whatever its expiry, bypassing
// Save's checks: a record past its expiry stays found, as in a store that
// has not purged it yet.
func (m *memoryTokens) keep(t testing.TB, key TokenHash, rec TokenRecord, d time.Duration) {
	t.Helper()
	now := time.Now().UnixMilli()
	grace := max(0, (now+d.Milliseconds()-rec.ExpiresAt+999)/1000)
	if grace > math.MaxUint16 {
		t.Fatalf("record expires %d s before it is to be dropped; at most %d s can be kept", grace, math.MaxUint16)
	}
	if err := m.table.put(key, rec, uint16(grace), 0, now); err != nil {
		t.Fatal(err)
	}
}

// keys returns the keys of every stored entry.
func (m *memoryTokens) keys() []TokenHash {
	var out []TokenHash
	for i := range m.table.shards {
		sh := &m.table.shards[i]
		sh.mu.RLock()
		for k := range sh.m {
			out = append(out, k)
		}
		sh.mu.RUnlock()
	}
	return out
}

func TestShardOfCoversEveryShard(t *testing.T) {
	var n [tableShards]int
	for _, s := range shardOf {
		n[s]++
	}
	for i, c := range n {
		// Shares grow from about 11 to about 22 of the 1,024 prefixes.
		if c < 10 || c > 23 || (i > 0 && c < n[i-1]-1) {
			t.Fatalf("shard %d gets %d of %d prefixes (all: %v)", i, c, len(shardOf), n)
		}
	}
}

func TestMemoryStoreCapEvictsOldest(t *testing.T) {
	ctx := context.Background()
	rec := func(client string, ttl time.Duration) TokenRecord {
		now := time.Now()
		return TokenRecord{ClientID: client, Scope: "read", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(ttl).UnixMilli()}
	}
	for _, tc := range []struct {
		name string
		ttls []time.Duration // of the tokens saved in turn, before the last one
		max  int
		want []bool // found afterwards, in the same order
	}{
		{name: "under the cap nothing is evicted", ttls: []time.Duration{time.Hour, time.Hour}, max: 3, want: []bool{true, true}},
		{name: "one past the cap evicts the oldest", ttls: []time.Duration{time.Hour, time.Hour, time.Hour}, max: 3, want: []bool{false, true, true}},
		{name: "a cap of one keeps only the newest", ttls: []time.Duration{time.Hour, time.Hour}, max: 1, want: []bool{false, false}},
		{name: "expired tokens do not count", ttls: []time.Duration{time.Hour, 200 * time.Millisecond, time.Hour}, max: 3, want: []bool{true, false, true}},
		{name: "no cap keeps all", ttls: []time.Duration{time.Hour, time.Hour, time.Hour}, max: 0, want: []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := provisionMemory(t, "cap-"+tc.name)
			defer s.Cleanup()
			var keys []TokenHash
			for i, ttl := range tc.ttls {
				k := hashToken(tc.name + strconv.Itoa(i))
				keys = append(keys, k)
				if err := s.Save(ctx, k, rec("app", ttl), tc.max); err != nil {
					t.Fatal(err)
				}
			}
			// Another client's tokens are never evicted for this one.
			other := hashToken(tc.name + "other")
			if err := s.Save(ctx, other, rec("other", time.Hour), 1); err != nil {
				t.Fatal(err)
			}
			time.Sleep(250 * time.Millisecond)
			last := hashToken(tc.name + "last")
			if err := s.Save(ctx, last, rec("app", time.Hour), tc.max); err != nil {
				t.Fatal(err)
			}
			for i, k := range keys {
				if _, found, _ := s.Load(ctx, k); found != tc.want[i] {
					t.Errorf("token %d found = %v, want %v", i, found, tc.want[i])
				}
			}
			for _, k := range []TokenHash{last, other} {
				if _, found, _ := s.Load(ctx, k); !found {
					t.Errorf("token %x lost", k[:4])
				}
			}
			wantCount := 1
			for _, w := range tc.want {
				if w {
					wantCount++
				}
			}
			if n, _ := s.CountClient(ctx, "app"); n != wantCount {
				t.Errorf("CountClient = %d, want %d", n, wantCount)
			}
		})
	}
}

func TestMemoryStoreCapAfterRevocation(t *testing.T) {
	// A tombstone counts against the cap and goes before live tokens,
	// oldest revoked first; the token being issued always stays.
	ctx := context.Background()
	s := provisionMemory(t, "cap-revoked")
	defer s.Cleanup()
	k := func(name string) TokenHash { return hashToken("cap-revoked/" + name) }
	save := func(name string) {
		t.Helper()
		if err := s.Save(ctx, k(name), liveRecord("app", time.Hour), 3); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"a", "b", "c"} {
		save(name)
	}
	for _, name := range []string{"b", "a"} {
		if live, _ := s.RevokeToken(ctx, k(name)); !live {
			t.Fatalf("RevokeToken(%s) not live", name)
		}
	}
	save("d") // evicts the tombstone of b, revoked first
	want := map[string]string{"a": "revoked", "b": "unknown", "c": "live", "d": "live"}
	check := func() {
		t.Helper()
		for name, w := range want {
			rec, found, _ := s.Load(ctx, k(name))
			got := map[bool]string{true: "live", false: "unknown"}[found]
			if rec.Revoked {
				got = "revoked"
			}
			if got != w {
				t.Errorf("%s is %s, want %s", name, got, w)
			}
		}
	}
	check()
	save("e") // evicts the tombstone of a, before any live token
	want["a"], want["e"] = "unknown", "live"
	check()
	save("f") // no tombstone left: the oldest live token, c
	want["c"], want["f"] = "unknown", "live"
	check()
	if n, _ := s.CountClient(ctx, "app"); n != 3 {
		t.Errorf("CountClient = %d, want 3", n)
	}
	if n, _ := s.RevokeClient(ctx, "app"); n != 3 {
		t.Errorf("RevokeClient = %d, want 3", n)
	}
	save("g") // three tombstones and g: the oldest tombstone, d, goes
	want = map[string]string{"d": "unknown", "e": "revoked", "f": "revoked", "g": "live"}
	check()
	if n := s.tokens.table.len(); n != 3 {
		t.Errorf("the store keeps %d records, want 3", n)
	}
}

func TestMemoryStorePurge(t *testing.T) {
	ctx := context.Background()
	s := provisionMemory(t, "purge")
	defer s.Cleanup()
	table := s.tokens.table
	short := hashToken("short")
	long := hashToken("long")
	tomb := hashToken("tomb")
	if err := s.Save(ctx, short, liveRecord("app", 200*time.Millisecond), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, long, liveRecord("app", time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, tomb, liveRecord("gone", 200*time.Millisecond), 0); err != nil {
		t.Fatal(err)
	}
	if live, _ := s.RevokeToken(ctx, tomb); !live {
		t.Fatal("RevokeToken(tomb) not live")
	}
	time.Sleep(250 * time.Millisecond)
	table.purge(time.Now().UnixMilli())
	if n := table.len(); n != 1 {
		t.Fatalf("%d entries after purge, want 1", n)
	}
	if _, found, _ := s.Load(ctx, long); !found {
		t.Fatal("live token purged")
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if len(table.clients) != 1 || len(table.clients["app"].tokens) != 1 {
		t.Fatalf("client index after purge: %d clients", len(table.clients))
	}
	// Only the live token's (client, scope) is still interned.
	if len(table.names.ids) != 1 || len(table.names.free) != 1 {
		t.Fatalf("interned names: %d, free slots %d; want 1 and 1", len(table.names.ids), len(table.names.free))
	}
}

func TestMemoryStoreResaveAndNames(t *testing.T) {
	ctx := context.Background()
	s := provisionMemory(t, "resave")
	defer s.Cleanup()
	table := s.tokens.table
	k := hashToken("k")
	first := liveRecord("one", time.Hour)
	second := TokenRecord{ClientID: "two", Scope: "write", IssuedAt: first.IssuedAt + 1, ExpiresAt: first.ExpiresAt + 1}
	for _, rec := range []TokenRecord{first, second} {
		if err := s.Save(ctx, k, rec, 1); err != nil {
			t.Fatal(err)
		}
	}
	if got, found, _ := s.Load(ctx, k); !found || got != second {
		t.Fatalf("Load = %+v, %v; want %+v", got, found, second)
	}
	if n, _ := s.CountClient(ctx, "one"); n != 0 {
		t.Fatalf("the overwritten token still counts for its old client: %d", n)
	}
	if n, _ := s.CountClient(ctx, "two"); n != 1 {
		t.Fatalf("CountClient(two) = %d", n)
	}
	table.mu.Lock()
	defer table.mu.Unlock()
	if _, ok := table.names.ids[principal{"one", "read write", ""}]; ok || len(table.names.ids) != 1 {
		t.Fatalf("interned names %v; want only two/write", table.names.ids)
	}
}

func TestMemoryStoreConcurrentTokens(t *testing.T) {
	// Run with -race: Load beside Save, eviction, revocation and purge.
	ctx := context.Background()
	s := provisionMemory(t, "concurrent-tokens")
	defer s.Cleanup()
	const workers, each = 4, 300
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			client := "c" + strconv.Itoa(w%2)
			for i := range each {
				k := hashToken(client + "/" + strconv.Itoa(w) + "/" + strconv.Itoa(i))
				if err := s.Save(ctx, k, liveRecord(client, time.Hour), 50); err != nil {
					t.Error(err)
					return
				}
				if rec, found, _ := s.Load(ctx, k); found && rec.ClientID != client {
					t.Errorf("token of %s loaded as %+v", client, rec)
				}
				switch i % 100 {
				case 10:
					_, _ = s.RevokeToken(ctx, k)
				case 50:
					s.tokens.table.purge(time.Now().UnixMilli())
				case 99:
					_, _ = s.CountClient(ctx, client)
				}
			}
		})
	}
	wg.Wait()
	for _, c := range []string{"c0", "c1"} {
		if n, _ := s.CountClient(ctx, c); n != 50 {
			t.Errorf("CountClient(%s) = %d, want the cap, 50", c, n)
		}
	}
	if n, _ := s.RevokeClient(ctx, "c0"); n != 50 {
		t.Errorf("RevokeClient(c0) = %d, want 50", n)
	}
}

// checkLockouts holds every Store to the lockout protocol of the
// throttles, with a and b two handles on one shared store (two instances
// of a Redis store): concurrent failures get distinct counts (so exactly
// limit of them are within it), a success is refused while a lockout is at
// its limit and nothing is written, a resetting success forgets the
// failures, and Save with lockouts writes the token when none is locked.
func checkLockouts(t *testing.T, a, b Store) {
	t.Helper()
	ctx := context.Background()
	addr := Lockout{Key: "ip:locks-" + t.Name(), Max: 10, Window: time.Minute}
	client := Lockout{Key: "client:locks-" + t.Name(), Max: 200, Window: time.Hour, Reset: true}
	var within atomic.Int32
	seen := make([]atomic.Bool, 101)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts, err := s.CountFailures(ctx, addr, client)
			if err != nil || len(counts) != 2 {
				t.Error(counts, err)
				return
			}
			if n := counts[0].N; n < 1 || n > 100 || seen[n].Swap(true) {
				t.Errorf("count %d given twice or out of range", n)
			}
			if counts[0].N <= addr.Max {
				within.Add(1)
			}
			if time.Until(counts[0].End) <= 50*time.Second || time.Until(counts[1].End) <= 59*time.Minute {
				t.Errorf("window ends %v, %v; want about a minute and an hour", counts[0].End, counts[1].End)
			}
		}()
	}
	wg.Wait()
	if w := within.Load(); w != int32(addr.Max) {
		t.Fatalf("%d of 100 concurrent failures within a limit of %d", w, addr.Max)
	}
	if n, end, err := b.Failures(ctx, addr.Key); err != nil || n != 100 || time.Until(end) <= 0 {
		t.Fatalf("Failures = %d, %v, %v; want 100 in a running window", n, end, err)
	}
	// The address is locked: a success is refused, the client's
	// consecutive failures are not forgotten, no token is written.
	err := a.Admit(ctx, client, addr)
	if l, ok := lockedOut(err); !ok || l.Key != addr.Key || time.Until(l.Until) <= 50*time.Second {
		t.Fatalf("Admit on a locked address = %v; want a *LockedOut of %s until the window's end", err, addr.Key)
	}
	_, key := redisTestToken(t)
	rec := redisTestRecord("locks-client", time.Minute)
	if l, ok := lockedOut(b.Save(ctx, key, rec, 10, addr, client)); !ok || l.Key != addr.Key {
		t.Fatalf("Save on a locked address = %v; want a *LockedOut", err)
	}
	if _, found, _ := a.Load(ctx, key); found {
		t.Fatal("a token was written despite the lockout")
	}
	if n, _, _ := a.Failures(ctx, client.Key); n != 100 {
		t.Fatalf("client failures after refused successes = %d, want 100", n)
	}
	// Under its limit, a success forgets the client's failures and the
	// token is written; the address (no reset) keeps its count.
	if err := a.ResetFailures(ctx, addr.Key); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CountFailures(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, key, rec, 10, addr, client); err != nil {
		t.Fatalf("Save under the limits: %v", err)
	}
	if _, found, err := a.Load(ctx, key); !found || err != nil {
		t.Fatalf("token saved with lockouts not found: %v", err)
	}
	if n, _, _ := a.Failures(ctx, client.Key); n != 0 {
		t.Fatalf("client failures after a resetting success = %d, want 0", n)
	}
	if n, _, _ := a.Failures(ctx, addr.Key); n != 1 {
		t.Fatalf("address failures after a success = %d, want 1 (no reset)", n)
	}
	if err := a.Admit(ctx, addr, client); err != nil {
		t.Fatalf("Admit under the limits: %v", err)
	}
	// A limit of 1: the first failure is within it, the key then locked.
	one := Lockout{Key: "ip:one-" + t.Name(), Max: 1, Window: time.Minute}
	if c, err := a.CountFailures(ctx, one); err != nil || c[0].N != 1 {
		t.Fatalf("first failure with limit 1: %v, %v", c, err)
	}
	if _, ok := lockedOut(b.Admit(ctx, one)); !ok {
		t.Fatal("a key at its limit of 1 admitted a success")
	}
}

func TestMemoryStoreLockouts(t *testing.T) {
	a := provisionMemory(t, "lockouts")
	b := provisionMemory(t, "lockouts")
	defer a.Cleanup()
	defer b.Cleanup()
	checkLockouts(t, a, b)
}

func TestMemoryStoreBytesPerToken(t *testing.T) {
	// The target of issue 18 (BENCHMARKS.md): at most 200 bytes of Go heap
	// per live token, 1,000,000 tokens over 10,000 clients at the default
	// cap. Bytes, not time: what the table keeps does not depend on the
	// machine's load.
	if testing.Short() {
		t.Skip("fills 1,000,000 tokens")
	}
	bytesPerToken, _ := fillMemoryStore(t, 10_000, 100)
	t.Logf("%.1f bytes per live token", bytesPerToken)
	if bytesPerToken > 200 {
		t.Errorf("%.1f bytes per live token, want at most 200", bytesPerToken)
	}
}

func TestHashTokenIsSHA256(t *testing.T) {
	// hashToken copies the token into a stack buffer of 64 bytes; longer
	// tokens take the heap path. Both must give the plain SHA-256.
	for _, n := range []int{0, 1, 32, 43, 64, 65, 300} {
		tok := strings.Repeat("x", n)
		if got, want := hashToken(tok), TokenHash(sha256.Sum256([]byte(tok))); got != want {
			t.Errorf("hashToken of %d bytes = %x, want %x", n, got[:4], want[:4])
		}
	}
}

package outergate

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/outergate/outergate/internal/redistest"
)

// ---------------------------------------------------------------------------
// Helpers (all named redisTest* so as not to collide with other test files).
// ---------------------------------------------------------------------------

// redisTestProvision provisions a copy of cfg and releases it at the end of
// the test.
func redisTestProvision(t *testing.T, cfg RedisStore) *RedisStore {
	t.Helper()
	s := redisTestProvisionNoCleanup(t, cfg)
	t.Cleanup(func() {
		if err := s.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return s
}

// redisTestProvisionNoCleanup provisions a copy of cfg; the caller cleans up.
func redisTestProvisionNoCleanup(t *testing.T, cfg RedisStore) *RedisStore {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	s := new(RedisStore)
	*s = cfg
	if err := s.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return s
}

// redisTestInstance provisions "instance n" on rd: instances differ only in
// DialTimeout (500ms + n ms), which gives each its own pooled connection,
// cache and subscription, as separate gateway processes would have.
func redisTestInstance(t *testing.T, rd *redistest.Server, n int, cacheTTL time.Duration) *RedisStore {
	t.Helper()
	return redisTestProvision(t, RedisStore{
		URL:         rd.URL(),
		DialTimeout: caddy.Duration(DefaultRedisDialTimeout + time.Duration(n)*time.Millisecond),
		CacheTTL:    caddy.Duration(cacheTTL),
	})
}

// redisTestInspector is a plain go-redis client to look at what the store
// wrote.
func redisTestInspector(t *testing.T, rd *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: rd.Addr(), DisableIdentity: true, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// redisTestToken returns a fresh random access token and its hash.
func redisTestToken(t *testing.T) (string, TokenHash) {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := "tok_" + base64.RawURLEncoding.EncodeToString(b)
	return tok, hashToken(tok)
}

// redisTestRecord is a record of client expiring about life from now (the
// record has whole seconds).
func redisTestRecord(client string, life time.Duration) TokenRecord {
	now := time.Now()
	return TokenRecord{ClientID: client, Scope: "read write", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(life).UnixMilli()}
}

// redisTestSave saves a new token of client on s and returns its hash.
func redisTestSave(t *testing.T, s *RedisStore, client string, life time.Duration) (TokenHash, TokenRecord) {
	t.Helper()
	_, key := redisTestToken(t)
	rec := redisTestRecord(client, life)
	if err := s.Save(context.Background(), key, rec, 0); err != nil {
		t.Fatalf("Save: %v", err)
	}
	return key, rec
}

// redisTestMustLoad loads key from s and fails the test on error.
func redisTestMustLoad(t *testing.T, s *RedisStore, key TokenHash) (TokenRecord, bool) {
	t.Helper()
	rec, found, err := s.Load(context.Background(), key)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return rec, found
}

// redisTestWaitListening waits until the invalidation subscription of c is
// live, so that Load caches.
func redisTestWaitListening(t *testing.T, c *redisConn) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !c.listening.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation subscription did not come up within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// redisTestCached reports whether c's local cache holds key.
func redisTestCached(c *redisConn, key TokenHash) bool {
	_, ok := c.cache.Get(string(key[:]))
	return ok
}

// redisTestHook runs a function after each command the client processes.
type redisTestHook struct {
	after atomic.Pointer[func(ctx context.Context, cmd redis.Cmder)]
}

func (h *redisTestHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisTestHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if f := h.after.Load(); f != nil {
			for _, cmd := range cmds {
				(*f)(ctx, cmd)
			}
		}
		return err
	}
}

func (h *redisTestHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if f := h.after.Load(); f != nil {
			(*f)(ctx, cmd)
		}
		return err
	}
}

func (h *redisTestHook) set(f func(ctx context.Context, cmd redis.Cmder)) {
	if f == nil {
		h.after.Store(nil)
		return
	}
	h.after.Store(&f)
}

// redisTestCmdIs reports whether cmd is name (lower case) on key.
func redisTestCmdIs(cmd redis.Cmder, name, key string) bool {
	args := cmd.Args()
	return cmd.Name() == name && len(args) > 1 && args[1] == key
}

// ---------------------------------------------------------------------------
// Keys, values, TTLs
// ---------------------------------------------------------------------------

func TestRedisStoreSaveLoad(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	ctx := context.Background()

	t.Run("round trip returns the saved record", func(t *testing.T) {
		s := redisTestInstance(t, rd, 0, 0)
		key, rec := redisTestSave(t, s, "rt-client", time.Hour)
		got, found := redisTestMustLoad(t, s, key)
		if !found || got != rec {
			t.Fatalf("Load = %+v, %v; want %+v, true", got, found, rec)
		}
		// Another instance sees it too (it lives in Redis).
		got, found = redisTestMustLoad(t, redisTestInstance(t, rd, 1, 0), key)
		if !found || got != rec {
			t.Fatalf("Load on another instance = %+v, %v; want %+v, true", got, found, rec)
		}
	})

	t.Run("unknown token is not found without error", func(t *testing.T) {
		s := redisTestInstance(t, rd, 0, 0)
		_, key := redisTestToken(t)
		if _, found := redisTestMustLoad(t, s, key); found {
			t.Fatal("unknown token found")
		}
	})

	t.Run("keys hold only SHA-256 of the token and expire with it", func(t *testing.T) {
		if err := insp.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s := redisTestInstance(t, rd, 0, -1) // no cache: nothing but Redis
		token, key := redisTestToken(t)
		rec := redisTestRecord("keys-client", 90*time.Second)
		if err := s.Save(ctx, key, rec, 0); err != nil {
			t.Fatal(err)
		}
		remaining := time.Until(time.UnixMilli(rec.ExpiresAt))
		keys, err := insp.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		sum := hex.EncodeToString(key[:])
		wantTK, wantCK := "outergate:t:"+sum, "outergate:c:keys-client"
		if len(keys) != 2 || !(keys[0] == wantTK && keys[1] == wantCK || keys[1] == wantTK && keys[0] == wantCK) {
			t.Fatalf("keys = %q, want exactly %q and %q", keys, wantTK, wantCK)
		}
		if !regexp.MustCompile(`^outergate:t:[0-9a-f]{64}$`).MatchString(wantTK) {
			t.Fatalf("token key %q is not outergate:t:<64 hex>", wantTK)
		}
		// Token key: TTL ≈ the token's remaining life.
		pttl, err := insp.PTTL(ctx, wantTK).Result()
		if err != nil {
			t.Fatal(err)
		}
		if d := pttl - remaining; d > 100*time.Millisecond || d < -500*time.Millisecond {
			t.Errorf("PTTL of the token key = %v, want ≈ remaining life %v", pttl, remaining)
		}
		// Index: member is the hash, score the issue time in µs, TTL ≈ life (+1s).
		z, err := insp.ZRangeWithScores(ctx, wantCK, 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(z) != 1 || z[0].Member != sum || time.Since(time.UnixMicro(int64(z[0].Score))).Abs() > 5*time.Second {
			t.Errorf("client index = %+v, want one member %s scored with the issue time in µs", z, sum)
		}
		ipttl, err := insp.PTTL(ctx, wantCK).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ipttl < remaining-500*time.Millisecond || ipttl > remaining+1100*time.Millisecond {
			t.Errorf("PTTL of the client index = %v, want ≈ %v (+1s)", ipttl, remaining)
		}
		// Value: the record, never the token.
		val, err := insp.Get(ctx, wantTK).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(val, []byte(token)) {
			t.Errorf("value %q contains the raw token", val)
		}
		var stored TokenRecord
		if err := json.Unmarshal(val, &stored); err != nil || stored != rec {
			t.Errorf("value = %q (%v), want the JSON of %+v", val, err, rec)
		}
		// Nothing Redis holds at rest contains the token.
		dump := rd.Dump()
		if bytes.Contains(dump, []byte(token)) {
			t.Error("the RDB dump contains the raw token")
		}
		if !bytes.Contains(dump, []byte(sum)) {
			t.Error("the RDB dump does not contain the token hash: the dump check is blind")
		}
	})

	t.Run("index TTL follows the longest-lived token", func(t *testing.T) {
		s := redisTestInstance(t, rd, 0, -1)
		redisTestSave(t, s, "ttl-client", time.Hour)
		redisTestSave(t, s, "ttl-client", time.Minute) // must not shorten the index
		ipttl := insp.PTTL(ctx, "outergate:c:ttl-client").Val()
		if ipttl < 59*time.Minute {
			t.Errorf("PTTL of the index = %v after a shorter token, want ≈ 1h", ipttl)
		}
	})

	t.Run("save with ExpiresAt in the past stores nothing", func(t *testing.T) {
		s := redisTestInstance(t, rd, 0, 0)
		for _, exp := range []int64{time.Now().UnixMilli() - 10000, time.Now().UnixMilli(), 0} {
			_, key := redisTestToken(t)
			rec := TokenRecord{ClientID: "past-client", Scope: "read", IssuedAt: time.Now().UnixMilli() - 20000, ExpiresAt: exp}
			if err := s.Save(ctx, key, rec, 0); err != nil {
				t.Fatalf("Save(ExpiresAt=%d): %v", exp, err)
			}
			if n := insp.Exists(ctx, "outergate:t:"+hex.EncodeToString(key[:]), "outergate:c:past-client").Val(); n != 0 {
				t.Errorf("Save(ExpiresAt=%d) wrote %d keys, want none", exp, n)
			}
			if _, found := redisTestMustLoad(t, s, key); found {
				t.Errorf("Save(ExpiresAt=%d): token found", exp)
			}
		}
	})

	t.Run("load after expiry is not found", func(t *testing.T) {
		s := redisTestInstance(t, rd, 0, -1) // no cache: Redis expiry only
		_, key := redisTestToken(t)
		rec := TokenRecord{ClientID: "exp-client", Scope: "read", IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().UnixMilli() + 1000}
		if err := s.Save(ctx, key, rec, 0); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(time.UnixMilli(rec.ExpiresAt)) + 20*time.Millisecond)
		if got, found := redisTestMustLoad(t, s, key); found {
			t.Fatalf("Load after expiry = %+v, found", got)
		}
	})

	t.Run("custom key prefix", func(t *testing.T) {
		if err := insp.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		s := redisTestProvision(t, RedisStore{URL: rd.URL(), KeyPrefix: "gw{eu}:"})
		key, rec := redisTestSave(t, s, "pfx-client", time.Hour)
		if err := s.AddFailure(ctx, "1.2.3.4", time.Minute); err != nil {
			t.Fatal(err)
		}
		keys := insp.Keys(ctx, "*").Val()
		want := map[string]bool{
			"gw{eu}:t:" + hex.EncodeToString(key[:]): true,
			"gw{eu}:c:pfx-client":                    true,
			"gw{eu}:f:1.2.3.4":                       true,
		}
		if len(keys) != len(want) {
			t.Fatalf("keys = %q, want %v", keys, want)
		}
		for _, k := range keys {
			if !want[k] {
				t.Errorf("unexpected key %q (want only keys under gw{eu}:)", k)
			}
		}
		if got, found := redisTestMustLoad(t, s, key); !found || got != rec {
			t.Errorf("Load = %+v, %v", got, found)
		}
		// A store with the default prefix does not see it.
		if _, found := redisTestMustLoad(t, redisTestInstance(t, rd, 0, 0), key); found {
			t.Error("a store with the default prefix found a token saved under gw{eu}:")
		}
		if n, err := s.RevokeClient(ctx, "pfx-client"); err != nil || n != 1 {
			t.Errorf("RevokeClient = %d, %v; want 1", n, err)
		}
	})
}

// ---------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------

func TestRedisStoreRevocationCounts(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	s := redisTestInstance(t, rd, 0, 0)
	ctx := context.Background()

	cases := []struct {
		name string
		run  func(t *testing.T, client string)
	}{
		{"RevokeToken reports a live token once", func(t *testing.T, client string) {
			key, _ := redisTestSave(t, s, client, time.Hour)
			if ok, err := s.RevokeToken(ctx, key); err != nil || !ok {
				t.Fatalf("first RevokeToken = %v, %v; want true", ok, err)
			}
			if ok, err := s.RevokeToken(ctx, key); err != nil || ok {
				t.Fatalf("second RevokeToken = %v, %v; want false", ok, err)
			}
			if _, found := redisTestMustLoad(t, s, key); found {
				t.Fatal("revoked token still found")
			}
		}},
		{"RevokeToken of an unknown token reports false", func(t *testing.T, client string) {
			_, key := redisTestToken(t)
			if ok, err := s.RevokeToken(ctx, key); err != nil || ok {
				t.Fatalf("RevokeToken = %v, %v; want false", ok, err)
			}
		}},
		{"RevokeToken keeps the tombstone indexed at score 0, ahead of live tokens", func(t *testing.T, client string) {
			other, _ := redisTestSave(t, s, client, time.Hour)
			key, _ := redisTestSave(t, s, client, time.Hour)
			if _, err := s.RevokeToken(ctx, key); err != nil {
				t.Fatal(err)
			}
			members := insp.ZRangeWithScores(ctx, "outergate:c:"+client, 0, -1).Val()
			if len(members) != 2 || members[0].Member != hex.EncodeToString(key[:]) || members[0].Score != 0 ||
				members[1].Member != hex.EncodeToString(other[:]) || members[1].Score == 0 {
				t.Fatalf("index = %+v, want the tombstone %s at 0, then %s", members, key.Fingerprint(), other.Fingerprint())
			}
			if n, err := s.CountClient(ctx, client); err != nil || n != 1 {
				t.Fatalf("CountClient = %d, %v; want 1 (tombstones are not live)", n, err)
			}
		}},
		{"RevokeClient counts and deletes the client's live tokens", func(t *testing.T, client string) {
			var keys []TokenHash
			for range 3 {
				k, _ := redisTestSave(t, s, client, time.Hour)
				keys = append(keys, k)
			}
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 3 {
				t.Fatalf("RevokeClient = %d, %v; want 3", n, err)
			}
			for _, k := range keys {
				if _, found := redisTestMustLoad(t, s, k); found {
					t.Errorf("token %s survived RevokeClient", k.Fingerprint())
				}
			}
			// The tombstones stay indexed at score 0 (issue 12 item 11).
			for _, z := range insp.ZRangeWithScores(ctx, "outergate:c:"+client, 0, -1).Val() {
				if z.Score != 0 {
					t.Errorf("index member %v not rescored as a tombstone", z)
				}
			}
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 0 {
				t.Errorf("second RevokeClient = %d, %v; want 0", n, err)
			}
		}},
		{"RevokeClient leaves other clients' tokens", func(t *testing.T, client string) {
			redisTestSave(t, s, client, time.Hour)
			otherKey, otherRec := redisTestSave(t, s, client+"-other", time.Hour)
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 1 {
				t.Fatalf("RevokeClient = %d, %v; want 1", n, err)
			}
			if got, found := redisTestMustLoad(t, s, otherKey); !found || got != otherRec {
				t.Fatalf("other client's token: %+v, %v", got, found)
			}
			if n, err := s.RevokeClient(ctx, client+"-other"); err != nil || n != 1 {
				t.Errorf("other client's index broken: RevokeClient = %d, %v; want 1", n, err)
			}
		}},
		{"RevokeClient of an unknown client returns 0", func(t *testing.T, client string) {
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 0 {
				t.Fatalf("RevokeClient = %d, %v; want 0", n, err)
			}
		}},
		{"RevokeClient does not count a token already revoked", func(t *testing.T, client string) {
			k1, _ := redisTestSave(t, s, client, time.Hour)
			redisTestSave(t, s, client, time.Hour)
			if _, err := s.RevokeToken(ctx, k1); err != nil {
				t.Fatal(err)
			}
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 1 {
				t.Fatalf("RevokeClient = %d, %v; want 1", n, err)
			}
		}},
		{"RevokeClient does not count an expired token", func(t *testing.T, client string) {
			rec := TokenRecord{ClientID: client, Scope: "read", IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().UnixMilli() + 1000}
			_, short := redisTestToken(t)
			if err := s.Save(ctx, short, rec, 0); err != nil {
				t.Fatal(err)
			}
			redisTestSave(t, s, client, time.Hour)
			redisTestSave(t, s, client, time.Hour)
			time.Sleep(time.Until(time.UnixMilli(rec.ExpiresAt)) + 20*time.Millisecond)
			if n, err := s.RevokeClient(ctx, client); err != nil || n != 2 {
				t.Fatalf("RevokeClient = %d, %v; want 2", n, err)
			}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, "count-client-"+string(rune('a'+i)))
		})
	}
}

// A token issued while RevokeClient runs must not end up live but missing
// from its client's index, where no later RevokeClient can find it. The
// hook issues the token (on another instance) between RevokeClient's read
// of the index and its deletion of the index.
func TestRedisStoreRevokeClientKeepsConcurrentTokenIndexed(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	a := redisTestInstance(t, rd, 0, 0)
	b := redisTestInstance(t, rd, 1, 0)
	ctx := context.Background()
	const client = "race-client"

	k1, _ := redisTestSave(t, a, client, time.Hour)
	_, k2 := redisTestToken(t)
	hook := new(redisTestHook)
	a.conn.client.AddHook(hook)
	var once sync.Once
	fired := false
	hook.set(func(_ context.Context, cmd redis.Cmder) {
		// A per-token write of RevokeClient: a DEL, or the tombstone
		// script (EVAL <script> 1 <token key>).
		args := cmd.Args()
		perToken := cmd.Name() == "del" && strings.HasPrefix(fmt.Sprint(args[1]), "outergate:t:") ||
			(cmd.Name() == "eval" || cmd.Name() == "evalsha") && len(args) > 3 && strings.HasPrefix(fmt.Sprint(args[3]), "outergate:t:")
		if perToken {
			once.Do(func() {
				fired = true
				if err := b.Save(ctx, k2, redisTestRecord(client, time.Hour), 0); err != nil {
					t.Errorf("concurrent Save: %v", err)
				}
			})
		}
	})
	n, err := a.RevokeClient(ctx, client)
	hook.set(nil)
	if err != nil || n != 1 {
		t.Fatalf("RevokeClient = %d, %v; want 1 (the token issued before it)", n, err)
	}
	if _, found := redisTestMustLoad(t, a, k1); found {
		t.Fatal("the token issued before RevokeClient survived it")
	}
	if !fired {
		t.Log("RevokeClient sent no per-token DEL (atomic revocation?): nothing was interleaved")
	}
	_, live := redisTestMustLoad(t, a, k2)
	indexed := insp.ZScore(ctx, "outergate:c:"+client, hex.EncodeToString(k2[:])).Err() == nil
	if live && !indexed {
		t.Errorf("a token issued during RevokeClient is live but missing from %q: RevokeClient can no longer revoke it", "outergate:c:"+client)
	}
	if live {
		n, err := a.RevokeClient(ctx, client)
		if err != nil || n != 1 {
			t.Errorf("second RevokeClient = %d, %v; want 1 (the token issued during the first)", n, err)
		}
		if _, found := redisTestMustLoad(t, a, k2); found {
			t.Error("the token issued during the first RevokeClient survives a second RevokeClient")
		}
	}
}

// Instance B has the token cached; A revokes it; B must refuse it within 2s.
// With cache_ttl 10s only the pub/sub invalidation can meet the bound.
func TestRedisStoreRevocationReachesOtherInstances(t *testing.T) {
	cases := []struct {
		name     string
		cacheTTL time.Duration
		revoke   func(ctx context.Context, a *RedisStore, key TokenHash, client string) error
	}{
		{"RevokeToken reaches B within 2s (default cache_ttl)", 0, redisTestRevokeToken},
		{"RevokeToken reaches B within 2s through pub/sub (cache_ttl 10s)", 10 * time.Second, redisTestRevokeToken},
		{"RevokeClient reaches B within 2s (default cache_ttl)", 0, redisTestRevokeClient},
		{"RevokeClient reaches B within 2s through pub/sub (cache_ttl 10s)", 10 * time.Second, redisTestRevokeClient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := redistest.Start(t)
			a := redisTestInstance(t, rd, 0, tc.cacheTTL)
			b := redisTestInstance(t, rd, 1, tc.cacheTTL)
			if a.conn == b.conn {
				t.Fatal("instances A and B share a connection; the test needs two")
			}
			redisTestWaitListening(t, a.conn)
			redisTestWaitListening(t, b.conn)
			ctx := context.Background()

			key, rec := redisTestSave(t, a, "victim", time.Hour)
			otherKey, otherRec := redisTestSave(t, a, "bystander", time.Hour)
			for _, s := range []*RedisStore{a, b} {
				for _, k := range []TokenHash{key, otherKey} {
					if _, found := redisTestMustLoad(t, s, k); !found {
						t.Fatal("saved token not found")
					}
					if !redisTestCached(s.conn, k) {
						t.Fatal("a Load while subscribed did not cache the token: the test would not exercise the cache")
					}
				}
			}

			start := time.Now()
			if err := tc.revoke(ctx, a, key, rec.ClientID); err != nil {
				t.Fatal(err)
			}
			// The revoking instance refuses it at once.
			if _, found := redisTestMustLoad(t, a, key); found {
				t.Error("A still finds the token it revoked")
			}
			var latency time.Duration
			for {
				_, found := redisTestMustLoad(t, b, key)
				if !found {
					latency = time.Since(start)
					break
				}
				if time.Since(start) > 2*time.Second {
					t.Fatalf("B still accepts the revoked token %v after A revoked it", time.Since(start))
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("revocation latency A→B: %v (cache_ttl %v)", latency, b.conn.cacheTTL)
			if latency > 2*time.Second {
				t.Errorf("revocation latency %v > 2s", latency)
			}
			for _, s := range []*RedisStore{a, b} {
				if got, found := redisTestMustLoad(t, s, otherKey); !found || got != otherRec {
					t.Errorf("another client's token was harmed: %+v, %v", got, found)
				}
			}
		})
	}
}

func redisTestRevokeToken(ctx context.Context, a *RedisStore, key TokenHash, _ string) error {
	ok, err := a.RevokeToken(ctx, key)
	if err == nil && !ok {
		err = errors.New("RevokeToken reported the live token as not live")
	}
	return err
}

func redisTestRevokeClient(ctx context.Context, a *RedisStore, _ TokenHash, client string) error {
	n, err := a.RevokeClient(ctx, client)
	if err == nil && n != 1 {
		err = errors.New("RevokeClient did not count the one live token")
	}
	return err
}

// ---------------------------------------------------------------------------
// Cache
// ---------------------------------------------------------------------------

func TestRedisStoreCacheNeverOutlivesToken(t *testing.T) {
	cases := []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"cache_ttl longer than the token's life", 10 * time.Second},
		{"default cache_ttl, re-cached until expiry", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := redistest.Start(t)
			a := redisTestInstance(t, rd, 0, -1)
			b := redisTestInstance(t, rd, 1, tc.cacheTTL)
			redisTestWaitListening(t, b.conn)

			_, key := redisTestToken(t)
			rec := TokenRecord{ClientID: "short", Scope: "read", IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().UnixMilli() + 2000}
			end := time.UnixMilli(rec.ExpiresAt)
			if err := a.Save(context.Background(), key, rec, 0); err != nil {
				t.Fatal(err)
			}
			if _, found := redisTestMustLoad(t, b, key); !found {
				t.Fatal("token not found")
			}
			if !redisTestCached(b.conn, key) {
				t.Fatal("B did not cache the token")
			}
			t.Logf("token life left: %v", time.Until(end))
			var firstRefusal time.Duration = -1
			for time.Now().Before(end.Add(300 * time.Millisecond)) {
				// The entry's TTL is computed as time.Until(expiry) a few µs
				// before go-cache adds it to time.Now(): allow that much.
				if _, exp, ok := b.conn.cache.GetWithExpiration(string(key[:])); ok && exp.After(end.Add(5*time.Millisecond)) {
					t.Fatalf("cache entry expires at %v, %v after the token", exp, exp.Sub(end))
				}
				got, found := redisTestMustLoad(t, b, key)
				now := time.Now()
				if now.Before(end.Add(-20*time.Millisecond)) && !found {
					t.Fatalf("token refused %v before its expiry", end.Sub(now))
				}
				if !now.Before(end) {
					// A found record must be one the caller refuses as expired;
					// shortly after, the store itself must not find it.
					if found && !got.expired(now) {
						t.Fatalf("at expiry+%v B returns %+v as live", now.Sub(end), got)
					}
					if found && now.After(end.Add(50*time.Millisecond)) {
						t.Fatalf("at expiry+%v B still finds the token", now.Sub(end))
					}
					if !found && firstRefusal < 0 {
						firstRefusal = now.Sub(end)
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("first not-found Load on B: expiry+%v", firstRefusal)
		})
	}
}

// The generation guard and the listening flag decide what a Load may cache.
// The hook runs its action after the GET of the token, i.e. between the
// Redis read and the cache insert.
func TestRedisStoreLoadCacheGuard(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	other := redisTestInstance(t, rd, 1, 0)
	cfg := RedisStore{URL: rd.URL(), DialTimeout: caddy.Duration(DefaultRedisDialTimeout), Timeout: caddy.Duration(DefaultRedisTimeout)}
	opts, err := cfg.options()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	cases := []struct {
		name string
		// between runs after the GET, before the insert; nil for none.
		between    func(t *testing.T, c *redisConn, key TokenHash)
		before     func(t *testing.T, c *redisConn, key TokenHash)
		wantFound  bool
		wantCached bool
		// wantAfter is what a second Load (no hook) returns.
		wantAfter bool
	}{
		{
			name:      "a Load while subscribed caches the validation",
			wantFound: true, wantCached: true, wantAfter: true,
		},
		{
			name: "nothing is cached while the subscription is down",
			before: func(t *testing.T, c *redisConn, key TokenHash) {
				c.listening.Store(false)
			},
			wantFound: true, wantCached: false, wantAfter: true,
		},
		{
			name: "a cached validation is not trusted while the subscription is down",
			before: func(t *testing.T, c *redisConn, key TokenHash) {
				if _, found, err := c.load(ctx, key); err != nil || !found || !redisTestCached(c, key) {
					t.Fatalf("priming the cache: found=%v err=%v cached=%v", found, err, redisTestCached(c, key))
				}
				c.listening.Store(false)
				// Deleted behind the cache's back, as a revocation whose
				// message the dead subscription missed.
				if err := insp.Del(ctx, c.tokenKey(key)).Err(); err != nil {
					t.Fatal(err)
				}
			},
			wantFound: false, wantCached: true, wantAfter: false,
		},
		{
			name: "a token invalidation between the read and the insert is not undone",
			between: func(t *testing.T, c *redisConn, key TokenHash) {
				c.invalidate("t:" + hex.EncodeToString(key[:]))
			},
			wantFound: true, wantCached: false, wantAfter: true,
		},
		{
			name: "a client invalidation between the read and the insert is not undone",
			between: func(t *testing.T, c *redisConn, key TokenHash) {
				c.invalidate("c:guard-client")
			},
			wantFound: true, wantCached: false, wantAfter: true,
		},
		{
			name: "an invalidation of another token between the read and the insert prevents the insert",
			between: func(t *testing.T, c *redisConn, key TokenHash) {
				_, k := redisTestToken(t)
				c.invalidate("t:" + hex.EncodeToString(k[:]))
			},
			wantFound: true, wantCached: false, wantAfter: true,
		},
		{
			name: "a revocation published by another instance between the read and the insert is not undone",
			between: func(t *testing.T, c *redisConn, key TokenHash) {
				g := c.gen.Load()
				if ok, err := other.RevokeToken(ctx, key); err != nil || !ok {
					t.Errorf("RevokeToken on the other instance = %v, %v", ok, err)
				}
				deadline := time.Now().Add(2 * time.Second)
				for c.gen.Load() == g && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				if c.gen.Load() == g {
					t.Error("the revocation message did not arrive within 2s")
				}
			},
			wantFound: true, wantCached: false, wantAfter: false,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Default prefix: the other instance's revocations reach c.
			c := newRedisConn(opts, DefaultRedisKeyPrefix, time.Duration(cfg.Timeout), 10*time.Second, zap.NewNop())
			t.Cleanup(func() { _ = c.Destruct() })
			redisTestWaitListening(t, c)
			_, key := redisTestToken(t)
			rec := redisTestRecord("guard-client", time.Hour)
			if err := c.save(ctx, key, rec, 0, nil); err != nil {
				t.Fatal(err)
			}
			if tc.before != nil {
				tc.before(t, c, key)
			}
			if tc.between != nil {
				hook := new(redisTestHook)
				c.client.AddHook(hook)
				tk := c.tokenKey(key)
				var once sync.Once
				hook.set(func(_ context.Context, cmd redis.Cmder) {
					if redisTestCmdIs(cmd, "get", tk) {
						once.Do(func() { tc.between(t, c, key) })
					}
				})
				defer hook.set(nil)
			}
			got, found, err := c.load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if found != tc.wantFound || (found && got != rec) {
				t.Fatalf("load = %+v, %v; want found=%v", got, found, tc.wantFound)
			}
			if cached := redisTestCached(c, key); cached != tc.wantCached {
				t.Fatalf("cached = %v, want %v", cached, tc.wantCached)
			}
			if _, found, err := c.load(ctx, key); err != nil || found != tc.wantAfter {
				t.Fatalf("second load: found=%v err=%v; want found=%v", found, err, tc.wantAfter)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Fail closed, recover
// ---------------------------------------------------------------------------

func TestRedisStoreFailsClosedAndRecovers(t *testing.T) {
	cases := []struct {
		name     string
		down, up func(rd *redistest.Server)
		dataKept bool
	}{
		{
			name: "hung redis (SIGSTOP) fails within 3s, recovers on SIGCONT",
			down: (*redistest.Server).Pause, up: (*redistest.Server).Resume, dataKept: true,
		},
		{
			name: "stopped redis fails within 3s, recovers when restarted",
			down: (*redistest.Server).Stop, up: (*redistest.Server).Start, dataKept: false,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := redistest.Start(t)
			s := redisTestInstance(t, rd, 0, 0)
			conn := s.conn
			redisTestWaitListening(t, s.conn)
			ctx := context.Background() // no caller deadline: the store bounds itself
			kept, keptRec := redisTestSave(t, s, "kept-client", time.Hour)
			if err := s.AddFailure(ctx, "warm", time.Minute); err != nil {
				t.Fatal(err)
			}

			tc.down(rd)
			_, unknown := redisTestToken(t)
			_, fresh := redisTestToken(t)
			ops := []struct {
				name string
				do   func() error
			}{
				{"Load of an uncached token", func() error {
					_, found, err := s.Load(ctx, unknown)
					if err == nil && found {
						return errors.New("found")
					}
					return err
				}},
				{"Save", func() error { return s.Save(ctx, fresh, redisTestRecord("down-client", time.Hour), 0) }},
				{"Failures", func() error { _, _, err := s.Failures(ctx, "down-key"); return err }},
				{"AddFailure", func() error { return s.AddFailure(ctx, "down-key", time.Minute) }},
				{"RevokeToken", func() error { _, err := s.RevokeToken(ctx, unknown); return err }},
				{"RevokeClient", func() error { _, err := s.RevokeClient(ctx, "down-client"); return err }},
			}
			for _, op := range ops {
				start := time.Now()
				err := op.do()
				elapsed := time.Since(start)
				t.Logf("%s while down: %v after %v", op.name, err, elapsed)
				if !errors.Is(err, ErrStoreUnavailable) {
					t.Errorf("%s while down: err = %v, want one wrapping ErrStoreUnavailable", op.name, err)
				}
				if elapsed >= 3*time.Second {
					t.Errorf("%s while down took %v, want < 3s", op.name, elapsed)
				}
			}

			tc.up(rd)
			start := time.Now()
			for {
				_, found, err := s.Load(ctx, kept)
				if err == nil {
					t.Logf("recovered %v after redis came back (kept token found: %v)", time.Since(start), found)
					if found != tc.dataKept {
						t.Errorf("token saved before the outage: found=%v, want %v", found, tc.dataKept)
					}
					break
				}
				if !errors.Is(err, ErrStoreUnavailable) {
					t.Errorf("Load during recovery: %v does not wrap ErrStoreUnavailable", err)
				}
				if time.Since(start) > 3*time.Second {
					t.Fatalf("no recovery within 3s of redis coming back: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s.conn != conn {
				t.Fatal("the store's connection changed")
			}
			// Everything works again without re-provisioning.
			key, rec := redisTestSave(t, s, "after-client", time.Hour)
			if got, found := redisTestMustLoad(t, s, key); !found || got != rec {
				t.Errorf("Load after recovery = %+v, %v", got, found)
			}
			if err := s.AddFailure(ctx, "after-key", time.Minute); err != nil {
				t.Errorf("AddFailure after recovery: %v", err)
			}
			if n, _, err := s.Failures(ctx, "after-key"); err != nil || n != 1 {
				t.Errorf("Failures after recovery = %d, %v; want 1", n, err)
			}
			if n, err := s.RevokeClient(ctx, "after-client"); err != nil || n != 1 {
				t.Errorf("RevokeClient after recovery = %d, %v; want 1", n, err)
			}
			if tc.dataKept {
				if got, found := redisTestMustLoad(t, s, kept); !found || got != keptRec {
					t.Errorf("token saved before the hang: %+v, %v", got, found)
				}
			}
			// The invalidation subscription comes back too.
			deadline := time.Now().Add(3 * time.Second)
			for !s.conn.listening.Load() {
				if time.Now().After(deadline) {
					t.Fatal("the invalidation subscription did not come back within 3s")
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("subscription back %v after redis came back", time.Since(start))
		})
	}
}

// A Redis that restarts empty must not leave a token cached on B valid, not
// even for one poll, whatever cache_ttl is.
func TestRedisStoreRestartedEmptyForgetsCachedTokens(t *testing.T) {
	cases := []struct {
		name     string
		cacheTTL time.Duration
	}{
		{"default cache_ttl", 0},
		{"cache_ttl 10s", 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd := redistest.Start(t)
			a := redisTestInstance(t, rd, 0, 0)
			b := redisTestInstance(t, rd, 1, tc.cacheTTL)
			redisTestWaitListening(t, b.conn)
			key, _ := redisTestSave(t, a, "restart-client", time.Hour)
			if _, found := redisTestMustLoad(t, b, key); !found {
				t.Fatal("token not found")
			}
			if !redisTestCached(b.conn, key) {
				t.Fatal("B did not cache the token")
			}

			rd.Stop()
			start := time.Now()
			_, uncached := redisTestToken(t)
			if _, _, err := b.Load(context.Background(), uncached); !errors.Is(err, ErrStoreUnavailable) {
				t.Errorf("Load of an uncached token while redis is stopped: %v, want ErrStoreUnavailable", err)
			}
			t.Logf("uncached Load failed %v after Stop", time.Since(start))
			rd.Start()

			started := time.Now()
			var recovered time.Duration = -1
			polls := 0
			for {
				_, found, err := b.Load(context.Background(), key)
				polls++
				if found {
					t.Fatalf("%v after the empty restart (poll %d), B finds the token saved before it", time.Since(started), polls)
				}
				if err == nil && recovered < 0 {
					recovered = time.Since(started)
				}
				if recovered >= 0 && b.conn.listening.Load() && time.Since(started) > recovered+300*time.Millisecond {
					break
				}
				if time.Since(started) > 3*time.Second {
					if recovered < 0 {
						t.Fatalf("Load still fails 3s after the restart: %v", err)
					}
					t.Fatal("B's subscription did not come back within 3s")
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("B answers not found %v after Start; %d polls, never found", recovered, polls)
			// New tokens work and are shared again.
			k2, rec2 := redisTestSave(t, a, "restart-client", time.Hour)
			if got, found := redisTestMustLoad(t, b, k2); !found || got != rec2 {
				t.Fatalf("token saved after the restart: %+v, %v", got, found)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Failure counters
// ---------------------------------------------------------------------------

func TestRedisStoreFailures(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	a := redisTestInstance(t, rd, 0, 0)
	b := redisTestInstance(t, rd, 1, 0)
	ctx := context.Background()
	const window = 300 * time.Millisecond

	t.Run("unknown key has no failures", func(t *testing.T) {
		n, end, err := a.Failures(ctx, "nobody")
		if err != nil || n != 0 || !end.IsZero() {
			t.Fatalf("Failures = %d, %v, %v; want 0, zero time", n, end, err)
		}
	})

	t.Run("failures are counted, shared, and the window ends about now+window", func(t *testing.T) {
		start := time.Now()
		for i := range 3 {
			s := a
			if i == 1 {
				s = b // another instance counts into the same window
			}
			if err := s.AddFailure(ctx, "1.2.3.4", window); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range []*RedisStore{a, b} {
			n, end, err := s.Failures(ctx, "1.2.3.4")
			if err != nil || n != 3 {
				t.Fatalf("Failures = %d, %v; want 3", n, err)
			}
			if d := end.Sub(start.Add(window)); d < -100*time.Millisecond || d > 100*time.Millisecond {
				t.Errorf("window end = start%+v, want ≈ start+%v (later failures must not extend it)", end.Sub(start), window)
			}
		}
		if n, _, _ := a.Failures(ctx, "5.6.7.8"); n != 0 {
			t.Errorf("another key has %d failures", n)
		}
		if insp.Exists(ctx, "outergate:f:1.2.3.4").Val() != 1 {
			t.Error("no outergate:f:<key> in Redis")
		}
	})

	t.Run("window expiry resets the count and a new failure starts a new window", func(t *testing.T) {
		if err := a.AddFailure(ctx, "9.9.9.9", window); err != nil {
			t.Fatal(err)
		}
		_, end, err := a.Failures(ctx, "9.9.9.9")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(end) + 50*time.Millisecond)
		if n, end, err := a.Failures(ctx, "9.9.9.9"); err != nil || n != 0 || !end.IsZero() {
			t.Fatalf("after the window: Failures = %d, %v, %v; want 0, zero time", n, end, err)
		}
		start := time.Now()
		if err := a.AddFailure(ctx, "9.9.9.9", window); err != nil {
			t.Fatal(err)
		}
		n, end, err := a.Failures(ctx, "9.9.9.9")
		if err != nil || n != 1 {
			t.Fatalf("new window: Failures = %d, %v; want 1", n, err)
		}
		if d := end.Sub(start.Add(window)); d < -100*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("new window ends at start%+v, want ≈ start+%v", end.Sub(start), window)
		}
	})
}

// ---------------------------------------------------------------------------
// Pool
// ---------------------------------------------------------------------------

func TestRedisStorePoolSurvivesReload(t *testing.T) {
	rd := redistest.Start(t)
	ctx := context.Background()
	cfg := RedisStore{URL: rd.URL()}

	oldCfg := redisTestProvisionNoCleanup(t, cfg)
	key, rec := redisTestSave(t, oldCfg, "pool-client", time.Hour)
	// Reload: the new config is provisioned before the old one is cleaned up.
	newCfg := redisTestProvisionNoCleanup(t, cfg)
	if oldCfg.conn != newCfg.conn {
		t.Fatal("two stores with the same config have different connections")
	}
	if n, ok := redisPool.References(newCfg.key); !ok || n != 2 {
		t.Fatalf("pool references = %d, %v; want 2", n, ok)
	}
	different := redisTestInstance(t, rd, 7, 0)
	if different.conn == newCfg.conn {
		t.Error("a store with another dial_timeout shares the connection")
	}

	if err := oldCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if n, ok := redisPool.References(newCfg.key); !ok || n != 1 {
		t.Fatalf("after the old config's Cleanup: references = %d, %v; want 1", n, ok)
	}
	if got, found := redisTestMustLoad(t, newCfg, key); !found || got != rec {
		t.Fatalf("after the old config's Cleanup, the new one cannot load: %+v, %v", got, found)
	}
	if err := newCfg.conn.client.Ping(ctx).Err(); err != nil {
		t.Fatalf("connection closed by the old config's Cleanup: %v", err)
	}

	conn := newCfg.conn
	start := time.Now()
	if err := newCfg.Cleanup(); err != nil {
		t.Fatal(err)
	}
	// The last Cleanup stops the listener and closes the client; a reload
	// must not hang on it.
	t.Logf("last Cleanup (destruct) took %v", time.Since(start))
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("last Cleanup took %v", d)
	}
	if n, ok := redisPool.References(newCfg.key); ok || n != 0 {
		t.Errorf("after both Cleanups the pool entry remains (%d references)", n)
	}
	if err := conn.client.Ping(ctx).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("Ping after both Cleanups = %v, want redis.ErrClosed", err)
	}
	select {
	case <-conn.done:
	default:
		t.Error("the invalidation listener still runs after both Cleanups")
	}
	// A store provisioned later gets a fresh, working connection.
	again := redisTestProvision(t, cfg)
	if again.conn == conn {
		t.Fatal("a closed connection was reused")
	}
	if _, found := redisTestMustLoad(t, again, key); !found {
		t.Error("the token is gone from Redis")
	}

	var unprovisioned RedisStore
	if err := unprovisioned.Cleanup(); err != nil {
		t.Errorf("Cleanup of an unprovisioned store: %v", err)
	}
}

// ---------------------------------------------------------------------------
// options, identity
// ---------------------------------------------------------------------------

func TestRedisStoreOptions(t *testing.T) {
	const pw = "s3cr3t-pw"
	cases := []struct {
		name    string
		cfg     RedisStore
		wantErr string
		check   func(t *testing.T, o *redis.UniversalOptions)
	}{
		{
			name: "url gives address, user, password and db",
			cfg:  RedisStore{URL: "redis://user:" + pw + "@host:6379/3"},
			check: func(t *testing.T, o *redis.UniversalOptions) {
				if !reflect.DeepEqual(o.Addrs, []string{"host:6379"}) || o.Username != "user" || o.Password != pw || o.DB != 3 {
					t.Errorf("addrs=%q user=%q db=%d password set=%v", o.Addrs, o.Username, o.DB, o.Password == pw)
				}
				if o.TLSConfig != nil {
					t.Error("TLS without rediss:// or tls")
				}
			},
		},
		{
			name: "rediss url turns TLS on",
			cfg:  RedisStore{URL: "rediss://host:6380/0"},
			check: func(t *testing.T, o *redis.UniversalOptions) {
				if o.TLSConfig == nil {
					t.Error("no TLS for rediss://")
				}
			},
		},
		{
			name: "password field is used when the url has none",
			cfg:  RedisStore{URL: "redis://host:6379/0", Password: pw},
			check: func(t *testing.T, o *redis.UniversalOptions) {
				if o.Password != pw {
					t.Error("password field ignored")
				}
			},
		},
		{
			name: "addresses, sentinel master, db and tls",
			cfg:  RedisStore{Addresses: []string{"s1:26379", "s2:26379"}, MasterName: "mymaster", Username: "u", Password: pw, DB: 2, TLS: true},
			check: func(t *testing.T, o *redis.UniversalOptions) {
				if !reflect.DeepEqual(o.Addrs, []string{"s1:26379", "s2:26379"}) || o.MasterName != "mymaster" || o.DB != 2 || o.Username != "u" {
					t.Errorf("addrs=%q master=%q db=%d user=%q", o.Addrs, o.MasterName, o.DB, o.Username)
				}
				if o.TLSConfig == nil || o.TLSConfig.MinVersion < tls.VersionTLS12 {
					t.Errorf("tls: TLSConfig = %+v, want TLS >= 1.2", o.TLSConfig)
				}
			},
		},
		{name: "url and addresses both set is an error", cfg: RedisStore{URL: "redis://h:6379/0", Addresses: []string{"h:6379"}, Password: pw}, wantErr: "not both"},
		{name: "no url or address is an error", cfg: RedisStore{Password: pw}, wantErr: "no url or address"},
		{name: "bad scheme is an error without the password", cfg: RedisStore{URL: "http://user:" + pw + "@host:6379/0"}, wantErr: "bad url"},
		{name: "bad database is an error without the password", cfg: RedisStore{URL: "redis://user:" + pw + "@host:6379/x"}, wantErr: "bad url"},
		{name: "unparsable url (bad port) is an error without the password", cfg: RedisStore{URL: "redis://user:" + pw + "@host:port/0"}, wantErr: "bad url"},
		{name: "unparsable url (bad escape in the password) is an error without the password", cfg: RedisStore{URL: "redis://user:" + pw + "%zz@host:6379/0"}, wantErr: "bad url"},
		{name: "unparsable url with the password field is an error without the password", cfg: RedisStore{URL: "redis://host:port/0", Password: pw}, wantErr: "bad url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.cfg
			s.Timeout = caddy.Duration(2 * time.Second)
			s.DialTimeout = caddy.Duration(300 * time.Millisecond)
			o, err := s.options()
			if err != nil && strings.Contains(err.Error(), pw) {
				t.Errorf("error contains the password: %v", err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !o.DisableIdentity {
				t.Error("DisableIdentity is false: Debian's Redis 7.0 rejects CLIENT SETINFO")
			}
			if o.MaxRetries < 0 || o.MaxRetries > 2 {
				t.Errorf("MaxRetries = %d, want 0..2", o.MaxRetries)
			}
			if o.DialTimeout != 300*time.Millisecond {
				t.Errorf("DialTimeout = %v, want the configured 300ms", o.DialTimeout)
			}
			for name, d := range map[string]time.Duration{"ReadTimeout": o.ReadTimeout, "WriteTimeout": o.WriteTimeout, "PoolTimeout": o.PoolTimeout} {
				if d <= 0 || d > 2*time.Second {
					t.Errorf("%s = %v, want in (0, Timeout=2s]", name, d)
				}
			}
			if !o.ContextTimeoutEnabled {
				t.Error("ContextTimeoutEnabled is false: per-operation deadlines are ignored")
			}
			if o.MaxRetryBackoff > 500*time.Millisecond {
				t.Errorf("MaxRetryBackoff = %v", o.MaxRetryBackoff)
			}
			if tc.check != nil {
				tc.check(t, o)
			}
			if id := s.identity(o); strings.Contains(id, pw) {
				t.Errorf("identity %q contains the password", id)
			}
		})
	}

	t.Run("identity separates configs and never shows the password", func(t *testing.T) {
		id := func(cfg RedisStore) string {
			cfg.Timeout, cfg.DialTimeout = caddy.Duration(time.Second), caddy.Duration(500*time.Millisecond)
			o, err := cfg.options()
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.identity(o)
			if strings.Contains(s, pw) || strings.Contains(s, "other-pw") {
				t.Errorf("identity %q contains a password", s)
			}
			return s
		}
		base := RedisStore{URL: "redis://user:" + pw + "@host:6379/3"}
		if id(base) != id(base) {
			t.Error("identity of one config is not stable")
		}
		for name, other := range map[string]RedisStore{
			"password":     {URL: "redis://user:other-pw@host:6379/3"},
			"db":           {URL: "redis://user:" + pw + "@host:6379/4"},
			"user":         {URL: "redis://user2:" + pw + "@host:6379/3"},
			"host":         {URL: "redis://user:" + pw + "@host2:6379/3"},
			"key_prefix":   {URL: "redis://user:" + pw + "@host:6379/3", KeyPrefix: "x:"},
			"cache_ttl":    {URL: "redis://user:" + pw + "@host:6379/3", CacheTTL: caddy.Duration(time.Minute)},
			"tls":          {URL: "redis://user:" + pw + "@host:6379/3", TLS: true},
			"replicas":     {URL: "redis://user:" + pw + "@host:6379/3", Replicas: 2},
			"password url": {URL: "redis://user@host:6379/3", Password: "other-pw"},
		} {
			if id(other) == id(base) {
				t.Errorf("configs differing in %s share an identity", name)
			}
		}
	})

	t.Run("provision error does not contain the password", func(t *testing.T) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		s := &RedisStore{URL: "redis://user:" + pw + "@host:port/0"}
		err := s.Provision(ctx)
		if err == nil {
			_ = s.Cleanup()
			t.Fatal("Provision accepted a bad url")
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Provision error contains the password: %v", err)
		}
	})
}

// ---------------------------------------------------------------------------
// Caddyfile
// ---------------------------------------------------------------------------

func TestRedisStoreUnmarshalCaddyfile(t *testing.T) {
	cases := []struct {
		name    string
		input   string
		want    RedisStore
		wantErr string
	}{
		{
			name:  "url argument",
			input: `redis redis://h:6379/0`,
			want:  RedisStore{URL: "redis://h:6379/0"},
		},
		{
			name:  "bare module name",
			input: `redis`,
			want:  RedisStore{},
		},
		{
			name: "block with every subdirective",
			input: `redis {
				address h1:6379 h2:6379
				address h3:6379
				master_name mymaster
				username gw
				password {env.REDIS_PASSWORD}
				db 2
				tls
				key_prefix og:
				dial_timeout 250ms
				timeout 2s
				cache_ttl 500ms
				replicas 2
			}`,
			want: RedisStore{
				Addresses:   []string{"h1:6379", "h2:6379", "h3:6379"},
				MasterName:  "mymaster",
				Username:    "gw",
				Password:    "{env.REDIS_PASSWORD}",
				DB:          2,
				TLS:         true,
				KeyPrefix:   "og:",
				DialTimeout: caddy.Duration(250 * time.Millisecond),
				Timeout:     caddy.Duration(2 * time.Second),
				CacheTTL:    caddy.Duration(500 * time.Millisecond),
				Replicas:    2,
			},
		},
		{name: "replicas off", input: "redis {\n\treplicas off\n}", want: RedisStore{Replicas: -1}},
		{name: "replicas 0 is off", input: "redis {\n\treplicas 0\n}", want: RedisStore{Replicas: -1}},
		{name: "replicas negative", input: "redis {\n\treplicas -1\n}", wantErr: "replicas"},
		{name: "replicas not a number", input: "redis {\n\treplicas all\n}", wantErr: "replicas"},
		{name: "replicas without value", input: "redis {\n\treplicas\n}", wantErr: "wrong argument count"},
		{
			name:  "url with a block",
			input: "redis rediss://h:6380/1 {\n\tcache_ttl -1s\n}",
			want:  RedisStore{URL: "rediss://h:6380/1", CacheTTL: caddy.Duration(-time.Second)},
		},
		{name: "two urls", input: `redis redis://a redis://b`, wantErr: "wrong argument count"},
		{name: "unknown subdirective", input: "redis {\n\tbogus 1\n}", wantErr: "unrecognized redis store subdirective"},
		{name: "address without value", input: "redis {\n\taddress\n}", wantErr: "wrong argument count"},
		{name: "master_name without value", input: "redis {\n\tmaster_name\n}", wantErr: "wrong argument count"},
		{name: "username with two values", input: "redis {\n\tusername a b\n}", wantErr: "wrong argument count"},
		{name: "password without value", input: "redis {\n\tpassword\n}", wantErr: "wrong argument count"},
		{name: "key_prefix without value", input: "redis {\n\tkey_prefix\n}", wantErr: "wrong argument count"},
		{name: "db not a number", input: "redis {\n\tdb x\n}", wantErr: "db"},
		{name: "db negative", input: "redis {\n\tdb -1\n}", wantErr: "db"},
		{name: "db with trailing garbage", input: "redis {\n\tdb 3x\n}", wantErr: "db"},
		{name: "db without value", input: "redis {\n\tdb\n}", wantErr: "wrong argument count"},
		{name: "tls with an argument", input: "redis {\n\ttls yes\n}", wantErr: "wrong argument count"},
		{name: "bad dial_timeout", input: "redis {\n\tdial_timeout soon\n}", wantErr: "dial_timeout"},
		{name: "bad timeout", input: "redis {\n\ttimeout 1x\n}", wantErr: "timeout"},
		{name: "bad cache_ttl", input: "redis {\n\tcache_ttl forever\n}", wantErr: "cache_ttl"},
		{name: "timeout without value", input: "redis {\n\ttimeout\n}", wantErr: "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var s RedisStore
			err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q (parsed %+v)", err, tc.wantErr, s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, tc.want) {
				t.Fatalf("parsed %+v\nwant   %+v", s, tc.want)
			}
		})
	}

	t.Run("store directive through caddyfile.UnmarshalModule", func(t *testing.T) {
		d := caddyfile.NewTestDispenser("store redis redis://h:6379/0 {\n\tkey_prefix x:\n}")
		d.Next() // store
		if !d.NextArg() {
			t.Fatal("no module name")
		}
		unm, err := caddyfile.UnmarshalModule(d, "outergate.stores."+d.Val())
		if err != nil {
			t.Fatal(err)
		}
		s, ok := unm.(*RedisStore)
		if !ok {
			t.Fatalf("module is %T", unm)
		}
		if s.URL != "redis://h:6379/0" || s.KeyPrefix != "x:" {
			t.Fatalf("parsed %+v", s)
		}
	})

	t.Run("provision expands the password placeholder", func(t *testing.T) {
		rd := redistest.Start(t)
		const secret = "env-s3cret"
		t.Setenv("REDIS_PASSWORD", secret)
		var s RedisStore
		input := "redis {\n\taddress " + rd.Addr() + "\n\tpassword {env.REDIS_PASSWORD}\n\tkey_prefix envpw:\n}"
		if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Fatal(err)
		}
		if reply, err := rd.Command("CONFIG", "SET", "requirepass", secret); err != nil || reply != "+OK" {
			t.Fatalf("CONFIG SET requirepass: %q %v", reply, err)
		}
		p := redisTestProvision(t, s)
		if p.Password != secret {
			t.Fatalf("Password after Provision = %q, want the expanded env var", p.Password)
		}
		if strings.Contains(p.key, secret) {
			t.Errorf("pool key %q contains the password", p.key)
		}
		// It authenticates with it: Redis now requires the password.
		key, rec := redisTestSave(t, p, "env-client", time.Hour)
		if got, found := redisTestMustLoad(t, p, key); !found || got != rec {
			t.Fatalf("Load = %+v, %v", got, found)
		}
		// A wrong password fails closed, without showing either password.
		t.Setenv("REDIS_PASSWORD", "wrong-pw")
		var w RedisStore
		if err := w.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Fatal(err)
		}
		wp := redisTestProvision(t, w)
		err := wp.Save(context.Background(), key, rec, 0)
		if !errors.Is(err, ErrStoreUnavailable) {
			t.Errorf("Save with a wrong password: %v, want ErrStoreUnavailable", err)
		}
		if err != nil && (strings.Contains(err.Error(), "wrong-pw") || strings.Contains(err.Error(), secret)) {
			t.Errorf("error shows a password: %v", err)
		}
	})
}

// TestRedisStoreLockouts runs the lockout protocol on two instances
// sharing one Redis, and reads a counter left by an earlier version.
func TestRedisStoreLockouts(t *testing.T) {
	rd := redistest.Start(t)
	a := redisTestInstance(t, rd, 0, 0)
	b := redisTestInstance(t, rd, 1, 0)
	checkLockouts(t, a, b)

	insp := redisTestInspector(t, rd)
	ctx := context.Background()
	if err := insp.Set(ctx, "outergate:f:legacy", "7", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if n, _, err := a.Failures(ctx, "legacy"); err != nil || n != 7 {
		t.Fatalf("legacy counter read as %d, %v; want 7", n, err)
	}
	if _, ok := lockedOut(a.Admit(ctx, Lockout{Key: "legacy", Max: 7, Window: time.Minute})); !ok {
		t.Fatal("a legacy counter at the limit admitted a success")
	}
	if err := a.Admit(ctx, Lockout{Key: "legacy", Max: 10, Window: time.Minute, Reset: true}); err != nil {
		t.Fatalf("success over a legacy counter: %v", err)
	}
	if n, _, _ := a.Failures(ctx, "legacy"); n != 0 {
		t.Fatalf("legacy counter after a resetting success: %d", n)
	}
	// A failure counted over a legacy counter goes on from its count, in
	// its window: replacing it with a fresh count would unlock the key.
	legacy := func(key string, n int) time.Time {
		t.Helper()
		if err := insp.Set(ctx, "outergate:f:"+key, n, 40*time.Second).Err(); err != nil {
			t.Fatal(err)
		}
		return time.Now().Add(40 * time.Second)
	}
	end := legacy("legacy-count", 7)
	counts, err := a.CountFailures(ctx, Lockout{Key: "legacy-count", Max: 7, Window: time.Hour},
		Lockout{Key: "fresh-count", Max: 7, Window: time.Hour})
	if err != nil || counts[0].N != 8 || counts[1].N != 1 {
		t.Fatalf("CountFailures over a legacy counter of 7 = %v, %v; want 8 (and 1 on a fresh key)", counts, err)
	}
	if d := counts[0].End.Sub(end); d < -5*time.Second || d > 5*time.Second {
		t.Fatalf("the legacy counter's window ends in %v, want its own (about 40s), not a new one", time.Until(counts[0].End))
	}
	if _, ok := lockedOut(b.Admit(ctx, Lockout{Key: "legacy-count", Max: 7, Window: time.Hour})); !ok {
		t.Fatal("a legacy counter past its limit admitted a success after a failure was counted")
	}
	legacy("legacy-add", 3)
	if err := a.AddFailure(ctx, "legacy-add", time.Hour); err != nil {
		t.Fatal(err)
	}
	if n, end, err := b.Failures(ctx, "legacy-add"); err != nil || n != 4 || time.Until(end) > time.Minute {
		t.Fatalf("AddFailure over a legacy counter of 3: %d until %v, %v; want 4 in its window", n, end, err)
	}
}

package outergate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/outergate/outergate/internal/redistest"
)

// redisTestTopologyInstance provisions "instance n" on the given
// addresses (and master name for Sentinel), as redisTestInstance does for
// one server.
func redisTestTopologyInstance(t *testing.T, addrs []string, master string, n int, cacheTTL time.Duration) *RedisStore {
	t.Helper()
	return redisTestProvision(t, RedisStore{
		Addresses:   addrs,
		MasterName:  master,
		DialTimeout: caddy.Duration(DefaultRedisDialTimeout + time.Duration(n)*time.Millisecond),
		CacheTTL:    caddy.Duration(cacheTTL),
	})
}

// redisTestWaitRefused fails the test unless s refuses key within 2 s (the
// bound for a revocation to reach a cache of another instance).
func redisTestWaitRefused(t *testing.T, s *RedisStore, key TokenHash) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, found := redisTestMustLoad(t, s, key); !found {
			return
		}
		if time.Now().After(deadline) {
			t.Error("a revoked or evicted token is still accepted by the other instance after 2 s")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// redisTestDataOps runs the store's operations on two instances of one
// topology: tokens of many clients saved on one and loaded on the other,
// counts, one revocation, a revoke-all, the cap and failure counters. It
// returns the client ids used.
func redisTestDataOps(t *testing.T, a, b *RedisStore) []string {
	t.Helper()
	ctx := context.Background()
	var clients []string
	keys := map[string][]TokenHash{}
	for i := range 30 {
		client := fmt.Sprintf("topo-client-%02d", i)
		clients = append(clients, client)
		for j := range 2 {
			s := a
			if j == 1 {
				s = b
			}
			key, rec := redisTestSave(t, s, client, time.Hour)
			keys[client] = append(keys[client], key)
			for _, other := range []*RedisStore{a, b} {
				if got, found := redisTestMustLoad(t, other, key); !found || got != rec {
					t.Fatalf("Load of %s's token = %+v, %v; want the saved record", client, got, found)
				}
			}
		}
	}
	for _, s := range []*RedisStore{a, b} {
		if n, err := s.CountClient(ctx, clients[0]); err != nil || n != 2 {
			t.Errorf("CountClient = %d, %v; want 2", n, err)
		}
	}

	// One token, on B: A refuses it, the client's other token lives.
	if ok, err := b.RevokeToken(ctx, keys[clients[0]][0]); err != nil || !ok {
		t.Fatalf("RevokeToken = %v, %v", ok, err)
	}
	redisTestWaitRefused(t, a, keys[clients[0]][0])
	if rec, found := redisTestMustLoad(t, a, keys[clients[0]][0]); found || !rec.Revoked {
		t.Errorf("revoked token: found=%v revoked=%v; want a tombstone", found, rec.Revoked)
	}
	if _, found := redisTestMustLoad(t, a, keys[clients[0]][1]); !found {
		t.Error("the client's other token went with the revoked one")
	}
	if n, err := a.CountClient(ctx, clients[0]); err != nil || n != 1 {
		t.Errorf("CountClient after one revocation = %d, %v; want 1", n, err)
	}

	// All of a client, on A.
	if n, err := a.RevokeClient(ctx, clients[1]); err != nil || n != 2 {
		t.Fatalf("RevokeClient = %d, %v; want 2", n, err)
	}
	for _, k := range keys[clients[1]] {
		redisTestWaitRefused(t, b, k)
	}

	// The cap: saving a fourth token with max 3 evicts the oldest.
	const capped = "topo-capped"
	var capKeys []TokenHash
	for i := range 4 {
		_, key := redisTestToken(t)
		s := a
		if i%2 == 1 {
			s = b
		}
		if err := s.Save(ctx, key, redisTestRecord(capped, time.Hour), 3); err != nil {
			t.Fatalf("Save with cap: %v", err)
		}
		capKeys = append(capKeys, key)
	}
	redisTestWaitRefused(t, b, capKeys[0])
	for _, k := range capKeys[1:] {
		if _, found := redisTestMustLoad(t, a, k); !found {
			t.Error("a token within the cap was evicted")
		}
	}
	if n, err := b.CountClient(ctx, capped); err != nil || n != 3 {
		t.Errorf("CountClient of the capped client = %d, %v; want 3", n, err)
	}

	// Failure counters are shared.
	for _, s := range []*RedisStore{a, b, a} {
		if err := s.AddFailure(ctx, "addr:203.0.113.9", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n, until, err := b.Failures(ctx, "addr:203.0.113.9"); err != nil || n != 3 || time.Until(until) < 50*time.Second {
		t.Errorf("Failures = %d, %s, %v; want 3 in a one-minute window", n, time.Until(until), err)
	}
	if err := b.ResetFailures(ctx, "addr:203.0.113.9"); err != nil {
		t.Fatal(err)
	}
	if n, _, err := a.Failures(ctx, "addr:203.0.113.9"); err != nil || n != 0 {
		t.Errorf("Failures after reset = %d, %v", n, err)
	}
	return clients
}

// TestRedisStoreCluster runs the store on a real 3-master/3-replica
// Cluster: every operation works with keys on every master (no CROSSSLOT),
// each write is on its replica when Save returns (WAIT), and after a
// master's kill -9 both instances save and load again within 5 s of the
// promotion, with no acknowledged token lost.
func TestRedisStoreCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	a := redisTestTopologyInstance(t, c.Addrs(), "", 0, time.Second)
	b := redisTestTopologyInstance(t, c.Addrs(), "", 1, time.Second)
	if a.conn.mode != redisCluster || a.Replicas != 1 {
		t.Fatalf("mode %s, replicas %d; want cluster with the default of 1", a.conn.mode, a.Replicas)
	}
	clients := redisTestDataOps(t, a, b)
	ctx := context.Background()

	// Keys on every master, and each master's replica holds its keys.
	for _, m := range c.Masters() {
		rc := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
		tk, _ := rc.Keys(ctx, "outergate:t:*").Result()
		ck, _ := rc.Keys(ctx, "outergate:c:*").Result()
		_ = rc.Close()
		if len(tk) == 0 || len(ck) == 0 {
			t.Errorf("master %s holds %d tokens and %d indexes; want keys on every master", m.Addr(), len(tk), len(ck))
		}
	}
	var acked []TokenHash
	for i := range 30 {
		key, _ := redisTestSave(t, a, clients[i], time.Hour)
		acked = append(acked, key)
	}
	// WAIT: the token is on the replica of its master as Save returns.
	for _, key := range acked[:5] {
		tk := a.conn.tokenKey(key)
		node, err := a.conn.cluster.MasterForKey(ctx, tk)
		if err != nil {
			t.Fatal(err)
		}
		var master *redistest.Server
		for _, n := range c.Nodes {
			if n.Addr() == node.Options().Addr {
				master = n
			}
		}
		r := c.ReplicaOf(master)
		if r == nil {
			t.Fatalf("no replica of %s", node.Options().Addr)
		}
		// A replica answers MOVED for the keys of its master unless the
		// connection sent READONLY: ask on one connection.
		rc := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
		conn := rc.Conn()
		_ = conn.ReadOnly(ctx).Err()
		exists, err := conn.Exists(ctx, tk).Result()
		_ = conn.Close()
		_ = rc.Close()
		if err != nil || exists != 1 {
			t.Errorf("token not on the replica %s when Save returned: %d %v", r.Addr(), exists, err)
		}
	}

	// kill -9 of a master: after the promotion, both instances work again
	// within 5 s, and every acknowledged token is still there.
	m := c.Masters()[0]
	r := c.ReplicaOf(m)
	m.Stop()
	promoted := c.WaitPromoted(r, 20*time.Second)
	for _, s := range []*RedisStore{a, b} {
		deadline := promoted.Add(5 * time.Second)
		for i := 0; ; i++ {
			err := redisTestAllThere(s, acked, clients[i%len(clients)])
			if err == nil {
				break
			}
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("during the failover: %v, want ErrStoreUnavailable or success", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("the store did not work again within 5 s of the promotion: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("store works on both instances %s after the promotion", time.Since(promoted).Round(10*time.Millisecond))

	// Losing a replica costs the guarantee, not availability: once its
	// master no longer counts the dead replica, it acknowledges alone,
	// and writes on every master work again.
	var victim *redistest.Server
	for _, m := range c.Masters() {
		if r := c.ReplicaOf(m); r != nil {
			victim = r
			break
		}
	}
	if victim == nil {
		t.Fatal("no master with a replica left")
	}
	victim.Stop()
	killed := time.Now()
	for _, s := range []*RedisStore{a, b} {
		deadline := killed.Add(redistest.ClusterNodeTimeout + 5*time.Second)
		for i := 0; ; i++ {
			err := redisTestAllThere(s, acked, clients[i%len(clients)])
			if err == nil {
				break
			}
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("after a replica's loss: %v, want ErrStoreUnavailable or success", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("writes did not work again within cluster-node-timeout + 5 s of a replica's loss: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("store works on both instances %s after a replica's kill -9", time.Since(killed).Round(10*time.Millisecond))
}

// redisTestAllThere saves a token of client on every master (one per
// acknowledged token's slot is too many; 30 random slots reach all three)
// and loads every acknowledged token; an acknowledged token that is
// missing is an error that is not ErrStoreUnavailable.
func redisTestAllThere(s *RedisStore, acked []TokenHash, client string) error {
	ctx := context.Background()
	for range 30 {
		_, key := redisTestTokenNoT()
		if err := s.Save(ctx, key, redisTestRecord(client, time.Hour), 0); err != nil {
			return err
		}
	}
	for _, key := range acked {
		_, found, err := s.Load(ctx, key)
		if err != nil {
			return err
		}
		if !found {
			return errors.New("an acknowledged token is gone after the failover")
		}
	}
	return nil
}

// redisTestTokenNoT is redisTestToken without a *testing.T.
func redisTestTokenNoT() (string, TokenHash) {
	tok := fmt.Sprintf("tok_%d_%d", time.Now().UnixNano(), redisTestSeq.Add(1))
	return tok, hashToken(tok)
}

var redisTestSeq atomic.Uint64

// TestRedisStoreSentinel runs the store through real Sentinels (1 master,
// 2 replicas, 3 sentinels): every operation, the replica count taken from
// the Sentinels, the failover fence, and the subscription following the
// master.
func TestRedisStoreSentinel(t *testing.T) {
	st := redistest.StartSentinel(t)
	a := redisTestTopologyInstance(t, st.SentinelAddrs(), redistest.SentinelMasterName, 0, time.Minute)
	b := redisTestTopologyInstance(t, st.SentinelAddrs(), redistest.SentinelMasterName, 1, time.Minute)
	if a.conn.mode != redisSentinel || a.Replicas != replicasAll {
		t.Fatalf("mode %s, replicas %d; want sentinel with the default of every healthy replica", a.conn.mode, a.Replicas)
	}
	redisTestDataOps(t, a, b)
	ctx := context.Background()

	// The Sentinels report both replicas healthy.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if m := a.conn.topo.Load(); m != nil && (*m)[""] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica count from the Sentinels: %v, want 2", a.conn.topo.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The fence: while a failover is announced, writes fail closed.
	a.conn.sentinel.event("+try-failover", "master "+redistest.SentinelMasterName+" 127.0.0.1 1")
	_, key := redisTestToken(t)
	if err := a.Save(ctx, key, redisTestRecord("fenced", time.Hour), 0); !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "failover") {
		t.Errorf("Save during an announced failover: %v, want ErrStoreUnavailable (failover)", err)
	}
	if _, err := a.RevokeToken(ctx, key); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("RevokeToken during an announced failover: %v, want ErrStoreUnavailable", err)
	}
	// The late end of an earlier failover (of another master address)
	// does not lift this one's fence.
	a.conn.sentinel.event("+failover-end", "master "+redistest.SentinelMasterName+" 127.0.0.1 2")
	if err := a.Save(ctx, key, redisTestRecord("fenced", time.Hour), 0); !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "failover") {
		t.Errorf("Save after an earlier failover's end, during another: %v, want ErrStoreUnavailable (failover)", err)
	}
	a.conn.sentinel.event("-failover-abort-not-elected", "master "+redistest.SentinelMasterName+" 127.0.0.1 1")
	if err := a.Save(ctx, key, redisTestRecord("fenced", time.Hour), 0); err != nil {
		t.Errorf("Save after the failover was aborted: %v", err)
	}
	// Another master name's failover is not ours.
	a.conn.sentinel.event("+try-failover", "master other 127.0.0.1 1")
	if a.conn.sentinel.fenced() {
		t.Error("a failover of another master fences this store")
	}

	// Switchover: B caches a token; after the switch, a revocation on A
	// (published on the new master) reaches B's cache within 2 s.
	key, _ = redisTestSave(t, a, "switch-client", time.Hour)
	old := st.Master()
	st.Failover()
	nm, _ := st.WaitNewMaster(old, 30*time.Second)
	deadline = time.Now().Add(10 * time.Second)
	for b.conn.sentinel.masterAddr() != nm.Addr() || !b.conn.cacheLive() {
		if time.Now().After(deadline) {
			t.Fatalf("B did not follow the switch to %s (it has %q, live %v)", nm.Addr(), b.conn.sentinel.masterAddr(), b.conn.cacheLive())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, found := redisTestMustLoad(t, b, key); !found {
		t.Fatal("a token saved before the switchover is gone")
	}
	if !redisTestCached(b.conn, key) {
		t.Fatal("B did not cache the token")
	}
	// Retried until it succeeds (A may still be fenced); an attempt that
	// failed may have applied already, so the last one may find the token
	// no longer live.
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, err := a.RevokeToken(ctx, key)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RevokeToken after the switchover: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	revoked := time.Now()
	for redisTestCached(b.conn, key) {
		if time.Since(revoked) > 2*time.Second {
			t.Fatal("the revocation did not reach B's cache within 2 s of the switchover")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, found := redisTestMustLoad(t, b, key); found {
		t.Error("B accepts the revoked token")
	}

	// After the switch, writes wait for every replica again: the new
	// master counts the replica that follows it (the old master too, once
	// demoted) within a few seconds.
	deadline = time.Now().Add(10 * time.Second)
	for {
		if m := a.conn.topo.Load(); m != nil && (*m)[""] >= 1 && a.conn.replicasFor("") == (*m)[""] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replica counted within 10 s of the switchover: %v", *a.conn.topo.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Losing every replica costs the guarantee, not availability: once
	// the master no longer counts them, it acknowledges alone.
	for _, d := range st.Data {
		if d != nm {
			d.Stop()
		}
	}
	killed := time.Now()
	for _, s := range []*RedisStore{a, b} {
		deadline := killed.Add(5 * time.Second)
		for {
			_, k := redisTestToken(t)
			err := s.Save(ctx, k, redisTestRecord("alone", time.Hour), 0)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrStoreUnavailable) {
				t.Fatalf("after the replicas' loss: %v", err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("writes did not work again within 5 s of losing every replica: %v", err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("store works on both instances %s after both replicas' kill -9", time.Since(killed).Round(10*time.Millisecond))
}

// TestRedisStoreReplicasWait shows the replicas option on a master with
// one replica: with WAIT the token is on the replica when Save returns; a
// replica that hangs makes Save fail closed within Timeout rather than
// acknowledge a write only the master has; with replicas off Save does not
// wait.
func TestRedisStoreReplicasWait(t *testing.T) {
	m := redistest.Start(t)
	r := redistest.StartReplica(t, m)
	ctx := context.Background()
	on := redisTestProvision(t, RedisStore{URL: m.URL(), Replicas: 1, CacheTTL: -1})
	off := redisTestProvision(t, RedisStore{URL: m.URL(), Replicas: -1, CacheTTL: -1,
		DialTimeout: caddy.Duration(DefaultRedisDialTimeout + time.Millisecond)})
	if def := redisTestProvision(t, RedisStore{URL: m.URL(), DialTimeout: caddy.Duration(DefaultRedisDialTimeout + 2*time.Millisecond)}); def.Replicas != 0 {
		t.Errorf("default replicas on a single server = %d, want 0", def.Replicas)
	}
	rc := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = rc.Close() })
	for range 20 {
		key, _ := redisTestSave(t, on, "wait-client", time.Hour)
		if n, err := rc.Exists(ctx, "outergate:t:"+hex.EncodeToString(key[:])).Result(); err != nil || n != 1 {
			t.Fatalf("token not on the replica when Save returned: %d %v", n, err)
		}
	}

	r.Pause()
	defer r.Resume()
	_, key := redisTestToken(t)
	start := time.Now()
	err := on.Save(ctx, key, redisTestRecord("wait-client", time.Hour), 0)
	took := time.Since(start)
	if !errors.Is(err, ErrStoreUnavailable) || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("Save with the replica hung: %v, want ErrStoreUnavailable (replicas)", err)
	}
	if took > time.Duration(DefaultRedisTimeout)+200*time.Millisecond {
		t.Errorf("Save with the replica hung took %s, want within the timeout", took)
	}
	if _, err := on.RevokeToken(ctx, key); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("RevokeToken with the replica hung: %v, want ErrStoreUnavailable", err)
	}
	if err := off.Save(ctx, key, redisTestRecord("wait-client", time.Hour), 0); err != nil {
		t.Errorf("Save with replicas off and the replica hung: %v", err)
	}
	r.Resume()
	_, key = redisTestToken(t)
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := on.Save(ctx, key, redisTestRecord("wait-client", time.Hour), 0)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Save after the replica resumed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisClusterLockouts: on a Cluster, where the lockouts' counters sit
// on other slots than each other and than the token, the lockouts keep
// the contract of one server: concurrent failures get distinct counts,
// a locked key refuses Admit and Save (no token written), and a refused
// success forgets no other lockout's failures.
func TestRedisClusterLockouts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	c := redistest.StartCluster(t)
	a := redisTestTopologyInstance(t, c.Addrs(), "", 0, time.Second)
	b := redisTestTopologyInstance(t, c.Addrs(), "", 1, time.Second)
	checkLockouts(t, a, b)
	// Admit under the limits forgets the failures of the resetting one.
	ctx := t.Context()
	addr := Lockout{Key: "ip:cluster-admit", Max: 5, Window: time.Minute}
	client := Lockout{Key: "client:cluster-admit", Max: 5, Window: time.Minute, Reset: true}
	for range 2 {
		if _, err := a.CountFailures(ctx, addr, client); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Admit(ctx, addr, client); err != nil {
		t.Fatalf("Admit under the limits: %v", err)
	}
	if n, _, _ := a.Failures(ctx, client.Key); n != 0 {
		t.Fatalf("client failures after an admitted success = %d, want 0", n)
	}
	if n, _, _ := a.Failures(ctx, addr.Key); n != 2 {
		t.Fatalf("address failures after an admitted success = %d, want 2 (no reset)", n)
	}
}

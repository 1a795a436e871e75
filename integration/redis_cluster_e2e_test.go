package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outergate/outergate/internal/redistest"
)

// TestRedisClusterE2E runs two gateway instances on a real Redis Cluster
// (3 masters, 3 replicas): tokens of many clients land on every master and
// are accepted by both instances; revocation, caps and the throttle work
// across them; then a planned CLUSTER FAILOVER and a kill -9 of a master
// under load, each with every answer checked, the recovery measured, no
// acknowledged token lost and a revocation made meanwhile honoured on both
// within 2 s.
func TestRedisClusterE2E(t *testing.T) {
	c := redistest.StartCluster(t)
	store := "\t\tstore redis {\n\t\t\taddress " + strings.Join(c.Addrs(), " ") +
		"\n\t\t\ttimeout 1s\n\t\t\tcache_ttl 30s\n\t\t}\n"
	addrs := c.Addrs()
	topoExample(t, "rediscluster.Caddyfile", []string{"REDIS_NODE_1=" + addrs[0], "REDIS_NODE_2=" + addrs[2], "REDIS_NODE_3=" + addrs[4]})
	a, b := topoGateways(t, store)
	toks := topoBasics(t, a, b)

	// Keys are spread: every master holds tokens and client indexes.
	for _, m := range c.Masters() {
		rc := redis.NewClient(&redis.Options{Addr: m.Addr(), DisableIdentity: true})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		tk, err1 := rc.Keys(ctx, "outergate:t:*").Result()
		ck, err2 := rc.Keys(ctx, "outergate:c:*").Result()
		cancel()
		_ = rc.Close()
		if err1 != nil || err2 != nil {
			t.Fatalf("KEYS on %s: %v %v", m.Addr(), err1, err2)
		}
		if len(tk) == 0 || len(ck) == 0 {
			t.Errorf("master %s holds %d token keys and %d client indexes; want keys on every master", m.Addr(), len(tk), len(ck))
		}
	}

	// Planned failover: CLUSTER FAILOVER on the replica of the first master.
	m := c.Masters()[0]
	r := c.ReplicaOf(m)
	if r == nil {
		t.Fatal("no replica")
	}
	topoFailover(t, "cluster CLUSTER FAILOVER", a, b, toks,
		func() { c.Failover(r) },
		func() time.Time { return c.WaitPromoted(r, 20*time.Second) })
	c.WaitHealthy(20 * time.Second)

	// kill -9 of a master (one that still has a replica).
	m = c.Masters()[1]
	r = c.ReplicaOf(m)
	if r == nil {
		t.Fatal("no replica")
	}
	topoFailover(t, "cluster kill -9 master", a, b, toks,
		func() { m.Stop() },
		func() time.Time { return c.WaitPromoted(r, 20*time.Second) })
}

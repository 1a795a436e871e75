package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/internal/redistest"
)

// TestRedisSentinelE2E runs two gateway instances on a real Sentinel setup
// (1 master, 2 replicas, 3 sentinels): shared tokens, revocation, caps and
// the throttle; then a planned SENTINEL FAILOVER and a kill -9 of the
// master under load, each with every answer checked, the recovery
// measured, no acknowledged token lost and a revocation made meanwhile
// honoured on both within 2 s.
func TestRedisSentinelE2E(t *testing.T) {
	st := redistest.StartSentinel(t)
	store := "\t\tstore redis {\n\t\t\taddress " + strings.Join(st.SentinelAddrs(), " ") +
		"\n\t\t\tmaster_name " + redistest.SentinelMasterName +
		"\n\t\t\ttimeout 1s\n\t\t\tcache_ttl 30s\n\t\t}\n"
	sa := st.SentinelAddrs()
	topoExample(t, "sentinel.Caddyfile", []string{"REDIS_SENTINEL_1=" + sa[0], "REDIS_SENTINEL_2=" + sa[1],
		"REDIS_SENTINEL_3=" + sa[2], "REDIS_MASTER_NAME=" + redistest.SentinelMasterName})
	a, b := topoGateways(t, store)
	toks := topoBasics(t, a, b)

	old := st.Master()
	topoFailover(t, "sentinel SENTINEL FAILOVER", a, b, toks,
		st.Failover,
		func() time.Time { _, at := st.WaitNewMaster(old, 30*time.Second); return at })
	cur := st.WaitHealthy(30 * time.Second)

	topoFailover(t, "sentinel kill -9 master", a, b, toks,
		cur.Stop,
		func() time.Time { _, at := st.WaitNewMaster(cur, 30*time.Second); return at })
}

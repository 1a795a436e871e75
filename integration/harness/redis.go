package harness

import (
	"testing"

	"github.com/outergate/outergate/internal/redistest"
)

// Redis is a real redis-server on a free loopback port, owned by one test
// (see internal/redistest, which also starts Cluster and Sentinel setups).
type Redis = redistest.Server

// RequireRedisServer returns the path of redis-server; without it the test
// is skipped, or fails under OUTERGATE_REQUIRE_REDIS=1.
func RequireRedisServer(t testing.TB) string { return redistest.Require(t) }

// StartRedis starts a redis-server without persistence on a free port and
// stops it at the end of the test.
func StartRedis(t testing.TB) *Redis { return redistest.Start(t) }

package outergate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisMode is the Redis topology a store talks to.
type redisMode int

const (
	redisSingle redisMode = iota
	redisSentinel
	redisCluster
)

func (m redisMode) String() string {
	return [...]string{"single", "sentinel", "cluster"}[m]
}

// modeOf tells the topology from the options the way go-redis's
// NewUniversalClient does: a master name means Sentinel, several addresses
// a Cluster.
func modeOf(o *redis.UniversalOptions) redisMode {
	switch {
	case o.MasterName != "":
		return redisSentinel
	case len(o.Addrs) > 1 || o.IsClusterMode:
		return redisCluster
	default:
		return redisSingle
	}
}

// replicasAll is the WAIT count "every replica the master shows healthy":
// replicasFor caps it at the topology's count.
const replicasAll = math.MaxInt32

// defaultReplicas is the WAIT count where the config leaves it unset:
// with Sentinel every healthy replica (Sentinel may promote any of them,
// and picks by the replication offsets its last INFO reported, which can
// be seconds old: a write only some replicas have can be lost to the
// promotion of another), on a Cluster one (a master has one replica
// there), none on a single server.
func defaultReplicas(m redisMode) int {
	switch m {
	case redisSentinel:
		return replicasAll
	case redisCluster:
		return 1
	default:
		return 0
	}
}

// redisConn is the pooled part of a RedisStore: the client, the local
// validation cache and the pub/sub listener that invalidates it, and what
// follows the topology (the Sentinel watcher, the replica counts).
type redisConn struct {
	client   redis.UniversalClient
	cluster  *redis.ClusterClient // set in Cluster mode
	mode     redisMode
	opts     *redis.UniversalOptions
	prefix   string
	timeout  time.Duration
	cacheTTL time.Duration
	logger   *zap.Logger
	channel  string

	// replicas is how many replicas must acknowledge a write (WAIT), at
	// most as many as the topology currently has; 0: no WAIT; replicasAll:
	// every healthy one.
	replicas int
	// topo maps a master's address ("" outside Cluster mode) to how many
	// healthy replicas it has, as last seen; nil until first seen.
	topo atomic.Pointer[map[string]int]

	// sentinel follows the Sentinels' announcements (Sentinel mode only).
	sentinel *sentinelWatch
	// writes is the pipeline concurrent writes share outside a Cluster
	// (store_redis_write.go); nil on a Cluster, whose writes go to each
	// key's master.
	writes *pipeBatch

	cache *cache.Cache // string(TokenHash) -> *TokenRecord
	// gen changes on every invalidation; a Load only caches what it read
	// if gen did not change meanwhile, so a revocation that lands between
	// the Redis read and the insert is not undone.
	gen atomic.Uint64
	// listening is true while the invalidation subscription is live; the
	// cache is neither read nor filled otherwise.
	listening atomic.Bool

	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup // background goroutines other than listen
	once   sync.Once

	psMu sync.Mutex
	ps   *redis.PubSub // the live subscription, closed by Destruct to unblock it
}

// newRedisConn connects with the default replica count of the topology.
func newRedisConn(opts *redis.UniversalOptions, prefix string, timeout, cacheTTL time.Duration, logger *zap.Logger) *redisConn {
	return newRedisConnReplicas(opts, prefix, timeout, cacheTTL, defaultReplicas(modeOf(opts)), logger)
}

// newRedisConnReplicas builds the client for the topology (a Cluster
// client that reloads its slot map every second and on every network
// error; with Sentinel a client that dials the master every Sentinel
// announced last, with a subscription and writes that follow it), and
// starts the background work.
func newRedisConnReplicas(opts *redis.UniversalOptions, prefix string, timeout, cacheTTL time.Duration, replicas int, logger *zap.Logger) *redisConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &redisConn{
		mode:     modeOf(opts),
		opts:     opts,
		prefix:   prefix,
		timeout:  timeout,
		cacheTTL: cacheTTL,
		replicas: max(replicas, 0),
		logger:   logger,
		channel:  prefix + "revoked",
		cache:    cache.New(cacheTTL, time.Minute),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	switch c.mode {
	case redisCluster:
		co := opts.Cluster()
		// go-redis reloads the slot map on MOVED/ASK/READONLY and by
		// default every 60 s; a dead master only makes dials fail, so
		// reload often (and on errors, see fail) to find its promoted
		// replica within a second or two.
		co.ClusterStateReloadInterval = time.Second
		c.cluster = redis.NewClusterClient(co)
		c.client = c.cluster
	case redisSentinel:
		c.sentinel = newSentinelWatch(opts, logger)
		so := opts.Simple()
		so.Addr = opts.MasterName // a label: the dialer finds the master
		so.Dialer = c.sentinel.dial
		c.client = redis.NewClient(so)
		c.sentinel.onSwitch = c.resubscribe
		c.sentinel.onUp = c.flushCache
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.sentinel.run(ctx) }()
	default:
		c.client = redis.NewClient(opts.Simple())
	}
	if c.cluster == nil {
		c.writes = c.newWriteBatch()
	}
	if c.replicas > 0 {
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.watchReplicas(ctx) }()
	}
	if cacheTTL > 0 {
		go c.listen(ctx)
	} else {
		close(c.done)
	}
	return c
}

// Destruct implements caddy.Destructor: stops the listener and closes the
// connections.
func (c *redisConn) Destruct() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		c.psMu.Lock()
		if c.ps != nil {
			_ = c.ps.Close()
		}
		c.psMu.Unlock()
		<-c.done
		if c.sentinel != nil {
			c.sentinel.close()
		}
		c.wg.Wait()
		err = c.client.Close()
	})
	return err
}

func (c *redisConn) tokenKey(key TokenHash) string {
	return c.prefix + "t:" + hex.EncodeToString(key[:])
}

func (c *redisConn) clientKey(clientID string) string {
	return c.prefix + "c:" + clientID
}

func (c *redisConn) failureKey(key string) string {
	return c.prefix + "f:" + key
}

// op bounds one store operation, retries included.
func (c *redisConn) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// unavailable wraps a Redis failure as ErrStoreUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: redis %s: %v", ErrStoreUnavailable, what, err)
}

// fail is unavailable, and in Cluster mode also asks go-redis to reload
// the slot map after anything but a plain reply error: a master that died
// shows up as dial errors only, which go-redis does not take as a reason
// to reload.
func (c *redisConn) fail(what string, err error) error {
	if c.cluster != nil && topologyError(err) {
		c.cluster.ReloadState(context.Background())
	}
	return unavailable(what, err)
}

// topologyError reports whether err may come from a node that died or
// from a slot map that is out of date, rather than from the command.
func topologyError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "LOADING", "MASTERDOWN", "EOF", "connection", "broken pipe"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

// watchReplicas keeps topo up to date twice a second: the master's own
// count of replicas online and acknowledging (per master on a Cluster,
// whose CLUSTER SLOTS lags; with Sentinel, whose view lags too: they
// refresh a replica's state every 10 s, and mid-failover list the old
// master's replicas).
func (c *redisConn) watchReplicas(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		if m, ok := c.readReplicas(ctx); ok {
			c.topo.Store(&m)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *redisConn) readReplicas(ctx context.Context) (map[string]int, bool) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	switch c.mode {
	case redisCluster:
		// Each master's own count, not CLUSTER SLOTS: Redis leaves out of
		// CLUSTER SLOTS a replica whose offset it last heard as 0 (every
		// replica of a new cluster until the first write reaches it, and
		// then until gossip carries the offset), so writes would skip WAIT
		// on masters whose replica is there and in sync. A master that
		// does not answer is left out of the map: writes on it wait for
		// the configured count.
		var mu sync.Mutex
		m := make(map[string]int)
		_ = c.cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			info, err := node.Info(ctx, "replication").Result()
			if err != nil {
				return nil
			}
			mu.Lock()
			m[node.Options().Addr] = onlineReplicas(info)
			mu.Unlock()
			return nil
		})
		return m, len(m) > 0
	default:
		info, err := c.client.Info(ctx, "replication").Result()
		if err != nil {
			return nil, false
		}
		return map[string]int{"": onlineReplicas(info)}, true
	}
}

// replicaLagMax is how long a replica may go without acknowledging the
// master's stream and still count: a replica that hangs longer no longer
// holds writes up.
const replicaLagMax = 5

// onlineReplicas counts, in a master's INFO replication, the replicas
// that are online and acknowledged within replicaLagMax seconds
// ("slave0:ip=...,port=...,state=online,offset=...,lag=0").
func onlineReplicas(info string) int {
	n := 0
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(k, "slave") || k == "slave_read_repl_offset" {
			continue
		}
		fields := map[string]string{}
		for _, kv := range strings.Split(v, ",") {
			if a, b, ok := strings.Cut(kv, "="); ok {
				fields[a] = b
			}
		}
		lag, err := strconv.Atoi(fields["lag"])
		if fields["state"] == "online" && err == nil && lag <= replicaLagMax {
			n++
		}
	}
	return n
}

// replicasFor is how many replicas a write on the master at addr ("" off
// Cluster) waits for: the configured count, or fewer if the topology has
// fewer healthy replicas right now (a Cluster master whose only replica
// was promoted has none); replicasAll before the topology is known is 1.
func (c *redisConn) replicasFor(addr string) int {
	if c.replicas == 0 {
		return 0
	}
	if m := c.topo.Load(); m != nil {
		if n, ok := (*m)[addr]; ok {
			return min(c.replicas, n)
		}
	}
	if c.replicas == replicasAll {
		return 1
	}
	return c.replicas
}

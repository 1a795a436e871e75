package outergate

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisConn is the pooled part of a RedisStore: the client, the local
// validation cache and the pub/sub listener that invalidates it.
type redisConn struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	cacheTTL time.Duration
	logger   *zap.Logger
	channel  string

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
	once   sync.Once

	psMu sync.Mutex
	ps   *redis.PubSub // the live subscription, closed by Destruct to unblock it
}

func newRedisConn(opts *redis.UniversalOptions, prefix string, timeout, cacheTTL time.Duration, logger *zap.Logger) *redisConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &redisConn{
		client:   redis.NewUniversalClient(opts),
		prefix:   prefix,
		timeout:  timeout,
		cacheTTL: cacheTTL,
		logger:   logger,
		channel:  prefix + "revoked",
		cache:    cache.New(cacheTTL, time.Minute),
		cancel:   cancel,
		done:     make(chan struct{}),
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

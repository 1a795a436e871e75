package outergate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// publish announces a revocation; the local cache is dropped first, so the
// revoking instance never depends on its own subscription.
func (c *redisConn) publish(ctx context.Context, what string) {
	c.invalidate(what)
	if err := c.client.Publish(ctx, c.channel, what).Err(); err != nil {
		c.logger.Warn("publishing revocation failed; other instances refuse the token within cache_ttl",
			zap.Duration("cache_ttl", c.cacheTTL), zap.Error(err))
	}
}

// invalidate drops cached validations named by a revocation message:
// "t:<hex hash>" one token, anything else the whole cache.
func (c *redisConn) invalidate(what string) {
	c.gen.Add(1)
	if h, ok := strings.CutPrefix(what, "t:"); ok {
		if raw, err := hex.DecodeString(h); err == nil && len(raw) == sha256.Size {
			c.cache.Delete(string(raw))
			return
		}
	}
	c.cache.Flush()
}

// stopListening marks the subscription dead and drops the cache: while no
// invalidation can arrive, nothing cached may be trusted.
func (c *redisConn) stopListening() {
	c.listening.Store(false)
	c.gen.Add(1)
	c.cache.Flush()
}

// listen keeps the invalidation subscription alive. Receive is used instead
// of Channel() so that every disconnect and resubscribe is seen: the cache
// is dropped on each, because invalidations may have been missed (or Redis
// may have restarted empty).
func (c *redisConn) listen(ctx context.Context) {
	defer close(c.done)
	defer c.stopListening()
	for ctx.Err() == nil {
		c.listenOnce(ctx)
		c.stopListening()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// listenOnce runs one subscription until it fails.
func (c *redisConn) listenOnce(ctx context.Context) {
	c.psMu.Lock()
	if ctx.Err() != nil {
		c.psMu.Unlock()
		return
	}
	var ps *redis.PubSub
	if c.sentinel != nil {
		// Subscribe on the master the Sentinels announced last, with a
		// client of our own: go-redis's failover client would keep an
		// open subscription on a demoted master.
		addr := c.sentinel.masterAddr()
		if addr == "" {
			c.psMu.Unlock()
			return
		}
		o := c.opts.Simple()
		o.Addr = addr
		o.MaxRetries = -1
		sub := redis.NewClient(o)
		defer sub.Close()
		ps = sub.Subscribe(ctx, c.channel)
	} else {
		ps = c.client.Subscribe(ctx, c.channel)
	}
	c.ps = ps
	c.psMu.Unlock()
	defer ps.Close()
	pingPending := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.timeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pingPending {
				// Quiet channel: make sure Redis still answers.
				pingCtx, cancel := context.WithTimeout(ctx, c.timeout)
				err = ps.Ping(pingCtx)
				cancel()
				if err == nil {
					pingPending = true
					continue
				}
			}
			if c.listening.Load() {
				c.logger.Warn("redis invalidation subscription lost; local cache disabled until it is back", zap.Error(err))
			}
			if c.cluster != nil && topologyError(err) {
				c.cluster.ReloadState(ctx)
			}
			return
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				c.gen.Add(1)
				c.cache.Flush()
				c.listening.Store(true)
			}
		case *redis.Message:
			c.invalidate(m.Payload)
		}
	}
}

// resubscribe drops the cache and the current subscription, so that the
// listener subscribes again (on the new master, after a Sentinel switch).
func (c *redisConn) resubscribe() {
	c.stopListening()
	c.psMu.Lock()
	if c.ps != nil {
		_ = c.ps.Close()
	}
	c.psMu.Unlock()
}

// cacheLive reports whether invalidations are known to arrive: the
// subscription is up and, with Sentinel, a Sentinel is being watched, so
// that a master switch (after which the subscription would sit on the old
// master) cannot go unnoticed.
func (c *redisConn) cacheLive() bool {
	return c.cacheTTL > 0 && c.listening.Load() && (c.sentinel == nil || c.sentinel.known())
}

// flushCache forgets every cached validation.
func (c *redisConn) flushCache() {
	c.gen.Add(1)
	c.cache.Flush()
}

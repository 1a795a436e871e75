package outergate

import (
	"context"
	"strconv"
)

// loadShared is the Redis store's Load with the local cache's misses of
// one token coalesced: when a cached validation expires (every cache_ttl)
// while many requests present that token, one of them reads it from Redis
// and the others wait for that read, instead of each sending its own GET
// at the same moment.
//
// Only while the cache is live (the invalidation subscription is up), and
// only among requests that started in the same invalidation generation: a
// request joins a read only if no invalidation arrived on this instance
// between that read's start and its own, so the record it gets is one the
// cache could have given it (a revocation is seen once its invalidation
// arrives, as with the cache). Without a live cache every request reads
// Redis itself. The shared read is not cancelled with the request that
// started it; the store's timeout bounds it.
func (s *RedisStore) loadShared(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	c := s.conn
	if !c.cacheLive() || s.flights == nil {
		return c.load(ctx, key)
	}
	if v, ok := c.cache.Get(string(key[:])); ok {
		return *v.(*TokenRecord), true, nil
	}
	flight := strconv.AppendUint(append(make([]byte, 0, len(key)+20), key[:]...), c.gen.Load(), 10)
	v, err, _ := s.flights.Do(string(flight), func() (any, error) {
		rec, found, err := c.load(context.WithoutCancel(ctx), key)
		return loaded{rec, found}, err
	})
	if err != nil {
		return TokenRecord{}, false, err
	}
	l := v.(loaded)
	return l.rec, l.found, nil
}

// loaded is one shared read's answer.
type loaded struct {
	rec   TokenRecord
	found bool
}

package outergate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisClientsPoll is how often an instance compares its copy of the
// managed clients with Redis's version counter, in case a change
// notification was lost; changes normally arrive at once through pub/sub.
const redisClientsPoll = time.Second

// clientRegistryConn is what the managed clients need from the Redis
// store: its pooled connection, for the go-redis client, the key prefix,
// the operation timeout and its write path (store_redis_write.go: WAIT for
// replicas, the Sentinel failover fence, Cluster routing).
func (s *RedisStore) clientRegistryConn() *redisConn {
	return s.conn
}

// redisClients is the ClientStore of the Redis store. Every managed client
// is one field (its id) of the hash <prefix>{clients}, whose JSON value is
// the record; <prefix>{clients}:v counts changes. Each change is one Lua
// script (hash and counter in one hash slot, so it also runs on a Cluster),
// sent through the Redis store's write path (WAIT for replicas), followed
// by a PUBLISH of the id on <prefix>clients. Every instance keeps
// the whole registry in memory, reloads it when it subscribes, applies each
// notification, and polls the counter every second to catch a lost one:
// a change is in effect everywhere within about a second, and looking a
// client up costs no round trip.
type redisClients struct {
	conn    *redisConn
	client  redis.UniversalClient
	hash    string
	version string
	channel string
	timeout time.Duration
	logger  *zap.Logger

	localClients
	ver int64 // the counter value byID reflects (under mu)

	cancel context.CancelFunc
	done   chan struct{}
}

func newRedisClients(s *RedisStore, logger *zap.Logger) (*redisClients, error) {
	conn := s.clientRegistryConn()
	prefix := conn.prefix
	ctx, cancel := context.WithCancel(context.Background())
	c := &redisClients{
		conn:         conn,
		client:       conn.client,
		hash:         prefix + "{clients}",
		version:      prefix + "{clients}:v",
		channel:      prefix + "clients",
		timeout:      conn.timeout,
		logger:       logger,
		localClients: newLocalClients(),
		cancel:       cancel,
		done:         make(chan struct{}),
	}
	// A first load so that the clients work as soon as the config runs;
	// if Redis is down, the listener loads them when it is back (and
	// nothing is issued or validated meanwhile anyway).
	if err := c.reload(ctx); err != nil {
		logger.Warn("managed clients not loaded yet from redis", zap.Error(err))
	}
	go c.listen(ctx)
	return c, nil
}

// Destruct stops the listener; the connection belongs to the Redis store.
func (c *redisClients) Destruct() error {
	c.cancel()
	<-c.done
	return nil
}

// Get implements ClientStore, reading Redis.
func (c *redisClients) Get(ctx context.Context, id string) (*managedClient, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	raw, err := c.client.HGet(ctx, c.hash, id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("client get", err)
	}
	return c.decode(id, raw)
}

// decode reads a stored record; a Lookup that finds it unchanged keeps the
// record already provisioned.
func (c *redisClients) decode(id string, raw []byte) (*managedClient, error) {
	var rec managedClient
	if err := json.Unmarshal(raw, &rec); err != nil || rec.ID != id {
		return nil, fmt.Errorf("corrupt managed client %q in redis: %v", id, err)
	}
	rec.raw = raw
	return &rec, nil
}

// clientWriteScript changes one client: ARGV[1] the id, ARGV[2] the value
// it must have now ("" for none), ARGV[3] its new value ("" deletes).
// It returns the new change count, -1 if the id exists (create), -2 if it
// is gone, -3 if it changed.
var clientWriteScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  if cur then return -1 end
elseif not cur then return -2
elseif cur ~= ARGV[2] then return -3 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return redis.call('INCR', KEYS[2])`)

// Create implements ClientStore.
func (c *redisClients) Create(ctx context.Context, rec *managedClient) error {
	return c.write(ctx, rec.ID, nil, rec)
}

// Replace implements ClientStore.
func (c *redisClients) Replace(ctx context.Context, old, rec *managedClient) error {
	return c.write(ctx, old.ID, old, rec)
}

// Delete implements ClientStore.
func (c *redisClients) Delete(ctx context.Context, old *managedClient) error {
	return c.write(ctx, old.ID, old, nil)
}

// write runs clientWriteScript, applies the change locally and announces
// it to the other instances.
func (c *redisClients) write(ctx context.Context, id string, old, rec *managedClient) error {
	var want, next []byte
	var err error
	if old != nil {
		if want, err = storedJSON(old); err != nil {
			return err
		}
	}
	if rec != nil {
		if next, err = json.Marshal(rec); err != nil {
			return err
		}
		rec.raw = next
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	// The Redis store's write path: like a token, a change is answered as
	// done only once the required replicas have it (WAIT), and not while
	// the Sentinels announce a failover.
	var res *redis.Cmd
	err = c.conn.write(ctx, c.hash, func(p redis.Pipeliner) {
		res = clientWriteScript.Eval(ctx, p, []string{c.hash, c.version}, id, want, next)
	})
	if err != nil {
		return unavailable("client write", err)
	}
	n, err := res.Int64()
	if err != nil {
		return unavailable("client write", err)
	}
	switch n {
	case -1:
		return ErrClientExists
	case -2:
		return ErrClientNotFound
	case -3:
		return ErrClientChanged
	}
	c.apply(id, rec, n)
	if err := c.client.Publish(ctx, c.channel, id).Err(); err != nil {
		c.logger.Warn("publishing a managed client change failed; other instances see it within a second",
			zap.String("client_id", id), zap.Error(err))
	}
	return nil
}

// apply sets one client as read at change count ver, if byID was at ver or
// ver-1 (then this was the only change); else reloads everything.
func (c *redisClients) apply(id string, rec *managedClient, ver int64) {
	c.mu.Lock()
	inStep := ver == c.ver || ver == c.ver+1
	if inStep {
		if rec == nil {
			delete(c.byID, id)
		} else if cur := c.byID[id]; cur == nil || !sameRecord(cur, rec) {
			c.byID[id] = rec
		}
		c.ver = ver
	}
	c.mu.Unlock()
	if !inStep {
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		if err := c.reload(ctx); err != nil {
			c.logger.Warn("reloading managed clients from redis failed", zap.Error(err))
		}
	}
}

// sameRecord reports whether two records are the same stored value, so
// that a notification of a change already applied keeps the record that
// the handlers have provisioned.
func sameRecord(a, b *managedClient) bool {
	ra, err1 := storedJSON(a)
	rb, err2 := storedJSON(b)
	return err1 == nil && err2 == nil && string(ra) == string(rb)
}

// storedJSON is the JSON a record was stored as.
func storedJSON(rec *managedClient) ([]byte, error) {
	if rec.raw != nil {
		return rec.raw, nil
	}
	return json.Marshal(rec)
}

// reload reads the whole registry and its change count in one
// transaction.
func (c *redisClients) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var all *redis.MapStringStringCmd
	var ver *redis.StringCmd
	_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		all = p.HGetAll(ctx, c.hash)
		ver = p.Get(ctx, c.version)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("client reload", err)
	}
	n, _ := strconv.ParseInt(ver.Val(), 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	byID := make(map[string]*managedClient, len(all.Val()))
	for id, raw := range all.Val() {
		rec, err := c.decode(id, []byte(raw))
		if err != nil {
			c.logger.Error("skipping unreadable managed client", zap.String("client_id", id), zap.Error(err))
			continue
		}
		if cur := c.byID[id]; cur != nil && sameRecord(cur, rec) {
			rec = cur
		}
		byID[id] = rec
	}
	c.byID, c.ver = byID, n
	return nil
}

// refresh applies a notification: it reads the client and the change
// count together.
func (c *redisClients) refresh(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var one *redis.StringCmd
	var ver *redis.StringCmd
	_, err := c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		one = p.HGet(ctx, c.hash, id)
		ver = p.Get(ctx, c.version)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("client refresh", err)
	}
	n, _ := strconv.ParseInt(ver.Val(), 10, 64)
	var rec *managedClient
	if raw, err := one.Bytes(); err == nil {
		if rec, err = c.decode(id, raw); err != nil {
			return err
		}
	}
	c.apply(id, rec, n)
	return nil
}

// poll reloads the registry if its change count moved without a
// notification reaching this instance.
func (c *redisClients) poll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	v, err := c.client.Get(ctx, c.version).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("client poll", err)
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	c.mu.RLock()
	same := n == c.ver
	c.mu.RUnlock()
	if same {
		return nil
	}
	return c.reload(ctx)
}

// listen keeps the change subscription alive, reloading on every
// (re)subscribe, since changes may have been missed meanwhile.
func (c *redisClients) listen(ctx context.Context) {
	defer close(c.done)
	for ctx.Err() == nil {
		c.listenOnce(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (c *redisClients) listenOnce(ctx context.Context) {
	ps := c.client.Subscribe(ctx, c.channel)
	defer ps.Close()
	for ctx.Err() == nil {
		msg, err := ps.ReceiveTimeout(ctx, redisClientsPoll)
		if err != nil {
			var ne interface{ Timeout() bool }
			if ctx.Err() != nil {
				return
			}
			if !errors.As(err, &ne) || !ne.Timeout() {
				return // lost: resubscribe
			}
			if err := c.poll(ctx); err != nil {
				return
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				if err := c.reload(ctx); err != nil {
					c.logger.Warn("reloading managed clients from redis failed", zap.Error(err))
				}
			}
		case *redis.Message:
			if err := c.refresh(ctx, m.Payload); err != nil {
				c.logger.Warn("applying a managed client change failed", zap.Error(err))
			}
		}
	}
}

// Interface guards
var _ ClientStore = (*redisClients)(nil)

package outergate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// save writes the client index entry and the token in one MULTI/EXEC
// (per hash slot on a Cluster, where the index goes first: a crash between
// the two leaves an index entry without a token, never a token that
// revocation cannot find), then evicts the client's earliest issued tokens
// beyond maxPerClient. The index is scored by issue time in microseconds;
// members of expired tokens stay until they are the oldest and go first,
// so the index never holds more than maxPerClient members.
func (c *redisConn) save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int) error {
	ttl := rec.ttl()
	if ttl <= 0 {
		return nil
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	ck := c.clientKey(rec.ClientID)
	member := hex.EncodeToString(key[:])
	_, err = c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, ck, redis.Z{Score: float64(time.Now().UnixMicro()), Member: member})
		// The index lives as long as its longest-lived token (Redis >= 7.0).
		p.ExpireNX(ctx, ck, ttl+time.Second)
		p.ExpireGT(ctx, ck, ttl+time.Second)
		p.Set(ctx, c.tokenKey(key), val, ttl)
		return nil
	})
	if err != nil {
		return unavailable("save", err)
	}
	if maxPerClient <= 0 {
		return nil
	}
	victims, err := capScript.Run(ctx, c.client, []string{ck}, maxPerClient, member).StringSlice()
	if err != nil {
		return unavailable("cap", err)
	}
	for _, v := range victims {
		// Deleted, not tombstoned: a client looping on the token endpoint
		// must not grow Redis with issuance rate × token_ttl.
		if err := c.client.Del(ctx, c.prefix+"t:"+v).Err(); err != nil {
			return unavailable("cap", err)
		}
		c.publish(ctx, "t:"+v)
	}
	return nil
}

// capScript removes the oldest members of a client index beyond ARGV[1],
// never ARGV[2] (the token being issued, which may share its millisecond
// score with others), in one step, so that concurrent issuers never evict
// more than needed.
var capScript = redis.NewScript(`
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over <= 0 then return {} end
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
  if m ~= ARGV[2] and #out < over then out[#out + 1] = m end
end
redis.call('ZREM', KEYS[1], unpack(out))
return out`)

// countClient counts a client's live tokens: the members of its index
// whose token is there, not expired and not revoked.
func (c *redisConn) countClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	members, err := c.client.ZRange(ctx, c.clientKey(clientID), 0, -1).Result()
	if err != nil {
		return 0, unavailable("count", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = c.prefix + "t:" + m
	}
	vals := make([]*redis.StringCmd, len(keys))
	_, err = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			vals[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, unavailable("count", err)
	}
	n := 0
	now := time.Now()
	for _, v := range vals {
		var rec TokenRecord
		if b, err := v.Bytes(); err == nil && json.Unmarshal(b, &rec) == nil && !rec.Revoked && !rec.expired(now) {
			n++
		}
	}
	return n, nil
}

// load reads a token, from the local cache while the invalidation
// subscription is live.
func (c *redisConn) load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	listening := c.cacheTTL > 0 && c.listening.Load()
	if listening {
		if v, ok := c.cache.Get(string(key[:])); ok {
			return *v.(*TokenRecord), true, nil
		}
	}
	gen := c.gen.Load()
	ctx, cancel := c.op(ctx)
	defer cancel()
	rec, found, err := c.read(ctx, key)
	if err != nil || !found {
		return rec, found, err
	}
	if listening && c.listening.Load() && c.gen.Load() == gen {
		ttl := min(c.cacheTTL, rec.ttl())
		if ttl > 0 {
			c.cache.Set(string(key[:]), &rec, ttl)
		}
	}
	return rec, true, nil
}

// read reads a token from Redis; found is false for unknown tokens and
// tombstones (whose record has Revoked set).
func (c *redisConn) read(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	val, err := c.client.Get(ctx, c.tokenKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return TokenRecord{}, false, nil
	}
	if err != nil {
		return TokenRecord{}, false, unavailable("load", err)
	}
	var rec TokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		return TokenRecord{}, false, unavailable("load", fmt.Errorf("corrupt record: %w", err))
	}
	return rec, !rec.Revoked, nil
}

// tombstoneScript turns a live token into a tombstone that keeps the
// token's TTL, and drops it from its client's index, in one step. It
// returns 1 if the token was live.
var tombstoneScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local rec = cjson.decode(v)
if rec['r'] then return 0 end
rec['r'] = true
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1`)

// tombstone revokes one token by its hex hash; the index entry is removed
// by the caller.
func (c *redisConn) tombstone(ctx context.Context, member string) (bool, error) {
	n, err := tombstoneScript.Run(ctx, c.client, []string{c.prefix + "t:" + member}).Int()
	if err != nil {
		return false, unavailable("revoke", err)
	}
	return n == 1, nil
}

// revokeToken revokes one token and tells every instance.
func (c *redisConn) revokeToken(ctx context.Context, key TokenHash) (bool, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	member := hex.EncodeToString(key[:])
	rec, _, err := c.read(ctx, key)
	if err != nil {
		return false, err
	}
	live, err := c.tombstone(ctx, member)
	if err != nil {
		return false, err
	}
	if rec.ClientID != "" {
		c.client.ZRem(ctx, c.clientKey(rec.ClientID), member)
	}
	c.publish(ctx, "t:"+member)
	return live, nil
}

// revokeClient revokes every live token of a client and tells every
// instance.
func (c *redisConn) revokeClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	ck := c.clientKey(clientID)
	members, err := c.client.ZRange(ctx, ck, 0, -1).Result()
	if err != nil {
		return 0, unavailable("revoke", err)
	}
	n := 0
	for _, m := range members {
		live, err := c.tombstone(ctx, m)
		if err != nil {
			return n, err
		}
		if live {
			n++
		}
	}
	if len(members) > 0 {
		// Only the members read: a token saved meanwhile stays indexed.
		args := make([]any, len(members))
		for i, m := range members {
			args[i] = m
		}
		c.client.ZRem(ctx, ck, args...)
	}
	c.publish(ctx, "c:"+clientID)
	return n, nil
}

// failureScript counts a failure and starts its window on the first one.
var failureScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

func (c *redisConn) failures(ctx context.Context, key string) (int, time.Time, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	fk := c.failureKey(key)
	var get *redis.StringCmd
	var pttl *redis.DurationCmd
	_, err := c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, fk)
		pttl = p.PTTL(ctx, fk)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, unavailable("failures", err)
	}
	n, err := get.Int()
	if err != nil {
		return 0, time.Time{}, nil
	}
	return n, time.Now().Add(pttl.Val()), nil
}

func (c *redisConn) addFailure(ctx context.Context, key string, window time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := failureScript.Run(ctx, c.client, []string{c.failureKey(key)}, window.Milliseconds()).Err(); err != nil {
		return unavailable("add failure", err)
	}
	return nil
}

package outergate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// save issues a token in ordered writes, each acknowledged by the
// required replicas (WAIT) before the next:
//
//  1. the client index (ZADD, on the client's slot), which also names the
//     client's oldest tokens beyond maxPerClient;
//  2. the token (SET, on the token's own slot);
//  3. the evicted tokens (DEL, on their slots), then their index entries.
//
// On a Cluster the index and the token live on different masters (the
// token's key must be found from the token alone), so no transaction can
// hold both; the order is what keeps revocation complete: every live token
// is in its client's index before the token exists, and an evicted token
// leaves the index only after it is gone. A crash or failure between the
// steps leaves at most an index entry without a token (counted as nothing,
// and evicted first when the client next reaches its cap) or an evicted
// token not yet deleted but still indexed, so still revocable; the token
// being issued is answered only after every step succeeded, so a token
// nobody holds is the worst that is left behind. The index is scored by
// issue time in microseconds, tombstones by 0 (revokeToken), so the cap
// evicts tombstones first, then the oldest tokens.
//
// Toward one round trip per issuance: on one server or Sentinel every key
// is on the master, so the steps can become one script. On a Cluster, one
// script per slot group (the index and cap on the client's slot, the token
// on its own), sent together, one pipeline per master: the order across
// masters is then lost, which stays safe because the token is answered
// only after both acknowledged, and a token key without its index entry is
// one nobody was given. The deletes of evicted tokens are the remaining
// step; they stay revocable meanwhile because they leave the index last.
// Revoked tokens stay in the index at score 0 (revokeToken), so the cap
// counts them and evicts them first.
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
	tk := c.tokenKey(key)
	member := hex.EncodeToString(key[:])
	var victimsCmd *redis.Cmd
	err = c.write(ctx, ck, func(p redis.Pipeliner) {
		victimsCmd = indexScript.Eval(ctx, p, []string{ck},
			time.Now().UnixMicro(), member, (ttl + time.Second).Milliseconds(), maxPerClient)
	})
	if err != nil {
		return c.fail("save index", err)
	}
	victims, err := victimsCmd.StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return c.fail("save index", err)
	}
	if err := c.write(ctx, tk, func(p redis.Pipeliner) { p.Set(ctx, tk, val, ttl) }); err != nil {
		return c.fail("save", err)
	}
	if len(victims) == 0 {
		return nil
	}
	keys := make([]string, len(victims))
	for i, v := range victims {
		keys[i] = c.prefix + "t:" + v
	}
	// Deleted, not tombstoned: a client looping on the token endpoint
	// must not grow Redis with issuance rate × token_ttl.
	if err := c.writeKeys(ctx, keys, func(p redis.Pipeliner, k string) { p.Del(ctx, k) }); err != nil {
		return c.fail("cap", err)
	}
	args := make([]any, len(victims))
	for i, v := range victims {
		args[i] = v
	}
	if err := c.client.ZRem(ctx, ck, args...).Err(); err != nil {
		return c.fail("cap", err)
	}
	for _, v := range victims {
		c.publish(ctx, "t:"+v)
	}
	return nil
}

// indexScript adds ARGV[2] to the client index KEYS[1] with score ARGV[1],
// keeps the index alive as long as its longest-lived token (ARGV[3] ms),
// and returns the oldest members beyond the cap ARGV[4] (never ARGV[2]
// itself, which may share its score with others). It does not remove them:
// save deletes their tokens first. Two concurrent issuers pick the same
// oldest members, so neither evicts more than needed.
var indexScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT')
local cap = tonumber(ARGV[4])
if cap <= 0 then return {} end
local over = redis.call('ZCARD', KEYS[1]) - cap
if over <= 0 then return {} end
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
  if m ~= ARGV[2] and #out < over then out[#out + 1] = m end
end
return out`)

// countClient counts a client's live tokens: the members of its index
// whose token is there, not expired and not revoked.
func (c *redisConn) countClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	members, err := c.client.ZRange(ctx, c.clientKey(clientID), 0, -1).Result()
	if err != nil {
		return 0, c.fail("count", err)
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
		return 0, c.fail("count", err)
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
	listening := c.cacheLive()
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
	if listening && c.cacheLive() && c.gen.Load() == gen {
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
		return TokenRecord{}, false, c.fail("load", err)
	}
	var rec TokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		return TokenRecord{}, false, c.fail("load", fmt.Errorf("corrupt record: %w", err))
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

// tombstones revokes tokens by their hex hashes, each on its master and
// acknowledged by the required replicas, and returns how many were live;
// index entries are removed by the caller.
func (c *redisConn) tombstones(ctx context.Context, members []string) (int, error) {
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = c.prefix + "t:" + m
	}
	var mu sync.Mutex
	cmds := make([]*redis.Cmd, 0, len(keys))
	err := c.writeKeys(ctx, keys, func(p redis.Pipeliner, k string) {
		cmd := tombstoneScript.Eval(ctx, p, []string{k})
		mu.Lock()
		cmds = append(cmds, cmd)
		mu.Unlock()
	})
	if err != nil {
		return 0, c.fail("revoke", err)
	}
	n := 0
	for _, cmd := range cmds {
		if v, err := cmd.Int(); err == nil && v == 1 {
			n++
		}
	}
	return n, nil
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
	live, err := c.tombstones(ctx, []string{member})
	if err != nil {
		return false, err
	}
	if rec.ClientID != "" {
		// Issue 12 item 11: the tombstone stays in its client's index,
		// rescored to 0 so that the cap (indexScript, oldest score first)
		// evicts tombstones before live tokens and counts them: a client
		// cannot keep more than max_tokens_per_client records, revoked or
		// not. XX: a member the cap already removed is not added back.
		c.client.ZAddXX(ctx, c.clientKey(rec.ClientID), redis.Z{Score: 0, Member: member})
	}
	c.publish(ctx, "t:"+member)
	return live == 1, nil
}

// revokeClient revokes every live token of a client and tells every
// instance.
func (c *redisConn) revokeClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	ck := c.clientKey(clientID)
	members, err := c.client.ZRange(ctx, ck, 0, -1).Result()
	if err != nil {
		return 0, c.fail("revoke", err)
	}
	n, err := c.tombstones(ctx, members)
	if err != nil {
		return 0, err
	}
	if len(members) > 0 {
		// Only the members read: a token saved meanwhile keeps its score.
		// Issue 12 item 11: tombstones stay indexed at score 0 (see
		// revokeToken), counted by the cap and evicted first.
		zs := make([]redis.Z, len(members))
		for i, m := range members {
			zs[i] = redis.Z{Score: 0, Member: m}
		}
		c.client.ZAddXX(ctx, ck, zs...)
	}
	c.publish(ctx, "c:"+clientID)
	return n, nil
}

// The failure counters of the throttles are one hash per key: f counts
// failures, h the claims of attempts still being checked; the key expires
// with the window that its first claim or failure started. A string at the
// key is a counter of an earlier version: read as the failure count, and
// replaced on the first write.
const failureLegacy = `if redis.call('TYPE', KEYS[1]).ok == 'string' then redis.call('DEL', KEYS[1]) end
`

var (
	failuresScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1]).ok
local n = 0
if t == 'string' then n = tonumber(redis.call('GET', KEYS[1])) or 0
elseif t == 'hash' then n = tonumber(redis.call('HGET', KEYS[1], 'f')) or 0 end
return {n, redis.call('PTTL', KEYS[1])}`)

	addFailureScript = redis.NewScript(failureLegacy + `
local n = redis.call('HINCRBY', KEYS[1], 'f', 1)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

	resetFailuresScript = redis.NewScript(failureLegacy + `
redis.call('HDEL', KEYS[1], 'f')
return 1`)

	// ARGV: max, window ms. Returns {granted 0|1, failures, pttl ms}.
	reserveScript = redis.NewScript(failureLegacy + `
local f = tonumber(redis.call('HGET', KEYS[1], 'f')) or 0
local h = tonumber(redis.call('HGET', KEYS[1], 'h')) or 0
local ok = 0
if f + h < tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], 'h', 1)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  ok = 1
end
return {ok, f, redis.call('PTTL', KEYS[1])}`)

	// ARGV: failed 0|1, reset 0|1, window ms. An empty hash is deleted
	// by Redis itself.
	releaseScript = redis.NewScript(failureLegacy + `
if (tonumber(redis.call('HGET', KEYS[1], 'h')) or 0) > 0 then
  if redis.call('HINCRBY', KEYS[1], 'h', -1) <= 0 then redis.call('HDEL', KEYS[1], 'h') end
end
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'f') end
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'f', 1)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return 1`)
)

// windowEnd turns a PTTL in milliseconds into the end of the window.
func windowEnd(pttl int64) time.Time {
	if pttl <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(pttl) * time.Millisecond)
}

func (c *redisConn) failures(ctx context.Context, key string) (int, time.Time, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	v, err := failuresScript.Run(ctx, c.client, []string{c.failureKey(key)}).Int64Slice()
	if err != nil {
		return 0, time.Time{}, c.fail("failures", err)
	}
	if len(v) != 2 || v[0] == 0 {
		return 0, time.Time{}, nil
	}
	return int(v[0]), windowEnd(v[1]), nil
}

func (c *redisConn) addFailure(ctx context.Context, key string, window time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := addFailureScript.Run(ctx, c.client, []string{c.failureKey(key)}, window.Milliseconds()).Err(); err != nil {
		return c.fail("add failure", err)
	}
	return nil
}

func (c *redisConn) resetFailures(ctx context.Context, key string) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := resetFailuresScript.Run(ctx, c.client, []string{c.failureKey(key)}).Err(); err != nil {
		return c.fail("reset failures", err)
	}
	return nil
}

func (c *redisConn) reserve(ctx context.Context, key string, max int, window time.Duration) (bool, int, time.Time, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	v, err := reserveScript.Run(ctx, c.client, []string{c.failureKey(key)}, max, window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, time.Time{}, c.fail("reserve", err)
	}
	if len(v) != 3 {
		return false, 0, time.Time{}, c.fail("reserve", fmt.Errorf("unexpected reply of %d values", len(v)))
	}
	return v[0] == 1, int(v[1]), windowEnd(v[2]), nil
}

func (c *redisConn) release(ctx context.Context, key string, failed, reset bool, window time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, c.client, []string{c.failureKey(key)},
		flag(failed), flag(reset), window.Milliseconds()).Err(); err != nil {
		return c.fail("release", err)
	}
	return nil
}

// flag is a boolean script argument.
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

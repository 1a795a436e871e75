package outergate

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// save issues a token. On one server or Sentinel (every key on the
// master) it is one script, issueScript, sent by SHA in one round trip with
// WAIT for the required replicas behind it in the same pipeline: the
// lockouts checked (nothing written if one is at its limit) and the
// consecutive failures forgotten, the client index (ZADD), the token
// (SET), and the tokens beyond maxPerClient deleted, dropped from the index
// and published, atomically.
//
// On a Cluster the index and the token live on different masters (the
// token's key must be found from the token alone), and the lockouts on
// others again, so no script can hold them all; saveCluster writes in
// steps, each acknowledged by the required replicas (WAIT) before the next:
//
//  1. the client index (ZADD, on the client's slot), which also names the
//     client's oldest tokens beyond maxPerClient, together with the
//     lockout checks (each on its own slot), one pipeline per master, the
//     masters in parallel;
//  2. if no lockout was at its limit, the token (SET, on the token's own
//     slot) together with the evicted tokens' DEL and PUBLISH (on their
//     slots) and the forgetting of the consecutive failures, if the
//     counter held any (on its slot: only now, so that a success another
//     lockout refused forgets nothing, as on one server), in parallel; if
//     one was, the index entry is taken back;
//  3. the evicted tokens' index entries (ZREM).
//
// The order is what keeps revocation complete: every live token is in its
// client's index before the token exists, and an evicted token leaves the
// index only after it is gone. A crash or failure between the steps leaves
// at most an index entry without a token (counted as nothing, and evicted
// when the client next reaches its cap) or an evicted token not yet
// deleted but still indexed, so still revocable; the token being issued is
// answered only after every step succeeded, so a token nobody holds is the
// worst that is left behind. The index is scored by issue time in
// microseconds, tombstones by 0 (revokeToken), so the cap evicts
// tombstones first, then the oldest tokens; revoked tokens stay in the
// index at score 0, so the cap counts them.
func (c *redisConn) save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int, locks []Lockout) error {
	ttl := rec.ttl()
	if ttl <= 0 {
		return c.admit(ctx, locks)
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	if c.cluster != nil {
		return c.saveCluster(ctx, key, val, ttl, rec.ClientID, maxPerClient, locks)
	}
	ck := c.clientKey(rec.ClientID)
	member := hex.EncodeToString(key[:])
	keys := make([]string, 0, 2+len(locks))
	keys = append(keys, ck, c.tokenKey(key))
	args := make([]any, 0, 8+2*len(locks))
	args = append(args, time.Now().UnixMicro(), member, (ttl + time.Second).Milliseconds(), maxPerClient,
		val, ttl.Milliseconds(), c.prefix+"t:", c.channel)
	for _, l := range locks {
		keys = append(keys, c.failureKey(l.Key))
		args = append(args, l.Max, flag(l.Reset))
	}
	cmd, err := c.writeScript(ctx, ck, issueScript, keys, args)
	if err != nil {
		return c.fail("save", err)
	}
	reply, err := cmd.Slice()
	if err != nil {
		return c.fail("save", err)
	}
	if l := lockedReply(reply, locks); l != nil {
		return l
	}
	for _, v := range reply[1:] {
		if m, ok := v.(string); ok {
			// The script published it for the other instances; this one
			// does not depend on its own subscription.
			c.invalidate("t:" + m)
		}
	}
	return nil
}

// lockedReply is the *LockedOut of a lockout script's reply {0, i, pttl}
// (the i-th lockout at its limit), nil for a reply {1, ...}.
func lockedReply(reply []any, locks []Lockout) *LockedOut {
	if len(reply) != 3 {
		return nil
	}
	if ok, _ := reply[0].(int64); ok != 0 {
		return nil
	}
	i, _ := reply[1].(int64)
	pttl, _ := reply[2].(int64)
	if i < 1 || int(i) > len(locks) {
		return nil
	}
	return &LockedOut{Key: locks[i-1].Key, Until: windowEnd(pttl)}
}

// saveCluster is save on a Cluster, in the steps save describes.
func (c *redisConn) saveCluster(ctx context.Context, key TokenHash, val []byte, ttl time.Duration, clientID string, maxPerClient int, locks []Lockout) error {
	ck := c.clientKey(clientID)
	tk := c.tokenKey(key)
	member := hex.EncodeToString(key[:])
	byKey := make(map[string]Lockout, len(locks))
	keys := []string{ck}
	for _, l := range locks {
		fk := c.failureKey(l.Key)
		byKey[fk] = l
		keys = append(keys, fk)
	}
	var mu sync.Mutex
	cmds := make(map[string]*redis.Cmd, len(keys))
	step1 := func(eval bool) error {
		return c.writeKeys(ctx, keys, func(p redis.Pipeliner, k string) {
			s, ks, args := indexScript, []string{ck}, []any{time.Now().UnixMicro(), member, (ttl + time.Second).Milliseconds(), maxPerClient}
			if l, ok := byKey[k]; ok {
				s, ks, args = checkScript, []string{k}, []any{l.Max}
			}
			cmd := runIn(ctx, p, s, eval, ks, args)
			mu.Lock()
			cmds[k] = cmd
			mu.Unlock()
		})
	}
	err := step1(false)
	if isNoScript(err) {
		err = step1(true)
	}
	if err != nil {
		return c.fail("save index", err)
	}
	resets := make(map[string]bool)
	for k, l := range byKey {
		reply, err := cmds[k].Slice()
		if err != nil {
			return c.fail("save", err)
		}
		if lo := lockedReply(reply, []Lockout{l}); lo != nil {
			// Nothing was given out under this index entry.
			if err := c.client.ZRem(ctx, ck, member).Err(); err != nil {
				return c.fail("save", err)
			}
			return lo
		}
		if l.Reset && failuresIn(reply) > 0 {
			resets[k] = true
		}
	}
	victims, err := cmds[ck].StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return c.fail("save index", err)
	}
	step2 := make([]string, 0, 1+len(victims)+len(resets))
	step2 = append(step2, tk)
	for _, v := range victims {
		step2 = append(step2, c.prefix+"t:"+v)
	}
	// The consecutive failures are forgotten only now that no lockout
	// refused the success, as on one server.
	for k := range resets {
		step2 = append(step2, k)
	}
	// Deleted, not tombstoned: a client looping on the token endpoint
	// must not grow Redis with issuance rate × token_ttl. The token and
	// the evicted ones are on other slots than the index, so their order
	// among themselves does not matter: both follow the index entry, and
	// the evicted ones leave the index only after this step.
	err = c.writeKeys(ctx, step2, func(p redis.Pipeliner, k string) {
		if k == tk {
			p.Set(ctx, tk, val, ttl)
			return
		}
		if resets[k] {
			resetFailuresScript.Eval(ctx, p, []string{k})
			return
		}
		p.Del(ctx, k)
		p.Publish(ctx, c.channel, strings.TrimPrefix(k, c.prefix))
	})
	if err != nil {
		return c.fail("save", err)
	}
	if len(victims) == 0 {
		return nil
	}
	args := make([]any, len(victims))
	for i, v := range victims {
		args[i] = v
		c.invalidate("t:" + v)
	}
	if err := c.client.ZRem(ctx, ck, args...).Err(); err != nil {
		return c.fail("cap", err)
	}
	return nil
}

// runIn adds script s to pipeline p: by SHA, or with its source (eval)
// when a server did not know it.
func runIn(ctx context.Context, p redis.Pipeliner, s *redis.Script, eval bool, keys []string, args []any) *redis.Cmd {
	if eval {
		return s.Eval(ctx, p, keys, args...)
	}
	return s.EvalSha(ctx, p, keys, args...)
}

// writeScript runs script s on key's master as one write (with WAIT), by
// SHA, and again with its source if that server did not know it (after a
// restart or SCRIPT FLUSH): one round trip, but the first time.
func (c *redisConn) writeScript(ctx context.Context, key string, s *redis.Script, keys []string, args []any) (*redis.Cmd, error) {
	var cmd *redis.Cmd
	run := func(eval bool) error {
		return c.write(ctx, key, func(p redis.Pipeliner) { cmd = runIn(ctx, p, s, eval, keys, args) })
	}
	err := run(false)
	if isNoScript(err) {
		err = run(true)
	}
	return cmd, err
}

// lockoutLua checks lockouts in a script: KEYS[first..] are failure
// counters, ARGV[arg + 2i] the limit of the i-th and ARGV[arg + 2i + 1]
// whether a success resets it. It returns {0, i, pttl} for the first
// counter at its limit in a running window, else nil after forgetting the
// failures of those that reset. A string at a key is a counter of an
// earlier version, read as the failure count.
const lockoutLua = `
local function failuresOf(k)
  local t = redis.call('TYPE', k).ok
  if t == 'string' then return tonumber(redis.call('GET', k)) or 0, t end
  if t == 'hash' then return tonumber(redis.call('HGET', k, 'f')) or 0, t end
  return 0, t
end
local function lockouts(first, arg)
  local n = #KEYS - first + 1
  local types = {}
  for i = 0, n - 1 do
    local k = KEYS[first + i]
    local f, t = failuresOf(k)
    types[i] = t
    if f >= tonumber(ARGV[arg + 2 * i]) then
      local ttl = redis.call('PTTL', k)
      if ttl > 0 then return {0, i + 1, ttl} end
    end
  end
  for i = 0, n - 1 do
    if ARGV[arg + 2 * i + 1] == '1' then
      if types[i] == 'string' then redis.call('DEL', KEYS[first + i])
      elseif types[i] == 'hash' then redis.call('HDEL', KEYS[first + i], 'f') end
    end
  end
  return nil
end
`

// issueScript is save on one server. KEYS: the client index, the token,
// then the lockouts' counters. ARGV: the index score (issue time, µs), the
// token's hex hash (the index member), the index TTL (ms), the cap, the
// record, the token TTL (ms), the token key prefix, the revocation
// channel, then the limit and the reset flag of each lockout. It returns
// {0, i, pttl} if the i-th lockout is at its limit (nothing written), else
// {1, evicted...}: the oldest members beyond the cap (never the new token,
// which may share its score with others), whose tokens it deleted and
// published. It keeps the index alive as long as its longest-lived token.
var issueScript = redis.NewScript(lockoutLua + `
local locked = lockouts(3, 9)
if locked then return locked end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'GT')
redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[6])
local out = {1}
local cap = tonumber(ARGV[4])
if cap <= 0 then return out end
local over = redis.call('ZCARD', KEYS[1]) - cap
if over <= 0 then return out end
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
  if m ~= ARGV[2] and #out <= over then
    redis.call('DEL', ARGV[7] .. m)
    redis.call('ZREM', KEYS[1], m)
    redis.call('PUBLISH', ARGV[8], 't:' .. m)
    out[#out + 1] = m
  end
end
return out`)

// admitScript is Admit: KEYS the lockouts' counters, ARGV the limit and
// reset flag of each; {0, i, pttl} if the i-th is at its limit, else {1}.
var admitScript = redis.NewScript(lockoutLua + `
local locked = lockouts(1, 1)
if locked then return locked end
return {1}`)

// checkScript is one lockout's check on a Cluster, whose counters sit on
// slots of their own: KEYS[1] the counter, ARGV[1] its limit; {0, 1, pttl}
// at the limit, else {1, failures}. It forgets nothing: the caller resets
// a counter that holds failures once no lockout refused the success.
var checkScript = redis.NewScript(lockoutLua + `
local locked = lockouts(1, 1)
if locked then return locked end
local f = failuresOf(KEYS[1])
return {1, f}`)

// failuresIn is the failure count of a checkScript reply {1, failures}.
func failuresIn(reply []any) int64 {
	if len(reply) != 2 {
		return 0
	}
	n, _ := reply[1].(int64)
	return n
}

// countFailuresScript is CountFailures: KEYS the counters, ARGV each one's
// window (ms); it returns {failures, pttl} per key. A window starts with
// its first failure.
var countFailuresScript = redis.NewScript(upgradeLua + `
local out = {}
for i, k in ipairs(KEYS) do
  upgrade(k)
  local n = redis.call('HINCRBY', k, 'f', 1)
  local ttl = redis.call('PTTL', k)
  if ttl < 0 then
    redis.call('PEXPIRE', k, ARGV[i])
    ttl = tonumber(ARGV[i])
  end
  out[#out + 1] = n
  out[#out + 1] = ttl
end
return out`)

// indexScript is the Cluster's step 1 on the client's slot: it adds
// ARGV[2] to the client index KEYS[1] with score ARGV[1], keeps the index
// alive as long as its longest-lived token (ARGV[3] ms), and returns the
// oldest members beyond the cap ARGV[4] (never ARGV[2] itself). It does
// not remove them: saveCluster deletes their tokens first. Two concurrent
// issuers pick the same oldest members, so neither evicts more than needed.
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
// failures (h held the claims of attempts being checked, in the version
// before); the key expires with the window that its first failure
// started. A string at the key is a counter of an earlier version (v0.1.0,
// INCR): read as the failure count, and on the first write turned into
// the hash with that count and the window it had, so that an upgrade
// unlocks no key (upgradeLua).
const upgradeLua = `
local function upgrade(k)
  if redis.call('TYPE', k).ok ~= 'string' then return end
  local n = tonumber(redis.call('GET', k)) or 0
  local ttl = redis.call('PTTL', k)
  redis.call('DEL', k)
  if n > 0 then
    redis.call('HSET', k, 'f', n)
    if ttl > 0 then redis.call('PEXPIRE', k, ttl) end
  end
end
`

// failureLegacy upgrades a legacy counter at KEYS[1] before a write.
const failureLegacy = upgradeLua + `upgrade(KEYS[1])
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

// countFailures counts one failure under each lockout: one script on one
// server, one per key (in parallel) on a Cluster, whose slots differ.
func (c *redisConn) countFailures(ctx context.Context, locks []Lockout) ([]FailureCount, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	out := make([]FailureCount, len(locks))
	err := c.eachSlot(ctx, locks, func(ctx context.Context, part []Lockout, at int) error {
		keys := make([]string, len(part))
		args := make([]any, len(part))
		for i, l := range part {
			keys[i], args[i] = c.failureKey(l.Key), l.Window.Milliseconds()
		}
		v, err := countFailuresScript.Run(ctx, c.client, keys, args...).Int64Slice()
		if err != nil {
			return err
		}
		if len(v) != 2*len(part) {
			return fmt.Errorf("unexpected reply of %d values", len(v))
		}
		for i := range part {
			out[at+i] = FailureCount{N: int(v[2*i]), End: windowEnd(v[2*i+1])}
		}
		return nil
	})
	if err != nil {
		return nil, c.fail("count failures", err)
	}
	return out, nil
}

// admit checks a success against locks: one script on one server, one per
// key (in parallel) on a Cluster.
func (c *redisConn) admit(ctx context.Context, locks []Lockout) error {
	if len(locks) == 0 {
		return nil
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	if c.cluster != nil && len(locks) > 1 {
		return c.admitCluster(ctx, locks)
	}
	var mu sync.Mutex
	var locked *LockedOut
	err := c.eachSlot(ctx, locks, func(ctx context.Context, part []Lockout, _ int) error {
		keys := make([]string, len(part))
		args := make([]any, 0, 2*len(part))
		for i, l := range part {
			keys[i] = c.failureKey(l.Key)
			args = append(args, l.Max, flag(l.Reset))
		}
		reply, err := admitScript.Run(ctx, c.client, keys, args...).Slice()
		if err != nil {
			return err
		}
		if l := lockedReply(reply, part); l != nil {
			mu.Lock()
			locked = l
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return c.fail("admit", err)
	}
	if locked != nil {
		return locked
	}
	return nil
}

// admitCluster is admit on a Cluster, where no script holds every
// counter: each lockout is checked on its own slot (in parallel), and only
// if none refused are the failures of those that reset forgotten (those
// holding any), so that a success refused by one lockout forgets no
// other's failures, as on one server.
func (c *redisConn) admitCluster(ctx context.Context, locks []Lockout) error {
	var mu sync.Mutex
	var locked *LockedOut
	var resets []Lockout
	err := c.eachSlot(ctx, locks, func(ctx context.Context, part []Lockout, _ int) error {
		reply, err := checkScript.Run(ctx, c.client, []string{c.failureKey(part[0].Key)}, part[0].Max).Slice()
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if l := lockedReply(reply, part); l != nil {
			locked = l
		} else if part[0].Reset && failuresIn(reply) > 0 {
			resets = append(resets, part[0])
		}
		return nil
	})
	if err != nil {
		return c.fail("admit", err)
	}
	if locked != nil {
		return locked
	}
	err = c.eachSlot(ctx, resets, func(ctx context.Context, part []Lockout, _ int) error {
		return resetFailuresScript.Run(ctx, c.client, []string{c.failureKey(part[0].Key)}).Err()
	})
	if err != nil {
		return c.fail("admit", err)
	}
	return nil
}

// eachSlot runs fn on locks: all at once outside a Cluster, else each
// lockout alone (their keys hash to different slots), in parallel; at is
// the index of part's first lockout in locks.
func (c *redisConn) eachSlot(ctx context.Context, locks []Lockout, fn func(ctx context.Context, part []Lockout, at int) error) error {
	if len(locks) == 0 {
		return nil
	}
	if c.cluster == nil || len(locks) == 1 {
		return fn(ctx, locks, 0)
	}
	errs := make([]error, len(locks))
	var wg sync.WaitGroup
	for i := range locks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(ctx, locks[i:i+1], i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// flag is a boolean script argument.
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

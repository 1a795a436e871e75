package outergate

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// rateLimiterProvider is a store that can count the client limits where it
// keeps its tokens, so that every instance sharing it counts together. The
// Redis store provides its go-redis client.
type rateLimiterProvider interface {
	// rateLimitRedis returns the store's client (single server, Sentinel
	// or Cluster), its key prefix and the bound of one operation.
	rateLimitRedis() (client redis.UniversalClient, prefix string, timeout time.Duration)
}

// redisLimiter counts rate limits with redis_rate (GCRA in one Lua script,
// by the go-redis authors) and quotas with quotaScript, in Redis, so that
// the limits are exact across instances. A request costs one round trip:
// when a client has both a rate limit and a quota, both scripts go in one
// pipeline, and the calls of concurrent requests share pipelines
// (pipeBatch, redis_batch.go). Both keys of a client carry the client
// id as hash tag, so they sit in one slot on a Cluster.
type redisLimiter struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	batch   *pipeBatch
}

func newRedisLimiter(p rateLimiterProvider) *redisLimiter {
	client, prefix, timeout := p.rateLimitRedis()
	return &redisLimiter{client: client, prefix: prefix, timeout: timeout, batch: newPipeBatch(client, timeout)}
}

// rateKey is the bucket's key; redis_rate puts "rate:" before it. The
// limit is part of it, so that a changed limit (a reload) starts with a
// full bucket rather than the old one's debt.
func (l *redisLimiter) rateKey(clientID string, r ratePolicy) string {
	return l.prefix + "rl:{" + clientID + "}:" + r.key
}

// quotaKey is the quota's key; the window's length is part of it.
func (l *redisLimiter) quotaKey(clientID string, q quotaPolicy) string {
	return l.prefix + "q:{" + clientID + "}:" + strconv.FormatInt(q.window.Milliseconds(), 10)
}

// quotaScript counts one request in the client's current fixed window
// (a hash: w the window's index on Redis's clock, n the count), unless the
// count has reached ARGV[1]. It answers {allowed, count, ms until the
// window ends, window index}.
var quotaScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[2])
local idx = math.floor(now / window)
local reset = (idx + 1) * window - now
local cur = redis.call('HMGET', KEYS[1], 'w', 'n')
local n = 0
if cur[1] and tonumber(cur[1]) == idx then n = tonumber(cur[2]) or 0 end
if n >= tonumber(ARGV[1]) then return {0, n, reset, idx} end
n = n + 1
redis.call('HSET', KEYS[1], 'w', idx, 'n', n)
redis.call('PEXPIRE', KEYS[1], reset + 1000)
return {1, n, reset, idx}
`)

// unquotaScript gives back a request counted in window ARGV[1] that the
// rate limit then refused.
var unquotaScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  return redis.call('HINCRBY', KEYS[1], 'n', -1)
end
return 0
`)

func (l *redisLimiter) allow(ctx context.Context, clientID string, p *policy) (limitResult, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	res := limitResult{allowed: true}
	var q *quotaCall
	if p.quota.requests > 0 {
		q = &quotaCall{key: l.quotaKey(clientID, p.quota), args: []any{p.quota.requests, p.quota.window.Milliseconds()}}
	}
	if p.rate.requests > 0 {
		rl := redis_rate.NewLimiter(&batchedScripts{UniversalClient: l.client, batch: l.batch, quota: q})
		limit := redis_rate.Limit{Rate: p.rate.requests, Burst: p.rate.burst, Period: p.rate.period}
		rr, err := rl.Allow(ctx, l.rateKey(clientID, p.rate), limit)
		if err != nil {
			return res, unavailable("rate limit", err)
		}
		res.rateRemaining, res.rateReset = rr.Remaining, rr.ResetAfter
		if rr.Allowed == 0 {
			res.allowed, res.reason, res.retry = false, reasonRate, rr.RetryAfter
		}
	}
	if q == nil {
		return res, nil
	}
	switch {
	case q.cmd == nil: // a quota alone
		q.cmd = quotaScript.Run(ctx, &batchedScripts{UniversalClient: l.client, batch: l.batch}, []string{q.key}, q.args...)
	case isNoScript(q.cmd.Err()):
		q.cmd = quotaScript.Run(ctx, l.client, []string{q.key}, q.args...)
	}
	allowed, count, reset, window, err := quotaReply(q.cmd)
	if err != nil {
		return res, unavailable("quota", err)
	}
	res.quotaReset = time.Duration(reset) * time.Millisecond
	res.quotaRemaining = p.quota.requests - int(count)
	switch {
	case !allowed:
		res.allowed, res.reason, res.retry = false, reasonQuota, res.quotaReset
	case !res.allowed:
		// Counted, but the rate limit refused it: give it back (a second
		// round trip, on this refusal only).
		if err := unquotaScript.Run(ctx, l.client, []string{q.key}, window).Err(); err != nil {
			return res, unavailable("quota", err)
		}
		res.quotaRemaining++
	}
	return res, nil
}

// rediser is what redis_rate.NewLimiter takes.
type rediser interface {
	redis.Scripter
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// quotaCall is the quota script's call sent with the rate limit's, and
// its reply.
type quotaCall struct {
	key  string
	args []any
	cmd  *redis.Cmd
}

// batchedScripts is the client the scripts of one request are given: its
// first script call goes into the limiter's next shared pipeline
// (pipeBatch), with the quota script first when the client also has a
// quota, so that both limits cost one round trip; a later call (EVAL after
// a NOSCRIPT) goes on its own.
type batchedScripts struct {
	redis.UniversalClient
	batch *pipeBatch
	quota *quotaCall // nil: no quota to send along
	sent  bool
}

func (s *batchedScripts) EvalSha(ctx context.Context, sha string, keys []string, args ...any) *redis.Cmd {
	if s.sent {
		return s.UniversalClient.EvalSha(ctx, sha, keys, args...)
	}
	return s.pipelined(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.EvalSha(ctx, sha, keys, args...) })
}

func (s *batchedScripts) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	if s.sent {
		return s.UniversalClient.Eval(ctx, script, keys, args...)
	}
	return s.pipelined(ctx, func(pipe redis.Pipeliner) *redis.Cmd { return pipe.Eval(ctx, script, keys, args...) })
}

// pipelined sends the quota script, if any, then call's, in the next
// pipeline.
func (s *batchedScripts) pipelined(ctx context.Context, call func(redis.Pipeliner) *redis.Cmd) *redis.Cmd {
	s.sent = true
	var cmd *redis.Cmd
	sent := s.batch.run(ctx, func(pipe redis.Pipeliner) {
		if s.quota != nil {
			s.quota.cmd = pipe.EvalSha(ctx, quotaScript.Hash(), []string{s.quota.key}, s.quota.args...)
		}
		cmd = call(pipe)
	})
	if !sent {
		// Its time ran out in the queue: nothing was counted.
		cmd = redis.NewCmd(ctx)
		cmd.SetErr(fmt.Errorf("not sent: %w", ctx.Err()))
	}
	return cmd
}

// isNoScript reports the reply to an EVALSHA of a script Redis does not
// have (a new or restarted node); EVAL then loads it.
func isNoScript(err error) bool {
	return err != nil && redis.HasErrorPrefix(err, "NOSCRIPT")
}

// quotaReply reads quotaScript's reply.
func quotaReply(cmd *redis.Cmd) (allowed bool, count, resetMS int64, window string, err error) {
	vals, err := cmd.Int64Slice()
	if err != nil {
		return false, 0, 0, "", err
	}
	if len(vals) != 4 {
		return false, 0, 0, "", fmt.Errorf("unexpected quota reply of %d values", len(vals))
	}
	return vals[0] == 1, vals[1], vals[2], strconv.FormatInt(vals[3], 10), nil
}

// Interface guards
var (
	_ limiter             = (*redisLimiter)(nil)
	_ rediser             = (*batchedScripts)(nil)
	_ rateLimiterProvider = (*RedisStore)(nil)
)

package outergate

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// This file holds the per-client limits on protected requests: their
// config (RateLimit, Quota, max_in_flight), the provisioned policy of each
// client, the limiter interface that counts them (ratelimit_memory.go,
// ratelimit_redis.go), the IETF RateLimit headers and the step of
// protector.serve that applies them.

// RateLimit is a token bucket (GCRA) per client: Requests per Period on
// average, with bursts of up to Burst requests.
type RateLimit struct {
	// Requests is how many requests a client may make per Period.
	Requests int `json:"requests,omitempty"`

	// Period is the length of time Requests are counted over, e.g. "1s".
	// Default: 1s.
	Period caddy.Duration `json:"period,omitempty"`

	// Burst is how many requests may come at once after a quiet time.
	// Default: Requests.
	Burst int `json:"burst,omitempty"`

	// Off disables a rate limit that the handler gives every client
	// (Caddyfile `rate_limit off` in a client block). Default: false.
	Off bool `json:"off,omitempty"`
}

// Quota is a count of requests per fixed window per client. Windows are
// aligned on the Unix epoch (a 24h window ends at 00:00 UTC, a 1h window
// on the hour), so that every instance agrees on them.
type Quota struct {
	// Requests is how many requests a client may make per Window.
	Requests int `json:"requests,omitempty"`

	// Window is the length of the fixed window, e.g. "24h".
	Window caddy.Duration `json:"window,omitempty"`

	// Off disables a quota that the handler gives every client
	// (Caddyfile `quota off` in a client block). Default: false.
	Off bool `json:"off,omitempty"`
}

// policy is one client's provisioned limits. A zero rate or quota is none.
type policy struct {
	rate        ratePolicy
	quota       quotaPolicy
	maxInFlight int
	// header is the RateLimit-Policy value, built once; headerValue holds
	// it as a header map value (len = cap = 1, so that an Add copies).
	header      string
	headerValue []string
}

// ratePolicy is a provisioned RateLimit.
type ratePolicy struct {
	requests int
	burst    int
	period   time.Duration
	key      string // names the limit in its Redis key
}

// quotaPolicy is a provisioned Quota.
type quotaPolicy struct {
	requests int
	window   time.Duration
}

func (p *policy) counted() bool { return p.rate.requests > 0 || p.quota.requests > 0 }

// window of the rate limit as the RateLimit-Policy header gives it: the
// time a full burst takes to come back, whole seconds, at least 1.
func (r ratePolicy) window() int64 {
	return max(1, ceilSeconds(time.Duration(int64(r.period)*int64(r.burst)/int64(r.requests))))
}

// newPolicy merges a client's limits over the handler's defaults.
func newPolicy(def, own *RateLimit, defQuota, ownQuota *Quota, defInFlight, ownInFlight int) (policy, error) {
	var p policy
	rl := def
	if own != nil {
		rl = own
	}
	if rl != nil && !rl.Off {
		if rl.Requests <= 0 {
			return p, fmt.Errorf("rate_limit: requests must be positive, got %d", rl.Requests)
		}
		period := time.Duration(rl.Period)
		if period == 0 {
			period = time.Second
		}
		burst := rl.Burst
		if burst == 0 {
			burst = rl.Requests
		}
		if period < time.Millisecond || burst < 0 {
			return p, fmt.Errorf("rate_limit: period must be at least 1ms and burst positive")
		}
		p.rate = ratePolicy{requests: rl.Requests, burst: burst, period: period,
			key: fmt.Sprintf("%d/%d/%d", rl.Requests, period.Milliseconds(), burst)}
	}
	q := defQuota
	if ownQuota != nil {
		q = ownQuota
	}
	if q != nil && !q.Off {
		if q.Requests <= 0 || time.Duration(q.Window) < time.Second {
			return p, fmt.Errorf("quota: requests must be positive and the window at least 1s")
		}
		p.quota = quotaPolicy{requests: q.Requests, window: time.Duration(q.Window)}
	}
	switch {
	case ownInFlight > 0:
		p.maxInFlight = ownInFlight
	case ownInFlight == 0 && defInFlight > 0:
		p.maxInFlight = defInFlight
	case ownInFlight < -1 || defInFlight < -1:
		return p, fmt.Errorf("max_in_flight must be positive (or -1: none), got %d", min(ownInFlight, defInFlight))
	}
	p.header = p.policyHeader()
	p.headerValue = []string{p.header}
	return p, nil
}

// policyHeader is the RateLimit-Policy field
// (draft-ietf-httpapi-ratelimit-headers): one item per limit, q units per
// w seconds. The bucket is described by its burst and the time a burst
// takes to come back, so that r never exceeds q.
func (p *policy) policyHeader() string {
	var b []byte
	if p.rate.requests > 0 {
		b = fmt.Appendf(b, `"rate";q=%d;w=%d`, p.rate.burst, p.rate.window())
	}
	if p.quota.requests > 0 {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, `"quota";q=%d;w=%d`, p.quota.requests, ceilSeconds(p.quota.window))
	}
	return string(b)
}

// limitResult is what a limiter answers for one request.
type limitResult struct {
	allowed bool
	reason  limitReason   // why it was refused
	retry   time.Duration // when the next request would pass, if refused

	rateRemaining  int
	rateReset      time.Duration // until the bucket is full again
	quotaRemaining int
	quotaReset     time.Duration // until the window ends
}

// limiter counts the rate limits and quotas of clients. The memory one
// counts in this process; the Redis one in the store, shared by every
// instance. Implementations are safe for concurrent use.
type limiter interface {
	// allow counts one request of clientID under p (which has a rate or a
	// quota) and says whether it may pass. A request the rate limit
	// refuses is not counted against the quota, nor one the quota refuses
	// against the rate. err is a failure to count.
	allow(ctx context.Context, clientID string, p *policy) (limitResult, error)
}

// limits applies the clients' policies on protected requests; Provision
// builds it once. local holds what is counted per instance (in-flight
// requests, audit sampling, and with the memory store the counters too) in
// a caddy.UsagePool entry that outlives a reload.
type limits struct {
	policies        map[string]*policy // by client id
	managed         *managedView       // clients managed through the admin API
	counter         limiter
	local           *limitState
	localKey        string
	failOpen        bool
	clientMetrics   bool
	audit           auditLog
	logger          *zap.Logger
	auditSampleTime time.Duration
}

// check counts one request of clientID, sets the RateLimit headers, and
// returns the 429 answer when a limit is reached, or the 503 one when the
// limiter cannot count (unless failOpen).
func (l *limits) check(w http.ResponseWriter, r *http.Request, clientID string) *apiError {
	p := l.policy(clientID)
	if p == nil || !p.counted() {
		return nil
	}
	res, err := l.counter.allow(r.Context(), clientID, p)
	if err != nil {
		if l.failOpen {
			if c := l.logger.Check(zap.WarnLevel, "rate limit store failed; letting the request through (rate_limit_fail_open)"); c != nil {
				c.Write(zap.String("client_id", clientID), zap.Error(err))
			}
			return nil
		}
		l.logger.Error("rate limit store failed", zap.String("client_id", clientID), zap.Error(err))
		return oauthError(newAPIError(http.StatusServiceUnavailable, CodeInternal, "rate limit store unavailable"), "temporarily_unavailable")
	}
	setRateLimitHeaders(w.Header(), p, &res)
	if res.allowed {
		return nil
	}
	return l.refuse(r, clientID, res.reason, res.retry)
}

// policy is the policy of a configured client, else of a managed one; nil
// for an unknown id.
func (l *limits) policy(clientID string) *policy {
	if p := l.policies[clientID]; p != nil {
		return p
	}
	if c := l.managed.get(clientID); c != nil {
		return c.policy
	}
	return nil
}

// acquire takes one of clientID's in-flight places on this instance, if
// the client has a cap; release the returned slot once, deferred, so that
// a panic or an error of the upstream gives it back too. A nil slot holds
// nothing.
func (l *limits) acquire(r *http.Request, clientID string) (*clientState, *apiError) {
	p := l.policy(clientID)
	if p == nil || p.maxInFlight <= 0 {
		return nil, nil
	}
	c, ok := l.local.acquire(clientID, p.maxInFlight)
	if !ok {
		return nil, l.refuse(r, clientID, reasonInFlight, time.Second)
	}
	return c, nil
}

// refuse counts and audits (sampled) one refusal and returns its answer.
func (l *limits) refuse(r *http.Request, clientID string, reason limitReason, retry time.Duration) *apiError {
	countRateLimited(reason, clientID, l.clientMetrics)
	e := newAPIError(http.StatusTooManyRequests, CodeTooManyFailures, limitMessages[reason],
		"Retry-After", strconv.FormatInt(max(1, ceilSeconds(retry)), 10))
	if n, ok := l.local.client(clientID).sample(reason, time.Now(), l.auditSampleTime); ok {
		l.audit.refusal(r, "client limit reached", e,
			zap.String("client_id", clientID),
			zap.String("limit", reason.String()),
			zap.Int64("refusals", n))
	}
	return e
}

// defaultAuditSample is the audit log's sampling of limit refusals: at
// most one entry per client and reason per interval, carrying how many
// refusals it stands for.
const defaultAuditSample = time.Second

var limitMessages = [numLimitReasons]string{
	"rate limit exceeded; retry later",
	"request quota exhausted; retry later",
	"too many requests in flight; retry later",
}

// setRateLimitHeaders writes the RateLimit-Policy and RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers-11): per limit, r units remaining
// and t seconds until they are all back.
func setRateLimitHeaders(h http.Header, p *policy, res *limitResult) {
	var buf [96]byte
	b := buf[:0]
	if p.rate.requests > 0 {
		b = append(b, `"rate";r=`...)
		b = strconv.AppendInt(b, int64(max(0, res.rateRemaining)), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(res.rateReset), 10)
	}
	if p.quota.requests > 0 {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		b = append(b, `"quota";r=`...)
		b = strconv.AppendInt(b, int64(max(0, res.quotaRemaining)), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(res.quotaReset), 10)
	}
	h["Ratelimit-Policy"] = p.headerValue[:1:1]
	h["Ratelimit"] = []string{string(b)}
}

// ceilSeconds is d in whole seconds, rounded up, never negative.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

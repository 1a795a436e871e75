package outergate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/time/rate"
)

// limitStates holds, across config loads, what the limits count in this
// process, one entry per store (the key is "limits/" + the store's pool
// key): handlers sharing a store share their clients' counts, as they do
// with Redis, and a reload keeps them.
var limitStates = caddy.NewUsagePool()

// limitStateKey names the limit state of the handlers that share a store.
func limitStateKey(s Store) string { return "limits/" + storeKey(s) }

// loadLimitState finds or creates the limit state under key.
func loadLimitState(key string) (*limitState, error) {
	val, _, err := limitStates.LoadOrNew(key, func() (caddy.Destructor, error) {
		return newLimitState(time.Minute), nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*limitState), nil
}

// limitState is the per-process state of the client limits: one entry per
// client that made a counted request lately. A sweeper drops the entries
// that hold nothing any more (a full bucket, an ended quota window, nothing
// in flight), so that the state stays bounded by the active clients.
type limitState struct {
	// clients holds a *clientState by client id. A sync.Map, because every
	// counted request reads it and a new client is rare: reads take no
	// lock and write no shared counter (an RWMutex's reader count is one
	// cache line every core writes).
	clients sync.Map
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
}

// clientState is one client's counters on this instance.
type clientState struct {
	inFlight atomic.Int64

	mu          sync.Mutex
	dead        bool          // swept: look the client up again
	bucket      *rate.Limiter // the memory limiter's token bucket
	quotaWindow int64         // index of the quota's current window
	quotaLength time.Duration // and its length
	quotaCount  int
	keepUntil   int64 // Unix ns until which the state holds something

	// audit sampling, per reason: the interval last logged and the
	// refusals since the last entry.
	sampled [numLimitReasons]struct {
		last    atomic.Int64
		pending atomic.Int64
	}
}

func newLimitState(sweep time.Duration) *limitState {
	s := &limitState{stop: make(chan struct{}), done: make(chan struct{})}
	go s.sweepEvery(sweep)
	return s
}

// Destruct implements caddy.Destructor: it stops the sweeper.
func (s *limitState) Destruct() error {
	s.once.Do(func() { close(s.stop); <-s.done })
	return nil
}

// client returns the state of id, creating it.
func (s *limitState) client(id string) *clientState {
	if c, ok := s.clients.Load(id); ok {
		return c.(*clientState)
	}
	c, _ := s.clients.LoadOrStore(id, &clientState{})
	return c.(*clientState)
}

func (s *limitState) sweepEvery(d time.Duration) {
	defer close(s.done)
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.sweep(now)
		}
	}
}

// sweep drops the clients whose state holds nothing at now.
func (s *limitState) sweep(now time.Time) {
	s.clients.Range(func(id, v any) bool {
		c := v.(*clientState)
		c.mu.Lock()
		idle := c.keepUntil < now.UnixNano() && c.inFlight.Load() == 0 &&
			now.UnixNano()-c.sampled[reasonRate].last.Load() > int64(time.Minute) &&
			now.UnixNano()-c.sampled[reasonQuota].last.Load() > int64(time.Minute) &&
			now.UnixNano()-c.sampled[reasonInFlight].last.Load() > int64(time.Minute)
		if idle {
			// dead under c.mu: whoever holds c looks the client up again,
			// and finds a new state.
			c.dead = true
			s.clients.CompareAndDelete(id, c)
		}
		c.mu.Unlock()
		return true
	})
}

// size is how many clients have state.
func (s *limitState) size() int {
	n := 0
	s.clients.Range(func(any, any) bool { n++; return true })
	return n
}

// sample counts one refusal for reason and reports whether it is to be
// audited: the first of each interval is, with the number of refusals it
// stands for (itself and those not logged since the last entry).
func (c *clientState) sample(reason limitReason, now time.Time, interval time.Duration) (int64, bool) {
	s := &c.sampled[reason]
	s.pending.Add(1)
	last := s.last.Load()
	if last != 0 && last/int64(interval) == now.UnixNano()/int64(interval) {
		return 0, false
	}
	if !s.last.CompareAndSwap(last, now.UnixNano()) {
		return 0, false
	}
	return s.pending.Swap(0), true
}

// acquire takes one in-flight place if fewer than limit are taken.
func (s *limitState) acquire(id string, limit int) (*clientState, bool) {
	for {
		c := s.client(id)
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			continue
		}
		ok := c.inFlight.Load() < int64(limit)
		if ok {
			c.inFlight.Add(1)
		}
		c.mu.Unlock()
		return c, ok
	}
}

// release gives back an in-flight place taken by acquire; on nil it does
// nothing.
func (c *clientState) release() {
	if c != nil {
		c.inFlight.Add(-1)
	}
}

// memoryLimiter counts rate limits (golang.org/x/time/rate's token bucket)
// and quotas in this process.
type memoryLimiter struct{ state *limitState }

func (m memoryLimiter) allow(_ context.Context, clientID string, p *policy) (limitResult, error) {
	now := time.Now()
	for {
		c := m.state.client(clientID)
		c.mu.Lock()
		if c.dead {
			c.mu.Unlock()
			continue
		}
		res := c.allow(now, p)
		c.mu.Unlock()
		return res, nil
	}
}

// allow runs the quota check, then the bucket, then counts the quota; c.mu
// is held.
func (c *clientState) allow(now time.Time, p *policy) limitResult {
	res := limitResult{allowed: true}
	keep := now
	var windowEnd time.Time
	if q := p.quota; q.requests > 0 {
		idx := now.UnixNano() / int64(q.window)
		if idx != c.quotaWindow || q.window != c.quotaLength {
			c.quotaWindow, c.quotaLength, c.quotaCount = idx, q.window, 0
		}
		windowEnd = time.Unix(0, (idx+1)*int64(q.window))
		res.quotaReset = windowEnd.Sub(now)
		keep = windowEnd
		if c.quotaCount >= q.requests {
			res.allowed, res.reason, res.retry = false, reasonQuota, res.quotaReset
		}
		res.quotaRemaining = q.requests - c.quotaCount
	}
	if r := p.rate; r.requests > 0 {
		limit := rate.Limit(float64(r.requests) / r.period.Seconds())
		if c.bucket == nil || c.bucket.Limit() != limit || c.bucket.Burst() != r.burst {
			// A new or changed limit (a reload) starts with a full bucket,
			// as it does in Redis, where the limit is part of the key.
			c.bucket = rate.NewLimiter(limit, r.burst)
		}
		refused := res.allowed && !c.bucket.AllowN(now, 1)
		tokens := c.bucket.TokensAt(now) // a refusal took none
		if refused {
			res.allowed, res.reason = false, reasonRate
			res.retry = secondsDuration((1 - tokens) / float64(limit))
		}
		res.rateRemaining = int(tokens)
		res.rateReset = secondsDuration((float64(r.burst) - tokens) / float64(limit))
		if full := now.Add(res.rateReset); full.After(keep) {
			keep = full
		}
	}
	if res.allowed && p.quota.requests > 0 {
		c.quotaCount++
		res.quotaRemaining--
	}
	c.keepUntil = keep.UnixNano()
	return res
}

// secondsDuration turns seconds into a Duration, never negative.
func secondsDuration(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// Interface guards
var (
	_ limiter          = memoryLimiter{}
	_ caddy.Destructor = (*limitState)(nil)
)

package outergate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/outergate/outergate/internal/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// redisProvider hands a test's go-redis client to newRedisLimiter, as the
// Redis store does with its own.
type redisProvider struct {
	client redis.UniversalClient
	prefix string
}

func (p redisProvider) rateLimitRedis() (redis.UniversalClient, string, time.Duration) {
	return p.client, p.prefix, time.Second
}

// roundTrips counts the round trips a client makes: one per command sent
// alone, one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}

func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(1); return next(ctx, cmds) }
}

// testRedisClient is a go-redis client on addrs (several: a Cluster) with
// a round-trip counter, closed at the end of the test.
func testRedisClient(t testing.TB, addrs ...string) (redis.UniversalClient, *roundTrips) {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, DisableIdentity: true,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: 1,
		IsClusterMode: len(addrs) > 1})
	rt := &roundTrips{}
	c.AddHook(rt)
	t.Cleanup(func() { _ = c.Close() })
	return c, rt
}

func TestRedisLimiterOneRoundTrip(t *testing.T) {
	rd := redistest.Start(t)
	client, rt := testRedisClient(t, rd.Addr())
	lim := newRedisLimiter(redisProvider{client, "og:"})
	for _, tc := range []struct {
		name string
		p    *policy
	}{
		{"rate", testPolicy(t, &RateLimit{Requests: 1000, Period: caddy.Duration(time.Second)}, nil, 0)},
		{"quota", testPolicy(t, nil, &Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}, 0)},
		{"rate and quota", testPolicy(t, &RateLimit{Requests: 1000, Period: caddy.Duration(time.Second)},
			&Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "rt-" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := lim.allow(t.Context(), id, tc.p); err != nil { // loads the scripts
				t.Fatal(err)
			}
			before := rt.n.Load()
			for i := range 20 {
				res, err := lim.allow(t.Context(), id, tc.p)
				if err != nil || !res.allowed {
					t.Fatalf("request %d: %+v %v", i, res, err)
				}
			}
			if n := rt.n.Load() - before; n != 20 {
				t.Fatalf("%d round trips for 20 requests, want 20", n)
			}
		})
	}
}

func TestRedisLimiterQuotaGivenBackOnRateRefusal(t *testing.T) {
	rd := redistest.Start(t)
	client, _ := testRedisClient(t, rd.Addr())
	lim := newRedisLimiter(redisProvider{client, "og:"})
	p := testPolicy(t, &RateLimit{Requests: 1, Period: caddy.Duration(time.Minute)}, &Quota{Requests: 5, Window: caddy.Duration(time.Hour)}, 0)
	res, err := lim.allow(t.Context(), "c", p)
	if err != nil || !res.allowed || res.quotaRemaining != 4 || res.rateRemaining != 0 {
		t.Fatalf("first: %+v %v", res, err)
	}
	for range 3 {
		res, err = lim.allow(t.Context(), "c", p)
		if err != nil || res.allowed || res.reason != reasonRate || res.quotaRemaining != 4 {
			t.Fatalf("refused by the rate limit: %+v %v, want the quota left at 4", res, err)
		}
		if res.retry < 59*time.Second || res.retry > time.Minute {
			t.Fatalf("retry %s, want about a minute", res.retry)
		}
	}
	n, err := client.HGet(t.Context(), lim.quotaKey("c", p.quota), "n").Int()
	if err != nil || n != 1 {
		t.Fatalf("quota count in Redis = %d %v, want 1", n, err)
	}
	// The keys README names, each expiring when it holds nothing any more.
	for key, most := range map[string]time.Duration{
		"og:q:{c}:3600000":         time.Hour + time.Second, // the rest of the window
		"rate:og:rl:{c}:1/60000/1": time.Minute,             // until the bucket is full
	} {
		ttl := client.PTTL(t.Context(), key).Val()
		if ttl <= 0 || ttl > most {
			t.Errorf("%s: TTL %s, want in (0, %s]", key, ttl, most)
		}
	}
}

// limiterExactness sends 240 requests of one client from 8 goroutines
// through limiters on separate connections (instances), at 10 per minute
// with bursts of 10: exactly 10 pass, and the quota counted exactly those.
func limiterExactness(t *testing.T, limiters []*redisLimiter, client redis.UniversalClient) {
	t.Helper()
	p := testPolicy(t, &RateLimit{Requests: 10, Period: caddy.Duration(time.Minute)}, &Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}, 0)
	var passed, failed atomic.Int64
	var wg sync.WaitGroup
	for i := range 8 {
		lim := limiters[i%len(limiters)]
		wg.Go(func() {
			for range 30 {
				res, err := lim.allow(context.Background(), "exact", p)
				switch {
				case err != nil:
					failed.Add(1)
				case res.allowed:
					passed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() != 0 || passed.Load() != 10 {
		t.Fatalf("%d passed (%d errors) of 240, want exactly the burst of 10", passed.Load(), failed.Load())
	}
	n, err := client.HGet(t.Context(), limiters[0].quotaKey("exact", p.quota), "n").Int()
	if err != nil || n != 10 {
		t.Fatalf("quota count = %d %v, want 10", n, err)
	}
}

func TestRedisLimiterExactAcrossInstances(t *testing.T) {
	rd := redistest.Start(t)
	a, _ := testRedisClient(t, rd.Addr())
	b, _ := testRedisClient(t, rd.Addr())
	limiterExactness(t, []*redisLimiter{newRedisLimiter(redisProvider{a, "og:"}), newRedisLimiter(redisProvider{b, "og:"})}, a)
}

// redisStoreLimiters provisions n Redis stores on cfg, each with its own
// pooled connection as separate instances would have, and returns their
// limiters, built as the handler builds them (rateLimiterProvider), with a
// round-trip counter on the first store's client.
func redisStoreLimiters(t *testing.T, cfg RedisStore, n int) ([]*redisLimiter, redis.UniversalClient, *roundTrips) {
	t.Helper()
	var lims []*redisLimiter
	var first redis.UniversalClient
	rt := &roundTrips{}
	for i := range n {
		c := cfg
		c.DialTimeout = caddy.Duration(DefaultRedisDialTimeout + time.Duration(i)*time.Millisecond)
		s := redisTestProvision(t, c)
		var p rateLimiterProvider = s
		client, _, _ := p.rateLimitRedis()
		if first == nil {
			first = client
			client.AddHook(rt)
		}
		lims = append(lims, newRedisLimiter(p))
	}
	return lims, first, rt
}

func TestRedisLimiterCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	lims, client, rt := redisStoreLimiters(t, RedisStore{Addresses: cl.Addrs(), KeyPrefix: "og:"}, 2)
	limiterExactness(t, lims, client)

	// A client's two keys share a slot, so one pipeline reaches one node;
	// different clients spread over the masters.
	la := lims[0]
	p := testPolicy(t, &RateLimit{Requests: 1000, Period: caddy.Duration(time.Second)}, &Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}, 0)
	slots := map[int64]bool{}
	for i := range 20 {
		id := "client-" + strconv.Itoa(i)
		rs := client.ClusterKeySlot(t.Context(), "rate:"+la.rateKey(id, p.rate)).Val()
		qs := client.ClusterKeySlot(t.Context(), la.quotaKey(id, p.quota)).Val()
		if rs != qs {
			t.Fatalf("%s: rate key in slot %d, quota key in %d", id, rs, qs)
		}
		slots[rs] = true
		if _, err := la.allow(t.Context(), id, p); err != nil { // loads the scripts on that node
			t.Fatal(err)
		}
	}
	if len(slots) < 10 {
		t.Errorf("20 clients in %d slots: the hash tag should spread them", len(slots))
	}
	before := rt.n.Load()
	for i := range 20 {
		res, err := la.allow(t.Context(), "client-"+strconv.Itoa(i), p)
		if err != nil || !res.allowed {
			t.Fatalf("%+v %v", res, err)
		}
	}
	if n := rt.n.Load() - before; n != 20 {
		t.Fatalf("%d round trips for 20 requests on the Cluster, want 20", n)
	}
}

// TestRedisLimiterSentinel: the limits count on the master the store's
// Sentinel watcher follows, exactly across two instances.
func TestRedisLimiterSentinel(t *testing.T) {
	st := redistest.StartSentinel(t)
	lims, client, _ := redisStoreLimiters(t, RedisStore{Addresses: st.SentinelAddrs(), MasterName: redistest.SentinelMasterName, KeyPrefix: "og:"}, 2)
	limiterExactness(t, lims, client)
}

// TestRateLimitFailsClosed: when the limiter's Redis does not answer, a
// protected request gets 503 + 23090 and is not forwarded; with
// rate_limit_fail_open it goes through uncounted.
func TestRateLimitFailsClosed(t *testing.T) {
	rd := redistest.Start(t)
	for _, failOpen := range []bool{false, true} {
		t.Run("fail_open="+strconv.FormatBool(failOpen), func(t *testing.T) {
			h := newTestHandlerLogging(t, func(h *Handler) {
				h.RateLimit = &RateLimit{Requests: 100, Period: caddy.Duration(time.Second)}
				h.RateLimitFailOpen = failOpen
			}, zap.NewNop())
			client, _ := testRedisClient(t, rd.Addr())
			h.limits.counter = newRedisLimiter(redisProvider{client, "og:"})
			token := issueToken(t, h, testClientID, testClientSecret, "")
			rec := httptest.NewRecorder()
			next := &nextRecorder{}
			_ = h.ServeHTTP(rec, protectedRequest(t, token), next.handler())
			if rec.Code != 200 || rec.Header().Get("RateLimit") == "" {
				t.Fatalf("with Redis up: %d, RateLimit %q", rec.Code, rec.Header().Get("RateLimit"))
			}
			rd.Stop()
			defer rd.Start()
			rec = httptest.NewRecorder()
			next = &nextRecorder{}
			_ = h.ServeHTTP(rec, protectedRequest(t, token), next.handler())
			if failOpen {
				if rec.Code != 200 || !next.called {
					t.Fatalf("fail open: %d, forwarded %v", rec.Code, next.called)
				}
				return
			}
			checkErrorEnvelope(t, rec, http.StatusServiceUnavailable, CodeInternal)
			if next.called {
				t.Fatal("forwarded while the limit could not be counted")
			}
		})
	}
}

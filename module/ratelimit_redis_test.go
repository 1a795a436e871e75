package outergate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/outergate/outergate/integration/harness"
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
	rd := harness.StartRedis(t)
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
	rd := harness.StartRedis(t)
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
	rd := harness.StartRedis(t)
	a, _ := testRedisClient(t, rd.Addr())
	b, _ := testRedisClient(t, rd.Addr())
	limiterExactness(t, []*redisLimiter{newRedisLimiter(redisProvider{a, "og:"}), newRedisLimiter(redisProvider{b, "og:"})}, a)
}

// startRedisCluster starts n redis-server processes in cluster mode on free
// loopback ports, joins them into one cluster of n masters with
// redis-cli --cluster create, waits until it is ok, and stops every
// process at the end of the test.
func startRedisCluster(t *testing.T, n int) []string {
	t.Helper()
	harness.RequireRedisServer(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-cli not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-cli not found (Debian: apt-get install redis-tools)")
	}
	dir := t.TempDir()
	var addrs []string
	for range n {
		port := strconv.Itoa(harness.FreePort(t))
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+port+".conf"), "--save", "", "--appendonly", "no",
			"--dir", dir, "--loglevel", "warning")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })
		addrs = append(addrs, "127.0.0.1:"+port)
	}
	for _, a := range addrs {
		waitRedisCLI(t, a, "PING", "PONG")
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	out, err := exec.Command("redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		waitRedisCLI(t, a, "CLUSTER INFO", "cluster_state:ok")
	}
	return addrs
}

// waitRedisCLI waits up to 10 s until `redis-cli -h -p cmd` prints want.
func waitRedisCLI(t *testing.T, addr, cmd, want string) {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("redis-cli", append([]string{"-h", host, "-p", port}, strings.Fields(cmd)...)...).Output()
		if strings.Contains(string(out), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q never answered %q (last: %s)", addr, cmd, want, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestRedisLimiterCluster(t *testing.T) {
	addrs := startRedisCluster(t, 3)
	a, rt := testRedisClient(t, addrs...)
	b, _ := testRedisClient(t, addrs...)
	la := newRedisLimiter(redisProvider{a, "og:"})
	limiterExactness(t, []*redisLimiter{la, newRedisLimiter(redisProvider{b, "og:"})}, a)

	// A client's two keys share a slot, so one pipeline reaches one node;
	// different clients spread over the masters.
	p := testPolicy(t, &RateLimit{Requests: 1000, Period: caddy.Duration(time.Second)}, &Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}, 0)
	slots := map[int64]bool{}
	for i := range 20 {
		id := "client-" + strconv.Itoa(i)
		rs := a.ClusterKeySlot(t.Context(), "rate:"+la.rateKey(id, p.rate)).Val()
		qs := a.ClusterKeySlot(t.Context(), la.quotaKey(id, p.quota)).Val()
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

// TestRateLimitFailsClosed: when the limiter's Redis does not answer, a
// protected request gets 503 + 23090 and is not forwarded; with
// rate_limit_fail_open it goes through uncounted.
func TestRateLimitFailsClosed(t *testing.T) {
	rd := harness.StartRedis(t)
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

// startSentinel starts one redis-sentinel on a free port watching the
// master at masterAddr as "mymaster", stopped at the end of the test, and
// returns its address once it knows the master.
func startSentinel(t *testing.T, masterAddr string) string {
	t.Helper()
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-sentinel not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-sentinel not found (Debian: apt-get install redis-sentinel)")
	}
	host, port, _ := strings.Cut(masterAddr, ":")
	sport := strconv.Itoa(harness.FreePort(t))
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	body := "port " + sport + "\nbind 127.0.0.1\nsentinel monitor mymaster " + host + " " + port + " 1\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-sentinel", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGKILL); _ = cmd.Wait() })
	addr := "127.0.0.1:" + sport
	waitRedisCLI(t, addr, "SENTINEL get-master-addr-by-name mymaster", port)
	return addr
}

func TestRedisLimiterSentinel(t *testing.T) {
	rd := harness.StartRedis(t)
	sentinel := startSentinel(t, rd.Addr())
	var limiters []*redisLimiter
	var first redis.UniversalClient
	for range 2 {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{sentinel}, MasterName: "mymaster",
			DisableIdentity: true, DialTimeout: 500 * time.Millisecond, MaxRetries: 1})
		t.Cleanup(func() { _ = c.Close() })
		if first == nil {
			first = c
		}
		limiters = append(limiters, newRedisLimiter(redisProvider{c, "og:"}))
	}
	limiterExactness(t, limiters, first)
}

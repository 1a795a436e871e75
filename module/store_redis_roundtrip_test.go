package outergate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/outergate/outergate/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// setupTrips counts the round trips made for the test's own requests
// (those whose context carries countedKey: not the store's background
// polls, which land in the count when the machine is slow), one per
// command sent alone and one per pipeline, but not the HELLO with which
// go-redis opens a connection: which nodes already have one differs from
// run to run on a Cluster, and it is paid once per connection.
type setupTrips struct{ n atomic.Int64 }

func (h *setupTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *setupTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" && ctx.Value(countedKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *setupTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if ctx.Value(countedKey{}) != nil {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// redisTestIssuer is a handler on the Redis store described by storeJSON
// (the store module's JSON without "module"), with a cap of maxTokens and
// both throttles on, and the round-trip counter on every connection its
// store makes to Redis (each node's, on a Cluster).
func redisTestIssuer(t *testing.T, storeJSON string, maxTokens int) (*Handler, *redisConn, *setupTrips) {
	t.Helper()
	h := newTestHandler(t, func(h *Handler) {
		h.StoreRaw = json.RawMessage(`{"module":"redis",` + storeJSON + `}`)
		h.MaxTokensPerClient = maxTokens
	})
	rs, ok := unwrapStore(h.store).(*RedisStore)
	if !ok {
		t.Fatalf("store is %T", h.store)
	}
	rt := &setupTrips{}
	c := rs.conn
	if c.cluster != nil {
		c.cluster.OnNewNode(func(n *redis.Client) { n.AddHook(rt) })
		if err := c.cluster.ForEachShard(t.Context(), func(_ context.Context, n *redis.Client) error {
			n.AddHook(rt)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	} else {
		c.client.AddHook(rt)
	}
	return h, c, rt
}

// redisTestIssue asks h for a token and fails the test unless it is 200.
func redisTestIssue(t *testing.T, h *Handler) {
	t.Helper()
	if rec := (tokenCall{body: formCreds(testClientID, testClientSecret), ip: testClientIP, counted: true}).do(t, h); rec.Code != http.StatusOK {
		t.Fatalf("token request: %d %s", rec.Code, rec.Body)
	}
}

// redisTestTripsPerIssue is the mean round trips of n issuances.
func redisTestTripsPerIssue(t *testing.T, h *Handler, rt *setupTrips, n int) float64 {
	t.Helper()
	before := rt.n.Load()
	for range n {
		redisTestIssue(t, h)
	}
	return float64(rt.n.Load()-before) / float64(n)
}

// TestRedisIssueOneRoundTrip: on one server a successful issuance (secret
// checked, both lockouts passed, index, token and cap written) is one round
// trip to Redis, under the cap and at it (the evicted token deleted and
// published in the same script), and with `replicas 1` (WAIT in the same
// pipeline). A script Redis forgot (SCRIPT FLUSH) costs one more, once.
func TestRedisIssueOneRoundTrip(t *testing.T) {
	rd := redistest.Start(t)
	for _, tc := range []struct {
		name     string
		replicas bool
	}{{"single server", false}, {"replicas 1", true}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := `"url":"` + rd.URL() + `","key_prefix":"rt-` + strings.ReplaceAll(tc.name, " ", "-") + `:"`
			if tc.replicas {
				redistest.StartReplica(t, rd)
				cfg += `,"replicas":1`
			}
			h, c, rt := redisTestIssuer(t, cfg, 3)
			for range 2 { // loads the script, opens the connections
				redisTestIssue(t, h)
			}
			if got := redisTestTripsPerIssue(t, h, rt, 2); got != 1 {
				t.Fatalf("%.2f round trips per issuance under the cap, want 1", got)
			}
			if got := redisTestTripsPerIssue(t, h, rt, 10); got != 1 {
				t.Fatalf("%.2f round trips per issuance at the cap, want 1", got)
			}
			if n, err := c.countClient(t.Context(), testClientID); err != nil || n != 3 {
				t.Fatalf("%d live tokens after 14 issuances with a cap of 3 (%v)", n, err)
			}
			if tc.replicas {
				if got := c.replicasFor(""); got != 1 {
					t.Fatalf("writes wait for %d replicas, want 1", got)
				}
			}
			if err := c.client.ScriptFlush(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			if got := redisTestTripsPerIssue(t, h, rt, 1); got != 2 {
				t.Fatalf("%.2f round trips for the issuance after SCRIPT FLUSH, want 2 (EVALSHA, then EVAL)", got)
			}
			if got := redisTestTripsPerIssue(t, h, rt, 3); got != 1 {
				t.Fatalf("%.2f round trips per issuance once the script is back, want 1", got)
			}
		})
	}
}

// TestRedisIssueRoundTripsCluster: on a Cluster the index, the lockouts
// and the token hash to different slots, so an issuance is two steps
// under the cap (index and lockouts, one pipeline per master in
// parallel; then the token) and three at it (the evicted tokens' DEL and
// PUBLISH ride with the token; then their ZREM from the index).
func TestRedisIssueRoundTripsCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cl := redistest.StartCluster(t)
	addrs, _ := json.Marshal(cl.Addrs())
	h, c, rt := redisTestIssuer(t, `"addresses":`+string(addrs), 3)
	for range 2 { // loads the scripts on their masters, opens the connections
		redisTestIssue(t, h)
	}
	ctx := t.Context()
	masters := func(keys ...string) int {
		seen := map[string]bool{}
		for _, k := range keys {
			n, err := c.cluster.MasterForKey(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			seen[n.Options().Addr] = true
		}
		return len(seen)
	}
	step1 := masters(c.clientKey(testClientID), c.failureKey("ip:"+testClientIP), c.failureKey("client:"+testClientID))
	under := redisTestTripsPerIssue(t, h, rt, 1)
	if n, _ := c.countClient(ctx, testClientID); n != 3 {
		t.Fatalf("%d live tokens after 3 issuances with a cap of 3", n)
	}
	if want := float64(step1 + 1); under != want {
		t.Fatalf("%.0f round trips under the cap, want %.0f (%d masters for the index and lockouts, then the token)", under, want, step1)
	}
	// At the cap each issuance evicts one token, whose DEL goes to its own
	// master with the new token's SET (or in its pipeline).
	at := redisTestTripsPerIssue(t, h, rt, 20)
	t.Logf("Cluster: %.0f round trips under the cap (%d masters in step 1), %.2f at it", under, step1, at)
	if at < under+1 || at > under+2 {
		t.Fatalf("%.2f round trips at the cap, want between %.0f and %.0f", at, under+1, under+2)
	}
	if n, err := c.countClient(ctx, testClientID); err != nil || n != 3 {
		t.Fatalf("%d live tokens after 23 issuances with a cap of 3 (%v)", n, err)
	}
	// A locked address: the step-1 answer refuses, the index entry is
	// taken back, no token is written.
	for range h.ThrottleFailures {
		if _, err := c.countFailures(ctx, []Lockout{h.auth.byAddress.lockout("ip:" + testClientIP)}); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := c.client.ZCard(ctx, c.clientKey(testClientID)).Result()
	rec := tokenCall{body: formCreds(testClientID, testClientSecret), ip: testClientIP, counted: true}.do(t, h)
	checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
	if after, _ := c.client.ZCard(ctx, c.clientKey(testClientID)).Result(); after != before {
		t.Fatalf("index holds %d entries after a locked-out issuance, %d before", after, before)
	}
}

// TestRedisLockedAddressRefusedEarly: the first request from a locked
// address asks Redis (one round trip) and gets 429; the instance then
// refuses that address without a round trip, right secret or not, until
// the window ends.
func TestRedisLockedAddressRefusedEarly(t *testing.T) {
	rd := redistest.Start(t)
	h, c, rt := redisTestIssuer(t, `"url":"`+rd.URL()+`"`, 0)
	redisTestIssue(t, h)
	lock := h.auth.byAddress.lockout("ip:" + testClientIP)
	for range lock.Max {
		if _, err := c.countFailures(t.Context(), []Lockout{lock}); err != nil {
			t.Fatal(err)
		}
	}
	for i, secret := range []string{testClientSecret, testClientSecret, "wrong", testClientSecret} {
		before := rt.n.Load()
		rec := tokenCall{body: formCreds(testClientID, secret), ip: testClientIP, counted: true}.do(t, h)
		checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
		if rec.Header().Get("Retry-After") == "" {
			t.Fatalf("request %d: 429 without Retry-After", i)
		}
		want := int64(0)
		if i == 0 {
			want = 1
		}
		if got := rt.n.Load() - before; got != want {
			t.Fatalf("request %d from a locked address: %d round trips, want %d", i, got, want)
		}
	}
	// Another address is not refused.
	if rec := (tokenCall{body: formCreds(testClientID, testClientSecret), ip: "198.51.100.77", counted: true}).do(t, h); rec.Code != http.StatusOK {
		t.Fatalf("another address: %d %s", rec.Code, rec.Body)
	}
}

// TestRedisWritesSharePipelines: on one server, concurrent issuances share
// pipelines (redisConn.writeShared): fewer round trips than issuances,
// every one answered with its own token, and with `replicas 1` every
// token is on the replica when its answer is given (the pipeline's one
// WAIT acknowledges every write before it).
func TestRedisWritesSharePipelines(t *testing.T) {
	rd := redistest.Start(t)
	replica := redistest.StartReplica(t, rd)
	h, c, _ := redisTestIssuer(t, `"url":"`+rd.URL()+`","replicas":1`, 0)
	redisTestIssue(t, h) // loads the script, opens a connection
	rt := &roundTrips{}
	c.client.AddHook(rt)
	const n = 64
	type answer struct {
		status int
		token  string
		err    error
	}
	answers := make(chan answer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, _ := newRequest(http.MethodPost, "/outer/token/", strings.NewReader(formCreds(testClientID, testClientSecret)))
			r.Header.Set("Content-Type", formType)
			r = r.WithContext(contextWithClientIP(r, fmt.Sprintf("192.0.2.%d", 100+i)))
			rec := httptest.NewRecorder()
			err := h.ServeHTTP(rec, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
				return errors.New("next called")
			}))
			var env struct {
				Data struct {
					AccessToken string `json:"access_token"`
				} `json:"data"`
			}
			if err == nil {
				err = json.Unmarshal(rec.Body.Bytes(), &env)
			}
			answers <- answer{rec.Code, env.Data.AccessToken, err}
		}()
	}
	close(start)
	wg.Wait()
	close(answers)
	onReplica := redis.NewClient(&redis.Options{Addr: replica.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = onReplica.Close() })
	seen := map[string]bool{}
	for a := range answers {
		if a.err != nil || a.status != http.StatusOK || a.token == "" || seen[a.token] {
			t.Fatalf("issuance: %d %q %v", a.status, a.token, a.err)
		}
		seen[a.token] = true
	}
	// Checked after every answer: each was given after its pipeline's WAIT.
	for token := range seen {
		if got, err := onReplica.Exists(t.Context(), c.tokenKey(hashToken(token))).Result(); err != nil || got != 1 {
			t.Fatalf("an answered token is not on the replica: %d %v", got, err)
		}
	}
	trips := rt.n.Load()
	t.Logf("%d concurrent issuances in %d round trips", n, trips)
	if trips >= n {
		t.Fatalf("%d round trips for %d concurrent issuances: the writes did not share pipelines", trips, n)
	}
}

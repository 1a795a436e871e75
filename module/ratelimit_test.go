package outergate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestNewPolicy(t *testing.T) {
	sec := caddy.Duration(time.Second)
	def := &RateLimit{Requests: 50, Period: sec, Burst: 100}
	defQ := &Quota{Requests: 1000, Window: caddy.Duration(time.Hour)}
	for _, tc := range []struct {
		name        string
		def, own    *RateLimit
		defQ, ownQ  *Quota
		defF, ownF  int
		wantRate    ratePolicy
		wantQuota   quotaPolicy
		wantFlight  int
		wantHeader  string
		wantErrPart string
	}{
		{name: "nothing set: no limits"},
		{name: "the handler's defaults apply", def: def, defQ: defQ, defF: 20,
			wantRate: ratePolicy{50, 100, time.Second, "50/1000/100"}, wantQuota: quotaPolicy{1000, time.Hour}, wantFlight: 20,
			wantHeader: `"rate";q=100;w=2, "quota";q=1000;w=3600`},
		{name: "a client's own limits override them", def: def, own: &RateLimit{Requests: 5, Period: sec, Burst: 5},
			defQ: defQ, ownQ: &Quota{Requests: 10, Window: caddy.Duration(24 * time.Hour)}, defF: 20, ownF: 2,
			wantRate: ratePolicy{5, 5, time.Second, "5/1000/5"}, wantQuota: quotaPolicy{10, 24 * time.Hour}, wantFlight: 2,
			wantHeader: `"rate";q=5;w=1, "quota";q=10;w=86400`},
		{name: "off turns a default off", def: def, own: &RateLimit{Off: true}, defQ: defQ, ownQ: &Quota{Off: true}, defF: 20, ownF: -1},
		{name: "burst defaults to the rate", own: &RateLimit{Requests: 10, Period: caddy.Duration(time.Minute)},
			wantRate: ratePolicy{10, 10, time.Minute, "10/60000/10"}, wantHeader: `"rate";q=10;w=60`},
		{name: "period defaults to 1s", own: &RateLimit{Requests: 3},
			wantRate: ratePolicy{3, 3, time.Second, "3/1000/3"}, wantHeader: `"rate";q=3;w=1`},
		{name: "zero requests is an error", own: &RateLimit{Requests: 0, Period: sec}, wantErrPart: "requests must be positive"},
		{name: "a quota window under 1s is an error", ownQ: &Quota{Requests: 1, Window: caddy.Duration(time.Millisecond)}, wantErrPart: "quota"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := newPolicy(tc.def, tc.own, tc.defQ, tc.ownQ, tc.defF, tc.ownF)
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("err = %v, want one with %q", err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.rate != tc.wantRate || p.quota != tc.wantQuota || p.maxInFlight != tc.wantFlight || p.header != tc.wantHeader || p.headerValue[0] != tc.wantHeader {
				t.Fatalf("policy = %+v, want rate %+v quota %+v in flight %d header %q", p, tc.wantRate, tc.wantQuota, tc.wantFlight, tc.wantHeader)
			}
		})
	}
}

// testPolicy builds a policy or fails the test.
func testPolicy(t testing.TB, rl *RateLimit, q *Quota, inFlight int) *policy {
	t.Helper()
	p, err := newPolicy(nil, rl, nil, q, 0, inFlight)
	if err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestMemoryBucket(t *testing.T) {
	p := testPolicy(t, &RateLimit{Requests: 5, Period: caddy.Duration(time.Second), Burst: 5}, nil, 0)
	c := &clientState{}
	now := time.Unix(1_000_000, 0)
	for i := range 5 {
		res := c.allow(now, p)
		if !res.allowed || res.rateRemaining != 4-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i+1, res, 4-i)
		}
	}
	res := c.allow(now, p)
	if res.allowed || res.reason != reasonRate || res.retry != 200*time.Millisecond || res.rateReset != time.Second {
		t.Fatalf("6th request: %+v, want refused for rate, retry 200ms, reset 1s", res)
	}
	// Refused requests take nothing: after the retry delay one passes.
	if res := c.allow(now.Add(199*time.Millisecond), p); res.allowed {
		t.Fatalf("before Retry-After: %+v, want refused", res)
	}
	if res := c.allow(now.Add(200*time.Millisecond), p); !res.allowed {
		t.Fatalf("at Retry-After: %+v, want allowed", res)
	}
	// A change of limit on reload applies to the next request, with a
	// full bucket.
	p2 := testPolicy(t, &RateLimit{Requests: 1, Period: caddy.Duration(time.Minute), Burst: 1}, nil, 0)
	later := now.Add(300 * time.Millisecond)
	if res := c.allow(later, p2); !res.allowed || res.rateRemaining != 0 {
		t.Fatalf("first under the new limit: %+v", res)
	}
	if res := c.allow(later.Add(time.Second), p2); res.allowed || res.retry < 58*time.Second {
		t.Fatalf("second under 1/1m: %+v, want refused for about a minute", res)
	}
}

func TestMemoryQuota(t *testing.T) {
	p := testPolicy(t, &RateLimit{Requests: 2, Period: caddy.Duration(time.Second), Burst: 2},
		&Quota{Requests: 3, Window: caddy.Duration(time.Hour)}, 0)
	c := &clientState{}
	start := time.Unix(3600*1000+1800, 0) // half way through an hour
	if res := c.allow(start, p); !res.allowed || res.quotaRemaining != 2 || res.quotaReset != 30*time.Minute {
		t.Fatalf("first: %+v", res)
	}
	c.allow(start, p)
	// The rate limit refuses the third: it does not count against the quota.
	if res := c.allow(start, p); res.allowed || res.reason != reasonRate || res.quotaRemaining != 1 {
		t.Fatalf("third at once: %+v, want refused for rate, quota untouched", res)
	}
	if res := c.allow(start.Add(time.Second), p); !res.allowed || res.quotaRemaining != 0 {
		t.Fatalf("third after a second: %+v", res)
	}
	res := c.allow(start.Add(2*time.Second), p)
	if res.allowed || res.reason != reasonQuota || res.retry != 30*time.Minute-2*time.Second {
		t.Fatalf("fourth: %+v, want refused for quota until the hour", res)
	}
	// The quota's refusal takes nothing from the bucket.
	if res.rateRemaining != 2 {
		t.Fatalf("bucket after a quota refusal: %d, want full (2)", res.rateRemaining)
	}
	if res := c.allow(start.Add(30*time.Minute), p); !res.allowed || res.quotaRemaining != 2 {
		t.Fatalf("next window: %+v, want allowed with 2 left", res)
	}
}

func TestLimitStateSweep(t *testing.T) {
	s := newLimitState(time.Hour)
	t.Cleanup(func() { _ = s.Destruct() })
	p := testPolicy(t, &RateLimit{Requests: 1, Period: caddy.Duration(time.Second)}, nil, 0)
	lim := memoryLimiter{s}
	if _, err := lim.allow(t.Context(), "idle", p); err != nil {
		t.Fatal(err)
	}
	busy, ok := s.acquire("busy", 1)
	if !ok {
		t.Fatal("acquire refused")
	}
	if _, ok := s.acquire("busy", 1); ok {
		t.Fatal("second acquire at max 1 accepted")
	}
	s.sweep(time.Now())
	if s.size() != 2 {
		t.Fatalf("swept a client whose bucket is not full yet: %d left", s.size())
	}
	s.sweep(time.Now().Add(2 * time.Minute))
	if s.size() != 1 {
		t.Fatalf("after the bucket refilled: %d clients, want 1 (the one in flight)", s.size())
	}
	busy.release()
	s.sweep(time.Now().Add(2 * time.Minute))
	if s.size() != 0 {
		t.Fatalf("after release: %d clients, want 0", s.size())
	}
	// A swept client starts afresh.
	if res, _ := lim.allow(t.Context(), "idle", p); !res.allowed {
		t.Fatal("a swept client is refused")
	}
}

func TestAuditSampling(t *testing.T) {
	c := &clientState{}
	now := time.Unix(100, 0)
	if n, ok := c.sample(reasonRate, now, time.Second); !ok || n != 1 {
		t.Fatalf("first refusal: %d %v, want logged as 1", n, ok)
	}
	for i := range 9 {
		if _, ok := c.sample(reasonRate, now.Add(time.Duration(i)*time.Millisecond), time.Second); ok {
			t.Fatal("a second refusal in the same second was logged")
		}
	}
	if n, ok := c.sample(reasonQuota, now, time.Second); !ok || n != 1 {
		t.Fatalf("another reason: %d %v, want logged on its own", n, ok)
	}
	if n, ok := c.sample(reasonRate, now.Add(time.Second), time.Second); !ok || n != 10 {
		t.Fatalf("next second: %d %v, want logged standing for 10", n, ok)
	}
}

// limitedHandler is a test handler whose first client has the given limits.
func limitedHandler(t *testing.T, logger *zap.Logger, configure func(c *Client)) *Handler {
	t.Helper()
	return newTestHandlerLogging(t, func(h *Handler) {
		configure(&h.Clients[0])
	}, logger)
}

func protectedRequest(t *testing.T, token string) *http.Request {
	r, _ := newRequest(http.MethodGet, "/outer/device/info/?deviceid=d1", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	return r
}

func TestRateLimitOnProtectedRequests(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	h := limitedHandler(t, zap.New(core), func(c *Client) {
		c.RateLimit = &RateLimit{Requests: 2, Period: caddy.Duration(time.Minute), Burst: 2}
	})
	token := issueToken(t, h, testClientID, testClientSecret, "")
	for i := range 2 {
		next := &nextRecorder{}
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, protectedRequest(t, token), next.handler()); err != nil {
			t.Fatal(err)
		}
		if rec.Code != 200 || !next.called {
			t.Fatalf("request %d: %d, called %v", i+1, rec.Code, next.called)
		}
		if got, want := rec.Header().Get("RateLimit"), `"rate";r=`+string(rune('1'-i))+";t="; !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit %q, want %s…", i+1, got, want)
		}
		if got := rec.Header().Get("RateLimit-Policy"); got != `"rate";q=2;w=60` {
			t.Errorf("RateLimit-Policy %q", got)
		}
	}
	for range 3 {
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, protectedRequest(t, token), failNext(t)); err != nil {
			t.Fatal(err)
		}
		env := checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
		if ra := rec.Header().Get("Retry-After"); ra != "30" {
			t.Errorf("Retry-After %q, want 30 (one of 2 per minute)", ra)
		}
		if !strings.Contains(env.Meta.Message, "rate limit") {
			t.Errorf("message %q", env.Meta.Message)
		}
		if rl := rec.Header().Get("RateLimit"); rl != `"rate";r=0;t=60` {
			t.Errorf("refused RateLimit %q", rl)
		}
	}
	// The other client has no limit and gets no headers.
	rec := httptest.NewRecorder()
	next := &nextRecorder{}
	_ = h.ServeHTTP(rec, protectedRequest(t, issueToken(t, h, readerClientID, readerSecret, "")), next.handler())
	if rec.Code != 200 || rec.Header().Get("RateLimit") != "" {
		t.Fatalf("unlimited client: %d, RateLimit %q", rec.Code, rec.Header().Get("RateLimit"))
	}
	// Three refusals in one second: one audit entry naming the client.
	entries := logs.FilterMessage("client limit reached").All()
	if len(entries) != 1 {
		t.Fatalf("%d audit entries for 3 refusals in a second, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["client_id"] != testClientID || f["limit"] != "rate" || f["refusals"] != int64(1) {
		t.Fatalf("audit entry %v", f)
	}
}

func TestMaxInFlight(t *testing.T) {
	h := limitedHandler(t, zap.NewNop(), func(c *Client) { c.MaxInFlight = 2 })
	token := issueToken(t, h, testClientID, testClientSecret, "")
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	slow := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		entered <- struct{}{}
		<-release
		w.WriteHeader(200)
		return nil
	})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			rec := httptest.NewRecorder()
			_ = h.ServeHTTP(rec, protectedRequest(t, token), slow)
			if rec.Code != 200 {
				t.Errorf("in-flight request: %d", rec.Code)
			}
		})
	}
	<-entered
	<-entered
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, protectedRequest(t, token), failNext(t))
	checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
	if rec.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q, want 1", rec.Header().Get("Retry-After"))
	}
	close(release)
	wg.Wait()

	// A panicking or failing upstream gives its place back.
	boom := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic("upstream panicked") })
	for range 3 {
		func() {
			defer func() { _ = recover() }()
			_ = h.ServeHTTP(httptest.NewRecorder(), protectedRequest(t, token), boom)
		}()
	}
	failing := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, nil)
	})
	for range 3 {
		_ = h.ServeHTTP(httptest.NewRecorder(), protectedRequest(t, token), failing)
	}
	if n := h.limits.local.client(testClientID).inFlight.Load(); n != 0 {
		t.Fatalf("%d places still taken after the requests ended", n)
	}
}

func TestClientTokenTTL(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Clients[0].TokenTTL = caddy.Duration(time.Hour) })
	for _, tc := range []struct {
		id, secret string
		want       time.Duration
	}{{testClientID, testClientSecret, time.Hour}, {readerClientID, readerSecret, DefaultTokenTTL}} {
		rec := tokenCall{body: formCreds(tc.id, tc.secret)}.do(t, h)
		var data tokenData
		env := checkEnvelope(t, rec, 200, 0)
		if err := json.Unmarshal(env.Data, &data); err != nil {
			t.Fatal(err)
		}
		if data.ExpiresIn != int64(tc.want/time.Second) {
			t.Errorf("%s: expires_in %d, want %d", tc.id, data.ExpiresIn, int64(tc.want/time.Second))
		}
		rec2, found, err := h.store.Load(t.Context(), hashToken(data.AccessToken))
		if err != nil || !found {
			t.Fatal(found, err)
		}
		if life := time.Duration(rec2.ExpiresAt-rec2.IssuedAt) * time.Millisecond; life != tc.want {
			t.Errorf("%s: record lives %s, want %s", tc.id, life, tc.want)
		}
	}
}

func TestLimitCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ name, input, want string }{
		{"rate without a period", "rate_limit 5", "want <n>/<duration>"},
		{"rate with a bad duration", "rate_limit 5/x", "bad duration"},
		{"rate of zero", "rate_limit 0/1s", "bad count"},
		{"burst without a number", "rate_limit 5/1s burst", "want <n>/<duration>"},
		{"burst of zero", "rate_limit 5/1s burst 0", "bad burst"},
		{"off needs a client", "rate_limit off", "want <n>/<duration>"},
		{"quota under 1s", "quota 5/500ms", "at least 1s"},
		{"quota twice", "quota 5/1h\nquota 6/1h", "more than once"},
		{"max_in_flight of zero", "max_in_flight 0", "bad number"},
		{"client max_in_flight of zero", "client a sha256:" + strings.Repeat("0", 64) + " {\nmax_in_flight 0\n}", "bad number"},
		{"client rate twice", "client a sha256:" + strings.Repeat("0", 64) + " {\nrate_limit off\nrate_limit 1/1s\n}", "more than once"},
		{"fail open takes no argument", "rate_limit_fail_open yes", "wrong argument count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser("outergate {\n" + tc.input + "\n}")
			err := new(Handler).UnmarshalCaddyfile(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestLimitsSharedWithTheStore: two handlers on one memory store (two
// sites, or the old and the new config of a reload) count a client's
// limit together; one on another store counts apart.
func TestLimitsSharedWithTheStore(t *testing.T) {
	limit := func(store string) func(h *Handler) {
		return func(h *Handler) {
			h.StoreRaw = json.RawMessage(`{"module":"memory","name":"` + store + `"}`)
			h.RateLimit = &RateLimit{Requests: 2, Period: caddy.Duration(time.Minute)}
		}
	}
	a := newTestHandlerLogging(t, limit("shared-limits"), zap.NewNop())
	b := newTestHandlerLogging(t, limit("shared-limits"), zap.NewNop())
	c := newTestHandlerLogging(t, limit("other-limits"), zap.NewNop())
	token := issueToken(t, a, testClientID, testClientSecret, "")
	serve := func(h *Handler) int {
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, protectedRequest(t, token), (&nextRecorder{}).handler())
		return rec.Code
	}
	if got := []int{serve(a), serve(b), serve(a), serve(b)}; got[0] != 200 || got[1] != 200 || got[2] != 429 || got[3] != 429 {
		t.Fatalf("two handlers on one store: %v, want 200 200 429 429", got)
	}
	saveRecord(t, c, token, TokenRecord{ClientID: testClientID, Scope: "read write", IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().Add(time.Hour).UnixMilli()})
	if got := serve(c); got != 200 {
		t.Fatalf("a handler on another store: %d, want 200", got)
	}
}

// TestInFlightRefusalTakesNoRate: a request refused for the in-flight cap
// takes nothing from the rate limit.
func TestInFlightRefusalTakesNoRate(t *testing.T) {
	h := limitedHandler(t, zap.NewNop(), func(c *Client) {
		c.MaxInFlight = 1
		c.RateLimit = &RateLimit{Requests: 2, Period: caddy.Duration(time.Hour)}
	})
	token := issueToken(t, h, testClientID, testClientSecret, "")
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, protectedRequest(t, token), caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
			close(entered)
			<-release
			w.WriteHeader(200)
			return nil
		}))
		done <- rec.Code
	}()
	<-entered
	for range 3 {
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, protectedRequest(t, token), failNext(t))
		env := checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
		if !strings.Contains(env.Meta.Message, "in flight") {
			t.Fatalf("refusal %q, want the in-flight cap", env.Meta.Message)
		}
	}
	close(release)
	if code := <-done; code != 200 {
		t.Fatalf("the request in flight: %d", code)
	}
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, protectedRequest(t, token), (&nextRecorder{}).handler())
	if rec.Code != 200 {
		t.Fatalf("second request of 2 per hour after 3 in-flight refusals: %d, want 200", rec.Code)
	}
}

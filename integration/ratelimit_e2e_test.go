package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
	"github.com/outergate/outergate/internal/redistest"
)

// The client the limit tests configure, beside the usual ones.
const (
	limitedID     = "limited"
	limitedSecret = "limited-secret-0005"
)

// limitedClient is a client block for limitedID holding body.
func limitedClient(body string) string {
	return fmt.Sprintf("\t\tclient %s %s {\n%s\n\t\t}\n", limitedID, sha256Hash(limitedSecret), body)
}

// limitStores are the stores every limit test runs on: in-process and
// Redis (counted in Redis).
func limitStores(t *testing.T) map[string]func() string {
	return map[string]func() string{
		"memory": func() string { return "" },
		"redis":  func() string { return "\t\tstore redis " + harness.StartRedis(t).URL() + "\n" },
	}
}

// upstreamCount is how many requests of client id reached the backend, as
// its request log tells.
func upstreamCount(g *gateway, id string) int {
	n := 0
	for _, s := range g.backend.Requests() {
		if s.Header.Get("X-Outer-Client-Id") == id {
			n++
		}
	}
	return n
}

// TestRateLimitBurstThenRetryAfter: a client at 5/1s burst 5 gets five
// answers, then 429 + 23029 with Retry-After: 1 and the RateLimit fields,
// and passes again once Retry-After has elapsed; the backend saw only the
// accepted requests.
func TestRateLimitBurstThenRetryAfter(t *testing.T) {
	for name, store := range limitStores(t) {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{Extra: store() + limitedClient("\t\t\trate_limit 5/1s burst 5")})
			tok := g.issue(limitedID, limitedSecret)
			req := request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}
			for i := range 5 {
				r := g.do(req)
				expect(t, r, 200, 0, "Device info")
				if got := r.header.Get("RateLimit-Policy"); got != `"rate";q=5;w=1` {
					t.Errorf("request %d: RateLimit-Policy %q", i+1, got)
				}
				if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"rate";r=%d;t=1`, 4-i); got != want {
					t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
				}
			}
			refused := g.do(req)
			expect(t, refused, 429, 23029, "")
			ra := refused.header.Get("Retry-After")
			if ra != "1" {
				t.Fatalf("Retry-After %q, want 1 (one request per 200 ms)", ra)
			}
			if got := refused.header.Get("RateLimit"); got != `"rate";r=0;t=1` {
				t.Errorf("refused: RateLimit %q", got)
			}
			if got := refused.header.Get("RateLimit-Policy"); got != `"rate";q=5;w=1` {
				t.Errorf("refused: RateLimit-Policy %q", got)
			}
			// More refusals while the bucket is empty; none is forwarded.
			for range 3 {
				expect(t, g.do(req), 429, 23029, "")
			}
			if n := upstreamCount(g, limitedID); n != 5 {
				t.Fatalf("backend saw %d requests of %s, want the 5 accepted", n, limitedID)
			}
			// The other clients are not limited.
			expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(g.issue(appID, appSecret))}), 200, 0, "Device info")
			time.Sleep(time.Second)
			r := g.do(req)
			expect(t, r, 200, 0, "Device info")
			if n := upstreamCount(g, limitedID); n != 6 {
				t.Fatalf("backend saw %d requests of %s, want 6", n, limitedID)
			}
			// The audit log names the client on the refusals.
			if logs := g.caddy.Logs(); !strings.Contains(logs, `"client limit reached"`) || !strings.Contains(logs, `"client_id":"limited","limit":"rate"`) {
				t.Errorf("audit log has no refusal naming the client:\n%s", logs)
			}
			m, _ := opsScrape(t, g.caddy)
			if v, _ := m.get(`outergate_rate_limited_total{reason="rate"}`); v < 4 {
				t.Errorf("outergate_rate_limited_total{reason=\"rate\"} = %v, want >= 4", v)
			}
			if _, ok := m.get("outergate_rate_limited_by_client_total"); ok {
				t.Errorf("per-client series without rate_limit_client_metrics")
			}
		})
	}
}

// TestRateLimitSharedAcrossInstances: two gateways on one Redis (a single
// server, a real Cluster of 3 masters and 3 replicas, a real Sentinel
// setup of 1 master, 2 replicas and 3 Sentinels), hammered at once, together accept no more than burst + rate × elapsed, and each
// of them accepts some: the bucket is one. The backend saw exactly the
// accepted requests.
func TestRateLimitSharedAcrossInstances(t *testing.T) {
	for _, topo := range []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"single", func(t *testing.T) string { return "\t\tstore redis " + redistest.Start(t).URL() + "\n" }},
		{"cluster", func(t *testing.T) string {
			return "\t\tstore redis {\n\t\t\taddress " + strings.Join(redistest.StartCluster(t).Addrs(), " ") + "\n\t\t}\n"
		}},
		{"sentinel", func(t *testing.T) string {
			return "\t\tstore redis {\n\t\t\taddress " + strings.Join(redistest.StartSentinel(t).SentinelAddrs(), " ") +
				"\n\t\t\tmaster_name " + redistest.SentinelMasterName + "\n\t\t}\n"
		}},
	} {
		t.Run(topo.name, func(t *testing.T) { rateLimitShared(t, topo.store(t)) })
	}
}

// rateLimitShared is TestRateLimitSharedAcrossInstances on one store.
func rateLimitShared(t *testing.T, store string) {
	extra := store + limitedClient("\t\t\trate_limit 10/1s burst 10\n\t\t\tquota 1000/1h")
	a := startGateway(t, gatewayConfig{Extra: extra})
	b := startGateway(t, gatewayConfig{Extra: extra})
	tok := a.issue(limitedID, limitedSecret)
	b.remember(tok)
	req := request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}

	const perWorker = 400 // bounds the run; the clock ends it first
	var accepted [2]atomic.Int64
	var other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, g := range []*gateway{a, b} {
		for range 3 {
			wg.Go(func() {
				for range perWorker {
					r := g.do(req)
					switch {
					case r.status == 200:
						accepted[i].Add(1)
					case r.status == 429 && r.code() == 23029:
					default:
						other.Add(1)
					}
					if time.Since(start) > 1500*time.Millisecond {
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := accepted[0].Load() + accepted[1].Load()
	bound := 10 + int64(10*elapsed.Seconds()) + 1
	t.Logf("accepted %d + %d = %d in %s (bound %d)", accepted[0].Load(), accepted[1].Load(), total, elapsed, bound)
	if other.Load() != 0 {
		t.Fatalf("%d answers neither 200 nor 429", other.Load())
	}
	if total > bound {
		t.Fatalf("two instances accepted %d in %s, over burst + rate × elapsed = %d", total, elapsed, bound)
	}
	if accepted[0].Load() == 0 || accepted[1].Load() == 0 || total < 10 {
		t.Fatalf("accepted %d and %d: want both instances to pass some, and the burst at least", accepted[0].Load(), accepted[1].Load())
	}
	if got := int64(upstreamCount(a, limitedID) + upstreamCount(b, limitedID)); got != total {
		t.Fatalf("backends saw %d requests, want the %d accepted", got, total)
	}
	// The quota counted every accepted request, once, on both.
	r := a.do(req)
	if r.status == 200 {
		total++
	}
	want := fmt.Sprintf(`"quota";r=%d;`, 1000-total)
	if got := r.header.Get("RateLimit"); !strings.Contains(got, want) {
		t.Fatalf("RateLimit %q, want the quota at %s…", got, want)
	}
}

// waitWindowStart sleeps until just after the start of a fixed window of
// length w (aligned on the Unix epoch, like the quota's).
func waitWindowStart(w time.Duration) {
	now := time.Now()
	time.Sleep(w - time.Duration(now.UnixNano()%int64(w)) + 20*time.Millisecond)
}

// TestQuotaExhaustionAndReset: a quota of 3 per 3 s window: three pass,
// the fourth gets 429 with Retry-After up to the window's end and the
// quota's RateLimit item at 0; after it, the count starts again.
func TestQuotaExhaustionAndReset(t *testing.T) {
	for name, store := range limitStores(t) {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{Extra: store() + limitedClient("\t\t\tquota 3/3s")})
			tok := g.issue(limitedID, limitedSecret)
			req := request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}
			waitWindowStart(3 * time.Second)
			for i := range 3 {
				r := g.do(req)
				expect(t, r, 200, 0, "Device info")
				if got, want := r.header.Get("RateLimit"), fmt.Sprintf(`"quota";r=%d;t=3`, 2-i); got != want {
					t.Errorf("request %d: RateLimit %q, want %q", i+1, got, want)
				}
			}
			r := g.do(req)
			expect(t, r, 429, 23029, "")
			if !strings.Contains(r.env.Meta.Message, "quota") {
				t.Errorf("message %q, want the quota named", r.env.Meta.Message)
			}
			ra, err := strconv.Atoi(r.header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 3 {
				t.Fatalf("Retry-After %q, want 1..3", r.header.Get("Retry-After"))
			}
			if got := r.header.Get("RateLimit"); got != fmt.Sprintf(`"quota";r=0;t=%d`, ra) {
				t.Errorf("refused: RateLimit %q", got)
			}
			if got := r.header.Get("RateLimit-Policy"); got != `"quota";q=3;w=3` {
				t.Errorf("RateLimit-Policy %q", got)
			}
			if n := upstreamCount(g, limitedID); n != 3 {
				t.Fatalf("backend saw %d, want 3", n)
			}
			time.Sleep(time.Duration(ra) * time.Second)
			r = g.do(req)
			expect(t, r, 200, 0, "Device info")
			if got := r.header.Get("RateLimit"); !strings.HasPrefix(got, `"quota";r=2;`) {
				t.Errorf("new window: RateLimit %q, want r=2", got)
			}
		})
	}
}

// TestMaxInFlightRefusesAtOnce: with max_in_flight 2 and two requests
// hanging on the backend, a third is refused at once (while those two are
// still in flight) and never forwarded; once they end (the gateway's
// response timeout), the client passes again.
func TestMaxInFlightRefusesAtOnce(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: limitedClient("\t\t\tmax_in_flight 2")})
	tok := g.issue(limitedID, limitedSecret)
	slow := request{path: infoPath + legacy.DeviceSlow, header: bearer(tok)}
	var wg sync.WaitGroup
	var slowDone atomic.Int32
	for range 2 {
		wg.Go(func() {
			r := g.do(slow)
			slowDone.Add(1)
			if r.status != http.StatusGatewayTimeout {
				t.Errorf("slow request: %d %s, want 504 (response_header_timeout)", r.status, r.body)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for upstreamCount(g, limitedID) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if upstreamCount(g, limitedID) != 2 {
		t.Fatal("the two slow requests did not reach the backend")
	}
	r := g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)})
	if slowDone.Load() != 0 {
		t.Fatal("the third request was answered only after a slow one ended")
	}
	expect(t, r, 429, 23029, "")
	if ra := r.header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	// Another client is not held up.
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(g.issue(appID, appSecret))}), 200, 0, "Device info")
	wg.Wait()
	if n := upstreamCount(g, limitedID); n != 2 {
		t.Fatalf("backend saw %d requests of %s, want only the 2 slow ones", n, limitedID)
	}
	// The failed (504) requests gave their places back.
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
}

// TestClientTokenTTL: a client's own token_ttl is its tokens' expires_in
// and their lifetime (introspection's exp - iat); other clients keep the
// handler's, on both stores.
func TestClientTokenTTL(t *testing.T) {
	for name, store := range limitStores(t) {
		t.Run(name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{Extra: store() + limitedClient("\t\t\ttoken_ttl 1h")})
			for _, c := range []struct {
				id, secret string
				want       int64
			}{{limitedID, limitedSecret, 3600}, {appID, appSecret, 36000}} {
				r := g.do(tokenForm(cc(c.id, c.secret)))
				expect(t, r, 200, 0, "")
				g.rememberFrom(r)
				var data struct {
					AccessToken string `json:"access_token"`
					ExpiresIn   int64  `json:"expires_in"`
				}
				if err := json.Unmarshal(r.env.Data, &data); err != nil {
					t.Fatal(err)
				}
				if data.ExpiresIn != c.want {
					t.Errorf("%s: expires_in %d, want %d", c.id, data.ExpiresIn, c.want)
				}
				ir := g.do(opsIntrospect(data.AccessToken, c.id, c.secret))
				var intro struct {
					Active bool  `json:"active"`
					Exp    int64 `json:"exp"`
					Iat    int64 `json:"iat"`
				}
				if err := json.Unmarshal(ir.env.Data, &intro); err != nil || !intro.Active {
					t.Fatalf("%s: introspection %d %s", c.id, ir.status, ir.body)
				}
				if intro.Exp-intro.Iat != c.want {
					t.Errorf("%s: exp - iat = %d, want %d", c.id, intro.Exp-intro.Iat, c.want)
				}
			}
		})
	}
}

// TestRateLimitAcrossReload: the bucket's state outlives a reload with the
// same limit (and the per-client metric option), and a changed limit
// applies to the next request, starting with a full bucket; on both stores.
func TestRateLimitAcrossReload(t *testing.T) {
	for name, store := range limitStores(t) {
		t.Run(name, func(t *testing.T) {
			st := store()
			cfg := gatewayConfig{Extra: st + limitedClient("\t\t\trate_limit 2/1m")}
			g := startGateway(t, cfg)
			tok := g.issue(limitedID, limitedSecret)
			req := request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}
			expect(t, g.do(req), 200, 0, "Device info")
			expect(t, g.do(req), 200, 0, "Device info")
			expect(t, g.do(req), 429, 23029, "")
			cfg.Extra += "\t\trate_limit_client_metrics\n"
			g.reload(cfg)
			expect(t, g.do(req), 429, 23029, "")
			m, _ := opsScrape(t, g.caddy)
			if v, _ := m.get(`outergate_rate_limited_by_client_total{client_id="limited",reason="rate"}`); v != 1 {
				t.Errorf("per-client series after the reload = %v, want 1", v)
			}
			g.reload(gatewayConfig{Extra: st + limitedClient("\t\t\trate_limit 100/1s")})
			r := g.do(req)
			expect(t, r, 200, 0, "Device info")
			if got := r.header.Get("RateLimit-Policy"); got != `"rate";q=100;w=1` {
				t.Errorf("RateLimit-Policy after the reload %q", got)
			}
		})
	}
}

// TestProtectingTheBackendExample runs the layout of README's "Protecting
// the backend": a client capped by outergate (max_in_flight 2) beside one
// that is not, in front of reverse_proxy with passive health checks
// (unhealthy_request_count 3) and max_conns_per_host. Against a hanging
// backend, the capped client's third request is refused by outergate
// (429), and once the backend holds 3 requests, Caddy takes it out of
// rotation: the next request is answered 503 + 23090 at once, never
// forwarded; when the requests end, both clients pass again.
func TestProtectingTheBackendExample(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: limitedClient("\t\t\tmax_in_flight 2\n\t\t\trate_limit 50/1s burst 100")})
	site := g.caddyfile()
	withChecks := strings.Replace(site, "\t\ttransport http {\n", "\t\tfail_duration 30s\n\t\tmax_fails 100\n\t\tunhealthy_request_count 3\n"+
		"\t\ttransport http {\n\t\t\tmax_conns_per_host 50\n", 1)
	if withChecks == site {
		t.Fatal("could not add the health checks to the test Caddyfile")
	}
	g.reloadWith(withChecks)
	tokL := g.issue(limitedID, limitedSecret)
	tokA := g.issue(appID, appSecret)
	slow := func(tok string) request { return request{path: infoPath + legacy.DeviceSlow, header: bearer(tok)} }
	online := func(tok string) request { return request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)} }

	var wg sync.WaitGroup
	var ended atomic.Int32
	for _, tok := range []string{tokL, tokL, tokA} {
		wg.Go(func() {
			r := g.do(slow(tok))
			ended.Add(1)
			if r.status != http.StatusGatewayTimeout {
				t.Errorf("slow request: %d %s, want 504", r.status, r.body)
			}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(g.backend.Requests()) < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := len(g.backend.Requests()); n != 3 {
		t.Fatalf("backend holds %d requests, want 3", n)
	}
	expect(t, g.do(online(tokL)), 429, 23029, "") // outergate: limited's cap
	expect(t, g.do(online(tokA)), 503, 23090, "") // Caddy: the backend is full
	if ended.Load() != 0 {
		t.Fatal("the refusals came only after a slow request ended")
	}
	wg.Wait()
	if n := len(g.backend.Requests()); n != 3 {
		t.Fatalf("backend saw %d requests, want only the 3 slow ones", n)
	}
	expect(t, g.do(online(tokL)), 200, 0, "Device info")
	expect(t, g.do(online(tokA)), 200, 0, "Device info")
}

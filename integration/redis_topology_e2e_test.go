package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/legacy"
)

// Shared machinery of the Redis Cluster and Sentinel end-to-end tests
// (redis_cluster_e2e_test.go, redis_sentinel_e2e_test.go): two gateway
// instances on one real topology, a fleet of client ids whose keys land on
// every master, a light load through failovers that checks every answer,
// and the measurements the README quotes.

// topoFleet is how many client ids the topology tests configure.
const topoFleet = 24

func topoClientID(i int) string     { return fmt.Sprintf("fleet-%02d", i) }
func topoClientSecret(i int) string { return fmt.Sprintf("fleet-secret-%02d-0123456789abcdef", i) }

// topoRecoveryBound is the contract: after a promotion every instance
// issues and validates again within 5 s.
const topoRecoveryBound = 5 * time.Second

// topoRevokeBound is the contract: a revocation reaches every instance
// within 2 s.
const topoRevokeBound = 2 * time.Second

// topoLogBad matches the Redis errors that must never reach a gateway log:
// a cross-slot command, or a stale slot map or role seen by the gateway.
var topoLogBad = regexp.MustCompile(`\b(CROSSSLOT|MOVED|ASK|READONLY)\b`)

// topoGateways starts two gateways on the store block, with the fleet, a
// 30 s validation cache (so that only the revocation push, not cache
// expiry, can make a revoked token fail within 2 s), an address throttle
// of 3 and trusted proxies on loopback (so the throttle test can use its
// own address), and checks at cleanup that no log line carries a
// forbidden Redis error.
func topoGateways(t *testing.T, store string) (a, b *gateway) {
	t.Helper()
	var extra strings.Builder
	for i := range topoFleet {
		fmt.Fprintf(&extra, "\t\tclient %s %s\n", topoClientID(i), sha256Hash(topoClientSecret(i)))
	}
	extra.WriteString("\t\tthrottle 3 1m\n\t\tthrottle_client off\n")
	extra.WriteString(store)
	cfg := gatewayConfig{Extra: extra.String(), Global: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"}
	a = startGateway(t, cfg)
	b = startGateway(t, cfg)
	t.Cleanup(func() {
		for name, g := range map[string]*gateway{"A": a, "B": b} {
			for _, line := range strings.Split(g.caddy.Logs(), "\n") {
				if topoLogBad.MatchString(line) {
					t.Errorf("gateway %s logged a Redis topology error: %s", name, line)
				}
			}
		}
	})
	return a, b
}

// topoTry sends req like gateway.do, but returns transport errors instead
// of failing the test, so that it can run in the load goroutine, and times
// the answer.
func topoTry(g *gateway, req request) (reply, time.Duration, error) {
	if req.method == "" {
		req.method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, req.method, g.base+req.path, strings.NewReader(req.body))
	if err != nil {
		return reply{}, 0, err
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := g.client.Do(hr)
	if err != nil {
		return reply{}, time.Since(start), err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took := time.Since(start)
	if err != nil {
		return reply{}, took, err
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: body}
	r.isEnv = json.Unmarshal(body, &r.env) == nil && r.env.Meta.Code != nil
	return r, took, nil
}

// topoIssue issues a token for fleet client i on g; ok is false for a
// 503 + 23090 (store unavailable), any other failure is returned as err.
func topoIssue(g *gateway, i int) (tok string, ok bool, took time.Duration, err error) {
	r, took, err := topoTry(g, tokenForm(cc(topoClientID(i), topoClientSecret(i))))
	if err != nil {
		return "", false, took, err
	}
	switch {
	case r.status == http.StatusOK && r.code() == 0:
		var data struct {
			AccessToken string `json:"access_token"`
		}
		if json.Unmarshal(r.env.Data, &data) != nil || data.AccessToken == "" {
			return "", false, took, fmt.Errorf("200 without a token: %s", r.body)
		}
		g.remember(data.AccessToken)
		return data.AccessToken, true, took, nil
	case r.status == http.StatusServiceUnavailable && r.code() == 23090:
		return "", false, took, nil
	default:
		return "", false, took, fmt.Errorf("token request answered %d %s", r.status, r.body)
	}
}

// topoCheck validates tok on g: valid, or ok=false for 503 + 23090;
// refused (401) and anything else are errors.
func topoCheck(g *gateway, tok string) (ok bool, status int, took time.Duration, err error) {
	r, took, err := topoTry(g, request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)})
	if err != nil {
		return false, 0, took, err
	}
	switch {
	case r.status == http.StatusOK && r.code() == 0:
		return true, r.status, took, nil
	case r.status == http.StatusServiceUnavailable && r.code() == 23090:
		return false, r.status, took, nil
	default:
		return false, r.status, took, fmt.Errorf("device call answered %d %s", r.status, r.body)
	}
}

// topoMustIssue issues a token for fleet client i on g, failing the test
// unless it is answered 200.
func topoMustIssue(t *testing.T, g *gateway, i int) string {
	t.Helper()
	tok, ok, _, err := topoIssue(g, i)
	if err != nil || !ok {
		t.Fatalf("token for %s: ok=%v err=%v", topoClientID(i), ok, err)
	}
	return tok
}

// topoWantStatus polls until tok gets status on every gateway, failing the
// test if that takes longer than within.
func topoWantStatus(t *testing.T, tok string, status int, within time.Duration, gs ...*gateway) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(within)
	for _, g := range gs {
		for {
			r, _, err := topoTry(g, request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)})
			if err == nil && r.status == status {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("token not answered %d on %s within %s (last: %d %s %v)", status, g.base, within, r.status, r.body, err)
				return time.Since(start)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// topoBasics covers what a working shared store must do on the topology:
// tokens of many clients issued on one instance and accepted on the other,
// one revocation and a revoke-all reaching the other instance within 2 s
// despite its 30 s cache, the per-client cap, and the address throttle
// counted across instances. It returns the tokens issued (all still valid).
func topoBasics(t *testing.T, a, b *gateway) []string {
	t.Helper()
	var toks []string
	for i := range topoFleet {
		g, other := a, b
		if i%2 == 1 {
			g, other = b, a
		}
		tok := topoMustIssue(t, g, i)
		expect(t, other.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
		expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
		toks = append(toks, tok)
	}

	// Revoke one token on A (admin API): B, which has it cached, refuses it
	// within 2 s; the client's other token stays valid.
	victim := topoMustIssue(t, a, 0)
	keep := toks[0]
	for _, g := range []*gateway{a, b} {
		expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(victim)}), 200, 0, "Device info")
	}
	if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"token":%q}`, victim)); n != 1 {
		t.Errorf("revoke one token: revoked %d, want 1", n)
	}
	topoWantStatus(t, victim, 401, topoRevokeBound, b, a)
	topoWantStatus(t, keep, 200, time.Second, a, b)

	// Revoke all of a client on B: both tokens of fleet-01 are refused on
	// A within 2 s.
	extra := topoMustIssue(t, a, 1)
	for _, g := range []*gateway{a, b} {
		expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(extra)}), 200, 0, "Device info")
	}
	if n := opsAdminRevoke(t, b.caddy, fmt.Sprintf(`{"client_id":%q}`, topoClientID(1))); n != 2 {
		t.Errorf("revoke all of %s: revoked %d, want 2", topoClientID(1), n)
	}
	topoWantStatus(t, toks[1], 401, topoRevokeBound, a, b)
	topoWantStatus(t, extra, 401, topoRevokeBound, a, b)
	toks = append(toks[:1], toks[2:]...)

	// The cap (max_tokens_per_client, default 100) counts across instances:
	// past it, the client's oldest tokens are refused on both.
	const capClient = 2
	var capToks []string
	for i := range 102 {
		g := a
		if i%2 == 1 {
			g = b
		}
		capToks = append(capToks, topoMustIssue(t, g, capClient))
	}
	for _, tok := range append([]string{toks[1]}, capToks[:2]...) { // toks[1] is fleet-02's first token
		topoWantStatus(t, tok, 401, topoRevokeBound, a, b)
	}
	for _, tok := range []string{capToks[2], capToks[101]} {
		topoWantStatus(t, tok, 200, time.Second, a, b)
	}
	toks = append(toks[:1], toks[2:]...)

	// The address throttle counts on both instances: three failures on A,
	// the fourth attempt (right secret) on B is 429.
	const attacker = "203.0.113.77"
	for _, g := range []*gateway{a, b, a} {
		expect(t, g.do(tokenReq(cc(topoClientID(3), "wrong"), attacker)), 401, 23020, "")
	}
	expect(t, b.do(tokenReq(cc(topoClientID(3), topoClientSecret(3)), attacker)), 429, 23029, "")
	expect(t, a.do(tokenReq(cc(topoClientID(3), topoClientSecret(3)), attacker)), 429, 23029, "")
	return toks
}

// topoEvent is what a failover test measured.
type topoEvent struct {
	name       string
	start      time.Time // kill -9 or failover command
	promoted   time.Time // the topology reported the new master
	lastFail   time.Time // last 503 seen by the load, zero if none
	acked      int       // tokens answered 200 during the load
	failures   int       // 503 answers during the load
	lost       int       // acknowledged tokens refused afterwards
	slowest    time.Duration
	revokeTook time.Duration // from the revocation's success to refusal everywhere
}

// String is the line the README's figures come from.
func (e topoEvent) String() string {
	rec := "no failed request"
	if !e.lastFail.IsZero() {
		rec = fmt.Sprintf("last 503 %s after the event, %s after the promotion",
			e.lastFail.Sub(e.start).Round(10*time.Millisecond), e.lastFail.Sub(e.promoted).Round(10*time.Millisecond))
	}
	return fmt.Sprintf("MEASURE %s: promotion seen %s after the event; %s; %d tokens acknowledged during the load, %d answers 503, %d acknowledged tokens lost; slowest answer %s; revocation honoured everywhere %s after it succeeded",
		e.name, e.promoted.Sub(e.start).Round(10*time.Millisecond), rec, e.acked, e.failures, e.lost,
		e.slowest.Round(time.Millisecond), e.revokeTook.Round(10*time.Millisecond))
}

// topoFailover runs a light load on both gateways (each iteration issues a
// token on one and validates it at once on the other, about 40 requests a
// second), triggers the event, waits for the promotion, keeps the load up
// until both gateways have worked for 2 s straight, and checks:
//   - every answer is 200 or 503 + 23090, none slower than the fail-closed
//     bound; an acknowledged token is never refused;
//   - the last 503 comes within 5 s of the promotion;
//   - every token acknowledged before or during the event is still valid
//     on both gateways afterwards (none lost);
//   - a token revoked during the event (the revocation retried until it
//     succeeds) is refused on both gateways within 2 s of its success.
func topoFailover(t *testing.T, name string, a, b *gateway, before []string, trigger func(), waitPromoted func() time.Time) topoEvent {
	t.Helper()
	ev := topoEvent{name: name}
	// The token to revoke during the event, cached on both gateways.
	revokeMe := topoMustIssue(t, a, 5)
	for _, g := range []*gateway{a, b} {
		expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(revokeMe)}), 200, 0, "Device info")
	}

	var (
		mu     sync.Mutex
		acked  []string
		errs   []string
		stop   = make(chan struct{})
		done   = make(chan struct{})
		streak time.Time // since when every answer was good
	)
	note := func(took time.Duration, fail bool) {
		mu.Lock()
		defer mu.Unlock()
		if took > ev.slowest {
			ev.slowest = took
		}
		if fail {
			ev.failures++
			ev.lastFail = time.Now()
			streak = time.Time{}
		} else if streak.IsZero() {
			streak = time.Now()
		}
	}
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			g, other := a, b
			if i%2 == 1 {
				g, other = b, a
			}
			client := 6 + i%(topoFleet-6)
			tok, ok, took, err := topoIssue(g, client)
			note(took, !ok)
			if took >= failClosedBound {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("token request took %s", took))
				mu.Unlock()
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				continue
			}
			if !ok {
				continue
			}
			mu.Lock()
			acked = append(acked, tok)
			mu.Unlock()
			valid, status, took, err := topoCheck(other, tok)
			note(took, !valid)
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Sprintf("acknowledged token checked on the other gateway: %v (status %d)", err, status))
				mu.Unlock()
			}
		}
	}()
	// Some load before the event.
	time.Sleep(500 * time.Millisecond)

	ev.start = time.Now()
	trigger()
	// Revoke during the event, retried until the store takes it; then
	// time how long until both gateways refuse the token.
	revoked := make(chan error, 1)
	go func() {
		for time.Since(ev.start) < 30*time.Second {
			status, _ := opsAdmin(t, a.caddy, http.MethodPost, "/outergate/revoke", fmt.Sprintf(`{"token":%q}`, revokeMe))
			if status != http.StatusOK {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			at := time.Now()
			for _, g := range []*gateway{a, b} {
				for {
					r, _, err := topoTry(g, request{path: infoPath + legacy.DeviceOnline, header: bearer(revokeMe)})
					if err == nil && r.status == http.StatusUnauthorized {
						break
					}
					if time.Since(at) > 10*time.Second {
						revoked <- fmt.Errorf("revoked token not refused with 401 on %s within 10 s", g.base)
						return
					}
					if err == nil && r.status == http.StatusOK && time.Since(at) > topoRevokeBound {
						revoked <- fmt.Errorf("revoked token still accepted on %s %s after the revocation", g.base, time.Since(at))
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			mu.Lock()
			ev.revokeTook = time.Since(at)
			mu.Unlock()
			revoked <- nil
			return
		}
		revoked <- fmt.Errorf("the revocation made during the event never succeeded")
	}()
	ev.promoted = waitPromoted()

	// Load until both gateways have answered well for 2 s straight, at
	// least 3 s after the promotion, at most 20 s.
	deadline := ev.promoted.Add(20 * time.Second)
	for {
		mu.Lock()
		good := !streak.IsZero() && time.Since(streak) >= 2*time.Second
		mu.Unlock()
		if good && time.Since(ev.promoted) >= 3*time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: the gateways did not work for 2 s straight within 20 s of the promotion", name)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	<-done

	if err := <-revoked; err != nil {
		t.Errorf("%s: %v", name, err)
	}
	topoWantStatus(t, revokeMe, 401, time.Second, a, b)

	// Right after the failover: a token cached on both (30 s cache) and
	// revoked on one is refused on the other within 2 s, which needs the
	// other's subscription to be on the new master (or its cache off).
	for i, pair := range [][2]*gateway{{a, b}, {b, a}} {
		tok := topoMustIssue(t, pair[0], 4)
		for _, g := range pair {
			expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
		}
		if n := opsAdminRevoke(t, pair[0].caddy, fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
			t.Errorf("%s: revoke after the failover (%d): revoked %d, want 1", name, i, n)
		}
		topoWantStatus(t, tok, 401, topoRevokeBound, pair[1], pair[0])
	}

	mu.Lock()
	for _, e := range errs {
		t.Errorf("%s: %s", name, e)
	}
	ev.acked = len(acked)
	all := append(append([]string(nil), before...), acked...)
	mu.Unlock()
	if !ev.lastFail.IsZero() && ev.lastFail.Sub(ev.promoted) > topoRecoveryBound {
		t.Errorf("%s: a request failed %s after the promotion, want within %s", name, ev.lastFail.Sub(ev.promoted), topoRecoveryBound)
	}
	if ev.acked < 20 {
		t.Errorf("%s: only %d tokens acknowledged during the load; was the load running?", name, ev.acked)
	}
	// No acknowledged token lost.
	for _, tok := range all {
		for _, g := range []*gateway{a, b} {
			if valid, status, _, err := topoCheck(g, tok); !valid {
				ev.lost++
				t.Errorf("%s: acknowledged token refused on %s afterwards: %d %v", name, g.base, status, err)
				break
			}
		}
	}
	t.Log(ev.String())
	return ev
}

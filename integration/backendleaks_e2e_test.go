package integration

// What a leaky device backend must not get through the gateway (issue 12,
// items 12-15): internal headers, trailers, 103 Early Hints, challenges,
// redirects, raw envelopes, and error bodies without end; and the cache
// policy of the metadata document.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outergate/outergate/integration/leaky"
)

// startLeakyGateway runs the gateway in front of the misbehaving upstream
// and returns it with a device token.
func startLeakyGateway(t *testing.T) (*gateway, *leaky.Upstream, string) {
	t.Helper()
	up := leaky.New()
	g := startGateway(t, gatewayConfig{Upstream: newUpstream(t, up)})
	return g, up, g.issue(appID, appSecret)
}

// leakyCall is one device call through the gateway, bounded in time, that
// records the 1xx answers the client saw.
type leakyReply struct {
	reply
	trailer  http.Header
	interims []int
	took     time.Duration
}

func leakyCall(t *testing.T, g *gateway, token, name string) leakyReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out leakyReply
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			out.interims = append(out.interims, code)
			return nil
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.base+"/outer/device/"+name+"/?deviceid=d1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	client := g.client // the contract check of the portal's document
	if passing[name] {
		// Device routes of this upstream are not in the gateway's
		// OpenAPI document: their successes would fail that check.
		client = &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: reading: %v", name, err)
	}
	out.took = time.Since(start)
	out.reply = reply{status: resp.StatusCode, header: resp.Header, body: body}
	out.isEnv = json.Unmarshal(body, &out.env) == nil && out.env.Meta.Code != nil
	out.trailer = resp.Trailer
	return out
}

// passing are the answers of leaky that pass through the gateway.
var passing = map[string]bool{"ok": true, "hints-200": true, "not-modified": true}

// envelopeHeaders are every header an error envelope may carry.
var envelopeHeaders = map[string]bool{"Content-Type": true, "Content-Length": true, "Date": true,
	"Server": true, "Retry-After": true, "Allow": true}

// checkClean asserts an error envelope that carries nothing of the backend.
func checkClean(t *testing.T, name string, r leakyReply, status, code int) {
	t.Helper()
	if r.status != status || !r.isEnv || r.code() != code {
		t.Errorf("%s: %d %s, want %d with code %d", name, r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("%s: Content-Type %q", name, ct)
	}
	for k, vs := range r.header {
		if !envelopeHeaders[k] {
			t.Errorf("%s: upstream header %s: %q reached the client", name, k, vs)
		}
	}
	if s := r.header.Get("Server"); s != "" && s != "Caddy" {
		t.Errorf("%s: Server %q", name, s)
	}
	if len(r.trailer) != 0 {
		t.Errorf("%s: trailers %v reached the client", name, r.trailer)
	}
	if len(r.interims) != 0 {
		t.Errorf("%s: interim answers %v reached the client", name, r.interims)
	}
	all := fmt.Sprint(r.header) + string(r.body)
	for _, leak := range []string{leaky.InternalHost, "JSESSIONID", "Tomcat", "java", "DeviceDao", "<", "SELECT"} {
		if strings.Contains(all, leak) {
			t.Errorf("%s: %q reached the client: %v %s", name, leak, r.header, r.body)
		}
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(r.body, &members) != nil || string(members["data"]) != "null" || len(members) != 2 {
		t.Errorf("%s: not an error envelope: %s", name, r.body)
	}
	if msg := r.env.Meta.Message; len(msg) > 256 || !utf8.ValidString(msg) {
		t.Errorf("%s: message of %d bytes", name, len(msg))
	}
}

// TestBackendLeaks covers items 13 and 14: every kind of upstream error,
// redirect and interim answer, in several forms.
func TestBackendLeaks(t *testing.T) {
	g, up, tok := startLeakyGateway(t)
	for _, tc := range []struct {
		name         string
		status, code int
		message      string
	}{
		{name: "html-500", status: 500, code: 23090, message: "internal error"},
		{name: "json-502", status: 502, code: 23090, message: "pool exhausted"},
		{name: "challenge-401", status: 502, code: 23090, message: "internal error"},
		{name: "challenge-407", status: 407, code: 23010, message: "parameter error"},
		{name: "hints-500", status: 500, code: 23090},
		{name: "redirect-301", status: 502, code: 23090, message: "upstream answered with a redirect"},
		{name: "redirect-302", status: 502, code: 23090, message: "upstream answered with a redirect"},
		{name: "redirect-303", status: 502, code: 23090, message: "upstream answered with a redirect"},
		{name: "redirect-307", status: 502, code: 23090, message: "upstream answered with a redirect"},
		{name: "redirect-308", status: 502, code: 23090, message: "upstream answered with a redirect"},
		{name: "envelope-500-html", status: 500, code: 23090, message: "internal error"},
		{name: "envelope-403-markup", status: 403, code: 23031, message: "alert(1)device disabled by owner"},
		{name: "envelope-409-long", status: 409, code: 23010},
		{name: "retry-503", status: 503, code: 23090, message: "internal error"},
		{name: "bad-retry-503", status: 503, code: 23090, message: "internal error"},
	} {
		r := leakyCall(t, g, tok, tc.name)
		checkClean(t, tc.name, r, tc.status, tc.code)
		if tc.message != "" && r.env.Meta.Message != tc.message {
			t.Errorf("%s: message %q, want %q", tc.name, r.env.Meta.Message, tc.message)
		}
		if strings.HasPrefix(tc.name, "challenge-") && (r.header.Get("Www-Authenticate") != "" || r.header.Get("Proxy-Authenticate") != "") {
			t.Errorf("%s: upstream challenge reached the client", tc.name)
		}
	}
	if r := leakyCall(t, g, tok, "retry-503"); r.header.Get("Retry-After") != "30" {
		t.Errorf("a valid upstream Retry-After is kept: got %q", r.header.Get("Retry-After"))
	}
	if r := leakyCall(t, g, tok, "bad-retry-503"); r.header.Get("Retry-After") != "" {
		t.Errorf("a malformed upstream Retry-After reached the client: %q", r.header.Get("Retry-After"))
	}
	if r := leakyCall(t, g, tok, "envelope-409-long"); len(r.env.Meta.Message) > 256 || !strings.HasPrefix(r.env.Meta.Message, "busy busy") {
		t.Errorf("long upstream envelope message not cut: %d bytes", len(r.env.Meta.Message))
	}

	// 2xx passes through untouched, 103 Early Hints is dropped on the way.
	r := leakyCall(t, g, tok, "hints-200")
	if r.status != 200 || len(r.interims) != 0 || r.code() != 0 {
		t.Errorf("hints-200: %d, interims %v, %s", r.status, r.interims, r.body)
	}
	if r := leakyCall(t, g, tok, "ok"); r.status != 200 || r.header.Get("X-Backend-Server") == "" {
		t.Errorf("a 2xx answer passes through as it is (headers included): %d %v", r.status, r.header)
	}
	// 304 passes through (conditional requests keep working).
	if r := leakyCall(t, g, tok, "not-modified"); r.status != 304 || r.header.Get("Etag") != `"v7"` || r.header.Get("Location") != "" {
		t.Errorf("not-modified: %d %v", r.status, r.header)
	}
	if n := len(up.Requests()); n < 20 {
		t.Errorf("upstream saw %d requests", n)
	}
}

// TestEndlessUpstreamErrors covers item 12: an error body that never ends,
// one that trickles and never ends, and 96 MiB errors are answered with an
// envelope after at most 64 KiB, without waiting for the upstream, which is
// cut off; the gateway's RSS stays bounded.
func TestEndlessUpstreamErrors(t *testing.T) {
	g, up, tok := startLeakyGateway(t)

	r := leakyCall(t, g, tok, "endless-500")
	checkClean(t, "endless-500", r, 500, 23090)
	// Correctness bound: the upstream never ends; only the cut ends it.
	if r.took > 10*time.Second {
		t.Errorf("endless-500 answered after %v", r.took)
	}
	r = leakyCall(t, g, tok, "trickle-500")
	checkClean(t, "trickle-500", r, 500, 23090)
	if r.took > 10*time.Second {
		t.Errorf("trickle-500 answered after %v (the upstream waits 60 s)", r.took)
	}
	waitFor(t, 5*time.Second, func() bool { return up.StreamsEnded.Load() >= 2 },
		"the upstream of an endless and a trickling error was not cut off")
	if logs := g.caddy.Logs(); !strings.Contains(logs, "aborting with incomplete response") || strings.Contains(logs, "panic") {
		t.Errorf("want Caddy's Warn line for each cut, and no panic in the logs")
	}

	pid := g.caddy.PID()
	before := rssKiB(t, pid)
	const n = 8
	for i := 0; i < n; i++ {
		r := leakyCall(t, g, tok, "big-502")
		checkClean(t, "big-502", r, 502, 23090)
	}
	after := rssKiB(t, pid)
	t.Logf("gateway RSS %d KiB before, %d KiB after %d errors of 96 MiB; upstream sent %d KiB in all",
		before, after, n, up.StreamedBytes.Load()>>10)
	// Bounded: buffering whole bodies grew RSS by ~300 MiB for one.
	if grew := after - before; grew > 64<<10 {
		t.Errorf("gateway RSS grew by %d KiB over %d big errors, want < 64 MiB", grew, n)
	}
	if sent := up.StreamedBytes.Load(); sent > int64(n)*(96<<20)/2 {
		t.Errorf("the upstream sent %d bytes: big error bodies were read to the end", sent)
	}
}

// rssKiB reads VmRSS of a process.
func rssKiB(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// waitFor polls cond for up to bound.
func waitFor(t *testing.T, bound time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetadataCachePolicy covers item 15: built from Host, the document
// must not be stored by a shared cache and varies by Host; built from a
// configured issuer it may be cached.
func TestMetadataCachePolicy(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	for _, host := range []string{"gw.test:8443", "evil.example"} {
		r := g.do(request{path: "/.well-known/oauth-authorization-server", host: host})
		if r.status != 200 || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Vary") != "Host" {
			t.Errorf("Host %s: %d Cache-Control %q Vary %q", host, r.status, r.header.Get("Cache-Control"), r.header.Get("Vary"))
		}
		if !strings.Contains(string(r.body), `"issuer":"http://`+host+`"`) {
			t.Errorf("Host %s: issuer from Host expected without `issuer`: %s", host, r.body)
		}
	}
	g.reload(gatewayConfig{Extra: "\t\tissuer https://gateway.example.com"})
	r := g.do(request{path: "/.well-known/oauth-authorization-server", host: "evil.example"})
	if r.status != 200 || r.header.Get("Cache-Control") != "public, max-age=3600" || r.header.Get("Vary") != "" ||
		strings.Contains(string(r.body), "evil.example") {
		t.Errorf("with issuer: %d Cache-Control %q Vary %q %s", r.status, r.header.Get("Cache-Control"), r.header.Get("Vary"), r.body)
	}
}

// TestGatewayHeadersKept: headers the gateway's own config sets (here a
// `header` directive) stay on an error envelope while the upstream's go.
func TestGatewayHeadersKept(t *testing.T) {
	up := leaky.New()
	g := startGatewaySite(t, gatewayConfig{Upstream: newUpstream(t, up)}, "\theader X-Gateway-Policy strict")
	tok := g.issue(appID, appSecret)
	for _, name := range []string{"html-500", "redirect-302", "challenge-401"} {
		r := leakyCall(t, g, tok, name)
		if r.header.Get("X-Gateway-Policy") != "strict" || r.header.Get("Set-Cookie") != "" || r.header.Get("X-Powered-By") != "" {
			t.Errorf("%s: headers %v, want the gateway's X-Gateway-Policy and none of the upstream's", name, r.header)
		}
	}
}

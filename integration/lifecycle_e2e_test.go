package integration

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// TestTokenExpiry checks that a token works until token_ttl and is refused
// from then on.
func TestTokenExpiry(t *testing.T) {
	g := startGateway(t, gatewayConfig{TTL: "2s"})
	tok := g.issue(appID, appSecret)
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
	time.Sleep(2100 * time.Millisecond)
	r := g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)})
	expect(t, r, 401, 23021, "")
	if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="outer", error="invalid_token"` {
		t.Errorf("WWW-Authenticate = %q", got)
	}
}

// TestReloadKeepsTokens checks that `caddy reload` keeps issued tokens, and
// that a token of a client removed from the config is refused.
func TestReloadKeepsTokens(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	readTok := g.issue(readerID, readerSecret)

	g.reload(gatewayConfig{Extra: "\t\tidentity_header X-Outer-Client-Id\n\t\tthrottle 20 1m"})
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(readTok)}), 200, 0, "Device info")

	// A second reload: still there.
	g.reload(gatewayConfig{})
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 200, 0, "Device info")

	// A restart of the process loses the memory store.
	g.caddy.Restart(t)
	g.client.CloseIdleConnections()
	harness.WaitHTTP(t, g.base+"/", 10*time.Second)
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 401, 23021, "")
}

// TestRemovedClientTokenRefused checks that dropping a client from the config
// invalidates its live tokens at once.
func TestRemovedClientTokenRefused(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	body := g.caddyfile()
	// Replace the device-app client line with a client of another id.
	g.reloadWith(replaceOnce(t, body, "client "+appID+" ", "client someone-else "))
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 401, 23021, "")
}

// TestUpstreamDownOrHanging checks 502 and 504 with 23090 when the backend
// refuses connections or does not answer in time.
func TestUpstreamDownOrHanging(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	down := startGateway(t, gatewayConfig{Upstream: dead})
	tok := down.issue(appID, appSecret)
	start := time.Now()
	expect(t, down.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}), 502, 23090, "upstream unreachable")
	t.Logf("refused upstream answered in %s", time.Since(start))

	slow := startGateway(t, gatewayConfig{})
	tok = slow.issue(appID, appSecret)
	expect(t, slow.do(request{path: infoPath + legacy.DeviceSlow, header: bearer(tok)}), 504, 23090, "upstream timeout")
}

// TestThrottle checks 429 + 23029 + Retry-After after repeated failures from
// one address, for any credentials, and that another address is unaffected.
func TestThrottle(t *testing.T) {
	g := startGateway(t, gatewayConfig{
		Extra:  "\t\tthrottle 3 1m",
		Global: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}",
	})
	from := func(ip string, v map[string]string) request {
		req := tokenForm(cc(appID, "wrong"))
		req.header["X-Forwarded-For"] = ip
		for k, val := range v {
			req.header[k] = val
		}
		return req
	}
	for range 3 {
		expect(t, g.do(from("203.0.113.7", nil)), 401, 23020, "client authentication failed")
	}
	good := tokenForm(cc(appID, appSecret))
	good.header["X-Forwarded-For"] = "203.0.113.7"
	r := g.do(good)
	expect(t, r, 429, 23029, "")
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
		t.Errorf("Retry-After = %q, want 1..60 seconds", r.header.Get("Retry-After"))
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("429 lacks Cache-Control: no-store")
	}
	other := tokenForm(cc(appID, appSecret))
	other.header["X-Forwarded-For"] = "198.51.100.9"
	r = g.do(other)
	expect(t, r, 200, 0, "token info")
	g.rememberFrom(r)
}

func replaceOnce(t *testing.T, s, old, repl string) string {
	t.Helper()
	for i := 0; i+len(old) <= len(s); i++ {
		if s[i:i+len(old)] == old {
			return s[:i] + repl + s[i+len(old):]
		}
	}
	t.Fatalf("%q not found", old)
	return ""
}

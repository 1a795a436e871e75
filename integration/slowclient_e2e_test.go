package integration

// Slow clients: the shipped Caddyfiles bound how long a request's headers
// and body may take (`servers { timeouts { read_header 5s read_body 10s } }`),
// so a client that trickles its body, or never sends all of its
// Content-Length, cannot hold a connection and a handler. This runs the
// binary with the demo Caddyfile's own servers block and a recording
// upstream.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// demoServerTimeouts returns the servers block of caddyfile/Caddyfile's
// global options and its read_header and read_body durations.
func demoServerTimeouts(t *testing.T) (block string, header, body time.Duration) {
	t.Helper()
	root, _ := harness.ModuleRoot()
	demo, err := os.ReadFile(filepath.Join(root, "caddyfile", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	block = regexp.MustCompile(`(?s)\n\tservers \{\n.*?\n\t\}\n`).FindString(string(demo))
	h := regexp.MustCompile(`\n\t+read_header (\S+)\n`).FindStringSubmatch(block)
	b := regexp.MustCompile(`\n\t+read_body (\S+)\n`).FindStringSubmatch(block)
	if h == nil || b == nil {
		t.Fatalf("caddyfile/Caddyfile sets no servers { timeouts { read_header read_body } }:\n%s", block)
	}
	if header, err = time.ParseDuration(h[1]); err != nil {
		t.Fatal(err)
	}
	if body, err = time.ParseDuration(b[1]); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(block), header, body
}

// slowOutcome is what a trickling client saw.
type slowOutcome struct {
	status   int           // the answer's status, 0 for none
	body     string        // the answer's body
	closedAt time.Duration // since the first byte, when the connection ended
}

// trickle writes head at once, then rest one byte every 250 ms, and reads
// until the server answers and closes, or closes without an answer, or
// limit passes (closedAt is then limit or more).
func trickle(t *testing.T, addr, head, rest string, limit time.Duration) slowOutcome {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(limit))
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(rest); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := conn.Write([]byte{rest[i]}); err != nil {
				return
			}
		}
	}()
	var out slowOutcome
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err == nil {
		out.status = resp.StatusCode
		b, _ := io.ReadAll(resp.Body)
		out.body = string(b)
		resp.Body.Close()
	}
	_, _ = io.Copy(io.Discard, br) // until the server closes
	out.closedAt = time.Since(start)
	return out
}

// TestSlowClientsCut: a body trickled past read_body (on a protected path
// with or without a token, on the token endpoint, or cut short of its
// Content-Length) and headers trickled past read_header are cut within
// the bound: an answer that is no success, then the connection closed, or
// the connection closed; the upstream never sees any of them.
func TestSlowClientsCut(t *testing.T) {
	global, readHeader, readBody := demoServerTimeouts(t)
	g := startGateway(t, gatewayConfig{Global: global, Extra: "\t\tthrottle off\n\t\tthrottle_client off\n"})
	tok := g.issue(appID, appSecret)
	form := "deviceid=" + legacy.DeviceOnline + "&pad=" + strings.Repeat("x", 200)
	slack := 5 * time.Second // a correctness bound, not a speed one
	head := func(method, target string, headers ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, g.hostPort())
		for i := 0; i+1 < len(headers); i += 2 {
			fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
		}
		b.WriteString("\r\n")
		return b.String()
	}
	withLen := func(n int) []string {
		return []string{"Authorization", "Bearer " + tok, "Content-Type", formCT, "Content-Length", fmt.Sprint(n)}
	}
	for _, tc := range []struct {
		name       string
		head, rest string
		bound      time.Duration
	}{
		{"protected body trickled", head("PUT", "/outer/device/unbind/", withLen(len(form))...), form, readBody + slack},
		{"protected body short of its Content-Length", head("PUT", "/outer/device/unbind/", withLen(len(form)+100)...) + form, "", readBody + slack},
		{"protected body chunked, never ended", head("PUT", "/outer/device/unbind/", "Authorization", "Bearer "+tok,
			"Content-Type", formCT, "Transfer-Encoding", "chunked") + "5\r\ndevic\r\n", strings.Repeat("1\r\nx\r\n", 60), readBody + slack},
		// Refused before the body is read: Go's server still reads up to
		// 256 KiB of it before it writes the 401.
		{"no token, body trickled", head("PUT", "/outer/device/unbind/", "Content-Type", formCT, "Content-Length", fmt.Sprint(len(form))), form, readBody + slack},
		{"token endpoint body trickled", head("POST", "/outer/token/", "Content-Type", formCT, "Content-Length", "300"),
			"grant_type=client_credentials&client_id=" + appID + "&client_secret=" + appSecret + "&pad=" + strings.Repeat("x", 300), readBody + slack},
		{"headers trickled", "GET /outer/device/info/?deviceid=" + legacy.DeviceOnline + " HTTP/1.1\r\nHost: " + g.hostPort() + "\r\n",
			"Authorization: Bearer " + tok + "\r\nX-Pad: " + strings.Repeat("x", 200) + "\r\n\r\n", readHeader + slack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			limit := tc.bound + 10*time.Second
			out := trickle(t, g.hostPort(), tc.head, tc.rest, limit)
			// A timeout never fires early: an earlier end would be some
			// other refusal, and would not show the bound at work.
			if early := tc.bound - slack - time.Second; out.closedAt < early {
				t.Errorf("connection ended after %s (answer %d %s), before the timeout", out.closedAt.Round(time.Millisecond), out.status, out.body)
			}
			if out.closedAt >= tc.bound {
				t.Errorf("connection held %s (answer %d), want it cut within %s", out.closedAt.Round(time.Millisecond), out.status, tc.bound)
			}
			if out.status >= 200 && out.status < 300 {
				t.Errorf("answer %d %s to a request whose body never arrived", out.status, out.body)
			}
			if out.status != 0 && !strings.Contains(out.body, `"meta"`) {
				t.Errorf("answer %d is no envelope: %q", out.status, out.body)
			}
			t.Logf("cut after %s, answer %d %s", out.closedAt.Round(time.Millisecond), out.status, strings.TrimSpace(out.body))
		})
	}
	t.Cleanup(func() {
		if seen := g.backend.Requests(); len(seen) != 0 {
			t.Errorf("upstream received %d request(s) of slow clients: %s %s", len(seen), seen[0].Method, seen[0].Path)
		}
	})
}

// TestSlowUpstreamNotCutByReadBody: read_body bounds the reading of the
// request only; an upstream that answers after it has passed is still
// relayed (the upstream's own bound is reverse_proxy's
// response_header_timeout).
func TestSlowUpstreamNotCutByReadBody(t *testing.T) {
	delay := 1500 * time.Millisecond
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPut {
			http.NotFound(w, r) // the harness's readiness probe
			return
		}
		time.Sleep(delay)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"meta":{"message":"unbind success","code":0},"data":{"deviceid":"`+legacy.DeviceOnline+`"}}`)
	}))
	g := startGateway(t, gatewayConfig{Upstream: up, Global: "servers {\n\t\ttimeouts {\n\t\t\tread_header 1s\n\t\t\tread_body 1s\n\t\t}\n\t}"})
	tok := g.issue(appID, appSecret)
	start := time.Now()
	r := g.sendRaw(t, rawRequest{method: "PUT", target: "/outer/device/unbind/",
		headers: hdr("Authorization", "Bearer "+tok, "Content-Type", formCT), body: "deviceid=" + legacy.DeviceOnline})
	if r.status != 200 || r.code() != 0 {
		t.Fatalf("answer %d %s after %s, want the upstream's 200", r.status, r.body, time.Since(start).Round(time.Millisecond))
	}
	if took := time.Since(start); took < delay {
		t.Errorf("answered after %s, before the upstream's delay", took)
	}
}

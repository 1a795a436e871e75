package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
	"golang.org/x/crypto/bcrypt"
)

// This file holds the helpers of the hostile, malformed and log-hygiene
// tests: requests written byte for byte on a raw TCP connection (so that
// nothing normalizes duplicate or oddly spelled headers, absolute-form
// targets or chunked bodies away), and a gateway starter that can add
// directives to the site block (access logs).

// rawRequest is one HTTP/1.1 request, written exactly as described.
type rawRequest struct {
	method  string
	target  string      // request target as sent: origin-form, absolute-form...
	headers [][2]string // in order and spelled as given; repeats allowed
	body    string
	chunked bool // frame the body as chunks (and add Transfer-Encoding unless present)
	noHost  bool // do not add a Host header
	// raw, when set, is sent as is instead of the fields above; "{HOST}"
	// is replaced by the gateway's host:port.
	raw string
}

// bytes renders the request for host (host:port).
func (rr rawRequest) bytes(host string) []byte {
	if rr.raw != "" {
		return []byte(strings.ReplaceAll(rr.raw, "{HOST}", host))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", rr.method, rr.target)
	hasHost, hasLen, hasTE := false, false, false
	for _, h := range rr.headers {
		switch strings.ToLower(h[0]) {
		case "host":
			hasHost = true
		case "content-length":
			hasLen = true
		case "transfer-encoding":
			hasTE = true
		}
	}
	if !hasHost && !rr.noHost {
		fmt.Fprintf(&b, "Host: %s\r\n", host)
	}
	for _, h := range rr.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	switch {
	case rr.chunked:
		if !hasTE {
			b.WriteString("Transfer-Encoding: chunked\r\n")
		}
		b.WriteString("\r\n")
		b.WriteString(chunk(rr.body, 7))
	case rr.body != "" && !hasLen && !hasTE:
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(rr.body), rr.body)
	default:
		b.WriteString("\r\n")
		b.WriteString(rr.body)
	}
	return b.Bytes()
}

// chunk frames body with chunked transfer coding, n bytes per chunk.
func chunk(body string, n int) string {
	var b strings.Builder
	for len(body) > 0 {
		k := min(n, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", k, body[:k])
		body = body[k:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// rawSend writes payload on a fresh connection to addr and reads one
// response. An error means no complete HTTP response came back (a dropped
// connection, a timeout or garbage); if the status line and headers did
// arrive, the reply holds them (status != 0).
func rawSend(addr string, method string, payload []byte) (reply, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := conn.Write(payload); err != nil {
		// The server may answer and close before reading everything
		// (a 413, a rejected request line): still try to read.
		if r, rerr := readRawReply(conn, method); rerr == nil || r.status != 0 {
			return r, rerr
		}
		return reply{}, fmt.Errorf("writing request: %w", err)
	}
	return readRawReply(conn, method)
}

func readRawReply(conn net.Conn, method string) (reply, error) {
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return reply{}, fmt.Errorf("reading response: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, body: body}
	if err != nil {
		return r, fmt.Errorf("reading response body: %w", err)
	}
	r.isEnv = json.Unmarshal(body, &r.env) == nil && r.env.Meta.Code != nil
	return r, nil
}

// hostPort is the gateway's address as host:port.
func (g *gateway) hostPort() string {
	return fmt.Sprintf("127.0.0.1:%d", g.port)
}

// sendRaw sends rr to the gateway and fails t if no HTTP response comes back.
func (g *gateway) sendRaw(t *testing.T, rr rawRequest) reply {
	t.Helper()
	method := rr.method
	if rr.raw != "" {
		method, _, _ = strings.Cut(rr.raw, " ")
	}
	r, err := rawSend(g.hostPort(), method, rr.bytes(g.hostPort()))
	if err != nil {
		t.Fatalf("%s %s: %v", method, rr.target, err)
	}
	g.checkRaw(t, rr.bytes(g.hostPort()), r)
	return r
}

// startGatewaySite is startGateway with extra directives (such as an access
// `log`) at the top of the site block; it mirrors startGateway otherwise.
// The log-hygiene check runs at cleanup as for startGateway. A reload would
// drop siteExtra.
func startGatewaySite(t *testing.T, cfg gatewayConfig, siteExtra string) *gateway {
	t.Helper()
	g := &gateway{t: t, cfg: cfg, backend: legacy.New(legacy.Options{SlowDelay: 10 * time.Second}),
		client: &http.Client{Transport: newContractTransport(t)}}
	t.Cleanup(g.client.CloseIdleConnections)
	up := newUpstream(t, g.backend)
	if g.cfg.Upstream == "" {
		g.cfg.Upstream = up
	}
	g.port = harness.FreePort(t)
	g.base = fmt.Sprintf("http://127.0.0.1:%d", g.port)
	site := g.caddyfile()
	if siteExtra != "" {
		open := fmt.Sprintf(":%d {\n", g.port)
		if !strings.HasPrefix(site, open) {
			t.Fatalf("unexpected site block: %q", site)
		}
		site = open + siteExtra + "\n" + strings.TrimPrefix(site, open)
	}
	g.caddy = harness.StartCaddyWith(t, bin, site, harness.Options{Global: cfg.Global})
	harness.WaitHTTP(t, g.base+"/", 10*time.Second)
	t.Cleanup(g.checkLogHygiene)
	g.backend.Reset()
	return g
}

// newUpstream serves the backend on a loopback port and returns host:port.
func newUpstream(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// issueScoped obtains a token asking for scope ("" for the default), from
// the main test goroutine, and returns it with the granted scope.
func (g *gateway) issueScoped(id, secret, scope string) (token, granted string) {
	g.t.Helper()
	v := cc(id, secret)
	if scope != "" {
		v.Set("scope", scope)
	}
	r := g.do(tokenForm(v))
	if r.status != http.StatusOK || r.code() != 0 {
		g.t.Fatalf("token for %s (scope %q): %d %s", id, scope, r.status, r.body)
	}
	var data struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(r.env.Data, &data); err != nil || data.AccessToken == "" {
		g.t.Fatalf("token for %s: no access_token in %s", id, r.body)
	}
	g.remember(data.AccessToken)
	return data.AccessToken, data.Scope
}

// tokenReq is a form token request from a client address (X-Forwarded-For;
// "" for none).
func tokenReq(v url.Values, from string) request {
	req := tokenForm(v)
	if from != "" {
		req.header["X-Forwarded-For"] = from
	}
	return req
}

// identityNames returns the header names of h that a lenient upstream would
// read as the identity header X-Outer-Client-Id.
func identityNames(h http.Header) []string {
	var names []string
	for name := range h {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Outer-Client-Id") {
			names = append(names, name)
		}
	}
	return names
}

// checkForwarded asserts what the upstream saw of one forwarded request:
// exactly one request, no Authorization, the verified identity (or none
// when identity is ""), and none of the secrets in any header, the query or
// the body.
func checkForwarded(t *testing.T, seen []legacy.Seen, identity string, secrets []string) {
	t.Helper()
	if len(seen) != 1 {
		t.Fatalf("upstream saw %d requests, want 1", len(seen))
	}
	h := seen[0].Header
	for name, v := range h {
		if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "Authorization") {
			t.Errorf("upstream saw %s: %q", name, v)
		}
	}
	names := identityNames(h)
	switch {
	case identity == "" && len(names) > 0:
		t.Errorf("upstream saw identity headers %v on an unauthenticated request: %v", names, h)
	case identity != "" && (len(names) != 1 || names[0] != "X-Outer-Client-Id" || len(h["X-Outer-Client-Id"]) != 1 || h.Get("X-Outer-Client-Id") != identity):
		t.Errorf("upstream identity headers %v = %v, want only X-Outer-Client-Id: %s", names, h, identity)
	}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		for name, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, s) {
					t.Errorf("upstream header %s carries a credential", name)
				}
			}
		}
		if strings.Contains(seen[0].RawQuery, s) || bytes.Contains(seen[0].Body, []byte(s)) {
			t.Errorf("upstream query or body carries a credential")
		}
	}
}

// bcryptOf hashes secret with bcrypt at the lowest cost.
func bcryptOf(t *testing.T, secret string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

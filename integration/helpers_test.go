package integration

// The helpers every end-to-end test shares: the gateway under test (built
// binary, Caddyfile, reload), requests and replies, raw HTTP/1.1 requests,
// the operations calls (revocation, introspection, device calls), the
// polling of cluster bounds, and the running of client-library scripts.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
	"golang.org/x/crypto/bcrypt"
)

// The clients every gateway in these tests knows.
const (
	appID        = "device-app"
	appSecret    = "s3cret-device-app-0001"
	readerID     = "reader"
	readerSecret = "reader-secret-0002"
	rotID        = "rotating"
	rotOld       = "rotating-old-secret-0003"
	rotNew       = "rotating-new-secret-0004"
)

func sha256Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

var readerBcrypt = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(readerSecret), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// gatewayConfig shapes the Caddyfile of one test gateway.
type gatewayConfig struct {
	TTL      string // token_ttl; default 36000s
	Extra    string // more outergate subdirectives
	Upstream string // reverse_proxy target; default the in-process legacy backend
	Global   string // extra global options
}

// gateway is one running outergate binary in front of a legacy backend.
type gateway struct {
	t       *testing.T
	caddy   *harness.Caddy
	port    int
	base    string
	backend *legacy.Backend
	cfg     gatewayConfig

	client *http.Client // its own connections, dropped on reload

	mu      sync.Mutex
	tokens  []string // every token issued, for the log-hygiene check
	secrets []string // secrets of clients created at runtime, likewise
}

// startGateway starts the legacy backend and the binary with cfg, and
// checks at cleanup that no secret or token reached the logs.
func startGateway(t *testing.T, cfg gatewayConfig) *gateway {
	t.Helper()
	g := &gateway{t: t, cfg: cfg, backend: legacy.New(legacy.Options{SlowDelay: 10 * time.Second}),
		client: &http.Client{Transport: newContractTransport(t)}}
	t.Cleanup(g.client.CloseIdleConnections)
	up := httptest.NewServer(g.backend)
	t.Cleanup(up.Close)
	if g.cfg.Upstream == "" {
		g.cfg.Upstream = strings.TrimPrefix(up.URL, "http://")
	}
	g.port = harness.FreePort(t)
	g.base = fmt.Sprintf("http://127.0.0.1:%d", g.port)
	g.caddy = harness.StartCaddyWith(t, bin, g.caddyfile(), harness.Options{Global: cfg.Global})
	harness.WaitHTTP(t, g.base+"/", 10*time.Second)
	t.Cleanup(g.checkLogHygiene)
	g.backend.Reset()
	return g
}

// caddyfile renders the site block of the gateway.
func (g *gateway) caddyfile() string {
	ttl := g.cfg.TTL
	if ttl == "" {
		ttl = "36000s"
	}
	return fmt.Sprintf(`:%d {
	outergate {
		portal `+portalPath+`
		token_ttl %s
		client %s %s
		client %s %s {
			scope read
		}
		client %s %s %s
%s
	}
	reverse_proxy %s {
		transport http {
			dial_timeout 1s
			response_header_timeout 2s
		}
	}
}
`, g.port, ttl, appID, sha256Hash(appSecret), readerID, readerBcrypt(),
		rotID, sha256Hash(rotOld), sha256Hash(rotNew), g.cfg.Extra, g.cfg.Upstream)
}

// reload applies a changed config to the running binary.
func (g *gateway) reload(cfg gatewayConfig) {
	g.t.Helper()
	if cfg.Upstream == "" {
		cfg.Upstream = g.cfg.Upstream
	}
	g.cfg = cfg
	g.reloadWith(g.caddyfile())
}

// reloadWith applies a Caddyfile body to the running binary. A reload
// closes Caddy's idle keep-alive connections (docs/ARCHITECTURE.md, traps), so the client
// drops its own and dials fresh ones: a POST on a connection closed under
// it would fail with EOF rather than be retried.
//
// The old config's servers stop accepting only when their shutdown
// goroutine runs, a moment after `caddy reload` returns; a connection one of
// them accepted meanwhile is closed unanswered (EOF). So the reload waits
// until three fresh connections in a row are answered, bounded by 5 s. The
// probe is a GET of the token endpoint, which outergate answers itself
// (405) without counting, auditing or calling the upstream, so tests that
// count what the backend saw are not disturbed.
func (g *gateway) reloadWith(body string) {
	g.t.Helper()
	g.caddy.Reload(g.t, body)
	g.client.CloseIdleConnections()
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Second)
	for answered := 0; answered < 3 && time.Now().Before(deadline); {
		resp, err := probe.Get(g.base + "/outer/token/")
		if err != nil {
			answered = 0
			time.Sleep(10 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		answered++
	}
}

// checkLogHygiene fails the test if any secret or issued token, whole or
// as a 12-character piece, appears in the binary's logs.
func (g *gateway) checkLogHygiene() {
	logs := g.caddy.Logs()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range append(append([]string{appSecret, readerSecret, rotOld, rotNew}, g.tokens...), g.secrets...) {
		for i := 0; i+12 <= len(s); i += 6 {
			if strings.Contains(logs, s[i:i+12]) {
				g.t.Errorf("log hygiene: logs contain a piece of a secret or token (%q...)", s[:4])
				return
			}
		}
	}
}

// reply is one answer of the gateway.
type reply struct {
	status int
	header http.Header
	body   []byte
	env    envelope
	isEnv  bool
}

// envelope is the platform's JSON envelope, as a client decodes it.
type envelope struct {
	Meta struct {
		Message string `json:"message"`
		Code    *int   `json:"code"`
	} `json:"meta"`
	Data json.RawMessage `json:"data"`
}

func (r reply) code() int {
	if r.env.Meta.Code == nil {
		return -1
	}
	return *r.env.Meta.Code
}

// request describes one HTTP request to the gateway.
type request struct {
	method string
	path   string
	header map[string]string
	multi  http.Header // headers with several values
	body   string
	host   string
}

// do sends req and decodes the answer.
func (g *gateway) do(req request) reply {
	g.t.Helper()
	if req.method == "" {
		req.method = http.MethodGet
	}
	hr, err := http.NewRequest(req.method, g.base+req.path, strings.NewReader(req.body))
	if err != nil {
		g.t.Fatalf("new request %s: %v", req.path, err)
	}
	if req.body == "" {
		hr.Body = http.NoBody
		hr.ContentLength = 0
	}
	for k, v := range req.header {
		hr.Header.Set(k, v)
	}
	for k, vs := range req.multi {
		hr.Header[k] = vs
	}
	if req.host != "" {
		hr.Host = req.host
	}
	resp, err := g.client.Do(hr)
	if err != nil {
		g.t.Fatalf("%s %s: %v", req.method, req.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatalf("%s %s: reading body: %v", req.method, req.path, err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: body}
	r.isEnv = json.Unmarshal(body, &r.env) == nil && r.env.Meta.Code != nil
	return r
}

// issue obtains a token with form credentials and fails the test if it
// cannot.
func (g *gateway) issue(id, secret string) string {
	g.t.Helper()
	r := g.do(tokenForm(url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}))
	if r.status != http.StatusOK || r.code() != 0 {
		g.t.Fatalf("token for %s: %d %s", id, r.status, r.body)
	}
	var data struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.env.Data, &data); err != nil || data.AccessToken == "" {
		g.t.Fatalf("token for %s: no access_token in %s", id, r.body)
	}
	g.remember(data.AccessToken)
	return data.AccessToken
}

func (g *gateway) remember(token string) {
	g.mu.Lock()
	g.tokens = append(g.tokens, token)
	g.mu.Unlock()
}

func tokenForm(v url.Values) request {
	return request{method: http.MethodPost, path: "/outer/token/",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, body: v.Encode()}
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// expect checks status, code and, when given, message of an envelope reply,
// and that every envelope outergate writes has the documented content type.
func expect(t *testing.T, r reply, status, code int, message string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status = %d, want %d (body %s)", r.status, status, r.body)
	}
	if !r.isEnv {
		t.Fatalf("body is not an envelope: %q", r.body)
	}
	if r.code() != code {
		t.Errorf("code = %d, want %d (body %s)", r.code(), code, r.body)
	}
	if message != "" && r.env.Meta.Message != message {
		t.Errorf("message = %q, want %q", r.env.Meta.Message, message)
	}
	if code != 0 {
		if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type = %q, want application/json; charset=utf-8", ct)
		}
		if string(r.env.Data) != "null" {
			t.Errorf("data = %s, want null", r.env.Data)
		}
	}
}

// rememberFrom records the token of a successful token reply.
func (g *gateway) rememberFrom(r reply) {
	var data struct {
		AccessToken string `json:"access_token"`
	}
	if json.Unmarshal(r.env.Data, &data) == nil && data.AccessToken != "" {
		g.remember(data.AccessToken)
	}
}

func jsonUnmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

const (
	opsRevokePath     = "/outer/token/revoke/"
	opsIntrospectPath = "/outer/token/introspect/"
	// opsRevocationBound is how soon a revocation must be refused on every
	// instance (docs/API.md "Stores and cluster behaviour").
	opsRevocationBound = 2 * time.Second
	// opsPollEvery is how often the cluster tests look for the refusal.
	opsPollEvery = 50 * time.Millisecond
)

// opsRevokedBody is the exact RFC 7009 success answer.
const opsRevokedBody = `{"meta":{"message":"token revoked","code":0},"data":null}`

// opsDevice is a device call with tok that the legacy backend answers 200.
func opsDevice(tok string) request {
	return request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}
}

// opsClientPost is a client-authenticated form POST to path: p plus the
// client's credentials in the body, or in HTTP Basic when basic is set.
func opsClientPost(path string, p url.Values, id, secret string, basic bool) request {
	v := url.Values{}
	for k, vs := range p {
		v[k] = slices.Clone(vs)
	}
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if basic {
		h["Authorization"] = basicAuth(id, secret)
	} else {
		v.Set("client_id", id)
		v.Set("client_secret", secret)
	}
	return request{method: http.MethodPost, path: path, header: h, body: v.Encode()}
}

// opsRevoke is an RFC 7009 revocation of tok by the client id, with body
// credentials.
func opsRevoke(tok, id, secret string) request {
	return opsClientPost(opsRevokePath, url.Values{"token": {tok}}, id, secret, false)
}

// opsIntrospect is an RFC 7662 introspection of tok by the client id, with
// body credentials.
func opsIntrospect(tok, id, secret string) request {
	return opsClientPost(opsIntrospectPath, url.Values{"token": {tok}}, id, secret, false)
}

// opsIssueScoped obtains a token of the given scope and remembers it.
func opsIssueScoped(g *gateway, id, secret, scope string) string {
	g.t.Helper()
	v := cc(id, secret)
	v.Set("scope", scope)
	r := g.do(tokenForm(v))
	if r.status != http.StatusOK || r.code() != 0 {
		g.t.Fatalf("token for %s (scope %q): %d %s", id, scope, r.status, r.body)
	}
	g.rememberFrom(r)
	var data struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.env.Data, &data); err != nil || data.AccessToken == "" {
		g.t.Fatalf("token for %s: no access_token in %s", id, r.body)
	}
	return data.AccessToken
}

// opsRandomToken is a well-formed token that no gateway issued.
func opsRandomToken(g *gateway) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		g.t.Fatal(err)
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	g.remember(tok)
	return tok
}

// opsWaitRefused polls g every 50 ms with each token until all of them are
// refused with 401 + 23021, and returns the time since start. It fails the
// test if that takes longer than bound.
func opsWaitRefused(t *testing.T, g *gateway, start time.Time, bound time.Duration, toks ...string) time.Duration {
	t.Helper()
	pending := slices.Clone(toks)
	for {
		var still []string
		for _, tok := range pending {
			r := g.do(opsDevice(tok))
			switch {
			case r.status == http.StatusUnauthorized && r.code() == 23021:
				if r.env.Meta.Message != "access token revoked" {
					t.Errorf("revoked token refused with message %q, want \"access token revoked\"", r.env.Meta.Message)
				}
			case r.status == http.StatusOK:
				still = append(still, tok)
			default:
				t.Errorf("while waiting for the revocation: %d %s", r.status, r.body)
			}
		}
		pending = still
		took := time.Since(start)
		if len(pending) == 0 {
			return took
		}
		if took > bound {
			t.Errorf("%d of %d revoked tokens still accepted %s after the revocation (bound %s)", len(pending), len(toks), took.Round(time.Millisecond), bound)
			return took
		}
		time.Sleep(opsPollEvery)
	}
}

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

// systemPython is the interpreter Debian's python3-* packages serve; another
// python3 earlier on PATH would not see them.
const systemPython = "/usr/bin/python3"

// requirePython returns systemPython if it imports every module, else
// skips the test with the reason, or fails it under
// OUTERGATE_REQUIRE_PYTHON=1 (CI).
func requirePython(t *testing.T, modules ...string) string {
	t.Helper()
	out, err := exec.Command(systemPython, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("%s cannot import %s (%v: %s): apt-get install python3-authlib python3-requests-oauthlib to run this check",
			systemPython, strings.Join(modules, ", "), err, strings.TrimSpace(string(out)))
		if os.Getenv("OUTERGATE_REQUIRE_PYTHON") == "1" {
			t.Fatal(msg + " (OUTERGATE_REQUIRE_PYTHON=1)")
		}
		t.Skip(msg)
	}
	return systemPython
}

// requireNode returns node and npm, else skips the test, or fails it under
// OUTERGATE_REQUIRE_NODE=1 (CI).
func requireNode(t *testing.T) (node, npm string) {
	t.Helper()
	node, errNode := exec.LookPath("node")
	npm, errNpm := exec.LookPath("npm")
	if errNode != nil || errNpm != nil {
		if os.Getenv("OUTERGATE_REQUIRE_NODE") == "1" {
			t.Fatal("node and npm are required (OUTERGATE_REQUIRE_NODE=1)")
		}
		t.Skip("Node.js not found: install nodejs and npm to run the npm client checks")
	}
	return node, npm
}

// runScript runs a client script with interp in dir (absolute, or relative
// to integration/) and decodes the one JSON line it prints.
func runScript(t *testing.T, interp, dir, script string, args ...string) map[string]any {
	t.Helper()
	if !filepath.IsAbs(dir) {
		root, err := harness.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, "integration", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, interp, append([]string{script}, args...)...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(interp), script, err, out, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("%s printed %q: %v\n%s", script, out, err, stderr.String())
	}
	return res
}

// anyStrings turns a decoded JSON array of strings into a []string.
func anyStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		str, _ := s.(string)
		out = append(out, str)
	}
	return out
}

// jsonDecode decodes one JSON value from r.
func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

// upgradeUpstream is a recording upstream for the upgrade tests: the legacy
// backend, except that any request asking to upgrade (WebSocket, h2c,
// anything) is recorded and answered 101, after which the connection echoes
// what it reads, as a backend that takes the connection over would. It
// shows whether an upgrade got through, and what the rest of that
// connection would bypass.
type upgradeUpstream struct {
	backend *legacy.Backend

	mu       sync.Mutex
	upgrades []legacy.Seen
}

func (u *upgradeUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	proto := r.Header.Get("Upgrade")
	if proto == "" {
		u.backend.ServeHTTP(w, r)
		return
	}
	u.mu.Lock()
	u.upgrades = append(u.upgrades, legacy.Seen{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone()})
	u.mu.Unlock()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", proto)
	_ = brw.Flush()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	for {
		n, err := brw.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// seenUpgrades returns the upgrade requests the upstream received.
func (u *upgradeUpstream) seenUpgrades() []legacy.Seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.upgrades)
}

// chunkedWithTrailers is a raw request whose body is sent chunked and
// followed by the given trailer fields.
func chunkedWithTrailers(method, target string, headers [][2]string, body string, trailers [][2]string) rawRequest {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: {HOST}\r\n", method, target)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
	if body != "" {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
	}
	b.WriteString("0\r\n")
	for _, t := range trailers {
		fmt.Fprintf(&b, "%s: %s\r\n", t[0], t[1])
	}
	b.WriteString("\r\n")
	return rawRequest{raw: b.String(), target: target}
}

// The helpers of the managed-client tests (clients_e2e_test.go): calls of
// the client management routes of the admin API, and polling for a change
// to reach an instance.

// managedAdmin calls the admin API of g and decodes a JSON object answer.
func managedAdmin(t *testing.T, g *gateway, method, path, body string) (int, map[string]any, []byte) {
	t.Helper()
	status, raw := opsAdmin(t, g.caddy, method, path, body)
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("admin %s %s: answer %q is not a JSON object", method, path, raw)
	}
	return status, obj, raw
}

// managedCreate creates a client through the admin API of g, expects 201
// and returns its secret, which every gateway given keeps out of its logs.
func managedCreate(t *testing.T, g *gateway, body string, others ...*gateway) string {
	t.Helper()
	status, obj, raw := managedAdmin(t, g, http.MethodPost, "/outergate/clients", body)
	if status != http.StatusCreated {
		t.Fatalf("create %s: %d %s", body, status, raw)
	}
	return managedSecret(t, obj, raw, append(others, g)...)
}

// managedRotate rotates a client's secret through the admin API of g with
// the given grace, expects 200 and returns the new secret.
func managedRotate(t *testing.T, g *gateway, id, grace string, others ...*gateway) (string, map[string]any) {
	t.Helper()
	status, obj, raw := managedAdmin(t, g, http.MethodPost, "/outergate/clients/"+id+"/rotate", fmt.Sprintf(`{"grace":%q}`, grace))
	if status != http.StatusOK {
		t.Fatalf("rotate %s: %d %s", id, status, raw)
	}
	return managedSecret(t, obj, raw, append(others, g)...), obj
}

// managedSecret reads client_secret from an answer: 256 bits, base64url.
func managedSecret(t *testing.T, obj map[string]any, raw []byte, gs ...*gateway) string {
	t.Helper()
	secret, _ := obj["client_secret"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(b) != 32 {
		t.Fatalf("client_secret in %s is not 32 random bytes in base64url", raw)
	}
	for _, g := range gs {
		g.mu.Lock()
		g.secrets = append(g.secrets, secret)
		g.mu.Unlock()
	}
	return secret
}

// waitUntil polls cond every opsPollEvery until it holds, and returns how
// long that took; false if it still did not hold after bound.
func waitUntil(bound time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > bound {
			return time.Since(start), false
		}
		time.Sleep(opsPollEvery)
	}
}

// tokenStatus asks g for a token of id and returns the status and code.
func tokenStatus(g *gateway, id, secret string) (int, int) {
	r := g.do(tokenForm(cc(id, secret)))
	g.rememberFrom(r)
	return r.status, r.code()
}

// deviceStatus sends a device call with tok (GET info, or PUT unbind when
// write is set) and returns the status and code.
func deviceStatus(g *gateway, tok string, write bool) (int, int) {
	req := opsDevice(tok)
	if write {
		req = request{method: http.MethodPut, path: "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline, header: bearer(tok)}
	}
	r := g.do(req)
	return r.status, r.code()
}

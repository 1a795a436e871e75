package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
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

	mu     sync.Mutex
	tokens []string // every token issued, for the log-hygiene check
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
// closes Caddy's idle keep-alive connections (DESIGN.md), so the client
// drops its own and dials fresh ones: a POST on a connection closed under
// it would fail with EOF rather than be retried.
func (g *gateway) reloadWith(body string) {
	g.t.Helper()
	g.caddy.Reload(g.t, body)
	g.client.CloseIdleConnections()
}

// checkLogHygiene fails the test if any secret or issued token, whole or
// as a 12-character piece, appears in the binary's logs.
func (g *gateway) checkLogHygiene() {
	logs := g.caddy.Logs()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range append([]string{appSecret, readerSecret, rotOld, rotNew}, g.tokens...) {
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

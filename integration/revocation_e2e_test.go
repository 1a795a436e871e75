package integration

// End-to-end tests of DESIGN.md "Operations" (issue 5): the CLI, RFC 7009
// revocation and RFC 7662 introspection for clients, the admin API, the
// revocation's reach across instances on one Redis, the Prometheus metrics
// and the audit log, all against the built binary.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

const (
	opsRevokePath     = "/outer/token/revoke/"
	opsIntrospectPath = "/outer/token/introspect/"
	// opsRevocationBound is how soon a revocation must be refused on every
	// instance (DESIGN.md "Cluster mode").
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

// opsAdmin calls Caddy's admin endpoint of c and returns the status and the
// raw body.
func opsAdmin(t *testing.T, c *harness.Caddy, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.AdminURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("admin %s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// opsAdminRevoke posts body to /outergate/revoke, expects 200 and exactly
// {"revoked": N}, and returns N.
func opsAdminRevoke(t *testing.T, c *harness.Caddy, body string) int {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodPost, "/outergate/revoke", body)
	if status != http.StatusOK {
		t.Fatalf("admin revoke %s: %d %s", body, status, raw)
	}
	var out struct {
		Revoked *int `json:"revoked"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Revoked == nil {
		t.Fatalf("admin revoke %s: answer %s is not {\"revoked\": N} (%v)", body, raw, err)
	}
	return *out.Revoked
}

// opsAdminClients reads GET /outergate/clients of c: the live token count
// of each listed client, in the order listed, and the raw body.
func opsAdminClients(t *testing.T, c *harness.Caddy) (map[string]int, []string, []byte) {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodGet, "/outergate/clients", "")
	if status != http.StatusOK {
		t.Fatalf("admin clients: %d %s", status, raw)
	}
	var out struct {
		Clients []struct {
			ID         *string `json:"id"`
			LiveTokens *int    `json:"live_tokens"`
		} `json:"clients"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Clients == nil {
		t.Fatalf("admin clients: answer %s is not {\"clients\": [{\"id\", \"live_tokens\"}...]} (%v)", raw, err)
	}
	counts := map[string]int{}
	var order []string
	for _, c := range out.Clients {
		if c.ID == nil || c.LiveTokens == nil {
			t.Fatalf("admin clients: entry without id or live_tokens in %s", raw)
		}
		if _, dup := counts[*c.ID]; dup {
			t.Errorf("admin clients: %s listed twice in %s", *c.ID, raw)
		}
		counts[*c.ID] = *c.LiveTokens
		order = append(order, *c.ID)
	}
	return counts, order, raw
}

// opsCheckClients compares a clients listing with want (every configured
// client and its live tokens).
func opsCheckClients(t *testing.T, c *harness.Caddy, want map[string]int) {
	t.Helper()
	got, _, raw := opsAdminClients(t, c)
	if len(got) != len(want) {
		t.Errorf("admin clients lists %d clients, want %d: %s", len(got), len(want), raw)
	}
	for id, n := range want {
		if m, ok := got[id]; !ok || m != n {
			t.Errorf("admin clients: %s live_tokens = %d (listed %v), want %d: %s", id, m, ok, n, raw)
		}
	}
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

// TestCLINewClientAndHashSecret checks `caddy outergate new-client` and
// `caddy outergate hash-secret` of the built binary, and that a client
// created with them works on a gateway.
func TestCLINewClientAndHashSecret(t *testing.T) {
	const id = "cli-partner.01"
	out, errOut, err := opsRunCLI(t, "", "outergate", "new-client", id)
	if err != nil {
		t.Fatalf("new-client: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("new-client output lacks %s:\n%s", re, out)
		}
		return m[1]
	}
	if got := field(`(?m)^client_id: (\S+)$`); got != id {
		t.Errorf("client_id: %q, want %q", got, id)
	}
	secret := field(`(?m)^client_secret: (\S+)$`)
	line := field(`(?m)^(client \S+ sha256:[0-9a-f]{64})$`)
	hash := strings.Fields(line)[2]
	if got := strings.Fields(line)[1]; got != id {
		t.Errorf("Caddyfile line %q names client %q, want %q", line, got, id)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(raw) < 32 {
		t.Errorf("client_secret %q...: want base64url of at least 32 random bytes (%d bytes, %v)", secret[:4], len(raw), err)
	}
	if hash != sha256Hash(secret) {
		t.Errorf("printed hash is not SHA-256 of the printed secret")
	}
	if strings.Count(out, secret) != 1 {
		t.Errorf("the secret appears %d times in the output, want once", strings.Count(out, secret))
	}
	if again, _, err := opsRunCLI(t, "", "outergate", "new-client", id); err != nil || strings.Contains(again, secret) {
		t.Errorf("a second new-client repeated the secret or failed (%v)", err)
	}

	cli := []struct {
		name   string
		args   []string
		stdin  string
		wantOK bool
		want   string // exact stdout when wantOK
	}{
		{name: "hash-secret of the printed secret equals the printed hash", args: []string{"hash-secret"}, stdin: secret + "\n", wantOK: true, want: hash + "\n"},
		{name: "hash-secret without a final newline", args: []string{"hash-secret"}, stdin: secret, wantOK: true, want: hash + "\n"},
		{name: "hash-secret strips a CRLF line end", args: []string{"hash-secret"}, stdin: secret + "\r\n", wantOK: true, want: hash + "\n"},
		{name: "hash-secret of a known secret", args: []string{"hash-secret"}, stdin: appSecret + "\n", wantOK: true, want: sha256Hash(appSecret) + "\n"},
		{name: "hash-secret refuses an empty stdin", args: []string{"hash-secret"}, stdin: ""},
		{name: "hash-secret takes no arguments", args: []string{"hash-secret", "s3cret"}, stdin: "x\n"},
		{name: "new-client needs an id", args: []string{"new-client"}},
		{name: "new-client refuses an id unfit for a Caddyfile", args: []string{"new-client", "bad id"}},
		{name: "new-client refuses an id with a brace", args: []string{"new-client", "x{y"}},
	}
	for _, tt := range cli {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := opsRunCLI(t, tt.stdin, append([]string{"outergate"}, tt.args...)...)
			if tt.wantOK {
				if err != nil || out != tt.want {
					t.Errorf("stdout %q (err %v, stderr %q), want %q", out, err, errOut, tt.want)
				}
				return
			}
			if err == nil {
				t.Errorf("exit status 0, want a failure; stdout %q", out)
			}
			if strings.Contains(out, "client_secret") || strings.Contains(out, "sha256:") {
				t.Errorf("a failed command printed credentials: %q", out)
			}
		})
	}

	// Paste the printed line into a gateway's Caddyfile: the client gets a
	// token (body or Basic credentials) and calls a device route.
	g := startGateway(t, gatewayConfig{Extra: "\t\t" + line})
	g.remember(secret)
	tok := g.issue(id, secret)
	g.backend.Reset()
	expect(t, g.do(opsDevice(tok)), 200, 0, "Device info")
	if seen := g.backend.Requests(); len(seen) != 1 || seen[0].Header.Get("X-Outer-Client-Id") != id {
		t.Errorf("upstream did not see the CLI client's identity %q: %d requests", id, len(seen))
	}
	basic := tokenForm(url.Values{"grant_type": {"client_credentials"}})
	basic.header["Authorization"] = basicAuth(id, secret)
	r := g.do(basic)
	expect(t, r, 200, 0, "")
	g.rememberFrom(r)
	expect(t, g.do(tokenForm(cc(id, secret+"x"))), 401, 23020, "client authentication failed")
}

// opsRunCLI runs the binary with args and stdin, away from the user's
// HOME, and returns its stdout and stderr.
func opsRunCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), errOut.String(), err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within 20 s", args)
		return "", "", nil
	}
}

// TestRevocationRFC7009 checks POST <token_path>revoke/: client
// authentication like the token endpoint, own tokens only, the RFC 7009
// answers, and that a revoked token is refused at once.
func TestRevocationRFC7009(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	withForm := func(extra map[string]string) map[string]string {
		h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	const (
		ownToken   = "own"   // the calling client's own token
		otherToken = "other" // another client's token
	)
	tests := []struct {
		name string
		// req builds the request from the caller's token and another
		// client's token, both fresh for the row.
		req     func(own, other string) request
		status  int
		code    int
		message string
		exact   bool   // the body must be exactly opsRevokedBody
		header  string // a header that must be present, "Name: value"
		// target is the token checked after the request, and revoked
		// says whether it must then be refused.
		target  string
		revoked bool
	}{
		{name: "own token revoked, credentials in the body", req: func(own, _ string) request { return opsRevoke(own, appID, appSecret) },
			status: 200, exact: true, target: ownToken, revoked: true},
		{name: "own token revoked, credentials in HTTP Basic", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}}, appID, appSecret, true)
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "own token revoked, JSON body", req: func(own, _ string) request {
			b, _ := json.Marshal(map[string]string{"token": own, "client_id": appID, "client_secret": appSecret})
			return request{method: "POST", path: opsRevokePath, header: map[string]string{"Content-Type": "application/json"}, body: string(b)}
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "token_type_hint is accepted", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}, "token_type_hint": {"access_token"}}, appID, appSecret, false)
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "revoke path answers without its trailing slash", req: func(own, _ string) request {
			r := opsRevoke(own, appID, appSecret)
			r.path = strings.TrimSuffix(opsRevokePath, "/")
			return r
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "another client's token is not revoked, same 200", req: func(_, other string) request { return opsRevoke(other, appID, appSecret) },
			status: 200, exact: true, target: otherToken, revoked: false},
		{name: "unknown token answers 200", req: func(_, _ string) request { return opsRevoke(opsRandomToken(g), appID, appSecret) },
			status: 200, exact: true, target: ownToken, revoked: false},
		{name: "missing token is 400 23010", req: func(_, _ string) request { return opsClientPost(opsRevokePath, nil, appID, appSecret, false) },
			status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "duplicate token is 400 23010", req: func(own, other string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own, other}}, appID, appSecret, false)
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "wrong secret is 401 23020 and revokes nothing", req: func(own, _ string) request { return opsRevoke(own, appID, "wrong-secret") },
			status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "wrong secret in Basic is 401 23020 with the Basic challenge", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}}, appID, "wrong-secret", true)
		}, status: 401, code: 23020, header: `Www-Authenticate: Basic realm="outer"`, target: ownToken, revoked: false},
		{name: "unknown client is 401 23020", req: func(own, _ string) request { return opsRevoke(own, "nobody", appSecret) },
			status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "no client credentials is 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: form, body: url.Values{"token": {own}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "credentials in the query string are 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath + "?" + url.Values{"client_id": {appID}, "client_secret": {appSecret}}.Encode(),
				header: form, body: url.Values{"token": {own}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "Basic beside a body secret is 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: withForm(map[string]string{"Authorization": basicAuth(appID, appSecret)}),
				body: url.Values{"token": {own}, "client_secret": {appSecret}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "GET is 405 with Allow: POST", req: func(own, _ string) request {
			return request{path: opsRevokePath + "?token=" + url.QueryEscape(own)}
		}, status: 405, code: 23010, header: "Allow: POST", target: ownToken, revoked: false},
		{name: "unsupported content type is 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: map[string]string{"Content-Type": "text/plain"},
				body: url.Values{"token": {own}, "client_id": {appID}, "client_secret": {appSecret}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := g.issue(appID, appSecret)
			other := g.issue(readerID, readerSecret)
			r := g.do(tt.req(own, other))
			if tt.status == 200 {
				if r.status != 200 || (tt.exact && string(r.body) != opsRevokedBody) {
					t.Errorf("got %d %s, want 200 %s", r.status, r.body, opsRevokedBody)
				}
			} else {
				expect(t, r, tt.status, tt.code, tt.message)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				if got := r.header.Get(name); got != value {
					t.Errorf("%s = %q, want %q", name, got, value)
				}
			}
			target := own
			if tt.target == otherToken {
				target = other
			}
			after := g.do(opsDevice(target))
			if tt.revoked {
				expect(t, after, 401, 23021, "access token revoked")
				if got := after.header.Get("WWW-Authenticate"); got != `Bearer realm="outer", error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			} else {
				expect(t, after, 200, 0, "Device info")
			}
		})
	}

	t.Run("revoking twice answers 200 both times", func(t *testing.T) {
		tok := g.issue(appID, appSecret)
		for i := range 2 {
			if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 || string(r.body) != opsRevokedBody {
				t.Errorf("revocation %d: %d %s", i+1, r.status, r.body)
			}
		}
		expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
	})
	t.Run("failed authentications on revoke and introspect feed the token endpoint's throttle", func(t *testing.T) {
		tg := startGateway(t, gatewayConfig{Extra: "\t\tthrottle 2 1m"})
		tok := tg.issue(appID, appSecret)
		expect(t, tg.do(opsRevoke(tok, appID, "wrong-secret")), 401, 23020, "")
		expect(t, tg.do(opsIntrospect(tok, appID, "wrong-secret")), 401, 23020, "")
		for _, req := range []request{opsRevoke(tok, appID, appSecret), opsIntrospect(tok, appID, appSecret), tokenForm(cc(appID, appSecret))} {
			r := tg.do(req)
			expect(t, r, 429, 23029, "")
			if r.header.Get("Retry-After") == "" || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: 429 with Retry-After %q, Cache-Control %q", req.path, r.header.Get("Retry-After"), r.header.Get("Cache-Control"))
			}
		}
		expect(t, tg.do(opsDevice(tok)), 200, 0, "Device info")
	})
	t.Run("a revoked client keeps its other tokens and can get new ones", func(t *testing.T) {
		keep := g.issue(appID, appSecret)
		gone := g.issue(appID, appSecret)
		if r := g.do(opsRevoke(gone, appID, appSecret)); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		expect(t, g.do(opsDevice(gone)), 401, 23021, "access token revoked")
		expect(t, g.do(opsDevice(keep)), 200, 0, "Device info")
		expect(t, g.do(opsDevice(g.issue(appID, appSecret))), 200, 0, "Device info")
	})
}

// TestIntrospectionRFC7662 checks POST <token_path>introspect/: the
// caller's own live token is described; any other token is exactly
// {"active":false}.
func TestIntrospectionRFC7662(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	short := startGateway(t, gatewayConfig{TTL: "1s"})

	// The short-lived token, described while live, then expired.
	expiring := short.issue(appID, appSecret)
	issuedAt := time.Now()
	shortLive := short.do(opsIntrospect(expiring, appID, appSecret))

	own := g.issue(appID, appSecret)
	readOnly := opsIssueScoped(g, appID, appSecret, "read")
	other := g.issue(readerID, readerSecret)
	revoked := g.issue(appID, appSecret)
	if r := g.do(opsRevoke(revoked, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	time.Sleep(time.Until(issuedAt.Add(1200 * time.Millisecond)))
	expect(t, short.do(opsDevice(expiring)), 401, 23021, "")

	type active struct {
		client string
		scope  string
		ttl    int64
	}
	tests := []struct {
		name    string
		gw      *gateway
		req     request
		reply   *reply // an answer already taken, instead of req
		status  int
		code    int
		active  *active // nil: data must be exactly {"active":false} (for 200)
		message string
	}{
		{name: "own live token is active", gw: g, req: opsIntrospect(own, appID, appSecret), status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 36000}},
		{name: "own token with a narrowed scope shows that scope", gw: g, req: opsIntrospect(readOnly, appID, appSecret), status: 200,
			active: &active{client: appID, scope: "read", ttl: 36000}},
		{name: "HTTP Basic credentials work", gw: g, req: opsClientPost(opsIntrospectPath, url.Values{"token": {own}}, appID, appSecret, true), status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 36000}},
		{name: "bcrypt client's own token is active", gw: g, req: opsIntrospect(other, readerID, readerSecret), status: 200,
			active: &active{client: readerID, scope: "read", ttl: 36000}},
		{name: "short-lived token while live: exp-iat is token_ttl", gw: short, reply: &shortLive, status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 1}},
		{name: "another client's token is inactive", gw: g, req: opsIntrospect(other, appID, appSecret), status: 200},
		{name: "unknown token is inactive", gw: g, req: opsIntrospect(opsRandomToken(g), appID, appSecret), status: 200},
		{name: "revoked token is inactive", gw: g, req: opsIntrospect(revoked, appID, appSecret), status: 200},
		{name: "expired token is inactive", gw: short, req: opsIntrospect(expiring, appID, appSecret), status: 200},
		{name: "missing token is 400 23010", gw: g, req: opsClientPost(opsIntrospectPath, nil, appID, appSecret, false), status: 400, code: 23010},
		{name: "wrong secret is 401 23020", gw: g, req: opsIntrospect(own, appID, "wrong-secret"), status: 401, code: 23020, message: "client authentication failed"},
		{name: "unknown client is 401 23020", gw: g, req: opsIntrospect(own, "nobody", appSecret), status: 401, code: 23020, message: "client authentication failed"},
		{name: "GET is 405 with Allow: POST", gw: g, req: request{path: opsIntrospectPath}, status: 405, code: 23010},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reply
			if tt.reply != nil {
				r = *tt.reply
			} else {
				r = tt.gw.do(tt.req)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if tt.status != 200 {
				expect(t, r, tt.status, tt.code, tt.message)
				if tt.status == 405 && r.header.Get("Allow") != "POST" {
					t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
				}
				return
			}
			expect(t, r, 200, 0, "")
			if tt.active == nil {
				var compact bytes.Buffer
				if err := json.Compact(&compact, r.env.Data); err != nil || compact.String() != `{"active":false}` {
					t.Errorf("data = %s, want exactly {\"active\":false}", r.env.Data)
				}
				return
			}
			opsCheckActive(t, r.env.Data, tt.active.client, tt.active.scope, tt.active.ttl)
		})
	}
}

// TestIntrospectionAfterEviction checks, on each store, that issuing past
// max_tokens_per_client evicts the client's oldest token: introspection
// shows it inactive and the newest token active. Tokens issued a few
// milliseconds apart, then back to back.
func TestIntrospectionAfterEviction(t *testing.T) {
	stores := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{name: "memory store", store: func(*testing.T) string { return "" }},
		{name: "redis store", store: func(t *testing.T) string { return "\t\tstore redis " + harness.StartRedis(t).URL() }},
	}
	active := func(g *gateway, tok string) bool {
		r := g.do(opsIntrospect(tok, appID, appSecret))
		if r.status != 200 {
			g.t.Fatalf("introspection: %d %s", r.status, r.body)
		}
		return bytes.Contains(r.env.Data, []byte(`"active":true`))
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{Extra: "\t\tmax_tokens_per_client 1\n" + st.store(t)})
			t.Run("tokens issued apart: the oldest is evicted", func(t *testing.T) {
				old := g.issue(appID, appSecret)
				time.Sleep(5 * time.Millisecond)
				young := g.issue(appID, appSecret)
				if active(g, old) {
					t.Errorf("the evicted token is still active")
				}
				if !active(g, young) {
					t.Errorf("the newest token is inactive")
				}
				expect(t, g.do(opsDevice(old)), 401, 23021, "")
				expect(t, g.do(opsDevice(young)), 200, 0, "Device info")
			})
			t.Run("tokens issued back to back: the newest always survives", func(t *testing.T) {
				const pairs = 100
				youngDead, oldAlive := 0, 0
				for range pairs {
					old := g.issue(appID, appSecret)
					young := g.issue(appID, appSecret)
					if !active(g, young) {
						youngDead++
					}
					if active(g, old) {
						oldAlive++
					}
				}
				if youngDead > 0 || oldAlive > 0 {
					t.Errorf("with max_tokens_per_client 1, of %d back-to-back pairs of token requests the just-issued token was "+
						"inactive (evicted on issuance) %d times and the older one kept %d times", pairs, youngDead, oldAlive)
				}
			})
		})
	}
}

// opsCheckActive checks an RFC 7662 answer for an active token: exactly the
// fields active, client_id, scope, exp, iat and token_type, with exp - iat
// equal to the token's lifetime and exp in the future (for long lifetimes).
func opsCheckActive(t *testing.T, data json.RawMessage, client, scope string, ttl int64) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatalf("data %s is not an object: %v", data, err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"active", "client_id", "exp", "iat", "scope", "token_type"}; !slices.Equal(keys, want) {
		t.Errorf("data fields %v, want %v (%s)", keys, want, data)
	}
	var got struct {
		Active    bool   `json:"active"`
		ClientID  string `json:"client_id"`
		Scope     string `json:"scope"`
		Exp       int64  `json:"exp"`
		Iat       int64  `json:"iat"`
		TokenType string `json:"token_type"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("data %s: %v", data, err)
	}
	now := time.Now().Unix()
	switch {
	case !got.Active:
		t.Errorf("active = false, want true: %s", data)
	case got.ClientID != client:
		t.Errorf("client_id = %q, want %q", got.ClientID, client)
	case got.Scope != scope:
		t.Errorf("scope = %q, want %q", got.Scope, scope)
	case got.TokenType != "Bearer":
		t.Errorf("token_type = %q, want Bearer", got.TokenType)
	case got.Exp-got.Iat != ttl:
		t.Errorf("exp - iat = %d, want token_ttl %d (%s)", got.Exp-got.Iat, ttl, data)
	case got.Iat < now-60 || got.Iat > now+1:
		t.Errorf("iat = %d, want about now (%d): unix seconds", got.Iat, now)
	case ttl > 10 && got.Exp <= now:
		t.Errorf("exp = %d is not in the future (now %d)", got.Exp, now)
	}
}

// TestAdminAPIRevokeAndClients checks the admin API module on Caddy's
// admin endpoint: revocation by token and by client, its errors, and the
// clients listing, which never shows a secret, hash or token.
func TestAdminAPIRevokeAndClients(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	c := g.caddy
	app := []string{g.issue(appID, appSecret), g.issue(appID, appSecret), g.issue(appID, appSecret)}
	reader := []string{g.issue(readerID, readerSecret), g.issue(readerID, readerSecret)}
	rot := g.issue(rotID, rotOld)

	t.Run("clients lists every configured client with its live tokens", func(t *testing.T) {
		opsCheckClients(t, c, map[string]int{appID: 3, readerID: 2, rotID: 1})
		_, order, raw := opsAdminClients(t, c)
		if !slices.IsSorted(order) {
			t.Logf("clients are not sorted by id: %v", order)
		}
		forbidden := []string{appSecret, readerSecret, rotOld, rotNew, readerBcrypt(), "$2a$", "$2b$", "sha256:"}
		for _, s := range []string{appSecret, rotOld, rotNew} {
			forbidden = append(forbidden, strings.TrimPrefix(sha256Hash(s), "sha256:"))
		}
		forbidden = append(forbidden, app...)
		forbidden = append(forbidden, reader...)
		forbidden = append(forbidden, rot)
		for _, s := range forbidden {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("clients answer contains a secret, hash or token (%q...): %s", s[:4], raw)
			}
		}
		for _, word := range []string{"secret", "hash", "token\""} {
			if bytes.Contains(bytes.ToLower(raw), []byte(word)) {
				t.Errorf("clients answer has a %q field or value: %s", word, raw)
			}
		}
	})

	t.Run("revoke by token revokes that token only", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, app[0])); n != 1 {
			t.Errorf("revoked = %d, want 1", n)
		}
		expect(t, g.do(opsDevice(app[0])), 401, 23021, "access token revoked")
		expect(t, g.do(opsDevice(app[1])), 200, 0, "Device info")
		opsCheckClients(t, c, map[string]int{appID: 2, readerID: 2, rotID: 1})
	})
	t.Run("revoking a revoked token again revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, app[0])); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})
	t.Run("revoke of an unknown token revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, opsRandomToken(g))); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})
	t.Run("revoke of an unknown client revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, `{"client_id":"nobody"}`); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})

	bad := []struct {
		name   string
		method string
		path   string
		body   string
		status int
	}{
		{name: "empty body is 400", method: "POST", path: "/outergate/revoke", body: "", status: 400},
		{name: "not JSON is 400", method: "POST", path: "/outergate/revoke", body: "token=abc", status: 400},
		{name: "empty object is 400", method: "POST", path: "/outergate/revoke", body: `{}`, status: 400},
		{name: "empty token is 400", method: "POST", path: "/outergate/revoke", body: `{"token":""}`, status: 400},
		{name: "both token and client_id is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`{"token":%q,"client_id":%q}`, app[1], appID), status: 400},
		{name: "unknown field is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`{"tokens":%q}`, app[1]), status: 400},
		{name: "token not a string is 400", method: "POST", path: "/outergate/revoke", body: `{"token":5}`, status: 400},
		{name: "array body is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`[{"client_id":%q}]`, appID), status: 400},
		{name: "trailing data after the object is 400", method: "POST", path: "/outergate/revoke", body: `{"client_id":"nobody"} {"client_id":"nobody-else"}`, status: 400},
		{name: "revoke by GET is 405", method: "GET", path: "/outergate/revoke", status: 405},
		{name: "clients by POST is 405", method: "POST", path: "/outergate/clients", body: `{}`, status: 405},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			status, raw := opsAdmin(t, c, tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Errorf("%s %s %s: %d %s, want %d", tt.method, tt.path, tt.body, status, raw, tt.status)
			}
		})
	}
	t.Run("bad requests revoked nothing", func(t *testing.T) {
		opsCheckClients(t, c, map[string]int{appID: 2, readerID: 2, rotID: 1})
		expect(t, g.do(opsDevice(app[1])), 200, 0, "Device info")
	})

	t.Run("revoke by client_id revokes all its tokens, others unharmed", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"client_id":%q}`, appID)); n != 2 {
			t.Errorf("revoked = %d, want 2 (the client's live tokens)", n)
		}
		for _, tok := range app {
			expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
		}
		for _, tok := range append(slices.Clone(reader), rot) {
			expect(t, g.do(opsDevice(tok)), 200, 0, "Device info")
		}
		opsCheckClients(t, c, map[string]int{appID: 0, readerID: 2, rotID: 1})
		// A revocation is not a ban: the client can get a new token.
		expect(t, g.do(opsDevice(g.issue(appID, appSecret))), 200, 0, "Device info")
		opsCheckClients(t, c, map[string]int{appID: 1, readerID: 2, rotID: 1})
	})
	t.Run("clients follows a reload: removed clients leave, new ones appear", func(t *testing.T) {
		rotLine := fmt.Sprintf("\t\tclient %s %s %s\n", rotID, sha256Hash(rotOld), sha256Hash(rotNew))
		body := g.caddyfile()
		if !strings.Contains(body, rotLine) {
			t.Fatalf("gateway Caddyfile has no line %q", rotLine)
		}
		body = strings.Replace(body, rotLine, "\t\tclient late-joiner "+sha256Hash("late-joiner-secret-0005")+"\n", 1)
		c.Reload(t, body)
		opsCheckClients(t, c, map[string]int{appID: 1, readerID: 2, "late-joiner": 0})
		expect(t, g.do(opsDevice(reader[0])), 200, 0, "Device info")
	})
}

// TestAdminAPIExpiredTokensAreNotLive checks, on each store, that expired
// tokens are neither counted as live nor as revoked by the admin API.
func TestAdminAPIExpiredTokensAreNotLive(t *testing.T) {
	stores := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{name: "memory store", store: func(*testing.T) string { return "" }},
		{name: "redis store", store: func(t *testing.T) string { return "\t\tstore redis " + harness.StartRedis(t).URL() }},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{TTL: "1s", Extra: st.store(t)})
			issued := time.Now()
			g.issue(appID, appSecret)
			g.issue(appID, appSecret)
			g.issue(readerID, readerSecret)
			opsCheckClients(t, g.caddy, map[string]int{appID: 2, readerID: 1, rotID: 0})
			time.Sleep(time.Until(issued.Add(1200 * time.Millisecond)))
			live := g.issue(appID, appSecret)
			opsCheckClients(t, g.caddy, map[string]int{appID: 1, readerID: 0, rotID: 0})
			if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, appID)); n != 1 {
				t.Errorf("client revocation revoked %d, want 1 (expired tokens are not live)", n)
			}
			if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 0 {
				t.Errorf("client revocation of expired tokens revoked %d, want 0", n)
			}
			expect(t, g.do(opsDevice(live)), 401, 23021, "access token revoked")
		})
	}
}

// TestOperationsClusterRevocation runs two instances on one real Redis and
// measures how soon a revocation made on A is refused on B, which has the
// token in its validation cache: by token through A's admin API, by RFC
// 7009 on A, and by client through A's admin API. The contract's bound is
// 2 s whatever the cache; the second configuration uses a cache far longer
// than that, so only the invalidation can meet it.
func TestOperationsClusterRevocation(t *testing.T) {
	configs := []struct {
		name  string
		store string // %s is the Redis URL
	}{
		{name: "default cache", store: "\t\tstore redis %s"},
		{name: "cache_ttl 30s", store: "\t\tstore redis %s {\n\t\t\tcache_ttl 30s\n\t\t}"},
	}
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			rd := harness.StartRedis(t)
			extra := fmt.Sprintf(cfg.store, rd.URL())
			a := startGateway(t, gatewayConfig{Extra: extra})
			b := startGateway(t, gatewayConfig{Extra: extra})
			// warm issues a token on A and has both instances accept it
			// (twice on B, so that B validates from its cache).
			warm := func(t *testing.T, id, secret string) string {
				t.Helper()
				tok := a.issue(id, secret)
				b.remember(tok)
				expect(t, a.do(opsDevice(tok)), 200, 0, "Device info")
				expect(t, b.do(opsDevice(tok)), 200, 0, "Device info")
				expect(t, b.do(opsDevice(tok)), 200, 0, "Device info")
				return tok
			}
			var latencies []string
			var leftover []string // live tokens of appID from earlier steps

			t.Run("admin token revocation on A is refused on B within 2 s", func(t *testing.T) {
				tok := warm(t, appID, appSecret)
				keep := warm(t, appID, appSecret)
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
					t.Errorf("revoked = %d, want 1", n)
				}
				answered := time.Since(start)
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("admin revocation answered in %s, refused on B after %s", answered.Round(time.Microsecond), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("admin token %s", took.Round(time.Millisecond)))
				expect(t, a.do(opsDevice(tok)), 401, 23021, "access token revoked")
				expect(t, b.do(opsDevice(keep)), 200, 0, "Device info")
				leftover = append(leftover, keep)
			})

			t.Run("RFC 7009 revocation on A is refused on B within 2 s", func(t *testing.T) {
				tok := warm(t, appID, appSecret)
				start := time.Now()
				if r := a.do(opsRevoke(tok, appID, appSecret)); r.status != 200 || string(r.body) != opsRevokedBody {
					t.Errorf("revoke on A: %d %s", r.status, r.body)
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("RFC 7009 revocation refused on B after %s", took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("RFC 7009 %s", took.Round(time.Millisecond)))
				expect(t, a.do(opsDevice(tok)), 401, 23021, "access token revoked")
				// The other instance's own introspection agrees at once.
				r := b.do(opsIntrospect(tok, appID, appSecret))
				if r.status != 200 || !bytes.Contains(r.body, []byte(`"data":{"active":false}`)) {
					t.Errorf("introspection on B of the revoked token: %d %s", r.status, r.body)
				}
			})

			t.Run("revocation published while B's subscription is down is refused on B within 2 s", func(t *testing.T) {
				// DESIGN.md trap: invalidations published while an instance
				// re-subscribes are lost, so its cache must not be trusted
				// meanwhile.
				tok := warm(t, appID, appSecret)
				killed, err := rd.Command("CLIENT", "KILL", "TYPE", "pubsub")
				if err != nil || !strings.HasPrefix(killed, ":") {
					t.Fatalf("redis CLIENT KILL TYPE pubsub: %q %v", killed, err)
				}
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
					t.Errorf("revoked = %d, want 1", n)
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("subscriptions killed (%s connections): revocation refused on B after %s", strings.TrimPrefix(killed, ":"), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("during re-subscription %s", took.Round(time.Millisecond)))

				// Once re-subscribed, B caches again and still hears
				// revocations.
				time.Sleep(time.Second)
				again := warm(t, appID, appSecret)
				start = time.Now()
				if r := a.do(opsRevoke(again, appID, appSecret)); r.status != 200 {
					t.Errorf("revoke on A: %d %s", r.status, r.body)
				}
				took = opsWaitRefused(t, b, start, opsRevocationBound, again)
				t.Logf("after re-subscription: revocation refused on B after %s", took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("after re-subscription %s", took.Round(time.Millisecond)))
			})

			t.Run("client revocation on A refuses all its tokens on B within 2 s", func(t *testing.T) {
				// Every token of this step is issued on A: B's counts can
				// only come from Redis.
				toks := append(slices.Clone(leftover), warm(t, appID, appSecret), warm(t, appID, appSecret), warm(t, appID, appSecret))
				other := warm(t, readerID, readerSecret)
				opsCheckClients(t, b.caddy, map[string]int{appID: len(toks), readerID: 1, rotID: 0})
				opsCheckClients(t, a.caddy, map[string]int{appID: len(toks), readerID: 1, rotID: 0})
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"client_id":%q}`, appID)); n != len(toks) {
					t.Errorf("revoked = %d, want %d (the client's live tokens)", n, len(toks))
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, toks...)
				t.Logf("client revocation: all %d tokens refused on B after %s", len(toks), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("client_id %s", took.Round(time.Millisecond)))
				for _, g := range []*gateway{a, b} {
					for _, tok := range toks {
						expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
					}
					expect(t, g.do(opsDevice(other)), 200, 0, "Device info")
				}
				opsCheckClients(t, b.caddy, map[string]int{appID: 0, readerID: 1, rotID: 0})
			})
			t.Logf("revocation latency on B (%s): %s", cfg.name, strings.Join(latencies, ", "))
		})
	}
}

// opsMetrics is one scrape of the Prometheus text at admin /metrics: the
// value of every series, keyed by its name and labels as printed.
type opsMetrics map[string]float64

// opsScrape reads admin /metrics of c.
func opsScrape(t *testing.T, c *harness.Caddy) (opsMetrics, string) {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodGet, "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("admin /metrics: %d %s", status, raw)
	}
	m := opsMetrics{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("admin /metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("admin /metrics: unparsable value in %q", line)
		}
		m[line[:i]] = v
	}
	return m, string(raw)
}

// get returns a series' value and whether it is present; a name without
// labels sums every labelled series of that name.
func (m opsMetrics) get(series string) (float64, bool) {
	if strings.Contains(series, "{") {
		v, ok := m[series]
		return v, ok
	}
	var sum float64
	found := false
	for k, v := range m {
		if k == series || strings.HasPrefix(k, series+"{") {
			sum += v
			found = true
		}
	}
	return sum, found
}

// TestMetricsCountTraffic checks the outergate_ collectors on admin
// /metrics (with Caddy's `metrics` global option on): each moves by exactly
// what the test's traffic caused.
func TestMetricsCountTraffic(t *testing.T) {
	g := startGateway(t, gatewayConfig{Global: "metrics"})
	before, _ := opsScrape(t, g.caddy)

	// The traffic; the deltas it must cause are in the table below.
	// Issued: 3 app tokens.
	tokA := g.issue(appID, appSecret)
	tokB := g.issue(appID, appSecret)
	tokC := g.issue(appID, appSecret)
	// invalid_client: 2.
	expect(t, g.do(tokenForm(cc(appID, "wrong-secret"))), 401, 23020, "")
	expect(t, g.do(tokenForm(cc("nobody", appSecret))), 401, 23020, "")
	// Validations ok: 4 (store loads: 4), one of them an upstream HTML 404
	// normalized to 23030.
	expect(t, g.do(opsDevice(tokA)), 200, 0, "Device info")
	expect(t, g.do(opsDevice(tokC)), 200, 0, "Device info")
	expect(t, g.do(opsDevice(tokC)), 200, 0, "Device info")
	expect(t, g.do(request{path: infoPath + legacy.DeviceUnknown, header: bearer(tokC)}), 404, 23030, "device id error")
	// Validations missing: 2 (no store load).
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	// Revocations: 1 by RFC 7009 (store load + revoke), 1 by admin token.
	if r := g.do(opsRevoke(tokA, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"token":%q}`, tokB)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	// Validations revoked: 2 (store loads: 2).
	expect(t, g.do(opsDevice(tokA)), 401, 23021, "access token revoked")
	expect(t, g.do(opsDevice(tokB)), 401, 23021, "access token revoked")
	// Issued: 2 reader tokens; revocations: 2 by admin client_id.
	g.issue(readerID, readerSecret)
	g.issue(readerID, readerSecret)
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 2 {
		t.Fatalf("admin revoked %d, want 2", n)
	}

	after, text := opsScrape(t, g.caddy)
	tests := []struct {
		name   string
		series string // without labels: the sum over every label set
		delta  float64
	}{
		{name: "issued tokens", series: `outergate_token_requests_total{outcome="issued"}`, delta: 5},
		{name: "failed client authentications", series: `outergate_token_requests_total{outcome="invalid_client"}`, delta: 2},
		{name: "accepted bearer tokens", series: `outergate_validations_total{outcome="ok"}`, delta: 4},
		{name: "missing bearer tokens", series: `outergate_validations_total{outcome="missing"}`, delta: 2},
		{name: "revoked bearer tokens", series: `outergate_validations_total{outcome="revoked"}`, delta: 2},
		{name: "upstream HTML 404 normalized to 23030", series: `outergate_upstream_errors_total{code="23030"}`, delta: 1},
		{name: "revocations: client, admin token and admin client", series: `outergate_revocations_total`, delta: 4},
		{name: "store loads timed", series: `outergate_store_operation_seconds_count{op="load"}`, delta: 7},
		{name: "store load buckets agree with the count", series: `outergate_store_operation_seconds_bucket{op="load",le="+Inf"}`, delta: 7},
		{name: "token revocations timed (RFC 7009 and admin)", series: `outergate_store_operation_seconds_count{op="revoke"}`, delta: 2},
		{name: "admin client revocation timed", series: `outergate_store_operation_seconds_count{op="revoke_client"}`, delta: 1},
		{name: "issuance timed", series: `outergate_store_operation_seconds_count{op="save"}`, delta: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := after.get(tt.series)
			if !ok {
				t.Fatalf("%s is not on admin /metrics", tt.series)
			}
			was, _ := before.get(tt.series)
			if v-was != tt.delta {
				t.Errorf("%s moved by %g (from %g to %g), want %g", tt.series, v-was, was, v, tt.delta)
			}
		})
	}
	t.Run("histogram has a sum and buckets", func(t *testing.T) {
		if sum, ok := after.get(`outergate_store_operation_seconds_sum{op="load"}`); !ok || sum <= 0 {
			t.Errorf("outergate_store_operation_seconds_sum{op=\"load\"} = %g (present %v), want > 0", sum, ok)
		}
		if !strings.Contains(text, "# TYPE outergate_store_operation_seconds histogram") {
			t.Errorf("outergate_store_operation_seconds is not declared a histogram")
		}
	})
	t.Run("no other validation outcome moved", func(t *testing.T) {
		v, _ := after.get("outergate_validations_total")
		was, _ := before.get("outergate_validations_total")
		if v-was != 8 {
			t.Errorf("outergate_validations_total moved by %g over all outcomes, want 8", v-was)
		}
	})
	t.Run("every series is named outergate_ or Caddy's own", func(t *testing.T) {
		if !strings.Contains(text, "caddy_http_") {
			t.Errorf("the metrics global option did not turn on Caddy's HTTP metrics")
		}
		for k := range after {
			name, _, _ := strings.Cut(k, "{")
			if strings.Contains(strings.ToLower(name), "outergate") && !strings.HasPrefix(name, "outergate_") {
				t.Errorf("metric %s names outergate without the outergate_ prefix", name)
			}
		}
	})
	t.Run("counters carry on across a config reload", func(t *testing.T) {
		series := `outergate_token_requests_total{outcome="issued"}`
		was, _ := after.get(series)
		g.reload(gatewayConfig{Global: "metrics", Extra: "\t\tthrottle 20 1m"})
		reloaded, _ := opsScrape(t, g.caddy)
		if v, ok := reloaded.get(series); !ok || v != was {
			t.Errorf("after a reload %s = %g (present %v), want %g", series, v, ok, was)
		}
		g.issue(appID, appSecret)
		more, _ := opsScrape(t, g.caddy)
		if v, _ := more.get(series); v != was+1 {
			t.Errorf("after a reload and one more issue %s = %g, want %g", series, v, was+1)
		}
	})
	t.Run("issuance and admin revocation store operations are timed", func(t *testing.T) {
		// Issuing 5 tokens writes the store 5 times and the two admin
		// revocations write it at least once each; the histogram's help
		// says it times token store operations.
		var ops []string
		total := 0.0
		for k, v := range after {
			if strings.HasPrefix(k, "outergate_store_operation_seconds_count") {
				d := v - before[k]
				total += d
				ops = append(ops, fmt.Sprintf("%s +%g", strings.TrimPrefix(k, "outergate_store_operation_seconds_count"), d))
			}
		}
		sort.Strings(ops)
		if want := 7.0 + 1 + 5 + 2; total < want {
			t.Errorf("the test caused at least %g store operations, the histogram counted %g (%s)", want, total, strings.Join(ops, ", "))
		}
	})
}

// opsLogEntry is one JSON line of Caddy's log.
type opsLogEntry map[string]any

func (e opsLogEntry) str(k string) string {
	s, _ := e[k].(string)
	return s
}

// opsLogEntries returns the JSON log lines of c whose message is msg.
func opsLogEntries(c *harness.Caddy, msg string) []opsLogEntry {
	var out []opsLogEntry
	for _, line := range strings.Split(c.Logs(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e opsLogEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.str("msg") == msg {
			out = append(out, e)
		}
	}
	return out
}

var opsFingerprint = regexp.MustCompile(`^[0-9a-f]{8}$`)

// TestAuditLog checks the audit entries of the gateway's log: issuance,
// revocation and refusals with their reason, each with the client id, the
// remote IP and, where a token is involved, an 8-hex-digit fingerprint
// that ties the entries of one token together. The gateway's cleanup
// checks that no secret or token (whole or in part) was logged.
func TestAuditLog(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	readerTok := g.issue(readerID, readerSecret)
	unknown := opsRandomToken(g)
	expect(t, g.do(tokenForm(cc(appID, "wrong-secret"))), 401, 23020, "")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	expect(t, g.do(opsDevice(unknown)), 401, 23021, "")
	if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	rotTok := g.issue(rotID, rotNew)
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"token":%q}`, rotTok)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	time.Sleep(200 * time.Millisecond) // let the log lines land

	issued := func(client string) string {
		for _, e := range opsLogEntries(g.caddy, "token issued") {
			if e.str("client_id") == client {
				return e.str("token_fp")
			}
		}
		return ""
	}
	fp := issued(appID)
	tests := []struct {
		name   string
		msg    string
		fields map[string]string // "" as a value: present, non-empty
		fp     string            // the token_fp the entry must carry: "" none required, "*" any
	}{
		{name: "token issued", msg: "token issued", fields: map[string]string{"client_id": appID, "scope": "read write groups"}, fp: fp},
		{name: "token revoked by its client", msg: "token revoked", fields: map[string]string{"client_id": appID}, fp: fp},
		{name: "revoked token refused with its reason", msg: "bearer refused", fields: map[string]string{"client_id": appID, "reason": "access token revoked"}, fp: fp},
		{name: "unknown token refused with its reason", msg: "bearer refused", fields: map[string]string{"reason": "invalid access token"}, fp: "*"},
		{name: "missing token refused with its reason", msg: "bearer refused", fields: map[string]string{"reason": ""}},
		{name: "failed client authentication with its reason", msg: "client authentication failed", fields: map[string]string{"client_id": appID, "reason": ""}},
		{name: "admin client revocation", msg: "tokens revoked", fields: map[string]string{"client_id": readerID}},
		{name: "admin token revocation", msg: "tokens revoked", fields: map[string]string{"via": "admin"}, fp: issued(rotID)},
	}
	for _, id := range []string{appID, rotID} {
		if got := issued(id); !opsFingerprint.MatchString(got) {
			t.Fatalf("token issued entry for %s has token_fp %q, want 8 hex digits", id, got)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := opsLogEntries(g.caddy, tt.msg)
			var match opsLogEntry
			for _, e := range entries {
				ok := tt.fp == "" || e.str("token_fp") == tt.fp || (tt.fp == "*" && e.str("token_fp") != "")
				for k, v := range tt.fields {
					if got := e.str(k); got == "" || (v != "" && got != v) {
						ok = false
					}
				}
				if ok {
					match = e
					break
				}
			}
			if match == nil {
				t.Fatalf("no %q entry with %v token_fp %q among %d: %v", tt.msg, tt.fields, tt.fp, len(entries), entries)
			}
			ip := match.str("remote_ip")
			if net.ParseIP(ip) == nil {
				t.Errorf("remote_ip = %q, want an IP address", ip)
			}
			if fpv, has := match["token_fp"]; has {
				if s, _ := fpv.(string); !opsFingerprint.MatchString(s) {
					t.Errorf("token_fp = %v, want 8 hex digits", fpv)
				}
			}
			if tt.fp != "" && match.str("token_fp") == "" {
				t.Errorf("entry lacks token_fp")
			}
		})
	}
	t.Run("no token or secret is logged", func(t *testing.T) {
		logs := g.caddy.Logs()
		for _, s := range []string{tok, readerTok, unknown, appSecret, readerSecret} {
			if strings.Contains(logs, s) {
				t.Errorf("logs contain a whole token or secret (%q...)", s[:4])
			}
		}
		// The rest (12-character pieces) is the gateway's cleanup check.
	})
}

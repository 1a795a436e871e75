package integration

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestGoOAuth2Client drives the standard endpoints with
// golang.org/x/oauth2/clientcredentials, unmodified, in both auth styles.
func TestGoOAuth2Client(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	device := g.base + infoPath + legacy.DeviceOnline
	for _, style := range []struct {
		name  string
		style oauth2.AuthStyle
	}{{"AuthStyleInHeader", oauth2.AuthStyleInHeader}, {"AuthStyleInParams", oauth2.AuthStyleInParams}} {
		t.Run(style.name, func(t *testing.T) {
			cfg := clientcredentials.Config{ClientID: appID, ClientSecret: appSecret, TokenURL: g.base + "/oauth2/token",
				Scopes: []string{"read"}, AuthStyle: style.style}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, g.client) // answers checked against the OpenAPI document
			tok, err := cfg.Token(ctx)
			if err != nil {
				t.Fatalf("Token: %v", err)
			}
			g.remember(tok.AccessToken)
			if tok.TokenType != "Bearer" || tok.Expiry.Before(time.Now().Add(35990*time.Second)) {
				t.Errorf("token = %s, expiry %v", tok.TokenType, tok.Expiry)
			}
			if got := tok.Extra("scope"); got != "read" {
				t.Errorf("scope = %v, want read", got)
			}
			resp, err := cfg.Client(ctx).Get(device)
			if err != nil {
				t.Fatal(err)
			}
			var env envelope
			_ = json.NewDecoder(resp.Body).Decode(&env)
			resp.Body.Close()
			if resp.StatusCode != 200 || env.Meta.Code == nil || *env.Meta.Code != 0 {
				t.Errorf("device call through the library's client: %d %+v", resp.StatusCode, env.Meta)
			}

			bad := cfg
			bad.ClientSecret = "wrong"
			_, err = bad.Token(ctx)
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
				t.Fatalf("wrong secret: err = %v, want *oauth2.RetrieveError invalid_client 401", err)
			}
			if style.style == oauth2.AuthStyleInHeader && re.Response.Header.Get("WWW-Authenticate") != `Basic realm="outer"` {
				t.Errorf("WWW-Authenticate = %q", re.Response.Header.Get("WWW-Authenticate"))
			}

			narrow := cfg
			narrow.Scopes = []string{"admin"}
			_, err = narrow.Token(ctx)
			if !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
				t.Errorf("scope beyond the client's: err = %v, want invalid_scope", err)
			}
		})
	}
}

// TestStandardEndpoints checks the RFC replies byte for byte where they are
// fixed, and that tokens cross between the envelope and standard endpoints.
func TestStandardEndpoints(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: "\t\tthrottle 4 1m"})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	post := func(path string, v url.Values, hdr map[string]string) reply {
		h := map[string]string{}
		for k, val := range form {
			h[k] = val
		}
		for k, val := range hdr {
			h[k] = val
		}
		return g.do(request{method: "POST", path: path, header: h, body: v.Encode()})
	}
	errorCases := []struct {
		name   string
		r      reply
		status int
		body   string
	}{
		{"unsupported_grant_type", post("/oauth2/token", url.Values{"grant_type": {"password"}, "client_id": {appID}, "client_secret": {appSecret}}, nil),
			400, `{"error":"unsupported_grant_type","error_description":"unsupported grant_type: only client_credentials is supported"}`},
		{"invalid_request", post("/oauth2/token", url.Values{"client_id": {appID}, "client_secret": {appSecret}}, nil),
			400, `{"error":"invalid_request","error_description":"grant_type is required"}`},
		{"invalid_scope", post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {readerID},
			"client_secret": {readerSecret}, "scope": {"write"}}, nil), 400, `{"error":"invalid_scope","error_description":"invalid scope"}`},
		{"invalid_client in the body", post("/oauth2/token", cc(appID, "nope"), nil),
			401, `{"error":"invalid_client","error_description":"client authentication failed"}`},
		{"GET is 405", g.do(request{path: "/oauth2/token"}), 405, `{"error":"invalid_request","error_description":"method not allowed: use POST"}`},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.r.status != tc.status || string(tc.r.body) != tc.body {
				t.Errorf("got %d %s, want %d %s", tc.r.status, tc.r.body, tc.status, tc.body)
			}
			if tc.r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(tc.r.header.Get("Content-Type"), "application/json") {
				t.Errorf("headers %v", tc.r.header)
			}
		})
	}

	// A token from the standard endpoint works on the device routes and on
	// the envelope introspection; one from the envelope endpoint on the
	// standard revocation.
	r := post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, map[string]string{"Authorization": basicAuth(appID, appSecret)})
	var std struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Scope       string `json:"scope"`
	}
	if err := json.Unmarshal(r.body, &std); err != nil || r.status != 200 || std.TokenType != "Bearer" || std.ExpiresIn != 36000 {
		t.Fatalf("standard token: %d %s", r.status, r.body)
	}
	g.remember(std.AccessToken)
	if r.header.Get("Pragma") != "no-cache" {
		t.Errorf("Pragma = %q", r.header.Get("Pragma"))
	}
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(std.AccessToken)}), 200, 0, "Device info")
	intro := post("/outer/token/introspect/", url.Values{"token": {std.AccessToken}}, map[string]string{"Authorization": basicAuth(appID, appSecret)})
	expect(t, intro, 200, 0, "")
	if !strings.Contains(string(intro.env.Data), `"active":true`) {
		t.Errorf("envelope introspection of a standard token: %s", intro.body)
	}
	stdIntro := post("/oauth2/introspect", url.Values{"token": {std.AccessToken}}, map[string]string{"Authorization": basicAuth(appID, appSecret)})
	var ti map[string]any
	if err := json.Unmarshal(stdIntro.body, &ti); err != nil || ti["active"] != true || ti["client_id"] != appID || ti["token_type"] != "Bearer" {
		t.Errorf("standard introspection: %d %s", stdIntro.status, stdIntro.body)
	}
	other := post("/oauth2/introspect", url.Values{"token": {std.AccessToken}}, map[string]string{"Authorization": basicAuth(readerID, readerSecret)})
	if string(other.body) != `{"active":false}` {
		t.Errorf("another client's introspection = %s, want {\"active\":false}", other.body)
	}

	envTok := g.issue(appID, appSecret)
	rev := post("/oauth2/revoke", url.Values{"token": {envTok}, "client_id": {appID}, "client_secret": {appSecret}}, nil)
	if rev.status != 200 || len(rev.body) != 0 {
		t.Errorf("standard revocation = %d %q, want 200 and an empty body", rev.status, rev.body)
	}
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(envTok)}), 401, 23021, "access token revoked")

	// The throttle is shared: past it, temporarily_unavailable with Retry-After.
	for range 4 {
		post("/oauth2/token", cc(appID, "nope"), nil)
	}
	r = post("/oauth2/token", cc(appID, appSecret), nil)
	if r.status != 429 || !strings.Contains(string(r.body), `"error":"temporarily_unavailable"`) || r.header.Get("Retry-After") == "" {
		t.Errorf("throttled: %d %s %v", r.status, r.body, r.header)
	}
}

// TestMetadata checks RFC 8414 discovery, with the default issuer and with a
// configured one that has a path, and that `oauth2_token_path off` removes
// the standard endpoints.
func TestMetadata(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	r := g.do(request{path: "/.well-known/oauth-authorization-server", host: "gw.test:8443"})
	want := `{"issuer":"http://gw.test:8443","token_endpoint":"http://gw.test:8443/oauth2/token",` +
		`"revocation_endpoint":"http://gw.test:8443/oauth2/revoke","introspection_endpoint":"http://gw.test:8443/oauth2/introspect",` +
		`"grant_types_supported":["client_credentials"],"token_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post"],` +
		`"revocation_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post"],` +
		`"introspection_endpoint_auth_methods_supported":["client_secret_basic","client_secret_post"],` +
		`"scopes_supported":["groups","read","write"],"response_types_supported":["none"]}`
	if r.status != 200 || string(r.body) != want {
		t.Errorf("metadata = %d %s\nwant %s", r.status, r.body, want)
	}
	if ct := r.header.Get("Content-Type"); strings.Split(ct, ";")[0] != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}

	g.reload(gatewayConfig{Extra: "\t\tissuer https://gateway.example.com/tenant-a"})
	for _, p := range []string{"/.well-known/oauth-authorization-server/tenant-a", "/.well-known/oauth-authorization-server"} {
		r = g.do(request{path: p})
		var md map[string]any
		if err := json.Unmarshal(r.body, &md); err != nil || md["issuer"] != "https://gateway.example.com/tenant-a" ||
			md["token_endpoint"] != "https://gateway.example.com/oauth2/token" {
			t.Errorf("%s = %d %s", p, r.status, r.body)
		}
	}

	g.reload(gatewayConfig{Extra: "\t\toauth2_token_path off"})
	g.backend.Reset()
	r = g.do(tokenFormAt("/oauth2/token", cc(appID, appSecret)))
	if r.status == 200 || strings.Contains(string(r.body), "access_token") {
		t.Errorf("oauth2_token_path off still issues: %d %s", r.status, r.body)
	}
	if len(g.backend.Requests()) != 1 {
		t.Errorf("with the standard endpoints off, /oauth2/token should reach the next handler")
	}
	// The envelope endpoint is unaffected.
	expect(t, g.do(tokenForm(cc(appID, appSecret))), 200, 0, "token info")
}

func tokenFormAt(path string, v url.Values) request {
	r := tokenForm(v)
	r.path = path
	return r
}

// TestNodeOpenIDClient runs openid-client (from the npm registry) against
// the gateway: discovery, the client-credentials grant with Basic and with
// body credentials, a device call, and a wrong secret.
func TestNodeOpenIDClient(t *testing.T) {
	node, npm := requireNode(t)
	dir := npmClientDir(t, npm)

	g := startGateway(t, gatewayConfig{})
	run := func(secret, method string, discovery ...string) map[string]any {
		t.Helper()
		cmd := exec.Command(node, append([]string{"client.mjs", g.base, appID, secret, g.base + infoPath + legacy.DeviceOnline, method}, discovery...)...)
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node client.mjs: %v\n%s", err, out)
		}
		var res map[string]any
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("client output %q: %v", out, err)
		}
		return res
	}
	for _, method := range []string{"basic", "post"} {
		t.Run(method, func(t *testing.T) {
			res := run(appSecret, method)
			if res["token_type"] != "bearer" && res["token_type"] != "Bearer" || res["scope"] != "read" ||
				res["expires_in"] != float64(36000) || res["device_status"] != float64(200) || res["device_code"] != float64(0) {
				t.Errorf("openid-client (%s) = %v", method, res)
			}
			res = run("wrong-secret", method)
			if res["error"] != "invalid_client" || res["status"] != float64(401) {
				t.Errorf("openid-client (%s) with a wrong secret = %v, want error invalid_client, status 401", method, res)
			}
			if wantChallenge := map[string]string{"basic": "basic", "post": ""}[method]; res["challenge"] != wantChallenge {
				t.Errorf("openid-client (%s) saw challenge %q, want %q", method, res["challenge"], wantChallenge)
			}
		})
	}
	// OpenID Connect Discovery's path serves the same metadata, which
	// openid-client's "oidc" discovery reads.
	if res := run(appSecret, "basic", "oidc"); res["device_status"] != float64(200) || res["scope"] != "read" {
		t.Errorf("openid-client through /.well-known/openid-configuration = %v", res)
	}
	if !strings.Contains(g.caddy.Logs(), `"token issued"`) {
		t.Error("no issuance in the logs")
	}
}

// npmClientDir copies integration/oauth2client into a temporary directory
// and installs its pinned packages there with npm ci.
func npmClientDir(t *testing.T, npm string) string {
	t.Helper()
	root, _ := harness.ModuleRoot()
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "client.mjs", "simple.mjs"} {
		data, err := os.ReadFile(filepath.Join(root, "integration", "oauth2client", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := npmInstall(npm, dir, nil); err != nil {
		if errors.Is(err, errRegistryUnreachable) && os.Getenv("OUTERGATE_REQUIRE_NODE") != "1" {
			t.Skipf("npm registry unreachable, the npm clients not installed (OUTERGATE_REQUIRE_NODE=1 makes this a failure): %v", err)
		}
		t.Fatal(err)
	}
	return dir
}

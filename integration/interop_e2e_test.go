package integration

// Interop with OAuth2 client libraries this project did not write (issue
// 13), beside golang.org/x/oauth2 and openid-client in oauth2_e2e_test.go:
// Authlib and requests-oauthlib/oauthlib from Debian, simple-oauth2 from
// npm, and a resource server built on Authlib's RFC 7662 validator that
// holds only an `introspect any` client's credentials. README.md's
// "Tested OAuth2 clients" table lists what each exercises.

import (
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// Clients of the interop gateway beside the standard ones: one pinned to
// HTTP Basic, one to body credentials, and a resource server.
const (
	pinnedBasicID  = "pinned-basic"
	pinnedPostID   = "pinned-post"
	pinnedSecret   = "pinned-secret-0005"
	resourceID     = "resource-server"
	resourceSecret = "resource-secret-0006"
	interopClients = "\t\tclient " + pinnedBasicID + " %s {\n\t\t\tauth_method basic\n\t\t}\n" +
		"\t\tclient " + pinnedPostID + " %s {\n\t\t\tauth_method post\n\t\t}\n" +
		"\t\tclient " + resourceID + " %s {\n\t\t\tintrospect any\n\t\t\tauth_method basic\n\t\t}"
)

// startInteropGateway is a gateway with the pinned clients and the
// resource server configured.
func startInteropGateway(t *testing.T, ttl string) *gateway {
	t.Helper()
	extra := fmt.Sprintf(interopClients, sha256Hash(pinnedSecret), sha256Hash(pinnedSecret), sha256Hash(resourceSecret))
	return startGateway(t, gatewayConfig{TTL: ttl, Extra: extra})
}

// libraryCase is one run of a client library's script.
type libraryCase struct {
	name, client, secret, method, scope string
	extra                               []string // more script arguments
	wantScope                           string   // "" for a refusal
	wantError                           string   // the library's error code for a refusal
	wantChallenge                       bool     // a refusal carries the Basic challenge
}

// checkLibraryRun checks one script's JSON line against tc: a token, a
// device call answered 200 with code 0; or the library's error, status
// 401, with the Basic challenge when Basic was used.
func checkLibraryRun(t *testing.T, tc libraryCase, res map[string]any) {
	t.Helper()
	if tc.wantError != "" {
		if res["error"] != tc.wantError || res["status"] != float64(401) {
			t.Errorf("got %v, want the library's %s error with status 401", res, tc.wantError)
		}
		if challenge, _ := res["challenge"].(string); (challenge != "") != tc.wantChallenge {
			t.Errorf("challenge %q, want one: %v", challenge, tc.wantChallenge)
		}
		return
	}
	if res["error"] != nil {
		t.Fatalf("the library failed: %v", res)
	}
	if tt, _ := res["token_type"].(string); !strings.EqualFold(tt, "bearer") || res["scope"] != tc.wantScope ||
		res["expires_in"] != float64(36000) {
		t.Errorf("token %v, want a Bearer token with scope %q and expires_in 36000", res, tc.wantScope)
	}
	if res["device_status"] != float64(200) || res["device_code"] != float64(0) {
		t.Errorf("device call with the library's token: %v", res)
	}
}

// sentParams checks what a library put on the wire, as its script saw it:
// the parameter names, Basic or not, and the scope parameter (absent when
// scope is "-": the Python libraries leave an empty scope out).
func sentParams(t *testing.T, res map[string]any, basic bool, scope string) {
	t.Helper()
	sent, _ := res["sent"].(map[string]any)
	if sent == nil {
		t.Fatalf("no record of the request: %v", res)
	}
	var params []string
	for _, p := range sent["params"].([]any) {
		params = append(params, p.(string))
	}
	want := []string{"grant_type"}
	if !basic {
		want = append(want, "client_id", "client_secret")
	}
	if scope != "-" {
		want = append(want, "scope")
		if got := anyStrings(sent["scope"]); !slices.Equal(got, []string{scope}) {
			t.Errorf("sent scope %q, want %q", got, scope)
		}
	}
	slices.Sort(want)
	if !slices.Equal(params, want) || sent["basic"] != basic {
		t.Errorf("sent parameters %v with Basic %v, want %v with Basic %v", params, sent["basic"], want, basic)
	}
}

// TestPythonAuthlib drives the gateway with Authlib's OAuth2Session:
// discovery through /.well-known/openid-configuration checked by Authlib's
// RFC 8414 validator, the grant with Basic and with body credentials, an
// empty scope list, a device call, introspection and revocation through
// the library, a wrong secret and a pinned method refused as
// invalid_client.
func TestPythonAuthlib(t *testing.T) {
	py := requirePython(t, "authlib", "requests")
	g := startInteropGateway(t, "")
	device := g.base + infoPath + legacy.DeviceOnline
	for _, tc := range []libraryCase{
		{name: "Basic", client: appID, secret: appSecret, method: "basic", scope: "read", wantScope: "read"},
		{name: "body credentials", client: appID, secret: appSecret, method: "post", scope: "read write", wantScope: "read write"},
		{name: "empty scope list gets the client's scopes", client: readerID, secret: readerSecret, method: "post", scope: "-", wantScope: "read"},
		{name: "wrong secret with Basic", client: appID, secret: "wrong-secret", method: "basic", scope: "read", wantError: "invalid_client", wantChallenge: true},
		{name: "wrong secret in the body", client: appID, secret: "wrong-secret", method: "post", scope: "read", wantError: "invalid_client"},
		{name: "a client pinned to Basic sending body credentials", client: pinnedBasicID, secret: pinnedSecret, method: "post", scope: "read", wantError: "invalid_client"},
		{name: "a client pinned to Basic using it", client: pinnedBasicID, secret: pinnedSecret, method: "basic", scope: "-", wantScope: "read write groups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runScript(t, py, "pyclient", "authlib_client.py", g.base, tc.client, tc.secret, device, tc.method, tc.scope)
			checkLibraryRun(t, tc, res)
			if tc.wantError != "" {
				return
			}
			sentParams(t, res, tc.method == "basic", tc.scope)
			if intro, _ := res["introspection"].(map[string]any); intro["active"] != true || intro["client_id"] != tc.client || intro["scope"] != tc.wantScope {
				t.Errorf("introspection through the library: %v", res["introspection"])
			}
			if res["revoke_status"] != float64(200) || res["device_after_revoke"] != float64(401) {
				t.Errorf("revocation through the library: %v, then the device call %v", res["revoke_status"], res["device_after_revoke"])
			}
			if !slices.Equal(anyStrings(res["response_types"]), []string{"none"}) {
				t.Errorf("response_types_supported %v", res["response_types"])
			}
		})
	}
}

// TestPythonRequestsOAuthlib drives the gateway with requests-oauthlib's
// OAuth2Session and oauthlib's BackendApplicationClient.
func TestPythonRequestsOAuthlib(t *testing.T) {
	py := requirePython(t, "requests_oauthlib", "oauthlib")
	g := startInteropGateway(t, "")
	device := g.base + infoPath + legacy.DeviceOnline
	for _, tc := range []libraryCase{
		{name: "Basic", client: appID, secret: appSecret, method: "basic", scope: "read", wantScope: "read"},
		{name: "body credentials", client: appID, secret: appSecret, method: "post", scope: "read write", wantScope: "read write"},
		{name: "empty scope list gets the default", client: appID, secret: appSecret, method: "basic", scope: "-", wantScope: "read write groups"},
		{name: "bcrypt client, empty scope list", client: readerID, secret: readerSecret, method: "post", scope: "-", wantScope: "read"},
		{name: "wrong secret with Basic", client: appID, secret: "wrong-secret", method: "basic", scope: "read", wantError: "invalid_client", wantChallenge: true},
		{name: "wrong secret in the body", client: appID, secret: "wrong-secret", method: "post", scope: "read", wantError: "invalid_client"},
		{name: "a client pinned to body credentials sending Basic", client: pinnedPostID, secret: pinnedSecret, method: "basic", scope: "read",
			wantError: "invalid_client", wantChallenge: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runScript(t, py, "pyclient", "oauthlib_client.py", g.base, tc.client, tc.secret, device, tc.method, tc.scope)
			checkLibraryRun(t, tc, res)
			if tc.wantError != "" {
				if res["class"] != "InvalidClientError" {
					t.Errorf("oauthlib raised %v, want InvalidClientError", res["class"])
				}
				return
			}
			sentParams(t, res, tc.method == "basic", tc.scope)
		})
	}
}

// TestNodeSimpleOAuth2 drives the gateway with simple-oauth2 (npm), whose
// getToken({scope: []}) sends scope= (issue 13's first finding), in both
// authorization methods and with a JSON body.
func TestNodeSimpleOAuth2(t *testing.T) {
	node, npm := requireNode(t)
	dir := npmClientDir(t, npm)
	g := startInteropGateway(t, "")
	device := g.base + infoPath + legacy.DeviceOnline
	for _, tc := range []libraryCase{
		{name: "Basic (header)", client: appID, secret: appSecret, method: "header", scope: "read", wantScope: "read"},
		{name: "body credentials", client: appID, secret: appSecret, method: "body", scope: "read groups", wantScope: "read groups"},
		{name: "empty scope list is scope=, the default grant", client: appID, secret: appSecret, method: "body", scope: "-", wantScope: "read write groups"},
		{name: "empty scope list with Basic", client: readerID, secret: readerSecret, method: "header", scope: "-", wantScope: "read"},
		{name: "a JSON body", client: appID, secret: appSecret, method: "body", scope: "read", extra: []string{"json"}, wantScope: "read"},
		{name: "wrong secret with Basic", client: appID, secret: "wrong-secret", method: "header", scope: "read", wantError: "invalid_client", wantChallenge: true},
		{name: "wrong secret in the body", client: appID, secret: "wrong-secret", method: "body", scope: "read", wantError: "invalid_client"},
		{name: "a client pinned to Basic sending body credentials", client: pinnedBasicID, secret: pinnedSecret, method: "body", scope: "-", wantError: "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{g.base, tc.client, tc.secret, device, tc.method, tc.scope}, tc.extra...)
			res := runScript(t, node, dir, "simple.mjs", args...)
			checkLibraryRun(t, tc, res)
			if tc.wantError != "" {
				return
			}
			if res["expired"] != false {
				t.Errorf("simple-oauth2 reads its fresh token as expired: %v", res)
			}
			// An empty scope list goes on the wire as scope=.
			sentParams(t, res, tc.method == "header", strings.Replace(tc.scope, "-", "", 1))
		})
	}
}

// TestResourceServerIntrospection runs a resource server as a separate
// process holding only the `introspect any` client's credentials; it
// decides about other clients' tokens through /oauth2/introspect: active
// with their scope, refused past their scope, after revocation, after
// expiry, and when unknown.
func TestResourceServerIntrospection(t *testing.T) {
	py := requirePython(t, "authlib", "requests")
	const ttl = 4 * time.Second
	g := startInteropGateway(t, "4s")
	port := harness.FreePort(t)
	root, _ := harness.ModuleRoot()
	cmd := exec.Command(py, "resource_server.py", g.base, resourceID, resourceSecret, fmt.Sprint(port))
	cmd.Dir = root + "/integration/pyclient"
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rs := fmt.Sprintf("http://127.0.0.1:%d", port)
	harness.WaitHTTP(t, rs+"/healthz", 10*time.Second)

	ask := func(t *testing.T, scope, token string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, rs+"/resource/"+scope, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("resource server: %v (its output: %s)", err, out.String())
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = jsonDecode(resp.Body, &body)
		return resp.StatusCode, body
	}
	wantAccepted := func(t *testing.T, scope, token, client, tokenScope string, issued time.Time) {
		t.Helper()
		status, body := ask(t, scope, token)
		if status != 200 || body["sub"] != client || body["client_id"] != client || body["scope"] != tokenScope || body["iss"] != g.base {
			t.Fatalf("resource server on %s: %d %v, want 200 for %s with scope %q and iss %s", scope, status, body, client, tokenScope, g.base)
		}
		exp, _ := body["exp"].(float64)
		if d := time.Unix(int64(exp), 0).Sub(issued); d < ttl-time.Second || d > ttl+time.Second {
			t.Errorf("exp is %s after issuance, want about %s", d, ttl)
		}
		if body["nbf"] != body["iat"] {
			t.Errorf("nbf %v, iat %v", body["nbf"], body["iat"])
		}
	}
	wantRefused := func(t *testing.T, scope, token string, status int, code string) {
		t.Helper()
		if got, body := ask(t, scope, token); got != status || body["error"] != code {
			t.Errorf("resource server on %s: %d %v, want %d %s", scope, got, body, status, code)
		}
	}

	t.Run("other clients' live tokens are active, with their scope", func(t *testing.T) {
		issued := time.Now()
		appTok := g.issue(appID, appSecret)
		wantAccepted(t, "write", appTok, appID, "read write groups", issued)
		readerTok := g.issue(readerID, readerSecret)
		wantAccepted(t, "read", readerTok, readerID, "read", issued)
		wantRefused(t, "write", readerTok, 403, "insufficient_scope")
		narrow, _ := g.issueScoped(rotID, rotOld, "groups")
		wantAccepted(t, "groups", narrow, rotID, "groups", issued)
		wantRefused(t, "read", narrow, 403, "insufficient_scope")
	})
	t.Run("a revoked token is refused", func(t *testing.T) {
		issued := time.Now()
		tok := g.issue(appID, appSecret)
		wantAccepted(t, "read", tok, appID, "read write groups", issued)
		if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		wantRefused(t, "read", tok, 401, "invalid_token")
	})
	t.Run("unknown and missing tokens are refused", func(t *testing.T) {
		wantRefused(t, "read", opsRandomToken(g), 401, "invalid_token")
		wantRefused(t, "read", "", 401, "missing_authorization")
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		issued := time.Now()
		tok := g.issue(readerID, readerSecret)
		wantAccepted(t, "read", tok, readerID, "read", issued)
		time.Sleep(time.Until(issued.Add(ttl + 300*time.Millisecond)))
		wantRefused(t, "read", tok, 401, "invalid_token")
	})
	t.Run("an ordinary client's credentials see only its own tokens", func(t *testing.T) {
		other := g.issue(readerID, readerSecret)
		r := g.do(request{method: "POST", path: "/oauth2/introspect", header: map[string]string{
			"Content-Type": "application/x-www-form-urlencoded", "Authorization": basicAuth(appID, appSecret)}, body: "token=" + other})
		if string(r.body) != `{"active":false}` {
			t.Errorf("introspection of another's token by an ordinary client = %s", r.body)
		}
	})
	if strings.Contains(out.String(), "Traceback") {
		t.Errorf("the resource server failed: %s", out.String())
	}
}

package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

func cc(id, secret string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
}

// TestTokenEndpoint checks every rule of docs/API.md "Token endpoints" through
// the built binary.
func TestTokenEndpoint(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	withAuth := func(h map[string]string, auth string) map[string]string {
		out := map[string]string{"Authorization": auth}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	big := strings.Repeat("a", 70<<10)

	tests := []struct {
		name      string
		req       request
		status    int
		code      int
		message   string
		challenge string // WWW-Authenticate, "" for none
		allow     string
		scope     string // granted scope on success
	}{
		{name: "form body issues a token", req: tokenForm(cc(appID, appSecret)), status: 200, scope: "read write groups"},
		{name: "JSON body issues a token", req: request{method: "POST", path: "/outer/token/", header: jsonCT,
			body: `{"grant_type":"client_credentials","client_id":"device-app","client_secret":"s3cret-device-app-0001"}`}, status: 200, scope: "read write groups"},
		{name: "HTTP Basic issues a token", req: request{method: "POST", path: "/outer/token/",
			header: withAuth(form, basicAuth(appID, appSecret)), body: "grant_type=client_credentials"}, status: 200, scope: "read write groups"},
		{name: "bcrypt client with its own scope", req: tokenForm(cc(readerID, readerSecret)), status: 200, scope: "read"},
		{name: "rotated secrets: old one works", req: tokenForm(cc(rotID, rotOld)), status: 200, scope: "read write groups"},
		{name: "rotated secrets: new one works", req: tokenForm(cc(rotID, rotNew)), status: 200, scope: "read write groups"},
		{name: "narrower scope is granted", req: tokenForm(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID},
			"client_secret": {appSecret}, "scope": {"read"}}), status: 200, scope: "read"},
		{name: "unknown extra parameters are ignored (RFC 6749 §3.2)", req: tokenForm(url.Values{"grant_type": {"client_credentials"},
			"client_id": {appID}, "client_secret": {appSecret}, "audience": {"x"}}), status: 200, scope: "read write groups"},
		{name: "path without trailing slash", req: request{method: "POST", path: "/outer/token", header: form,
			body: cc(appID, appSecret).Encode()}, status: 200, scope: "read write groups"},
		{name: "path in another case", req: request{method: "POST", path: "/OUTER/Token/", header: form,
			body: cc(appID, appSecret).Encode()}, status: 200, scope: "read write groups"},

		{name: "GET is 405 with Allow", req: request{path: "/outer/token/"}, status: 405, code: 23010, allow: "POST"},
		{name: "wrong secret", req: tokenForm(cc(appID, "nope")), status: 401, code: 23020, message: "client authentication failed"},
		{name: "unknown client gets the same reply", req: tokenForm(cc("ghost", appSecret)), status: 401, code: 23020, message: "client authentication failed"},
		{name: "wrong secret with Basic carries the Basic challenge", req: request{method: "POST", path: "/outer/token/",
			header: withAuth(form, basicAuth(appID, "nope")), body: "grant_type=client_credentials"},
			status: 401, code: 23020, challenge: `Basic realm="outer"`},
		{name: "Basic plus body secret (RFC 6749 §2.3)", req: request{method: "POST", path: "/outer/token/",
			header: withAuth(form, basicAuth(appID, appSecret)), body: "grant_type=client_credentials&client_secret=" + appSecret},
			status: 400, code: 23010},
		{name: "credentials in the query string", req: request{method: "POST", path: "/outer/token/?client_secret=" + appSecret,
			header: form, body: cc(appID, appSecret).Encode()}, status: 400, code: 23010},
		{name: "duplicate grant_type", req: request{method: "POST", path: "/outer/token/", header: form,
			body: cc(appID, appSecret).Encode() + "&grant_type=client_credentials"}, status: 400, code: 23010},
		{name: "duplicate key in JSON", req: request{method: "POST", path: "/outer/token/", header: jsonCT,
			body: `{"grant_type":"client_credentials","client_id":"device-app","client_id":"device-app","client_secret":"s3cret-device-app-0001"}`},
			status: 400, code: 23010},
		{name: "missing grant_type", req: tokenForm(url.Values{"client_id": {appID}, "client_secret": {appSecret}}), status: 400, code: 23010},
		{name: "unknown grant_type", req: tokenForm(url.Values{"grant_type": {"password"}, "client_id": {appID}, "client_secret": {appSecret}}),
			status: 400, code: 23010},
		{name: "missing client_secret is a failed authentication (RFC 6749 §5.2)", req: tokenForm(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}}),
			status: 401, code: 23020, message: "client authentication failed"},
		{name: "empty scope is the default grant (RFC 6749 §3.3)", req: tokenForm(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID},
			"client_secret": {appSecret}, "scope": {""}}), status: 200, scope: "read write groups"},
		{name: "unsupported content type", req: request{method: "POST", path: "/outer/token/",
			header: map[string]string{"Content-Type": "text/plain"}, body: cc(appID, appSecret).Encode()}, status: 400, code: 23010},
		{name: "no content type", req: request{method: "POST", path: "/outer/token/", body: cc(appID, appSecret).Encode()}, status: 400, code: 23010},
		{name: "malformed JSON", req: request{method: "POST", path: "/outer/token/", header: jsonCT, body: `{"grant_type":`}, status: 400, code: 23010},
		{name: "scope beyond the client's", req: tokenForm(url.Values{"grant_type": {"client_credentials"}, "client_id": {readerID},
			"client_secret": {readerSecret}, "scope": {"write"}}), status: 400, code: 23010, message: "invalid scope"},
		{name: "body over 64 KiB", req: request{method: "POST", path: "/outer/token/", header: form,
			body: cc(appID, appSecret).Encode() + "&pad=" + big}, status: 413, code: 23010},
	}
	tokenShape := regexp.MustCompile(`^\{"meta":\{"message":"token info","code":0\},"data":\{"access_token":"([A-Za-z0-9_-]{43})","token_type":"Bearer","expires_in":36000,"scope":"([a-z ]+)"\}\}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := g.do(tt.req)
			if got := r.header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
			if tt.status == 200 {
				m := tokenShape.FindSubmatch(r.body)
				if r.status != 200 || m == nil {
					t.Fatalf("want the documented token envelope, got %d %s", r.status, r.body)
				}
				g.remember(string(m[1]))
				if string(m[2]) != tt.scope {
					t.Errorf("scope = %q, want %q", m[2], tt.scope)
				}
				if r.header.Get("Pragma") != "no-cache" || r.header.Get("Content-Type") != "application/json; charset=utf-8" {
					t.Errorf("headers = %v", r.header)
				}
				// The token works on a device route.
				dev := g.do(request{path: "/outer/device/info/?deviceid=e22cfa2e-9752-11e6-9baf-00163e120d98", header: bearer(string(m[1]))})
				expect(t, dev, 200, 0, "Device info")
				return
			}
			expect(t, r, tt.status, tt.code, tt.message)
			if got := r.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if tt.allow != "" && r.header.Get("Allow") != tt.allow {
				t.Errorf("Allow = %q, want %q", r.header.Get("Allow"), tt.allow)
			}
		})
	}
	if n := len(g.backend.Requests()); n == 0 {
		t.Errorf("the device calls of successful cases never reached the backend")
	}
	for _, seen := range g.backend.Requests() {
		if strings.Contains(seen.Path, "token") {
			t.Errorf("a token request reached the upstream: %s", seen.Path)
		}
	}
}

// TestTokenEndpointJSONFieldTypes checks that expires_in is a number and the
// reply decodes as the document shows.
func TestTokenEndpointJSONFieldTypes(t *testing.T) {
	g := startGateway(t, gatewayConfig{TTL: "90m"})
	r := g.do(tokenForm(cc(appID, appSecret)))
	expect(t, r, 200, 0, "token info")
	var data map[string]any
	if err := json.Unmarshal(r.env.Data, &data); err != nil {
		t.Fatal(err)
	}
	g.remember(data["access_token"].(string))
	if data["expires_in"] != float64(5400) || data["token_type"] != "Bearer" {
		t.Errorf("data = %v, want expires_in 5400 and token_type Bearer", data)
	}
	if r.status != http.StatusOK {
		t.Errorf("status %d", r.status)
	}
}

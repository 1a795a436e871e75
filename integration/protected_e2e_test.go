package integration

import (
	"net/http"
	"strings"
	"testing"

	"github.com/outergate/outergate/integration/legacy"
)

const infoPath = "/outer/device/info/?deviceid="

// TestProtectedPaths checks docs/API.md "Protected paths": token checks, their
// order, parameters, and that nothing refused reaches the upstream.
func TestProtectedPaths(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	readTok := g.issue(readerID, readerSecret)
	jsonCT := "application/json"

	invalid := `Bearer realm="outer", error="invalid_token"`
	tests := []struct {
		name      string
		req       request
		status    int
		code      int
		challenge string
		forwarded bool // the request must reach the upstream
	}{
		{name: "no Authorization", req: request{path: infoPath + legacy.DeviceOnline}, status: 401, code: 23021, challenge: `Bearer realm="outer"`},
		{name: "Basic instead of Bearer", req: request{path: infoPath + legacy.DeviceOnline,
			header: map[string]string{"Authorization": basicAuth(appID, appSecret)}}, status: 401, code: 23021, challenge: `Bearer realm="outer"`},
		{name: "unknown token", req: request{path: infoPath + legacy.DeviceOnline, header: bearer("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")},
			status: 401, code: 23021, challenge: invalid},
		{name: "Bearer with nothing after it", req: request{path: infoPath + legacy.DeviceOnline,
			header: map[string]string{"Authorization": "Bearer "}}, status: 401, code: 23021, challenge: invalid},
		{name: "junk after the token", req: request{path: infoPath + legacy.DeviceOnline,
			header: map[string]string{"Authorization": "Bearer " + tok + " junk"}}, status: 401, code: 23021, challenge: invalid},
		{name: "two Authorization headers", req: request{path: infoPath + legacy.DeviceOnline,
			multi: http.Header{"Authorization": {"Bearer " + tok, "Bearer " + tok}}}, status: 401, code: 23021, challenge: invalid},
		{name: "token in the query string", req: request{path: infoPath + legacy.DeviceOnline + "&access_token=" + tok},
			status: 401, code: 23021, challenge: invalid},
		{name: "token in query beside a good header", req: request{path: infoPath + legacy.DeviceOnline + "&access_token=" + tok,
			header: bearer(tok)}, status: 401, code: 23021, challenge: invalid},
		{name: "lower-case scheme is accepted", req: request{path: infoPath + legacy.DeviceOnline,
			header: map[string]string{"Authorization": "bearer " + tok}}, status: 200, forwarded: true},
		{name: "token check before parameter check", req: request{path: "/outer/device/info/"}, status: 401, code: 23021,
			challenge: `Bearer realm="outer"`},
		{name: "read-only token cannot PUT (scope before params)", req: request{method: "PUT", path: "/outer/device/unbind/",
			header: bearer(readTok)}, status: 403, code: 23022, challenge: `Bearer realm="outer", error="insufficient_scope", scope="write"`},
		{name: "read-only token can GET", req: request{path: infoPath + legacy.DeviceOnline, header: bearer(readTok)}, status: 200, forwarded: true},
		{name: "missing deviceid", req: request{path: "/outer/device/info/", header: bearer(tok)}, status: 400, code: 23010},
		{name: "empty deviceid", req: request{path: infoPath, header: bearer(tok)}, status: 400, code: 23010},
		{name: "repeated deviceid", req: request{path: infoPath + legacy.DeviceOnline + "&deviceid=" + legacy.DeviceOffline,
			header: bearer(tok)}, status: 400, code: 23010},
		{name: "deviceid in query and JSON body", req: request{method: "PUT", path: "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline,
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": jsonCT}, body: `{"deviceid":"` + legacy.DeviceOnline + `"}`},
			status: 400, code: 23010},
		{name: "deviceid not a string in JSON", req: request{method: "PUT", path: "/outer/device/unbind/",
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": jsonCT}, body: `{"deviceid":42}`}, status: 400, code: 23010},
		{name: "malformed JSON body", req: request{method: "PUT", path: "/outer/device/unbind/",
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": jsonCT}, body: `{"deviceid":`}, status: 400, code: 23010},
		{name: "body over 64 KiB", req: request{method: "PUT", path: "/outer/device/unbind/",
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": jsonCT},
			body:   `{"deviceid":"` + legacy.DeviceOnline + `","pad":"` + strings.Repeat("x", 70<<10) + `"}`}, status: 413, code: 23010},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.backend.Reset()
			r := g.do(tt.req)
			if tt.status == 200 {
				expect(t, r, 200, 0, "")
			} else {
				expect(t, r, tt.status, tt.code, "")
			}
			if got := r.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.challenge)
			}
			if n := len(g.backend.Requests()); (n > 0) != tt.forwarded {
				t.Errorf("upstream saw %d requests, want forwarded=%v", n, tt.forwarded)
			}
		})
	}
}

// TestPathSpellingsNeverBypass sends requests without a token under every
// spelling that Caddy's reverse_proxy (or a lenient backend) routes to a
// device route; none may reach the upstream.
func TestPathSpellingsNeverBypass(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	paths := []string{
		"/OUTER/DEVICE/info/", "/Outer/Device/Info/", "//outer/device/info/", "/outer//device/info/",
		"/outer/./device/info/", "/outer/x/../device/info/", "/outer/device/./info/", "/outer/%64evice/info/",
		"/outer/device%2Finfo/", "/outer/device;jsessionid=1/info/", "/outer;x/device/info/", "/outer/device",
		"/outer/device/", "/outer/device/info/..;/info/", "/outer\\device\\info\\",
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			g.backend.Reset()
			r := g.do(request{path: p + "?deviceid=" + legacy.DeviceOnline})
			expect(t, r, 401, 23021, "")
			if n := len(g.backend.Requests()); n != 0 {
				t.Errorf("upstream saw %d requests for %s", n, p)
			}
		})
	}
}

// TestUpstreamSeesIdentityNotCredentials checks what reaches the backend:
// never Authorization, always the verified identity, whatever the client
// sent; and the body restored byte for byte.
func TestUpstreamSeesIdentityNotCredentials(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	body := `{"deviceid": "` + legacy.DeviceOffline + `",  "note":"é"}`
	tests := []struct {
		name string
		req  request
	}{
		{"plain GET", request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)}},
		{"spoofed identity header", request{path: infoPath + legacy.DeviceOnline,
			multi: http.Header{"Authorization": {"Bearer " + tok}, "X-Outer-Client-Id": {"admin", "root"}}}},
		{"spoofed with underscores and case", request{path: infoPath + legacy.DeviceOnline,
			multi: http.Header{"Authorization": {"Bearer " + tok}, "X_outer_client_id": {"admin"}, "x-OUTER-client-ID": {"root"}}}},
		{"identity named in Connection", request{path: infoPath + legacy.DeviceOnline,
			header: map[string]string{"Authorization": "Bearer " + tok, "Connection": "X-Outer-Client-Id, keep-alive"}}},
		{"PUT with a JSON body", request{method: "PUT", path: "/outer/device/unbind/",
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json"}, body: body}},
		{"PUT with a form body", request{method: "PUT", path: "/outer/device/unbind/",
			header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/x-www-form-urlencoded"},
			body:   "deviceid=" + legacy.DeviceOnline + "&x=%20"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.backend.Reset()
			r := g.do(tt.req)
			expect(t, r, 200, 0, "")
			seen := g.backend.Requests()
			if len(seen) != 1 {
				t.Fatalf("upstream saw %d requests, want 1", len(seen))
			}
			h := seen[0].Header
			if v, ok := h["Authorization"]; ok {
				t.Errorf("upstream saw Authorization %q", v)
			}
			for name, v := range h {
				if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), "X-Outer-Client-Id") && (name != "X-Outer-Client-Id" || len(v) != 1 || v[0] != appID) {
					t.Errorf("upstream saw %s: %q, want only X-Outer-Client-Id: %s", name, v, appID)
				}
			}
			if h.Get("X-Outer-Client-Id") != appID {
				t.Errorf("upstream identity = %q, want %q", h.Get("X-Outer-Client-Id"), appID)
			}
			if string(seen[0].Body) != tt.req.body {
				t.Errorf("upstream body = %q, want %q", seen[0].Body, tt.req.body)
			}
		})
	}
	// Unprotected paths are passed on untouched, but never with a spoofed identity.
	g.backend.Reset()
	g.do(request{path: "/healthz", header: map[string]string{"X-Outer-Client-Id": "admin"}})
	seen := g.backend.Requests()
	if len(seen) != 1 || seen[0].Header.Get("X-Outer-Client-Id") != "" {
		t.Errorf("unprotected request: upstream saw %d requests with identity %q", len(seen), seen[0].Header.Get("X-Outer-Client-Id"))
	}
}

// TestUpstreamErrorsNormalized checks that every kind of legacy error
// reaches the client as an envelope, and enveloped errors pass untouched.
func TestUpstreamErrorsNormalized(t *testing.T) {
	g := startGateway(t, gatewayConfig{Extra: "\t\terror_code 409 23030"})
	tok := g.issue(appID, appSecret)
	tests := []struct {
		name    string
		req     request
		status  int
		code    int
		message string
		exact   string // exact body, when it must pass through
	}{
		{name: "device info", req: request{path: infoPath + legacy.DeviceOnline}, status: 200, code: 0, message: "Device info"},
		{name: "end users", req: request{path: "/outer/device/endusers/?deviceid=" + legacy.DeviceOnline}, status: 200, code: 0, message: "get users success"},
		{name: "enveloped business error passes through", req: request{path: infoPath + legacy.DeviceDisabled}, status: 403, code: 23031,
			exact: `{"meta":{"message":"device disabled","code":23031},"data":null}`},
		{name: "HTML 404 becomes 23030", req: request{path: infoPath + legacy.DeviceUnknown}, status: 404, code: 23030, message: "device id error"},
		{name: "plain-text 400 becomes 23010", req: request{path: infoPath + "not-a-uuid"}, status: 400, code: 23010, message: "parameter error"},
		{name: "HTML 500 with a stack trace becomes 23090", req: request{path: infoPath + legacy.DeviceFault}, status: 500, code: 23090, message: "internal error"},
		{name: "HTML 405 keeps its status", req: request{method: "POST", path: infoPath + legacy.DeviceOnline}, status: 405, code: 23010},
		{name: "unknown route under the prefix", req: request{path: "/outer/device/nope/?deviceid=" + legacy.DeviceOnline}, status: 404, code: 23030},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.header = bearer(tok)
			r := g.do(tt.req)
			if tt.exact != "" {
				// Passed through: the upstream's status, headers and bytes.
				if r.status != tt.status || string(r.body) != tt.exact {
					t.Errorf("got %d %s, want exactly %d %s", r.status, r.body, tt.status, tt.exact)
				}
			} else {
				expect(t, r, tt.status, tt.code, tt.message)
			}
			for _, leak := range []string{"<html", "NullPointerException", legacy.FaultHost, "DeviceService"} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("body leaks %q: %s", leak, r.body)
				}
			}
		})
	}
	// Non-envelope JSON: the upstream's own message is kept; error_code overrides the code.
	put := request{method: "PUT", path: "/outer/device/unbind/?deviceid=" + legacy.DeviceOffline, header: bearer(tok)}
	expect(t, g.do(put), 200, 0, "unbind success")
	expect(t, g.do(put), 404, 23030, "device has no bound users")
}

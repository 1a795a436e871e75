package outergate

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const (
	deviceInfo       = "/outer/device/info/?deviceid=d1"
	bearerNoError    = `Bearer realm="outer"`
	bearerBadToken   = `Bearer realm="outer", error="invalid_token"`
	bearerNeedsWrite = `Bearer realm="outer", error="insufficient_scope", scope="write"`
	bearerNeedsRead  = `Bearer realm="outer", error="insufficient_scope", scope="read"`
)

// groupsRule makes /outer/device/groups/* need the groups scope.
func groupsRule(h *Handler) {
	h.ScopeRules = []ScopeRule{{Paths: []string{"/outer/device/groups/*"}, Scope: "groups"}}
}

// tokenKind names the credentials a protected-path row presents.
type tokenKind string

const (
	tokNone      tokenKind = "none"
	tokApp       tokenKind = "app"       // issued, read write groups
	tokReader    tokenKind = "reader"    // issued, read
	tokWriteOnly tokenKind = "writeonly" // stored, write
	tokGroups    tokenKind = "groups"    // stored, groups
	tokExpired   tokenKind = "expired"   // stored, expired but not purged
	tokGhost     tokenKind = "ghost"     // stored, client no longer configured
	tokUnknown   tokenKind = "unknown"   // well-formed, never issued
)

// tokenFor returns a token of the given kind, valid for h.
func tokenFor(t *testing.T, h *Handler, kind tokenKind) string {
	t.Helper()
	now := time.Now()
	stored := func(rec TokenRecord) string {
		tok, err := randomSecret()
		if err != nil {
			t.Fatal(err)
		}
		saveRecord(t, h, tok, rec)
		return tok
	}
	switch kind {
	case tokNone:
		return ""
	case tokApp:
		return issueToken(t, h, testClientID, testClientSecret, "")
	case tokReader:
		return issueToken(t, h, readerClientID, readerSecret, "")
	case tokWriteOnly:
		return stored(TokenRecord{ClientID: testClientID, Scope: "write", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(time.Hour).UnixMilli()})
	case tokGroups:
		return stored(TokenRecord{ClientID: testClientID, Scope: "groups", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(time.Hour).UnixMilli()})
	case tokExpired:
		return stored(TokenRecord{ClientID: testClientID, Scope: "read write groups",
			IssuedAt: now.Add(-2 * time.Hour).UnixMilli(), ExpiresAt: now.Add(-time.Hour).UnixMilli()})
	case tokGhost:
		return stored(TokenRecord{ClientID: "removed-client", Scope: "read write groups", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(time.Hour).UnixMilli()})
	case tokUnknown:
		tok, _ := randomSecret()
		return tok
	}
	t.Fatalf("unknown token kind %q", kind)
	return ""
}

func TestProtectedRequests(t *testing.T) {
	const (
		formBody = "deviceid=d1&name=%E5%8F%B0+1&x=y"
		jsonBody = "{\"deviceid\" : \"d1\",\n  \"n\": [1, 2.50, {\"a\":null}], \"u\":\"\\u00e9\"}  "
	)
	for _, tc := range []struct {
		name        string
		configure   func(h *Handler)
		method      string
		target      string
		contentType string
		body        string
		token       tokenKind
		extraAuth   string // a second Authorization header
		header      http.Header

		wantNext      bool
		wantClient    string // identity forwarded
		wantScope     string // placeholder http.auth.user.scope
		wantStatus    int
		wantCode      int
		wantChallenge string
		wantHeader    http.Header
	}{
		{name: "GET with a read token and deviceid in the query", method: "GET", target: deviceInfo, token: tokReader,
			wantNext: true, wantClient: readerClientID, wantScope: "read"},
		{name: "HEAD needs read", method: "HEAD", target: deviceInfo, token: tokReader, wantNext: true, wantClient: readerClientID, wantScope: "read"},
		{name: "OPTIONS needs read", method: "OPTIONS", target: deviceInfo, token: tokReader, wantNext: true, wantClient: readerClientID, wantScope: "read"},
		{name: "PUT with a write token and deviceid in a form body restored byte for byte", method: "PUT",
			target: "/outer/device/unbind/", contentType: formType, body: formBody, token: tokApp,
			wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "PUT with deviceid in a json body restored byte for byte", method: "PUT",
			target: "/outer/device/unbind/", contentType: "application/json; charset=utf-8", body: jsonBody, token: tokApp,
			wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "POST with deviceid in the query and an opaque_body body", configure: func(h *Handler) { h.OpaqueBody = []string{"text/plain"} },
			method: "POST", target: "/outer/device/unbind/?deviceid=d1", contentType: "text/plain", body: "deviceid=d2&deviceid=d3", token: tokApp,
			wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "opaque_body * admits a body without Content-Type", configure: func(h *Handler) { h.OpaqueBody = []string{"*"} },
			method: "POST", target: "/outer/device/unbind/?deviceid=d1", body: "\x00binary", token: tokApp,
			wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "write-only token may PUT", method: "PUT", target: "/outer/device/unbind/?deviceid=d1", token: tokWriteOnly,
			wantNext: true, wantClient: testClientID, wantScope: "write"},
		{name: "require_param off needs no deviceid", configure: func(h *Handler) { h.RequireParamsOff = true },
			method: "GET", target: "/outer/device/info/", token: tokApp, wantNext: true, wantClient: testClientID, wantScope: "read write groups"},

		{name: "missing token", method: "GET", target: deviceInfo, token: tokNone,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerNoError},
		{name: "unknown token", method: "GET", target: deviceInfo, token: tokUnknown,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerBadToken},
		{name: "expired token not yet purged", method: "GET", target: deviceInfo, token: tokExpired,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerBadToken},
		{name: "token of a client no longer in the config", method: "GET", target: deviceInfo, token: tokGhost,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerBadToken},
		{name: "token in the query is refused even with a good header", method: "GET",
			target: deviceInfo + "&access_token=abc", token: tokApp,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerBadToken},
		{name: "two authorization headers", method: "GET", target: deviceInfo, token: tokApp, extraAuth: "Bearer abc",
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerBadToken},
		{name: "PUT with a read-only token is 403 insufficient_scope write", method: "PUT",
			target: "/outer/device/unbind/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope, wantChallenge: bearerNeedsWrite},
		{name: "DELETE with a read-only token is 403", method: "DELETE", target: deviceInfo, token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope, wantChallenge: bearerNeedsWrite},
		{name: "GET with a write-only token is 403 insufficient_scope read", method: "GET", target: deviceInfo, token: tokWriteOnly,
			wantStatus: 403, wantCode: CodeInsufficientScope, wantChallenge: bearerNeedsRead},
		{name: "token is checked before parameters", method: "GET", target: "/outer/device/info/", token: tokNone,
			wantStatus: 401, wantCode: CodeInvalidToken, wantChallenge: bearerNoError},
		{name: "scope is checked before parameters", method: "PUT", target: "/outer/device/unbind/", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope, wantChallenge: bearerNeedsWrite},

		{name: "missing deviceid", method: "GET", target: "/outer/device/info/", token: tokApp,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty deviceid in the query", method: "GET", target: "/outer/device/info/?deviceid=", token: tokApp,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "repeated deviceid in the query", method: "GET", target: "/outer/device/info/?deviceid=a&deviceid=b", token: tokApp,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "deviceid in both the query and the body", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: formType, body: "deviceid=d1", token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "repeated deviceid in a form body", method: "PUT", target: "/outer/device/unbind/",
			contentType: formType, body: "deviceid=d1&deviceid=d2", token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty deviceid in a form body", method: "PUT", target: "/outer/device/unbind/",
			contentType: formType, body: "deviceid=", token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "repeated deviceid in a json body", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":"d1","deviceid":"d1"}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty deviceid in a json body", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":""}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "numeric deviceid in a json body", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":12345}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "null deviceid in a json body", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":null}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "array deviceid in a json body", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":["d1"]}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "deviceid in an opaque_body body does not count", configure: func(h *Handler) { h.OpaqueBody = []string{"text/plain"} },
			method: "PUT", target: "/outer/device/unbind/",
			contentType: "text/plain", body: "deviceid=d1", token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		// Bodies the gateway cannot inspect (issue 12, item 4): 415.
		{name: "text/plain body", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: "text/plain", body: "deviceid=d1", token: tokApp, wantStatus: 415, wantCode: CodeBadRequest},
		{name: "merge-patch body", method: "PATCH", target: "/outer/device/unbind/?deviceid=d1",
			contentType: "application/merge-patch+json", body: `{"deviceid":"d2"}`, token: tokApp, wantStatus: 415, wantCode: CodeBadRequest},
		{name: "multipart body", method: "POST", target: "/outer/device/unbind/?deviceid=d1",
			contentType: "multipart/form-data; boundary=x", body: "--x\r\nContent-Disposition: form-data; name=\"deviceid\"\r\n\r\nd2\r\n--x--\r\n", token: tokApp, wantStatus: 415, wantCode: CodeBadRequest},
		{name: "body without Content-Type", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			body: "deviceid=d2", token: tokApp, wantStatus: 415, wantCode: CodeBadRequest},
		{name: "gzip-encoded JSON body", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: jsonType, header: http.Header{"Content-Encoding": {"gzip"}}, body: "\x1f\x8b\x08", token: tokApp, wantStatus: 415, wantCode: CodeBadRequest},
		{name: "identity Content-Encoding is no encoding", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, header: http.Header{"Content-Encoding": {"identity"}}, body: `{"deviceid":"d1"}`, token: tokApp,
			wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "empty text/plain body has nothing to inspect", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: "text/plain", token: tokApp, wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		// JSON keys folded as Go's and Jackson's decoders fold them.
		{name: "JSON deviceid and DeviceID are a duplicate", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":"d1","DeviceID":"d2"}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "JSON DEVICEID and a query deviceid are a duplicate", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: jsonType, body: `{"DEVICEID":"d2"}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "JSON key with a dotless i folds onto deviceid", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"deviceid":"d1","devıceid":"d2"}`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "form keys are not folded: DeviceID is another parameter", method: "PUT", target: "/outer/device/unbind/",
			contentType: formType, body: "deviceid=d1&DeviceID=d2", token: tokApp, wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "JSON DeviceId alone is the parameter", method: "PUT", target: "/outer/device/unbind/",
			contentType: jsonType, body: `{"DeviceId":"d1"}`, token: tokApp, wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
		{name: "JSON Access_Token in the body", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: jsonType, body: `{"Access_Token":"x"}`, token: tokApp, wantStatus: 401, wantCode: CodeInvalidToken,
			wantChallenge: `Bearer realm="outer", error="invalid_token"`},
		{name: "malformed json body", method: "PUT", target: "/outer/device/unbind/?deviceid=d1",
			contentType: jsonType, body: `{"deviceid":`, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "control character in deviceid", method: "GET", target: "/outer/device/info/?deviceid=d%001", token: tokApp,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "body over 64 KiB", method: "PUT", target: "/outer/device/unbind/",
			contentType: formType, body: "deviceid=d1&pad=" + strings.Repeat("a", maxBodyBytes), token: tokApp,
			wantStatus: 413, wantCode: CodeBadRequest, wantHeader: http.Header{"Connection": {"close"}}},
		{name: "require_scope: a rule's scope is needed on its paths", configure: groupsRule,
			method: "GET", target: "/outer/device/groups/list/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope: paths match the Caddy way", configure: groupsRule,
			method: "GET", target: "/OUTER//device/GROUPS/list/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the bare path", configure: groupsRule,
			method: "GET", target: "/outer/device/groups?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the ;param spelling", configure: groupsRule,
			method: "GET", target: "/outer/device/groups;x=1?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the backslash spelling", configure: groupsRule,
			method: "GET", target: "/outer/device\\groups\\list?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the trailing dot", configure: groupsRule,
			method: "GET", target: "/outer/device/groups./list/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the trailing space", configure: groupsRule,
			method: "GET", target: "/outer/device/groups%20/list/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope covers the ::$DATA stream", configure: groupsRule,
			method: "GET", target: "/outer/device/groups::$DATA/list/?deviceid=d1", token: tokReader,
			wantStatus: 403, wantCode: CodeInsufficientScope,
			wantChallenge: `Bearer realm="outer", error="insufficient_scope", scope="groups"`},
		{name: "require_scope: the rule replaces the method's scope", configure: groupsRule,
			method: "PUT", target: "/outer/device/groups/list/?deviceid=d1", token: tokGroups,
			wantNext: true, wantClient: testClientID, wantScope: "groups"},
		{name: "require_scope: other paths keep the method's scope", configure: groupsRule,
			method: "GET", target: deviceInfo, token: tokGroups,
			wantStatus: 403, wantCode: CodeInsufficientScope, wantChallenge: bearerNeedsRead},
		{name: "every required param is checked", configure: func(h *Handler) { h.RequireParams = []string{"deviceid", "ts"} },
			method: "GET", target: deviceInfo, token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "every required param present", configure: func(h *Handler) { h.RequireParams = []string{"deviceid", "ts"} },
			method: "GET", target: deviceInfo + "&ts=1", token: tokApp, wantNext: true, wantClient: testClientID, wantScope: "read write groups"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			token := tokenFor(t, h, tc.token)
			r, repl := newRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.body == "" {
				r.Body, r.ContentLength = http.NoBody, 0
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if token != "" {
				r.Header.Set("Authorization", "Bearer "+token)
			}
			if tc.extraAuth != "" {
				r.Header.Add("Authorization", tc.extraAuth)
			}
			for k, v := range tc.header {
				r.Header[k] = v
			}
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatalf("ServeHTTP returned %v", err)
			}
			for name, want := range tc.wantHeader {
				if got := rec.Header().Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}

			if !tc.wantNext {
				if next.called {
					t.Fatal("next was called")
				}
				checkErrorEnvelope(t, rec, tc.wantStatus, tc.wantCode)
				if got := rec.Header().Values("WWW-Authenticate"); tc.wantChallenge != "" &&
					(len(got) != 1 || got[0] != tc.wantChallenge) {
					t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantChallenge)
				}
				if tc.wantChallenge == "" && rec.Header().Get("WWW-Authenticate") != "" {
					t.Errorf("unexpected WWW-Authenticate %q", rec.Header().Get("WWW-Authenticate"))
				}
				if _, ok := repl.GetString("http.auth.user.id"); ok {
					t.Error("http.auth.user.id set on a refused request")
				}
				return
			}

			if !next.called {
				t.Fatalf("next was not called; answer %d %s", rec.Code, rec.Body.String())
			}
			if rec.Code != http.StatusOK {
				t.Errorf("status = %d", rec.Code)
			}
			got := next.req
			if v, ok := got.Header["Authorization"]; ok {
				t.Errorf("Authorization reached next: %q", v)
			}
			if v := got.Header.Values("X-Outer-Client-Id"); len(v) != 1 || v[0] != tc.wantClient {
				t.Errorf("identity header = %q, want %q", v, tc.wantClient)
			}
			if string(next.body) != tc.body {
				t.Errorf("body reaching next = %q, want exactly %q", next.body, tc.body)
			}
			if tc.body != "" && got.ContentLength != int64(len(tc.body)) {
				t.Errorf("ContentLength = %d, want %d", got.ContentLength, len(tc.body))
			}
			if got.GetBody != nil {
				b, err := got.GetBody()
				if err != nil {
					t.Fatal(err)
				}
				var again bytes.Buffer
				_, _ = again.ReadFrom(b)
				if again.String() != tc.body {
					t.Errorf("GetBody = %q, want %q", again.String(), tc.body)
				}
			}
			if v, _ := repl.GetString("http.auth.user.id"); v != tc.wantClient {
				t.Errorf("{http.auth.user.id} = %q, want %q", v, tc.wantClient)
			}
			if v, _ := repl.GetString("http.auth.user.scope"); v != tc.wantScope {
				t.Errorf("{http.auth.user.scope} = %q, want %q", v, tc.wantScope)
			}
		})
	}
}

func TestIdentityHeaderFromTheTokenOnly(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		header    map[string][]string // set raw, in the spelling given
		identity  string              // the configured identity header
		wantConn  []string            // Connection reaching next; nil: absent
	}{
		{name: "canonical spelling", header: map[string][]string{"X-Outer-Client-Id": {"forged"}}},
		{name: "lower case spelling", header: map[string][]string{"x-outer-client-id": {"forged"}}},
		{name: "underscore spelling", header: map[string][]string{"X_Outer_Client_Id": {"forged"}}},
		{name: "mixed spelling", header: map[string][]string{"x_OUTER-client_ID": {"forged"}}},
		{name: "several spellings at once", header: map[string][]string{
			"X-Outer-Client-Id": {"a", "b"}, "x-outer-client-id": {"c"}, "X_OUTER_CLIENT_ID": {"d"}}},
		{name: "listed in Connection alone", header: map[string][]string{"Connection": {"X-Outer-Client-Id"}}},
		{name: "listed in Connection in another spelling", header: map[string][]string{
			"Connection": {"keep-alive, x_outer_client_id , X-Other"}, "X-Other": {"1"}},
			wantConn: []string{"keep-alive, X-Other"}},
		{name: "listed in one of several Connection headers", header: map[string][]string{
			"Connection": {"keep-alive", "X-OUTER-CLIENT-ID"}}, wantConn: []string{"keep-alive"}},
		{name: "Connection without it is kept", header: map[string][]string{"Connection": {"keep-alive"}},
			wantConn: []string{"keep-alive"}},
		{name: "configured identity header", identity: "X-Device-Owner",
			configure: func(h *Handler) { h.IdentityHeader = "X-Device-Owner" },
			header:    map[string][]string{"x_device_owner": {"forged"}, "Connection": {"X-Device-Owner"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			token := tokenFor(t, h, tokApp)
			identity := tc.identity
			if identity == "" {
				identity = "X-Outer-Client-Id"
			}
			r, _ := newRequest(http.MethodGet, deviceInfo, nil)
			for k, v := range tc.header {
				r.Header[k] = append([]string(nil), v...)
			}
			r.Header.Set("Authorization", "Bearer "+token)
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if !next.called {
				t.Fatalf("next not called: %d %s", rec.Code, rec.Body.String())
			}
			key := normalizeHeaderName(identity)
			for name, values := range next.req.Header {
				if normalizeHeaderName(name) != key {
					continue
				}
				if name != http.CanonicalHeaderKey(identity) || len(values) != 1 || values[0] != testClientID {
					t.Errorf("next got %s: %q; want only %s: %q", name, values, http.CanonicalHeaderKey(identity), testClientID)
				}
			}
			if got := next.req.Header.Get(identity); got != testClientID {
				t.Errorf("%s = %q, want %q", identity, got, testClientID)
			}
			conn := next.req.Header["Connection"]
			if strings.Join(conn, "|") != strings.Join(tc.wantConn, "|") {
				t.Errorf("Connection = %q, want %q", conn, tc.wantConn)
			}
			for _, v := range conn {
				for opt := range strings.SplitSeq(v, ",") {
					if normalizeHeaderName(strings.TrimSpace(opt)) == key {
						t.Errorf("Connection still names the identity header: %q", conn)
					}
				}
			}
		})
	}
}

func TestProtectedPathSpellings(t *testing.T) {
	for _, tc := range []struct {
		name    string
		path    string
		rawPath string
	}{
		{name: "upper case", path: "/OUTER/DEVICE/info/"},
		{name: "mixed case bare prefix", path: "/Outer/Device"},
		{name: "doubled slashes", path: "//outer//device/info/"},
		{name: "dot segment", path: "/outer/./device/info/"},
		{name: "dot-dot segment", path: "/outer/x/../device/info/"},
		{name: "path parameter", path: "/outer/device;x=1/info/"},
		{name: "path parameter on the last segment", path: "/outer/device;jsessionid=1"},
		{name: "backslashes", path: `/outer\device\info/`},
		{name: "encoded slash", path: "/outer/device/info", rawPath: "/outer/device%2Finfo"},
		{name: "bare prefix", path: "/outer/device"},
		{name: "prefix with slash", path: "/outer/device/"},
		{name: "deep path", path: "/outer/device/a/b/c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			r, _ := newRequest(http.MethodGet, "/", nil)
			u := *r.URL
			u.Path, u.RawPath, u.RawQuery = tc.path, tc.rawPath, "deviceid=d1"
			r.URL = &u
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
				t.Fatal(err)
			}
			checkErrorEnvelope(t, rec, http.StatusUnauthorized, CodeInvalidToken)
			if got := rec.Header().Get("WWW-Authenticate"); got != bearerNoError {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
}

func TestCustomProtectPatterns(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Protect = []string{"/api/v1/*", "/admin"} })
	for _, tc := range []struct {
		path      string
		protected bool
	}{
		{"/api/v1/things", true},
		{"/API/V1", true},
		{"/admin", true},
		{"/ADMIN", true},
		{"/admin/x", false},
		{"/outer/device/info/", false}, // the default is replaced, not added to
		{"/api/v2/things", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r, _ := newRequest(http.MethodGet, tc.path+"?deviceid=d1", nil)
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called == tc.protected {
				t.Fatalf("protected = %v, want %v (status %d)", !next.called, tc.protected, rec.Code)
			}
		})
	}
}

// failingStore is a Store that cannot answer; methods it does not
// override go to the embedded store.
type failingStore struct{ Store }

func (failingStore) Save(context.Context, TokenHash, TokenRecord, int, ...Lockout) error {
	return ErrStoreUnavailable
}
func (failingStore) Load(context.Context, TokenHash) (TokenRecord, bool, error) {
	return TokenRecord{}, false, ErrStoreUnavailable
}

func (failingStore) Failures(context.Context, string) (int, time.Time, error) {
	return 0, time.Time{}, ErrStoreUnavailable
}
func (failingStore) AddFailure(context.Context, string, time.Duration) error {
	return ErrStoreUnavailable
}

func TestStoreDownFailsClosed(t *testing.T) {
	h := newTestHandler(t, nil)
	token := tokenFor(t, h, tokApp)
	h.useStore(failingStore{h.store})
	for _, tc := range []struct {
		name string
		req  func() *http.Request
	}{
		{name: "protected path", req: func() *http.Request {
			r, _ := newRequest(http.MethodGet, deviceInfo, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			return r
		}},
		{name: "token endpoint", req: func() *http.Request {
			r, _ := newRequest(http.MethodPost, "/outer/token/", strings.NewReader(formCreds(testClientID, testClientSecret)))
			r.Header.Set("Content-Type", formType)
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, tc.req(), failNext(t)); err != nil {
				t.Fatal(err)
			}
			checkErrorEnvelope(t, rec, http.StatusServiceUnavailable, CodeInternal)
			if tc.name == "token endpoint" && rec.Header().Get("Cache-Control") != "no-store" {
				t.Error("token endpoint 503 lacks Cache-Control: no-store")
			}
		})
	}
}

package outergate

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const (
	deviceInfo       = "/outer/device/info/?deviceid=d1"
	bearerNoError    = `Bearer realm="outer"`
	bearerBadToken   = `Bearer realm="outer", error="invalid_token"`
	bearerNeedsWrite = `Bearer realm="outer", error="insufficient_scope", scope="write"`
	bearerNeedsRead  = `Bearer realm="outer", error="insufficient_scope", scope="read"`
)

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write([]byte(s))
	_ = zw.Close()
	return b.Bytes()
}

// upstream returns a next body that answers like an upstream would, with
// a correct Content-Length.
func upstream(status int, contentType string, body []byte, extra ...string) func(http.ResponseWriter, *http.Request, *httptest.ResponseRecorder) error {
	return func(w http.ResponseWriter, _ *http.Request, _ *httptest.ResponseRecorder) error {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			w.Header().Add(extra[i], extra[i+1])
		}
		if status != http.StatusNoContent && status != http.StatusNotModified {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		w.WriteHeader(status)
		if len(body) == 0 {
			return nil
		}
		_, err := w.Write(body)
		return err
	}
}

// failing returns a next body that writes nothing and returns err, like
// reverse_proxy on a transport failure.
func failing(err error) func(http.ResponseWriter, *http.Request, *httptest.ResponseRecorder) error {
	return func(http.ResponseWriter, *http.Request, *httptest.ResponseRecorder) error { return err }
}

func TestUpstreamAnswers(t *testing.T) {
	const (
		okBody       = `{"meta":{"message":"Device info","code":0},"data":{"mac":"agxhl","online":false}}`
		disabledBody = `{"meta":{"message":"device disabled by owner","code":23031},"data":null}`
		stackHTML    = "<html><head><title>500 Internal Server Error</title></head><body><h1>Whoops</h1>" +
			"<pre>panic: runtime error: index out of range [3] with length 3\n\ngoroutine 17 [running]:\n" +
			"main.deviceInfo(0xc000123450)\n\t/srv/legacy/handlers.go:42 +0x1d\nSECRET_DB_PASSWORD=hunter2</pre></body></html>"
	)
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		next      func(w http.ResponseWriter, r *http.Request, outer *httptest.ResponseRecorder) error

		// an answer that must reach the client untouched
		passthrough bool
		wantBody    string
		wantHeader  http.Header

		// an answer outergate rewrites into an envelope
		wantStatus  int
		wantCode    int
		wantMessage string
		forbidden   []string // must not appear in the answer's body
		noHeader    []string // must not be in the answer

		wantErr bool // ServeHTTP returns an error and writes nothing
	}{
		{name: "200 json streams untouched",
			next:        upstream(200, "application/json", []byte(okBody), "X-Upstream", "legacy", "Etag", `"v1"`),
			passthrough: true, wantStatus: 200, wantBody: okBody,
			wantHeader: http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(okBody))},
				"X-Upstream": {"legacy"}, "Etag": {`"v1"`}}},
		{name: "2xx is streamed before next returns, not buffered",
			next: func(w http.ResponseWriter, _ *http.Request, outer *httptest.ResponseRecorder) error {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(200)
				_, _ = w.Write([]byte("first "))
				if outer.Body.String() != "first " {
					return fmt.Errorf("2xx body was held back: client saw %q", outer.Body.String())
				}
				_, err := w.Write([]byte("second"))
				return err
			},
			passthrough: true, wantStatus: 200, wantBody: "first second",
			wantHeader: http.Header{"Content-Type": {"text/plain"}}},
		{name: "201 streams untouched",
			next:        upstream(201, "application/json", []byte(`{"id":1}`), "Location", "/outer/device/1"),
			passthrough: true, wantStatus: 201, wantBody: `{"id":1}`,
			wantHeader: http.Header{"Location": {"/outer/device/1"}, "Content-Type": {"application/json"}}},
		{name: "204 streams untouched",
			next:        upstream(204, "", nil),
			passthrough: true, wantStatus: 204, wantBody: ""},
		{name: "302 with an html body streams untouched",
			next:        upstream(302, "text/html; charset=utf-8", []byte(`<a href="/elsewhere">Found</a>.`), "Location", "/elsewhere"),
			passthrough: true, wantStatus: 302, wantBody: `<a href="/elsewhere">Found</a>.`,
			wantHeader: http.Header{"Location": {"/elsewhere"}, "Content-Type": {"text/html; charset=utf-8"}}},
		{name: "304 streams untouched",
			next:        upstream(304, "", nil, "Etag", `"v1"`),
			passthrough: true, wantStatus: 304, wantBody: "", wantHeader: http.Header{"Etag": {`"v1"`}}},

		{name: "html 404 becomes 404 23030",
			next:       upstream(404, "text/html", []byte("<html><body><h1>404 Not Found</h1></body></html>")),
			wantStatus: 404, wantCode: CodeDeviceIDError, wantMessage: "device id error", forbidden: []string{"<", "Not Found"}},
		{name: "html 500 with a stack trace becomes 500 23090 without the trace",
			next:       upstream(500, "text/html; charset=utf-8", []byte(stackHTML), "X-Powered-By", "PHP"),
			wantStatus: 500, wantCode: CodeInternal, wantMessage: "internal error",
			forbidden: []string{"<", "panic", "goroutine", "handlers.go", "runtime error", "hunter2", "Whoops"}},
		{name: "plain text 400 becomes 400 23010 parameter error",
			next:       upstream(400, "text/plain", []byte("Bad Request: deviceid malformed at offset 3")),
			wantStatus: 400, wantCode: CodeBadRequest, wantMessage: "parameter error", forbidden: []string{"offset"}},
		{name: "json 409 error member becomes its message",
			next:       upstream(409, "application/json", []byte(`{"error":"x"}`)),
			wantStatus: 409, wantCode: CodeBadRequest, wantMessage: "x"},
		{name: "json message is trimmed and cleaned of markup and control characters",
			next: upstream(400, "application/json",
				[]byte(`{"message":"  <b>markup</b>\u0000in\n\tmessage\u007f<script>alert(1)</script>  "}`)),
			wantStatus: 400, wantCode: CodeBadRequest, wantMessage: "markup in message alert(1)",
			forbidden: []string{"<", ">", `\u0000`, `\n`, `\t`, `\u007f`}},
		{name: "stack trace in a json error member does not reach the client",
			next:       upstream(500, "application/json", []byte(`{"error":"Traceback (most recent call last):\n  File \"/srv/legacy/app.py\", line 42, in info\n    d = DEVICES[deviceid]\nKeyError: 'd1'"}`)),
			wantStatus: 500, wantCode: CodeInternal, forbidden: []string{"Traceback", "app.py", "line 42", "KeyError"}},
		{name: "java stack trace in a json message member does not reach the client",
			next:       upstream(500, "application/json", []byte(`{"message":"java.lang.NullPointerException\n\tat com.acme.DeviceService.info(DeviceService.java:42)\n\tat com.acme.Api.get(Api.java:7)"}`)),
			wantStatus: 500, wantCode: CodeInternal, forbidden: []string{"DeviceService.java", "com.acme"}},
		{name: "json msg member is used",
			next:       upstream(404, "application/json", []byte(`{"msg":"no such device"}`)),
			wantStatus: 404, wantCode: CodeDeviceIDError, wantMessage: "no such device"},
		{name: "json detail member is used",
			next:       upstream(422, "application/problem+json", []byte(`{"title":"Unprocessable","detail":"deviceid too long"}`)),
			wantStatus: 422, wantCode: CodeBadRequest, wantMessage: "deviceid too long"},
		{name: "json without a message member gets the fixed phrase",
			next:       upstream(500, "application/json", []byte(`{"trace":["a.go:1","b.go:2"]}`)),
			wantStatus: 500, wantCode: CodeInternal, wantMessage: "internal error", forbidden: []string{"a.go"}},
		{name: "enveloped 403 23031 passes through byte for byte",
			next:        upstream(403, "application/json", []byte(disabledBody)),
			passthrough: true, wantStatus: 403, wantBody: disabledBody,
			wantHeader: http.Header{"Content-Type": {"application/json"}, "Content-Length": {strconv.Itoa(len(disabledBody))}}},
		{name: "enveloped 503 23090 passes through byte for byte",
			next:        upstream(503, "application/json", []byte(`{"meta":{"message":"maintenance","code":23090},"data":null}`)),
			passthrough: true, wantStatus: 503, wantBody: `{"meta":{"message":"maintenance","code":23090},"data":null}`},
		{name: "gzipped envelope passes through with its encoding",
			next:        upstream(403, "application/json", gzipped(disabledBody), "Content-Encoding", "gzip"),
			passthrough: true, wantStatus: 403, wantBody: string(gzipped(disabledBody)),
			wantHeader: http.Header{"Content-Encoding": {"gzip"}}},
		{name: "envelope with code 0 on a 500 is normalized",
			next:       upstream(500, "application/json", []byte(`{"meta":{"message":"boom","code":0},"data":{"x":1}}`)),
			wantStatus: 500, wantCode: CodeInternal, wantMessage: "boom"},
		{name: "401 becomes 502 23090",
			next:       upstream(401, "text/plain", []byte("Unauthorized")),
			wantStatus: 502, wantCode: CodeInternal, wantMessage: "internal error"},
		{name: "410 becomes 404 23030",
			next:       upstream(410, "text/plain", []byte("Gone")),
			wantStatus: 404, wantCode: CodeDeviceIDError, wantMessage: "device id error"},
		{name: "423 becomes 403 23031",
			next:       upstream(423, "text/plain", []byte("Locked")),
			wantStatus: 403, wantCode: CodeDeviceDisabled, wantMessage: "device disabled"},
		{name: "plain 403 becomes 403 23031",
			next:       upstream(403, "text/html", []byte("<h1>Forbidden</h1>")),
			wantStatus: 403, wantCode: CodeDeviceDisabled, wantMessage: "device disabled"},
		{name: "405 keeps the upstream's Allow",
			next:       upstream(405, "text/plain", []byte("Method Not Allowed"), "Allow", "GET, HEAD"),
			wantStatus: 405, wantCode: CodeBadRequest, wantHeader: http.Header{"Allow": {"GET, HEAD"}}},
		{name: "gzip-encoded json error is read and its encoding removed",
			next:       upstream(404, "application/json", gzipped(`{"message":"device d1 unknown"}`), "Content-Encoding", "gzip"),
			wantStatus: 404, wantCode: CodeDeviceIDError, wantMessage: "device d1 unknown", noHeader: []string{"Content-Encoding"}},
		{name: "undecodable encoding gets the fixed phrase and loses its encoding",
			next:       upstream(500, "application/json", []byte{0x1b, 0x03, 0x00, 0xf8}, "Content-Encoding", "br"),
			wantStatus: 500, wantCode: CodeInternal, wantMessage: "internal error", noHeader: []string{"Content-Encoding"}},
		{name: "broken gzip gets the fixed phrase",
			next:       upstream(502, "application/json", []byte("not gzip"), "Content-Encoding", "gzip"),
			wantStatus: 502, wantCode: CodeInternal, wantMessage: "internal error", noHeader: []string{"Content-Encoding"}},
		{name: "empty 503 becomes 503 23090",
			next:       upstream(503, "", nil),
			wantStatus: 503, wantCode: CodeInternal, wantMessage: "internal error"},
		{name: "other 4xx keeps its status with 23010",
			next:       upstream(429, "text/plain", []byte("slow down")),
			wantStatus: 429, wantCode: CodeBadRequest},
		{name: "error_codes override 409 to 23030 answers 404",
			configure:  func(h *Handler) { h.ErrorCodes = map[int]int{409: CodeDeviceIDError} },
			next:       upstream(409, "application/json", []byte(`{"error":"conflict on d1"}`)),
			wantStatus: 404, wantCode: CodeDeviceIDError, wantMessage: "conflict on d1"},
		{name: "error_codes override 500 to 23031 answers 403",
			configure:  func(h *Handler) { h.ErrorCodes = map[int]int{500: CodeDeviceDisabled} },
			next:       upstream(500, "text/plain", []byte("oops")),
			wantStatus: 403, wantCode: CodeDeviceDisabled, wantMessage: "device disabled"},
		{name: "an upstream Content-Length is replaced by the envelope's",
			next: func(w http.ResponseWriter, _ *http.Request, _ *httptest.ResponseRecorder) error {
				w.Header().Set("Content-Length", "100000")
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(500)
				_, err := w.Write([]byte("<html>"))
				return err
			},
			wantStatus: 500, wantCode: CodeInternal},

		{name: "returned 502 becomes upstream unreachable",
			next:       failing(caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp 10.9.8.7:9000: connect: connection refused"))),
			wantStatus: 502, wantCode: CodeInternal, wantMessage: "upstream unreachable", forbidden: []string{"10.9.8.7", "dial"}},
		{name: "returned 504 becomes upstream timeout",
			next:       failing(caddyhttp.Error(http.StatusGatewayTimeout, context.DeadlineExceeded)),
			wantStatus: 504, wantCode: CodeInternal, wantMessage: "upstream timeout", forbidden: []string{"deadline"}},
		{name: "returned 503 becomes 503 23090",
			next:       failing(caddyhttp.Error(http.StatusServiceUnavailable, errors.New("no upstreams available"))),
			wantStatus: 503, wantCode: CodeInternal, forbidden: []string{"no upstreams"}},
		{name: "returned plain error becomes 502",
			next:       failing(errors.New("something broke")),
			wantStatus: 502, wantCode: CodeInternal, forbidden: []string{"broke"}},
		{name: "returned 499 (client gone) is passed on and nothing is written",
			next:    failing(caddyhttp.Error(499, context.Canceled)),
			wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			token := issueToken(t, h, testClientID, testClientSecret, "")
			r, _ := newRequest(http.MethodGet, deviceInfo, nil)
			r.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			called := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				called = true
				return tc.next(w, r, rec)
			})

			err := h.ServeHTTP(rec, r, next)
			if !called {
				t.Fatal("next was not called")
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("ServeHTTP returned nil, want the error")
				}
				if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
					t.Fatalf("something was written: %d %v %q", rec.Code, rec.Header(), rec.Body.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("ServeHTTP returned %v", err)
			}
			for name, want := range tc.wantHeader {
				if got := rec.Header().Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			for _, name := range tc.noHeader {
				if v, ok := rec.Header()[http.CanonicalHeaderKey(name)]; ok {
					t.Errorf("header %s = %q, want it removed", name, v)
				}
			}
			if tc.passthrough {
				if rec.Code != tc.wantStatus {
					t.Errorf("status = %d, want %d", rec.Code, tc.wantStatus)
				}
				if rec.Body.String() != tc.wantBody {
					t.Errorf("body = %q, want exactly %q", rec.Body.String(), tc.wantBody)
				}
				return
			}
			env := checkErrorEnvelope(t, rec, tc.wantStatus, tc.wantCode)
			if tc.wantMessage != "" && env.Meta.Message != tc.wantMessage {
				t.Errorf("message = %q, want %q", env.Meta.Message, tc.wantMessage)
			}
			if env.Meta.Message == "" {
				t.Error("empty message")
			}
			for _, s := range tc.forbidden {
				if strings.Contains(rec.Body.String(), s) || strings.Contains(env.Meta.Message, s) {
					t.Errorf("answer %q holds %q", rec.Body.String(), s)
				}
			}
		})
	}
}

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
		tok, err := newToken()
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
		tok, _ := newToken()
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
		{name: "POST with deviceid in the query and an unrelated body", method: "POST",
			target: "/outer/device/unbind/?deviceid=d1", contentType: "text/plain", body: "deviceid=d2&deviceid=d3", token: tokApp,
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
		{name: "deviceid in a body of another content type does not count", method: "PUT", target: "/outer/device/unbind/",
			contentType: "text/plain", body: "deviceid=d1", token: tokApp, wantStatus: 400, wantCode: CodeBadRequest},
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

// failingStore is a TokenStore that cannot answer; methods it does not
// override go to the embedded store.
type failingStore struct{ TokenStore }

func (failingStore) Save(context.Context, TokenHash, TokenRecord, int) error {
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
	h.store = failingStore{h.store}
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

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		overrides  map[int]int
		upstream   int
		wantStatus int
		wantCode   int
	}{
		{name: "400 stays 400 with 23010", upstream: 400, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "401 is the gateway's problem: 502 23090", upstream: 401, wantStatus: 502, wantCode: CodeInternal},
		{name: "403 is device disabled", upstream: 403, wantStatus: 403, wantCode: CodeDeviceDisabled},
		{name: "404 is device id error", upstream: 404, wantStatus: 404, wantCode: CodeDeviceIDError},
		{name: "405 keeps its status", upstream: 405, wantStatus: 405, wantCode: CodeBadRequest},
		{name: "409 keeps its status", upstream: 409, wantStatus: 409, wantCode: CodeBadRequest},
		{name: "410 is device id error answered 404", upstream: 410, wantStatus: 404, wantCode: CodeDeviceIDError},
		{name: "413 keeps its status", upstream: 413, wantStatus: 413, wantCode: CodeBadRequest},
		{name: "422 keeps its status", upstream: 422, wantStatus: 422, wantCode: CodeBadRequest},
		{name: "423 is device disabled answered 403", upstream: 423, wantStatus: 403, wantCode: CodeDeviceDisabled},
		{name: "429 keeps its status", upstream: 429, wantStatus: 429, wantCode: CodeBadRequest},
		{name: "500 keeps its status with 23090", upstream: 500, wantStatus: 500, wantCode: CodeInternal},
		{name: "501 keeps its status", upstream: 501, wantStatus: 501, wantCode: CodeInternal},
		{name: "502 keeps its status", upstream: 502, wantStatus: 502, wantCode: CodeInternal},
		{name: "503 keeps its status", upstream: 503, wantStatus: 503, wantCode: CodeInternal},
		{name: "504 keeps its status", upstream: 504, wantStatus: 504, wantCode: CodeInternal},
		{name: "override 409 to 23030 answers 404", overrides: map[int]int{409: 23030}, upstream: 409, wantStatus: 404, wantCode: 23030},
		{name: "override 400 to 23031 answers 403", overrides: map[int]int{400: 23031}, upstream: 400, wantStatus: 403, wantCode: 23031},
		{name: "override 404 to 23010 keeps 404", overrides: map[int]int{404: 23010}, upstream: 404, wantStatus: 404, wantCode: 23010},
		{name: "override 500 to 23010 answers 400", overrides: map[int]int{500: 23010}, upstream: 500, wantStatus: 400, wantCode: 23010},
		{name: "override 409 to 23090 answers 502", overrides: map[int]int{409: 23090}, upstream: 409, wantStatus: 502, wantCode: 23090},
		{name: "override leaves other statuses alone", overrides: map[int]int{409: 23030}, upstream: 410, wantStatus: 404, wantCode: 23030},
		{name: "override with a custom code keeps the status", overrides: map[int]int{409: 40009}, upstream: 409, wantStatus: 409, wantCode: 40009},
		{name: "override of 401 with a custom code still answers 502", overrides: map[int]int{401: 40001}, upstream: 401, wantStatus: 502, wantCode: 40001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{ErrorCodes: tc.overrides}
			status, code := h.classify(tc.upstream)
			if status != tc.wantStatus || code != tc.wantCode {
				t.Fatalf("classify(%d) = %d/%d, want %d/%d", tc.upstream, status, code, tc.wantStatus, tc.wantCode)
			}
		})
	}
}

func TestCleanMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{name: "plain text unchanged", in: "device not found", want: "device not found"},
		{name: "trimmed", in: "  \t device not found \n", want: "device not found"},
		{name: "markup removed", in: "<b>markup</b>", want: "markup"},
		{name: "script tags removed", in: "x<script>alert(1)</script>y", want: "xalert(1)y"},
		{name: "tag with attributes removed", in: `<a href="http://x">link</a> here`, want: "link here"},
		{name: "unclosed tag drops the rest", in: "ok <div class=", want: "ok"},
		{name: "lone greater-than kept", in: "a > b", want: "a > b"},
		{name: "control characters become spaces", in: "a\x00b\x1bc\x7fd", want: "a b c d"},
		{name: "newlines and tabs fold", in: "line1\r\n\tline2", want: "line1 line2"},
		{name: "runs of spaces fold", in: "a    b", want: "a b"},
		{name: "C1 controls become spaces", in: "a\u0085b\u009bc", want: "a b c"},
		{name: "invalid utf-8 dropped", in: "a\xffb", want: "ab"},
		{name: "non-ascii kept", in: "设备不存在 é", want: "设备不存在 é"},
		{name: "only markup is empty", in: "<br/><hr>", want: ""},
		{name: "only controls is empty", in: "\x00\x01\n", want: ""},
		{name: "cut at 200 bytes", in: strings.Repeat("a", 300), want: strings.Repeat("a", maxEnvelopeMessageSize)},
		{name: "cut on a rune boundary", in: strings.Repeat("é", 150), want: strings.Repeat("é", maxEnvelopeMessageSize/2)},
		{name: "cut on a rune boundary of three bytes", in: strings.Repeat("设", 100), want: strings.Repeat("设", maxEnvelopeMessageSize/3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cleanMessage(tc.in)
			if got != tc.want {
				t.Fatalf("cleanMessage(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if len(got) > maxEnvelopeMessageSize {
				t.Fatalf("result is %d bytes", len(got))
			}
		})
	}
}

func TestUpstreamMessage(t *testing.T) {
	gz := http.Header{"Content-Encoding": {"gzip"}}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		want   string
	}{
		{name: "message member", body: []byte(`{"message":"m"}`), want: "m"},
		{name: "msg member", body: []byte(`{"msg":"m"}`), want: "m"},
		{name: "detail member", body: []byte(`{"detail":"d"}`), want: "d"},
		{name: "error member", body: []byte(`{"error":"e"}`), want: "e"},
		{name: "message wins over the others", body: []byte(`{"error":"e","detail":"d","msg":"g","message":"m"}`), want: "m"},
		{name: "msg wins over detail and error", body: []byte(`{"error":"e","detail":"d","msg":"g"}`), want: "g"},
		{name: "empty message falls through", body: []byte(`{"message":"","error":"e"}`), want: "e"},
		{name: "markup-only message falls through", body: []byte(`{"message":"<br>","error":"e"}`), want: "e"},
		{name: "non-string message falls through", body: []byte(`{"message":42,"error":"e"}`), want: "e"},
		{name: "object error is not a message", body: []byte(`{"error":{"code":7}}`), want: ""},
		{name: "envelope meta message", body: []byte(`{"meta":{"message":"from meta","code":0}}`), want: "from meta"},
		{name: "message is cleaned", body: []byte(`{"message":" <i>bad</i>\n deviceid "}`), want: "bad deviceid"},
		{name: "surrounding whitespace in the body", body: []byte("\n  {\"message\":\"m\"}\n"), want: "m"},
		{name: "html body", body: []byte(`<html><body>{"message":"no"}</body></html>`), want: ""},
		{name: "plain text body", body: []byte("message: no"), want: ""},
		{name: "json array", body: []byte(`[{"message":"no"}]`), want: ""},
		{name: "malformed json", body: []byte(`{"message":"no"`), want: ""},
		{name: "empty body", body: nil, want: ""},
		{name: "gzip body", header: gz, body: gzipped(`{"message":"zipped"}`), want: "zipped"},
		{name: "x-gzip body", header: http.Header{"Content-Encoding": {"x-gzip"}}, body: gzipped(`{"message":"zipped"}`), want: "zipped"},
		{name: "identity encoding", header: http.Header{"Content-Encoding": {"identity"}}, body: []byte(`{"message":"m"}`), want: "m"},
		{name: "broken gzip", header: gz, body: []byte(`{"message":"not really gzip"}`), want: ""},
		{name: "unknown encoding", header: http.Header{"Content-Encoding": {"br"}}, body: []byte(`{"message":"m"}`), want: ""},
		{name: "body over 64 KiB is not inspected",
			body: []byte(`{"message":"m","pad":"` + strings.Repeat("a", maxInspect) + `"}`), want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			if got := upstreamMessage(h, tc.body); got != tc.want {
				t.Fatalf("upstreamMessage = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEnvelopeCode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		want   int
	}{
		{name: "envelope with a code", body: []byte(`{"meta":{"message":"device disabled","code":23031},"data":null}`), want: 23031},
		{name: "envelope without data", body: []byte(`{"meta":{"message":"x","code":23010}}`), want: 23010},
		{name: "members in another order", body: []byte(`{"data":null,"meta":{"code":23030,"message":"x"}}`), want: 23030},
		{name: "gzipped envelope", header: http.Header{"Content-Encoding": {"gzip"}},
			body: gzipped(`{"meta":{"message":"x","code":23090},"data":null}`), want: 23090},
		{name: "code 0 is no error envelope", body: []byte(`{"meta":{"message":"ok","code":0},"data":null}`), want: 0},
		{name: "missing code", body: []byte(`{"meta":{"message":"x"},"data":null}`), want: 0},
		{name: "missing message", body: []byte(`{"meta":{"code":23031},"data":null}`), want: 0},
		{name: "null message", body: []byte(`{"meta":{"message":null,"code":23031}}`), want: 0},
		{name: "string code", body: []byte(`{"meta":{"message":"x","code":"23031"}}`), want: 0},
		{name: "meta not an object", body: []byte(`{"meta":"x"}`), want: 0},
		{name: "no meta", body: []byte(`{"message":"x","code":23031}`), want: 0},
		{name: "html", body: []byte("<html>23031</html>"), want: 0},
		{name: "empty", body: nil, want: 0},
		{name: "unknown encoding", header: http.Header{"Content-Encoding": {"br"}},
			body: []byte(`{"meta":{"message":"x","code":23031}}`), want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			if got := envelopeCode(h, tc.body); got != tc.want {
				t.Fatalf("envelopeCode = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestStripHeader(t *testing.T) {
	const key = "x-outer-client-id"
	for _, tc := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{name: "canonical spelling removed", in: http.Header{"X-Outer-Client-Id": {"a"}, "Accept": {"*/*"}},
			want: http.Header{"Accept": {"*/*"}}},
		{name: "lower case removed", in: http.Header{"x-outer-client-id": {"a"}}, want: http.Header{}},
		{name: "underscores removed", in: http.Header{"X_Outer_Client_Id": {"a"}}, want: http.Header{}},
		{name: "mixed underscores and dashes removed", in: http.Header{"x_outer-CLIENT_id": {"a"}}, want: http.Header{}},
		{name: "every spelling removed", in: http.Header{"X-Outer-Client-Id": {"a"}, "x_outer_client_id": {"b"}, "X-OUTER-CLIENT-ID": {"c"}},
			want: http.Header{}},
		{name: "similar names kept", in: http.Header{"X-Outer-Client-Idx": {"a"}, "X-Outer-Client": {"b"}, "Xx-Outer-Client-Id": {"c"}},
			want: http.Header{"X-Outer-Client-Idx": {"a"}, "X-Outer-Client": {"b"}, "Xx-Outer-Client-Id": {"c"}}},
		{name: "connection naming only it is removed", in: http.Header{"Connection": {"X-Outer-Client-Id"}}, want: http.Header{}},
		{name: "connection keeps other options", in: http.Header{"Connection": {"keep-alive, x_outer_client_id, Upgrade"}},
			want: http.Header{"Connection": {"keep-alive, Upgrade"}}},
		{name: "several connection headers are merged once changed", in: http.Header{"Connection": {"keep-alive", "X-OUTER-CLIENT-ID, te"}},
			want: http.Header{"Connection": {"keep-alive, te"}}},
		{name: "connection without it is untouched", in: http.Header{"Connection": {"keep-alive,  Upgrade"}},
			want: http.Header{"Connection": {"keep-alive,  Upgrade"}}},
		{name: "empty connection options dropped with it", in: http.Header{"Connection": {" , X-Outer-Client-Id ,"}},
			want: http.Header{}},
		{name: "nothing to do", in: http.Header{"Accept": {"*/*"}}, want: http.Header{"Accept": {"*/*"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.in.Clone()
			stripHeader(h, key)
			if fmt.Sprint(h) != fmt.Sprint(tc.want) {
				t.Fatalf("stripHeader(%v) = %v, want %v", tc.in, h, tc.want)
			}
		})
	}
}

func TestNormalizeHeaderName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"X-Outer-Client-Id", "x-outer-client-id"},
		{"X_OUTER_CLIENT_ID", "x-outer-client-id"},
		{"x-outer_client-id", "x-outer-client-id"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			if got := normalizeHeaderName(tc.in); got != tc.want {
				t.Fatalf("normalizeHeaderName(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if !sameHeaderName(tc.in, tc.want) {
				t.Fatalf("sameHeaderName(%q, %q) = false", tc.in, tc.want)
			}
		})
	}
	if sameHeaderName("X-Outer-Client-Ix", "x-outer-client-id") || sameHeaderName("X-Outer", "x-outer-client-id") {
		t.Fatal("sameHeaderName matched a different name")
	}
}

// TestEnvelopeReplacesUpstreamHeaders checks writeEnvelope on a header map
// an upstream already filled.
func TestWriteEnvelope(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Type", "text/html")
	rec.Header().Set("Content-Length", "99999")
	rec.Header().Set("Content-Encoding", "gzip")
	if err := writeEnvelope(rec, http.StatusNotFound, CodeDeviceIDError, "device id error", nil); err != nil {
		t.Fatal(err)
	}
	checkErrorEnvelope(t, rec, http.StatusNotFound, CodeDeviceIDError)
	if rec.Header().Get("Content-Encoding") != "" {
		t.Error("Content-Encoding kept")
	}
	want := `{"meta":{"message":"device id error","code":23030},"data":null}`
	if rec.Body.String() != want {
		t.Fatalf("body = %s, want %s", rec.Body.String(), want)
	}
}

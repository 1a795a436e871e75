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

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
		{name: "302 with an html body becomes 502 23090 without its Location",
			next:       upstream(302, "text/html; charset=utf-8", []byte(`<a href="http://10.0.0.7/elsewhere">Found</a>.`), "Location", "http://10.0.0.7/elsewhere"),
			wantStatus: 502, wantCode: CodeInternal, wantMessage: "upstream answered with a redirect",
			noHeader: []string{"Location"}, forbidden: []string{"10.0.0.7", "<"}},
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
		{name: "enveloped 403 23031 keeps status, code and message, as JSON",
			next:       upstream(403, "application/json", []byte(disabledBody)),
			wantStatus: 403, wantCode: CodeDeviceDisabled, wantMessage: "device disabled by owner",
			wantHeader: http.Header{"Content-Type": {contentTypeJSONUTF8}}},
		{name: "enveloped 503 23090 keeps status and code",
			next:       upstream(503, "application/json", []byte(`{"meta":{"message":"maintenance","code":23090},"data":null}`)),
			wantStatus: 503, wantCode: CodeInternal, wantMessage: "maintenance"},
		{name: "gzipped envelope is read and sent as plain JSON",
			next:       upstream(403, "application/json", gzipped(disabledBody), "Content-Encoding", "gzip"),
			wantStatus: 403, wantCode: CodeDeviceDisabled, wantMessage: "device disabled by owner", noHeader: []string{"Content-Encoding"}},
		{name: "html envelope with markup and a stack trace is cleaned",
			next:       upstream(500, "text/html", []byte(`{"meta":{"message":"<b>boom</b> java.lang.IllegalStateException\n\tat com.acme.Dev.get(Dev.java:42)","code":23090},"data":{"trace":"at x"}}`)),
			wantStatus: 500, wantCode: CodeInternal, wantMessage: "internal error",
			wantHeader: http.Header{"Content-Type": {contentTypeJSONUTF8}}, forbidden: []string{"<", "java", "Dev.java", "trace"}},
		{name: "enveloped 409 with markup keeps its code, cleaned",
			next:       upstream(409, "text/html", []byte(`{"meta":{"message":"<i>busy</i> device","code":23010},"data":null}`)),
			wantStatus: 409, wantCode: CodeBadRequest, wantMessage: "busy device"},
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
		{name: "503 keeps an upstream Retry-After in seconds",
			next:       upstream(503, "text/plain", []byte("busy"), "Retry-After", "120", "Set-Cookie", "a=b"),
			wantStatus: 503, wantCode: CodeInternal, wantHeader: http.Header{"Retry-After": {"120"}}, noHeader: []string{"Set-Cookie"}},
		{name: "429 keeps an upstream Retry-After as an HTTP date",
			next:       upstream(429, "text/plain", []byte("slow down"), "Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT"),
			wantStatus: 429, wantCode: CodeBadRequest, wantHeader: http.Header{"Retry-After": {"Wed, 21 Oct 2026 07:28:00 GMT"}}},
		{name: "a malformed upstream Retry-After is dropped",
			next:       upstream(503, "text/plain", []byte("busy"), "Retry-After", "soon <b>"),
			wantStatus: 503, wantCode: CodeInternal, noHeader: []string{"Retry-After"}},
		{name: "Allow is kept only on a 405, and only as method names",
			next:       upstream(409, "text/plain", []byte("conflict"), "Allow", "GET"),
			wantStatus: 409, wantCode: CodeBadRequest, noHeader: []string{"Allow"}},
		{name: "a 405 with a malformed Allow loses it",
			next:       upstream(405, "text/plain", []byte("no"), "Allow", "GET, <script>"),
			wantStatus: 405, wantCode: CodeBadRequest, noHeader: []string{"Allow"}},
		{name: "401 loses the upstream's WWW-Authenticate",
			next:       upstream(401, "text/plain", []byte("no"), "Www-Authenticate", `Basic realm="10.0.0.7"`),
			wantStatus: 502, wantCode: CodeInternal, noHeader: []string{"Www-Authenticate"}},
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
			n := &normalizer{errorCodes: tc.overrides}
			status, code := n.classify(tc.upstream)
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

package outergate

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestGuard: protocol upgrades and 8.3 short names are refused on every
// path, a WebSocket upgrade passes only where allow_websocket says, after
// the usual checks on a protected path (issue 12, items 2 and 5).
func TestGuard(t *testing.T) {
	allowWS := func(h *Handler) { h.AllowWebSocket = []string{"/outer/device/events/*", "/live/*"} }
	ws := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		method    string
		target    string
		header    http.Header
		token     bool
		h2        bool // an HTTP/2 request (extended CONNECT)
		wantNext  bool
		status    int
	}{
		{name: "h2c upgrade on a protected path with a token", target: deviceInfo, token: true,
			header: http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMAAABkAAQAoAAAAAIAAAAA"}}, status: 400},
		{name: "h2c upgrade on an unprotected path", target: "/elsewhere",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}, status: 400},
		{name: "h2c upgrade on an allow_websocket path", configure: allowWS, target: "/live/x",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"h2c"}}, status: 400},
		{name: "WebSocket upgrade where it is not allowed", target: "/elsewhere", header: ws, status: 400},
		{name: "WebSocket upgrade on a protected path not allowed", target: deviceInfo, token: true, header: ws, status: 400},
		{name: "Upgrade header without Connection", target: "/elsewhere", header: http.Header{"Upgrade": {"websocket"}}, status: 400},
		{name: "Connection: upgrade without Upgrade", target: "/elsewhere", header: http.Header{"Connection": {"keep-alive, upgrade"}}, status: 400},
		{name: "two Upgrade values", configure: allowWS, target: "/live/x",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket, h2c"}}, status: 400},
		{name: "CONNECT tunnel", method: "CONNECT", target: "/outer/device/info/", status: 400},
		{name: "extended CONNECT for WebSocket where not allowed", method: "CONNECT", target: "/elsewhere", h2: true,
			header: http.Header{":protocol": {"websocket"}}, status: 400},
		{name: "WebSocket on an allowed unprotected path", configure: allowWS, target: "/live/x", header: ws, wantNext: true},
		{name: "WebSocket on an allowed protected path with a token", configure: allowWS,
			target: "/outer/device/events/?deviceid=d1", header: ws, token: true, wantNext: true},
		{name: "WebSocket on an allowed protected path (bare prefix) with a token", configure: allowWS,
			target: "/outer/device/events?deviceid=d1", header: ws, token: true, wantNext: true},
		{name: "WebSocket on an allowed protected path without a token", configure: allowWS,
			target: "/outer/device/events/?deviceid=d1", header: ws, status: 401},
		{name: "extended CONNECT for WebSocket on an allowed path", configure: allowWS, method: "CONNECT",
			target: "/outer/device/events/?deviceid=d1", h2: true, header: http.Header{":protocol": {"websocket"}}, token: true, wantNext: true},
		{name: "8.3 short name of a protected segment", target: "/outer/DEVICE~1/info/?deviceid=d1", status: 400},
		{name: "8.3 short name with an extension", target: "/outer/device/ENDUSE~1.JSO?deviceid=d1", token: true, status: 400},
		{name: "8.3 short name on an unprotected path", target: "/files/PROGRA~2/x", status: 400},
		{name: "a tilde that is no short name", target: "/~user/page", wantNext: true},
		{name: "X-Original-URL on an unprotected path", target: "/elsewhere",
			header: http.Header{"X-Original-Url": {"/outer/device/info/?deviceid=d1"}}, status: 400},
		{name: "X-Rewrite-URL on a protected path with a token", target: deviceInfo, token: true,
			header: http.Header{"X-Rewrite-Url": {"/outer/device/endusers/"}}, status: 400},
		{name: "X_ORIGINAL_URL (the CGI spelling)", target: "/elsewhere",
			header: http.Header{"X_original_url": {"/outer/device/info/"}}, status: 400},
		{name: "X-Original-URI is no rewrite header", target: "/elsewhere",
			header: http.Header{"X-Original-Uri": {"/x"}}, wantNext: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			method := tc.method
			if method == "" {
				method = "GET"
			}
			r, _ := newRequest(method, tc.target, nil)
			r.Body, r.ContentLength = http.NoBody, 0
			if tc.h2 {
				r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/2.0", 2, 0
			}
			for k, v := range tc.header {
				r.Header[k] = v
			}
			if tc.token {
				r.Header.Set("Authorization", "Bearer "+issueToken(t, h, testClientID, testClientSecret, ""))
			}
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called != tc.wantNext {
				t.Fatalf("next called = %v, want %v (answer %d %s)", next.called, tc.wantNext, rec.Code, rec.Body)
			}
			if !tc.wantNext {
				code := CodeBadRequest
				if tc.status == 401 {
					code = CodeInvalidToken
				}
				checkErrorEnvelope(t, rec, tc.status, code)
			}
		})
	}
}

// trailerBody is a request body whose trailers net/http fills in at EOF,
// as the server does for a chunked body.
type trailerBody struct {
	io.Reader
	r       *http.Request
	trailer http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	if err == io.EOF {
		for k, v := range b.trailer {
			b.r.Trailer[k] = v
		}
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// TestTrailers: request trailers pass no header rule by (issue 12, item 3).
func TestTrailers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		target   string
		token    bool
		trailer  http.Header
		wantNext bool
		status   int
		// wantTrailer is what next may see of the trailers after reading
		// the body (nil: none at all).
		wantTrailer http.Header
	}{
		{name: "protected: identity trailer dropped", target: "/outer/device/unbind/", token: true,
			trailer: http.Header{"X-Outer-Client-Id": {"admin"}}, wantNext: true},
		{name: "protected: every trailer dropped", target: "/outer/device/unbind/", token: true,
			trailer: http.Header{"X-Checksum": {"1"}, "Authorization": {"Basic eDp5"}}, wantNext: true},
		{name: "protected: method override trailer refused", target: "/outer/device/unbind/", token: true,
			trailer: http.Header{"X-Http-Method-Override": {"DELETE"}}, status: 400},
		{name: "protected: X-Method-Override trailer refused", target: "/outer/device/unbind/", token: true,
			trailer: http.Header{"X-Method-Override": {"DELETE"}}, status: 400},
		{name: "unprotected: identity trailer removed in every spelling", target: "/elsewhere",
			trailer:  http.Header{"X-Outer-Client-Id": {"admin"}, "X_outer_client_id": {"admin"}, "X-Checksum": {"1"}},
			wantNext: true, wantTrailer: http.Header{"X-Checksum": {"1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			r, _ := newRequest("PUT", tc.target, nil)
			r.Header.Set("Content-Type", formType)
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
			r.Trailer = http.Header{}
			for k := range tc.trailer {
				r.Trailer[k] = nil // declared
			}
			r.Body = &trailerBody{Reader: strings.NewReader("deviceid=d1"), r: r, trailer: tc.trailer}
			if tc.token {
				r.Header.Set("Authorization", "Bearer "+issueToken(t, h, testClientID, testClientSecret, ""))
			}
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called != tc.wantNext {
				t.Fatalf("next called = %v, want %v (answer %d %s)", next.called, tc.wantNext, rec.Code, rec.Body)
			}
			if !tc.wantNext {
				checkErrorEnvelope(t, rec, tc.status, CodeBadRequest)
				return
			}
			// next has read the body to EOF: what it sees now is what
			// reverse_proxy would copy upstream.
			got := next.req.Trailer
			if len(got) != len(tc.wantTrailer) {
				t.Fatalf("trailers after the body = %v, want %v", got, tc.wantTrailer)
			}
			for k, v := range tc.wantTrailer {
				if strings.Join(got[k], ",") != strings.Join(v, ",") {
					t.Errorf("trailer %s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestPlainPath(t *testing.T) {
	for _, tc := range []struct {
		name, path string
		want       bool
	}{
		{"ordinary device path", "/outer/device/info/", true},
		{"space and accented letter", "/outer/dévice x/", true},
		{"NUL", "/outer/device\x00/info/", false},
		{"tab", "/outer/device\t/info/", false},
		{"line feed", "/outer/device\n/", false},
		{"DEL", "/outer/device\x7f/", false},
		{"C1 control", "/outer/device\u0085/", false},
		{"overlong slash", "/outer/\xc0\xafdevice/", false},
		{"lone continuation byte", "/outer/device\xff/", false},
		{"zero-width space", "/outer/device\u200b/", false},
		{"no-break space", "/outer/device\u00a0/", false},
		{"byte order mark", "/\ufeffouter/device/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := plainPath(tc.path); got != tc.want {
				t.Errorf("plainPath(%q) = %v, want %v", tc.path, got, tc.want)
			}
		})
	}
}

package outergate

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func TestFoldPath(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/outer/device/info/", "/outer/device/info/"},
		{"/outer/device;jsessionid=1/info/", "/outer/device/info/"},
		{`\outer\device\info`, "/outer/device/info"},
		{"/outer/device./info/", "/outer/device/info/"},
		{"/outer/device.../info/", "/outer/device/info/"},
		{"/outer/device /info/", "/outer/device/info/"},
		{"/outer/device . /info/", "/outer/device/info/"},
		{"/outer/device::$DATA/info/", "/outer/device/info/"},
		{"/outer/device:stream:$DATA/info/", "/outer/device/info/"},
		{"/outer/device:$i30:$index_allocation/info/", "/outer/device/info/"},
		{"/outer/./device/../device/info/", "/outer/./device/../device/info/"},
		{"/outer/device/info.json", "/outer/device/info.json"},
	} {
		if got, _ := foldPath(tc.in); got != tc.want {
			t.Errorf("foldPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestPathPatterns checks the one matching rule every pattern of the
// handler uses (protect, require_scope, allow_websocket, endpoints).
func TestPathPatterns(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	pp, err := newPathPatterns(ctx, []string{"/outer/device/endusers/*", "/outer/token/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want bool
	}{
		{"/outer/device/endusers/", true},
		{"/outer/device/endusers", true}, // the bare prefix of a /* pattern
		{"/OUTER/Device/EndUsers", true},
		{"/outer//device/endusers", true},
		{"/outer/device/x/../endusers", true},
		{"/outer/device/endusers;x=1", true},
		{"/outer/device;x/endusers/", true},
		{`/outer\device\endusers`, true},
		{"/outer/device/endusers.", true},
		{"/outer/device/endusers ", true},
		{"/outer/device/endusers::$DATA", true},
		{"/outer/device./endusers/", true},
		{"/outer/token", false},
		{"/outer/token/", true},
		{"/outer/token;x/", true},
		{"/outer/device/endusersx", false},
		{"/outer/device/info/", false},
	} {
		r, _ := newRequest("GET", "http://gw"+escapePath(tc.path), nil)
		if got := pp.matches(r); got != tc.want {
			t.Errorf("%q matches = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// escapePath percent-encodes the bytes a request target cannot hold as
// they are.
func escapePath(p string) string {
	out := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case ' ', '\\', '$':
			out = append(out, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// TestCompiledPatternsMatchCaddy checks that the precompiled patterns
// (matchesPath, on the path ServeHTTP cleans once) answer what Caddy's
// path matcher answers on the request (matches), for every kind of pattern
// and spellings that clean, fold or change case; and that patterns the
// compiled form does not reproduce fall back to Caddy's matcher.
func TestCompiledPatternsMatchCaddy(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	defer cancel()
	patterns := [][]string{
		{"/outer/device/*"},
		{"/outer/device/endusers/*", "/outer/token/"},
		{"/outer/token", "/outer/token/"},
		{"*"},
		{"/a", "*"},
		{"*/info/"},
		{"*device*"},
		{"/outer/*/info/"},
		{"/outer/device/info[0-9]"},
		{"/OUTER/Device/*"},
		{"/outer/device/info/", "/.well-known/oauth-authorization-server"},
		{},
	}
	paths := []string{
		"/", "/outer/device/info/", "/outer/device/info", "/outer/device", "/outer/device/",
		"/OUTER/DEVICE/INFO/", "/outer//device/info/", "/outer/./device/../device/info/",
		"/outer/device/../token/", "/outer/token", "/outer/token/", "/outer/token//",
		"/outer/device;x=1/info/", `/outer\device\info/`, "/outer/device./info/",
		"/outer/device::$DATA/info/", "/outer/device/info.json", "/outer/device/info7",
		"/outer/devicex/info/", "/x/info/", "/.well-known/oauth-authorization-server",
		"/outer/dev%69ce/info/", "/outer/device/info%2F", "/outer/dévice/info/", "/outer/device/İnfo/",
		"/outer/device/info/;", "//outer/device/info/", "/outer/device/info/.", "/outer/device/info/..",
		"/outer/device/%2e%2e/token/", "/outer/device /info/", "/outer/device:x/info/", "/outer/DEVİCE/info/",
		`/outer/device\..\token\`, "/outer/device/info/...", "/outer/device/./", "/./outer/device",
	}
	for _, pats := range patterns {
		pp, err := newPathPatterns(ctx, pats)
		if err != nil {
			t.Fatal(err)
		}
		if pp.compiled == nil {
			t.Fatalf("%q: not compiled", pats)
		}
		for _, p := range paths {
			r, _ := newRequest("GET", "http://gw"+escapePath(p), nil)
			rp := newRequestPath(r.URL.Path)
			if got, want := pp.matchesPath(r, &rp), pp.matches(r); got != want {
				t.Errorf("%q on %q: compiled %v, Caddy's matcher %v", pats, r.URL.Path, got, want)
			}
		}
	}
	for _, pats := range [][]string{{"/outer/{http.request.host}/*"}, {"/outer/dev%69ce/*"}, {"/outer//device/*"}} {
		pp, err := newPathPatterns(ctx, pats)
		if err != nil {
			t.Fatal(err)
		}
		if pp.compiled != nil {
			t.Errorf("%q compiled; it needs Caddy's matcher", pats)
		}
	}
}

// TestCleanLower checks cleanLower against what Caddy's matcher cleans.
func TestCleanLower(t *testing.T) {
	for _, p := range []string{"/", "", "/a/", "/a", "/A/b/", "/a//b/", "/a/./b/", "/a/../b/", "/a/b/..", "/a/b/../",
		"//", "/a/b//", "a/b/", "/a/b/.", "/a/b/./"} {
		if got, want := cleanLower(p), caddyhttp.CleanPath(strings.ToLower(p), true); got != want {
			t.Errorf("cleanLower(%q) = %q, want %q", p, got, want)
		}
	}
}

// TestEndpointPathsInAnyCase: endpoint paths configured with capitals (or
// unclean) are found in any spelling a request gives them, as their Caddy
// path matchers find them: the request is answered here, never relayed
// (failNext). The lookup by cleaned lower-case path must hold the paths
// in that form too.
func TestEndpointPathsInAnyCase(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.TokenPath = "/Outer/Token/"
		h.OAuth2TokenPath = "/OAuth2/Token"
		h.Issuer = "https://gw.example/Tenant"
	})
	for _, target := range []string{"/Outer/Token/", "/outer/token/", "/OUTER/TOKEN", "/outer//token/", "/Outer/Token/revoke/",
		"/oauth2/token", "/OAuth2/Introspect"} {
		rec := tokenCall{target: target, body: formCreds(testClientID, testClientSecret), ip: testClientIP}.do(t, h)
		if rec.Code == http.StatusNotFound || rec.Code == 0 {
			t.Errorf("POST %s: %d %s", target, rec.Code, rec.Body)
		}
	}
	for _, target := range []string{"/.well-known/oauth-authorization-server/Tenant", "/.well-known/oauth-authorization-server/tenant"} {
		r, _ := newRequest(http.MethodGet, target, nil)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, failNext(t)); err != nil || rec.Code != http.StatusOK {
			t.Errorf("GET %s: %d %v", target, rec.Code, err)
		}
	}
}

package outergate

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
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

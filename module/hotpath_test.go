package outergate

// Differential tests of the proxied path's fast forms (issue 18): each is
// checked against the code it replaced, which stays here as the oracle:
// the required-parameter check against url.ParseQuery and single, the
// precompiled path patterns against Caddy's path matcher.

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// requiredParamsOracle is the required-parameter check as it was: the
// whole query parsed by url.ParseQuery into params, then single.
func requiredParamsOracle(raw string, names []string, body params) *apiError {
	query := params{}
	if raw != "" {
		q, err := parseFormParams(raw)
		if err != nil {
			return badRequest("malformed query string")
		}
		query = q
	}
	for _, name := range names {
		_, found, err := single(name, query, body)
		if err != nil {
			return badRequest(err.Error())
		}
		if !found {
			return badRequest(name + " is required")
		}
	}
	return nil
}

// requiredParamsFast is what checkParams now does.
func requiredParamsFast(raw string, names []string, body params) *apiError {
	query := make([]queryParam, len(names))
	if !scanQuery(raw, names, query) {
		return badRequest("malformed query string")
	}
	for i, name := range names {
		if aerr := requiredParam(name, query[i], body); aerr != nil {
			return aerr
		}
	}
	return nil
}

func sameAPIError(a, b *apiError) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.status == b.status && a.code == b.code && a.message == b.message
}

// checkRequiredParams compares the two on one input.
func checkRequiredParams(t *testing.T, raw, bodyForm string) {
	t.Helper()
	body := params{}
	if bodyForm != "" {
		var err error
		if body, err = parseFormParams(bodyForm); err != nil {
			return
		}
	}
	for _, names := range [][]string{{"deviceid"}, {"deviceid", "mac"}, {"a", "b", "c", "d", "e"}, {"a b", "a+b"}} {
		got, want := requiredParamsFast(raw, names, body), requiredParamsOracle(raw, names, body)
		if !sameAPIError(got, want) {
			t.Errorf("query %q, body %q, names %q: got %v, want %v", raw, bodyForm, names, got, want)
		}
	}
}

func TestScanQueryAnswersAsParseQuery(t *testing.T) {
	queries := []string{
		"", "deviceid=1", "deviceid=", "deviceid", "deviceid=1&deviceid=2", "deviceid=1&&", "&deviceid=1&",
		"deviceid=1;x=2", "x=1;y", ";", "deviceid=%zz", "x=%zz&deviceid=1", "x=%4", "x=%", "%zz=1&deviceid=1",
		"dev%69ceid=1", "deviceid=a%20b", "deviceid=a+b", "deviceid=%00", "deviceid=%0a", "deviceid=%7f",
		"deviceid=%e2%80%8b", "mac=1&deviceid=2", "deviceid=1&mac=", "a+b=1", "a%20b=1&a+b=2", "=1", "==",
		"deviceid==1", "deviceid=1=2", "a=1&b=2&c=3&d=4&e=5", "a=1&b=2&c=3&d=4&e=5&e=6",
		strings.Repeat("x=1&", 63) + "deviceid=1", strings.Repeat("x=1&", 64) + "deviceid=1",
		strings.Repeat("x=1&", 70) + "deviceid=%zz", strings.Repeat("&", 10_000) + "deviceid=1",
		// one name in two encodings, escapes in names, empty names, '+' and ';' next to a match
		"deviceid=1&dev%69ceid=2", "dev%49ceid=1&deviceid=2", "%64eviceid=1&deviceid=1", "deviceid%3d=2&deviceid=1",
		"deviceid=1&%zz", "deviceid=1&=%zz", "=&deviceid=1", "deviceid=1&x=1%", "deviceid=1&a+b=1&a%20b=2",
		"deviceid=1%3bx", "deviceid=1&x;=2", "deviceid=%2B", "device+id=1", "deviceid%00=1",
		strings.Repeat("deviceid=1&", 64) + "x=1", strings.Repeat("x=%41&", 63) + "dev%69ceid=1&deviceid=2",
	}
	for _, q := range queries {
		for _, b := range []string{"", "deviceid=1", "mac=x", "a=1&b=2&c=3&d=4&e="} {
			checkRequiredParams(t, q, b)
		}
	}
}

func FuzzScanQuery(f *testing.F) {
	for _, s := range []string{"deviceid=1", "deviceid=1&deviceid=2", "x=%zz", "a;b", "deviceid=%41&mac=+"} {
		f.Add(s, "")
		f.Add(s, "deviceid=2")
	}
	f.Fuzz(func(t *testing.T, raw, bodyForm string) { checkRequiredParams(t, raw, bodyForm) })
}

// FuzzCompiledPatterns checks the precompiled patterns against Caddy's
// matcher on any pattern and path.
func FuzzCompiledPatterns(f *testing.F) {
	for _, s := range [][2]string{{"/outer/device/*", "/outer/device/info/"}, {"*info*", "/a/INFO/"},
		{"*/x", "/a/x"}, {"/a/[b-c]", "/a/b"}, {"/outer/token/", "/outer/token;x/"}} {
		f.Add(s[0], s[1])
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: f.Context()})
	f.Cleanup(cancel)
	f.Fuzz(func(t *testing.T, pattern, path string) {
		pp, err := newPathPatterns(ctx, []string{pattern})
		if err != nil || pp.compiled == nil {
			return
		}
		r, _ := newRequest("GET", "http://gw/", nil)
		r.URL.Path, r.URL.RawPath = path, ""
		rp := newRequestPath(r.URL.Path)
		if got, want := pp.matchesPath(r, &rp), pp.matches(r); got != want {
			t.Errorf("%q on %q: compiled %v, Caddy's matcher %v", pattern, path, got, want)
		}
	})
}

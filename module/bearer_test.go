package outergate

import (
	"net/http"
	"strings"
	"testing"
)

func TestBearerToken(t *testing.T) {
	const (
		tok      = "tok-EN._~+/9"
		noError  = `Bearer realm="outer"`
		badToken = `Bearer realm="outer", error="invalid_token"`
	)
	for _, tc := range []struct {
		name          string
		target        string // default /outer/device/x
		auth          []string
		want          string // the token; "" means refused
		wantChallenge string // on refusal
	}{
		{name: "missing header asks for a token without an error", want: "", wantChallenge: noError},
		{name: "bearer token", auth: []string{"Bearer " + tok}, want: tok},
		{name: "scheme lower case", auth: []string{"bearer " + tok}, want: tok},
		{name: "scheme upper case", auth: []string{"BEARER " + tok}, want: tok},
		{name: "scheme mixed case", auth: []string{"bEaReR " + tok}, want: tok},
		{name: "several spaces before the token", auth: []string{"Bearer    " + tok}, want: tok},
		{name: "empty token", auth: []string{"Bearer "}, wantChallenge: badToken},
		{name: "scheme alone", auth: []string{"Bearer"}, wantChallenge: badToken},
		{name: "only spaces after the scheme", auth: []string{"Bearer    "}, wantChallenge: badToken},
		{name: "junk after the token", auth: []string{"Bearer abc def"}, wantChallenge: badToken},
		{name: "trailing space after the token", auth: []string{"Bearer abc "}, wantChallenge: badToken},
		{name: "comma after the token", auth: []string{"Bearer abc, Bearer def"}, wantChallenge: badToken},
		{name: "bad character star", auth: []string{"Bearer ab*c"}, wantChallenge: badToken},
		{name: "bad character percent", auth: []string{"Bearer ab%20c"}, wantChallenge: badToken},
		{name: "bad character quote", auth: []string{`Bearer "abc"`}, wantChallenge: badToken},
		{name: "non-ascii character", auth: []string{"Bearer tök"}, wantChallenge: badToken},
		{name: "tab inside the token", auth: []string{"Bearer ab\tc"}, wantChallenge: badToken},
		{name: "padding at the end", auth: []string{"Bearer abc="}, want: "abc="},
		{name: "double padding at the end", auth: []string{"Bearer abc=="}, want: "abc=="},
		{name: "padding alone", auth: []string{"Bearer ="}, wantChallenge: badToken},
		{name: "padding first", auth: []string{"Bearer =abc"}, wantChallenge: badToken},
		{name: "padding in the middle", auth: []string{"Bearer ab=c"}, wantChallenge: badToken},
		{name: "character after padding", auth: []string{"Bearer abc=d="}, wantChallenge: badToken},
		{name: "1024 characters is the limit", auth: []string{"Bearer " + strings.Repeat("a", maxTokenLen)},
			want: strings.Repeat("a", maxTokenLen)},
		{name: "too long", auth: []string{"Bearer " + strings.Repeat("a", maxTokenLen+1)}, wantChallenge: badToken},
		{name: "two authorization headers", auth: []string{"Bearer " + tok, "Bearer " + tok}, wantChallenge: badToken},
		{name: "token in the query", target: "/outer/device/x?access_token=" + tok, wantChallenge: badToken},
		{name: "token in the query beside a good header", target: "/outer/device/x?deviceid=1&access_token=" + tok,
			auth: []string{"Bearer " + tok}, wantChallenge: badToken},
		{name: "empty access_token in the query beside a good header", target: "/outer/device/x?access_token=",
			auth: []string{"Bearer " + tok}, wantChallenge: badToken},
		{name: "percent-encoded access_token name in the query beside a good header",
			target: "/outer/device/x?access%5Ftoken=" + tok, auth: []string{"Bearer " + tok}, wantChallenge: badToken},
		{name: "other query parameters are fine", target: "/outer/device/x?deviceid=1&my_access_token_id=2",
			auth: []string{"Bearer " + tok}, want: tok},
		{name: "basic scheme is answered with a plain bearer challenge", auth: []string{"Basic YXBwOnNlY3JldA=="}, wantChallenge: noError},
		{name: "empty header value", auth: []string{""}, wantChallenge: noError},
		{name: "scheme prefix is not the scheme", auth: []string{"Bearerx " + tok}, wantChallenge: noError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "/outer/device/x"
			}
			r, _ := newRequest(http.MethodGet, "/", nil)
			u := *r.URL
			path, query, _ := strings.Cut(target, "?")
			u.Path, u.RawQuery = path, query
			r.URL = &u
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}

			got, aerr := bearerToken(r)
			if tc.want != "" {
				if aerr != nil {
					t.Fatalf("refused: %v", aerr)
				}
				if got != tc.want {
					t.Fatalf("token = %q, want %q", got, tc.want)
				}
				return
			}
			if aerr == nil {
				t.Fatalf("accepted token %q", got)
			}
			if aerr.status != http.StatusUnauthorized || aerr.code != CodeInvalidToken {
				t.Errorf("got %d/%d, want 401/23021", aerr.status, aerr.code)
			}
			if ch := aerr.header.Values("WWW-Authenticate"); len(ch) != 1 || ch[0] != tc.wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", ch, tc.wantChallenge)
			}
		})
	}
}

func TestParseBearer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		value   string
		want    string
		wantErr bool
	}{
		{name: "plain", value: "Bearer abc", want: "abc"},
		{name: "case-insensitive scheme", value: "BeArEr abc", want: "abc"},
		{name: "several spaces", value: "Bearer   abc", want: "abc"},
		{name: "junk after token", value: "Bearer abc def", wantErr: true},
		{name: "no token", value: "Bearer ", wantErr: true},
		{name: "other scheme", value: "Digest abc", wantErr: true},
		{name: "tab is not a separator", value: "Bearer\tabc", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, aerr := parseBearer(tc.value)
			if (aerr != nil) != tc.wantErr {
				t.Fatalf("parseBearer(%q) error = %v, wantErr %v", tc.value, aerr, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("parseBearer(%q) = %q, want %q", tc.value, got, tc.want)
			}
		})
	}
}

func TestIsB64Token(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    string
		want bool
	}{
		{name: "letters and digits", s: "abcXYZ019", want: true},
		{name: "every allowed punctuation", s: "-._~+/", want: true},
		{name: "base64url token", s: "2cwO2K4FVynCWmG-_x", want: true},
		{name: "trailing padding", s: "abc=", want: true},
		{name: "several trailing pads", s: "abc===", want: true},
		{name: "empty", s: "", want: false},
		{name: "padding only", s: "==", want: false},
		{name: "leading padding", s: "=abc", want: false},
		{name: "padding in the middle", s: "a=bc", want: false},
		{name: "space", s: "ab c", want: false},
		{name: "comma", s: "ab,c", want: false},
		{name: "colon", s: "ab:c", want: false},
		{name: "percent", s: "ab%c", want: false},
		{name: "control character", s: "ab\x00c", want: false},
		{name: "non-ascii", s: "abç", want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isB64Token(tc.s); got != tc.want {
				t.Fatalf("isB64Token(%q) = %v, want %v", tc.s, got, tc.want)
			}
		})
	}
}

func TestHasScope(t *testing.T) {
	for _, tc := range []struct {
		name  string
		scope string
		want  string
		has   bool
	}{
		{name: "first of several", scope: "read write groups", want: "read", has: true},
		{name: "middle of several", scope: "read write groups", want: "write", has: true},
		{name: "last of several", scope: "read write groups", want: "groups", has: true},
		{name: "only scope", scope: "read", want: "read", has: true},
		{name: "absent", scope: "read groups", want: "write", has: false},
		{name: "empty scope", scope: "", want: "read", has: false},
		{name: "prefix is not a match", scope: "readonly", want: "read", has: false},
		{name: "suffix is not a match", scope: "overwrite", want: "write", has: false},
		{name: "joined scopes are not a match", scope: "readwrite", want: "write", has: false},
		{name: "case-sensitive", scope: "READ WRITE", want: "read", has: false},
		{name: "double space between scopes", scope: "read  write", want: "write", has: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hasScope(tc.scope, tc.want); got != tc.has {
				t.Fatalf("hasScope(%q, %q) = %v, want %v", tc.scope, tc.want, got, tc.has)
			}
		})
	}
}

func TestRequiredScope(t *testing.T) {
	for _, tc := range []struct {
		method string
		want   string
	}{
		{http.MethodGet, "read"},
		{http.MethodHead, "read"},
		{http.MethodOptions, "read"},
		{http.MethodPost, "write"},
		{http.MethodPut, "write"},
		{http.MethodPatch, "write"},
		{http.MethodDelete, "write"},
		{"PROPFIND", "write"},
		{"get", "write"}, // methods are case-sensitive: an unknown method needs write
	} {
		t.Run(tc.method+" needs "+tc.want, func(t *testing.T) {
			if got := methodScope(tc.method); got != tc.want {
				t.Fatalf("methodScope(%q) = %q, want %q", tc.method, got, tc.want)
			}
		})
	}
}

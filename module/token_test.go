package outergate

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseTokenRequest(t *testing.T) {
	const creds = "grant_type=client_credentials&client_id=app&client_secret=s3cret"
	pad := func(prefix string, size int) string { return prefix + strings.Repeat("a", size-len(prefix)) }

	for _, tc := range []struct {
		name        string
		target      string // default /outer/token/
		contentType string
		body        string
		chunked     bool // hide the Content-Length
		auth        []string
		want        clientRequest[tokenRequest]
		wantStatus  int // 0: success
		wantCode    int
		wantHeader  http.Header // exact values the error must carry
	}{
		// successes
		{name: "form body credentials", contentType: formType, body: creds,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "form body with scope", contentType: formType, body: creds + "&scope=read%20write",
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", params: tokenRequest{scope: "read write"}}},
		{name: "empty scope is an omitted one (RFC 6749 3.3)", contentType: formType, body: creds + "&scope=",
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "empty json scope is an omitted one", contentType: jsonType,
			body: `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","scope":""}`,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "form content type with charset parameter", contentType: formType + "; charset=utf-8", body: creds,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "json body credentials", contentType: jsonType,
			body: `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","scope":"read"}`,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", params: tokenRequest{scope: "read"}}},
		{name: "json content type is case-insensitive", contentType: "Application/JSON; charset=UTF-8",
			body: `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret"}`,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "body exactly 64 KiB is accepted", contentType: formType, body: pad(creds+"&pad=", maxBodyBytes),
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "unknown extra form params are ignored", contentType: formType, body: creds + "&audience=x&foo=bar",
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "repeated unknown params are ignored (RFC 8707 repeats resource)", contentType: formType,
			body: creds + "&resource=https%3A%2F%2Fa&resource=https%3A%2F%2Fb",
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "unknown non-string json params are ignored", contentType: jsonType,
			body: `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","extra":{"a":[1,2]},"n":1}`,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},
		{name: "basic credentials", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:s3cret")},
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", basic: true}},
		{name: "basic scheme is case-insensitive", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{"bAsIc " + base64.StdEncoding.EncodeToString([]byte("app:s3cret"))},
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", basic: true}},
		{name: "basic with json body", contentType: jsonType, body: `{"grant_type":"client_credentials"}`,
			auth: []string{basicAuth("app:s3cret")},
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", basic: true}},
		{name: "basic id and secret are form-decoded (RFC 6749 2.3.1)", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("my%20app:a%3Ab+c%2Bd%25")},
			want: clientRequest[tokenRequest]{clientID: "my app", clientSecret: "a:b c+d%", basic: true}},
		{name: "basic secret may hold a raw colon", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:a:b")},
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "a:b", basic: true}},
		{name: "basic with the same client_id in the body", contentType: formType,
			body: "grant_type=client_credentials&client_id=app", auth: []string{basicAuth("app:s3cret")},
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret", basic: true}},
		{name: "query without credentials is fine", target: "/outer/token/?x=1", contentType: formType, body: creds,
			want: clientRequest[tokenRequest]{clientID: "app", clientSecret: "s3cret"}},

		// 23010: authentication methods mixed
		{name: "basic plus body client_secret", contentType: formType, body: creds,
			auth: []string{basicAuth("app:s3cret")}, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "basic plus json body client_secret", contentType: jsonType,
			body: `{"grant_type":"client_credentials","client_secret":"s3cret"}`,
			auth: []string{basicAuth("app:s3cret")}, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "basic plus differing body client_id", contentType: formType,
			body: "grant_type=client_credentials&client_id=other", auth: []string{basicAuth("app:s3cret")},
			wantStatus: 400, wantCode: CodeBadRequest},

		// 23010: credentials in the query string
		{name: "client_secret in the query", target: "/outer/token/?client_secret=s3cret", contentType: formType,
			body: "grant_type=client_credentials&client_id=app", wantStatus: 400, wantCode: CodeBadRequest},
		{name: "client_id in the query", target: "/outer/token/?client_id=app", contentType: formType,
			body: creds, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "credentials in the query beside basic", target: "/outer/token/?client_secret=x", contentType: formType,
			body: "grant_type=client_credentials", auth: []string{basicAuth("app:s3cret")},
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "malformed query string", target: "/outer/token/?a=%zz", contentType: formType, body: creds,
			wantStatus: 400, wantCode: CodeBadRequest},

		// 23010: duplicates and types
		{name: "duplicate grant_type in form", contentType: formType, body: creds + "&grant_type=client_credentials",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "duplicate client_id in form", contentType: formType, body: creds + "&client_id=app",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "duplicate client_secret in form", contentType: formType, body: creds + "&client_secret=other",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "duplicate scope in form", contentType: formType, body: creds + "&scope=read&scope=write",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "duplicate key in json", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_id":"app","client_secret":"s3cret"}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "non-string json client_id", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":123,"client_secret":"s3cret"}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "null json client_secret", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":null}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty scope twice", contentType: formType, body: creds + "&scope=&scope=",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "null json scope", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","scope":null}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty client_secret and basic", contentType: formType, body: "grant_type=client_credentials&client_secret=",
			auth: []string{basicAuth("app:s3cret")}, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "array json scope", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret","scope":["read"]}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "non-string json grant_type", contentType: jsonType,
			body:       `{"grant_type":true,"client_id":"app","client_secret":"s3cret"}`,
			wantStatus: 400, wantCode: CodeBadRequest},

		// 23010: content type and body syntax
		{name: "unsupported content type", contentType: "text/plain", body: creds, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "multipart content type", contentType: "multipart/form-data; boundary=x", body: creds,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "no content type", body: creds, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "unparsable content type", contentType: "application/json; =", body: creds, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "malformed json", contentType: jsonType, body: `{"grant_type":"client_credentials",`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "json array instead of object", contentType: jsonType, body: `[{"grant_type":"client_credentials"}]`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "trailing json object", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret"} {}`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "trailing json garbage", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret"}x`,
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "malformed form encoding", contentType: formType, body: creds + "&x=%zz",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty body", contentType: formType, body: "", wantStatus: 400, wantCode: CodeBadRequest},

		// 23010: grant_type and required params
		{name: "missing grant_type", contentType: formType, body: "client_id=app&client_secret=s3cret",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "empty grant_type", contentType: formType, body: "grant_type=&client_id=app&client_secret=s3cret",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "wrong grant_type", contentType: formType, body: "grant_type=password&client_id=app&client_secret=s3cret",
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "grant_type is case-sensitive", contentType: formType,
			body: "grant_type=Client_Credentials&client_id=app&client_secret=s3cret", wantStatus: 400, wantCode: CodeBadRequest},
		{name: "no credentials at all", contentType: formType, body: "grant_type=client_credentials",
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "empty client_id", contentType: formType, body: "grant_type=client_credentials&client_id=&client_secret=s3cret",
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "missing client_id", contentType: formType, body: "grant_type=client_credentials&client_secret=s3cret",
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "missing client_secret", contentType: formType, body: "grant_type=client_credentials&client_id=app",
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "empty client_secret", contentType: formType, body: "grant_type=client_credentials&client_id=app&client_secret=",
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "empty json client_secret", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":""}`,
			wantStatus: 401, wantCode: CodeClientAuthFailed},
		{name: "control character in client_id", contentType: formType,
			body: "grant_type=client_credentials&client_id=a%00pp&client_secret=s3cret", wantStatus: 400, wantCode: CodeBadRequest},
		{name: "control character in client_secret", contentType: formType,
			body: "grant_type=client_credentials&client_id=app&client_secret=s3%0Acret", wantStatus: 400, wantCode: CodeBadRequest},
		{name: "DEL in json client_secret", contentType: jsonType,
			body:       `{"grant_type":"client_credentials","client_id":"app","client_secret":"s3\u007fcret"}`,
			wantStatus: 400, wantCode: CodeBadRequest},

		// 413
		{name: "body over 64 KiB", contentType: formType, body: pad(creds+"&pad=", maxBodyBytes+1),
			wantStatus: 413, wantCode: CodeBadRequest, wantHeader: http.Header{"Connection": {"close"}}},
		{name: "chunked body over 64 KiB", contentType: formType, body: pad(creds+"&pad=", maxBodyBytes+1), chunked: true,
			wantStatus: 413, wantCode: CodeBadRequest, wantHeader: http.Header{"Connection": {"close"}}},
		{name: "json body over 64 KiB", contentType: jsonType, body: pad(`{"grant_type":"client_credentials","pad":"`, 2*maxBodyBytes) + `"}`,
			wantStatus: 413, wantCode: CodeBadRequest, wantHeader: http.Header{"Connection": {"close"}}},

		// Authorization header problems
		{name: "two authorization headers", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:s3cret"), basicAuth("app:s3cret")}, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "non-basic scheme", contentType: formType, body: creds,
			auth: []string{"Bearer abc"}, wantStatus: 400, wantCode: CodeBadRequest},
		{name: "bad base64", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{"Basic !!!not-base64"}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "basic without colon", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app")}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "basic with empty secret", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:")}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "basic with empty id", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth(":s3cret")}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "basic with bad percent-encoding", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:s3%zzcret")}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "basic with encoded control character", contentType: formType, body: "grant_type=client_credentials",
			auth: []string{basicAuth("app:s3%0Acret")}, wantStatus: 401, wantCode: CodeClientAuthFailed,
			wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "/outer/token/"
			}
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = chunkedReader{body}
			}
			r, _ := newRequest(http.MethodPost, target, body)
			if tc.chunked {
				r.ContentLength = -1
			}
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}

			got, aerr := parseClientRequest(r, grantParams)
			if tc.wantStatus == 0 {
				if aerr != nil {
					t.Fatalf("parseClientRequest: %v", aerr)
				}
				if got != tc.want {
					t.Fatalf("got %+v, want %+v", got, tc.want)
				}
				return
			}
			if aerr == nil {
				t.Fatalf("parseClientRequest accepted the request: %+v", got)
			}
			if aerr.status != tc.wantStatus || aerr.code != tc.wantCode {
				t.Errorf("got %d/%d (%s), want %d/%d", aerr.status, aerr.code, aerr.message, tc.wantStatus, tc.wantCode)
			}
			for name, want := range tc.wantHeader {
				if got := aerr.header.Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			if tc.wantHeader == nil && aerr.header.Get("WWW-Authenticate") != "" {
				t.Errorf("unexpected WWW-Authenticate %q", aerr.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(aerr.message, "s3cret") {
				t.Errorf("error message %q repeats the secret", aerr.message)
			}
		})
	}
}

func TestGrantScope(t *testing.T) {
	all := []string{"read", "write", "groups"}
	for _, tc := range []struct {
		name      string
		allowed   []string
		requested string
		want      string
		wantErr   bool
	}{
		{name: "no scope requested grants all of the client's", allowed: all, want: "read write groups"},
		{name: "subset", allowed: all, requested: "read", want: "read"},
		{name: "subset keeps the requested order", allowed: all, requested: "write read", want: "write read"},
		{name: "repeated scope granted once", allowed: all, requested: "read read", want: "read"},
		{name: "extra spaces are folded", allowed: all, requested: "  read   groups ", want: "read groups"},
		{name: "the full set", allowed: all, requested: "read write groups", want: "read write groups"},
		{name: "unknown scope", allowed: all, requested: "admin", wantErr: true},
		{name: "one unknown among known", allowed: all, requested: "read admin", wantErr: true},
		{name: "scopes are case-sensitive", allowed: all, requested: "READ", wantErr: true},
		{name: "beyond the client's own scopes", allowed: []string{"read"}, requested: "write", wantErr: true},
		{name: "client's own scopes by default", allowed: []string{"read"}, want: "read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, aerr := grantScope(tc.allowed, tc.requested)
			if tc.wantErr {
				if aerr == nil {
					t.Fatalf("granted %q, want 23010", got)
				}
				if aerr.status != http.StatusBadRequest || aerr.code != CodeBadRequest {
					t.Fatalf("got %d/%d, want 400/23010", aerr.status, aerr.code)
				}
				return
			}
			if aerr != nil {
				t.Fatalf("grantScope: %v", aerr)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		tok, err := randomSecret()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 43 {
			t.Fatalf("token %q is %d chars, want 43", tok, len(tok))
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 {
			t.Fatalf("token %q is not base64url of 32 bytes: %v", tok, err)
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Fatalf("token %q is not base64url without padding", tok)
		}
		if !isB64Token(tok) {
			t.Fatalf("token %q is not a valid b64token", tok)
		}
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
	}
}

func TestTokenEndpoint(t *testing.T) {
	wrongSecretBody := ""
	for _, tc := range []struct {
		name       string
		configure  func(h *Handler)
		call       tokenCall
		wantStatus int
		wantCode   int
		wantScope  string // on success
		wantTTL    int64  // on success; default 36000
		wantHeader http.Header
		noHeader   []string
	}{
		{name: "form credentials issue a token", call: tokenCall{body: formCreds(testClientID, testClientSecret)},
			wantStatus: 200, wantScope: "read write groups",
			wantHeader: http.Header{"Cache-Control": {"no-store"}, "Pragma": {"no-cache"}}},
		{name: "token path answers without its trailing slash", call: tokenCall{target: "/outer/token", body: formCreds(testClientID, testClientSecret)},
			wantStatus: 200, wantScope: "read write groups"},
		{name: "token path matches with doubled slashes", call: tokenCall{target: "//outer//token/", body: formCreds(testClientID, testClientSecret)},
			wantStatus: 200, wantScope: "read write groups"},
		{name: "token path matches case-insensitively", call: tokenCall{target: "/OUTER/Token/", body: formCreds(testClientID, testClientSecret)},
			wantStatus: 200, wantScope: "read write groups"},
		{name: "json credentials issue a token", call: tokenCall{contentType: jsonType,
			body: `{"grant_type":"client_credentials","client_id":"app","client_secret":"` + testClientSecret + `"}`},
			wantStatus: 200, wantScope: "read write groups"},
		{name: "basic credentials issue a token", call: tokenCall{body: "grant_type=client_credentials",
			auth: basicAuth(testClientID + ":" + testClientSecret)}, wantStatus: 200, wantScope: "read write groups"},
		{name: "requested subset scope", call: tokenCall{body: formCreds(testClientID, testClientSecret, "scope", "read")},
			wantStatus: 200, wantScope: "read"},
		{name: "client scope limits the grant", call: tokenCall{body: formCreds(readerClientID, readerSecret)},
			wantStatus: 200, wantScope: "read"},
		{name: "expires_in is token_ttl in whole seconds", configure: func(h *Handler) { h.TokenTTL = 5400_500_000_000 },
			call: tokenCall{body: formCreds(testClientID, testClientSecret)}, wantStatus: 200, wantScope: "read write groups", wantTTL: 5400},
		{name: "custom token path", configure: func(h *Handler) { h.TokenPath = "/auth/token" },
			call: tokenCall{target: "/auth/token", body: formCreds(testClientID, testClientSecret)}, wantStatus: 200, wantScope: "read write groups"},
		{name: "scope beyond the client's is refused", call: tokenCall{body: formCreds(readerClientID, readerSecret, "scope", "write")},
			wantStatus: 400, wantCode: CodeBadRequest, wantHeader: http.Header{"Cache-Control": {"no-store"}}},
		{name: "unknown scope is refused", call: tokenCall{body: formCreds(testClientID, testClientSecret, "scope", "admin")},
			wantStatus: 400, wantCode: CodeBadRequest},
		{name: "GET is 405 with Allow", call: tokenCall{method: http.MethodGet},
			wantStatus: 405, wantCode: CodeBadRequest,
			wantHeader: http.Header{"Allow": {"POST"}, "Cache-Control": {"no-store"}}},
		{name: "wrong secret", call: tokenCall{body: formCreds(testClientID, "wrong")},
			wantStatus: 401, wantCode: CodeClientAuthFailed, wantHeader: http.Header{"Cache-Control": {"no-store"}},
			noHeader: []string{"Www-Authenticate"}},
		{name: "unknown client answers like a wrong secret", call: tokenCall{body: formCreds("nobody", "wrong")},
			wantStatus: 401, wantCode: CodeClientAuthFailed, noHeader: []string{"Www-Authenticate"}},
		{name: "wrong secret with basic carries the Basic challenge",
			call:       tokenCall{body: "grant_type=client_credentials", auth: basicAuth(testClientID + ":wrong")},
			wantStatus: 401, wantCode: CodeClientAuthFailed, wantHeader: http.Header{"Www-Authenticate": {`Basic realm="outer"`}}},
		{name: "bad request carries no-store", call: tokenCall{body: "grant_type=password"},
			wantStatus: 400, wantCode: CodeBadRequest, wantHeader: http.Header{"Cache-Control": {"no-store"}}},
		{name: "query credentials are refused even when right",
			call:       tokenCall{target: "/outer/token/?client_secret=" + testClientSecret, body: "grant_type=client_credentials&client_id=app"},
			wantStatus: 400, wantCode: CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			rec := tc.call.do(t, h)
			for name, want := range tc.wantHeader {
				if got := rec.Header().Values(name); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
			for _, name := range tc.noHeader {
				if v := rec.Header().Get(name); v != "" {
					t.Errorf("unexpected header %s: %q", name, v)
				}
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store on every token endpoint answer", rec.Header().Get("Cache-Control"))
			}
			if tc.wantStatus != http.StatusOK {
				checkErrorEnvelope(t, rec, tc.wantStatus, tc.wantCode)
				if strings.Contains(rec.Body.String(), testClientSecret) {
					t.Error("error body repeats the secret")
				}
				if tc.wantCode == CodeClientAuthFailed && tc.call.auth == "" {
					if wrongSecretBody == "" {
						wrongSecretBody = rec.Body.String()
					} else if rec.Body.String() != wrongSecretBody {
						t.Errorf("unknown client and wrong secret answer differently: %q vs %q", rec.Body.String(), wrongSecretBody)
					}
				}
				return
			}
			env := checkEnvelope(t, rec, http.StatusOK, CodeOK)
			if env.Meta.Message != "token info" {
				t.Errorf("message = %q, want %q", env.Meta.Message, "token info")
			}
			// field order of the document: access_token, token_type, expires_in, scope
			if !strings.Contains(rec.Body.String(), `{"access_token":"`) ||
				!regexpOrder(rec.Body.String(), `"access_token"`, `"token_type"`, `"expires_in"`, `"scope"`) {
				t.Errorf("data fields out of the document's order: %s", rec.Body.String())
			}
			var data struct {
				AccessToken string          `json:"access_token"`
				TokenType   string          `json:"token_type"`
				ExpiresIn   json.RawMessage `json:"expires_in"`
				Scope       string          `json:"scope"`
			}
			if err := json.Unmarshal(env.Data, &data); err != nil {
				t.Fatal(err)
			}
			if len(data.AccessToken) != 43 || !isB64Token(data.AccessToken) {
				t.Errorf("access_token %q is not 43 base64url chars", data.AccessToken)
			}
			if data.TokenType != "Bearer" {
				t.Errorf("token_type = %q", data.TokenType)
			}
			wantTTL := tc.wantTTL
			if wantTTL == 0 {
				wantTTL = 36000
			}
			if string(data.ExpiresIn) != strconv.FormatInt(wantTTL, 10) {
				t.Errorf("expires_in = %s, want the integer %d", data.ExpiresIn, wantTTL)
			}
			if data.Scope != tc.wantScope {
				t.Errorf("scope = %q, want %q", data.Scope, tc.wantScope)
			}
			// the store keeps the token under its SHA-256 only
			rec2, found, err := h.store.Load(t.Context(), hashToken(data.AccessToken))
			if err != nil || !found {
				t.Fatalf("issued token not in the store: %v", err)
			}
			if life := rec2.ExpiresAt - rec2.IssuedAt; rec2.ClientID == "" || rec2.Scope != tc.wantScope || life < wantTTL*1000 || life >= (wantTTL+1)*1000 {
				t.Errorf("stored record %+v", rec2)
			}
			if d := time.Until(time.UnixMilli(rec2.ExpiresAt)); d > time.Duration(wantTTL+1)*time.Second || d < time.Duration(wantTTL-2)*time.Second {
				t.Errorf("stored expiry is %v away, want about %ds", d, wantTTL)
			}
			ms, _ := memoryStoreOf(h)
			for _, k := range ms.tokens.keys() {
				if strings.Contains(string(k[:]), data.AccessToken) || len(k) != 32 {
					t.Errorf("store key %q is not a SHA-256", k)
				}
			}
		})
	}
}

// regexpOrder reports whether the parts appear in s in this order.
func regexpOrder(s string, parts ...string) bool {
	at := 0
	for _, p := range parts {
		i := strings.Index(s[at:], p)
		if i < 0 {
			return false
		}
		at += i + len(p)
	}
	return true
}

func TestTokenEndpointIssuesDistinctTokens(t *testing.T) {
	h := newTestHandler(t, nil)
	a := issueToken(t, h, testClientID, testClientSecret, "")
	b := issueToken(t, h, testClientID, testClientSecret, "")
	if a == b {
		t.Fatal("two token requests got the same token")
	}
}

func TestTokenEndpointThrottle(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		failures  int
		failWith  tokenCall
		then      tokenCall
		want      int // status of then
	}{
		{name: "past ten failures even good credentials get 429",
			failures: 10, failWith: tokenCall{body: formCreds(testClientID, "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 429},
		{name: "ten failures are still allowed",
			failures: 9, failWith: tokenCall{body: formCreds(testClientID, "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 200},
		{name: "unknown clients count as failures",
			failures: 10, failWith: tokenCall{body: formCreds("nobody", "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 429},
		{name: "malformed basic credentials count as failures",
			failures: 10, failWith: tokenCall{body: "grant_type=client_credentials", auth: "Basic !!!"},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 429},
		{name: "bad requests do not count",
			failures: 20, failWith: tokenCall{body: "grant_type=password"},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 200},
		{name: "another address is not throttled",
			failures: 10, failWith: tokenCall{body: formCreds(testClientID, "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret), ip: "198.51.100.7"}, want: 200},
		{name: "configured limit", configure: func(h *Handler) { h.ThrottleFailures = 2 },
			failures: 2, failWith: tokenCall{body: formCreds(testClientID, "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 429},
		{name: "throttle off", configure: func(h *Handler) { h.ThrottleOff = true },
			failures: 30, failWith: tokenCall{body: formCreds(testClientID, "wrong")},
			then: tokenCall{body: formCreds(testClientID, testClientSecret)}, want: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, tc.configure)
			for i := range tc.failures {
				if rec := tc.failWith.do(t, h); rec.Code == http.StatusTooManyRequests || rec.Code == http.StatusOK {
					t.Fatalf("failure %d answered %d", i+1, rec.Code)
				}
			}
			rec := tc.then.do(t, h)
			if tc.want != http.StatusTooManyRequests {
				if rec.Code != tc.want {
					t.Fatalf("status = %d, want %d (%s)", rec.Code, tc.want, rec.Body.String())
				}
				return
			}
			checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
			secs, err := strconv.Atoi(rec.Header().Get("Retry-After"))
			window := int(time.Duration(h.ThrottleWindow) / time.Second)
			if err != nil || secs < 1 || secs > window {
				t.Errorf("Retry-After = %q, want 1..%d seconds", rec.Header().Get("Retry-After"), window)
			}
			if rec.Header().Get("Cache-Control") != "no-store" {
				t.Error("429 lacks Cache-Control: no-store")
			}
		})
	}
}

func TestTokenEndpointThrottleWindowEnds(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.ThrottleFailures = 1
		h.ThrottleWindow = 1_000_000_000 // 1s
	})
	bad := tokenCall{body: formCreds(testClientID, "wrong")}
	good := tokenCall{body: formCreds(testClientID, testClientSecret)}
	if rec := bad.do(t, h); rec.Code != http.StatusUnauthorized {
		t.Fatalf("first failure: %d", rec.Code)
	}
	if rec := good.do(t, h); rec.Code != http.StatusTooManyRequests {
		t.Fatalf("inside the window: %d, want 429", rec.Code)
	}
	time.Sleep(1100 * time.Millisecond)
	if rec := good.do(t, h); rec.Code != http.StatusOK {
		t.Fatalf("after the window: %d, want 200", rec.Code)
	}
}

// TestTokenEndpointNeverLogsCredentials checks every log entry of a
// success, a failure and a refusal for the secret and for any 8-character
// piece of the token.
func TestTokenEndpointNeverLogsCredentials(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newTestHandlerLogging(t, nil, zap.New(core))

	token := issueToken(t, h, testClientID, testClientSecret, "")
	tokenCall{body: formCreds(testClientID, testClientSecret+"x")}.do(t, h)
	tokenCall{body: "grant_type=client_credentials", auth: basicAuth("app:" + testClientSecret + "y")}.do(t, h)
	tokenCall{body: formCreds(testClientID, testClientSecret) + "&client_id=dup"}.do(t, h)
	// protected-path refusals and successes log too
	for _, auth := range []string{"Bearer " + token, "Bearer " + token + "x"} {
		r, _ := newRequest(http.MethodPut, "/outer/device/x/", nil)
		r.Header.Set("Authorization", auth)
		_ = h.ServeHTTP(httptest.NewRecorder(), r, (&nextRecorder{}).handler())
	}

	if logs.Len() == 0 {
		t.Fatal("nothing was logged")
	}
	var all strings.Builder
	for _, e := range logs.All() {
		fmt.Fprintf(&all, "%s %v\n", e.Message, e.ContextMap())
	}
	dump := all.String()
	if strings.Contains(dump, testClientSecret) {
		t.Errorf("log holds the client secret:\n%s", dump)
	}
	for i := 0; i+8 <= len(token); i++ {
		if strings.Contains(dump, token[i:i+8]) {
			t.Fatalf("log holds part of the token (%q):\n%s", token[i:i+8], dump)
		}
	}
}

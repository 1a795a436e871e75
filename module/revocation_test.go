package outergate

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// postForm sends a client-authenticated form POST to path through
// ServeHTTP.
func postForm(t *testing.T, h *Handler, method, path string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	r, _ := newRequest(method, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", formType)
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return rec
}

// creds is a form with a client's credentials and extra name, value pairs.
func creds(id, secret string, extra ...string) url.Values {
	v := url.Values{"client_id": {id}, "client_secret": {secret}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func TestRevoke(t *testing.T) {
	const path = "/outer/token/revoke/"
	for _, tc := range []struct {
		name       string
		method     string
		form       func(token string) url.Values
		wantStatus int
		wantCode   int
		wantLive   bool // the token still loads afterwards
	}{
		{name: "the owner revokes its token", method: http.MethodPost,
			form:       func(tok string) url.Values { return creds(testClientID, testClientSecret, "token", tok) },
			wantStatus: 200, wantCode: CodeOK},
		{name: "another client's token is left alone with the same 200", method: http.MethodPost,
			form:       func(tok string) url.Values { return creds(readerClientID, readerSecret, "token", tok) },
			wantStatus: 200, wantCode: CodeOK, wantLive: true},
		{name: "an unknown token gets the same 200", method: http.MethodPost,
			form:       func(string) url.Values { return creds(testClientID, testClientSecret, "token", "unknown-token") },
			wantStatus: 200, wantCode: CodeOK, wantLive: true},
		{name: "token is required", method: http.MethodPost,
			form:       func(string) url.Values { return creds(testClientID, testClientSecret) },
			wantStatus: 400, wantCode: CodeBadRequest, wantLive: true},
		{name: "a repeated token_type_hint is refused", method: http.MethodPost,
			form: func(tok string) url.Values {
				v := creds(testClientID, testClientSecret, "token", tok)
				v["token_type_hint"] = []string{"access_token", "access_token"}
				return v
			},
			wantStatus: 400, wantCode: CodeBadRequest, wantLive: true},
		{name: "a wrong secret is 401 and revokes nothing", method: http.MethodPost,
			form:       func(tok string) url.Values { return creds(testClientID, "wrong-secret-0123", "token", tok) },
			wantStatus: 401, wantCode: CodeClientAuthFailed, wantLive: true},
		{name: "GET is 405", method: http.MethodGet,
			form:       func(tok string) url.Values { return creds(testClientID, testClientSecret, "token", tok) },
			wantStatus: 405, wantCode: CodeBadRequest, wantLive: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			tok := issueToken(t, h, testClientID, testClientSecret, "")
			rec := postForm(t, h, tc.method, path, tc.form(tok))
			env := checkErrorEnvelope(t, rec, tc.wantStatus, tc.wantCode)
			if tc.wantCode == CodeOK && env.Meta.Message != "token revoked" {
				t.Errorf("message = %q", env.Meta.Message)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			_, live, err := h.store.Load(context.Background(), hashToken(tok))
			if err != nil {
				t.Fatal(err)
			}
			if live != tc.wantLive {
				t.Errorf("token live = %v, want %v", live, tc.wantLive)
			}
		})
	}
}

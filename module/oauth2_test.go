package outergate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestOAuth2Rendering checks that the standard endpoints answer the same
// operations as the envelope ones, in RFC form.
func TestOAuth2Rendering(t *testing.T) {
	h := newTestHandler(t, nil)
	for _, tc := range []struct {
		name       string
		path       string
		form       func() map[string][]string
		wantStatus int
		wantBody   func(t *testing.T, body []byte)
	}{
		{name: "token at the top level", path: "/oauth2/token",
			form: func() map[string][]string {
				return creds(testClientID, testClientSecret, "grant_type", "client_credentials")
			},
			wantStatus: 200,
			wantBody: func(t *testing.T, body []byte) {
				var d tokenData
				if err := json.Unmarshal(body, &d); err != nil || d.AccessToken == "" || d.TokenType != "Bearer" {
					t.Errorf("token answer %s (%v)", body, err)
				}
			}},
		{name: "unsupported grant type", path: "/oauth2/token",
			form:       func() map[string][]string { return creds(testClientID, testClientSecret, "grant_type", "password") },
			wantStatus: 400, wantBody: wantOAuthError("unsupported_grant_type")},
		{name: "wrong secret is invalid_client", path: "/oauth2/token",
			form: func() map[string][]string {
				return creds(testClientID, "bad-secret-012345", "grant_type", "client_credentials")
			},
			wantStatus: 401, wantBody: wantOAuthError("invalid_client")},
		{name: "revocation answers an empty 200", path: "/oauth2/revoke",
			form:       func() map[string][]string { return creds(testClientID, testClientSecret, "token", "unknown") },
			wantStatus: 200,
			wantBody: func(t *testing.T, body []byte) {
				if len(body) != 0 {
					t.Errorf("body %q, want empty", body)
				}
			}},
		{name: "introspection at the top level", path: "/oauth2/introspect",
			form:       func() map[string][]string { return creds(testClientID, testClientSecret, "token", "unknown") },
			wantStatus: 200,
			wantBody: func(t *testing.T, body []byte) {
				if string(body) != `{"active":false}` {
					t.Errorf("body %s", body)
				}
			}},
		{name: "missing token is invalid_request", path: "/oauth2/introspect",
			form:       func() map[string][]string { return creds(testClientID, testClientSecret) },
			wantStatus: 400, wantBody: wantOAuthError("invalid_request")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := postForm(t, h, http.MethodPost, tc.path, tc.form())
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q", got)
			}
			tc.wantBody(t, rec.Body.Bytes())
		})
	}
}

func wantOAuthError(code string) func(*testing.T, []byte) {
	return func(t *testing.T, body []byte) {
		t.Helper()
		var e oauthErrorBody
		if err := json.Unmarshal(body, &e); err != nil || e.Error != code || e.ErrorDescription == "" {
			t.Errorf("error body %s, want error %q (%v)", body, code, err)
		}
	}
}

func TestMetadata(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Issuer = "https://gw.example.com/tenant" })
	for _, tc := range []struct {
		name, method, path string
		wantStatus         int
	}{
		{name: "well-known path", method: http.MethodGet, path: "/.well-known/oauth-authorization-server", wantStatus: 200},
		{name: "well-known path with the issuer's path", method: http.MethodGet, path: "/.well-known/oauth-authorization-server/tenant", wantStatus: 200},
		{name: "POST is 405", method: http.MethodPost, path: "/.well-known/oauth-authorization-server", wantStatus: 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newRequest(tc.method, tc.path, nil)
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tc.wantStatus)
			}
			if tc.wantStatus != 200 {
				return
			}
			var m serverMetadata
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
			if m.Issuer != "https://gw.example.com/tenant" || m.TokenEndpoint != "https://gw.example.com/oauth2/token" ||
				m.RevocationEndpoint != "https://gw.example.com/oauth2/revoke" || m.IntrospectionEndpoint != "https://gw.example.com/oauth2/introspect" {
				t.Errorf("metadata %+v", m)
			}
			if len(m.ScopesSupported) != 3 || m.ScopesSupported[0] != "groups" {
				t.Errorf("scopes %q, want the sorted union", m.ScopesSupported)
			}
		})
	}
}

package outergate

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Clients of the policy tests: one pinned to Basic, one to body
// credentials, a resource server allowed to introspect any token.
const (
	basicOnlyID     = "basic-only"
	postOnlyID      = "post-only"
	resourceID      = "resource-server"
	policySecret    = "policy-secret-0123456789"
	resourceSecret  = "resource-secret-0123456789"
	introspectPath  = "/oauth2/introspect"
	envelopeIntPath = "/outer/token/introspect/"
)

func newPolicyHandler(t *testing.T, configure func(h *Handler)) *Handler {
	t.Helper()
	return newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients,
			Client{ID: basicOnlyID, SecretHashes: []string{sha256Hash(policySecret)}, AuthMethod: AuthMethodBasic},
			Client{ID: postOnlyID, SecretHashes: []string{sha256Hash(policySecret)}, AuthMethod: AuthMethodPost},
			Client{ID: resourceID, SecretHashes: []string{sha256Hash(resourceSecret)}, Introspect: IntrospectAny, AuthMethod: AuthMethodBasic})
		if configure != nil {
			configure(h)
		}
	})
}

// TestAuthMethod checks that a client pinned to one authentication method
// is refused the other on every client-authenticated endpoint, in both
// renderings, with a wrong secret's answer, and that the refusal of a
// right secret is not counted as a failure.
func TestAuthMethod(t *testing.T) {
	h := newPolicyHandler(t, func(h *Handler) { h.ThrottleFailures = 2 })
	type call struct {
		path  string
		form  url.Values
		basic string // id:secret for HTTP Basic; "" for body credentials
	}
	body := func(id, secret string, extra ...string) url.Values { return creds(id, secret, extra...) }
	noCreds := func(extra ...string) url.Values { return creds("", "", extra...) }
	grant := []string{"grant_type", "client_credentials"}
	tok := []string{"token", "x"}
	for _, tc := range []struct {
		name       string
		call       call
		wantStatus int
	}{
		{"basic-only client with Basic gets a token", call{"/outer/token/", noCreds(grant...), basicOnlyID + ":" + policySecret}, 200},
		{"basic-only client with body credentials is refused", call{"/outer/token/", body(basicOnlyID, policySecret, grant...), ""}, 401},
		{"basic-only client refused on the standard token endpoint", call{"/oauth2/token", body(basicOnlyID, policySecret, grant...), ""}, 401},
		{"basic-only client refused on revocation", call{"/outer/token/revoke/", body(basicOnlyID, policySecret, tok...), ""}, 401},
		{"basic-only client refused on introspection", call{introspectPath, body(basicOnlyID, policySecret, tok...), ""}, 401},
		{"post-only client with body credentials gets a token", call{"/outer/token/", body(postOnlyID, policySecret, grant...), ""}, 200},
		{"post-only client with Basic is refused", call{"/outer/token/", noCreds(grant...), postOnlyID + ":" + policySecret}, 401},
		{"post-only client refused on standard revocation", call{"/oauth2/revoke", noCreds(tok...), postOnlyID + ":" + policySecret}, 401},
		{"post-only client refused on envelope introspection", call{envelopeIntPath, noCreds(tok...), postOnlyID + ":" + policySecret}, 401},
		{"a client without auth_method may use Basic", call{"/outer/token/", noCreds(grant...), testClientID + ":" + testClientSecret}, 200},
		{"a client without auth_method may use the body", call{"/outer/token/", body(testClientID, testClientSecret, grant...), ""}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := tc.call.form
			for k, v := range form {
				if len(v) == 1 && v[0] == "" {
					delete(form, k)
				}
			}
			c := tokenCall{target: tc.call.path, body: form.Encode()}
			if tc.call.basic != "" {
				c.auth = basicAuth(tc.call.basic)
			}
			rec := c.do(t, h)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantStatus != 401 {
				return
			}
			wantChallenge := ""
			if tc.call.basic != "" {
				wantChallenge = basicChallenge
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != wantChallenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, wantChallenge)
			}
			if tc.call.path[:7] == "/oauth2" {
				wantOAuthError("invalid_client")(t, rec.Body.Bytes())
			} else {
				env := checkErrorEnvelope(t, rec, 401, CodeClientAuthFailed)
				if env.Meta.Message != "client authentication failed" {
					t.Errorf("message %q: the answer must be a wrong secret's", env.Meta.Message)
				}
			}
		})
	}
	// Six refusals of a right secret from one address, past a throttle of
	// 2: none counted, so the address is not throttled.
	rec := tokenCall{body: formCreds(postOnlyID, policySecret)}.do(t, h)
	if rec.Code != 200 {
		t.Errorf("after refusals of the wrong method with the right secret: %d %s, want 200 (not throttled)", rec.Code, rec.Body)
	}
	// A wrong secret through the wrong method is counted as usual.
	for range 2 {
		tokenCall{body: formCreds(basicOnlyID, "wrong-secret-0000")}.do(t, h)
	}
	if rec := (tokenCall{body: formCreds(postOnlyID, policySecret)}).do(t, h); rec.Code != 429 {
		t.Errorf("after two wrong secrets: %d, want 429", rec.Code)
	}
}

// TestAuthMethodDefault checks the handler-wide auth_method and a client
// overriding it.
func TestAuthMethodDefault(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.AuthMethod = AuthMethodBasic
		h.Clients[1].AuthMethod = AuthMethodBoth
	})
	if rec := (tokenCall{body: formCreds(testClientID, testClientSecret)}).do(t, h); rec.Code != 401 {
		t.Errorf("body credentials under a handler-wide basic: %d, want 401", rec.Code)
	}
	if rec := (tokenCall{body: "grant_type=client_credentials", auth: basicAuth(testClientID + ":" + testClientSecret)}).do(t, h); rec.Code != 200 {
		t.Errorf("Basic under a handler-wide basic: %d, want 200", rec.Code)
	}
	if rec := (tokenCall{body: formCreds(readerClientID, readerSecret)}).do(t, h); rec.Code != 200 {
		t.Errorf("body credentials of a client with auth_method both: %d, want 200", rec.Code)
	}
}

// TestProvisionPolicies checks that bad policy values fail Provision.
func TestProvisionPolicies(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Handler
	}{
		{"client auth_method", Handler{Clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("x")}, AuthMethod: "client_secret_jwt"}}}},
		{"handler auth_method", Handler{AuthMethod: "none"}},
		{"client introspect", Handler{Clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("x")}, Introspect: "all"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			if err := h.provisionClients(); err == nil {
				t.Errorf("provisionClients accepted %+v", tc.h)
			}
		})
	}
}

// TestIntrospectAny checks the resource-server role: it sees every
// client's live tokens with sub, iss and nbf; inactive stays exactly
// {"active":false}; ordinary clients keep seeing only their own.
func TestIntrospectAny(t *testing.T) {
	h := newPolicyHandler(t, nil)
	appTok := issueToken(t, h, testClientID, testClientSecret, "read")
	readerTok := issueToken(t, h, readerClientID, readerSecret, "")
	revoked := issueToken(t, h, testClientID, testClientSecret, "")
	if rec := postForm(t, h, http.MethodPost, "/oauth2/revoke", creds(testClientID, testClientSecret, "token", revoked)); rec.Code != 200 {
		t.Fatalf("revoke: %d", rec.Code)
	}
	expired := "expired-token-for-introspection"
	now := time.Now()
	saveRecord(t, h, expired, TokenRecord{ClientID: testClientID, Scope: "read",
		IssuedAt: now.Add(-2 * time.Hour).UnixMilli(), ExpiresAt: now.Add(-time.Hour).UnixMilli()})
	gone := "token-of-a-removed-client"
	saveRecord(t, h, gone, TokenRecord{ClientID: "removed", Scope: "read", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(time.Hour).UnixMilli()})

	introspect := func(path, token, id, secret string) *http.Request {
		r, _ := newRequest(http.MethodPost, path, strings.NewReader(url.Values{"token": {token}}.Encode()))
		r.Host = "gw.test:8443"
		r.Header.Set("Content-Type", formType)
		r.Header.Set("Authorization", basicAuth(id+":"+secret))
		return r
	}
	for _, tc := range []struct {
		name   string
		token  string
		client string
		want   *introspection // nil: exactly {"active":false}
	}{
		{"another client's token", appTok, resourceID, &introspection{Active: true, ClientID: testClientID, Scope: "read", TokenType: "Bearer",
			Sub: testClientID, Iss: "http://gw.test:8443"}},
		{"a client with its own scope", readerTok, resourceID, &introspection{Active: true, ClientID: readerClientID, Scope: "read",
			TokenType: "Bearer", Sub: readerClientID, Iss: "http://gw.test:8443"}},
		{"a revoked token", revoked, resourceID, nil},
		{"an expired token", expired, resourceID, nil},
		{"a token of a client no longer configured", gone, resourceID, nil},
		{"an unknown token", "no-such-token", resourceID, nil},
		{"an ordinary client still sees only its own", readerTok, testClientID, nil},
		{"an ordinary client's own token has today's fields only", appTok, testClientID,
			&introspection{Active: true, ClientID: testClientID, Scope: "read", TokenType: "Bearer"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			secret := resourceSecret
			if tc.client == testClientID {
				secret = testClientSecret
			}
			rec := httpRecord(t, h, introspect(introspectPath, tc.token, tc.client, secret))
			if rec.Code != 200 {
				t.Fatalf("status %d (%s)", rec.Code, rec.Body)
			}
			if tc.want == nil {
				if rec.Body.String() != `{"active":false}` {
					t.Errorf("body %s, want exactly {\"active\":false}", rec.Body)
				}
				return
			}
			var got introspection
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Exp-got.Iat != int64(DefaultTokenTTL.Seconds()) {
				t.Errorf("exp %d - iat %d, want the token_ttl", got.Exp, got.Iat)
			}
			if tc.want.Sub != "" && got.Nbf != got.Iat {
				t.Errorf("nbf %d, want iat %d", got.Nbf, got.Iat)
			}
			got.Exp, got.Iat, got.Nbf = 0, 0, 0
			if got != *tc.want {
				t.Errorf("got %+v, want %+v", got, *tc.want)
			}
			var fields map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &fields)
			if _, has := fields["aud"]; has {
				t.Errorf("aud present, but tokens name no audience: %s", rec.Body)
			}
		})
	}
	// The configured issuer, on the envelope endpoint too.
	h2 := newPolicyHandler(t, func(h *Handler) { h.Issuer = "https://gateway.example.com/tenant" })
	tok := issueToken(t, h2, testClientID, testClientSecret, "")
	env := checkEnvelope(t, httpRecord(t, h2, introspect(envelopeIntPath, tok, resourceID, resourceSecret)), 200, CodeOK)
	var got introspection
	if err := json.Unmarshal(env.Data, &got); err != nil || !got.Active || got.Iss != "https://gateway.example.com/tenant" || got.Sub != testClientID {
		t.Errorf("envelope introspection by the resource server: %s (%v)", env.Data, err)
	}
}

// TestMetadataPolicies checks the metadata's authentication methods (the
// union over the clients), response_types_supported and the OpenID
// Connect Discovery paths.
func TestMetadataPolicies(t *testing.T) {
	get := func(t *testing.T, h *Handler, path string) (int, serverMetadata) {
		t.Helper()
		r, _ := newRequest(http.MethodGet, path, nil)
		rec := httpRecord(t, h, r)
		var m serverMetadata
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code, m
	}
	both := []string{"client_secret_basic", "client_secret_post"}
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		want      []string
	}{
		{"default: both", nil, both},
		{"every client pinned to basic", func(h *Handler) {
			h.AuthMethod = AuthMethodBasic
		}, []string{"client_secret_basic"}},
		{"every client pinned to post", func(h *Handler) {
			for i := range h.Clients {
				h.Clients[i].AuthMethod = AuthMethodPost
			}
		}, []string{"client_secret_post"}},
		{"one of each", func(h *Handler) {
			h.Clients[0].AuthMethod = AuthMethodPost
			h.Clients[1].AuthMethod = AuthMethodBasic
		}, both},
		{"no clients: the handler default", func(h *Handler) { h.Clients = nil; h.AuthMethod = AuthMethodPost }, []string{"client_secret_post"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, m := get(t, newTestHandler(t, tc.configure), "/.well-known/oauth-authorization-server")
			for name, got := range map[string][]string{"token": m.TokenEndpointAuthMethodsSupported,
				"revocation": m.RevocationEndpointAuthMethodsSupported, "introspection": m.IntrospectionEndpointAuthMethodsSupported} {
				if !slices.Equal(got, tc.want) {
					t.Errorf("%s_endpoint_auth_methods_supported = %q, want %q", name, got, tc.want)
				}
			}
			if !slices.Equal(m.ResponseTypesSupported, []string{"none"}) {
				t.Errorf("response_types_supported = %q, want [none]", m.ResponseTypesSupported)
			}
		})
	}
	h := newTestHandler(t, func(h *Handler) { h.Issuer = "https://gw.example.com/tenant" })
	for _, path := range []string{"/.well-known/openid-configuration", "/.well-known/openid-configuration/tenant",
		"/tenant/.well-known/openid-configuration", "/.well-known/oauth-authorization-server/tenant"} {
		if status, m := get(t, h, path); status != 200 || m.Issuer != "https://gw.example.com/tenant" {
			t.Errorf("%s: %d %+v", path, status, m)
		}
	}
	off := newTestHandler(t, func(h *Handler) { h.OAuth2TokenPath = "off" })
	r, _ := newRequest(http.MethodGet, "/.well-known/openid-configuration", nil)
	next := &nextRecorder{}
	if err := off.ServeHTTP(httptest.NewRecorder(), r, next.handler()); err != nil || !next.called {
		t.Errorf("with oauth2_token_path off, openid-configuration must go to the next handler (called %v, %v)", next.called, err)
	}
}

// TestTokenEndpointRFCDeviations checks, in RFC rendering, the answers an
// unmodified client library meets: an empty scope is the default grant, a
// repeated scope is invalid_request, and missing credentials are
// invalid_client.
func TestTokenEndpointRFCDeviations(t *testing.T) {
	h := newTestHandler(t, nil)
	grant := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name       string
		body       string
		auth       string
		wantStatus int
		wantError  string // "" on success
		wantScope  string
	}{
		{"empty scope grants the default", formCreds(testClientID, testClientSecret) + "&scope=", "", 200, "", "read write groups"},
		{"empty scope with Basic grants the client's", grant.Encode() + "&scope=", basicAuth(readerClientID + ":" + readerSecret), 200, "", "read"},
		{"duplicate scope is invalid_request", formCreds(testClientID, testClientSecret) + "&scope=read&scope=read", "", 400, "invalid_request", ""},
		{"duplicate empty scope is invalid_request", formCreds(testClientID, testClientSecret) + "&scope=&scope=", "", 400, "invalid_request", ""},
		{"client_id without a secret is invalid_client", grant.Encode() + "&client_id=" + testClientID, "", 401, "invalid_client", ""},
		{"empty client_secret is invalid_client", grant.Encode() + "&client_id=" + testClientID + "&client_secret=", "", 401, "invalid_client", ""},
		{"no credentials at all is invalid_client", grant.Encode(), "", 401, "invalid_client", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tokenCall{target: "/oauth2/token", body: tc.body, auth: tc.auth}.do(t, h)
			if rec.Code != tc.wantStatus {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.wantStatus, rec.Body)
			}
			if tc.wantError != "" {
				wantOAuthError(tc.wantError)(t, rec.Body.Bytes())
				if rec.Header().Get("WWW-Authenticate") != "" {
					t.Errorf("WWW-Authenticate %q without Basic", rec.Header().Get("WWW-Authenticate"))
				}
				return
			}
			var d tokenData
			if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil || d.Scope != tc.wantScope {
				t.Errorf("token %s, want scope %q (%v)", rec.Body, tc.wantScope, err)
			}
		})
	}
	// The envelope endpoint: a client_id without a secret is 23020.
	checkErrorEnvelope(t, tokenCall{body: grant.Encode() + "&client_id=" + testClientID}.do(t, h), 401, CodeClientAuthFailed)
}

// httpRecord serves r with h and returns the answer.
func httpRecord(t *testing.T, h *Handler, r *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return rec
}

// TestAuthMethodsZeroValue checks that a Client whose policy was never
// parsed (the zero authMethods) allows both methods, the default, rather
// than none.
func TestAuthMethodsZeroValue(t *testing.T) {
	var c Client
	if !c.auth.allows(true) || !c.auth.allows(false) {
		t.Errorf("zero authMethods allows basic %v, post %v; want both", c.auth.allows(true), c.auth.allows(false))
	}
}

// TestProvisionClientPolicies checks that provisionClient, which managed
// clients (admin API) go through too, parses auth_method and introspect
// and applies the handler's auth_method default.
func TestProvisionClientPolicies(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.AuthMethod = AuthMethodPost })
	c := Client{ID: "managed-rs", SecretHashes: []string{sha256Hash("x")}, AuthMethod: AuthMethodBasic, Introspect: IntrospectAny}
	if err := h.provisionClient(&c, caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	if !c.introspectAny || !c.auth.allows(true) || c.auth.allows(false) {
		t.Errorf("managed client: introspectAny %v, basic %v, post %v; want true, true, false", c.introspectAny, c.auth.allows(true), c.auth.allows(false))
	}
	d := Client{ID: "managed-default", SecretHashes: []string{sha256Hash("x")}}
	if err := h.provisionClient(&d, caddy.NewReplacer()); err != nil {
		t.Fatal(err)
	}
	if d.introspectAny || d.auth.allows(true) || !d.auth.allows(false) {
		t.Errorf("managed client without policies: introspectAny %v, basic %v, post %v; want the handler's post only", d.introspectAny, d.auth.allows(true), d.auth.allows(false))
	}
	for _, bad := range []Client{
		{ID: "b1", SecretHashes: []string{sha256Hash("x")}, AuthMethod: "jwt"},
		{ID: "b2", SecretHashes: []string{sha256Hash("x")}, Introspect: "everything"},
	} {
		if err := h.provisionClient(&bad, caddy.NewReplacer()); err == nil {
			t.Errorf("provisionClient accepted %+v", bad)
		}
	}
}

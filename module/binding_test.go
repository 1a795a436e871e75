package outergate

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestTokenBinding: handlers sharing one store accept each other's tokens
// only when they share the client's credential and issuer (issue 12,
// item 10).
func TestTokenBinding(t *testing.T) {
	const id = "shared"
	client := func(secret string) func(h *Handler) {
		return func(h *Handler) {
			h.Clients = append(h.Clients, Client{ID: id, SecretHashes: []string{sha256Hash(secret)}})
		}
	}
	both := func(fs ...func(h *Handler)) func(h *Handler) {
		return func(h *Handler) {
			for _, f := range fs {
				f(h)
			}
		}
	}
	issuer := func(iss string) func(h *Handler) { return func(h *Handler) { h.Issuer = iss } }
	rotated := func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: id, SecretHashes: []string{sha256Hash("other-secret-0001"), sha256Hash("site-one-secret-01")}})
	}
	for _, tc := range []struct {
		name   string
		second func(h *Handler)
		want   bool
	}{
		{"same client id, another secret", client("site-two-secret-02"), false},
		{"same credential", client("site-one-secret-01"), true},
		{"same credential among several hashes", rotated, true},
		{"same credential, another issuer", both(client("site-one-secret-01"), issuer("https://two.example")), false},
		{"client not configured", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// newTestHandler names the store after the test: both handlers
			// share it, as two sites share the default memory store.
			h1 := newTestHandler(t, client("site-one-secret-01"))
			h2 := newTestHandler(t, tc.second)
			tok := issueToken(t, h1, id, "site-one-secret-01", "")

			r, _ := newRequest("GET", deviceInfo, nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			next := &nextRecorder{}
			if err := h2.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called != tc.want {
				t.Fatalf("second handler forwarded = %v, want %v (answer %d %s)", next.called, tc.want, rec.Code, rec.Body)
			}
			if !tc.want {
				checkErrorEnvelope(t, rec, http.StatusUnauthorized, CodeInvalidToken)
			}
			// The first handler still accepts its own token.
			r, _ = newRequest("GET", deviceInfo, nil)
			r.Header.Set("Authorization", "Bearer "+tok)
			next = &nextRecorder{}
			if err := h1.ServeHTTP(httptest.NewRecorder(), r, next.handler()); err != nil || !next.called {
				t.Fatalf("issuing handler refused its own token (%v)", err)
			}
		})
	}
}

// TestTokenBindingEndsWithItsSecret: removing the secret hash a token was
// issued with ends the token; a token with no binding (issued before
// bindings existed) is refused.
func TestTokenBindingEndsWithItsSecret(t *testing.T) {
	const id, oldSecret, newSecret = "rotating", "old-secret-00000001", "new-secret-00000002"
	h1 := newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: id, SecretHashes: []string{sha256Hash(oldSecret), sha256Hash(newSecret)}})
	})
	oldTok := issueToken(t, h1, id, oldSecret, "")
	newTok := issueToken(t, h1, id, newSecret, "")
	// The reloaded config keeps only the new hash (same store).
	h2 := newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: id, SecretHashes: []string{sha256Hash(newSecret)}})
	})
	unbound := "unbound-token-0000000000000000000000000001"
	ms, _ := memoryStoreOf(h2)
	rec := TokenRecord{ClientID: id, Scope: "read", IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().Add(time.Hour).UnixMilli()}
	key := hashToken(unbound)
	ms.tokens.keep(t, key, rec, time.Hour)
	for tok, want := range map[string]bool{oldTok: false, newTok: true, unbound: false} {
		r, _ := newRequest("GET", deviceInfo, nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		next := &nextRecorder{}
		rec := httptest.NewRecorder()
		if err := h2.ServeHTTP(rec, r, next.handler()); err != nil {
			t.Fatal(err)
		}
		if next.called != want {
			t.Errorf("token %s forwarded = %v, want %v (%d %s)", hashToken(tok).Fingerprint(), next.called, want, rec.Code, rec.Body)
		}
	}
}

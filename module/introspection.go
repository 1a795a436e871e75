package outergate

import (
	"net/http"
	"time"
)

// introspection is an RFC 7662 §2.2 answer. Only active carries when the
// token is not an active token the caller may see. Sub, Iss and Nbf are
// answered to `introspect any` clients (resource servers) only, so that
// the answer of an ordinary client keeps its fields.
type introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id,omitempty"`
	Scope     string `json:"scope,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Iss       string `json:"iss,omitempty"`
	Nbf       int64  `json:"nbf,omitempty"`
}

// introspect runs an RFC 7662 introspection. A client sees its own tokens;
// an `introspect any` client sees every client's. Any other token, and a
// revoked or expired one, or one whose client is gone, is
// {"active": false}.
func (h *Handler) introspect(r *http.Request) (any, *apiError, error) {
	req, aerr, err := authenticateClient(h.auth, r, tokenParam)
	if err != nil || aerr != nil {
		return nil, aerr, err
	}
	caller := req.client
	rec, found, err := h.store.Load(r.Context(), hashToken(req.params))
	if err != nil {
		return nil, nil, err
	}
	// The token's client must be configured or managed here and bind it
	// (binding.go), whoever asks.
	owner := lookupClient(h.clients, h.managed, rec.ClientID)
	if !found || rec.Revoked || rec.expired(time.Now()) || !owner.binds(rec) ||
		(rec.ClientID != caller.ID && !caller.introspectAny) {
		return introspection{Active: false}, nil, nil
	}
	rec.Scope = owner.currentScope(rec.Scope)
	ans := introspection{
		Active:    true,
		ClientID:  rec.ClientID,
		Scope:     rec.Scope,
		Exp:       rec.ExpiresAt / 1000,
		Iat:       rec.IssuedAt / 1000,
		TokenType: "Bearer",
	}
	if caller.introspectAny {
		// A client-credentials token's subject is its client; it is valid
		// from issuance; it names no audience (RFC 7662 §2.2).
		ans.Sub = rec.ClientID
		ans.Iss, _ = h.issuer(r)
		ans.Nbf = ans.Iat
	}
	return ans, nil, nil
}

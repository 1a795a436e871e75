package outergate

import (
	"net/http"
	"time"
)

// introspection is an RFC 7662 §2.2 answer. Only active carries when the
// token is not an active token of the caller.
type introspection struct {
	Active    bool   `json:"active"`
	ClientID  string `json:"client_id,omitempty"`
	Scope     string `json:"scope,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	TokenType string `json:"token_type,omitempty"`
}

// introspect runs an RFC 7662 introspection for the caller's own tokens;
// any other token is {"active": false}.
func (h *Handler) introspect(r *http.Request) (any, *apiError, error) {
	req, aerr, err := authenticateClient(h.auth, r, tokenParam)
	if err != nil || aerr != nil {
		return nil, aerr, err
	}
	rec, found, err := h.store.Load(r.Context(), hashToken(req.params))
	if err != nil {
		return nil, nil, err
	}
	if !found || rec.ClientID != req.client.ID || !req.client.binds(rec) || rec.expired(time.Now()) {
		return introspection{Active: false}, nil, nil
	}
	rec.Scope = req.client.currentScope(rec.Scope)
	return introspection{
		Active:    true,
		ClientID:  rec.ClientID,
		Scope:     rec.Scope,
		Exp:       rec.ExpiresAt / 1000,
		Iat:       rec.IssuedAt / 1000,
		TokenType: "Bearer",
	}, nil, nil
}

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

// serveIntrospect answers RFC 7662 introspection at
// <token_path>introspect/, in the envelope's data.
func (h *Handler) serveIntrospect(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	info, aerr, err := h.introspect(r)
	if err != nil {
		return h.storeError(w, "introspecting token", err)
	}
	if aerr != nil {
		return h.respond(w, aerr)
	}
	return writeEnvelope(w, http.StatusOK, CodeOK, "token introspection", info)
}

// introspect runs an RFC 7662 introspection for the caller's own tokens;
// any other token is {"active": false}.
func (h *Handler) introspect(r *http.Request) (introspection, *apiError, error) {
	if r.Method != http.MethodPost {
		return introspection{}, methodNotAllowed(), nil
	}
	var token string
	client, _, aerr, err := h.authenticateClient(r, tokenParam(&token))
	if err != nil || aerr != nil {
		return introspection{}, aerr, err
	}
	rec, found, err := h.store.Load(r.Context(), hashToken(token))
	if err != nil {
		return introspection{}, nil, err
	}
	if !found || rec.ClientID != client.ID || rec.expired(time.Now()) {
		return introspection{Active: false}, nil, nil
	}
	return introspection{
		Active:    true,
		ClientID:  rec.ClientID,
		Scope:     rec.Scope,
		Exp:       rec.ExpiresAt / 1000,
		Iat:       rec.IssuedAt / 1000,
		TokenType: "Bearer",
	}, nil, nil
}

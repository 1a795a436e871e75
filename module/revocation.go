package outergate

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// tokenParam reads the `token` parameter that RFC 7009 and RFC 7662
// requests carry; token_type_hint is optional and, with one kind of token,
// ignored (RFC 7009 §2.1).
func tokenParam(dst *string) func(params) *apiError {
	return func(p params) *apiError {
		tok, found, err := single("token", p)
		switch {
		case err != nil:
			return badRequest(err.Error())
		case !found:
			return badRequest("token is required")
		}
		if _, _, err := single("token_type_hint", p); err != nil {
			return badRequest(err.Error())
		}
		*dst = tok
		return nil
	}
}

// serveRevoke answers RFC 7009 revocation at <token_path>revoke/ in the
// envelope.
func (h *Handler) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	aerr, err := h.revoke(r)
	if err != nil {
		return h.storeError(w, "revoking token", err)
	}
	if aerr != nil {
		return h.respond(w, aerr)
	}
	return writeEnvelope(w, http.StatusOK, CodeOK, "token revoked", nil)
}

// revoke runs an RFC 7009 revocation: a client may revoke only its own
// tokens. Unknown tokens, and tokens of other clients, get the same 200 as a
// success (RFC 7009 §2.2), so the endpoint tells nothing about tokens the
// caller does not own.
func (h *Handler) revoke(r *http.Request) (*apiError, error) {
	if r.Method != http.MethodPost {
		return methodNotAllowed(), nil
	}
	var token string
	client, _, aerr, err := h.authenticateClient(r, tokenParam(&token))
	if err != nil || aerr != nil {
		return aerr, err
	}
	key := hashToken(token)
	rec, found, err := h.store.Load(r.Context(), key)
	if err != nil {
		return nil, err
	}
	if !found || rec.ClientID != client.ID {
		if found {
			h.audit.Info("revocation of another client's token ignored",
				zap.String("client_id", client.ID), zap.String("remote_ip", clientIP(r)), zap.String("token_fp", key.Fingerprint()))
		}
		return nil, nil
	}
	revoked, err := h.store.RevokeToken(r.Context(), key)
	if err != nil {
		return nil, err
	}
	if revoked {
		metricRevocations.WithLabelValues("client").Inc()
		h.audit.Info("token revoked", zap.String("via", "client"),
			zap.String("client_id", client.ID), zap.String("remote_ip", clientIP(r)), zap.String("token_fp", key.Fingerprint()))
	}
	return nil, nil
}

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

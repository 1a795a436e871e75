package outergate

import (
	"net/http"

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

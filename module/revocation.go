package outergate

import (
	"net/http"

	"go.uber.org/zap"
)

// tokenParam reads the `token` parameter that RFC 7009 and RFC 7662
// requests carry; token_type_hint is optional and, with one kind of token,
// ignored (RFC 7009 §2.1).
func tokenParam(p params) (string, *apiError) {
	tok, found, err := single("token", p)
	switch {
	case err != nil:
		return "", badRequest(err.Error())
	case !found:
		return "", badRequest("token is required")
	}
	if _, _, err := single("token_type_hint", p); err != nil {
		return "", badRequest(err.Error())
	}
	return tok, nil
}

// revoke runs an RFC 7009 revocation: a client may revoke only its own
// tokens. Unknown tokens, and tokens of other clients, get the same 200 as a
// success (RFC 7009 §2.2), so the endpoint tells nothing about tokens the
// caller does not own. It answers no data.
func (h *Handler) revoke(r *http.Request) (any, *apiError, error) {
	req, aerr, err := authenticateClient(h.auth, r, tokenParam)
	if err != nil || aerr != nil {
		return nil, aerr, err
	}
	client := req.client
	key := hashToken(req.params)
	rec, found, err := h.store.Load(r.Context(), key)
	if err != nil {
		return nil, nil, err
	}
	if !found || rec.ClientID != client.ID || !client.binds(rec) {
		if found {
			h.audit.Info("revocation of another client's token ignored",
				zap.String("client_id", client.ID), zap.String("remote_ip", clientIP(r)), zap.String("token_fp", key.Fingerprint()))
		}
		return nil, nil, nil
	}
	revoked, err := h.store.RevokeToken(r.Context(), key)
	if err != nil {
		return nil, nil, err
	}
	if revoked {
		countRevocations(viaClient, 1)
		h.audit.Info("token revoked", zap.String("via", string(viaClient)),
			zap.String("client_id", client.ID), zap.String("remote_ip", clientIP(r)), zap.String("token_fp", key.Fingerprint()))
	}
	return nil, nil, nil
}

package outergate

import (
	"net/http"

	"go.uber.org/zap"
)

// auditRefusal writes one refusal to the audit log (the module's logger
// named "audit", at Info): the reason, the client address and whatever
// identifies the client or token (its id, a token fingerprint). Never a
// secret or a token. A nil e logs nothing.
func (h *Handler) auditRefusal(r *http.Request, msg string, e *apiError, fields ...zap.Field) {
	if e == nil {
		return
	}
	if c := h.audit.Check(zap.InfoLevel, msg); c != nil {
		c.Write(append(fields,
			zap.Int("status", e.status),
			zap.Int("code", e.code),
			zap.String("reason", e.message),
			zap.String("remote_ip", clientIP(r)),
			zap.String("path", r.URL.Path))...)
	}
}

// storeError answers 503 + 23090 in the envelope when the token store
// cannot answer.
func (h *Handler) storeError(w http.ResponseWriter, op string, err error) error {
	return h.respond(w, h.failClosed(op, err))
}

// failClosed logs a store failure at Error level, since the server will
// not, and returns the fail-closed answer, for either rendering.
func (h *Handler) failClosed(op string, err error) *apiError {
	h.logger.Error("token store failed", zap.String("op", op), zap.Error(err))
	return storeUnavailable()
}

// storeUnavailable is the fail-closed answer when the store cannot answer.
func storeUnavailable() *apiError {
	return oauthError(newAPIError(http.StatusServiceUnavailable, CodeInternal, "token store unavailable"), "temporarily_unavailable")
}

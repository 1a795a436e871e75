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

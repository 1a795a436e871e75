package outergate

import (
	"net/http"

	"go.uber.org/zap"
)

// auditLoggerName names the audit log under the handler's logger, whose
// name is the module ID: "http.handlers.outergate.audit".
const auditLoggerName = "audit"

// auditLog is the audit log: issuance, revocation and refusals, at Info.
// It identifies clients by id and tokens by fingerprint, never by a secret
// or a token.
type auditLog struct{ *zap.Logger }

// refusal writes one refusal: the reason, the client address and whatever
// identifies the client or token (its id, a token fingerprint). A nil e
// logs nothing.
func (a auditLog) refusal(r *http.Request, msg string, e *apiError, fields ...zap.Field) {
	if e == nil {
		return
	}
	if c := a.Check(zap.InfoLevel, msg); c != nil {
		c.Write(append(fields,
			zap.Int("status", e.status),
			zap.Int("code", e.code),
			zap.String("reason", e.message),
			zap.String("remote_ip", clientIP(r)),
			zap.String("path", r.URL.Path))...)
	}
}

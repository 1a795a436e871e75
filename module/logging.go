package outergate

import (
	"net/http"

	"go.uber.org/zap"
)

// logRefusal logs a refused request at Debug level: a bad token or
// parameter is the client's mistake, not the server's. It never logs a
// credential.
func (h *Handler) logRefusal(r *http.Request, msg string, e *apiError, fields ...zap.Field) {
	if c := h.logger.Check(zap.DebugLevel, msg); c != nil {
		c.Write(append(fields,
			zap.Int("status", e.status),
			zap.Int("code", e.code),
			zap.String("reason", e.message),
			zap.String("remote_ip", clientIP(r)),
			zap.String("path", r.URL.Path))...)
	}
}

// storeError answers 503 + 23090 when the token store cannot answer, and
// logs it at Error level, since the server will not.
func (h *Handler) storeError(w http.ResponseWriter, op string, err error) error {
	h.logger.Error("token store failed", zap.String("op", op), zap.Error(err))
	return h.respond(w, newAPIError(http.StatusServiceUnavailable, CodeInternal, "token store unavailable"))
}

// internalError answers 500 + 23090 for a failure inside outergate.
func (h *Handler) internalError(w http.ResponseWriter, op string, err error) error {
	h.logger.Error("internal error", zap.String("op", op), zap.Error(err))
	return h.respond(w, newAPIError(http.StatusInternalServerError, CodeInternal, "internal error"))
}

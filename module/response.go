package outergate

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
)

// Codes of the platform's envelope (spec/API.md) and of outergate (DESIGN.md).
const (
	CodeOK                 = 0
	CodeBadRequest         = 23010
	CodeClientAuthFailed   = 23020
	CodeInvalidToken       = 23021
	CodeInsufficientScope  = 23022
	CodeTooManyFailures    = 23029
	CodeDeviceIDError      = 23030
	CodeDeviceDisabled     = 23031
	CodeInternal           = 23090
	contentTypeJSONUTF8    = "application/json; charset=utf-8"
	maxEnvelopeMessageSize = 200
)

// Meta is the "meta" object of the platform's envelope.
type Meta struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// Envelope is the platform's JSON envelope: {"meta":{"message","code"},"data"}.
// Data is null unless there is data.
type Envelope struct {
	Meta Meta `json:"meta"`
	Data any  `json:"data"`
}

// apiError is an answer outergate gives in the envelope instead of calling
// the next handler. It carries the HTTP status, the envelope code and the
// extra headers (WWW-Authenticate, Allow, Retry-After) of the answer.
type apiError struct {
	status  int
	code    int
	message string
	header  http.Header
	oauth   string // the RFC 6749 §5.2 error code, "" for the default of code
}

func (e *apiError) Error() string {
	return strconv.Itoa(e.status) + " " + strconv.Itoa(e.code) + ": " + e.message
}

// newAPIError returns an apiError; header pairs are name, value, name, value...
func newAPIError(status, code int, message string, headerPairs ...string) *apiError {
	e := &apiError{status: status, code: code, message: message}
	if len(headerPairs) > 0 {
		e.header = make(http.Header, len(headerPairs)/2)
		for i := 0; i+1 < len(headerPairs); i += 2 {
			e.header.Set(headerPairs[i], headerPairs[i+1])
		}
	}
	return e
}

func badRequest(message string) *apiError {
	return newAPIError(http.StatusBadRequest, CodeBadRequest, message)
}

// oauthError sets the RFC 6749 §5.2 error code e stands for.
func oauthError(e *apiError, code string) *apiError {
	e.oauth = code
	return e
}

// writeEnvelope writes one envelope with the given status. It replaces any
// Content-Type and drops Content-Length and Content-Encoding that an upstream
// may have left in the shared header map.
func writeEnvelope(w http.ResponseWriter, status, code int, message string, data any) error {
	body, err := json.Marshal(Envelope{Meta: Meta{Message: message, Code: code}, Data: data})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeJSONUTF8)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Content-Encoding")
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

// writeAPIError writes e as an envelope, with its headers.
func writeAPIError(w http.ResponseWriter, e *apiError) error {
	for name, values := range e.header {
		w.Header()[name] = values
	}
	return writeEnvelope(w, e.status, e.code, e.message, nil)
}

// respond writes an apiError; a failure to write is only logged, since the
// client is gone.
func (h *Handler) respond(w http.ResponseWriter, e *apiError) error {
	if err := writeAPIError(w, e); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		h.logger.Debug("writing envelope", zap.Error(err))
	}
	return nil
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

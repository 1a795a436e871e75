package outergate

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"
)

// This file is the response layer: the codes, the error type every check
// returns, and one renderer per endpoint family (the platform's envelope,
// the RFC 6749 §5 JSON), so that each operation is written once and
// rendered twice. The codes and statuses are in docs/API.md.

// Codes of the platform's envelope and of outergate (docs/API.md).
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

// apiError is an answer outergate gives instead of calling the next
// handler. It carries the HTTP status, the envelope code, the extra headers
// (WWW-Authenticate, Allow, Retry-After) and the RFC 6749 §5.2 error code of
// the answer; a renderer writes it.
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

// copyHeaders sets e's extra headers on the answer.
func (e *apiError) copyHeaders(w http.ResponseWriter) {
	for name, values := range e.header {
		w.Header()[name] = values
	}
}

func badRequest(message string) *apiError {
	return newAPIError(http.StatusBadRequest, CodeBadRequest, message)
}

// oauthError sets the RFC 6749 §5.2 error code e stands for.
func oauthError(e *apiError, code string) *apiError {
	e.oauth = code
	return e
}

// methodNotAllowed is the answer of the POST-only endpoints to other methods.
func methodNotAllowed() *apiError {
	return newAPIError(http.StatusMethodNotAllowed, CodeBadRequest,
		"method not allowed: use POST", "Allow", http.MethodPost)
}

// storeUnavailable is the fail-closed answer when the store cannot answer.
func storeUnavailable() *apiError {
	return oauthError(newAPIError(http.StatusServiceUnavailable, CodeInternal, "token store unavailable"), "temporarily_unavailable")
}

// storeFailed logs a store failure at Error level, since the server will
// not (the answer is written, not returned), and returns the fail-closed
// answer, for either rendering.
func storeFailed(logger *zap.Logger, op string, err error) *apiError {
	logger.Error("token store failed", zap.String("op", op), zap.Error(err))
	return storeUnavailable()
}

// noStore marks an answer that carries or concerns credentials as not to
// be cached (RFC 6749 §5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// renderer writes the answers of one endpoint family.
type renderer interface {
	// success writes a 200 answer; message is the envelope's, data the
	// operation's result (nil: none).
	success(w http.ResponseWriter, message string, data any) error
	// failure writes e; a failure to write is only logged, since the
	// client is gone.
	failure(w http.ResponseWriter, e *apiError) error
}

// envelopeRenderer answers in the platform's envelope: the operation's
// result in "data", errors with their code in "meta".
type envelopeRenderer struct{ logger *zap.Logger }

func (envelopeRenderer) success(w http.ResponseWriter, message string, data any) error {
	return writeEnvelope(w, http.StatusOK, CodeOK, message, data)
}

func (r envelopeRenderer) failure(w http.ResponseWriter, e *apiError) error {
	e.copyHeaders(w)
	logWriteError(r.logger, writeEnvelope(w, e.status, e.code, e.message, nil))
	return nil
}

// rfcRenderer answers as RFC 6749 §5.1/§5.2, RFC 7009 and RFC 7662 do: the
// result at the top level (an empty body when there is none), errors as
// {"error", "error_description"}.
type rfcRenderer struct{ logger *zap.Logger }

func (rfcRenderer) success(w http.ResponseWriter, _ string, data any) error {
	if data == nil {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	return writeJSON(w, http.StatusOK, data)
}

// oauthErrorBody is an RFC 6749 §5.2 error.
type oauthErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

func (r rfcRenderer) failure(w http.ResponseWriter, e *apiError) error {
	code := e.oauth
	if code == "" {
		switch e.code {
		case CodeClientAuthFailed:
			code = "invalid_client"
		case CodeTooManyFailures, CodeInternal:
			code = "temporarily_unavailable"
		default:
			code = "invalid_request"
		}
	}
	e.copyHeaders(w)
	logWriteError(r.logger, writeJSON(w, e.status, oauthErrorBody{Error: code, ErrorDescription: e.message}))
	return nil
}

// logWriteError logs, at Debug, a failure to write an answer.
func logWriteError(logger *zap.Logger, err error) {
	if err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		logger.Debug("writing answer", zap.Error(err))
	}
}

// writeEnvelope writes one envelope with the given status.
func writeEnvelope(w http.ResponseWriter, status, code int, message string, data any) error {
	return writeJSON(w, status, Envelope{Meta: Meta{Message: message, Code: code}, Data: data})
}

// writeJSON writes v as the whole JSON answer. It replaces any Content-Type
// and drops a Content-Encoding that an upstream may have left in the shared
// header map.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
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

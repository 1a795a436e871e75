package outergate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// maxInspect bounds how much of an upstream error body is looked at.
const maxInspect = 64 << 10

// normalizer calls the next handler (reverse_proxy) for a protected
// request and turns its errors, written or returned, into the envelope: it
// records the answer, classifies the upstream status (with ErrorCodes
// overriding the code) and keeps a cleaned upstream message. Provision
// builds it once.
type normalizer struct {
	errorCodes map[int]int
	logger     *zap.Logger
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// proxy calls next (reverse_proxy) through a capture and puts its errors,
// written or returned, into the envelope: 2xx, 304 and 101 pass through,
// every other final status becomes an envelope that carries only the
// headers the gateway chose (those set before next ran, and a valid
// Retry-After), whether or not the upstream sent its own envelope.
func (n *normalizer) proxy(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) (err error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	ctx, cancel := context.WithCancel(r.Context())
	c := newCapture(w, buf, cancel)
	defer func() {
		c.done()
		if buf.Cap() <= maxPooledBuffer {
			bufPool.Put(buf)
		}
	}()

	err = n.serveNext(c, r.WithContext(ctx), next)
	if c.final && !c.recorded() {
		return err // already streamed to the client
	}
	if !c.final {
		if err == nil {
			return nil
		}
		return n.handlerError(w, r, err)
	}
	// A recorded answer; if reading its body failed midway or was cut,
	// the status still says what happened.
	return n.normalize(w, r, c)
}

// serveNext calls next. reverse_proxy aborts with http.ErrAbortHandler
// when copying a body fails, which it does on purpose when capture cuts an
// error body; a recorded answer has sent nothing yet, so that abort is
// turned into an ordinary return and the envelope answered.
func (n *normalizer) serveNext(c *capture, r *http.Request, next caddyhttp.Handler) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler || !c.recorded() { //nolint:errorlint // the sentinel itself
				panic(v)
			}
			err = nil
		}
	}()
	return next.ServeHTTP(c, r)
}

// normalize writes the envelope that replaces a recorded upstream answer.
// An upstream envelope keeps its code; its message is cleaned like any
// other and its data dropped.
func (n *normalizer) normalize(w http.ResponseWriter, r *http.Request, c *capture) error {
	status, body := c.status, c.buf.Bytes()
	c.keep(w.Header(), status)
	if status < 400 {
		out, code := n.classify(status)
		return n.write(w, r, status, out, code, "upstream answered with a redirect")
	}
	out, code := n.classify(status)
	if env := envelopeCode(c.staged, body); env != 0 {
		out, code = status, env
	}
	msg := upstreamMessage(c.staged, body)
	if msg == "" {
		msg = phrase(code)
	}
	return n.write(w, r, status, out, code, msg)
}

// handlerError turns an error that next returned without writing (transport
// failures of reverse_proxy) into the envelope.
func (n *normalizer) handlerError(w http.ResponseWriter, r *http.Request, err error) error {
	if r.Context().Err() != nil {
		return err // the client is gone; there is no one to answer
	}
	status := http.StatusBadGateway
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode != 0 {
		status = he.StatusCode
	}
	if status == 499 {
		return err
	}
	out, code := n.classify(status)
	var msg string
	switch status {
	case http.StatusBadGateway:
		msg = "upstream unreachable"
	case http.StatusGatewayTimeout:
		msg = "upstream timeout"
	case http.StatusServiceUnavailable:
		msg = "upstream unavailable"
	default:
		msg = phrase(code)
	}
	n.logger.Error("upstream failed", zap.Int("status", out), zap.Error(err))
	return n.write(w, r, status, out, code, msg)
}

// writeNormalized writes the envelope that replaces an upstream error.
func (n *normalizer) write(w http.ResponseWriter, r *http.Request, upstream, status, code int, msg string) error {
	hdr := w.Header()
	for _, name := range [...]string{"Content-Length", "Content-Encoding", "Content-Range",
		"Content-Disposition", "Content-Language", "Etag", "Last-Modified", "Transfer-Encoding"} {
		hdr.Del(name)
	}
	countUpstreamError(code)
	if c := n.logger.Check(zap.DebugLevel, "upstream error normalized"); c != nil {
		c.Write(zap.Int("upstream_status", upstream), zap.Int("status", status), zap.Int("code", code),
			zap.String("path", r.URL.Path))
	}
	if err := writeEnvelope(w, status, code, msg, nil); err != nil {
		n.logger.Debug("writing envelope", zap.Error(err))
	}
	return nil
}

// classify maps an upstream error status to the status and code outergate
// answers (docs/API.md), with ErrorCodes overriding the code. A redirect
// (3xx but 304) is the upstream misbehaving: 502 + 23090 by default.
func (n *normalizer) classify(upstream int) (status, code int) {
	code, ok := n.errorCodes[upstream]
	if !ok {
		switch {
		case upstream == 404 || upstream == 410:
			code = CodeDeviceIDError
		case upstream == 403 || upstream == 423:
			code = CodeDeviceDisabled
		case upstream == 401, upstream >= 500, upstream < 400:
			code = CodeInternal
		default:
			code = CodeBadRequest
		}
	}
	switch code {
	case CodeDeviceIDError:
		return http.StatusNotFound, code
	case CodeDeviceDisabled:
		return http.StatusForbidden, code
	case CodeInternal:
		if upstream >= 500 {
			return upstream, code
		}
		return http.StatusBadGateway, code
	case CodeBadRequest:
		if upstream >= 400 && upstream < 500 && upstream != 401 {
			return upstream, code
		}
		return http.StatusBadRequest, code
	}
	if upstream == 401 || upstream < 400 {
		return http.StatusBadGateway, code
	}
	return upstream, code
}

// phrase is the fixed message of a code when the upstream gave none.
func phrase(code int) string {
	switch code {
	case CodeBadRequest:
		return "parameter error"
	case CodeDeviceIDError:
		return "device id error"
	case CodeDeviceDisabled:
		return "device disabled"
	}
	return "internal error"
}

// inspectable returns the body of an upstream error as JSON text to look
// at, gunzipped if needed; nil if it cannot be read.
func inspectable(h http.Header, body []byte) []byte {
	switch enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil
		}
		plain, err := io.ReadAll(io.LimitReader(zr, maxInspect))
		if err != nil {
			return nil
		}
		body = plain
	default:
		return nil
	}
	if len(body) > maxInspect {
		return nil
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil
	}
	return body
}

// envelopeCode returns the non-zero code of an upstream error body that is
// already an envelope, and 0 otherwise.
func envelopeCode(h http.Header, body []byte) int {
	js := inspectable(h, body)
	if js == nil {
		return 0
	}
	var env struct {
		Meta *struct {
			Message *string `json:"message"`
			Code    *int    `json:"code"`
		} `json:"meta"`
	}
	if err := json.Unmarshal(js, &env); err != nil || env.Meta == nil ||
		env.Meta.Message == nil || env.Meta.Code == nil {
		return 0
	}
	return *env.Meta.Code
}

// upstreamMessage returns the upstream's own explanation from a JSON body
// (message, msg, detail or error; or meta.message), cleaned of markup and
// control characters and cut to a sane length; "" when there is none.
func upstreamMessage(h http.Header, body []byte) string {
	js := inspectable(h, body)
	if js == nil {
		return ""
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(js, &fields); err != nil {
		return ""
	}
	for _, name := range [...]string{"message", "msg", "detail", "error"} {
		var s string
		if json.Unmarshal(fields[name], &s) == nil && !looksLikeTrace(s) {
			if s = cleanMessage(s); s != "" {
				return s
			}
		}
	}
	var meta struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(fields["meta"], &meta) == nil && !looksLikeTrace(meta.Message) {
		return cleanMessage(meta.Message)
	}
	return ""
}

// traceMarks are pieces of the stack traces and exception dumps of common
// backend stacks (Java, Python, Go, Node, .NET, PHP).
var traceMarks = [...]string{
	"Traceback (most recent call last)", "Exception", "exception:", "Stack trace", "stack trace",
	"stacktrace", "goroutine ", "panic:", "\tat ", "    at ", ".java:", ".py\", line", ".php:",
	".cs:line", ".go:",
}

// looksLikeTrace reports whether an upstream message carries a stack trace
// or exception dump, which must not reach the client.
func looksLikeTrace(s string) bool {
	for _, m := range traceMarks {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// cleanMessage drops markup (anything between '<' and '>') and control
// characters, folds whitespace and cuts the text to maxEnvelopeMessageSize
// bytes on a rune boundary.
func cleanMessage(s string) string {
	var b strings.Builder
	inTag, space := false, false
	for _, r := range s {
		switch {
		case r == '<':
			inTag = true
			continue
		case r == '>' && inTag:
			inTag = false
			continue
		case inTag || r == utf8.RuneError:
			continue
		case r < 0x20 || r == 0x7f || r == ' ' || (r >= 0x80 && r < 0xa0):
			space = b.Len() > 0
			continue
		}
		need := utf8.RuneLen(r)
		if space {
			need++
		}
		if b.Len()+need > maxEnvelopeMessageSize {
			break
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

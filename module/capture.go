package outergate

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// errorBodyWait bounds how long the normalizer waits for the body of an
// upstream error or redirect once its status has arrived: a body that
// trickles is cut there, and the envelope answered with what came.
const errorBodyWait = 2 * time.Second

// maxPooledBuffer is the largest buffer put back into bufPool, so that
// one big error cannot keep memory in the pool.
const maxPooledBuffer = 2 * maxInspect

// errBodyCut is what capture's Write returns once an error body reached
// maxInspect: reverse_proxy stops reading the upstream and closes it.
var errBodyCut = errors.New("upstream error body cut at the inspection limit")

// capture is the writer the normalizer hands to reverse_proxy. It records
// what it does not pass through (as Caddy's response recorder would, without
// the recorder's two allocations per request), and keeps the upstream's
// headers in a map of their own until the final status says what the
// answer is:
//   - 2xx, 304 and 101 pass through: the staged headers are copied to the
//     real response and everything after streams (trailers included);
//   - 1xx interim answers (103 Early Hints and its Link) are dropped;
//   - any other status (3xx, 4xx, 5xx) is recorded for the envelope: its
//     headers and trailers never reach the client, and its body is read
//     up to maxInspect bytes or errorBodyWait, then the upstream is cut off.
type capture struct {
	w      http.ResponseWriter // the client's response
	buf    *bytes.Buffer       // the recorded body
	status int                 // the final status, once written
	staged http.Header
	stream bool // the final status passes through
	final  bool // the final status was written

	cut    atomic.Bool // the body was cut (limit or wait)
	cancel context.CancelFunc
	timer  *time.Timer
}

// passesThrough reports the upstream statuses that reach the client as
// they are.
func passesThrough(status int) bool {
	return status < 300 || status == http.StatusNotModified
}

// capturePool keeps captures with their staged header maps between
// requests.
var capturePool = sync.Pool{New: func() any { return &capture{staged: make(http.Header)} }}

// maxPooledHeaders bounds the staged header map put back into the pool.
const maxPooledHeaders = 32

// newCapture wraps w for one upstream call; cancel stops the upstream
// request when an error body is cut. done gives it back.
func newCapture(w http.ResponseWriter, buf *bytes.Buffer, cancel context.CancelFunc) *capture {
	c := capturePool.Get().(*capture)
	c.w, c.buf = w, buf
	c.cancel = cancel
	return c
}

// Header is the staged header map until a status that passes through was
// written, the real one after it.
func (c *capture) Header() http.Header {
	if c.stream {
		return c.w.Header()
	}
	return c.staged
}

// WriteHeader drops interim answers, passes through what passesThrough
// (and 101) allows, and records the rest.
func (c *capture) WriteHeader(status int) {
	if c.final {
		return
	}
	if status >= 100 && status < 200 && status != http.StatusSwitchingProtocols {
		return // 1xx from the upstream never reaches the client
	}
	c.final, c.status = true, status
	if passesThrough(status) {
		c.stream = true
		h := c.w.Header()
		delete(h, "Server") // as reverse_proxy does: the upstream's Server, or Via
		for k, v := range c.staged {
			h[k] = v
		}
		c.w.WriteHeader(status)
		return
	}
	c.timer = time.AfterFunc(errorBodyWait, c.stop)
}

// Write streams what passes through and records at most maxInspect bytes
// of the rest.
func (c *capture) Write(p []byte) (int, error) {
	if !c.final {
		c.WriteHeader(http.StatusOK)
	}
	if c.stream {
		return c.w.Write(p)
	}
	room := maxInspect - c.buf.Len()
	if len(p) <= room {
		return c.buf.Write(p)
	}
	n, _ := c.buf.Write(p[:max(room, 0)])
	c.stop()
	return n, errBodyCut
}

// stop cuts the error body off: the upstream request is cancelled.
func (c *capture) stop() {
	c.cut.Store(true)
	c.cancel()
}

// done releases the timer and the upstream request, and puts c back into
// the pool unless the timer may still be running or its map grew big.
func (c *capture) done() {
	pool := len(c.staged) <= maxPooledHeaders
	if c.timer != nil && !c.timer.Stop() {
		pool = false // stop may be running on another goroutine
	}
	c.cancel()
	if !pool {
		return
	}
	clear(c.staged)
	*c = capture{staged: c.staged}
	capturePool.Put(c)
}

// recorded reports whether an answer is held back for the envelope.
func (c *capture) recorded() bool { return c.final && !c.stream }

// FlushError flushes what passes through; a recorded answer is not sent.
func (c *capture) FlushError() error {
	if c.stream {
		return http.NewResponseController(c.w).Flush() //nolint:bodyclose
	}
	return nil
}

// Unwrap lets http.ResponseController reach the client's response (Hijack
// on 101).
func (c *capture) Unwrap() http.ResponseWriter { return c.w }

// keep copies to the envelope the only upstream headers an error envelope
// carries, when their value is one a client can use: Retry-After
// (delay-seconds or an HTTP date) and, on a 405, Allow (method tokens).
func (c *capture) keep(h http.Header, status int) {
	if v := c.staged.Get("Retry-After"); v != "" && len(v) <= 64 {
		if _, err := http.ParseTime(v); err == nil || onlyOf(v, "0123456789") {
			h.Set("Retry-After", v)
		}
	}
	if v := c.staged.Get("Allow"); status == http.StatusMethodNotAllowed && v != "" && len(v) <= 128 &&
		onlyOf(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZ, ") {
		h.Set("Allow", v)
	}
}

// onlyOf reports whether every byte of s is in set.
func onlyOf(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if !strings.Contains(set, s[i:i+1]) {
			return false
		}
	}
	return true
}

// Interface guards
var _ http.ResponseWriter = (*capture)(nil)

package outergate

import (
	"net/http"
	"strconv"
	"time"
)

// throttle is one limit on failed client authentications: at most max
// failures per key within a window that starts with the first one.
type throttle struct {
	off    bool
	max    int
	window time.Duration
}

// addressThrottle limits failures per client address.
func (h *Handler) addressThrottle() throttle {
	return throttle{off: h.ThrottleOff, max: h.ThrottleFailures, window: time.Duration(h.ThrottleWindow)}
}

// clientThrottle limits failures per configured client id.
func (h *Handler) clientThrottle() throttle {
	return throttle{off: h.ThrottleClientOff, max: h.ThrottleClientFailures, window: time.Duration(h.ThrottleClientWindow)}
}

// throttled answers 429 + 23029 when key has used up its failures.
func (h *Handler) throttled(r *http.Request, t throttle, key string) (*apiError, error) {
	_, aerr, err := h.checkThrottle(r, t, key)
	return aerr, err
}

// checkThrottle returns the failures counted under key and, when they reach
// the limit, the 429 + 23029 answer with Retry-After until the window ends.
func (h *Handler) checkThrottle(r *http.Request, t throttle, key string) (int, *apiError, error) {
	if t.off {
		return 0, nil, nil
	}
	n, end, err := h.store.Failures(r.Context(), key)
	if err != nil || n < t.max {
		return n, nil, err
	}
	wait := time.Until(end)
	if wait <= 0 {
		return n, nil, nil
	}
	secs := int64((wait + time.Second - 1) / time.Second)
	return n, newAPIError(http.StatusTooManyRequests, CodeTooManyFailures,
		"too many failed client authentications; retry later",
		"Retry-After", strconv.FormatInt(secs, 10)), nil
}

// countFailure counts one failed client authentication under key.
func (h *Handler) countFailure(r *http.Request, t throttle, key string) error {
	if t.off {
		return nil
	}
	return h.store.AddFailure(r.Context(), key, t.window)
}

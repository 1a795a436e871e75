package outergate

import (
	"context"
	"net/http"
	"strconv"
	"time"
)

// throttle is one limit on failed client authentications: at most max
// failures per key within a window that starts with the first one. The
// counts live in the store, so that they outlive a reload and, with Redis,
// are shared by every instance. Provision builds the two throttles once.
type throttle struct {
	off      bool
	max      int
	window   time.Duration
	failures FailureStore
}

// check returns the failures counted under key and, when they reach the
// limit, the 429 + 23029 answer with Retry-After until the window ends.
func (t throttle) check(ctx context.Context, key string) (int, *apiError, error) {
	if t.off {
		return 0, nil, nil
	}
	n, end, err := t.failures.Failures(ctx, key)
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

// count counts one failed client authentication under key.
func (t throttle) count(ctx context.Context, key string) error {
	if t.off {
		return nil
	}
	return t.failures.AddFailure(ctx, key, t.window)
}

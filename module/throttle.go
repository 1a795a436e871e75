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
// are shared by every instance. Every secret check first claims one
// attempt (reserve), and gives it back as a failure or not (release), so
// that no more than max checks run per window however many arrive at once.
// Provision builds the two throttles once.
type throttle struct {
	off      bool
	max      int
	window   time.Duration
	resets   bool // a success forgets the failures (consecutive failures)
	failures FailureStore
}

// claimWait bounds how long an attempt waits for the claims of others
// (attempts still being checked) to be given back before it is refused.
const claimWait = time.Second

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
	return n, tooManyFailures(wait), nil
}

// tooManyFailures is the 429 + 23029 answer with Retry-After: wait.
func tooManyFailures(wait time.Duration) *apiError {
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	return newAPIError(http.StatusTooManyRequests, CodeTooManyFailures,
		"too many failed client authentications; retry later",
		"Retry-After", strconv.FormatInt(secs, 10))
}

// reserve claims one attempt under key before a secret is checked. While
// failures fill the limit it answers 429 until the window ends; while
// attempts still being checked fill it (a burst), it waits for their
// outcome for up to claimWait, then answers 429 with Retry-After: 1.
func (t throttle) reserve(ctx context.Context, key string) (*apiError, error) {
	if t.off {
		return nil, nil
	}
	deadline := time.Now().Add(claimWait)
	pause := 2 * time.Millisecond
	for {
		ok, n, end, err := t.failures.Reserve(ctx, key, t.max, t.window)
		if err != nil || ok {
			return nil, err
		}
		if n >= t.max {
			return tooManyFailures(time.Until(end)), nil
		}
		if time.Now().Add(pause).After(deadline) {
			return tooManyFailures(time.Second), nil
		}
		select {
		case <-ctx.Done():
			return tooManyFailures(time.Second), nil // the client is gone
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// release gives back the claim of reserve: as a failure, or as a success
// (which, for a consecutive-failure throttle, forgets the failures).
func (t throttle) release(ctx context.Context, key string, failed bool) error {
	if t.off {
		return nil
	}
	return t.failures.Release(ctx, key, failed, t.resets && !failed, t.window)
}

// count counts one failed client authentication under key.
func (t throttle) count(ctx context.Context, key string) error {
	if t.off {
		return nil
	}
	return t.failures.AddFailure(ctx, key, t.window)
}

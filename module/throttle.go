package outergate

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// throttle is one limit on failed client authentications: at most max
// failures per key within a window that starts with the first one. The
// counts live in the store, so that they outlive a reload and, with Redis,
// are shared by every instance: a failure is counted there in one atomic
// step whose count decides the answer (at most max failures per window
// are answered 401, the rest 429), and a success passes the same counters
// in the step that writes its token (Save with the lockouts) or in Admit.
// Each instance also keeps attempts, its own side of the limit: early
// refusals of keys the store said were locked, and a bound on the secret
// checks running at once. Provision builds the two throttles once.
type throttle struct {
	off      bool
	max      int
	window   time.Duration
	resets   bool // a success forgets the failures (consecutive failures)
	attempts *attempts
}

// claimWait bounds how long an attempt waits for the checks of others
// (attempts still being checked here) to end before it is refused.
const claimWait = time.Second

// attemptKeys bounds how many keys an instance remembers without a check
// in flight; keys with one are always kept (as many as requests).
const attemptKeys = 10_000

// attempts is one instance's side of a throttle, per key: the secret
// checks in flight here (held) and what the store last answered about the
// counter (its failures and the window's end). It refuses at once a key
// the store said is locked, until the window ends, without a secret check
// or a round trip; and it lets no more checks run at once than the limit
// leaves (max - failures), so that a burst cannot run more than max checks
// on one instance before the first failures are counted. What it knows is
// what this instance was told: the first request on each instance still
// asks the store, whose answer is the one that counts.
type attempts struct {
	mu   sync.Mutex
	keys map[string]attempt // by value: a claim allocates nothing
}

type attempt struct {
	held     int
	failures int
	end      time.Time
}

func newAttempts() *attempts { return &attempts{keys: make(map[string]attempt)} }

// lockout names the throttle's counter under key for the store.
func (t throttle) lockout(key string) Lockout {
	return Lockout{Key: key, Max: t.max, Window: t.window, Reset: t.resets}
}

// tooManyFailures is the 429 + 23029 answer with Retry-After: wait.
func tooManyFailures(wait time.Duration) *apiError {
	secs := max(int64((wait+time.Second-1)/time.Second), 1)
	return newAPIError(http.StatusTooManyRequests, CodeTooManyFailures,
		"too many failed client authentications; retry later",
		"Retry-After", strconv.FormatInt(secs, 10))
}

// early is the 429 answer for a key this instance knows is locked, else
// nil; it asks nobody.
func (t throttle) early(key string) *apiError {
	if t.off {
		return nil
	}
	a := t.attempts
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.keys[key]; ok {
		if wait := time.Until(s.end); wait > 0 && s.failures >= t.max {
			return tooManyFailures(wait)
		}
	}
	return nil
}

// claim takes one place for a secret check under key. A key known locked
// is refused until its window ends; while checks in flight here fill what
// the limit leaves (a burst), it waits for their outcome for up to
// claimWait, then answers 429 with Retry-After: 1. A granted claim is
// given back with done.
func (t throttle) claim(ctx context.Context, key string) *apiError {
	if t.off {
		return nil
	}
	deadline := time.Now().Add(claimWait)
	pause := 2 * time.Millisecond
	for {
		ok, aerr := t.tryClaim(key)
		if ok || aerr != nil {
			return aerr
		}
		if time.Now().Add(pause).After(deadline) {
			return tooManyFailures(time.Second)
		}
		select {
		case <-ctx.Done():
			return tooManyFailures(time.Second) // the client is gone
		case <-time.After(pause):
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// tryClaim is one try of claim: granted, refused for good (aerr), or busy.
func (t throttle) tryClaim(key string) (bool, *apiError) {
	a := t.attempts
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	s, ok := a.keys[key]
	if !ok && len(a.keys) >= attemptKeys {
		a.sweep(t.max, now)
	}
	if !s.end.After(now) {
		s.failures = 0
	}
	if s.failures >= t.max {
		return false, tooManyFailures(s.end.Sub(now))
	}
	if s.failures+s.held >= t.max {
		return false, nil
	}
	s.held++
	a.keys[key] = s
	return true, nil
}

// done gives back a claim of claim.
func (t throttle) done(key string) {
	if t.off {
		return
	}
	a := t.attempts
	a.mu.Lock()
	defer a.mu.Unlock()
	if s, ok := a.keys[key]; ok {
		if s.held > 0 {
			s.held--
		}
		if s.held == 0 && (s.failures == 0 || !s.end.After(time.Now())) {
			delete(a.keys, key)
		} else {
			a.keys[key] = s
		}
	}
}

// learn records what the store answered about key: n failures in a
// window that ends at end (n = max for a lockout, 0 after a reset).
func (t throttle) learn(key string, n int, end time.Time) {
	if t.off {
		return
	}
	a := t.attempts
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	s, ok := a.keys[key]
	if !ok {
		if n == 0 || !end.After(now) {
			return
		}
		if len(a.keys) >= attemptKeys {
			if a.sweep(t.max, now); len(a.keys) >= attemptKeys {
				return // the store keeps answering for it
			}
		}
	}
	s.failures, s.end = n, end
	if s.held == 0 && n == 0 {
		delete(a.keys, key)
		return
	}
	a.keys[key] = s
}

// sweep drops keys with no check in flight that are not known locked,
// then, if that freed too little, any key with no check in flight.
// The caller holds mu.
func (a *attempts) sweep(limit int, now time.Time) {
	for k, s := range a.keys {
		if s.held == 0 && (s.failures < limit || !s.end.After(now)) {
			delete(a.keys, k)
		}
	}
	for k, s := range a.keys {
		if len(a.keys) < attemptKeys/2 {
			return
		}
		if s.held == 0 {
			delete(a.keys, k)
		}
	}
}

package outergate

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestAttemptsBounded: an instance remembers at most attemptKeys keys with
// no check in flight, dropping the ones not locked first, and never drops
// a key with a check in flight.
func TestAttemptsBounded(t *testing.T) {
	th := throttle{max: 3, window: time.Minute, attempts: newAttempts()}
	ctx := context.Background()
	if aerr := th.claim(ctx, "held"); aerr != nil {
		t.Fatal(aerr)
	}
	end := time.Now().Add(time.Minute)
	th.learn("locked-first", 3, end)
	for i := range 3 * attemptKeys {
		th.learn("k"+strconv.Itoa(i), 1+i%3, end) // a third of them locked
	}
	if n := len(th.attempts.keys); n > attemptKeys {
		t.Fatalf("%d keys remembered, want at most %d", n, attemptKeys)
	}
	if _, ok := th.attempts.keys["held"]; !ok {
		t.Fatal("a key with a check in flight was dropped")
	}
	locked := 0
	for _, s := range th.attempts.keys {
		if s.failures >= 3 {
			locked++
		}
	}
	if locked < len(th.attempts.keys)/2 {
		t.Fatalf("%d of %d remembered keys locked; the unlocked ones should go first", locked, len(th.attempts.keys))
	}
	th.done("held")
	if _, ok := th.attempts.keys["held"]; ok {
		t.Fatal("a key with nothing left is kept")
	}
}

// TestAttemptsClaimsWithinLimit: an instance runs at most max checks at
// once per key, fewer by the failures it was told of, none once locked,
// and forgets a lock when its window ends.
func TestAttemptsClaimsWithinLimit(t *testing.T) {
	th := throttle{max: 3, window: time.Minute, attempts: newAttempts()}
	for i := range 3 {
		if ok, aerr := th.tryClaim("k"); !ok || aerr != nil {
			t.Fatalf("claim %d: %v %v", i, ok, aerr)
		}
	}
	if ok, aerr := th.tryClaim("k"); ok || aerr != nil {
		t.Fatalf("4th claim with 3 in flight: %v %v; want busy", ok, aerr)
	}
	th.learn("k", 2, time.Now().Add(time.Minute))
	th.done("k")
	th.done("k")
	if ok, aerr := th.tryClaim("k"); ok || aerr != nil {
		t.Fatalf("claim with 1 in flight and 2 failures: %v %v; want busy", ok, aerr)
	}
	th.learn("k", 3, time.Now().Add(50*time.Millisecond))
	if _, aerr := th.tryClaim("k"); aerr == nil || aerr.status != 429 {
		t.Fatalf("claim on a locked key: %v; want 429", aerr)
	}
	if th.early("k") == nil {
		t.Fatal("no early refusal of a locked key")
	}
	time.Sleep(60 * time.Millisecond)
	if th.early("k") != nil {
		t.Fatal("early refusal after the window ended")
	}
	if ok, aerr := th.tryClaim("k"); !ok || aerr != nil {
		t.Fatalf("claim after the window ended: %v %v", ok, aerr)
	}
}

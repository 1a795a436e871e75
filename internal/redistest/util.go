package redistest

import (
	"testing"
	"time"
)

// waitFor polls cond every 20ms until it holds or timeout passes, then
// fails the test with what.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package outergate

import (
	"errors"
	"net/http"
	"testing"
)

func TestTokenRequestOutcome(t *testing.T) {
	for _, tc := range []struct {
		name     string
		aerr     *apiError
		storeErr error
		want     tokenOutcome
	}{
		{name: "a store failure wins", aerr: badRequest("x"), storeErr: errors.New("down"), want: tokenStoreError},
		{name: "no error is issued", want: tokenIssued},
		{name: "throttled by code", aerr: newAPIError(http.StatusTooManyRequests, CodeTooManyFailures, "x"), want: tokenThrottled},
		{name: "bad credentials by code", aerr: clientAuthFailed(false), want: tokenInvalidClient},
		{name: "grant type by RFC code", aerr: oauthError(badRequest("x"), "unsupported_grant_type"), want: tokenUnsupportedGrantType},
		{name: "scope by RFC code", aerr: oauthError(badRequest("x"), "invalid_scope"), want: tokenInvalidScope},
		{name: "any other RFC code stays in the fixed set", aerr: oauthError(badRequest("x"), "made_up"), want: tokenInvalidRequest},
		{name: "a plain bad request", aerr: badRequest("x"), want: tokenInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokenRequestOutcome(tc.aerr, tc.storeErr); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestMetricLabelsComplete checks that every typed outcome and store
// operation has a label and a collector child, so that none can panic.
func TestMetricLabelsComplete(t *testing.T) {
	for o := validationOutcome(0); o < numValidationOutcomes; o++ {
		if validationLabels[o] == "" || validationCounters[o] == nil {
			t.Errorf("validation outcome %d has no label or counter", o)
		}
	}
	for op := storeOp(0); op < numStoreOps; op++ {
		if storeOpLabels[op] == "" || storeLatency[op] == nil {
			t.Errorf("store op %d has no label or observer", op)
		}
	}
}

package outergate

import (
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are process-wide: ctx.GetMetricsRegistry() is a new
// registry on every config load, so each load registers the same
// collectors again and the counts carry on across reloads.
var (
	metricTokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_token_requests_total",
		Help: "Requests to the token endpoints, by outcome.",
	}, []string{"outcome"})
	metricValidations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_validations_total",
		Help: "Bearer token checks on protected paths, by outcome.",
	}, []string{"outcome"})
	metricUpstreamErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_upstream_errors_total",
		Help: "Upstream errors turned into envelopes, by envelope code.",
	}, []string{"code"})
	metricRevocations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_revocations_total",
		Help: "Tokens revoked, by channel (client: RFC 7009, admin: admin API).",
	}, []string{"via"})
	metricRateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_rate_limited_total",
		Help: "Protected requests refused by a client limit, by reason (rate, quota, in_flight).",
	}, []string{"reason"})
	metricRateLimitedByClient = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outergate_rate_limited_by_client_total",
		Help: "Protected requests refused by a client limit, by reason and client id (only with rate_limit_client_metrics).",
	}, []string{"reason", "client_id"})
	metricStoreLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "outergate_store_operation_seconds",
		Help:    "Latency of token store operations, by operation.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"op"})
)

// registerMetrics adds outergate's collectors to a config's registry.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metricTokenRequests, metricValidations,
		metricUpstreamErrors, metricRevocations, metricStoreLatency,
		metricRateLimited, metricRateLimitedByClient} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// tokenOutcome is the outcome label of outergate_token_requests_total.
type tokenOutcome string

// The outcomes of a token request: a fixed set of label values.
const (
	tokenIssued               tokenOutcome = "issued"
	tokenInvalidRequest       tokenOutcome = "invalid_request"
	tokenInvalidClient        tokenOutcome = "invalid_client"
	tokenUnsupportedGrantType tokenOutcome = "unsupported_grant_type"
	tokenInvalidScope         tokenOutcome = "invalid_scope"
	tokenThrottled            tokenOutcome = "throttled"
	tokenStoreError           tokenOutcome = "store_error"
	// tokenUnavailable is the RFC code of the fail-closed answer; store
	// failures count as store_error before it is looked at.
	tokenUnavailable tokenOutcome = "temporarily_unavailable"
)

// countTokenRequest counts one token request by its outcome.
func countTokenRequest(aerr *apiError, storeErr error) {
	metricTokenRequests.WithLabelValues(string(tokenRequestOutcome(aerr, storeErr))).Inc()
}

// tokenRequestOutcome names the outcome of a token request.
func tokenRequestOutcome(aerr *apiError, storeErr error) tokenOutcome {
	switch {
	case storeErr != nil:
		return tokenStoreError
	case aerr == nil:
		return tokenIssued
	case aerr.code == CodeTooManyFailures:
		return tokenThrottled
	case aerr.code == CodeClientAuthFailed:
		return tokenInvalidClient
	}
	switch tokenOutcome(aerr.oauth) {
	case tokenUnsupportedGrantType, tokenInvalidScope, tokenInvalidClient, tokenUnavailable:
		return tokenOutcome(aerr.oauth)
	}
	return tokenInvalidRequest
}

// revocationVia is the channel label of outergate_revocations_total.
type revocationVia string

const (
	viaClient revocationVia = "client" // RFC 7009, by the token's client
	viaAdmin  revocationVia = "admin"  // the admin API
)

// countRevocations counts n revoked tokens by channel.
func countRevocations(via revocationVia, n int) {
	metricRevocations.WithLabelValues(string(via)).Add(float64(n))
}

// countUpstreamError counts one normalized upstream error by envelope code.
func countUpstreamError(code int) {
	metricUpstreamErrors.WithLabelValues(strconv.Itoa(code)).Inc()
}

// validationOutcome is the outcome of a Bearer check on a protected path,
// an index into validationCounters.
type validationOutcome uint8

const (
	validationOK validationOutcome = iota
	validationMissing
	validationInvalid
	validationExpired
	validationRevoked
	validationInsufficientScope
	validationStoreError
	numValidationOutcomes
)

var validationLabels = [numValidationOutcomes]string{
	"ok", "missing", "invalid", "expired", "revoked", "insufficient_scope", "store_error",
}

// storeOp is a store operation, an index into storeLatency.
type storeOp uint8

const (
	opSave storeOp = iota
	opLoad
	opRevoke
	opRevokeClient
	opCount
	opFailures
	opAddFailure
	opResetFailures
	opCountFailures
	opAdmit
	numStoreOps
)

var storeOpLabels = [numStoreOps]string{
	"save", "load", "revoke", "revoke_client", "count", "failures", "add_failure", "reset_failures",
	"count_failures", "admit",
}

// The label values of validations and store operations are a fixed set, so
// their children are looked up once rather than on every request.
var (
	validationCounters = func() (c [numValidationOutcomes]prometheus.Counter) {
		for o, label := range validationLabels {
			c[o] = metricValidations.WithLabelValues(label)
		}
		return c
	}()
	storeLatency = func() (o [numStoreOps]prometheus.Observer) {
		for op, label := range storeOpLabels {
			o[op] = metricStoreLatency.WithLabelValues(label)
		}
		return o
	}()
)

// limitReason is the reason label of outergate_rate_limited_total and
// of the refusal's audit entry.
type limitReason uint8

const (
	reasonRate limitReason = iota
	reasonQuota
	reasonInFlight
	numLimitReasons
)

var limitReasonLabels = [numLimitReasons]string{"rate", "quota", "in_flight"}

func (r limitReason) String() string { return limitReasonLabels[r] }

// rateLimitedCounters are the children of outergate_rate_limited_total,
// by limitReason.
var rateLimitedCounters = func() (c [numLimitReasons]prometheus.Counter) {
	for r, label := range limitReasonLabels {
		c[r] = metricRateLimited.WithLabelValues(label)
	}
	return c
}()

// countRateLimited counts one refusal by a client limit; byClient also
// counts it under the client's id (an option: one series per client).
func countRateLimited(r limitReason, clientID string, byClient bool) {
	rateLimitedCounters[r].Inc()
	if byClient {
		metricRateLimitedByClient.WithLabelValues(limitReasonLabels[r], clientID).Inc()
	}
}

// countValidation counts one Bearer check by its outcome.
func countValidation(o validationOutcome) { validationCounters[o].Inc() }

// observeStore records the latency of one store operation.
func observeStore(op storeOp, start time.Time) {
	storeLatency[op].Observe(time.Since(start).Seconds())
}

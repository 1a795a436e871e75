package outergate

import (
	"errors"
	"strconv"

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
		metricUpstreamErrors, metricRevocations, metricStoreLatency} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// tokenRequests counts one token request by its outcome.
func tokenRequests(aerr *apiError, storeErr error) {
	metricTokenRequests.WithLabelValues(requestOutcome(aerr, storeErr, "issued")).Inc()
}

// requestOutcome names the outcome of a client-authenticated request with
// a fixed set of values: ok, invalid_request, invalid_client,
// unsupported_grant_type, invalid_scope, throttled, store_error.
func requestOutcome(aerr *apiError, storeErr error, ok string) string {
	switch {
	case storeErr != nil:
		return "store_error"
	case aerr == nil:
		return ok
	case aerr.code == CodeTooManyFailures:
		return "throttled"
	case aerr.code == CodeClientAuthFailed:
		return "invalid_client"
	case aerr.oauth != "":
		return aerr.oauth
	}
	return "invalid_request"
}

// upstreamError counts one normalized upstream error by envelope code.
func upstreamError(code int) {
	metricUpstreamErrors.WithLabelValues(strconv.Itoa(code)).Inc()
}

// The label values are a fixed set, so their children are looked up once
// rather than on every request.
var (
	storeLatency = func() map[string]prometheus.Observer {
		m := map[string]prometheus.Observer{}
		for _, op := range []string{"save", "load", "revoke", "revoke_client", "count", "failures", "add_failure", "reset_failures"} {
			m[op] = metricStoreLatency.WithLabelValues(op)
		}
		return m
	}()
	validations = func() map[string]prometheus.Counter {
		m := map[string]prometheus.Counter{}
		for _, o := range []string{"ok", "missing", "invalid", "expired", "revoked", "insufficient_scope", "store_error"} {
			m[o] = metricValidations.WithLabelValues(o)
		}
		return m
	}()
)

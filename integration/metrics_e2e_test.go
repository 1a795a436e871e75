package integration

// End-to-end tests of the outergate_ Prometheus collectors (issue 5),
// scraped from Caddy's admin endpoint.

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// opsMetrics is one scrape of the Prometheus text at admin /metrics: the
// value of every series, keyed by its name and labels as printed.
type opsMetrics map[string]float64

// opsScrape reads admin /metrics of c.
func opsScrape(t *testing.T, c *harness.Caddy) (opsMetrics, string) {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodGet, "/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("admin /metrics: %d %s", status, raw)
	}
	m := opsMetrics{}
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("admin /metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("admin /metrics: unparsable value in %q", line)
		}
		m[line[:i]] = v
	}
	return m, string(raw)
}

// get returns a series' value and whether it is present; a name without
// labels sums every labelled series of that name.
func (m opsMetrics) get(series string) (float64, bool) {
	if strings.Contains(series, "{") {
		v, ok := m[series]
		return v, ok
	}
	var sum float64
	found := false
	for k, v := range m {
		if k == series || strings.HasPrefix(k, series+"{") {
			sum += v
			found = true
		}
	}
	return sum, found
}

// TestMetricsCountTraffic checks the outergate_ collectors on admin
// /metrics (with Caddy's `metrics` global option on): each moves by exactly
// what the test's traffic caused.
func TestMetricsCountTraffic(t *testing.T) {
	g := startGateway(t, gatewayConfig{Global: "metrics"})
	before, _ := opsScrape(t, g.caddy)

	// The traffic; the deltas it must cause are in the table below.
	// Issued: 3 app tokens.
	tokA := g.issue(appID, appSecret)
	tokB := g.issue(appID, appSecret)
	tokC := g.issue(appID, appSecret)
	// invalid_client: 2.
	expect(t, g.do(tokenForm(cc(appID, "wrong-secret"))), 401, 23020, "")
	expect(t, g.do(tokenForm(cc("nobody", appSecret))), 401, 23020, "")
	// Validations ok: 4 (store loads: 4), one of them an upstream HTML 404
	// normalized to 23030.
	expect(t, g.do(opsDevice(tokA)), 200, 0, "Device info")
	expect(t, g.do(opsDevice(tokC)), 200, 0, "Device info")
	expect(t, g.do(opsDevice(tokC)), 200, 0, "Device info")
	expect(t, g.do(request{path: infoPath + legacy.DeviceUnknown, header: bearer(tokC)}), 404, 23030, "device id error")
	// Validations missing: 2 (no store load).
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	// Revocations: 1 by RFC 7009 (store load + revoke), 1 by admin token.
	if r := g.do(opsRevoke(tokA, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"token":%q}`, tokB)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	// Validations revoked: 2 (store loads: 2).
	expect(t, g.do(opsDevice(tokA)), 401, 23021, "access token revoked")
	expect(t, g.do(opsDevice(tokB)), 401, 23021, "access token revoked")
	// Issued: 2 reader tokens; revocations: 2 by admin client_id.
	g.issue(readerID, readerSecret)
	g.issue(readerID, readerSecret)
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 2 {
		t.Fatalf("admin revoked %d, want 2", n)
	}

	after, text := opsScrape(t, g.caddy)
	tests := []struct {
		name   string
		series string // without labels: the sum over every label set
		delta  float64
	}{
		{name: "issued tokens", series: `outergate_token_requests_total{outcome="issued"}`, delta: 5},
		{name: "failed client authentications", series: `outergate_token_requests_total{outcome="invalid_client"}`, delta: 2},
		{name: "accepted bearer tokens", series: `outergate_validations_total{outcome="ok"}`, delta: 4},
		{name: "missing bearer tokens", series: `outergate_validations_total{outcome="missing"}`, delta: 2},
		{name: "revoked bearer tokens", series: `outergate_validations_total{outcome="revoked"}`, delta: 2},
		{name: "upstream HTML 404 normalized to 23030", series: `outergate_upstream_errors_total{code="23030"}`, delta: 1},
		{name: "revocations: client, admin token and admin client", series: `outergate_revocations_total`, delta: 4},
		{name: "store loads timed", series: `outergate_store_operation_seconds_count{op="load"}`, delta: 7},
		{name: "store load buckets agree with the count", series: `outergate_store_operation_seconds_bucket{op="load",le="+Inf"}`, delta: 7},
		{name: "token revocations timed (RFC 7009 and admin)", series: `outergate_store_operation_seconds_count{op="revoke"}`, delta: 2},
		{name: "admin client revocation timed", series: `outergate_store_operation_seconds_count{op="revoke_client"}`, delta: 1},
		{name: "issuance timed", series: `outergate_store_operation_seconds_count{op="save"}`, delta: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := after.get(tt.series)
			if !ok {
				t.Fatalf("%s is not on admin /metrics", tt.series)
			}
			was, _ := before.get(tt.series)
			if v-was != tt.delta {
				t.Errorf("%s moved by %g (from %g to %g), want %g", tt.series, v-was, was, v, tt.delta)
			}
		})
	}
	t.Run("histogram has a sum and buckets", func(t *testing.T) {
		if sum, ok := after.get(`outergate_store_operation_seconds_sum{op="load"}`); !ok || sum <= 0 {
			t.Errorf("outergate_store_operation_seconds_sum{op=\"load\"} = %g (present %v), want > 0", sum, ok)
		}
		if !strings.Contains(text, "# TYPE outergate_store_operation_seconds histogram") {
			t.Errorf("outergate_store_operation_seconds is not declared a histogram")
		}
	})
	t.Run("no other validation outcome moved", func(t *testing.T) {
		v, _ := after.get("outergate_validations_total")
		was, _ := before.get("outergate_validations_total")
		if v-was != 8 {
			t.Errorf("outergate_validations_total moved by %g over all outcomes, want 8", v-was)
		}
	})
	t.Run("every series is named outergate_ or Caddy's own", func(t *testing.T) {
		if !strings.Contains(text, "caddy_http_") {
			t.Errorf("the metrics global option did not turn on Caddy's HTTP metrics")
		}
		for k := range after {
			name, _, _ := strings.Cut(k, "{")
			if strings.Contains(strings.ToLower(name), "outergate") && !strings.HasPrefix(name, "outergate_") {
				t.Errorf("metric %s names outergate without the outergate_ prefix", name)
			}
		}
	})
	t.Run("counters carry on across a config reload", func(t *testing.T) {
		series := `outergate_token_requests_total{outcome="issued"}`
		was, _ := after.get(series)
		g.reload(gatewayConfig{Global: "metrics", Extra: "\t\tthrottle 20 1m"})
		reloaded, _ := opsScrape(t, g.caddy)
		if v, ok := reloaded.get(series); !ok || v != was {
			t.Errorf("after a reload %s = %g (present %v), want %g", series, v, ok, was)
		}
		g.issue(appID, appSecret)
		more, _ := opsScrape(t, g.caddy)
		if v, _ := more.get(series); v != was+1 {
			t.Errorf("after a reload and one more issue %s = %g, want %g", series, v, was+1)
		}
	})
	t.Run("issuance and admin revocation store operations are timed", func(t *testing.T) {
		// Issuing 5 tokens writes the store 5 times and the two admin
		// revocations write it at least once each; the histogram's help
		// says it times token store operations.
		var ops []string
		total := 0.0
		for k, v := range after {
			if strings.HasPrefix(k, "outergate_store_operation_seconds_count") {
				d := v - before[k]
				total += d
				ops = append(ops, fmt.Sprintf("%s +%g", strings.TrimPrefix(k, "outergate_store_operation_seconds_count"), d))
			}
		}
		sort.Strings(ops)
		if want := 7.0 + 1 + 5 + 2; total < want {
			t.Errorf("the test caused at least %g store operations, the histogram counted %g (%s)", want, total, strings.Join(ops, ", "))
		}
	})
}

package outergate

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/outergate/outergate/internal/redistest"
)

// newRedisBenchHandler is newBenchHandler on a Redis store on its own
// redis-server (a single node, no replica wait).
func newRedisBenchHandler(b *testing.B) *Handler {
	rd := redistest.Start(b)
	return newBenchHandlerWith(b, "redis-issue", func(h *Handler) {
		h.StoreRaw = json.RawMessage(`{"module":"redis","url":"` + rd.URL() + `"}`)
	})
}

// BenchmarkRedisTokenIssue is BenchmarkTokenIssue against a real
// redis-server, one request at a time: the latency of one issuance,
// throttles and cap (100) included.
func BenchmarkRedisTokenIssue(b *testing.B) {
	benchIssue(b, newRedisBenchHandler(b), testClientID, testClientSecret)
}

// BenchmarkRedisTokenIssueParallel issues from 16 goroutines per CPU at
// once, as concurrent clients would: ns/op is the inverse of the
// throughput (tokens/s = 1e9 / ns/op), which the round trips per issuance
// bound.
func BenchmarkRedisTokenIssueParallel(b *testing.B) {
	h := newRedisBenchHandler(b)
	form := []byte(url.Values{"grant_type": {"client_credentials"}, "client_id": {testClientID},
		"client_secret": {testClientSecret}}.Encode())
	b.ReportAllocs()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		r, _ := newRequest(http.MethodPost, "/outer/token/", nil)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		body := new(rewindBody)
		w := &discardWriter{header: http.Header{}}
		for pb.Next() {
			body.Reset(form)
			r.Body, r.ContentLength = body, int64(len(form))
			w.reset()
			if err := h.ServeHTTP(w, r, nil); err != nil || w.status != http.StatusOK {
				b.Errorf("token endpoint: status %d, error %v", w.status, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

package outergate

// Benchmarks of the request hot paths and the memory store's footprint.
// They run only with -bench; integration/bench holds the end-to-end load
// runs, and BENCHMARKS.md the commands and figures. On the 2-core machine
// the figures come from, `go test -run '^$' -bench . -benchmem ./module`
// takes about a minute, most of it filling the 1,000,000-token stores.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/outergate/outergate/internal/redistest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"
)

// benchDevicePath is the proxied request of integration/bench.
const benchDevicePath = "/outer/device/info/?deviceid=e22cfa2e-9752-11e6-9baf-00163e120d98"

// benchDeviceInfo is the upstream's 200 answer (docs/API.md).
var benchDeviceInfo = []byte(`{"meta":{"message":"Device info","code":0},"data":{"mac":"agxhl0012ab","online":true,"pname":"test","createtime":"2016-10-21T13:54:51.950","productid":"c33d3908-9752-11e6-9baf-00163e120d98"}}`)

var (
	benchJSONType   = []string{"application/json; charset=utf-8"}
	benchInfoLength = []string{strconv.Itoa(len(benchDeviceInfo))}
)

// newBenchHandler provisions a Handler with the test clients and its own
// memory store, logging at Info level to nowhere through a JSON encoder, as
// Caddy's default logger would (encoding included).
func newBenchHandler(b *testing.B, store string) *Handler {
	return newBenchHandlerWith(b, store, nil)
}

// newBenchHandlerWith is newBenchHandler with configure applied to the
// config before Provision.
func newBenchHandlerWith(b *testing.B, store string, configure func(h *Handler)) *Handler {
	b.Helper()
	name, _ := json.Marshal("bench/" + store)
	h := &Handler{
		Clients: []Client{
			{ID: testClientID, SecretHashes: []string{sha256Hash(testClientSecret)}},
			{ID: readerClientID, SecretHashes: []string{sha256Hash(readerSecret)}, Scope: "read"},
		},
		StoreRaw: json.RawMessage(`{"module":"memory","name":` + string(name) + `}`),
	}
	if configure != nil {
		configure(h)
	}
	// Cancelling the context cleans up the modules it loaded: the store
	// releases its pooled token cache.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)
	logger := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(io.Discard), zap.InfoLevel))
	if err := h.provision(ctx, logger); err != nil {
		b.Fatalf("Provision: %v", err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		b.Fatalf("Validate: %v", err)
	}
	return h
}

// discardWriter is a ResponseWriter that keeps only the status, so that an
// iteration allocates nothing on the writer's side.
type discardWriter struct {
	header http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.header }
func (w *discardWriter) WriteHeader(s int)   { w.status = s }
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *discardWriter) reset() {
	clear(w.header)
	w.status, w.n = 0, 0
}

// rewindBody is a request body that can be read again after reset,
// without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// upstreamOK answers like the benchmark upstream: a 200 device-info
// envelope. It allocates nothing, so that allocs/op are outergate's.
var upstreamOK = caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h["Content-Type"] = benchJSONType
	h["Content-Length"] = benchInfoLength
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(benchDeviceInfo)
	return err
})

// BenchmarkBearerValidation drives ServeHTTP on a protected path with a valid
// token and an upstream that answers 200: path matching, bearer parsing,
// SHA-256, the memory store's Load, the scope and deviceid checks, header
// rewriting and the response recorder. Sub-benchmarks: live is the number
// of live tokens in the store, presented how many distinct ones the
// requests carry in turn (random order). With 65,536 presented, lookups
// miss the CPU caches as they would with many clients; with 1 presented out
// of 1,000,000, only the store's size (and the heap the GC must mark)
// differs from live=1.
//
// Token i is a fixed random prefix and i in 8 hex digits (43 characters,
// like randomSecret's): each request writes its token into a reused buffer
// and converts it to a fresh string, as net/http builds the header from the
// connection's buffer, so the bytes a server parses and hashes are always
// hot in its cache and the harness does the same work whichever token it
// presents; only the store's own lookups may miss. (Before, 65,536 random
// header strings read at random from memory added their own cache misses
// to the store's: see BENCHMARKS.md.) The store keys are SHA-256 digests of
// the tokens, so they are spread as uniformly as those of random tokens.
func BenchmarkBearerValidation(b *testing.B) {
	for _, c := range []struct{ live, presented int }{{1, 1}, {1_000_000, 1}, {1_000_000, 1 << 16}} {
		name := "live=" + strconv.Itoa(c.live)
		if c.live > 1 {
			name += ",presented=" + strconv.Itoa(c.presented)
		}
		b.Run(name, func(b *testing.B) {
			h := newBenchHandler(b, "bearer/"+name)
			now := time.Now()
			rec := TokenRecord{ClientID: testClientID, Scope: h.Scope, IssuedAt: now.UnixMilli(),
				ExpiresAt: now.Add(time.Hour).UnixMilli(), Binding: h.clients[testClientID].bindings[0]}
			prefix, err := randomSecret()
			if err != nil {
				b.Fatal(err)
			}
			value := []byte("Bearer " + prefix[:35] + "00000000")
			digits := value[len(value)-8:]
			token := func(i int) []byte {
				const hexDigits = "0123456789abcdef"
				for k := range digits {
					digits[len(digits)-1-k] = hexDigits[i>>(4*k)&0xf]
				}
				return value
			}
			for i := range c.live {
				// No per-client cap: the store holds all of them.
				if err := h.store.Save(context.Background(), hashToken(string(token(i)[len("Bearer "):])), rec, 0); err != nil {
					b.Fatal(err)
				}
			}
			order := rand.Perm(c.presented)

			r, _ := newRequest(http.MethodGet, benchDevicePath, nil)
			w := &discardWriter{header: http.Header{}}
			header := []string{""}
			serve := func(i int) {
				header[0] = string(token(order[i%len(order)]))
				r.Header["Authorization"] = header
				w.reset()
				if err := h.ServeHTTP(w, r, upstreamOK); err != nil || w.status != http.StatusOK {
					b.Fatalf("ServeHTTP: status %d, error %v", w.status, err)
				}
			}
			serve(0)
			runtime.GC()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				serve(i)
				i++
			}
		})
	}
}

// BenchmarkNormalize runs proxy (the response recorder and the envelope
// rewriting) over upstream answers: an HTML 500 page with a stack trace, a
// JSON 404 with a message, and the 2xx that streams through untouched (the
// price every proxied request pays).
func BenchmarkNormalize(b *testing.B) {
	stackPage := []byte("<!DOCTYPE html><html><head><title>HTTP Status 500 – Internal Server Error</title></head><body>" +
		"<h1>HTTP Status 500 – Internal Server Error</h1><p><b>Type</b> Exception Report</p>" +
		"<p><b>Message</b> Request processing failed</p><pre>java.lang.NullPointerException\n" +
		strings.Repeat("\tat com.vendor.device.DeviceService.info(DeviceService.java:212)\n", 30) +
		"</pre><hr class=\"line\" /><h3>Apache Tomcat/8.5.32</h3></body></html>")
	cases := []struct {
		name   string
		status int
		ctype  string
		body   []byte
		want   int
	}{
		{"html-500", 500, "text/html;charset=utf-8", stackPage, 500},
		{"json-404", 404, "application/json", []byte(`{"timestamp":"2026-11-27T00:46:10.000+00:00","status":404,"error":"Not Found","message":"no such device","path":"/outer/device/info/"}`), 404},
		{"2xx-passthrough", 200, "application/json; charset=utf-8", benchDeviceInfo, 200},
	}
	h := newBenchHandler(b, "normalize")
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctype := []string{c.ctype}
			length := []string{strconv.Itoa(len(c.body))}
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
				hdr := w.Header()
				hdr["Content-Type"] = ctype
				hdr["Content-Length"] = length
				w.WriteHeader(c.status)
				_, err := w.Write(c.body)
				return err
			})
			r, _ := newRequest(http.MethodGet, benchDevicePath, nil)
			w := &discardWriter{header: http.Header{}}
			serve := func() {
				w.reset()
				if err := h.protect.normalize.proxy(w, r, next); err != nil || w.status != c.want {
					b.Fatalf("proxy: status %d, error %v", w.status, err)
				}
			}
			serve()
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
}

// BenchmarkTokenIssue drives ServeHTTP on the token endpoint with form
// credentials of a sha256 client: throttle reads, parsing, secret check,
// crypto/rand, the store's Save (at the 100-token cap after the first 100
// iterations, so each Save also evicts the oldest token), the log line and
// the envelope.
func BenchmarkTokenIssue(b *testing.B) {
	benchIssue(b, newBenchHandler(b, "issue"), testClientID, testClientSecret)
}

// benchIssue runs token requests of one client against h.
func benchIssue(b *testing.B, h *Handler, id, secret string) {
	form := []byte(url.Values{"grant_type": {"client_credentials"}, "client_id": {id},
		"client_secret": {secret}}.Encode())
	r, _ := newRequest(http.MethodPost, "/outer/token/", nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	body := new(rewindBody)
	w := &discardWriter{header: http.Header{}}
	serve := func() {
		body.Reset(form)
		r.Body, r.ContentLength = body, int64(len(form))
		w.reset()
		if err := h.ServeHTTP(w, r, nil); err != nil || w.status != http.StatusOK {
			b.Fatalf("token endpoint: status %d, error %v", w.status, err)
		}
	}
	serve()
	b.ReportAllocs()
	for b.Loop() {
		serve()
	}
}

// BenchmarkMemoryStoreBytesPerToken fills a fresh memory store with
// 1,000,000 live tokens (10,000 clients × 100, the default cap) through Save
// and reports the Go heap it holds afterwards, per token (HeapAlloc after a
// GC, minus the same before), and the mean cost of one Save. ns/op is
// suppressed: one iteration is the whole fill. TestMemoryStoreBytesPerToken
// holds the same fill to the 200-byte bound.
func BenchmarkMemoryStoreBytesPerToken(b *testing.B) {
	var bytesPerToken, nsPerSave float64
	iterations := 0
	for b.Loop() {
		bpt, nps := fillMemoryStore(b, 10_000, 100)
		bytesPerToken += bpt
		nsPerSave += nps
		iterations++
	}
	b.ReportMetric(bytesPerToken/float64(iterations), "bytes/token")
	b.ReportMetric(nsPerSave/float64(iterations), "ns/save")
	b.ReportMetric(0, "ns/op")
}

// fillMemoryStore saves clients × perClient live tokens (distinct,
// random-looking keys, as SHA-256 digests are) into a fresh memory store
// with a cap of perClient, and returns the Go heap the store holds per
// token after a GC, and the mean time of one Save.
func fillMemoryStore(tb testing.TB, clients, perClient int) (bytesPerToken, nsPerSave float64) {
	tb.Helper()
	ids := make([]string, clients)
	bindings := make([]string, clients) // as issueToken sets them: 32 hex digits
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%05d", i)
		bindings[i] = tokenBinding("bench", ids[i], sha256Hash(ids[i]))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	s := &MemoryStore{tokens: newMemoryTokens()}
	defer func() { _ = s.tokens.Destruct() }()
	now := time.Now()
	exp := now.Add(time.Hour).UnixMilli()
	var key TokenHash
	start := time.Now()
	for i := range clients * perClient {
		for j := 0; j < len(key); j += 8 {
			v := rand.Uint64()
			for k := range 8 {
				key[j+k] = byte(v >> (8 * k))
			}
		}
		rec := TokenRecord{ClientID: ids[i%clients], Scope: DefaultScope, IssuedAt: now.UnixMilli(), ExpiresAt: exp,
			Binding: bindings[i%clients]}
		if err := s.Save(context.Background(), key, rec, perClient); err != nil {
			tb.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := s.tokens.table.len(); n != clients*perClient {
		tb.Fatalf("store holds %d tokens, want %d", n, clients*perClient)
	}
	runtime.KeepAlive(s)
	n := float64(clients * perClient)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n, float64(elapsed.Nanoseconds()) / n
}

// BenchmarkManagedClients is the token path of clients managed through the
// admin API, with 1 and with 10,000 of them in the handler's ClientStore:
// issue is a token request of one managed client (lookup, secret check,
// Save, envelope); validate is a protected request carrying one of 1,024
// tokens, of one managed client (presented=1: only the registry's size
// differs from clients=1) or of 1,024 of them in turn. The registry's size
// must not show: a lookup is two map reads, whatever the number of clients.
func BenchmarkManagedClients(b *testing.B) {
	for _, n := range []int{1, 10_000} {
		h := newBenchHandler(b, "managed/"+strconv.Itoa(n))
		secrets := make([]string, n)
		now := time.Now().UTC()
		for i := range n {
			secret, err := randomSecret()
			if err != nil {
				b.Fatal(err)
			}
			secrets[i] = secret
			rec := &managedClient{Client: Client{ID: fmt.Sprintf("managed-%05d", i), SecretHashes: []string{secretHash(secret)}},
				CreatedAt: now.Add(-time.Minute), UpdatedAt: now}
			if err := h.managed.store.Create(context.Background(), rec); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("issue/clients="+strconv.Itoa(n), func(b *testing.B) {
			benchIssue(b, h, fmt.Sprintf("managed-%05d", n/2), secrets[n/2])
		})
		for _, presented := range []int{1, 1024} {
			if presented > n {
				continue
			}
			b.Run(fmt.Sprintf("validate/clients=%d,presented=%d", n, presented), func(b *testing.B) {
				benchManagedValidate(b, h, n, presented)
			})
		}
	}
}

// benchManagedValidate runs protected requests with 1,024 tokens of
// presented managed clients (spread over the n there are) in turn.
func benchManagedValidate(b *testing.B, h *Handler, n, presented int) {
	auth := make([][]string, 1024)
	for i := range auth {
		tok, err := randomSecret()
		if err != nil {
			b.Fatal(err)
		}
		id := fmt.Sprintf("managed-%05d", i%presented*(n/presented))
		rec := TokenRecord{ClientID: id, Scope: h.Scope, Binding: h.managed.get(id).bindings[0],
			IssuedAt: time.Now().UnixMilli(), ExpiresAt: time.Now().Add(time.Hour).UnixMilli()}
		if err := h.store.Save(context.Background(), hashToken(tok), rec, 0); err != nil {
			b.Fatal(err)
		}
		auth[i] = []string{"Bearer " + tok}
	}
	r, _ := newRequest(http.MethodGet, benchDevicePath, nil)
	w := &discardWriter{header: http.Header{}}
	serve := func(i int) {
		r.Header["Authorization"] = auth[i%len(auth)]
		w.reset()
		if err := h.ServeHTTP(w, r, upstreamOK); err != nil || w.status != http.StatusOK {
			b.Fatalf("ServeHTTP: status %d, error %v", w.status, err)
		}
	}
	for i := range auth {
		serve(i) // provisions each presented client's view once
	}
	runtime.GC()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		serve(i)
		i++
	}
}

// BenchmarkRateLimit is the per-request cost of an active client limit:
// the memory limiter (x/time/rate bucket and quota under the client's
// lock), the Redis limiter against a real redis-server (one round trip,
// counted with a go-redis hook and reported as round-trips/op), and a whole
// protected request through ServeHTTP with and without a limit (the
// RateLimit headers included).
func BenchmarkRateLimit(b *testing.B) {
	rateAndQuota := func(b *testing.B) *policy {
		return testPolicy(b, &RateLimit{Requests: 1 << 30, Period: caddy.Duration(time.Second)},
			&Quota{Requests: 1 << 30, Window: caddy.Duration(time.Hour)}, 0)
	}
	b.Run("memory", func(b *testing.B) {
		state := newLimitState(time.Minute)
		b.Cleanup(func() { _ = state.Destruct() })
		lim, p, ctx := memoryLimiter{state}, rateAndQuota(b), context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if res, _ := lim.allow(ctx, testClientID, p); !res.allowed {
				b.Fatal("refused")
			}
		}
	})
	b.Run("memory/parallel", func(b *testing.B) {
		state := newLimitState(time.Minute)
		b.Cleanup(func() { _ = state.Destruct() })
		lim, p, ctx := memoryLimiter{state}, rateAndQuota(b), context.Background()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = lim.allow(ctx, testClientID, p)
			}
		})
	})
	for _, c := range []struct {
		name string
		p    func(b *testing.B) *policy
	}{
		{"redis/rate", func(b *testing.B) *policy {
			return testPolicy(b, &RateLimit{Requests: 1 << 30, Period: caddy.Duration(time.Second)}, nil, 0)
		}},
		{"redis/rate+quota", rateAndQuota},
	} {
		b.Run(c.name, func(b *testing.B) {
			rd := redistest.Start(b)
			client, rt := testRedisClient(b, rd.Addr())
			lim, p, ctx := newRedisLimiter(redisProvider{client, "bench:"}), c.p(b), context.Background()
			if _, err := lim.allow(ctx, testClientID, p); err != nil {
				b.Fatal(err)
			}
			before := rt.n.Load()
			b.ReportAllocs()
			for b.Loop() {
				if res, err := lim.allow(ctx, testClientID, p); err != nil || !res.allowed {
					b.Fatal(res, err)
				}
			}
			b.ReportMetric(float64(rt.n.Load()-before)/float64(b.N), "round-trips/op")
		})
	}
	for _, limited := range []bool{false, true} {
		name := "protected/unlimited"
		if limited {
			name = "protected/rate+quota"
		}
		b.Run(name, func(b *testing.B) {
			h := newBenchHandlerWith(b, "ratelimit/"+name, func(h *Handler) {
				if limited {
					h.RateLimit = &RateLimit{Requests: 1 << 30, Period: caddy.Duration(time.Second)}
					h.Quota = &Quota{Requests: 1 << 30, Window: caddy.Duration(time.Hour)}
				}
			})
			tok, err := randomSecret()
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			rec := TokenRecord{ClientID: testClientID, Scope: h.Scope, IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(time.Hour).UnixMilli(),
				Binding: h.clients[testClientID].bindings[0]}
			if err := h.store.Save(context.Background(), hashToken(tok), rec, 0); err != nil {
				b.Fatal(err)
			}
			r, _ := newRequest(http.MethodGet, benchDevicePath, nil)
			auth := []string{"Bearer " + tok}
			w := &discardWriter{header: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				r.Header["Authorization"] = auth // the handler removes it
				w.reset()
				if err := h.ServeHTTP(w, r, upstreamOK); err != nil || w.status != http.StatusOK {
					b.Fatalf("ServeHTTP: status %d, error %v", w.status, err)
				}
			}
			if limited && w.header.Get("RateLimit") == "" {
				b.Fatal("no RateLimit header: the limit was not active")
			}
		})
	}
}

// BenchmarkSecretCheck is why managed secrets are hashed with SHA-256:
// one failed check of a 256-bit secret against a sha256 verifier and
// against a bcrypt hash at cost 10 (README "Why SHA-256 and not bcrypt").
func BenchmarkSecretCheck(b *testing.B) {
	secret, err := randomSecret()
	if err != nil {
		b.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 10)
	if err != nil {
		b.Fatal(err)
	}
	sha, err := parseSecretHash(secretHash(secret))
	if err != nil {
		b.Fatal(err)
	}
	for name, v := range map[string]secretVerifier{"sha256": sha, "bcrypt-10": newBcryptVerifier(hash)} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if v.verify("wrong-" + secret) {
					b.Fatal("a wrong secret matched")
				}
			}
		})
	}
}

// benchProtected is a handler for BenchmarkProtectedRequest (on a Redis
// store of its own when redis, with its invalidation subscription up, so
// that what is measured is the cache hit) and a live token of testClientID.
func benchProtected(b *testing.B, name string, redis bool, configure func(*Handler)) (*Handler, string) {
	b.Helper()
	store := ""
	if redis {
		store = `{"module":"redis","url":"` + redistest.Start(b).URL() + `"}`
	}
	h := newBenchHandlerWith(b, "protected/"+name, func(h *Handler) {
		if store != "" {
			h.StoreRaw = json.RawMessage(store)
		}
		if configure != nil {
			configure(h)
		}
	})
	tok, err := randomSecret()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	rec := TokenRecord{ClientID: testClientID, Scope: h.Scope, IssuedAt: now.UnixMilli(),
		ExpiresAt: now.Add(time.Hour).UnixMilli(), Binding: h.clients[testClientID].bindings[0]}
	if err := h.store.Save(context.Background(), hashToken(tok), rec, 0); err != nil {
		b.Fatal(err)
	}
	if redis {
		// Until the invalidation subscription is up, every Load goes to
		// Redis.
		conn := h.store.(timedStore).Store.(*RedisStore).conn
		deadline := time.Now().Add(5 * time.Second)
		for !conn.cacheLive() {
			if time.Now().After(deadline) {
				b.Fatal("the invalidation subscription did not come up within 5s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return h, tok
}

// BenchmarkProtectedRequest is one whole proxied request through ServeHTTP
// with a valid token and a trivial upstream (it answers 200 and allocates
// nothing), so that ns/op, B/op and allocs/op are outergate's own share of
// a proxied request: identity-header stripping, routing and the guard,
// path matching, the Bearer check, the limits, the parameter check, the
// identity and placeholders, and the response capture. Variants: the
// memory store (the deviceid parameter in the query, as integration/bench
// sends it); with a rate limit and a quota counted on every request; with
// three required parameters; a POST whose deviceid is in a JSON body; and
// the Redis store (a local cache hit) with and without the limits (these
// need redis-server).
func BenchmarkProtectedRequest(b *testing.B) {
	limited := func(h *Handler) {
		h.RateLimit = &RateLimit{Requests: 1 << 30, Period: caddy.Duration(time.Second)}
		h.Quota = &Quota{Requests: 1 << 30, Window: caddy.Duration(time.Hour)}
	}
	jsonBody := []byte(`{"deviceid":"e22cfa2e-9752-11e6-9baf-00163e120d98"}`)
	cases := []struct {
		name      string
		redis     bool
		configure func(h *Handler)
		method    string
		target    string
		body      []byte
	}{
		{name: "memory"},
		{name: "memory-limited", configure: limited},
		{name: "memory-params3", configure: func(h *Handler) { h.RequireParams = []string{"deviceid", "productid", "mac"} },
			target: benchDevicePath + "&productid=c33d3908-9752-11e6-9baf-00163e120d98&mac=agxhl0012ab"},
		{name: "memory-json", method: http.MethodPost, target: "/outer/device/info/", body: jsonBody},
		{name: "redis", redis: true},
		{name: "redis-limited", redis: true, configure: limited},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			method, target := c.method, c.target
			if method == "" {
				method = http.MethodGet
			}
			if target == "" {
				target = benchDevicePath
			}
			h, tok := benchProtected(b, c.name, c.redis, c.configure)
			body := &rewindBody{}
			r, _ := newRequest(method, target, nil)
			if c.body != nil {
				r.Header.Set("Content-Type", "application/json")
				r.Body, r.ContentLength = body, int64(len(c.body))
			}
			auth := []string{"Bearer " + tok}
			w := &discardWriter{header: http.Header{}}
			serve := func() {
				r.Header["Authorization"] = auth // the handler removes it
				if c.body != nil {
					body.Reset(c.body)
					r.Body = body
				}
				w.reset()
				if err := h.ServeHTTP(w, r, upstreamOK); err != nil || w.status != http.StatusOK {
					b.Fatalf("ServeHTTP: status %d, error %v", w.status, err)
				}
			}
			serve()
			if c.configure != nil && h.RateLimit != nil && w.header.Get("RateLimit") == "" {
				b.Fatal("no RateLimit header: the limit was not active")
			}
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				serve()
			}
		})
	}
	// The same with 64 requests at once (as integration/bench's wrk -c64),
	// each goroutine with its own request; with Redis, round-trips/op
	// counts what the store and the limiter send.
	for _, c := range []struct {
		name      string
		redis     bool
		configure func(h *Handler)
	}{
		{"memory-parallel", false, nil},
		{"memory-limited-parallel", false, limited},
		{"redis-parallel", true, nil},
		{"redis-limited-parallel", true, limited},
	} {
		b.Run(c.name, func(b *testing.B) {
			h, tok := benchProtected(b, c.name, c.redis, c.configure)
			rt := &roundTrips{}
			if c.redis {
				h.store.(timedStore).Store.(*RedisStore).conn.client.AddHook(rt)
			}
			auth := []string{"Bearer " + tok}
			before := rt.n.Load()
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r, _ := newRequest(http.MethodGet, benchDevicePath, nil)
				w := &discardWriter{header: http.Header{}}
				for pb.Next() {
					r.Header["Authorization"] = auth
					w.reset()
					if err := h.ServeHTTP(w, r, upstreamOK); err != nil || w.status != http.StatusOK {
						b.Errorf("ServeHTTP: status %d, error %v", w.status, err)
						return
					}
				}
			})
			if c.redis {
				b.ReportMetric(float64(rt.n.Load()-before)/float64(b.N), "round-trips/op")
			}
		})
	}
}

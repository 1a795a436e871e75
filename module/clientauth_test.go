package outergate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"
)

// slowVerifier stands for an expensive hash: it counts the checks it ran
// and takes d for each, so that concurrent attempts overlap.
type slowVerifier struct {
	d time.Duration
	n atomic.Int32
}

func (v *slowVerifier) verify(string) bool {
	v.n.Add(1)
	time.Sleep(v.d)
	return false
}

// TestThrottleClaimsBeforeTheCheck sends 60 concurrent wrong secrets from
// one address with `throttle 10 1m`: at most 10 secret checks run, the
// rest are 429 (issue 12 item 6), for a configured and an unknown id.
func TestThrottleClaimsBeforeTheCheck(t *testing.T) {
	for _, id := range []string{testClientID, "nobody"} {
		t.Run(id, func(t *testing.T) {
			h := newTestHandler(t, func(h *Handler) {
				h.ThrottleFailures, h.ThrottleWindow, h.ThrottleClientOff = 10, 60_000_000_000, true
			})
			own, decoy := &slowVerifier{d: 20 * time.Millisecond}, &slowVerifier{d: 20 * time.Millisecond}
			h.auth.clients[testClientID].verifiers = []secretVerifier{own}
			h.auth.decoy = decoy
			spy := decoy // every failure pays the decoy: one per check

			var wg sync.WaitGroup
			statuses := make([]int, 60)
			for i := range statuses {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, _ := newRequest(http.MethodPost, "/outer/token/", strings.NewReader(formCreds(id, "wrong")))
					r.Header.Set("Content-Type", formType)
					r = r.WithContext(contextWithClientIP(r, testClientIP))
					rec := newNoopRecorder()
					_ = h.ServeHTTP(rec, r, failNext(t))
					statuses[i] = rec.status
				}()
			}
			wg.Wait()
			var n401, n429 int
			for _, s := range statuses {
				switch s {
				case 401:
					n401++
				case 429:
					n429++
				}
			}
			if checks := spy.n.Load(); checks > 10 || n401 > 10 || n401+n429 != 60 {
				t.Fatalf("%d secret checks, %d×401, %d×429 of 60; want ≤ 10 checks and the rest 429 (%v)", checks, n401, n429, statuses)
			}
			if n401 == 0 {
				t.Fatalf("no attempt was checked at all: %v", statuses)
			}
		})
	}
}

// noopRecorder keeps only the status; safe to use from one goroutine each.
type noopRecorder struct {
	h      http.Header
	status int
}

func newNoopRecorder() *noopRecorder                { return &noopRecorder{h: http.Header{}} }
func (n *noopRecorder) Header() http.Header         { return n.h }
func (n *noopRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (n *noopRecorder) WriteHeader(s int) {
	if n.status == 0 {
		n.status = s
	}
}

// TestThrottleBurstOfSuccessesWaits: claims held by attempts still being
// checked make others wait, not fail: 30 concurrent right secrets with
// `throttle 3 1m` all succeed.
func TestThrottleBurstOfSuccessesWaits(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.ThrottleFailures, h.ThrottleWindow = 3, 60_000_000_000 })
	var wg sync.WaitGroup
	statuses := make([]int, 30)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := newRequest(http.MethodPost, "/outer/token/", strings.NewReader(formCreds(testClientID, testClientSecret)))
			r.Header.Set("Content-Type", formType)
			r = r.WithContext(contextWithClientIP(r, testClientIP))
			rec := newNoopRecorder()
			_ = h.ServeHTTP(rec, r, failNext(t))
			statuses[i] = rec.status
		}()
	}
	wg.Wait()
	for _, s := range statuses {
		if s != 200 {
			t.Fatalf("statuses %v, want all 200", statuses)
		}
	}
}

// TestPlanFailureCost checks how many decoy checks a failure pays, per id.
func TestPlanFailureCost(t *testing.T) {
	b4, b5 := bcryptHash(t, "x", 4), bcryptHash(t, "x", 5)
	for _, tc := range []struct {
		name      string
		clients   []Client
		slots     int
		paid      map[string]int
		cheaperID []string
	}{
		{name: "only sha256: one sha256 decoy", clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("s")}}},
			slots: 1, paid: map[string]int{"a": 0}},
		{name: "a bcrypt client pays its own hash, a sha256 one the decoy",
			clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("s")}}, {ID: "b", SecretHashes: []string{b5}}},
			slots:   1, paid: map[string]int{"a": 0, "b": 1}},
		{name: "two bcrypt hashes (rotation) set two slots for everyone",
			clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("s")}}, {ID: "b", SecretHashes: []string{b5, b5}}, {ID: "c", SecretHashes: []string{b5}}},
			slots:   2, paid: map[string]int{"a": 0, "b": 2, "c": 1}},
		{name: "a bcrypt hash below the highest cost is reported",
			clients: []Client{{ID: "low", SecretHashes: []string{b4}}, {ID: "top", SecretHashes: []string{b5}}},
			slots:   1, paid: map[string]int{"low": 0, "top": 1}, cheaperID: []string{"low"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clients := map[string]*Client{}
			for i := range tc.clients {
				c := &tc.clients[i]
				for _, raw := range c.SecretHashes {
					v, err := parseSecretHash(raw)
					if err != nil {
						t.Fatal(err)
					}
					c.verifiers = append(c.verifiers, v)
				}
				clients[c.ID] = c
			}
			plan, cheaper := planFailureCost(clients)
			if plan.slots != tc.slots {
				t.Errorf("slots = %d, want %d", plan.slots, tc.slots)
			}
			for id, want := range tc.paid {
				if got := clients[id].decoyEquivalents; got != want {
					t.Errorf("%s pays %d of its own, want %d", id, got, want)
				}
			}
			slices.Sort(cheaper)
			if !slices.Equal(cheaper, tc.cheaperID) {
				t.Errorf("cheaper = %v, want %v", cheaper, tc.cheaperID)
			}
		})
	}
}

// TestFailuresCostTheSame times failed checks of an unknown id, a known
// SHA-256 id and a known bcrypt id with sha256 and bcrypt clients mixed
// (issue 12 item 7): 200 tries each, interleaved, and the medians must stay
// within a factor 2 of each other. Without the decoy on SHA-256 failures
// the SHA-256 median is ~1/1000 of the others.
func TestFailuresCostTheSame(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: "legacy", SecretHashes: []string{bcryptHash(t, "legacy-secret", 5)}})
	})
	ids := []string{"nobody-at-all", testClientID, "legacy"}
	times := make([][]time.Duration, len(ids))
	for i := 0; i < 200; i++ {
		for k, id := range ids {
			start := time.Now()
			if _, _, ok := h.auth.verify(id, "wrong-secret"); ok {
				t.Fatal("wrong secret accepted")
			}
			times[k] = append(times[k], time.Since(start))
		}
	}
	medians := make([]time.Duration, len(ids))
	for k := range ids {
		sort.Slice(times[k], func(a, b int) bool { return times[k][a] < times[k][b] })
		medians[k] = times[k][len(times[k])/2]
	}
	t.Logf("median failure: unknown %v, sha256 %v, bcrypt %v", medians[0], medians[1], medians[2])
	for a := range ids {
		for b := range ids {
			if r := float64(medians[a]) / float64(medians[b]); r > 2 || r < 0.5 {
				t.Errorf("median failure of %s / %s = %.2f, want within [0.5, 2] (%v vs %v)", ids[a], ids[b], r, medians[a], medians[b])
			}
		}
	}
	// A success may stay quick: the match cache answers the second one.
	if _, _, ok := h.auth.verify("legacy", "legacy-secret"); !ok {
		t.Fatal("bcrypt client refused")
	}
	start := time.Now()
	if _, _, ok := h.auth.verify("legacy", "legacy-secret"); !ok {
		t.Fatal("bcrypt client refused")
	}
	if d := time.Since(start); d > medians[2] {
		t.Logf("note: cached success took %v, longer than a failure (%v) on this loaded machine", d, medians[2])
	}
	_ = bcrypt.MinCost
}

// TestUnknownIDLocksOutLikeAKnownOne: past throttle_client, an unknown id
// gets the very answer a configured one gets (issue 12 item 8), and its
// counter is keyed by a fingerprint, never by the id's text.
func TestUnknownIDLocksOutLikeAKnownOne(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.ThrottleOff, h.ThrottleClientFailures, h.ThrottleClientWindow = true, 3, 60_000_000_000
	})
	answers := map[string][]string{}
	for _, id := range []string{testClientID, "ghost-id-pasted-secret"} {
		for i := 0; i < 4; i++ {
			rec := tokenCall{body: formCreds(id, "wrong"), ip: testClientIP}.do(t, h)
			answers[id] = append(answers[id], rec.Result().Status+" "+rec.Body.String()+" retry="+rec.Header().Get("Retry-After"))
		}
	}
	known, unknown := answers[testClientID], answers["ghost-id-pasted-secret"]
	if !slices.Equal(known, unknown) {
		t.Fatalf("known id answers\n%q\nunknown id answers\n%q", known, unknown)
	}
	if !strings.HasPrefix(known[3], "429 ") || !strings.Contains(known[3], "23029") || strings.HasSuffix(known[3], "retry=") {
		t.Fatalf("4th failure = %q, want 429 + 23029 with Retry-After", known[3])
	}
	// Another unknown id is not locked by that one.
	if rec := (tokenCall{body: formCreds("ghost-2", "wrong"), ip: testClientIP}).do(t, h); rec.Code != 401 {
		t.Fatalf("a fresh unknown id answered %d, want 401", rec.Code)
	}
	ms, ok := memoryStoreOf(h)
	if !ok {
		t.Fatal("no memory store")
	}
	for k := range ms.tokens.failures.Items() {
		if strings.Contains(k, "ghost") || strings.Contains(k, "pasted") {
			t.Errorf("failure counter keyed by the unknown id's text: %q", k)
		}
	}
}

// TestUnknownIDCountersAreBounded: the counters of unknown ids are created
// only by attempts the per-address throttle let through, so one address
// creates at most `throttle` of them per window, and they expire.
func TestUnknownIDCountersAreBounded(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.ThrottleFailures, h.ThrottleWindow = 3, 60_000_000_000 })
	for i := 0; i < 50; i++ {
		tokenCall{body: formCreds("random-"+strings.Repeat("x", i), "wrong"), ip: testClientIP}.do(t, h)
	}
	ms, _ := memoryStoreOf(h)
	n := 0
	for k, item := range ms.tokens.failures.Items() {
		if strings.HasPrefix(k, "client:~") {
			n++
			if item.Expiration == 0 {
				t.Errorf("counter %q never expires", k)
			}
		}
	}
	if n != 3 {
		t.Fatalf("%d unknown-id counters after 50 random ids from one address with throttle 3, want 3", n)
	}
}

// TestThrottleClaimWaitEnds: while the places of attempts still being
// checked fill the limit, a request waits up to claimWait, then gets 429
// with Retry-After: 1 (not the window's end: no failure was counted).
func TestThrottleClaimWaitEnds(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.ThrottleFailures, h.ThrottleWindow = 2, 60_000_000_000 })
	ctx := context.Background()
	for i := 0; i < 2; i++ { // two attempts "being checked" that never finish
		if aerr := h.auth.byAddress.claim(ctx, "ip:"+testClientIP); aerr != nil {
			t.Fatal("could not hold a claim")
		}
	}
	start := time.Now()
	rec := tokenCall{body: formCreds(testClientID, testClientSecret), ip: testClientIP}.do(t, h)
	checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
	if ra := rec.Header().Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	t.Logf("refused after %v", time.Since(start))
	// Once they are given back, the right secret gets its token.
	for i := 0; i < 2; i++ {
		h.auth.byAddress.done("ip:" + testClientIP)
	}
	if rec := (tokenCall{body: formCreds(testClientID, testClientSecret), ip: testClientIP}).do(t, h); rec.Code != 200 {
		t.Fatalf("after the claims were released: %d %s", rec.Code, rec.Body)
	}
}

// TestCheaperBcryptHashIsWarnedOf: a bcrypt hash below the highest cost is
// named in a warning at provision, since its failures cost more.
func TestCheaperBcryptHashIsWarnedOf(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	newTestHandlerLogging(t, func(h *Handler) {
		h.Clients = append(h.Clients,
			Client{ID: "cheap", SecretHashes: []string{bcryptHash(t, "a", 4)}},
			Client{ID: "dear", SecretHashes: []string{bcryptHash(t, "b", 5)}})
	}, zap.New(core))
	found := false
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "bcrypt hashes below the highest configured cost") {
			found = fmt.Sprint(e.ContextMap()["client_ids"]) == "[cheap]"
		}
	}
	if !found {
		t.Fatalf("no warning naming [cheap]: %v", logs.All())
	}
}

// TestLockedOutWhateverTheCredentials: once the address is locked out, a
// right secret gets 429 + 23029 too, whatever else its request holds: a
// token request, one with a scope the client does not have, one in an
// authentication method the client may not use, a revocation, a request
// without a secret, a malformed one. No token is written meanwhile.
func TestLockedOutWhateverTheCredentials(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.ThrottleFailures, h.ThrottleWindow = 3, 60_000_000_000
		h.Clients[1].AuthMethod = "basic"
	})
	ms, _ := memoryStoreOf(h)
	lock := h.auth.byAddress.lockout("ip:" + testClientIP)
	for range 3 { // counted as another instance would, so this one has not learned it
		if _, err := ms.CountFailures(context.Background(), lock); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		call tokenCall
	}{
		{"right secret", tokenCall{body: formCreds(testClientID, testClientSecret)}},
		{"invalid scope", tokenCall{body: formCreds(testClientID, testClientSecret, "scope", "nope")}},
		{"method not allowed", tokenCall{body: formCreds(readerClientID, readerSecret)}},
		{"revocation", tokenCall{target: "/outer/token/revoke/", body: url.Values{"client_id": {testClientID},
			"client_secret": {testClientSecret}, "token": {"x"}}.Encode()}},
		{"no secret", tokenCall{body: "grant_type=client_credentials&client_id=" + testClientID}},
		{"malformed", tokenCall{body: "grant_type=password&client_id=" + testClientID}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newTestHandler(t, func(h *Handler) { // a fresh instance each: no early refusal
				h.ThrottleFailures, h.ThrottleWindow = 3, 60_000_000_000
				h.Clients[1].AuthMethod = "basic"
				h.StoreRaw = json.RawMessage(`{"module":"memory","name":"test/TestLockedOutWhateverTheCredentials"}`)
			})
			tc.call.ip = testClientIP
			rec := tc.call.do(t, h)
			checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
			if rec.Header().Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
		})
	}
	if n, _ := ms.CountClient(context.Background(), testClientID); n != 0 {
		t.Fatalf("%d tokens written for a locked-out address", n)
	}
	// The same requests from another address are answered on their merits.
	if rec := (tokenCall{body: formCreds(testClientID, testClientSecret, "scope", "nope"), ip: "198.51.100.9"}).do(t, h); rec.Code != http.StatusBadRequest {
		t.Fatalf("invalid scope from another address: %d %s", rec.Code, rec.Body)
	}
	if rec := (tokenCall{body: formCreds(readerClientID, readerSecret), ip: "198.51.100.9"}).do(t, h); rec.Code != http.StatusUnauthorized {
		t.Fatalf("method not allowed from another address: %d %s", rec.Code, rec.Body)
	}
}

// decoyCounter stands for the decoy: it counts the checks it ran.
type decoyCounter struct{ n atomic.Int32 }

func (v *decoyCounter) verify(string) bool { v.n.Add(1); return false }

// TestLockedOutRefusalCostsAFailure: on an instance that has not learned
// a lockout, a right secret is refused 429 only after its check, so that
// refusal must cost what a wrong secret's costs; otherwise a quick 429
// says "right secret" to an address that is locked out, past the limit.
// The decoy checks are counted (not timed): a right secret of a SHA-256
// client, and of a bcrypt client whose secret the match cache holds (it
// ran no bcrypt), pay the decoy for every slot, as a wrong secret does;
// one whose own bcrypt ran pays that much less, as a wrong secret does.
// Every operation that answers a checked client: issue, invalid scope,
// an authentication method the client may not use, revocation,
// introspection.
func TestLockedOutRefusalCostsAFailure(t *testing.T) {
	storeName := json.RawMessage(`{"module":"memory","name":"test/TestLockedOutRefusalCostsAFailure"}`)
	configure := func(h *Handler) {
		h.ThrottleFailures, h.ThrottleWindow = 3, 60_000_000_000
		h.Clients[1].AuthMethod = "basic"
		h.Clients = append(h.Clients, Client{ID: "legacy", SecretHashes: []string{bcryptHash(t, "legacy-secret", 4)},
			Introspect: "any"})
		h.StoreRaw = storeName
	}
	warm := newTestHandler(t, configure)
	// The bcrypt client's secret is in its match cache (a legitimate
	// client has been using it) on the instance that will be asked.
	issueToken(t, warm, "legacy", "legacy-secret", "")
	ms, _ := memoryStoreOf(warm)
	for range 3 { // counted as another instance would, so that warm has not learned it
		if _, err := ms.CountFailures(context.Background(), warm.auth.byAddress.lockout("ip:"+testClientIP)); err != nil {
			t.Fatal(err)
		}
	}
	decoys := func(h *Handler, call tokenCall) int32 {
		t.Helper()
		v := &decoyCounter{}
		h.auth.decoy = v
		h.auth.byAddress.attempts = newAttempts() // nothing learned
		call.ip = testClientIP
		rec := call.do(t, h)
		checkErrorEnvelope(t, rec, http.StatusTooManyRequests, CodeTooManyFailures)
		return v.n.Load()
	}
	slots := int32(warm.auth.cost.slots)
	for _, tc := range []struct {
		name string
		call tokenCall
		want int32
	}{
		{"wrong secret", tokenCall{body: formCreds(testClientID, "wrong")}, slots},
		{"right secret", tokenCall{body: formCreds(testClientID, testClientSecret)}, slots},
		{"invalid scope", tokenCall{body: formCreds(testClientID, testClientSecret, "scope", "nope")}, slots},
		{"method not allowed", tokenCall{body: formCreds(readerClientID, readerSecret)}, slots},
		{"revocation", tokenCall{target: "/outer/token/revoke/", body: url.Values{"client_id": {testClientID},
			"client_secret": {testClientSecret}, "token": {"x"}}.Encode()}, slots},
		{"introspection", tokenCall{target: "/outer/token/introspect/", body: url.Values{"client_id": {"legacy"},
			"client_secret": {"legacy-secret"}, "token": {"x"}}.Encode()}, slots},
		{"bcrypt, cached secret", tokenCall{body: formCreds("legacy", "legacy-secret")}, slots},
		{"bcrypt, wrong secret", tokenCall{body: formCreds("legacy", "wrong")}, slots - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := decoys(warm, tc.call); got != tc.want {
				t.Fatalf("%d decoy checks before the 429, want %d (what a wrong secret pays)", got, tc.want)
			}
		})
	}
	t.Run("bcrypt, uncached secret", func(t *testing.T) {
		cold := newTestHandler(t, configure) // its own match cache: empty
		if got := decoys(cold, tokenCall{body: formCreds("legacy", "legacy-secret")}); got != slots-1 {
			t.Fatalf("%d decoy checks before the 429, want %d (its own bcrypt ran, as a wrong secret's does)", got, slots-1)
		}
	})
}

// countOrder is a FailureStore that notes how many decoy checks had run
// when each failure was counted.
type countOrder struct {
	FailureStore
	decoy *decoyCounter
	at    []int32
}

func (s *countOrder) CountFailures(ctx context.Context, locks ...Lockout) ([]FailureCount, error) {
	s.at = append(s.at, s.decoy.n.Load())
	return s.FailureStore.CountFailures(ctx, locks...)
}

// TestFailureCountedBeforeDecoy: a wrong guess is counted before it pays
// the decoy, so that it reaches the store when a right guess checked at
// the same moment would reach it with its token: concurrent guesses, on
// however many instances, are then counted in the order they were
// checked, and only fewer than max wrong ones can come before a right one
// that gets a token. (Paying first, a wrong guess of a SHA-256 client was
// counted a bcrypt's work after a right one wrote its token.) The answer
// still waits for the whole decoy.
func TestFailureCountedBeforeDecoy(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: "legacy", SecretHashes: []string{bcryptHash(t, "legacy-secret", 4)}})
	})
	slots := int32(h.auth.cost.slots)
	for _, tc := range []struct {
		name      string
		id, guess string
		decoys    int32 // paid after the count: what the id's own hashes did not cost
	}{
		{"sha256 client", testClientID, "wrong", slots},
		{"unknown id", "nobody", "wrong", slots},
		{"sha256 client, a blank secret", testClientID, " ", slots},
		{"bcrypt client (its own bcrypt is the work)", "legacy", "wrong", slots - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &decoyCounter{}
			order := &countOrder{FailureStore: h.auth.failures, decoy: v}
			h.auth.decoy, h.auth.failures = v, order
			rec := tokenCall{body: formCreds(tc.id, tc.guess), ip: "198.51.100.9"}.do(t, h)
			checkErrorEnvelope(t, rec, http.StatusUnauthorized, CodeClientAuthFailed)
			if len(order.at) != 1 || order.at[0] != 0 {
				t.Fatalf("decoy checks run when the failure was counted: %v, want [0]", order.at)
			}
			if got := v.n.Load(); got != tc.decoys {
				t.Fatalf("%d decoy checks before the answer, want %d", got, tc.decoys)
			}
		})
	}
}

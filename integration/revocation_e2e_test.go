package integration

// End-to-end tests of RFC 7009 revocation (issue 5): by clients at
// <token_path>revoke/, and its reach across instances sharing one Redis.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// TestRevocationRFC7009 checks POST <token_path>revoke/: client
// authentication like the token endpoint, own tokens only, the RFC 7009
// answers, and that a revoked token is refused at once.
func TestRevocationRFC7009(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	withForm := func(extra map[string]string) map[string]string {
		h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	const (
		ownToken   = "own"   // the calling client's own token
		otherToken = "other" // another client's token
	)
	tests := []struct {
		name string
		// req builds the request from the caller's token and another
		// client's token, both fresh for the row.
		req     func(own, other string) request
		status  int
		code    int
		message string
		exact   bool   // the body must be exactly opsRevokedBody
		header  string // a header that must be present, "Name: value"
		// target is the token checked after the request, and revoked
		// says whether it must then be refused.
		target  string
		revoked bool
	}{
		{name: "own token revoked, credentials in the body", req: func(own, _ string) request { return opsRevoke(own, appID, appSecret) },
			status: 200, exact: true, target: ownToken, revoked: true},
		{name: "own token revoked, credentials in HTTP Basic", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}}, appID, appSecret, true)
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "own token revoked, JSON body", req: func(own, _ string) request {
			b, _ := json.Marshal(map[string]string{"token": own, "client_id": appID, "client_secret": appSecret})
			return request{method: "POST", path: opsRevokePath, header: map[string]string{"Content-Type": "application/json"}, body: string(b)}
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "token_type_hint is accepted", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}, "token_type_hint": {"access_token"}}, appID, appSecret, false)
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "revoke path answers without its trailing slash", req: func(own, _ string) request {
			r := opsRevoke(own, appID, appSecret)
			r.path = strings.TrimSuffix(opsRevokePath, "/")
			return r
		}, status: 200, exact: true, target: ownToken, revoked: true},
		{name: "another client's token is not revoked, same 200", req: func(_, other string) request { return opsRevoke(other, appID, appSecret) },
			status: 200, exact: true, target: otherToken, revoked: false},
		{name: "unknown token answers 200", req: func(_, _ string) request { return opsRevoke(opsRandomToken(g), appID, appSecret) },
			status: 200, exact: true, target: ownToken, revoked: false},
		{name: "missing token is 400 23010", req: func(_, _ string) request { return opsClientPost(opsRevokePath, nil, appID, appSecret, false) },
			status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "duplicate token is 400 23010", req: func(own, other string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own, other}}, appID, appSecret, false)
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "wrong secret is 401 23020 and revokes nothing", req: func(own, _ string) request { return opsRevoke(own, appID, "wrong-secret") },
			status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "wrong secret in Basic is 401 23020 with the Basic challenge", req: func(own, _ string) request {
			return opsClientPost(opsRevokePath, url.Values{"token": {own}}, appID, "wrong-secret", true)
		}, status: 401, code: 23020, header: `Www-Authenticate: Basic realm="outer"`, target: ownToken, revoked: false},
		{name: "unknown client is 401 23020", req: func(own, _ string) request { return opsRevoke(own, "nobody", appSecret) },
			status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "no client credentials is 401 23020 (RFC 6749 §5.2)", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: form, body: url.Values{"token": {own}}.Encode()}
		}, status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "client_id without a secret is 401 23020", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: form, body: url.Values{"token": {own}, "client_id": {appID}}.Encode()}
		}, status: 401, code: 23020, message: "client authentication failed", target: ownToken, revoked: false},
		{name: "credentials in the query string are 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath + "?" + url.Values{"client_id": {appID}, "client_secret": {appSecret}}.Encode(),
				header: form, body: url.Values{"token": {own}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "Basic beside a body secret is 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: withForm(map[string]string{"Authorization": basicAuth(appID, appSecret)}),
				body: url.Values{"token": {own}, "client_secret": {appSecret}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
		{name: "GET is 405 with Allow: POST", req: func(own, _ string) request {
			return request{path: opsRevokePath + "?token=" + url.QueryEscape(own)}
		}, status: 405, code: 23010, header: "Allow: POST", target: ownToken, revoked: false},
		{name: "unsupported content type is 400 23010", req: func(own, _ string) request {
			return request{method: "POST", path: opsRevokePath, header: map[string]string{"Content-Type": "text/plain"},
				body: url.Values{"token": {own}, "client_id": {appID}, "client_secret": {appSecret}}.Encode()}
		}, status: 400, code: 23010, target: ownToken, revoked: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := g.issue(appID, appSecret)
			other := g.issue(readerID, readerSecret)
			r := g.do(tt.req(own, other))
			if tt.status == 200 {
				if r.status != 200 || (tt.exact && string(r.body) != opsRevokedBody) {
					t.Errorf("got %d %s, want 200 %s", r.status, r.body, opsRevokedBody)
				}
			} else {
				expect(t, r, tt.status, tt.code, tt.message)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if tt.header != "" {
				name, value, _ := strings.Cut(tt.header, ": ")
				if got := r.header.Get(name); got != value {
					t.Errorf("%s = %q, want %q", name, got, value)
				}
			}
			target := own
			if tt.target == otherToken {
				target = other
			}
			after := g.do(opsDevice(target))
			if tt.revoked {
				expect(t, after, 401, 23021, "access token revoked")
				if got := after.header.Get("WWW-Authenticate"); got != `Bearer realm="outer", error="invalid_token"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
			} else {
				expect(t, after, 200, 0, "Device info")
			}
		})
	}

	t.Run("revoking twice answers 200 both times", func(t *testing.T) {
		tok := g.issue(appID, appSecret)
		for i := range 2 {
			if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 || string(r.body) != opsRevokedBody {
				t.Errorf("revocation %d: %d %s", i+1, r.status, r.body)
			}
		}
		expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
	})
	t.Run("failed authentications on revoke and introspect feed the token endpoint's throttle", func(t *testing.T) {
		tg := startGateway(t, gatewayConfig{Extra: "\t\tthrottle 2 1m"})
		tok := tg.issue(appID, appSecret)
		expect(t, tg.do(opsRevoke(tok, appID, "wrong-secret")), 401, 23020, "")
		expect(t, tg.do(opsIntrospect(tok, appID, "wrong-secret")), 401, 23020, "")
		for _, req := range []request{opsRevoke(tok, appID, appSecret), opsIntrospect(tok, appID, appSecret), tokenForm(cc(appID, appSecret))} {
			r := tg.do(req)
			expect(t, r, 429, 23029, "")
			if r.header.Get("Retry-After") == "" || r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s: 429 with Retry-After %q, Cache-Control %q", req.path, r.header.Get("Retry-After"), r.header.Get("Cache-Control"))
			}
		}
		expect(t, tg.do(opsDevice(tok)), 200, 0, "Device info")
	})
	t.Run("a revoked client keeps its other tokens and can get new ones", func(t *testing.T) {
		keep := g.issue(appID, appSecret)
		gone := g.issue(appID, appSecret)
		if r := g.do(opsRevoke(gone, appID, appSecret)); r.status != 200 {
			t.Fatalf("revoke: %d %s", r.status, r.body)
		}
		expect(t, g.do(opsDevice(gone)), 401, 23021, "access token revoked")
		expect(t, g.do(opsDevice(keep)), 200, 0, "Device info")
		expect(t, g.do(opsDevice(g.issue(appID, appSecret))), 200, 0, "Device info")
	})
}

// TestOperationsClusterRevocation runs two instances on one real Redis and
// measures how soon a revocation made on A is refused on B, which has the
// token in its validation cache: by token through A's admin API, by RFC
// 7009 on A, and by client through A's admin API. The contract's bound is
// 2 s whatever the cache; the second configuration uses a cache far longer
// than that, so only the invalidation can meet it.
func TestOperationsClusterRevocation(t *testing.T) {
	configs := []struct {
		name  string
		store string // %s is the Redis URL
	}{
		{name: "default cache", store: "\t\tstore redis %s"},
		{name: "cache_ttl 30s", store: "\t\tstore redis %s {\n\t\t\tcache_ttl 30s\n\t\t}"},
	}
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			rd := harness.StartRedis(t)
			extra := fmt.Sprintf(cfg.store, rd.URL())
			a := startGateway(t, gatewayConfig{Extra: extra})
			b := startGateway(t, gatewayConfig{Extra: extra})
			// warm issues a token on A and has both instances accept it
			// (twice on B, so that B validates from its cache).
			warm := func(t *testing.T, id, secret string) string {
				t.Helper()
				tok := a.issue(id, secret)
				b.remember(tok)
				expect(t, a.do(opsDevice(tok)), 200, 0, "Device info")
				expect(t, b.do(opsDevice(tok)), 200, 0, "Device info")
				expect(t, b.do(opsDevice(tok)), 200, 0, "Device info")
				return tok
			}
			var latencies []string
			var leftover []string // live tokens of appID from earlier steps

			t.Run("admin token revocation on A is refused on B within 2 s", func(t *testing.T) {
				tok := warm(t, appID, appSecret)
				keep := warm(t, appID, appSecret)
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
					t.Errorf("revoked = %d, want 1", n)
				}
				answered := time.Since(start)
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("admin revocation answered in %s, refused on B after %s", answered.Round(time.Microsecond), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("admin token %s", took.Round(time.Millisecond)))
				expect(t, a.do(opsDevice(tok)), 401, 23021, "access token revoked")
				expect(t, b.do(opsDevice(keep)), 200, 0, "Device info")
				leftover = append(leftover, keep)
			})

			t.Run("RFC 7009 revocation on A is refused on B within 2 s", func(t *testing.T) {
				tok := warm(t, appID, appSecret)
				start := time.Now()
				if r := a.do(opsRevoke(tok, appID, appSecret)); r.status != 200 || string(r.body) != opsRevokedBody {
					t.Errorf("revoke on A: %d %s", r.status, r.body)
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("RFC 7009 revocation refused on B after %s", took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("RFC 7009 %s", took.Round(time.Millisecond)))
				expect(t, a.do(opsDevice(tok)), 401, 23021, "access token revoked")
				// The other instance's own introspection agrees at once.
				r := b.do(opsIntrospect(tok, appID, appSecret))
				if r.status != 200 || !bytes.Contains(r.body, []byte(`"data":{"active":false}`)) {
					t.Errorf("introspection on B of the revoked token: %d %s", r.status, r.body)
				}
			})

			t.Run("revocation published while B's subscription is down is refused on B within 2 s", func(t *testing.T) {
				// A trap (docs/ARCHITECTURE.md): invalidations published while an instance
				// re-subscribes are lost, so its cache must not be trusted
				// meanwhile.
				tok := warm(t, appID, appSecret)
				killed, err := rd.Command("CLIENT", "KILL", "TYPE", "pubsub")
				if err != nil || !strings.HasPrefix(killed, ":") {
					t.Fatalf("redis CLIENT KILL TYPE pubsub: %q %v", killed, err)
				}
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"token":%q}`, tok)); n != 1 {
					t.Errorf("revoked = %d, want 1", n)
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, tok)
				t.Logf("subscriptions killed (%s connections): revocation refused on B after %s", strings.TrimPrefix(killed, ":"), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("during re-subscription %s", took.Round(time.Millisecond)))

				// Once re-subscribed, B caches again and still hears
				// revocations.
				time.Sleep(time.Second)
				again := warm(t, appID, appSecret)
				start = time.Now()
				if r := a.do(opsRevoke(again, appID, appSecret)); r.status != 200 {
					t.Errorf("revoke on A: %d %s", r.status, r.body)
				}
				took = opsWaitRefused(t, b, start, opsRevocationBound, again)
				t.Logf("after re-subscription: revocation refused on B after %s", took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("after re-subscription %s", took.Round(time.Millisecond)))
			})

			t.Run("client revocation on A refuses all its tokens on B within 2 s", func(t *testing.T) {
				// Every token of this step is issued on A: B's counts can
				// only come from Redis.
				toks := append(slices.Clone(leftover), warm(t, appID, appSecret), warm(t, appID, appSecret), warm(t, appID, appSecret))
				other := warm(t, readerID, readerSecret)
				opsCheckClients(t, b.caddy, map[string]int{appID: len(toks), readerID: 1, rotID: 0})
				opsCheckClients(t, a.caddy, map[string]int{appID: len(toks), readerID: 1, rotID: 0})
				start := time.Now()
				if n := opsAdminRevoke(t, a.caddy, fmt.Sprintf(`{"client_id":%q}`, appID)); n != len(toks) {
					t.Errorf("revoked = %d, want %d (the client's live tokens)", n, len(toks))
				}
				took := opsWaitRefused(t, b, start, opsRevocationBound, toks...)
				t.Logf("client revocation: all %d tokens refused on B after %s", len(toks), took.Round(time.Microsecond))
				latencies = append(latencies, fmt.Sprintf("client_id %s", took.Round(time.Millisecond)))
				for _, g := range []*gateway{a, b} {
					for _, tok := range toks {
						expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
					}
					expect(t, g.do(opsDevice(other)), 200, 0, "Device info")
				}
				opsCheckClients(t, b.caddy, map[string]int{appID: 0, readerID: 1, rotID: 0})
			})
			t.Logf("revocation latency on B (%s): %s", cfg.name, strings.Join(latencies, ", "))
		})
	}
}

package integration

// End-to-end tests of RFC 7662 introspection for clients (issue 5), on
// each store, against the built binary.

import (
	"bytes"
	"encoding/json"
	"net/url"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// TestIntrospectionRFC7662 checks POST <token_path>introspect/: the
// caller's own live token is described; any other token is exactly
// {"active":false}.
func TestIntrospectionRFC7662(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	short := startGateway(t, gatewayConfig{TTL: "1s"})

	// The short-lived token, described while live, then expired.
	expiring := short.issue(appID, appSecret)
	issuedAt := time.Now()
	shortLive := short.do(opsIntrospect(expiring, appID, appSecret))

	own := g.issue(appID, appSecret)
	readOnly := opsIssueScoped(g, appID, appSecret, "read")
	other := g.issue(readerID, readerSecret)
	revoked := g.issue(appID, appSecret)
	if r := g.do(opsRevoke(revoked, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	time.Sleep(time.Until(issuedAt.Add(1200 * time.Millisecond)))
	expect(t, short.do(opsDevice(expiring)), 401, 23021, "")

	type active struct {
		client string
		scope  string
		ttl    int64
	}
	tests := []struct {
		name    string
		gw      *gateway
		req     request
		reply   *reply // an answer already taken, instead of req
		status  int
		code    int
		active  *active // nil: data must be exactly {"active":false} (for 200)
		message string
	}{
		{name: "own live token is active", gw: g, req: opsIntrospect(own, appID, appSecret), status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 36000}},
		{name: "own token with a narrowed scope shows that scope", gw: g, req: opsIntrospect(readOnly, appID, appSecret), status: 200,
			active: &active{client: appID, scope: "read", ttl: 36000}},
		{name: "HTTP Basic credentials work", gw: g, req: opsClientPost(opsIntrospectPath, url.Values{"token": {own}}, appID, appSecret, true), status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 36000}},
		{name: "bcrypt client's own token is active", gw: g, req: opsIntrospect(other, readerID, readerSecret), status: 200,
			active: &active{client: readerID, scope: "read", ttl: 36000}},
		{name: "short-lived token while live: exp-iat is token_ttl", gw: short, reply: &shortLive, status: 200,
			active: &active{client: appID, scope: "read write groups", ttl: 1}},
		{name: "another client's token is inactive", gw: g, req: opsIntrospect(other, appID, appSecret), status: 200},
		{name: "unknown token is inactive", gw: g, req: opsIntrospect(opsRandomToken(g), appID, appSecret), status: 200},
		{name: "revoked token is inactive", gw: g, req: opsIntrospect(revoked, appID, appSecret), status: 200},
		{name: "expired token is inactive", gw: short, req: opsIntrospect(expiring, appID, appSecret), status: 200},
		{name: "missing token is 400 23010", gw: g, req: opsClientPost(opsIntrospectPath, nil, appID, appSecret, false), status: 400, code: 23010},
		{name: "wrong secret is 401 23020", gw: g, req: opsIntrospect(own, appID, "wrong-secret"), status: 401, code: 23020, message: "client authentication failed"},
		{name: "unknown client is 401 23020", gw: g, req: opsIntrospect(own, "nobody", appSecret), status: 401, code: 23020, message: "client authentication failed"},
		{name: "GET is 405 with Allow: POST", gw: g, req: request{path: opsIntrospectPath}, status: 405, code: 23010},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r reply
			if tt.reply != nil {
				r = *tt.reply
			} else {
				r = tt.gw.do(tt.req)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if tt.status != 200 {
				expect(t, r, tt.status, tt.code, tt.message)
				if tt.status == 405 && r.header.Get("Allow") != "POST" {
					t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
				}
				return
			}
			expect(t, r, 200, 0, "")
			if tt.active == nil {
				var compact bytes.Buffer
				if err := json.Compact(&compact, r.env.Data); err != nil || compact.String() != `{"active":false}` {
					t.Errorf("data = %s, want exactly {\"active\":false}", r.env.Data)
				}
				return
			}
			opsCheckActive(t, r.env.Data, tt.active.client, tt.active.scope, tt.active.ttl)
		})
	}
}

// TestIntrospectionAfterEviction checks, on each store, that issuing past
// max_tokens_per_client evicts the client's oldest token: introspection
// shows it inactive and the newest token active. Tokens issued a few
// milliseconds apart, then back to back.
func TestIntrospectionAfterEviction(t *testing.T) {
	stores := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{name: "memory store", store: func(*testing.T) string { return "" }},
		{name: "redis store", store: func(t *testing.T) string { return "\t\tstore redis " + harness.StartRedis(t).URL() }},
	}
	active := func(g *gateway, tok string) bool {
		r := g.do(opsIntrospect(tok, appID, appSecret))
		if r.status != 200 {
			g.t.Fatalf("introspection: %d %s", r.status, r.body)
		}
		return bytes.Contains(r.env.Data, []byte(`"active":true`))
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{Extra: "\t\tmax_tokens_per_client 1\n" + st.store(t)})
			t.Run("tokens issued apart: the oldest is evicted", func(t *testing.T) {
				old := g.issue(appID, appSecret)
				time.Sleep(5 * time.Millisecond)
				young := g.issue(appID, appSecret)
				if active(g, old) {
					t.Errorf("the evicted token is still active")
				}
				if !active(g, young) {
					t.Errorf("the newest token is inactive")
				}
				expect(t, g.do(opsDevice(old)), 401, 23021, "")
				expect(t, g.do(opsDevice(young)), 200, 0, "Device info")
			})
			t.Run("tokens issued back to back: the newest always survives", func(t *testing.T) {
				const pairs = 100
				youngDead, oldAlive := 0, 0
				for range pairs {
					old := g.issue(appID, appSecret)
					young := g.issue(appID, appSecret)
					if !active(g, young) {
						youngDead++
					}
					if active(g, old) {
						oldAlive++
					}
				}
				if youngDead > 0 || oldAlive > 0 {
					t.Errorf("with max_tokens_per_client 1, of %d back-to-back pairs of token requests the just-issued token was "+
						"inactive (evicted on issuance) %d times and the older one kept %d times", pairs, youngDead, oldAlive)
				}
			})
		})
	}
}

// opsCheckActive checks an RFC 7662 answer for an active token: exactly the
// fields active, client_id, scope, exp, iat and token_type, with exp - iat
// equal to the token's lifetime and exp in the future (for long lifetimes).
func opsCheckActive(t *testing.T, data json.RawMessage, client, scope string, ttl int64) {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatalf("data %s is not an object: %v", data, err)
	}
	var keys []string
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if want := []string{"active", "client_id", "exp", "iat", "scope", "token_type"}; !slices.Equal(keys, want) {
		t.Errorf("data fields %v, want %v (%s)", keys, want, data)
	}
	var got struct {
		Active    bool   `json:"active"`
		ClientID  string `json:"client_id"`
		Scope     string `json:"scope"`
		Exp       int64  `json:"exp"`
		Iat       int64  `json:"iat"`
		TokenType string `json:"token_type"`
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("data %s: %v", data, err)
	}
	now := time.Now().Unix()
	switch {
	case !got.Active:
		t.Errorf("active = false, want true: %s", data)
	case got.ClientID != client:
		t.Errorf("client_id = %q, want %q", got.ClientID, client)
	case got.Scope != scope:
		t.Errorf("scope = %q, want %q", got.Scope, scope)
	case got.TokenType != "Bearer":
		t.Errorf("token_type = %q, want Bearer", got.TokenType)
	case got.Exp-got.Iat != ttl:
		t.Errorf("exp - iat = %d, want token_ttl %d (%s)", got.Exp-got.Iat, ttl, data)
	case got.Iat < now-60 || got.Iat > now+1:
		t.Errorf("iat = %d, want about now (%d): unix seconds", got.Iat, now)
	case ttl > 10 && got.Exp <= now:
		t.Errorf("exp = %d is not in the future (now %d)", got.Exp, now)
	}
}

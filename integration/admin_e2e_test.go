package integration

// End-to-end tests of the admin API module admin.api.outergate (issue 5):
// revocation by token or client and the live-token listing.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// opsAdmin calls Caddy's admin endpoint of c and returns the status and the
// raw body.
func opsAdmin(t *testing.T, c *harness.Caddy, method, path, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, c.AdminURL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("admin %s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, out
}

// opsAdminRevoke posts body to /outergate/revoke, expects 200 and exactly
// {"revoked": N}, and returns N.
func opsAdminRevoke(t *testing.T, c *harness.Caddy, body string) int {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodPost, "/outergate/revoke", body)
	if status != http.StatusOK {
		t.Fatalf("admin revoke %s: %d %s", body, status, raw)
	}
	var out struct {
		Revoked *int `json:"revoked"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Revoked == nil {
		t.Fatalf("admin revoke %s: answer %s is not {\"revoked\": N} (%v)", body, raw, err)
	}
	return *out.Revoked
}

// opsAdminClients reads GET /outergate/clients of c: the live token count
// of each listed client, in the order listed, and the raw body.
func opsAdminClients(t *testing.T, c *harness.Caddy) (map[string]int, []string, []byte) {
	t.Helper()
	status, raw := opsAdmin(t, c, http.MethodGet, "/outergate/clients", "")
	if status != http.StatusOK {
		t.Fatalf("admin clients: %d %s", status, raw)
	}
	var out struct {
		Clients []struct {
			ID         *string `json:"id"`
			LiveTokens *int    `json:"live_tokens"`
			// Since issue 15: where the client comes from and its scope.
			Source string `json:"source"`
			Scope  string `json:"scope"`
		} `json:"clients"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil || out.Clients == nil {
		t.Fatalf("admin clients: answer %s is not {\"clients\": [{\"id\", \"live_tokens\"}...]} (%v)", raw, err)
	}
	counts := map[string]int{}
	var order []string
	for _, c := range out.Clients {
		if c.ID == nil || c.LiveTokens == nil {
			t.Fatalf("admin clients: entry without id or live_tokens in %s", raw)
		}
		if c.Source != "config" || c.Scope == "" {
			t.Errorf("admin clients: configured client %s without source config or scope in %s", *c.ID, raw)
		}
		if _, dup := counts[*c.ID]; dup {
			t.Errorf("admin clients: %s listed twice in %s", *c.ID, raw)
		}
		counts[*c.ID] = *c.LiveTokens
		order = append(order, *c.ID)
	}
	return counts, order, raw
}

// opsCheckClients compares a clients listing with want (every configured
// client and its live tokens).
func opsCheckClients(t *testing.T, c *harness.Caddy, want map[string]int) {
	t.Helper()
	got, _, raw := opsAdminClients(t, c)
	if len(got) != len(want) {
		t.Errorf("admin clients lists %d clients, want %d: %s", len(got), len(want), raw)
	}
	for id, n := range want {
		if m, ok := got[id]; !ok || m != n {
			t.Errorf("admin clients: %s live_tokens = %d (listed %v), want %d: %s", id, m, ok, n, raw)
		}
	}
}

// TestAdminAPIRevokeAndClients checks the admin API module on Caddy's
// admin endpoint: revocation by token and by client, its errors, and the
// clients listing, which never shows a secret, hash or token.
func TestAdminAPIRevokeAndClients(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	c := g.caddy
	app := []string{g.issue(appID, appSecret), g.issue(appID, appSecret), g.issue(appID, appSecret)}
	reader := []string{g.issue(readerID, readerSecret), g.issue(readerID, readerSecret)}
	rot := g.issue(rotID, rotOld)

	t.Run("clients lists every configured client with its live tokens", func(t *testing.T) {
		opsCheckClients(t, c, map[string]int{appID: 3, readerID: 2, rotID: 1})
		_, order, raw := opsAdminClients(t, c)
		if !slices.IsSorted(order) {
			t.Logf("clients are not sorted by id: %v", order)
		}
		forbidden := []string{appSecret, readerSecret, rotOld, rotNew, readerBcrypt(), "$2a$", "$2b$", "sha256:"}
		for _, s := range []string{appSecret, rotOld, rotNew} {
			forbidden = append(forbidden, strings.TrimPrefix(sha256Hash(s), "sha256:"))
		}
		forbidden = append(forbidden, app...)
		forbidden = append(forbidden, reader...)
		forbidden = append(forbidden, rot)
		for _, s := range forbidden {
			if bytes.Contains(raw, []byte(s)) {
				t.Errorf("clients answer contains a secret, hash or token (%q...): %s", s[:4], raw)
			}
		}
		for _, word := range []string{"secret", "hash", "token\""} {
			if bytes.Contains(bytes.ToLower(raw), []byte(word)) {
				t.Errorf("clients answer has a %q field or value: %s", word, raw)
			}
		}
	})

	t.Run("revoke by token revokes that token only", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, app[0])); n != 1 {
			t.Errorf("revoked = %d, want 1", n)
		}
		expect(t, g.do(opsDevice(app[0])), 401, 23021, "access token revoked")
		expect(t, g.do(opsDevice(app[1])), 200, 0, "Device info")
		opsCheckClients(t, c, map[string]int{appID: 2, readerID: 2, rotID: 1})
	})
	t.Run("revoking a revoked token again revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, app[0])); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})
	t.Run("revoke of an unknown token revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"token":%q}`, opsRandomToken(g))); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})
	t.Run("revoke of an unknown client revokes nothing", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, `{"client_id":"nobody"}`); n != 0 {
			t.Errorf("revoked = %d, want 0", n)
		}
	})

	bad := []struct {
		name   string
		method string
		path   string
		body   string
		status int
	}{
		{name: "empty body is 400", method: "POST", path: "/outergate/revoke", body: "", status: 400},
		{name: "not JSON is 400", method: "POST", path: "/outergate/revoke", body: "token=abc", status: 400},
		{name: "empty object is 400", method: "POST", path: "/outergate/revoke", body: `{}`, status: 400},
		{name: "empty token is 400", method: "POST", path: "/outergate/revoke", body: `{"token":""}`, status: 400},
		{name: "both token and client_id is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`{"token":%q,"client_id":%q}`, app[1], appID), status: 400},
		{name: "unknown field is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`{"tokens":%q}`, app[1]), status: 400},
		{name: "token not a string is 400", method: "POST", path: "/outergate/revoke", body: `{"token":5}`, status: 400},
		{name: "array body is 400", method: "POST", path: "/outergate/revoke", body: fmt.Sprintf(`[{"client_id":%q}]`, appID), status: 400},
		{name: "trailing data after the object is 400", method: "POST", path: "/outergate/revoke", body: `{"client_id":"nobody"} {"client_id":"nobody-else"}`, status: 400},
		{name: "revoke by GET is 405", method: "GET", path: "/outergate/revoke", status: 405},
		// Since issue 15, POST /outergate/clients creates a client: an
		// empty object lacks its id. Another method is still 405.
		{name: "clients by POST without an id is 400", method: "POST", path: "/outergate/clients", body: `{}`, status: 400},
		{name: "clients by PUT is 405", method: "PUT", path: "/outergate/clients", body: `{}`, status: 405},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			status, raw := opsAdmin(t, c, tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Errorf("%s %s %s: %d %s, want %d", tt.method, tt.path, tt.body, status, raw, tt.status)
			}
		})
	}
	t.Run("bad requests revoked nothing", func(t *testing.T) {
		opsCheckClients(t, c, map[string]int{appID: 2, readerID: 2, rotID: 1})
		expect(t, g.do(opsDevice(app[1])), 200, 0, "Device info")
	})

	t.Run("revoke by client_id revokes all its tokens, others unharmed", func(t *testing.T) {
		if n := opsAdminRevoke(t, c, fmt.Sprintf(`{"client_id":%q}`, appID)); n != 2 {
			t.Errorf("revoked = %d, want 2 (the client's live tokens)", n)
		}
		for _, tok := range app {
			expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
		}
		for _, tok := range append(slices.Clone(reader), rot) {
			expect(t, g.do(opsDevice(tok)), 200, 0, "Device info")
		}
		opsCheckClients(t, c, map[string]int{appID: 0, readerID: 2, rotID: 1})
		// A revocation is not a ban: the client can get a new token.
		expect(t, g.do(opsDevice(g.issue(appID, appSecret))), 200, 0, "Device info")
		opsCheckClients(t, c, map[string]int{appID: 1, readerID: 2, rotID: 1})
	})
	t.Run("clients follows a reload: removed clients leave, new ones appear", func(t *testing.T) {
		rotLine := fmt.Sprintf("\t\tclient %s %s %s\n", rotID, sha256Hash(rotOld), sha256Hash(rotNew))
		body := g.caddyfile()
		if !strings.Contains(body, rotLine) {
			t.Fatalf("gateway Caddyfile has no line %q", rotLine)
		}
		body = strings.Replace(body, rotLine, "\t\tclient late-joiner "+sha256Hash("late-joiner-secret-0005")+"\n", 1)
		c.Reload(t, body)
		opsCheckClients(t, c, map[string]int{appID: 1, readerID: 2, "late-joiner": 0})
		expect(t, g.do(opsDevice(reader[0])), 200, 0, "Device info")
	})
}

// TestAdminAPIExpiredTokensAreNotLive checks, on each store, that expired
// tokens are neither counted as live nor as revoked by the admin API.
func TestAdminAPIExpiredTokensAreNotLive(t *testing.T) {
	stores := []struct {
		name  string
		store func(t *testing.T) string
	}{
		{name: "memory store", store: func(*testing.T) string { return "" }},
		{name: "redis store", store: func(t *testing.T) string { return "\t\tstore redis " + harness.StartRedis(t).URL() }},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			g := startGateway(t, gatewayConfig{TTL: "1s", Extra: st.store(t)})
			issued := time.Now()
			g.issue(appID, appSecret)
			g.issue(appID, appSecret)
			g.issue(readerID, readerSecret)
			opsCheckClients(t, g.caddy, map[string]int{appID: 2, readerID: 1, rotID: 0})
			time.Sleep(time.Until(issued.Add(1200 * time.Millisecond)))
			live := g.issue(appID, appSecret)
			opsCheckClients(t, g.caddy, map[string]int{appID: 1, readerID: 0, rotID: 0})
			if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, appID)); n != 1 {
				t.Errorf("client revocation revoked %d, want 1 (expired tokens are not live)", n)
			}
			if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 0 {
				t.Errorf("client revocation of expired tokens revoked %d, want 0", n)
			}
			expect(t, g.do(opsDevice(live)), 401, 23021, "access token revoked")
		})
	}
}

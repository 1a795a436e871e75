package integration

// End-to-end tests of the clients managed at runtime through the admin API
// (issue 15), and of a token being worth at most what its client is
// allowed now (issue 12, item 9): across two instances on one real Redis,
// across a restart with the memory store and Caddy's file storage, the
// rules of the API, bad input, the CLI, and the logs.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// managedBound is how soon a change made on one instance is in effect on
// every instance (issue 15).
const managedBound = 2 * time.Second

// TestManagedClientsAcrossInstances runs two instances on one real Redis:
// a client created on A gets a token from B; a rotation with a grace
// period accepts both secrets, then only the new one; a PATCH that narrows
// the scope narrows a live token on the other instance; a DELETE refuses
// every live token on both instances. The failure throttle is off so that
// polling for a refusal does not trip it.
func TestManagedClientsAcrossInstances(t *testing.T) {
	rd := harness.StartRedis(t)
	extra := "\t\tstore redis " + rd.URL() + "\n\t\tthrottle off"
	a := startGateway(t, gatewayConfig{Extra: extra})
	b := startGateway(t, gatewayConfig{Extra: extra})
	const id = "acme-2"

	secret := managedCreate(t, a, `{"id":"acme-2","scope":"read write"}`, b)
	took, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(b, id, secret); return s == http.StatusOK })
	if !ok {
		t.Fatalf("a client created on A gets no token from B within %s", managedBound)
	}
	t.Logf("created on A, first token from B after %s", took.Round(time.Millisecond))
	tokB := b.issue(id, secret)
	a.remember(tokB)
	if s, c := deviceStatus(a, tokB, false); s != http.StatusOK {
		t.Errorf("B's token of the new client on A: %d %d, want 200", s, c)
	}

	t.Run("the listing shows it as managed on both instances, without secret or hash", func(t *testing.T) {
		for _, g := range []*gateway{a, b} {
			status, obj, raw := managedAdmin(t, g, http.MethodGet, "/outergate/clients/"+id, "")
			if status != http.StatusOK || obj["source"] != "api" || obj["scope"] != "read write" || obj["created_at"] == nil {
				t.Errorf("GET one: %d %s", status, raw)
			}
			if n, _ := obj["live_tokens"].(float64); n < 1 {
				t.Errorf("GET one: live_tokens %v, want ≥ 1: %s", obj["live_tokens"], raw)
			}
			_, _, list := opsAdmin2(t, g)
			for _, s := range []string{secret, "sha256:", "secret_hashes", "grace"} {
				if bytes.Contains(list, []byte(s)) || bytes.Contains(raw, []byte(s)) {
					t.Errorf("the listing holds %q: %s", s[:6], list)
				}
			}
			if !bytes.Contains(list, []byte(`"source":"api"`)) || !bytes.Contains(list, []byte(`"source":"config"`)) {
				t.Errorf("the listing does not tell configured and managed clients apart: %s", list)
			}
		}
	})

	t.Run("rotate with grace: both secrets work, then only the new one", func(t *testing.T) {
		before := a.issue(id, secret)
		b.remember(before)
		newSecret, obj := managedRotate(t, b, id, "3s", a)
		until, err := time.Parse(time.RFC3339Nano, fmt.Sprint(obj["grace_until"]))
		if err != nil {
			t.Fatalf("rotate answer has no grace_until: %v", obj)
		}
		for _, g := range []*gateway{a, b} {
			if _, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(g, id, newSecret); return s == http.StatusOK }); !ok {
				t.Errorf("%s: the new secret gets no token within %s", g.base, managedBound)
			}
			if s, c := tokenStatus(g, id, secret); s != http.StatusOK {
				t.Errorf("%s: the old secret within its grace: %d %d, want 200", g.base, s, c)
			}
		}
		if time.Now().After(until) {
			t.Fatalf("the grace period ended before the checks ran; the test is too slow to mean anything")
		}
		time.Sleep(time.Until(until))
		for _, g := range []*gateway{a, b} {
			if _, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(g, id, secret); return s == http.StatusUnauthorized }); !ok {
				t.Errorf("%s: the old secret still works %s after its grace ended", g.base, managedBound)
			}
			if s, c := tokenStatus(g, id, secret); s != http.StatusUnauthorized || c != 23020 {
				t.Errorf("%s: old secret after the grace: %d %d, want 401 23020", g.base, s, c)
			}
			if s, c := tokenStatus(g, id, newSecret); s != http.StatusOK {
				t.Errorf("%s: new secret after the grace: %d %d, want 200", g.base, s, c)
			}
			if s, c := deviceStatus(g, before, false); s != http.StatusOK {
				t.Errorf("%s: a token issued before the rotation, after the grace: %d %d, want 200 (it lives until it expires)", g.base, s, c)
			}
		}
		secret = newSecret
	})

	t.Run("patch narrows the scope of a live token on the other instance", func(t *testing.T) {
		tok := opsIssueScoped(a, id, secret, "read write")
		b.remember(tok)
		if s, c := deviceStatus(b, tok, true); s != http.StatusOK {
			t.Fatalf("write with a read-write token before the patch: %d %d, want 200", s, c)
		}
		status, obj, raw := managedAdmin(t, a, http.MethodPatch, "/outergate/clients/"+id, `{"scope":"read"}`)
		if status != http.StatusOK || obj["scope"] != "read" {
			t.Fatalf("patch: %d %s", status, raw)
		}
		took, ok := waitUntil(managedBound, func() bool { s, _ := deviceStatus(b, tok, true); return s == http.StatusForbidden })
		if !ok {
			t.Fatalf("the live token still writes on B %s after the patch on A", managedBound)
		}
		t.Logf("patch on A narrowed the live token on B after %s", took.Round(time.Millisecond))
		before := len(b.backend.Requests())
		for _, g := range []*gateway{a, b} {
			if s, c := deviceStatus(g, tok, true); s != http.StatusForbidden || c != 23022 {
				t.Errorf("%s: write after the patch: %d %d, want 403 23022", g.base, s, c)
			}
			if s, c := deviceStatus(g, tok, false); s != http.StatusOK {
				t.Errorf("%s: read after the patch: %d %d, want 200", g.base, s, c)
			}
			r := g.do(opsIntrospect(tok, id, secret))
			var in struct {
				Active bool   `json:"active"`
				Scope  string `json:"scope"`
			}
			if r.status != http.StatusOK || json.Unmarshal(r.env.Data, &in) != nil || !in.Active || in.Scope != "read" {
				t.Errorf("%s: introspection after the patch: %d %s, want active with scope read", g.base, r.status, r.body)
			}
			v := cc(id, secret)
			v.Set("scope", "write")
			if r := g.do(tokenForm(v)); r.status != http.StatusBadRequest {
				t.Errorf("%s: a new write token after the patch: %d %s, want 400", g.base, r.status, r.body)
			}
		}
		for _, s := range b.backend.Requests()[before:] {
			if s.Method == http.MethodPut {
				t.Errorf("the upstream received a write after the scope was narrowed: %s %s", s.Method, s.Path)
			}
		}
	})

	t.Run("delete refuses every live token on both instances", func(t *testing.T) {
		tokA := a.issue(id, secret)
		tokB := b.issue(id, secret)
		a.remember(tokB)
		b.remember(tokA)
		status, obj, raw := managedAdmin(t, b, http.MethodDelete, "/outergate/clients/"+id, "")
		if status != http.StatusOK || obj["deleted"] != id {
			t.Fatalf("delete: %d %s", status, raw)
		}
		for _, g := range []*gateway{a, b} {
			for _, tok := range []string{tokA, tokB} {
				took, ok := waitUntil(managedBound, func() bool { s, _ := deviceStatus(g, tok, false); return s == http.StatusUnauthorized })
				if !ok {
					t.Errorf("%s: a token of the deleted client still works %s after the delete", g.base, managedBound)
				}
				if s, c := deviceStatus(g, tok, false); s != http.StatusUnauthorized || c != 23021 {
					t.Errorf("%s: token of the deleted client: %d %d, want 401 23021", g.base, s, c)
				}
				t.Logf("%s refuses a token of the deleted client after %s", g.base, took.Round(time.Millisecond))
			}
			if s, c := tokenStatus(g, id, secret); s != http.StatusUnauthorized || c != 23020 {
				t.Errorf("%s: the deleted client authenticates: %d %d, want 401 23020", g.base, s, c)
			}
			if s, _, raw := managedAdmin(t, g, http.MethodGet, "/outergate/clients/"+id, ""); s != http.StatusNotFound {
				t.Errorf("%s: GET the deleted client: %d %s, want 404", g.base, s, raw)
			}
		}
	})

	t.Run("a change whose notification is lost is seen within the bound", func(t *testing.T) {
		lost := managedCreate(t, a, `{"id":"acme-4"}`, b)
		if _, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(b, "acme-4", lost); return s == http.StatusOK }); !ok {
			t.Fatalf("acme-4 gets no token from B")
		}
		// Delete it behind the gateways' backs: no PUBLISH, only the
		// change counter moves, as when a notification is lost.
		for _, cmd := range [][]string{{"HDEL", "outergate:{clients}", "acme-4"}, {"INCR", "outergate:{clients}:v"}} {
			if out, err := rd.Command(cmd...); err != nil {
				t.Fatalf("redis-cli %v: %v %s", cmd, err, out)
			}
		}
		for _, g := range []*gateway{a, b} {
			took, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(g, "acme-4", lost); return s == http.StatusUnauthorized })
			if !ok {
				t.Errorf("%s: a client deleted without a notification still authenticates after %s", g.base, managedBound)
			}
			t.Logf("%s saw a change without notification after %s", g.base, took.Round(time.Millisecond))
		}
	})

	t.Run("a client created again under a deleted id does not revive old tokens", func(t *testing.T) {
		old := a.issue(appID, appSecret) // a configured client's token stays good
		again := managedCreate(t, a, `{"id":"acme-2"}`, b)
		if s, _ := tokenStatus(a, id, again); s != http.StatusOK {
			t.Errorf("the new client of a reused id gets no token: %d", s)
		}
		if s, _ := deviceStatus(a, old, false); s != http.StatusOK {
			t.Errorf("a configured client's token: %d, want 200", s)
		}
	})
}

// TestManagedClientsSurviveRestart keeps managed clients in Caddy's file
// storage (the `storage file_system` global option, in a temporary
// directory) with the memory store: a restart keeps them, and the storage
// holds the secret's hash only.
func TestManagedClientsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	g := startGateway(t, gatewayConfig{Global: "storage file_system " + dir})
	secret := managedCreate(t, g, `{"id":"acme-3","scope":"read"}`)
	if s, c := tokenStatus(g, "acme-3", secret); s != http.StatusOK {
		t.Fatalf("token of a new managed client: %d %d", s, c)
	}
	rotated, _ := managedRotate(t, g, "acme-3", "1h")

	g.caddy.Restart(t)
	g.client.CloseIdleConnections()
	harness.WaitHTTP(t, g.base+"/", 10*time.Second)
	for _, s := range []string{secret, rotated} {
		if st, c := tokenStatus(g, "acme-3", s); st != http.StatusOK {
			t.Errorf("after a restart, a secret of the managed client: %d %d, want 200", st, c)
		}
	}
	status, obj, raw := managedAdmin(t, g, http.MethodGet, "/outergate/clients/acme-3", "")
	if status != http.StatusOK || obj["scope"] != "read" || obj["rotated_at"] == nil || obj["grace_until"] == nil {
		t.Errorf("after a restart: %d %s", status, raw)
	}

	files, err := filepath.Glob(filepath.Join(dir, "outergate", "clients", "*", "acme-3.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("no storage file for the client under %s: %v %v", dir, files, err)
	}
	stored, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(stored, []byte(secret)) || bytes.Contains(stored, []byte(rotated)) {
		t.Errorf("the storage file holds a secret: %s", files[0])
	}
	if !bytes.Contains(stored, []byte("sha256:")) {
		t.Errorf("the storage file holds no hash: %s", stored)
	}

	// A delete is written through: it survives a restart too.
	if s, _, raw := managedAdmin(t, g, http.MethodDelete, "/outergate/clients/acme-3", ""); s != http.StatusOK {
		t.Fatalf("delete: %d %s", s, raw)
	}
	g.caddy.Restart(t)
	g.client.CloseIdleConnections()
	harness.WaitHTTP(t, g.base+"/", 10*time.Second)
	if s, c := tokenStatus(g, "acme-3", rotated); s != http.StatusUnauthorized || c != 23020 {
		t.Errorf("a deleted client after a restart: %d %d, want 401 23020", s, c)
	}
}

// TestReloadNarrowsLiveTokens is issue 12's item 9 through a reload: a
// token issued with write is refused a write once a reload leaves its
// client only read, and introspects as read; reads still pass.
func TestReloadNarrowsLiveTokens(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := opsIssueScoped(g, appID, appSecret, "read write")
	if s, c := deviceStatus(g, tok, true); s != http.StatusOK {
		t.Fatalf("write before the reload: %d %d", s, c)
	}
	line := fmt.Sprintf("client %s %s\n", appID, sha256Hash(appSecret))
	cf := g.caddyfile()
	if !strings.Contains(cf, line) {
		t.Fatalf("the test Caddyfile has no line %q", line)
	}
	g.reloadWith(strings.Replace(cf, line, fmt.Sprintf("client %s %s {\n\t\t\tscope read\n\t\t}\n", appID, sha256Hash(appSecret)), 1))
	before := len(g.backend.Requests())
	if s, c := deviceStatus(g, tok, true); s != http.StatusForbidden || c != 23022 {
		t.Errorf("write after the reload narrowed the client: %d %d, want 403 23022", s, c)
	}
	if s, c := deviceStatus(g, tok, false); s != http.StatusOK {
		t.Errorf("read after the reload: %d %d, want 200", s, c)
	}
	for _, s := range g.backend.Requests()[before:] {
		if s.Method == http.MethodPut {
			t.Errorf("the upstream received a write after the reload narrowed the scope")
		}
	}
	for _, path := range []string{opsIntrospectPath, "/oauth2/introspect"} {
		r := g.do(opsClientPost(path, url.Values{"token": {tok}}, appID, appSecret, false))
		if !bytes.Contains(r.body, []byte(`"scope":"read"`)) || bytes.Contains(r.body, []byte("write")) {
			t.Errorf("%s after the reload: %d %s, want scope read", path, r.status, r.body)
		}
	}
}

// TestManagedClientsAPIRules checks what the API refuses: configured
// clients (409, saying to edit the config), existing ids (409), unknown
// ids (404), methods (405), and bad input (400 with a message), none of
// which changes anything.
func TestManagedClientsAPIRules(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	secret := managedCreate(t, g, `{"id":"victim","scope":"read"}`)
	_, _, beforeList := opsAdmin2(t, g)
	_, _, beforeOne := managedAdmin(t, g, http.MethodGet, "/outergate/clients/victim", "")

	long := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		message                  string // a piece of the error message
	}{
		{"create a configured id", "POST", "/outergate/clients", `{"id":"` + appID + `"}`, 409, "edit the config"},
		{"patch a configured client", "PATCH", "/outergate/clients/" + appID, `{"scope":"read"}`, 409, "edit the config"},
		{"rotate a configured client", "POST", "/outergate/clients/" + readerID + "/rotate", `{}`, 409, "edit the config"},
		{"delete a configured client", "DELETE", "/outergate/clients/" + rotID, ``, 409, "edit the config"},
		{"create an existing managed id", "POST", "/outergate/clients", `{"id":"victim"}`, 409, "exists"},
		{"unknown field", "POST", "/outergate/clients", `{"id":"x1","colour":"red"}`, 400, `unknown field "colour"`},
		{"empty id", "POST", "/outergate/clients", `{"id":""}`, 400, "id is required"},
		{"no id", "POST", "/outergate/clients", `{"scope":"read"}`, 400, "id is required"},
		{"id too long", "POST", "/outergate/clients", `{"id":"` + long + `"}`, 400, "at most 128"},
		{"id with a control character", "POST", "/outergate/clients", `{"id":"a\u0007b"}`, 400, "control character"},
		{"id with a newline", "POST", "/outergate/clients", `{"id":"a\nb"}`, 400, "control character"},
		{"id with a slash", "POST", "/outergate/clients", `{"id":"a/b"}`, 400, "letters, digits"},
		{"id not a string", "POST", "/outergate/clients", `{"id":7}`, 400, "id"},
		{"secret hashes given", "POST", "/outergate/clients", `{"id":"x2","secret_hashes":["sha256:00"]}`, 400, "generates the secret"},
		{"not an object", "POST", "/outergate/clients", `["x"]`, 400, "JSON object"},
		{"two objects", "POST", "/outergate/clients", `{"id":"x3"}{"id":"x4"}`, 400, "JSON object"},
		{"empty body", "POST", "/outergate/clients", ``, 400, "JSON object"},
		{"scope with two spaces", "POST", "/outergate/clients", `{"id":"x5","scope":"read  write"}`, 400, "single spaces"},
		{"scope with a quote", "POST", "/outergate/clients", `{"id":"x6","scope":"re\"ad"}`, 400, "printable ASCII"},
		{"patch an unknown field", "PATCH", "/outergate/clients/victim", `{"colour":"red"}`, 400, `unknown field "colour"`},
		{"patch the id", "PATCH", "/outergate/clients/victim", `{"id":"other"}`, 400, "id cannot be changed"},
		{"patch the hashes", "PATCH", "/outergate/clients/victim", `{"secret_hashes":[]}`, 400, "rotate"},
		{"patch nothing", "PATCH", "/outergate/clients/victim", `{}`, 400, "nothing to change"},
		{"patch a bad scope", "PATCH", "/outergate/clients/victim", `{"scope":" read"}`, 400, "single spaces"},
		{"grace not a duration", "POST", "/outergate/clients/victim/rotate", `{"grace":"soon"}`, 400, "not a duration"},
		{"grace negative", "POST", "/outergate/clients/victim/rotate", `{"grace":"-1h"}`, 400, "between 0 and"},
		{"grace too long", "POST", "/outergate/clients/victim/rotate", `{"grace":"1000d"}`, 400, "between 0 and"},
		{"grace a number", "POST", "/outergate/clients/victim/rotate", `{"grace":5}`, 400, "grace"},
		{"rotate an unknown field", "POST", "/outergate/clients/victim/rotate", `{"grace":"1h","now":true}`, 400, `unknown field "now"`},
		{"id in the path with a control character", "GET", "/outergate/clients/a%07b", ``, 400, "control character"},
		{"id in the path too long", "DELETE", "/outergate/clients/" + long, ``, 400, "at most 128"},
		{"unknown client", "GET", "/outergate/clients/nobody", ``, 404, "no client"},
		{"patch an unknown client", "PATCH", "/outergate/clients/nobody", `{"scope":"read"}`, 404, "no client"},
		{"rotate an unknown client", "POST", "/outergate/clients/nobody/rotate", `{}`, 404, "no client"},
		{"delete an unknown client", "DELETE", "/outergate/clients/nobody", ``, 404, "no client"},
		{"body over 64 KiB", "POST", "/outergate/clients", `{"id":"big","scope":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than"},
		{"token_ttl not a duration", "POST", "/outergate/clients", `{"id":"x7","token_ttl":"soon"}`, 400, "token_ttl"},
		{"token_ttl under a second", "POST", "/outergate/clients", `{"id":"x8","token_ttl":"500ms"}`, 400, "at least 1s"},
		{"rate_limit without requests", "POST", "/outergate/clients", `{"id":"x9","rate_limit":{"requests":0,"period":"1m"}}`, 400, "must be positive"},
		{"patch a bad token_ttl", "PATCH", "/outergate/clients/victim", `{"token_ttl":"-1h"}`, 400, "token_ttl"},
		{"PUT the collection", "PUT", "/outergate/clients", `{}`, 405, "not allowed"},
		{"GET rotate", "GET", "/outergate/clients/victim/rotate", ``, 405, "not allowed"},
		{"unknown sub-resource", "POST", "/outergate/clients/victim/renew", `{}`, 404, "no such"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, raw := opsAdmin(t, g.caddy, tc.method, tc.path, tc.body)
			var e struct {
				Error string `json:"error"`
			}
			if status != tc.status || json.Unmarshal(raw, &e) != nil || !strings.Contains(e.Error, tc.message) {
				t.Errorf("%s %s %s: %d %s, want %d with %q", tc.method, tc.path, tc.body, status, raw, tc.status, tc.message)
			}
		})
	}

	_, _, afterList := opsAdmin2(t, g)
	if !bytes.Equal(beforeList, afterList) {
		t.Errorf("refused calls changed the clients:\nbefore %s\nafter  %s", beforeList, afterList)
	}
	if _, _, afterOne := managedAdmin(t, g, http.MethodGet, "/outergate/clients/victim", ""); !bytes.Equal(beforeOne, afterOne) {
		t.Errorf("refused calls changed the client:\nbefore %s\nafter  %s", beforeOne, afterOne)
	}
	if s, _ := tokenStatus(g, "victim", secret); s != http.StatusOK {
		t.Errorf("refused calls broke the client's secret: %d", s)
	}
	for _, id := range []string{appID, readerID} {
		if s, c := deviceStatus(g, g.issue(id, map[string]string{appID: appSecret, readerID: readerSecret}[id]), false); s != http.StatusOK {
			t.Errorf("configured client %s after the refused calls: %d %d", id, s, c)
		}
	}
}

// opsAdmin2 lists the clients of g (status, decoded, raw).
func opsAdmin2(t *testing.T, g *gateway) (int, map[string]any, []byte) {
	t.Helper()
	return managedAdmin(t, g, http.MethodGet, "/outergate/clients", "")
}

// TestManagedClientsCLI onboards, rotates and offboards a client with
// `caddy outergate client ...` against the running binary's admin API,
// and checks that no secret reaches a log line.
func TestManagedClientsCLI(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	addr := strings.TrimPrefix(g.caddy.AdminURL(), "http://")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"outergate", "client"}, append(args, "--address", addr)...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("caddy outergate client %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	secretOf := func(out string) string {
		for line := range strings.SplitSeq(out, "\n") {
			if s, ok := strings.CutPrefix(line, "client_secret: "); ok {
				g.mu.Lock()
				g.secrets = append(g.secrets, s)
				g.mu.Unlock()
				return s
			}
		}
		t.Fatalf("no client_secret line in %q", out)
		return ""
	}

	secret := secretOf(run("create", "acme-cli", "--scope", "read"))
	tok := g.issue("acme-cli", secret)
	if s, c := deviceStatus(g, tok, false); s != http.StatusOK {
		t.Errorf("a token of the client the CLI created: %d %d", s, c)
	}
	if out := run("list"); !strings.Contains(out, `"id": "acme-cli"`) || !strings.Contains(out, `"source": "api"`) || strings.Contains(out, secret) {
		t.Errorf("list: %s", out)
	}
	if out := run("update", "acme-cli", "--json", `{"scope":"read write"}`); !strings.Contains(out, `"scope": "read write"`) {
		t.Errorf("update: %s", out)
	}
	if out := run("show", "acme-cli"); !strings.Contains(out, `"scope": "read write"`) || strings.Contains(out, secret) {
		t.Errorf("show: %s", out)
	}
	rotated := secretOf(run("rotate", "acme-cli", "--grace", "1h"))
	for _, s := range []string{secret, rotated} {
		if st, c := tokenStatus(g, "acme-cli", s); st != http.StatusOK {
			t.Errorf("after rotate with grace, a secret: %d %d", st, c)
		}
	}
	if out := run("delete", "acme-cli"); !strings.Contains(out, `"deleted": "acme-cli"`) {
		t.Errorf("delete: %s", out)
	}
	if s, c := deviceStatus(g, tok, false); s != http.StatusUnauthorized {
		t.Errorf("a token of the deleted client: %d %d, want 401", s, c)
	}

	// Without --address, the admin address comes from --config.
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin "+addr+"\n}\n:1 {\n\trespond ok\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "outergate", "client", "list", "--config", cfg, "--adapter", "caddyfile").CombinedOutput(); err != nil || !strings.Contains(string(out), `"id": "`+appID+`"`) {
		t.Errorf("list with --config: %v %s", err, out)
	}

	// An error is reported with the API's message and a failing exit code.
	cmd := exec.Command(bin, "outergate", "client", "update", appID, "--scope", "read", "--address", addr)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "edit the config") {
		t.Errorf("update of a configured client: %v %s", err, out)
	}

	// The audit log names every change by client id.
	logs := g.caddy.Logs()
	for _, msg := range []string{"client created", "client updated", "client secret rotated", "client deleted"} {
		if !strings.Contains(logs, `"msg":"`+msg+`","client_id":"acme-cli"`) {
			t.Errorf("no audit entry %q with the client id", msg)
		}
	}
}

// TestConfiguredClientWinsOverManaged reloads with a Caddyfile client
// whose id a managed client already holds: the configured one wins (its
// secret works, the managed one's does not, the listing says "config"),
// and once the config drops it the managed client is back.
func TestConfiguredClientWinsOverManaged(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	managed := managedCreate(t, g, `{"id":"late"}`)
	const configured = "configured-secret-for-late-0005"
	g.mu.Lock()
	g.secrets = append(g.secrets, configured)
	g.mu.Unlock()
	g.reload(gatewayConfig{Extra: "\t\tclient late " + sha256Hash(configured)})
	if s, c := tokenStatus(g, "late", configured); s != http.StatusOK {
		t.Errorf("the configured secret: %d %d, want 200", s, c)
	}
	if s, c := tokenStatus(g, "late", managed); s != http.StatusUnauthorized || c != 23020 {
		t.Errorf("the managed secret while the id is configured: %d %d, want 401 23020", s, c)
	}
	if s, obj, raw := managedAdmin(t, g, http.MethodGet, "/outergate/clients/late", ""); s != http.StatusOK || obj["source"] != "config" {
		t.Errorf("GET late: %d %s, want source config", s, raw)
	}
	if s, _, raw := managedAdmin(t, g, http.MethodDelete, "/outergate/clients/late", ""); s != http.StatusConflict {
		t.Errorf("DELETE late while configured: %d %s, want 409", s, raw)
	}
	g.reload(gatewayConfig{})
	if s, c := tokenStatus(g, "late", managed); s != http.StatusOK {
		t.Errorf("the managed secret once the config drops the id: %d %d, want 200", s, c)
	}
}

// TestManagedClientsWithoutHandler: with no outergate handler running, the
// client routes answer 503 and say why.
func TestManagedClientsWithoutHandler(t *testing.T) {
	c := harness.StartCaddy(t, bin, fmt.Sprintf(":%d {\n\trespond ok\n}", harness.FreePort(t)))
	for _, call := range [][3]string{{"POST", "/outergate/clients", `{"id":"x"}`}, {"DELETE", "/outergate/clients/x", ``}} {
		status, raw := opsAdmin(t, c, call[0], call[1], call[2])
		if status != http.StatusServiceUnavailable || !bytes.Contains(raw, []byte("no outergate handler")) {
			t.Errorf("%s %s without a handler: %d %s, want 503", call[0], call[1], status, raw)
		}
	}
	if status, raw := opsAdmin(t, c, "GET", "/outergate/clients", ""); status != http.StatusOK || string(raw) != `{"clients":[]}` {
		t.Errorf("GET /outergate/clients without a handler: %d %s, want an empty list", status, raw)
	}
}

// TestManagedClientPolicies sets a managed client's per-client settings
// through the API, as a Caddyfile client block would: token_ttl sets
// expires_in, rate_limit refuses the request past it (429 + 23029, never
// forwarded), and a PATCH changes both for the next token and request.
func TestManagedClientPolicies(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	secret := managedCreate(t, g, `{"id":"limited","token_ttl":"1h","rate_limit":{"requests":2,"period":"1m"}}`)
	expiresIn := func() float64 {
		t.Helper()
		r := g.do(tokenForm(cc("limited", secret)))
		g.rememberFrom(r)
		var data struct {
			AccessToken string  `json:"access_token"`
			ExpiresIn   float64 `json:"expires_in"`
		}
		if r.status != http.StatusOK || json.Unmarshal(r.env.Data, &data) != nil {
			t.Fatalf("token: %d %s", r.status, r.body)
		}
		return data.ExpiresIn
	}
	if got := expiresIn(); got != 3600 {
		t.Errorf("expires_in %v with token_ttl 1h, want 3600", got)
	}
	tok := g.issue("limited", secret)
	for i := range 2 {
		if s, c := deviceStatus(g, tok, false); s != http.StatusOK {
			t.Errorf("request %d within the rate limit: %d %d", i+1, s, c)
		}
	}
	before := len(g.backend.Requests())
	if s, c := deviceStatus(g, tok, false); s != http.StatusTooManyRequests || c != 23029 {
		t.Errorf("request past the rate limit: %d %d, want 429 23029", s, c)
	}
	if n := len(g.backend.Requests()) - before; n != 0 {
		t.Errorf("the upstream received %d requests past the rate limit", n)
	}

	status, obj, raw := managedAdmin(t, g, http.MethodPatch, "/outergate/clients/limited", `{"token_ttl":"2h","rate_limit":{"off":true}}`)
	if status != http.StatusOK || obj["token_ttl"] == nil {
		t.Fatalf("patch: %d %s", status, raw)
	}
	if got := expiresIn(); got != 7200 {
		t.Errorf("expires_in %v after the patch to 2h, want 7200", got)
	}
	if s, c := deviceStatus(g, tok, false); s != http.StatusOK {
		t.Errorf("a request once the patch turned the rate limit off: %d %d, want 200", s, c)
	}
}

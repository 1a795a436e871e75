package integration

// End-to-end tests of the audit log (issue 5): issuance, revocation and
// refusals, with no secret or token in it.

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// opsLogEntry is one JSON line of Caddy's log.
type opsLogEntry map[string]any

func (e opsLogEntry) str(k string) string {
	s, _ := e[k].(string)
	return s
}

// opsLogEntries returns the JSON log lines of c whose message is msg.
func opsLogEntries(c *harness.Caddy, msg string) []opsLogEntry {
	var out []opsLogEntry
	for _, line := range strings.Split(c.Logs(), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e opsLogEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.str("msg") == msg {
			out = append(out, e)
		}
	}
	return out
}

var opsFingerprint = regexp.MustCompile(`^[0-9a-f]{8}$`)

// TestAuditLog checks the audit entries of the gateway's log: issuance,
// revocation and refusals with their reason, each with the client id, the
// remote IP and, where a token is involved, an 8-hex-digit fingerprint
// that ties the entries of one token together. The gateway's cleanup
// checks that no secret or token (whole or in part) was logged.
func TestAuditLog(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tok := g.issue(appID, appSecret)
	readerTok := g.issue(readerID, readerSecret)
	unknown := opsRandomToken(g)
	expect(t, g.do(tokenForm(cc(appID, "wrong-secret"))), 401, 23020, "")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline}), 401, 23021, "")
	expect(t, g.do(opsDevice(unknown)), 401, 23021, "")
	if r := g.do(opsRevoke(tok, appID, appSecret)); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	expect(t, g.do(opsDevice(tok)), 401, 23021, "access token revoked")
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"client_id":%q}`, readerID)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	rotTok := g.issue(rotID, rotNew)
	if n := opsAdminRevoke(t, g.caddy, fmt.Sprintf(`{"token":%q}`, rotTok)); n != 1 {
		t.Fatalf("admin revoked %d, want 1", n)
	}
	time.Sleep(200 * time.Millisecond) // let the log lines land

	issued := func(client string) string {
		for _, e := range opsLogEntries(g.caddy, "token issued") {
			if e.str("client_id") == client {
				return e.str("token_fp")
			}
		}
		return ""
	}
	fp := issued(appID)
	tests := []struct {
		name   string
		msg    string
		fields map[string]string // "" as a value: present, non-empty
		fp     string            // the token_fp the entry must carry: "" none required, "*" any
	}{
		{name: "token issued", msg: "token issued", fields: map[string]string{"client_id": appID, "scope": "read write groups"}, fp: fp},
		{name: "token revoked by its client", msg: "token revoked", fields: map[string]string{"client_id": appID}, fp: fp},
		{name: "revoked token refused with its reason", msg: "bearer refused", fields: map[string]string{"client_id": appID, "reason": "access token revoked"}, fp: fp},
		{name: "unknown token refused with its reason", msg: "bearer refused", fields: map[string]string{"reason": "invalid access token"}, fp: "*"},
		{name: "missing token refused with its reason", msg: "bearer refused", fields: map[string]string{"reason": ""}},
		{name: "failed client authentication with its reason", msg: "client authentication failed", fields: map[string]string{"client_id": appID, "reason": ""}},
		{name: "admin client revocation", msg: "tokens revoked", fields: map[string]string{"client_id": readerID}},
		{name: "admin token revocation", msg: "tokens revoked", fields: map[string]string{"via": "admin"}, fp: issued(rotID)},
	}
	for _, id := range []string{appID, rotID} {
		if got := issued(id); !opsFingerprint.MatchString(got) {
			t.Fatalf("token issued entry for %s has token_fp %q, want 8 hex digits", id, got)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := opsLogEntries(g.caddy, tt.msg)
			var match opsLogEntry
			for _, e := range entries {
				ok := tt.fp == "" || e.str("token_fp") == tt.fp || (tt.fp == "*" && e.str("token_fp") != "")
				for k, v := range tt.fields {
					if got := e.str(k); got == "" || (v != "" && got != v) {
						ok = false
					}
				}
				if ok {
					match = e
					break
				}
			}
			if match == nil {
				t.Fatalf("no %q entry with %v token_fp %q among %d: %v", tt.msg, tt.fields, tt.fp, len(entries), entries)
			}
			ip := match.str("remote_ip")
			if net.ParseIP(ip) == nil {
				t.Errorf("remote_ip = %q, want an IP address", ip)
			}
			if fpv, has := match["token_fp"]; has {
				if s, _ := fpv.(string); !opsFingerprint.MatchString(s) {
					t.Errorf("token_fp = %v, want 8 hex digits", fpv)
				}
			}
			if tt.fp != "" && match.str("token_fp") == "" {
				t.Errorf("entry lacks token_fp")
			}
		})
	}
	t.Run("no token or secret is logged", func(t *testing.T) {
		logs := g.caddy.Logs()
		for _, s := range []string{tok, readerTok, unknown, appSecret, readerSecret} {
			if strings.Contains(logs, s) {
				t.Errorf("logs contain a whole token or secret (%q...)", s[:4])
			}
		}
		// The rest (12-character pieces) is the gateway's cleanup check.
	})
}

package integration

// End-to-end tests of the `caddy outergate` command (issue 5): new-client
// and hash-secret, run from the built binary.

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCLINewClientAndHashSecret checks `caddy outergate new-client` and
// `caddy outergate hash-secret` of the built binary, and that a client
// created with them works on a gateway.
func TestCLINewClientAndHashSecret(t *testing.T) {
	const id = "cli-partner.01"
	out, errOut, err := opsRunCLI(t, "", "outergate", "new-client", id)
	if err != nil {
		t.Fatalf("new-client: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	field := func(re string) string {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("new-client output lacks %s:\n%s", re, out)
		}
		return m[1]
	}
	if got := field(`(?m)^client_id: (\S+)$`); got != id {
		t.Errorf("client_id: %q, want %q", got, id)
	}
	secret := field(`(?m)^client_secret: (\S+)$`)
	line := field(`(?m)^(client \S+ sha256:[0-9a-f]{64})$`)
	hash := strings.Fields(line)[2]
	if got := strings.Fields(line)[1]; got != id {
		t.Errorf("Caddyfile line %q names client %q, want %q", line, got, id)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(secret); err != nil || len(raw) < 32 {
		t.Errorf("client_secret %q...: want base64url of at least 32 random bytes (%d bytes, %v)", secret[:4], len(raw), err)
	}
	if hash != sha256Hash(secret) {
		t.Errorf("printed hash is not SHA-256 of the printed secret")
	}
	if strings.Count(out, secret) != 1 {
		t.Errorf("the secret appears %d times in the output, want once", strings.Count(out, secret))
	}
	if again, _, err := opsRunCLI(t, "", "outergate", "new-client", id); err != nil || strings.Contains(again, secret) {
		t.Errorf("a second new-client repeated the secret or failed (%v)", err)
	}

	cli := []struct {
		name   string
		args   []string
		stdin  string
		wantOK bool
		want   string // exact stdout when wantOK
	}{
		{name: "hash-secret of the printed secret equals the printed hash", args: []string{"hash-secret"}, stdin: secret + "\n", wantOK: true, want: hash + "\n"},
		{name: "hash-secret without a final newline", args: []string{"hash-secret"}, stdin: secret, wantOK: true, want: hash + "\n"},
		{name: "hash-secret strips a CRLF line end", args: []string{"hash-secret"}, stdin: secret + "\r\n", wantOK: true, want: hash + "\n"},
		{name: "hash-secret of a known secret", args: []string{"hash-secret"}, stdin: appSecret + "\n", wantOK: true, want: sha256Hash(appSecret) + "\n"},
		{name: "hash-secret refuses an empty stdin", args: []string{"hash-secret"}, stdin: ""},
		{name: "hash-secret takes no arguments", args: []string{"hash-secret", "s3cret"}, stdin: "x\n"},
		{name: "new-client needs an id", args: []string{"new-client"}},
		{name: "new-client refuses an id unfit for a Caddyfile", args: []string{"new-client", "bad id"}},
		{name: "new-client refuses an id with a brace", args: []string{"new-client", "x{y"}},
	}
	for _, tt := range cli {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := opsRunCLI(t, tt.stdin, append([]string{"outergate"}, tt.args...)...)
			if tt.wantOK {
				if err != nil || out != tt.want {
					t.Errorf("stdout %q (err %v, stderr %q), want %q", out, err, errOut, tt.want)
				}
				return
			}
			if err == nil {
				t.Errorf("exit status 0, want a failure; stdout %q", out)
			}
			if strings.Contains(out, "client_secret") || strings.Contains(out, "sha256:") {
				t.Errorf("a failed command printed credentials: %q", out)
			}
		})
	}

	// Paste the printed line into a gateway's Caddyfile: the client gets a
	// token (body or Basic credentials) and calls a device route.
	g := startGateway(t, gatewayConfig{Extra: "\t\t" + line})
	g.remember(secret)
	tok := g.issue(id, secret)
	g.backend.Reset()
	expect(t, g.do(opsDevice(tok)), 200, 0, "Device info")
	if seen := g.backend.Requests(); len(seen) != 1 || seen[0].Header.Get("X-Outer-Client-Id") != id {
		t.Errorf("upstream did not see the CLI client's identity %q: %d requests", id, len(seen))
	}
	basic := tokenForm(url.Values{"grant_type": {"client_credentials"}})
	basic.header["Authorization"] = basicAuth(id, secret)
	r := g.do(basic)
	expect(t, r, 200, 0, "")
	g.rememberFrom(r)
	expect(t, g.do(tokenForm(cc(id, secret+"x"))), 401, 23020, "client authentication failed")
}

// opsRunCLI runs the binary with args and stdin, away from the user's
// HOME, and returns its stdout and stderr.
func opsRunCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("running %v: %v", args, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), errOut.String(), err
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%v did not exit within 20 s", args)
		return "", "", nil
	}
}

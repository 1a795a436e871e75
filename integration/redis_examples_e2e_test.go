package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
	"github.com/outergate/outergate/internal/redistest"
)

// The demo client of the shipped Caddyfiles.
const (
	exampleClientID     = "demo-client"
	exampleClientSecret = "demo-secret-change-me-3a7f9c2e"
)

// topoExample runs two instances of a shipped Caddyfile (caddyfile/<name>)
// unchanged, with env pointing it at the real topology, and checks that a
// token issued on one is accepted by the other. Both processes are stopped
// by PID at the end of the test.
func topoExample(t *testing.T, name string, env []string) {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(root, "caddyfile", name)
	up := httptest.NewServer(legacy.New(legacy.Options{}))
	t.Cleanup(up.Close)
	var bases []string
	for range 2 {
		port, admin := harness.FreePort(t), harness.FreePort(t)
		dir := t.TempDir()
		cmd := exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir,
			fmt.Sprintf("GATEWAY_PORT=%d", port), fmt.Sprintf("ADMIN_PORT=%d", admin),
			"LEGACY_BACKEND="+strings.TrimPrefix(up.URL, "http://"))
		cmd.Env = append(cmd.Env, env...)
		var logs strings.Builder
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("%s logs:\n%s", name, logs.String())
			}
			for _, line := range strings.Split(logs.String(), "\n") {
				if topoLogBad.MatchString(line) {
					t.Errorf("%s logged a Redis topology error: %s", name, line)
				}
			}
		})
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		harness.WaitHTTP(t, base+"/", 20*time.Second)
		bases = append(bases, base)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.PostForm(bases[0]+"/outer/token/", url.Values{"grant_type": {"client_credentials"},
		"client_id": {exampleClientID}, "client_secret": {exampleClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	var env1 struct {
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	err = json.NewDecoder(resp.Body).Decode(&env1)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || env1.Data.AccessToken == "" {
		t.Fatalf("%s: token request = %d, %v", name, resp.StatusCode, err)
	}
	req, _ := http.NewRequest(http.MethodGet, bases[1]+infoPath+legacy.DeviceOnline, nil)
	req.Header.Set("Authorization", "Bearer "+env1.Data.AccessToken)
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("%s: the token issued on the first instance is answered %d on the second", name, resp.StatusCode)
	}
}

// TestRedisExampleSingle runs caddyfile/cluster.Caddyfile, the one-Redis
// example, as shipped on two instances against a real redis-server.
func TestRedisExampleSingle(t *testing.T) {
	rd := redistest.Start(t)
	topoExample(t, "cluster.Caddyfile", []string{"REDIS_ADDR=" + rd.Addr()})
}

// TestRedisReplicasE2E shows `replicas` through the binary: with one
// replica required, a token request answers 200 while the replica
// acknowledges, 503 + 23090 within the fail-closed bound while it hangs
// (the write is not acknowledged, so no token is handed out), and 200
// again once it is back; a token issued before stays valid throughout.
func TestRedisReplicasE2E(t *testing.T) {
	m := redistest.Start(t)
	r := redistest.StartReplica(t, m)
	g := startGateway(t, gatewayConfig{Extra: "\t\tstore redis {\n\t\t\taddress " + m.Addr() + "\n\t\t\treplicas 1\n\t\t\tcache_ttl -1s\n\t\t}\n"})
	device := func(tok string) request { return request{path: infoPath + legacy.DeviceOnline, header: bearer(tok)} }
	tok := g.issue(appID, appSecret)
	expect(t, g.do(device(tok)), 200, 0, "Device info")

	r.Pause()
	start := time.Now()
	expect(t, g.do(tokenForm(cc(appID, appSecret))), 503, 23090, "")
	if took := time.Since(start); took >= failClosedBound {
		t.Errorf("token request with the replica hung took %s, want < %s", took, failClosedBound)
	}
	expect(t, g.do(device(tok)), 200, 0, "Device info")
	r.Resume()
	waitIssue(t, g)
}

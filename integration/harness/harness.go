// Package harness runs the built outergate binary (Caddy with the outergate
// plugin) as a subprocess for black-box end-to-end tests.
//
// A test package builds the binary once in TestMain with BuildBinary, then
// each test starts its own Caddy with StartCaddy, passing only the site
// blocks of a Caddyfile; the harness adds the global options block (admin
// endpoint on a free port, no persisted config, no trust-store install, logs
// to stderr at DEBUG level).
package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outergate/outergate/internal/redistest"
)

const (
	// startTimeout bounds how long StartCaddy waits for the admin endpoint.
	startTimeout = 20 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// failureLogTail is how much of the logs a failed test prints.
	failureLogTail = 64 << 10
)

// ModuleRoot returns the directory holding go.mod, found by walking up from
// the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness: no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildBinary builds ./cmd/outergate from the module root into
// dir/outergate and returns the binary's path. Call it once, from TestMain.
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	bin, err := filepath.Abs(filepath.Join(dir, "outergate"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./cmd/outergate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("harness: go build ./cmd/outergate: %v\n%s", err, out)
	}
	return bin, nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned (redistest.FreePort, which
// the Redis helpers use too, so no two servers of a test share a port).
func FreePort(t testing.TB) int {
	t.Helper()
	return redistest.FreePort(t)
}

// WaitHTTP polls url until any HTTP answer arrives, whatever its status,
// and fails the test if none does within timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: no HTTP answer from %s within %s: %v", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Options adjusts StartCaddyWith. The zero value gives StartCaddy's defaults.
type Options struct {
	// LogLevel is the level of Caddy's default logger. Default: DEBUG.
	LogLevel string
	// Global holds extra lines for the global options block, such as
	// "servers {\n trusted_proxies static 127.0.0.1/32\n}" or "metrics".
	Global string
	// Env holds extra KEY=VALUE entries for the Caddy process, on top of the
	// test's own environment.
	Env []string
}

// Caddy is one running outergate binary. StartCaddy registers its Stop as a
// test cleanup.
type Caddy struct {
	bin       string
	opts      Options
	dir       string // the Caddyfile, HOME and XDG directories live here
	config    string // path of the Caddyfile
	adminPort int
	logs      *syncBuffer
	logged    bool // the logs were already part of a failure message

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartCaddy writes the global options block followed by caddyfileBody (the
// site blocks) to a Caddyfile in a temporary directory, runs
// `bin run --config <file> --adapter caddyfile`, and returns once the
// configuration is loaded and its servers listen. It fails the test, with
// Caddy's logs, if the admin endpoint does not answer within 20 s.
func StartCaddy(t testing.TB, bin, caddyfileBody string) *Caddy {
	t.Helper()
	return StartCaddyWith(t, bin, caddyfileBody, Options{})
}

// StartCaddyWith is StartCaddy with options.
func StartCaddyWith(t testing.TB, bin, caddyfileBody string, opts Options) *Caddy {
	t.Helper()
	if opts.LogLevel == "" {
		opts.LogLevel = "DEBUG"
	}
	dir := t.TempDir()
	for _, sub := range []string{"home", "data", "config"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	c := &Caddy{
		bin:       bin,
		opts:      opts,
		dir:       dir,
		config:    filepath.Join(dir, "Caddyfile"),
		adminPort: FreePort(t),
		logs:      new(syncBuffer),
	}
	c.writeConfig(t, caddyfileBody)
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() && !c.logged {
			t.Logf("harness: caddy logs (last %d bytes at most):\n%s", failureLogTail, tail(c.Logs(), failureLogTail))
		}
	})
	c.start(t)
	return c
}

// AdminURL returns the base URL of the admin endpoint, such as
// "http://127.0.0.1:41234".
func (c *Caddy) AdminURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.adminPort)
}

// Logs returns everything the process wrote to stdout and stderr so far,
// across restarts.
func (c *Caddy) Logs() string {
	return c.logs.String()
}

// Reload replaces the site blocks with caddyfileBody (keeping the global
// block) and runs `bin reload --force` against the admin endpoint. It fails
// the test with the command's output if the reload is refused.
func (c *Caddy) Reload(t testing.TB, caddyfileBody string) {
	t.Helper()
	c.writeConfig(t, caddyfileBody)
	cmd := exec.Command(c.bin, "reload",
		"--config", c.config, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", c.adminPort), "--force")
	cmd.Env = c.env()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("harness: caddy reload: %v\n%s", err, out)
	}
}

// PID returns the process id of the running binary, 0 when stopped.
func (c *Caddy) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited after
// 5 s. It returns once the process is gone; calling it again does nothing.
func (c *Caddy) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	c.cmd = nil
}

// Restart stops the process and starts it again with the same Caddyfile,
// admin port and directories.
func (c *Caddy) Restart(t testing.TB) {
	t.Helper()
	c.Stop()
	c.start(t)
}

// start runs the binary and waits until the admin endpoint answers 200 on
// /config/ (Caddy holds that answer until the configuration has loaded).
func (c *Caddy) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(c.bin, "run", "--config", c.config, "--adapter", "caddyfile")
	cmd.Dir = c.dir
	cmd.Env = c.env()
	cmd.Stdout = c.logs
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("harness: start %s: %v", c.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	url := c.AdminURL() + "/config/"
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-done:
			c.logged = true
			t.Fatalf("harness: caddy exited during start-up (%v); logs:\n%s", cmd.ProcessState, c.Logs())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.Stop()
			c.logged = true
			t.Fatalf("harness: admin endpoint %s not ready within %s; logs:\n%s", url, startTimeout, c.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeConfig writes the global block and body to the Caddyfile.
func (c *Caddy) writeConfig(t testing.TB, body string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tskip_install_trust\n", c.adminPort)
	fmt.Fprintf(&b, "\tlog {\n\t\toutput stderr\n\t\tlevel %s\n\t}\n", c.opts.LogLevel)
	if g := strings.TrimSpace(c.opts.Global); g != "" {
		fmt.Fprintf(&b, "\t%s\n", g)
	}
	fmt.Fprintf(&b, "}\n\n%s\n", strings.TrimSpace(body))
	if err := os.WriteFile(c.config, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("harness: write Caddyfile: %v", err)
	}
}

// env is the test's environment with HOME and the XDG directories moved
// into the instance's temporary directory, plus Options.Env.
func (c *Caddy) env() []string {
	env := append(os.Environ(),
		"HOME="+filepath.Join(c.dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(c.dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(c.dir, "config"),
	)
	return append(env, c.opts.Env...)
}

// SyncBuffer is a bytes.Buffer safe for concurrent use, to collect the
// output of a process the test starts itself.
type SyncBuffer = syncBuffer

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail returns at most the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

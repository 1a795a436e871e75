package harness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// bin is the outergate binary built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outergate-harness-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func site(port int, text string) string {
	return fmt.Sprintf(":%d {\n\trespond %q 200\n}\n", port, text)
}

func TestStartReloadRestartStop(t *testing.T) {
	port := FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)

	c := StartCaddy(t, bin, site(port, "hi"))
	if status, body := get(t, url); status != 200 || body != "hi" {
		t.Fatalf("after start: got %d %q, want 200 \"hi\"", status, body)
	}

	c.Reload(t, site(port, "reloaded"))
	if status, body := get(t, url); status != 200 || body != "reloaded" {
		t.Fatalf("after reload: got %d %q, want 200 \"reloaded\"", status, body)
	}

	c.Restart(t)
	if status, body := get(t, url); status != 200 || body != "reloaded" {
		t.Fatalf("after restart: got %d %q, want 200 \"reloaded\"", status, body)
	}

	if logs := c.Logs(); !strings.Contains(logs, `"level":"debug"`) {
		t.Errorf("logs hold no debug entry:\n%s", logs)
	}

	c.Stop()
	if _, err := (&http.Client{Timeout: time.Second}).Get(url); err == nil {
		t.Fatalf("after stop: %s still answers", url)
	}
	c.Stop() // a second Stop is harmless
}

func TestWaitHTTP(t *testing.T) {
	port := FreePort(t)
	StartCaddyWith(t, bin, site(port, "up"), Options{LogLevel: "INFO"})
	WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 5*time.Second)
}

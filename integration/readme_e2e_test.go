package integration

import (
	"bufio"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"github.com/outergate/outergate/integration/legacy"
)

// consoleStep is one `$ command` of a README console block and the output
// printed under it.
type consoleStep struct {
	command string
	output  string
}

// readmeSteps returns the commands of README.md's console blocks in order.
func readmeSteps(t *testing.T) []consoleStep {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []consoleStep
	inBlock := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```console":
			inBlock = true
		case inBlock && line == "```":
			inBlock = false
		case inBlock && strings.HasPrefix(line, "$ "):
			steps = append(steps, consoleStep{command: strings.TrimPrefix(line, "$ ")})
		case inBlock && len(steps) > 0:
			steps[len(steps)-1].output += line + "\n"
		}
	}
	return steps
}

// TestReadmeWalkthrough runs every command of the README's console blocks,
// in order, against the demo Caddyfile (moved to free ports) in front of the
// reference backend, and compares each output with the one printed, but for
// the token value and the Date header.
func TestReadmeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not found")
	}
	steps := readmeSteps(t)
	if len(steps) < 8 {
		t.Fatalf("found %d console commands in README.md, want the whole walkthrough", len(steps))
	}
	root, _ := harness.ModuleRoot()
	demo, err := os.ReadFile(filepath.Join(root, "caddyfile", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	backend := httptest.NewServer(legacy.New(legacy.Options{}))
	t.Cleanup(backend.Close)
	port := harness.FreePort(t)
	site := regexp.MustCompile(`(?s)^.*?\n\{\n.*?\n\}\n`).ReplaceAllString(string(demo), "") // the harness brings its own global options
	site = strings.ReplaceAll(site, ":8080 {", fmt.Sprintf(":%d {", port))
	site = strings.ReplaceAll(site, "127.0.0.1:9080", strings.TrimPrefix(backend.URL, "http://"))
	harness.StartCaddy(t, bin, site)
	harness.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 10*time.Second)

	var script strings.Builder
	for i, s := range steps {
		cmd := strings.ReplaceAll(s.command, "http://localhost:8080", fmt.Sprintf("http://127.0.0.1:%d", port))
		fmt.Fprintf(&script, "echo '@@step %d'\n%s\necho\n", i, cmd)
	}
	out, err := exec.Command("bash", "-c", script.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("walkthrough failed: %v\n%s", err, out)
	}
	got := strings.Split(string(out), "@@step ")[1:]
	if len(got) != len(steps) {
		t.Fatalf("ran %d steps, want %d", len(got), len(steps))
	}
	norm := func(s string) string {
		s = strings.ReplaceAll(s, "\r", "")
		s = regexp.MustCompile(`"access_token":"[^"]+"`).ReplaceAllString(s, `"access_token":"…"`)
		s = regexp.MustCompile(`(?m)^Date: .*$`).ReplaceAllString(s, "Date: …")
		return strings.TrimSpace(s)
	}
	for i, s := range steps {
		_, body, _ := strings.Cut(got[i], "\n")
		if norm(body) != norm(s.output) {
			t.Errorf("README step %d: %s\n got: %s\nwant: %s", i, s.command, norm(body), norm(s.output))
		}
	}
}

// TestExampleCaddyfilesValidate checks that the shipped Caddyfiles load.
func TestExampleCaddyfilesValidate(t *testing.T) {
	root, _ := harness.ModuleRoot()
	files, _ := filepath.Glob(filepath.Join(root, "caddyfile", "*Caddyfile"))
	if len(files) < 4 {
		t.Fatalf("found %v, want the demo, the single-Redis, Sentinel and Cluster Caddyfiles", files)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cmd := exec.Command(bin, "validate", "--config", f, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("caddy validate %s: %v\n%s", f, err, out)
			}
		})
	}
}

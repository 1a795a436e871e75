package integration

import (
	"bufio"
	"context"
	"encoding/json"
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

// readmeExcluded lists the README commands TestReadmeWalkthrough does not run,
// each with the reason; each one shows as a skipped subtest with that
// reason. Every other command line of README.md is run.
var readmeExcluded = map[string]string{
	"./xcaddy.sh run": "starts the demo on the fixed ports 8080, 9080 and 2019 and runs until Ctrl-C; " +
		"this test runs the same caddyfile/Caddyfile on free ports, and TestXcaddyBinaryVersions checks the ./caddy it builds",
	"go tool gotestsum -- -count=1 ./...": "the test suite itself",
	"xcaddy build v2.11.9 --with github.com/outergate/outergate/module@v0.1.0": "fetches the released module through the Go module proxy; " +
		"TestXcaddyBinaryVersions runs the same xcaddy build from this checkout (./xcaddy.sh)",
}

// readmeBlock is one fenced block of README.md.
type readmeBlock struct {
	lang  string
	line  int // line number of the opening fence
	lines []string
}

// readmeBlocks returns README.md's fenced blocks in order.
func readmeBlocks(t *testing.T) []readmeBlock {
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
	var blocks []readmeBlock
	var cur *readmeBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(line, "```"), line: n}
		case cur != nil && line == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, line)
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: unterminated code block", cur.line)
	}
	return blocks
}

// readmeCommand is one command README.md tells a reader to type: a `$ `
// line of a console block, with the output printed under it, or a line of
// an sh block (its trailing comment removed), whose output is not shown.
type readmeCommand struct {
	line       int
	command    string
	output     string
	showOutput bool
}

// shellLangs are the fence languages whose lines are commands.
var shellLangs = map[string]bool{"sh": true, "bash": true, "shell": true}

// trailingComment is an sh line's comment after the command.
var trailingComment = regexp.MustCompile(`\s+#.*$`)

// readmeCommands returns every command of README.md in order. A `$ ` line
// outside a console block fails the test: put transcripts in console blocks,
// so that they are run.
func readmeCommands(t *testing.T) []readmeCommand {
	t.Helper()
	var cmds []readmeCommand
	for _, b := range readmeBlocks(t) {
		for i, line := range b.lines {
			n := b.line + 1 + i
			switch {
			case b.lang == "console" && strings.HasPrefix(line, "$ "):
				cmds = append(cmds, readmeCommand{line: n, command: strings.TrimPrefix(line, "$ "), showOutput: true})
			case b.lang == "console" && len(cmds) > 0 && cmds[len(cmds)-1].showOutput:
				cmds[len(cmds)-1].output += line + "\n"
			case b.lang == "console":
				t.Errorf("README.md:%d: console block output before any `$ ` command", n)
			case shellLangs[b.lang]:
				if c := strings.TrimSpace(trailingComment.ReplaceAllString(line, "")); c != "" && !strings.HasPrefix(c, "#") {
					cmds = append(cmds, readmeCommand{line: n, command: c})
				}
			case strings.HasPrefix(line, "$ "):
				t.Errorf("README.md:%d: a `$ ` transcript in a %q block: use a console block so that it is run", n, b.lang)
			}
		}
	}
	return cmds
}

// outputNorms blank what differs between runs: token values, dates, and
// the secret and hash new-client generates, bcrypt's salt and hash.
var outputNorms = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"access_token":"[^"]+"`), `"access_token":"…"`},
	{regexp.MustCompile(`(?m)^Date: .*$`), "Date: …"},
	{regexp.MustCompile(`(?m)^client_secret: \S+$`), "client_secret: …"},
	{regexp.MustCompile(`(?m)^client (\S+) sha256:[0-9a-f]{64}$`), "client $1 sha256:…"},
	{regexp.MustCompile(`(?m)^(\$2[aby]\$\d\d\$)[./A-Za-z0-9]{53}$`), "${1}…"},
}

func normOutput(s string) string {
	s = strings.ReplaceAll(s, "\r", "")
	for _, n := range outputNorms {
		s = n.re.ReplaceAllString(s, n.with)
	}
	return strings.TrimSpace(s)
}

// outputMatches compares a command's output with README's. A line that is
// only "…" in README's stands for any number of lines left out.
func outputMatches(got, want string) bool {
	got, want = normOutput(got), normOutput(want)
	if !strings.Contains("\n"+want+"\n", "\n…\n") {
		return got == want
	}
	var re strings.Builder
	re.WriteString(`^`)
	for _, line := range strings.Split(want, "\n") {
		if line == "…" {
			re.WriteString(`(?:.*\n)*?`)
		} else {
			re.WriteString(regexp.QuoteMeta(line) + `\n`)
		}
	}
	re.WriteString(`$`)
	return regexp.MustCompile(re.String()).MatchString(got + "\n")
}

// TestReadmeWalkthrough runs every command line of README.md (console blocks
// and sh blocks), in order, in one bash session, against the demo
// Caddyfile (moved to free ports, its admin endpoint too) in front of the
// reference backend, with ./caddy being the binary under test and
// caddyfile/ the repository's. Each must exit 0, and a console command's
// output must be the one printed, but for token values, dates and generated
// secrets. Commands in readmeExcluded are listed as skipped subtests with
// their reason.
func TestReadmeWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is required (CI is set)")
		}
		t.Skip("curl not found: install curl (Debian: apt-get install curl) to run README's commands")
	}
	cmds := readmeCommands(t)
	var run []readmeCommand
	seen := map[string]bool{}
	for _, c := range cmds {
		if reason, ok := readmeExcluded[c.command]; ok {
			seen[c.command] = true
			t.Run(fmt.Sprintf("line%d", c.line), func(t *testing.T) {
				t.Skipf("README.md:%d `%s` not run: %s", c.line, c.command, reason)
			})
			continue
		}
		run = append(run, c)
	}
	for c := range readmeExcluded {
		if !seen[c] {
			t.Errorf("readmeExcluded names %q, which README.md no longer has", c)
		}
	}
	if len(run) < 20 {
		t.Fatalf("found %d commands to run in README.md, want the whole walkthrough", len(run))
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
	caddy := harness.StartCaddy(t, bin, site)
	harness.WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/", port), 10*time.Second)
	admin := strings.TrimPrefix(caddy.AdminURL(), "http://")

	// The working directory: ./caddy is the binary under test, caddyfile/
	// the repository's.
	work := t.TempDir()
	for name, target := range map[string]string{"caddy": bin, "caddyfile": filepath.Join(root, "caddyfile")} {
		if err := os.Symlink(target, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	var script strings.Builder
	script.WriteString("set -o pipefail\n")
	for i, c := range run {
		cmd := strings.ReplaceAll(c.command, "http://localhost:8080", fmt.Sprintf("http://127.0.0.1:%d", port))
		cmd = strings.ReplaceAll(cmd, "localhost:2019", admin)
		fmt.Fprintf(&script, "echo '@@step %d'\n%s\nrc=$?\necho\necho \"@@rc $rc\"\n", i, cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := exec.CommandContext(ctx, "bash", "-c", script.String())
	sh.Dir = work
	sh.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("README commands: %v\n%s", err, out)
	}
	got := strings.Split(string(out), "@@step ")[1:]
	if len(got) != len(run) {
		t.Fatalf("ran %d steps, want %d:\n%s", len(got), len(run), out)
	}
	rcLine := regexp.MustCompile(`\n@@rc (\d+)\n?$`)
	for i, c := range run {
		_, body, _ := strings.Cut(got[i], "\n")
		m := rcLine.FindStringSubmatch(body)
		if m == nil {
			t.Errorf("README.md:%d `%s`: no exit status in %q", c.line, c.command, body)
			continue
		}
		body = body[:len(body)-len(m[0])]
		if m[1] != "0" {
			t.Errorf("README.md:%d `%s` exited %s:\n%s", c.line, c.command, m[1], body)
		}
		if c.showOutput && !outputMatches(body, c.output) {
			t.Errorf("README.md:%d `%s`\n got: %s\nwant: %s", c.line, c.command, normOutput(body), normOutput(c.output))
		}
	}
}

// TestReadmeJSONConfigLoads loads every JSON block of README.md with
// `caddy validate`, so the JSON example is a whole config that provisions.
func TestReadmeJSONConfigLoads(t *testing.T) {
	n := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "json" {
			continue
		}
		n++
		t.Run(fmt.Sprintf("line%d", b.line), func(t *testing.T) {
			doc := strings.Join(b.lines, "\n")
			if !json.Valid([]byte(doc)) {
				t.Fatalf("README.md:%d: not JSON", b.line)
			}
			f := filepath.Join(t.TempDir(), "caddy.json")
			if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "validate", "--config", f)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("README.md:%d: caddy validate: %v\n%s", b.line, err, out)
			}
		})
	}
	if n == 0 {
		t.Fatal("README.md has no JSON example")
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

package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// xcaddyBuildTimeout bounds `./xcaddy.sh build` when the test has to run
// it (about 90 s on two busy cores with a warm module cache).
const xcaddyBuildTimeout = 10 * time.Minute

// TestXcaddyBinaryVersions proves that ./caddy, the binary `./xcaddy.sh`
// builds the way plugin users build theirs, holds the very module versions
// the tests run with: for every module the binary and `go list -m all`
// share, the versions are equal, and every module in the binary is in the
// build list. xcaddy's log says "go: upgraded golang.org/x/crypto v0.57.0 =>
// v0.59.0": that is xcaddy's own go.mod (Caddy's requirements) being raised
// to outergate's, not a drift, and this test keeps it so.
//
// It reuses ./caddy when it is newer than go.mod and go.sum. Otherwise it
// skips, naming the command, unless OUTERGATE_REQUIRE_XCADDY=1 (set by
// .ci/run), where it builds ./caddy with ./xcaddy.sh itself.
func TestXcaddyBinaryVersions(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	caddyBin := filepath.Join(root, "caddy")
	if reason := xcaddyBinaryStale(root, caddyBin); reason != "" {
		if os.Getenv("OUTERGATE_REQUIRE_XCADDY") != "1" {
			t.Skipf("%s: run ./xcaddy.sh build first (OUTERGATE_REQUIRE_XCADDY=1 builds it here)", reason)
		}
		ctx, cancel := context.WithTimeout(context.Background(), xcaddyBuildTimeout)
		defer cancel()
		build := exec.CommandContext(ctx, "./xcaddy.sh", "build")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("%s; ./xcaddy.sh build: %v\n%s", reason, err, out)
		}
	}

	out, err := exec.Command("go", "version", "-m", caddyBin).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", caddyBin, err)
	}
	binDeps, replaced := parseVersionM(string(out))
	if got, want := replaced["github.com/outergate/outergate"], root; got != want {
		t.Errorf("./caddy's github.com/outergate/outergate is replaced by %q, want this checkout %q", got, want)
	}

	list := exec.Command("go", "list", "-m", "all")
	list.Dir = root
	out, err = list.Output()
	if err != nil {
		t.Fatalf("go list -m all: %v", err)
	}
	buildList := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			buildList[f[0]] = f[1]
		}
	}

	shared := 0
	for path, v := range binDeps {
		want, ok := buildList[path]
		if !ok {
			t.Errorf("./caddy holds %s %s, which `go list -m all` does not list", path, v)
			continue
		}
		shared++
		if v != want {
			t.Errorf("%s: ./caddy has %s, go list -m all selects %s", path, v, want)
		}
	}
	for _, path := range []string{"github.com/caddyserver/caddy/v2", "github.com/redis/go-redis/v9",
		"github.com/patrickmn/go-cache", "github.com/prometheus/client_golang", "go.uber.org/zap",
		"golang.org/x/crypto", "golang.org/x/net", "golang.org/x/oauth2", "golang.org/x/sys"} {
		if _, ok := binDeps[path]; !ok {
			t.Errorf("./caddy does not list %s: not the binary this test expects", path)
		}
	}
	if shared < 100 {
		t.Errorf("only %d modules shared between ./caddy and go list -m all", shared)
	}
	t.Logf("%d modules in ./caddy, all at the versions of go list -m all", shared)
}

// xcaddyBinaryStale says why ./caddy cannot be used as it is, or "".
func xcaddyBinaryStale(root, caddyBin string) string {
	bi, err := os.Stat(caddyBin)
	if err != nil {
		return "./caddy not built"
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		fi, err := os.Stat(filepath.Join(root, f))
		if err == nil && fi.ModTime().After(bi.ModTime()) {
			return "./caddy is older than " + f
		}
	}
	return ""
}

// parseVersionM reads `go version -m` output: the version of every dep
// that is not replaced, and the replacement directory or module of every
// one that is.
func parseVersionM(out string) (deps, replaced map[string]string) {
	deps, replaced = map[string]string{}, map[string]string{}
	last := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Split(strings.TrimSpace(sc.Text()), "\t")
		switch {
		case len(f) >= 3 && f[0] == "dep":
			deps[f[1]], last = f[2], f[1]
		case len(f) >= 2 && f[0] == "=>" && last != "":
			delete(deps, last)
			replaced[last] = f[1]
		}
	}
	return deps, replaced
}

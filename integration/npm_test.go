package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/harness"
)

// npmTimeout bounds `npm ci` and `npm ping`, so an unreachable or hung
// registry costs at most that.
const npmTimeout = 3 * time.Minute

// errRegistryUnreachable marks an `npm ci` that failed because the npm
// registry did not answer `npm ping`: the test skips rather than fails,
// unless OUTERGATE_REQUIRE_NODE=1.
var errRegistryUnreachable = errors.New("npm registry unreachable")

// npmInstall runs `npm ci` in dir (with env added to the process's own).
// When it fails, `npm ping` tells a registry that cannot be reached
// (errRegistryUnreachable, wrapped with both outputs) from any other failure.
func npmInstall(npm, dir string, env []string) error {
	run := func(args ...string) ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		return cmd.CombinedOutput()
	}
	out, err := run("ci", "--no-audit", "--no-fund", "--prefer-offline", "--fetch-retries=1", "--fetch-timeout=30000")
	if err == nil {
		return nil
	}
	if pingOut, pingErr := run("ping", "--fetch-retries=0", "--fetch-timeout=15000"); pingErr != nil {
		return fmt.Errorf("%w: npm ci: %v\n%s\nnpm ping: %v\n%s", errRegistryUnreachable, err, out, pingErr, pingOut)
	}
	return fmt.Errorf("npm ci (the registry answers npm ping): %v\n%s", err, out)
}

// TestNpmUnreachableRegistry points npm at a closed loopback port with an
// empty cache and checks that npmInstall reports errRegistryUnreachable,
// which TestNodeOpenIDClient turns into a skip outside CI.
func TestNpmUnreachableRegistry(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("OUTERGATE_REQUIRE_NODE") == "1" {
			t.Fatal("npm is required (OUTERGATE_REQUIRE_NODE=1)")
		}
		t.Skip("npm not found: install nodejs and npm to run the openid-client check")
	}
	root, _ := harness.ModuleRoot()
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json"} {
		data, err := os.ReadFile(filepath.Join(root, "integration", "oauth2client", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	closed := fmt.Sprintf("http://127.0.0.1:%d/", harness.FreePort(t))
	err = npmInstall(npm, dir, []string{"npm_config_registry=" + closed, "npm_config_cache=" + t.TempDir(),
		"npm_config_update_notifier=false"})
	if !errors.Is(err, errRegistryUnreachable) {
		t.Fatalf("npm ci against %s: err = %v, want errRegistryUnreachable", closed, err)
	}
}

// Package integration holds outergate's end-to-end tests: the built binary
// (Caddy with the plugin) started from a real Caddyfile, in front of the
// reference legacy backend, spoken to over real HTTP.
package integration

import (
	"fmt"
	"os"
	"testing"

	"github.com/outergate/outergate/integration/harness"
)

// bin is the outergate binary built once for the whole package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outergate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = harness.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	fmt.Println(contractSummary())
	os.RemoveAll(dir)
	os.Exit(code)
}

package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main instead of the tests when the test binary is started
// by TestHelp, so the real command line is what is tested.
func TestMain(m *testing.M) {
	if os.Getenv("BENCH_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHelp checks that -h, alone or after a mode, prints the modes and every
// flag and exits 0, and that no mode is a usage error (exit 2).
func TestHelp(t *testing.T) {
	run := func(args ...string) (string, int) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "BENCH_RUN_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	for _, args := range [][]string{{"-h"}, {"bench", "-h"}, {"--help"}} {
		out, code := run(args...)
		if code != 0 {
			t.Errorf("%v: exit %d, want 0", args, code)
		}
		for _, want := range []string{"usage: go run ./integration/bench/run <mode> [flags]", "soak ", "faults ",
			"-bin", "-rounds", "-reload-rounds", "-max-foreign", "-keep", "-fault-duration", "(default 5)"} {
			if !strings.Contains(out, want) {
				t.Errorf("%v: output lacks %q:\n%s", args, want, out)
			}
		}
	}
	if out, code := run(); code != 2 || !strings.Contains(out, "-rounds") {
		t.Errorf("no mode: exit %d, want 2 with the usage:\n%s", code, out)
	}
}

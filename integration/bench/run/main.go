// Command run is outergate's benchmark and load-test driver. It builds the
// outergate binary (cmd/outergate) and the benchmark upstream
// (integration/bench/upstream), starts them with Caddyfiles it writes, a
// redis-server when a run needs one, and drives wrk against 127.0.0.1 only.
// Every run is bounded in time and stops by itself; every process it
// started is stopped before it exits.
//
// Usage:
//
//	go run ./integration/bench/run <mode> [flags]
//
// Modes:
//
//	bench   side-by-side throughput rounds (stock reverse_proxy, outergate
//	        with the memory store, outergate with Redis, forward_auth), then
//	        the token endpoint's rate; prints Markdown tables
//	soak    sustained load at many connections, RSS and Go heap sampled
//	reload  a config reload every second during load, outergate and stock
//	        Caddy in alternating rows
//	faults  the upstream, then Redis, killed and restarted during load
//	redis-cost  round trips, commands and bytes per issuance and per
//	        validation through a counting proxy, and Redis bytes per token
//	        (also the last step of bench)
//	all     bench, soak, reload and faults in turn
//
// Run `go run ./integration/bench/run -h` for the flags.
package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/outergate/outergate/integration/harness"
	"golang.org/x/crypto/bcrypt"
)

// usage prints the modes and every flag with its default to fs's output.
func usage(fs *flag.FlagSet) {
	fmt.Fprint(fs.Output(), `usage: go run ./integration/bench/run <mode> [flags]

Modes:
  bench   side-by-side throughput rounds (stock reverse_proxy, outergate with
          the memory store, outergate with Redis, forward_auth), then the
          token endpoint's rate; prints Markdown tables
  soak    sustained load at many connections, RSS and Go heap sampled
  reload  a config reload every second during load, outergate and stock
          Caddy in alternating rows
  faults  the upstream, then Redis, killed and restarted during load
  all     bench, soak, reload and faults in turn

Flags (each mode reads those named for it, and the unprefixed ones):
`)
	fs.PrintDefaults()
}

// config holds every flag; each mode reads its own.
type config struct {
	bin, workdir, wrk string
	keep              bool

	threads    int
	conns      int
	rounds     int
	duration   time.Duration
	warmup     time.Duration
	timeout    time.Duration
	tokRounds  int
	tokDur     time.Duration
	tokConns   int
	bcryptConn int
	bcryptCost int
	noBcrypt   bool
	pprofDir   string
	pprofSecs  int
	maxForeign float64
	redo       int

	soakConns    int
	soakDur      time.Duration
	soakVariant  string
	soakInterval time.Duration
	issueRate    int

	reloadConns  int
	reloadDur    time.Duration
	reloadRounds int
	reloadEvery  time.Duration

	faultConns int
	faultDur   time.Duration
}

func main() {
	mode := ""
	if len(os.Args) >= 2 {
		mode = os.Args[1]
	}
	var c config
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	fs.Usage = func() { usage(fs) }
	fs.StringVar(&c.bin, "bin", "", "outergate binary to use instead of building cmd/outergate")
	fs.StringVar(&c.workdir, "workdir", "", "directory for binaries, Caddyfiles and logs (default: a new temporary one)")
	fs.StringVar(&c.wrk, "wrk", "wrk", "wrk binary")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, Caddyfiles) after the run")

	fs.IntVar(&c.threads, "threads", 2, "wrk threads")
	fs.IntVar(&c.conns, "conns", 64, "bench: wrk connections for the proxied request")
	fs.IntVar(&c.rounds, "rounds", 5, "bench: rounds; each runs every variant once, in rotating order")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "bench: wrk duration per variant per round")
	fs.DurationVar(&c.warmup, "warmup", 3*time.Second, "bench: unrecorded warm-up run per variant")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "wrk per-request timeout")
	fs.IntVar(&c.tokRounds, "token-rounds", 3, "bench: rounds of the token endpoint rows (0 skips them)")
	fs.DurationVar(&c.tokDur, "token-duration", 5*time.Second, "bench: wrk duration per token row per round")
	fs.IntVar(&c.tokConns, "token-conns", 64, "bench: connections for the sha256 token rows")
	fs.IntVar(&c.bcryptConn, "bcrypt-conns", 64, "bench: connections for the bcrypt token rows (outergate remembers secrets that matched a bcrypt hash)")
	fs.IntVar(&c.bcryptCost, "bcrypt-cost", bcrypt.DefaultCost, "bench: bcrypt cost of the bcrypt client's secret hash")
	fs.BoolVar(&c.noBcrypt, "no-bcrypt-client", false, "configure no bcrypt client (outergate then hashes no bcrypt decoy on each config load); bench skips its bcrypt rows")
	fs.StringVar(&c.pprofDir, "pprof", "", "bench: after the rounds, save CPU profiles of each Caddy under load to this directory")
	fs.IntVar(&c.pprofSecs, "pprof-seconds", 8, "bench: length of each CPU profile")
	fs.Float64Var(&c.maxForeign, "max-foreign", 0.05, "bench: a round in which other processes used more than this share of the machine's CPU is run again")
	fs.IntVar(&c.redo, "redo", 5, "bench: how many disturbed rounds may be run again in all")

	fs.IntVar(&c.soakConns, "soak-conns", 256, "soak: wrk connections")
	fs.DurationVar(&c.soakDur, "soak-duration", 60*time.Second, "soak: duration")
	fs.StringVar(&c.soakVariant, "soak-variant", "memory", "soak: memory, redis or stock")
	fs.DurationVar(&c.soakInterval, "soak-sample", 5*time.Second, "soak: RSS and heap sampling interval")
	fs.IntVar(&c.issueRate, "issue-rate", 20, "soak: token requests per second beside the load (0: none)")

	fs.IntVar(&c.reloadConns, "reload-conns", 128, "reload: wrk connections")
	fs.DurationVar(&c.reloadDur, "reload-duration", 15*time.Second, "reload: duration per variant per round")
	fs.IntVar(&c.reloadRounds, "reload-rounds", 2, "reload: rounds (stock and outergate alternate)")
	fs.DurationVar(&c.reloadEvery, "reload-every", time.Second, "reload: interval between reloads")

	fs.IntVar(&c.faultConns, "fault-conns", 64, "faults: wrk connections")
	fs.DurationVar(&c.faultDur, "fault-duration", 20*time.Second, "faults: duration; the process is killed at 1/4 and restarted at 1/2 of it")
	switch {
	case mode == "-h" || mode == "-help" || mode == "--help":
		fs.SetOutput(os.Stdout)
		usage(fs)
		os.Exit(0)
	case mode == "" || strings.HasPrefix(mode, "-"):
		usage(fs)
		os.Exit(2)
	}
	_ = fs.Parse(os.Args[2:])

	modes := map[string]func(*env) error{"bench": runBench, "soak": runSoak, "reload": runReload, "faults": runFaults,
		"redis-cost": runRedisCost}
	var run []func(*env) error
	if mode == "all" {
		run = []func(*env) error{runBench, runSoak, runReload, runFaults}
	} else if f, ok := modes[mode]; ok {
		run = []func(*env) error{f}
	} else {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(2)
	}
	for _, d := range []time.Duration{c.duration, c.warmup, c.tokDur, c.soakDur, c.reloadDur, c.faultDur} {
		if d != 0 && d < time.Second {
			fmt.Fprintln(os.Stderr, "durations are whole seconds (wrk's -d)")
			os.Exit(2)
		}
	}

	e, err := newEnv(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		stopAll()
		os.Exit(130)
	}()
	status := 0
	for _, f := range run {
		if err := f(e); err != nil {
			fmt.Fprintln(os.Stderr, "error:", err)
			status = 1
		}
		stopAll()
	}
	if c.keep {
		fmt.Fprintln(os.Stderr, "work directory kept:", e.dir)
	} else {
		os.RemoveAll(e.dir)
	}
	os.Exit(status)
}

// env is what every mode shares: the binaries, the clients' secrets.
type env struct {
	cfg   config
	dir   string
	bin   string // outergate
	upBin string // benchmark upstream

	// Client "bench" holds the Bearer token of the load runs; the token
	// endpoint's rows and the soak's trickle issue for "bench-churn" and
	// "bench-bcrypt", so that max_tokens_per_client never evicts it.
	secret       string // of clients "bench" and "bench-churn" (sha256)
	bcryptSecret string // of client "bench-bcrypt"
	sha256Hash   string
	bcryptHash   string
}

func newEnv(c config) (*env, error) {
	e := &env{cfg: c, dir: c.workdir}
	if e.dir == "" {
		d, err := os.MkdirTemp("", "outergate-bench-")
		if err != nil {
			return nil, err
		}
		e.dir = d
	} else if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	wrk, err := exec.LookPath(c.wrk)
	if err != nil {
		return nil, fmt.Errorf("wrk not found (Debian: apt-get install wrk; integration/bench/bench.sh installs it): %w", err)
	}
	wrkPath = wrk
	scriptDir = filepath.Join(e.dir, "lua")
	if err := os.MkdirAll(scriptDir, 0o700); err != nil {
		return nil, err
	}
	if err := writeScripts(scriptDir); err != nil {
		return nil, err
	}

	e.bin = c.bin
	if e.bin == "" {
		fmt.Fprintln(os.Stderr, "building cmd/outergate ...")
		if e.bin, err = harness.BuildBinary(e.dir); err != nil {
			return nil, err
		}
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return nil, err
	}
	e.upBin = filepath.Join(e.dir, "upstream")
	cmd := exec.Command("go", "build", "-o", e.upBin, "./integration/bench/upstream")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build upstream: %v\n%s", err, out)
	}

	e.secret = rand.Text()
	e.bcryptSecret = rand.Text()
	sum := sha256.Sum256([]byte(e.secret))
	e.sha256Hash = "sha256:" + hex.EncodeToString(sum[:])
	h, err := bcrypt.GenerateFromPassword([]byte(e.bcryptSecret), c.bcryptCost)
	if err != nil {
		return nil, err
	}
	e.bcryptHash = string(h)
	return e, nil
}

// Device request every variant serves.
const devicePath = "/outer/device/info/?deviceid=e22cfa2e-9752-11e6-9baf-00163e120d98"

// proxyBlock is the reverse_proxy every variant ends with.
func proxyBlock(up int) string {
	return fmt.Sprintf(`	reverse_proxy /outer/device/* 127.0.0.1:%d {
		transport http {
			dial_timeout 2s
			response_header_timeout 10s
		}
	}`, up)
}

// usesRedis reports whether a variant's store is Redis.
func usesRedis(variant string) bool { return strings.HasPrefix(variant, "redis") }

// site returns the site block of a variant: "stock", "memory", "redis"
// (needs redisAddr), "memory-limited", "redis-limited" (the same with a
// rate limit and a quota on every client) or "forward_auth".
func (e *env) site(variant string, port, up int, redisAddr string) string {
	var auth string
	switch variant {
	case "stock":
	case "memory", "redis", "memory-limited", "redis-limited":
		store := "store memory {\n\t\t\tname bench\n\t\t}"
		if usesRedis(variant) {
			store = "store redis redis://" + redisAddr + "/0"
		}
		if strings.HasSuffix(variant, "-limited") {
			// Counted on every request, never reached: the price of an
			// active limit, not of refusals.
			store += "\n\t\trate_limit 1000000/1s\n\t\tquota 1000000000/24h"
		}
		bcryptClient := "client bench-bcrypt " + e.bcryptHash
		if e.cfg.noBcrypt {
			bcryptClient = "# no bcrypt client (-no-bcrypt-client)"
		}
		auth = fmt.Sprintf(`	outergate {
		client bench %[1]s
		client bench-churn %[1]s
		%[2]s
		require_param deviceid
		%[3]s
	}
`, e.sha256Hash, bcryptClient, store)
	case "forward_auth":
		auth = fmt.Sprintf(`	forward_auth /outer/device/* 127.0.0.1:%d {
		uri /check
		copy_headers X-Client-Id
	}
`, up)
	default:
		panic("unknown variant " + variant)
	}
	return fmt.Sprintf("http://127.0.0.1:%d {\n%s%s\n}\n", port, auth, proxyBlock(up))
}

// startVariant starts a Caddy for one variant and returns it with a token
// that variant accepts (a dummy one of the same length for stock).
func (e *env) startVariant(variant string, up *upstream, redis *redisServer) (*caddy, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	redisAddr := ""
	if redis != nil {
		redisAddr = redis.addr()
	}
	c, err := startCaddy(e.bin, e.dir, variant, port, e.site(variant, port, up.port, redisAddr))
	if err != nil {
		return nil, "", err
	}
	var token string
	switch variant {
	case "stock":
		token = strings.Repeat("x", 43)
	case "memory", "redis", "memory-limited", "redis-limited":
		token, err = c.token("bench", e.secret)
	case "forward_auth":
		token, err = up.issue()
	}
	if err != nil {
		return nil, "", err
	}
	status, body, err := get(c.url(devicePath), token)
	if err != nil || status != 200 || !strings.Contains(body, `"code":0`) {
		return nil, "", fmt.Errorf("%s: sanity request: %d %q %v", variant, status, body, err)
	}
	if variant != "stock" {
		// The auth really is in front: no token, no device.
		status, _, err := get(c.url(devicePath), "")
		if err != nil || status != 401 {
			return nil, "", fmt.Errorf("%s: request without a token answered %d %v, want 401", variant, status, err)
		}
	}
	return c, token, nil
}

// machine describes the machine the figures come from.
func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	wrkVersion := ""
	// wrk -v prints its version and usage, and exits 1.
	if out, _ := exec.Command(wrkPath, "-v").CombinedOutput(); len(out) > 0 {
		wrkVersion = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	}
	return fmt.Sprintf("%d CPUs (%s), %s, %s/%s, %s", runtime.NumCPU(), model, runtime.Version(),
		runtime.GOOS, runtime.GOARCH, wrkVersion)
}

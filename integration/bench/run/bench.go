package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// variants of the proxied-request benchmark, in the order of the table.
var variants = []struct{ name, label string }{
	{"stock", "stock reverse_proxy (no auth)"},
	{"memory", "outergate, memory store"},
	{"redis", "outergate, Redis store"},
	{"memory-limited", "outergate, memory store, rate_limit + quota"},
	{"redis-limited", "outergate, Redis store, rate_limit + quota"},
	{"forward_auth", "forward_auth + token service"},
}

// measured is one wrk run with the CPU time the processes used meanwhile.
type measured struct {
	res      wrkResult
	caddyCPU float64 // seconds, the variant's Caddy
	stackCPU float64 // seconds, Caddy + upstream/auth service + Redis
	// foreign is the share of the machine's CPU capacity during the run
	// that went to processes other than the benchmark's (a build, another
	// test run): the run was disturbed when it is more than a few percent.
	foreign float64
}

func (m measured) caddyUSPerReq() float64 {
	if m.res.Requests == 0 {
		return 0
	}
	return m.caddyCPU * 1e6 / float64(m.res.Requests)
}

func (m measured) stackUSPerReq() float64 {
	if m.res.Requests == 0 {
		return 0
	}
	return m.stackCPU * 1e6 / float64(m.res.Requests)
}

// measure runs w while reading the CPU time of caddy and of the others.
func measure(w wrkRun, c *caddy, others ...*proc) (measured, error) {
	cpu := func() (float64, float64) {
		own := c.cpuSeconds()
		all := own
		for _, p := range others {
			if p != nil {
				all += p.cpuSeconds()
			}
		}
		return own, all
	}
	own0, all0 := cpu()
	busy0, t0 := systemBusySeconds(), time.Now()
	res, err := w.run()
	own1, all1 := cpu()
	busy1, wall := systemBusySeconds(), time.Since(t0)
	// Idle Caddys of the other variants are counted as foreign; they use
	// next to nothing.
	foreign := (busy1 - busy0) - (all1 - all0) - res.cpu
	share := max(0, foreign/(wall.Seconds()*float64(runtime.NumCPU())))
	return measured{res: res, caddyCPU: own1 - own0, stackCPU: all1 - all0, foreign: share}, err
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(us float64) string { return strconv.FormatFloat(us/1000, 'f', 2, 64) }

func f0(x float64) string { return strconv.FormatFloat(x, 'f', 0, 64) }

func f1(x float64) string { return strconv.FormatFloat(x, 'f', 1, 64) }

func f2(x float64) string { return strconv.FormatFloat(x, 'f', 2, 64) }

func f3(x float64) string { return strconv.FormatFloat(x, 'f', 3, 64) }

func runBench(e *env) error {
	c := e.cfg
	fmt.Printf("# outergate benchmark\n\nmachine: %s\n\n", machine())
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	redis, err := startRedis(e.dir, false)
	if err != nil {
		return err
	}
	caddys := map[string]*caddy{}
	tokens := map[string]string{}
	for _, v := range variants {
		var r *redisServer
		if usesRedis(v.name) {
			r = redis
		}
		cd, tok, err := e.startVariant(v.name, up, r)
		if err != nil {
			return err
		}
		caddys[v.name], tokens[v.name] = cd, tok
	}
	device := func(v string, d time.Duration) wrkRun {
		return wrkRun{url: caddys[v].url(devicePath), threads: c.threads, conns: c.conns, duration: d,
			timeout: c.timeout, headers: []string{"Authorization: Bearer " + tokens[v]}}
	}
	others := func(v string) []*proc {
		if usesRedis(v) {
			return []*proc{up.proc, redis.proc}
		}
		return []*proc{up.proc}
	}

	if c.warmup > 0 {
		for _, v := range variants {
			if _, err := device(v.name, c.warmup).run(); err != nil {
				return err
			}
		}
	}

	// Rounds: every variant once per round, the starting variant rotating,
	// so that no variant always runs first or right after the same one.
	results := map[string][]measured{}
	redone := 0
	for r := 0; r < c.rounds; r++ {
		round := map[string]measured{}
		disturbed := false
		for i := range variants {
			v := variants[(r+i)%len(variants)].name
			m, err := measure(device(v, c.duration), caddys[v], others(v)...)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "round %d %-13s %8.0f req/s  p50 %s ms  p99 %s ms  caddy %5.1f µs/req  errors %d/%d  foreign CPU %.1f %%\n",
				r+1, v, m.res.rps(), ms(m.res.P50), ms(m.res.P99), m.caddyUSPerReq(), m.res.Status, m.res.socketErrors(), m.foreign*100)
			round[v] = m
			disturbed = disturbed || m.foreign > c.maxForeign
		}
		if disturbed && redone < c.redo {
			// Another process took CPU meanwhile: run the whole round again,
			// so that every variant of a round saw the same machine.
			redone++
			fmt.Fprintf(os.Stderr, "round %d disturbed (foreign CPU over %.0f %%): running it again\n", r+1, c.maxForeign*100)
			r--
			continue
		}
		for v, m := range round {
			results[v] = append(results[v], m)
		}
	}
	if redone > 0 {
		fmt.Printf("%d disturbed round(s) were run again (foreign CPU over %.0f %% of the machine).\n\n", redone, c.maxForeign*100)
	}
	printDeviceTables(c, results)

	tokenLoad := wrkRun{url: caddys["memory"].url("/outer/token/"), threads: c.threads, conns: c.tokConns,
		timeout: c.timeout, script: "token", args: []string{"bench-churn", e.secret}}
	if c.pprofDir != "" {
		if err := profile(e, []profileJob{{"stock", caddys["stock"], device("stock", 0)},
			{"memory", caddys["memory"], device("memory", 0)}, {"redis", caddys["redis"], device("redis", 0)}}); err != nil {
			return err
		}
	}
	if c.tokRounds > 0 {
		if err := benchTokens(e, caddys, redis); err != nil {
			return err
		}
	}
	if c.pprofDir != "" {
		// After the token rows the memory store holds their tombstones:
		// the second profile of the proxied load shows what they cost.
		if err := profile(e, []profileJob{{"token-memory", caddys["memory"], tokenLoad},
			{"memory-after-token-rows", caddys["memory"], device("memory", 0)}}); err != nil {
			return err
		}
	}
	// Last: what each operation costs in Redis (its own Caddy and Redis).
	return runRedisCost(e)
}

func printDeviceTables(c config, results map[string][]measured) {
	fmt.Printf("## Proxied request: GET %s\n\n", devicePath)
	fmt.Printf("wrk -t%d -c%d, %d rounds × %s per variant, variants alternating; medians of the rounds; "+
		"ratios are per round (same round's stock run), then the median.\n\n", c.threads, c.conns, c.rounds, c.duration)
	fmt.Println("| variant | req/s | p50 ms | p99 ms | Caddy CPU µs/req | all CPU µs/req | req/s ÷ stock | p99 ÷ stock | non-2xx | socket errors | max foreign CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	stock := results["stock"]
	for _, v := range variants {
		ms_ := results[v.name]
		var rps, p50, p99, cpu, all, ratio, p99ratio []float64
		var non2xx, sock int64
		foreign := 0.0
		for i, m := range ms_ {
			foreign = max(foreign, m.foreign)
			rps = append(rps, m.res.rps())
			p50 = append(p50, m.res.P50)
			p99 = append(p99, m.res.P99)
			cpu = append(cpu, m.caddyUSPerReq())
			all = append(all, m.stackUSPerReq())
			ratio = append(ratio, m.res.rps()/stock[i].res.rps())
			p99ratio = append(p99ratio, m.res.P99/stock[i].res.P99)
			non2xx += m.res.Status
			sock += m.res.socketErrors()
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s %% |\n", v.label, f0(median(rps)), ms(median(p50)),
			ms(median(p99)), f1(median(cpu)), f1(median(all)), f3(median(ratio)), f3(median(p99ratio)), non2xx, sock, f1(foreign*100))
	}
	var vsFA []string
	var vsFAf []float64
	for i, m := range results["memory"] {
		r := m.res.rps() / results["forward_auth"][i].res.rps()
		vsFAf = append(vsFAf, r)
		vsFA = append(vsFA, f3(r))
	}
	for _, store := range []string{"memory", "redis"} {
		var rs []string
		var rf []float64
		for i, m := range results[store+"-limited"] {
			r := m.res.rps() / results[store][i].res.rps()
			rf = append(rf, r)
			rs = append(rs, f3(r))
		}
		fmt.Printf("\noutergate (%s) with an active rate_limit + quota req/s ÷ without: median %s (rounds: %s)\n", store, f3(median(rf)), strings.Join(rs, ", "))
	}
	fmt.Printf("\noutergate (memory) req/s ÷ forward_auth req/s: median %s (rounds: %s)\n\n", f3(median(vsFAf)), strings.Join(vsFA, ", "))

	fmt.Println("Per round (req/s; p99 ms; Caddy CPU µs/req):")
	fmt.Println()
	fmt.Print("| round |")
	for _, v := range variants {
		fmt.Printf(" %s |", v.name)
	}
	fmt.Print("\n|---|")
	for range variants {
		fmt.Print("---|")
	}
	fmt.Println()
	for r := 0; r < c.rounds; r++ {
		fmt.Printf("| %d |", r+1)
		for _, v := range variants {
			m := results[v.name][r]
			fmt.Printf(" %s; %s; %s |", f0(m.res.rps()), ms(m.res.P99), f1(m.caddyUSPerReq()))
		}
		fmt.Println()
	}
	fmt.Println()
}

// benchTokens measures the token endpoint: sha256 and bcrypt clients, memory
// and Redis stores, rows alternating.
func benchTokens(e *env, caddys map[string]*caddy, redis *redisServer) error {
	c := e.cfg
	type row struct {
		label, variant, client, secret string
		conns                          int
		timeout                        time.Duration
	}
	rows := []row{
		{"sha256 secret, memory store", "memory", "bench-churn", e.secret, c.tokConns, c.timeout},
		{"sha256 secret, Redis store", "redis", "bench-churn", e.secret, c.tokConns, c.timeout},
		{"bcrypt secret (cost " + strconv.Itoa(c.bcryptCost) + "), memory store", "memory", "bench-bcrypt", e.bcryptSecret, c.bcryptConn, 10 * time.Second},
		{"bcrypt secret (cost " + strconv.Itoa(c.bcryptCost) + "), Redis store", "redis", "bench-bcrypt", e.bcryptSecret, c.bcryptConn, 10 * time.Second},
	}
	// One token request per bcrypt row first, alone: it pays bcrypt once,
	// and outergate remembers the secret after that. Without it, the first
	// wrk connections would all pay bcrypt at once (nothing coalesces
	// concurrent first checks of the same secret) and the server would still
	// be hashing for abandoned requests while the next row runs.
	if c.noBcrypt {
		rows = rows[:2]
	}
	for _, v := range []string{"memory", "redis"} {
		if c.noBcrypt {
			break
		}
		start := time.Now()
		if _, err := caddys[v].token("bench-bcrypt", e.bcryptSecret); err != nil {
			return err
		}
		fmt.Printf("First token request of the bcrypt client (cost %d), %s store, alone: %s\n", c.bcryptCost, v,
			time.Since(start).Round(time.Millisecond))
	}
	fmt.Println()
	results := make([][]measured, len(rows))
	memHeap0, memRSS0 := caddys["memory"].heapAlloc(), caddys["memory"].rssBytes()
	for r := 0; r < c.tokRounds; r++ {
		for i := range rows {
			k := (r + i) % len(rows)
			w := rows[k]
			run := wrkRun{url: caddys[w.variant].url("/outer/token/"), threads: c.threads, conns: w.conns,
				duration: c.tokDur, timeout: w.timeout, script: "token", args: []string{w.client, w.secret}}
			var others []*proc
			if w.variant == "redis" {
				others = append(others, redis.proc)
			}
			m, err := measure(run, caddys[w.variant], others...)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "token round %d %-40s %8.0f tokens/s  p99 %s ms  errors %d/%d  foreign CPU %.1f %%\n",
				r+1, w.label, m.res.goodRPS(), ms(m.res.P99), m.res.Status, m.res.socketErrors(), m.foreign*100)
			results[k] = append(results[k], m)
		}
	}
	fmt.Printf("## Token endpoint: POST /outer/token/ (form credentials)\n\n")
	fmt.Printf("wrk -t%d, %d rounds × %s per row, rows alternating; medians of the rounds. "+
		"tokens/s counts 200 answers only.\n\n", c.threads, c.tokRounds, c.tokDur)
	fmt.Println("| row | connections | tokens/s | p50 ms | p99 ms | Caddy CPU µs/token | all CPU µs/token | non-2xx | socket errors | max foreign CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, w := range rows {
		var rate, p50, p99, cpu, all []float64
		var non2xx, sock int64
		foreign := 0.0
		for _, m := range results[i] {
			foreign = max(foreign, m.foreign)
			rate = append(rate, m.res.goodRPS())
			p50 = append(p50, m.res.P50)
			p99 = append(p99, m.res.P99)
			cpu = append(cpu, m.caddyUSPerReq())
			all = append(all, m.stackUSPerReq())
			non2xx += m.res.Status
			sock += m.res.socketErrors()
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %d | %d | %s %% |\n", w.label, w.conns, f1(median(rate)), ms(median(p50)),
			ms(median(p99)), f1(median(cpu)), f1(median(all)), non2xx, sock, f1(foreign*100))
	}
	var issuedMem int64
	for i, w := range rows {
		if w.variant == "memory" {
			for _, m := range results[i] {
				issuedMem += m.res.Requests - m.res.Status
			}
		}
	}
	fmt.Printf("\nMemory-store Caddy across the token rows (%d tokens issued, all past max_tokens_per_client): "+
		"Go heap %s → %s MiB, RSS %s → %s MiB\n\n", issuedMem, mib(memHeap0), mib(caddys["memory"].heapAlloc()),
		mib(memRSS0), mib(caddys["memory"].rssBytes()))
	return nil
}

// profileJob is one CPU profile: Caddy cd under load (its duration is set
// by profile).
type profileJob struct {
	name string
	cd   *caddy
	load wrkRun
}

// profile saves a CPU profile of each job's Caddy, taken through its admin
// endpoint while wrk loads it.
func profile(e *env, jobs []profileJob) error {
	c := e.cfg
	if err := os.MkdirAll(c.pprofDir, 0o755); err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Duration(c.pprofSecs+20) * time.Second}
	for _, j := range jobs {
		j.load.duration = time.Duration(c.pprofSecs+2) * time.Second
		errc := make(chan error, 1)
		go func() { _, err := j.load.run(); errc <- err }()
		time.Sleep(time.Second)
		path := filepath.Join(c.pprofDir, j.name+".pprof")
		err := func() error {
			resp, err := client.Get(j.cd.adminURL("/debug/pprof/profile?seconds=" + strconv.Itoa(c.pprofSecs)))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(f, resp.Body)
			return err
		}()
		if werr := <-errc; err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "profile saved:", path)
	}
	fmt.Printf("CPU profiles (%d s each, under load): %s\n\n", c.pprofSecs, c.pprofDir)
	return nil
}

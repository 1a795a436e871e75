package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// tripCounter is a TCP proxy in front of redis-server that counts round
// trips: on each connection, a read from the client that follows an answer
// from the server (or opens the connection) starts one. A pipeline or a
// script is one round trip however many commands it holds, as it is for the
// gateway's latency. It also counts the bytes each way.
type tripCounter struct {
	ln                       net.Listener
	target                   string
	trips, bytesIn, bytesOut atomic.Int64
	wg                       sync.WaitGroup
}

func startTripCounter(target string) (*tripCounter, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tripCounter{ln: ln, target: target}
	go t.accept()
	return t, nil
}

func (t *tripCounter) addr() string { return t.ln.Addr().String() }

func (t *tripCounter) close() { t.ln.Close() }

func (t *tripCounter) accept() {
	for {
		c, err := t.ln.Accept()
		if err != nil {
			return
		}
		go t.serve(c)
	}
}

func (t *tripCounter) serve(c net.Conn) {
	defer c.Close()
	s, err := net.DialTimeout("tcp", t.target, 2*time.Second)
	if err != nil {
		return
	}
	defer s.Close()
	// answered is set when the server has written since the client last
	// did: the client's next write is a new round trip.
	var answered atomic.Bool
	answered.Store(true)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := s.Read(buf)
			if n > 0 {
				t.bytesOut.Add(int64(n))
				answered.Store(true)
				if _, werr := c.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				c.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			t.bytesIn.Add(int64(n))
			if answered.Swap(false) {
				t.trips.Add(1)
			}
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tripSnapshot is the counters at one moment, with the server's per-command
// call counts.
type tripSnapshot struct {
	trips, in, out int64
	calls          map[string]int64
	cpu            float64 // redis-server's used_cpu_user + used_cpu_sys, seconds
}

func (t *tripCounter) snapshot(ctx context.Context, rdb *redis.Client) (tripSnapshot, error) {
	s := tripSnapshot{trips: t.trips.Load(), in: t.bytesIn.Load(), out: t.bytesOut.Load(), calls: map[string]int64{}}
	info, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(info, "\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				x, _ := strconv.ParseFloat(v, 64)
				s.cpu += x
			}
		}
		// cmdstat_get:calls=12,usec=...
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				s.calls[strings.TrimPrefix(name, "cmdstat_")] = n
			}
		}
	}
	return s, nil
}

// tripDelta is what n operations cost, per operation.
type tripDelta struct {
	label          string
	n              int
	trips, in, out float64
	commands       float64
	cpuUS          float64 // redis-server CPU per operation, µs
	byCommand      string
}

func delta(label string, n int, a, b tripSnapshot, ownCalls map[string]int64) tripDelta {
	d := tripDelta{label: label, n: n, trips: float64(b.trips-a.trips) / float64(n),
		in: float64(b.in-a.in) / float64(n), out: float64(b.out-a.out) / float64(n),
		cpuUS: (b.cpu - a.cpu) * 1e6 / float64(n)}
	var parts []string
	var total int64
	for name, calls := range b.calls {
		// The driver's own INFO (and SCAN, MEMORY) calls are not the gateway's.
		c := calls - a.calls[name] - ownCalls[name]
		if c <= 0 {
			continue
		}
		total += c
		parts = append(parts, fmt.Sprintf("%s %s", name, f2(float64(c)/float64(n))))
	}
	sort.Strings(parts)
	d.commands = float64(total) / float64(n)
	d.byCommand = strings.Join(parts, ", ")
	return d
}

// runRedisCost measures what one issuance and one validation cost in Redis:
// a Caddy with the Redis store reaches redis-server through a tripCounter;
// requests are sent one at a time. Then the bytes the keys hold, per token.
func runRedisCost(e *env) error {
	ctx := context.Background()
	const issues = 200 // the first 100 under max_tokens_per_client, the rest past it
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	rs, err := startRedis(e.dir, false)
	if err != nil {
		return err
	}
	tc, err := startTripCounter(rs.addr())
	if err != nil {
		return err
	}
	defer tc.close()
	rdb := redis.NewClient(&redis.Options{Addr: rs.addr()})
	defer rdb.Close()
	port, err := freePort()
	if err != nil {
		return err
	}
	cd, err := startCaddy(e.bin, e.dir, "redis-cost", port, e.site("redis", port, up.port, tc.addr()))
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // the pub/sub listener connects
	// Every snapshot runs one INFO on the driver's own connection.
	own := func(n int64) map[string]int64 { return map[string]int64{"info": n} }

	var rows []tripDelta
	s0, err := tc.snapshot(ctx, rdb)
	if err != nil {
		return err
	}
	var tokens []string
	issueN := func(n int) error {
		for range n {
			tok, err := cd.token("bench-churn", e.secret)
			if err != nil {
				return err
			}
			tokens = append(tokens, tok)
		}
		return nil
	}
	if err := issueN(issues / 2); err != nil {
		return err
	}
	s1, _ := tc.snapshot(ctx, rdb)
	rows = append(rows, delta("issuance, under max_tokens_per_client", issues/2, s0, s1, own(1)))
	if err := issueN(issues / 2); err != nil {
		return err
	}
	s2, _ := tc.snapshot(ctx, rdb)
	rows = append(rows, delta("issuance, at the cap (evicts the oldest)", issues/2, s1, s2, own(1)))

	// Validation: the live tokens (the last 100), each presented once,
	// after the local cache's 1 s has passed (misses), then at once again
	// (hits).
	live := tokens[len(tokens)-issues/2:]
	time.Sleep(1500 * time.Millisecond)
	validate := func() error {
		for _, tok := range live {
			status, _, err := get(cd.url(devicePath), tok)
			if err != nil || status != 200 {
				return fmt.Errorf("redis-cost: validation answered %d %v", status, err)
			}
		}
		return nil
	}
	s3, _ := tc.snapshot(ctx, rdb)
	start := time.Now()
	if err := validate(); err != nil {
		return err
	}
	s4, _ := tc.snapshot(ctx, rdb)
	rows = append(rows, delta("validation, local cache miss", len(live), s3, s4, own(1)))
	if err := validate(); err != nil {
		return err
	}
	s5, _ := tc.snapshot(ctx, rdb)
	hitNote := ""
	if time.Since(start) > time.Second {
		hitNote = " (over 1 s since the misses: some may have missed again)"
	}
	rows = append(rows, delta("validation, local cache hit"+hitNote, len(live), s4, s5, own(1)))
	// A refused token: unknown, never cached as valid.
	unknown := strings.Repeat("u", 43)
	for range 20 {
		if status, _, err := get(cd.url(devicePath), unknown); err != nil || status != 401 {
			return fmt.Errorf("redis-cost: unknown token answered %d %v", status, err)
		}
	}
	s6, _ := tc.snapshot(ctx, rdb)
	rows = append(rows, delta("validation, unknown token (401)", 20, s5, s6, own(1)))

	fmt.Printf("## Redis cost per operation (redis-server %s, one request at a time through a counting proxy)\n\n", redisVersion(ctx, rdb))
	fmt.Println("| operation | n | round trips | commands | bytes to Redis | bytes from Redis | redis-server CPU µs | commands (per operation) |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s |\n", r.label, r.n, f2(r.trips), f2(r.commands), f0(r.in), f0(r.out),
			f1(r.cpuUS), r.byCommand)
	}
	fmt.Println("\nredis-server CPU is `INFO cpu` (used_cpu_user + used_cpu_sys) over the operations, including its" +
		" network system calls and one INFO of the driver per row; with one request at a time it is an upper bound" +
		" of what a busy server spends (no batching of reads).")
	fmt.Println()

	// Memory: every key the gateway keeps, by kind, per live token.
	var cursor uint64
	byKind := map[string][2]int64{} // kind -> keys, bytes
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return err
		}
		for _, k := range keys {
			n, err := rdb.MemoryUsage(ctx, k, 0).Result()
			if err != nil {
				return err
			}
			kind := keyKind(k)
			v := byKind[kind]
			byKind[kind] = [2]int64{v[0] + 1, v[1] + n}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	liveTokens := 0
	for _, c := range []string{"bench", "bench-churn"} {
		n, err := cd.liveTokens(c)
		if err != nil {
			return err
		}
		liveTokens += n
	}
	var total int64
	var kinds []string
	for k, v := range byKind {
		total += v[1]
		kinds = append(kinds, fmt.Sprintf("`%s` %d keys, %d bytes", k, v[0], v[1]))
	}
	slices.Sort(kinds)
	fmt.Printf("Redis keys after the issuances (`MEMORY USAGE` of every key, samples 0 = all): %s; "+
		"%d live tokens: **%s bytes per live token**, all keys included.\n\n", strings.Join(kinds, "; "), liveTokens,
		f1(float64(total)/float64(max(1, liveTokens))))
	cd.stop()
	return runRedisReplica(e)
}

// keyKind names a key by its prefix up to the last ':' (the variable part
// after it, a token hash or client id, dropped).
func keyKind(k string) string {
	if i := strings.LastIndexByte(k, ':'); i >= 0 {
		return k[:i+1] + "*"
	}
	return k
}

func redisVersion(ctx context.Context, rdb *redis.Client) string {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

// liveTokens asks the admin API how many live tokens a client has.
func (c *caddy) liveTokens(clientID string) (int, error) {
	resp, err := httpClient.Get(c.adminURL("/outergate/clients"))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Clients []struct {
			ID         string `json:"id"`
			LiveTokens int    `json:"live_tokens"`
		} `json:"clients"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("admin /outergate/clients: %d %w", resp.StatusCode, err)
	}
	for _, cl := range body.Clients {
		if cl.ID == clientID {
			return cl.LiveTokens, nil
		}
	}
	return 0, nil
}

// startRedisReplica starts a redis-server replicating primary and waits
// until the link is up.
func startRedisReplica(dir string, primary *redisServer) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, "redis-"+strconv.Itoa(port))
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, err
	}
	p, err := startProc("redis-replica", filepath.Join(dir, "redis-replica.log"), rdir, nil,
		"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--dir", rdir,
		"--loglevel", "warning", "--appendonly", "no", "--replicaof", "127.0.0.1", strconv.Itoa(primary.port))
	if err != nil {
		return nil, err
	}
	r := &redisServer{proc: p, port: port}
	if err := r.wait(); err != nil {
		return nil, err
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	return r, waitFor("replication link", 20*time.Second, func() error {
		info, err := rdb.Info(context.Background(), "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return errors.New("master link not up yet")
		}
		return nil
	})
}

// runRedisReplica measures the token endpoint with one replica and
// `replicas 1` (every write followed by WAIT 1) against the same Redis
// without it, rows alternating, and the round trips of one issuance with
// WAIT through a counting proxy.
func runRedisReplica(e *env) error {
	ctx := context.Background()
	c := e.cfg
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	primary, err := startRedis(e.dir, false)
	if err != nil {
		return err
	}
	if _, err := startRedisReplica(e.dir, primary); err != nil {
		return err
	}
	tc, err := startTripCounter(primary.addr())
	if err != nil {
		return err
	}
	defer tc.close()
	rdb := redis.NewClient(&redis.Options{Addr: primary.addr()})
	defer rdb.Close()
	withReplicas := func(addr, replicas string) func(port int) string {
		return func(port int) string {
			site := e.site("redis", port, up.port, addr)
			return strings.Replace(site, "store redis redis://"+addr+"/0",
				"store redis redis://"+addr+"/0 {\n\t\t\treplicas "+replicas+"\n\t\t}", 1)
		}
	}
	start := func(name string, site func(int) string) (*caddy, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		return startCaddy(e.bin, e.dir, name, port, site(port))
	}
	plain, err := start("redis-no-wait", withReplicas(primary.addr(), "off"))
	if err != nil {
		return err
	}
	waiting, err := start("redis-wait", withReplicas(primary.addr(), "1"))
	if err != nil {
		return err
	}
	counted, err := start("redis-wait-counted", withReplicas(tc.addr(), "1"))
	if err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	own := map[string]int64{"info": 1}
	s0, err := tc.snapshot(ctx, rdb)
	if err != nil {
		return err
	}
	const n = 50
	for range n {
		if _, err := counted.token("bench-churn", e.secret); err != nil {
			return err
		}
	}
	s1, _ := tc.snapshot(ctx, rdb)
	d := delta("issuance with replicas 1 (WAIT 1 after each write)", n, s0, s1, own)
	counted.stop()

	rows := []struct {
		label string
		cd    *caddy
	}{{"Redis, no replica wait (`replicas off`)", plain}, {"Redis + 1 replica, `replicas 1` (WAIT 1)", waiting}}
	results := make([][]measured, len(rows))
	for r := 0; r < c.tokRounds; r++ {
		for i := range rows {
			k := (r + i) % len(rows)
			run := wrkRun{url: rows[k].cd.url("/outer/token/"), threads: c.threads, conns: c.tokConns,
				duration: c.tokDur, timeout: c.timeout, script: "token", args: []string{"bench-churn", e.secret}}
			m, err := measure(run, rows[k].cd, primary.proc)
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "replica round %d %-45s %8.0f tokens/s  p99 %s ms  foreign CPU %.1f %%\n",
				r+1, rows[k].label, m.res.goodRPS(), ms(m.res.P99), m.foreign*100)
			results[k] = append(results[k], m)
		}
	}
	fmt.Printf("## Token endpoint with one replica and WAIT\n\n")
	fmt.Printf("redis-server with one replica (`--replicaof`, loopback); wrk -t%d -c%d, %d rounds × %s per row, rows alternating; medians.\n\n",
		c.threads, c.tokConns, c.tokRounds, c.tokDur)
	fmt.Println("| row | tokens/s | p50 ms | p99 ms | Caddy CPU µs/token | non-2xx | socket errors | max foreign CPU |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, row := range rows {
		var rate, p50, p99, cpu []float64
		var non2xx, sock int64
		foreign := 0.0
		for _, m := range results[i] {
			rate = append(rate, m.res.goodRPS())
			p50 = append(p50, m.res.P50)
			p99 = append(p99, m.res.P99)
			cpu = append(cpu, m.caddyUSPerReq())
			non2xx += m.res.Status
			sock += m.res.socketErrors()
			foreign = max(foreign, m.foreign)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %d | %d | %s %% |\n", row.label, f1(median(rate)), ms(median(p50)), ms(median(p99)),
			f1(median(cpu)), non2xx, sock, f1(foreign*100))
	}
	fmt.Printf("\nOne issuance with `replicas 1`, one at a time through the counting proxy (%d issuances): %s round trips, "+
		"%s commands (%s).\n\n", n, f2(d.trips), f2(d.commands), d.byCommand)
	return nil
}

package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// unexpected returns the classified answers outside allowed (see classify.lua).
func unexpected(res wrkResult, allowed ...string) map[string]int64 {
	out := map[string]int64{}
	for k, n := range res.Counts {
		if !contains(allowed, k) {
			out[k] = n
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func mib(b int64) string { return f1(float64(b) / (1 << 20)) }

// runSoak holds one variant under sustained load, sampling its memory, with
// a trickle of token requests beside it.
func runSoak(e *env) error {
	c := e.cfg
	fmt.Printf("# Soak: %s at %d connections for %s\n\nmachine: %s\n\n", c.soakVariant, c.soakConns, c.soakDur, machine())
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	var redis *redisServer
	if c.soakVariant == "redis" {
		if redis, err = startRedis(e.dir, false); err != nil {
			return err
		}
	}
	cd, token, err := e.startVariant(c.soakVariant, up, redis)
	if err != nil {
		return err
	}

	type memSample struct {
		at        time.Duration
		rss, heap int64
	}
	var samples []memSample
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // memory sampler
		defer wg.Done()
		t := time.NewTicker(c.soakInterval)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				samples = append(samples, memSample{time.Since(start).Round(time.Second), cd.rssBytes(), cd.heapAlloc()})
			}
		}
	}()
	var issued, issueFailed atomic.Int64
	var firstIssueErr atomic.Value
	if c.issueRate > 0 && c.soakVariant != "stock" {
		wg.Add(1)
		go func() { // token requests beside the load
			defer wg.Done()
			t := time.NewTicker(time.Second / time.Duration(c.issueRate))
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if _, err := cd.token("bench-churn", e.secret); err != nil {
						issueFailed.Add(1)
						firstIssueErr.CompareAndSwap(nil, err.Error())
					} else {
						issued.Add(1)
					}
				}
			}
		}()
	}
	res, err := wrkRun{url: cd.url(devicePath), threads: c.threads, conns: c.soakConns, duration: c.soakDur,
		timeout: c.timeout, script: "classify", headers: []string{"Authorization: Bearer " + token}}.run()
	close(stop)
	wg.Wait()
	if err != nil {
		return err
	}
	after, _, _ := get(cd.url(devicePath), token)

	bad := unexpected(res, "200")
	fmt.Printf("| requests | req/s | p50 ms | p99 ms | max ms | socket errors (connect/read/write/timeout) | answers | unexpected |\n|---:|---:|---:|---:|---:|---|---|---|\n")
	fmt.Printf("| %d | %s | %s | %s | %s | %d (%d/%d/%d/%d) | %s | %v |\n\n", res.Requests, f0(res.rps()), ms(res.P50), ms(res.P99),
		ms(res.Max), res.socketErrors(), res.Connect, res.Read, res.Write, res.Timeout, res.countsString(), bad)
	if c.issueRate > 0 && c.soakVariant != "stock" {
		fmt.Printf("token requests beside the load: %d issued, %d failed", issued.Load(), issueFailed.Load())
		if v := firstIssueErr.Load(); v != nil {
			fmt.Printf(" (first: %s)", v)
		}
		fmt.Println()
		fmt.Println()
	}
	fmt.Println("| t | Caddy RSS MiB | Go heap (HeapAlloc) MiB |\n|---:|---:|---:|")
	for _, s := range samples {
		fmt.Printf("| %s | %s | %s |\n", s.at, mib(s.rss), mib(s.heap))
	}
	fmt.Println()
	growth := 0.0
	flat := true
	if len(samples) >= 4 {
		// Compare the last third with the samples after the first 10 s
		// (connection buffers and pools are allocated by then).
		base := samples[min(2, len(samples)-1)].rss
		var peakLate int64
		for _, s := range samples[len(samples)*2/3:] {
			peakLate = max(peakLate, s.rss)
		}
		growth = float64(peakLate-base) / float64(base)
		flat = growth < 0.10
		fmt.Printf("RSS growth from t=%s to the peak of the last third: %+.1f %%\n\n", samples[min(2, len(samples)-1)].at, growth*100)
	}
	ok := res.socketErrors() == 0 && len(bad) == 0 && issueFailed.Load() == 0 && after == 200 && flat
	fmt.Printf("soak %s: socket errors %d, unexpected answers %d kinds, token failures %d, token valid after: %v, memory flat (<10 %% growth): %v → %s\n\n",
		c.soakVariant, res.socketErrors(), len(bad), issueFailed.Load(), after == 200, flat, verdict(ok))
	if !ok {
		return errors.New("soak failed")
	}
	return nil
}

// runReload reloads the config every second under load, outergate (memory
// store) and stock Caddy in alternating rows.
func runReload(e *env) error {
	c := e.cfg
	fmt.Printf("# Reload every %s under load: %d connections, %d rounds × %s per variant\n\nmachine: %s\n\n",
		c.reloadEvery, c.reloadConns, c.reloadRounds, c.reloadDur, machine())
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	names := []string{"stock", "memory"}
	caddys := map[string]*caddy{}
	tokens := map[string]string{}
	for _, v := range names {
		cd, tok, err := e.startVariant(v, up, nil)
		if err != nil {
			return err
		}
		caddys[v], tokens[v] = cd, tok
	}
	type row struct {
		round           int
		variant         string
		res             wrkResult
		reloads, failed int
		firstErr        error
		after           int
		reloadTime      time.Duration // total time the reloads took
	}
	var rows []row
	for r := 0; r < c.reloadRounds; r++ {
		for i := range names {
			v := names[(r+i)%len(names)]
			cd := caddys[v]
			done := make(chan struct{})
			var reloads, failed int
			var firstErr error
			var reloadTime time.Duration
			go func() {
				defer close(done)
				t := time.NewTicker(c.reloadEvery)
				defer t.Stop()
				end := time.After(c.reloadDur - c.reloadEvery/2)
				for {
					select {
					case <-end:
						return
					case <-t.C:
						t0 := time.Now()
						err := cd.reload()
						reloadTime += time.Since(t0)
						if err != nil {
							failed++
							if firstErr == nil {
								firstErr = err
							}
						} else {
							reloads++
						}
					}
				}
			}()
			res, err := wrkRun{url: cd.url(devicePath), threads: c.threads, conns: c.reloadConns, duration: c.reloadDur,
				timeout: c.timeout, script: "classify", headers: []string{"Authorization: Bearer " + tokens[v]}}.run()
			<-done
			if err != nil {
				return err
			}
			// The token issued before the reloads still works.
			after, _, _ := get(cd.url(devicePath), tokens[v])
			rows = append(rows, row{r + 1, v, res, reloads, failed, firstErr, after, reloadTime})
			fmt.Fprintf(os.Stderr, "reload round %d %-7s %d reloads, %d requests, socket errors %d, answers %s\n",
				r+1, v, reloads, res.Requests, res.socketErrors(), res.countsString())
		}
	}
	fmt.Println("| round | variant | reloads (failed) | mean reload ms | requests | req/s | socket errors (connect/read/write/timeout) | answers | token valid after |")
	fmt.Println("|---:|---|---:|---:|---:|---:|---|---|---|")
	sock := map[string]int64{}
	ok := true
	for _, r := range rows {
		meanReload := 0.0
		if n := r.reloads + r.failed; n > 0 {
			meanReload = float64(r.reloadTime.Microseconds()) / float64(n)
		}
		fmt.Printf("| %d | %s | %d (%d) | %s | %d | %s | %d (%d/%d/%d/%d) | %s | %v |\n", r.round, r.variant, r.reloads, r.failed,
			ms(meanReload), r.res.Requests, f0(r.res.rps()), r.res.socketErrors(), r.res.Connect, r.res.Read, r.res.Write, r.res.Timeout,
			r.res.countsString(), r.after == 200)
		sock[r.variant] += r.res.socketErrors()
		if r.variant == "memory" {
			ok = ok && len(unexpected(r.res, "200")) == 0 && r.after == 200 && r.failed == 0
		}
		if r.firstErr != nil {
			fmt.Fprintln(os.Stderr, "reload error:", r.firstErr)
		}
	}
	fmt.Printf("\nlost connections (wrk socket errors), all rounds: outergate %d, stock %d\n", sock["memory"], sock["stock"])
	ok = ok && sock["memory"] <= sock["stock"]
	fmt.Printf("reload: every outergate answer 200 with the pre-issued token, token valid after, no more lost connections than stock → %s\n\n", verdict(ok))
	if !ok {
		return errors.New("reload run failed")
	}
	return nil
}

// runFaults kills and restarts the upstream, then Redis, during load.
func runFaults(e *env) error {
	c := e.cfg
	fmt.Printf("# Faults under load: %d connections, %s per run, killed at %s, restarted at %s\n\nmachine: %s\n\n",
		c.faultConns, c.faultDur, c.faultDur/4, c.faultDur/2, machine())
	up, err := startUpstream(e.upBin, e.dir)
	if err != nil {
		return err
	}
	redis, err := startRedis(e.dir, true)
	if err != nil {
		return err
	}
	mem, memTok, err := e.startVariant("memory", up, nil)
	if err != nil {
		return err
	}
	red, redTok, err := e.startVariant("redis", up, redis)
	if err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // the token reaches Redis's append-only file (fsync every second)

	fmt.Println("| fault | store | requests | socket errors (connect/read/write/timeout) | answers | allowed | unexpected | recovery after restart | token valid after | verdict |")
	fmt.Println("|---|---|---:|---|---|---|---|---:|---|---|")
	ok1, err := faultRun(c, "upstream killed", "memory", mem, memTok, up.proc, up.wait, "502:23090")
	if err != nil {
		return err
	}
	ok2, err := faultRun(c, "Redis killed", "redis", red, redTok, redis.proc, redis.wait, "503:23090")
	if err != nil {
		return err
	}
	fmt.Println()
	if !ok1 || !ok2 {
		return errors.New("fault run failed")
	}
	return nil
}

// faultRun loads cd, kills victim at a quarter of the run, restarts it at
// half, and checks that every answer was a 200 or the allowed error
// envelope, that no connection was lost, and how soon a request succeeded
// again after the restart.
func faultRun(c config, fault, store string, cd *caddy, token string, victim *proc, ready func() error, allowed string) (bool, error) {
	type outcome struct {
		res wrkResult
		err error
	}
	resc := make(chan outcome, 1)
	go func() {
		res, err := wrkRun{url: cd.url(devicePath), threads: c.threads, conns: c.faultConns, duration: c.faultDur,
			timeout: c.timeout, script: "classify", headers: []string{"Authorization: Bearer " + token}}.run()
		resc <- outcome{res, err}
	}()
	time.Sleep(c.faultDur / 4)
	victim.kill()
	time.Sleep(c.faultDur/2 - c.faultDur/4)
	restarted := time.Now()
	if err := victim.start(); err != nil {
		return false, err
	}
	if err := ready(); err != nil {
		return false, err
	}
	// Recovery: the first 200 through Caddy after the restart.
	recovery := time.Duration(-1)
	for time.Since(restarted) < c.faultDur/2 {
		if status, _, err := get(cd.url(devicePath), token); err == nil && status == 200 {
			recovery = time.Since(restarted)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := <-resc
	if out.err != nil {
		return false, out.err
	}
	after, _, _ := get(cd.url(devicePath), token)
	bad := unexpected(out.res, "200", allowed)
	ok := out.res.socketErrors() == 0 && len(bad) == 0 && recovery >= 0 && after == 200 && out.res.Counts[allowed] > 0
	rec := "none"
	if recovery >= 0 {
		rec = recovery.Round(time.Millisecond).String()
	}
	res := out.res
	fmt.Printf("| %s | %s | %d | %d (%d/%d/%d/%d) | %s | 200, %s | %v | %s | %v | %s |\n", fault, store, res.Requests,
		res.socketErrors(), res.Connect, res.Read, res.Write, res.Timeout, res.countsString(), allowed, fmtMap(bad), rec,
		after == 200, verdict(ok))
	return ok, nil
}

func fmtMap(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, " ")
}

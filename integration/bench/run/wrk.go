package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed lua/*.lua
var luaFS embed.FS

// wrkRun is one bounded wrk invocation against 127.0.0.1.
type wrkRun struct {
	url      string
	threads  int
	conns    int
	duration time.Duration
	timeout  time.Duration // per request; wrk counts a slower answer as a timeout
	script   string        // "" (report only), "classify" or "token"
	args     []string      // script arguments
	headers  []string      // "Name: value"
}

// wrkResult is what report.lua prints.
type wrkResult struct {
	Requests   int64            `json:"requests"`
	DurationUS int64            `json:"duration_us"`
	Bytes      int64            `json:"bytes"`
	Connect    int64            `json:"connect"`
	Read       int64            `json:"read"`
	Write      int64            `json:"write"`
	Status     int64            `json:"status"` // answers that were not 2xx/3xx
	Timeout    int64            `json:"timeout"`
	P50        float64          `json:"p50_us"`
	P90        float64          `json:"p90_us"`
	P99        float64          `json:"p99_us"`
	Max        float64          `json:"max_us"`
	Mean       float64          `json:"mean_us"`
	Counts     map[string]int64 `json:"counts"`

	cpu float64 // seconds of CPU wrk itself used
}

// rps is requests per second over wrk's own measured duration.
func (r wrkResult) rps() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// goodRPS counts only the 2xx/3xx answers.
func (r wrkResult) goodRPS() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests-r.Status) / (float64(r.DurationUS) / 1e6)
}

// socketErrors are requests that got no answer at all: wrk's connect, read,
// write and timeout errors.
func (r wrkResult) socketErrors() int64 {
	return r.Connect + r.Read + r.Write + r.Timeout
}

// countsString lists the classified answers, sorted.
func (r wrkResult) countsString() string {
	keys := make([]string, 0, len(r.Counts))
	for k := range r.Counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatInt(r.Counts[k], 10)
	}
	return strings.Join(parts, " ")
}

// wrkPath is the wrk binary; set by main.
var wrkPath = "wrk"

// scriptDir holds the assembled Lua scripts; set by main.
var scriptDir string

// writeScripts assembles report.lua + each script into dir.
func writeScripts(dir string) error {
	report, err := luaFS.ReadFile("lua/report.lua")
	if err != nil {
		return err
	}
	for _, name := range []string{"classify", "token"} {
		body, err := luaFS.ReadFile("lua/" + name + ".lua")
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".lua"), append(append(append([]byte(nil), report...), '\n'), body...), 0o600); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.lua"), report, 0o600)
}

// run starts wrk and returns its parsed report. wrk stops by itself after
// duration; the context kills it 30 s later at the latest.
func (w wrkRun) run() (wrkResult, error) {
	var res wrkResult
	if !strings.HasPrefix(w.url, "http://127.0.0.1:") {
		return res, fmt.Errorf("wrk: refusing a target outside 127.0.0.1: %s", w.url)
	}
	script := w.script
	if script == "" {
		script = "report"
	}
	args := []string{
		"-t", strconv.Itoa(w.threads), "-c", strconv.Itoa(w.conns),
		"-d", strconv.Itoa(int(w.duration/time.Second)) + "s",
		"--timeout", strconv.Itoa(int(w.timeout/time.Second)) + "s",
		"-s", filepath.Join(scriptDir, script+".lua"),
	}
	for _, h := range w.headers {
		args = append(args, "-H", h)
	}
	args = append(args, w.url)
	if len(w.args) > 0 {
		args = append(append(args, "--"), w.args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, wrkPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("wrk: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	res.cpu = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	for _, line := range strings.Split(stdout.String(), "\n") {
		if raw, ok := strings.CutPrefix(line, "WRKJSON "); ok {
			cpu := res.cpu
			if err := json.Unmarshal([]byte(raw), &res); err != nil {
				return res, fmt.Errorf("wrk report %q: %w", raw, err)
			}
			res.cpu = cpu
			return res, nil
		}
	}
	return res, errors.New("wrk printed no report:\n" + stdout.String() + stderr.String())
}

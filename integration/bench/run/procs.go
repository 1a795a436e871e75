package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clkTck is the kernel's clock tick (USER_HZ) in which /proc/<pid>/stat
// counts CPU time; 100 on every Linux this runs on, checked with getconf.
var clkTck = func() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}()

// proc is a child process the driver started; only these are ever
// signalled, by pid.
type proc struct {
	name string
	argv []string
	env  []string
	dir  string
	log  string // file receiving stdout and stderr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// startProc starts argv with output appended to logPath and registers it for
// stopAll.
func startProc(name, logPath, dir string, env []string, argv ...string) (*proc, error) {
	p := &proc{name: name, argv: argv, env: env, dir: dir, log: logPath}
	if err := p.start(); err != nil {
		return nil, err
	}
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), p.env...)
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	return nil
}

// pid is the running process's id, 0 when it is not running.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.signalAndWait(syscall.SIGKILL, 0)
}

// stop sends SIGTERM, then SIGKILL after 5 s.
func (p *proc) stop() {
	p.signalAndWait(syscall.SIGTERM, 5*time.Second)
}

func (p *proc) signalAndWait(sig syscall.Signal, grace time.Duration) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT)
	_ = cmd.Process.Signal(sig)
	if grace == 0 {
		<-done
		return
	}
	select {
	case <-done:
	case <-time.After(grace):
		_ = cmd.Process.Kill()
		<-done
	}
}

// restart starts the same command again.
func (p *proc) restart() error {
	p.kill()
	return p.start()
}

// stopAll stops every process the driver started, newest first.
func stopAll() {
	procsMu.Lock()
	list := append([]*proc(nil), procs...)
	procsMu.Unlock()
	for i := len(list) - 1; i >= 0; i-- {
		list[i].stop()
	}
}

// cpuSeconds is the user+system CPU time the process has used so far, from
// /proc/<pid>/stat (fields 14 and 15); 0 when it is not running.
func (p *proc) cpuSeconds() float64 {
	pid := p.pid()
	if pid == 0 {
		return 0
	}
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it follow ") ".
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[0] is field 3 (state); utime is field 14, stime field 15.
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / clkTck
}

// systemBusySeconds is the CPU time the whole machine spent outside idle
// and iowait so far, summed over all CPUs (the "cpu" line of /proc/stat).
func systemBusySeconds() float64 {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	fields := strings.Fields(line)
	busy := 0.0
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		v, _ := strconv.ParseFloat(f, 64)
		busy += v
	}
	return busy / clkTck
}

// rssBytes is the process's resident set size, from /proc/<pid>/status.
func (p *proc) rssBytes() int64 {
	pid := p.pid()
	if pid == 0 {
		return 0
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check every 20 ms until it succeeds or timeout passes.
func waitFor(what string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %w", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpClient talks to the processes the driver runs; it never follows
// redirects and never leaves 127.0.0.1 (every URL is built from a port).
var httpClient = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// upstream is the benchmark upstream (device info + forward_auth check).
type upstream struct {
	*proc
	port int
}

func startUpstream(bin, dir string) (*upstream, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := startProc("upstream", filepath.Join(dir, "upstream.log"), dir, nil,
		bin, "-listen", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	u := &upstream{proc: p, port: port}
	return u, u.wait()
}

// wait returns once the upstream answers.
func (u *upstream) wait() error {
	return waitFor("upstream", 10*time.Second, func() error {
		resp, err := httpClient.Get(u.url("/outer/device/info/?deviceid=x"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

func (u *upstream) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(u.port) + path
}

// issue gets a token from the forward_auth service.
func (u *upstream) issue() (string, error) {
	resp, err := httpClient.Post(u.url("/issue?client=bench"), "text/plain", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("upstream /issue: %d %v", resp.StatusCode, err)
	}
	return string(b), nil
}

// redisServer is a redis-server on a free loopback port.
type redisServer struct {
	*proc
	port int
}

// startRedis starts redis-server; with aof, writes are appended to a log
// synced every second, so a killed server comes back with its data, as a
// production one would.
func startRedis(dir string, aof bool) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rdir := filepath.Join(dir, "redis-"+strconv.Itoa(port))
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return nil, err
	}
	args := []string{"redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--dir", rdir, "--loglevel", "warning"}
	if aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	p, err := startProc("redis", filepath.Join(dir, "redis.log"), rdir, nil, args...)
	if err != nil {
		return nil, err
	}
	r := &redisServer{proc: p, port: port}
	return r, r.wait()
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// wait returns once the server answers PING with PONG (not LOADING).
func (r *redisServer) wait() error {
	return waitFor("redis", 20*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", r.addr(), time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(time.Second))
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return errors.New(strings.TrimSpace(line))
		}
		return nil
	})
}

// caddy is one Caddy (outergate binary) with its own Caddyfile and admin
// endpoint.
type caddy struct {
	*proc
	name      string
	adminPort int
	port      int // the site's port
	config    string
	body      string // the site block
}

// startCaddy writes the global block plus body to a Caddyfile and runs it.
func startCaddy(bin, dir, name string, port int, body string) (*caddy, error) {
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cdir := filepath.Join(dir, "caddy-"+name)
	for _, sub := range []string{"home", "data", "config"} {
		if err := os.MkdirAll(filepath.Join(cdir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	c := &caddy{name: name, adminPort: admin, port: port, config: filepath.Join(cdir, "Caddyfile"), body: body}
	if err := os.WriteFile(c.config, []byte(c.caddyfile()), 0o600); err != nil {
		return nil, err
	}
	env := []string{"HOME=" + filepath.Join(cdir, "home"), "XDG_DATA_HOME=" + filepath.Join(cdir, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(cdir, "config")}
	p, err := startProc("caddy-"+name, filepath.Join(cdir, "caddy.log"), cdir, env,
		bin, "run", "--config", c.config, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	c.proc = p
	err = waitFor("caddy "+name, 30*time.Second, func() error {
		if p.exited() {
			return errors.New("exited; see " + p.log)
		}
		resp, err := httpClient.Get(c.adminURL("/config/"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("admin answered %d", resp.StatusCode)
		}
		return nil
	})
	return c, err
}

// caddyfile is the whole Caddyfile: global options, then the site.
func (c *caddy) caddyfile() string {
	return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tskip_install_trust\n\tauto_https off\n}\n\n%s\n",
		c.adminPort, strings.TrimSpace(c.body))
}

func (c *caddy) adminURL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.adminPort) + path
}

func (c *caddy) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.port) + path
}

// reload loads the same Caddyfile again through the admin API, forced, as
// `caddy reload --force` does (the admin endpoint adapts text/caddyfile).
func (c *caddy) reload() error {
	req, err := http.NewRequest(http.MethodPost, c.adminURL("/load"), strings.NewReader(c.caddyfile()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	req.Header.Set("Cache-Control", "must-revalidate")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("reload %s: %d %s", c.name, resp.StatusCode, b)
	}
	return nil
}

// heapAlloc is the Go heap in use (memstats.HeapAlloc from the admin
// endpoint's /debug/vars).
func (c *caddy) heapAlloc() int64 {
	resp, err := httpClient.Get(c.adminURL("/debug/vars"))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var vars struct {
		Memstats struct {
			HeapAlloc int64 `json:"HeapAlloc"`
		} `json:"memstats"`
	}
	if json.NewDecoder(resp.Body).Decode(&vars) != nil {
		return 0
	}
	return vars.Memstats.HeapAlloc
}

// token obtains a token from an outergate site with form credentials.
func (c *caddy) token(clientID, secret string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
	resp, err := httpClient.Post(c.url("/outer/token/"), "application/x-www-form-urlencoded",
		strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var env struct {
		Meta struct {
			Code int `json:"code"`
		} `json:"meta"`
		Data struct {
			AccessToken string `json:"access_token"`
		} `json:"data"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &env); err != nil || resp.StatusCode != http.StatusOK || env.Data.AccessToken == "" {
		return "", fmt.Errorf("token from %s: %d %s", c.name, resp.StatusCode, bytes.TrimSpace(raw))
	}
	return env.Data.AccessToken, nil
}

// get sends one request, with a Bearer token unless token is empty, and
// returns the status and body.
func get(u, token string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

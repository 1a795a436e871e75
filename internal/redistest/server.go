// Package redistest starts real Redis topologies for tests: a single
// redis-server, a 3-master/3-replica Redis Cluster and a
// 1-master/2-replica/3-sentinel setup, each on free loopback ports, every
// process stopped by its PID when the test ends. Both the module's unit
// tests and the end-to-end tests use it.
package redistest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Require returns the path of redis-server. Without it the test is
// skipped, with the command that installs it, unless
// OUTERGATE_REQUIRE_REDIS=1 (set by .ci/run), where it fails.
func Require(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
		t.Fatalf("redis-server not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
	}
	t.Skip("redis-server not found: install it (Debian: apt-get install redis-server redis-sentinel redis-tools) to run the Redis tests")
	return ""
}

// requireCLI is Require for redis-cli, which creates clusters.
func requireCLI(t testing.TB) {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-cli not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-cli not found: install it (Debian: apt-get install redis-tools)")
	}
}

// handedOut holds every port FreePort returned in this test process: the
// kernel may give a port it just freed to the next bind, and two servers
// of one test (an admin endpoint and a site, two Redis nodes) must not be
// handed the same one.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned.
func FreePort(t testing.TB) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !handedOut.ports[p] {
			handedOut.ports[p] = true
			return p
		}
	}
	t.Fatal("redistest: no port that was not handed out already")
	return 0
}

// freePortPair returns a port p such that p and p+10000 (a Cluster node's
// bus port) were both free a moment ago.
func freePortPair(t testing.TB) int {
	t.Helper()
	for range 200 {
		p := FreePort(t)
		if p+10000 > 65535 {
			p -= 30000
		}
		ok := true
		for _, q := range []int{p, p + 10000} {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("redistest: no free port pair for a cluster node")
	return 0
}

// Server is one real redis-server (or sentinel) process on a loopback
// port, owned by one test. Stop and Start keep the port, so clients
// configured with its address recover.
type Server struct {
	t    testing.TB
	port int
	dir  string
	args []string // extra arguments after the common ones
	conf string   // config file to start with, if any (sentinels)
	cmd  *exec.Cmd
	done chan struct{}
}

// Start starts a redis-server without persistence on a free port and
// stops it at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	Require(t)
	s := &Server{t: t, port: FreePort(t), dir: t.TempDir()}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL, database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// PID is the process id, 0 when stopped.
func (s *Server) PID() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Start (re)starts the server, empty unless it keeps a cluster or
// sentinel config, and waits until it answers PING.
func (s *Server) Start() {
	s.t.Helper()
	_ = os.Remove(filepath.Join(s.dir, "dump.rdb")) // start empty, even after Dump
	var args []string
	if s.conf != "" {
		args = append(args, s.conf)
	}
	args = append(args, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--dir", s.dir, "--loglevel", "warning")
	if s.conf == "" {
		args = append(args, "--save", "", "--appendonly", "no", "--rdbcompression", "no", "--dbfilename", "dump.rdb")
	}
	args = append(args, s.args...)
	s.cmd = exec.Command("redis-server", args...)
	s.cmd.Stdout, s.cmd.Stderr = os.Stderr, os.Stderr
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := s.Command("PING"); err == nil && reply == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer PING", s.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL, as kill -9 does) and waits for it to
// exit; without persistence its data is gone.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT)
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing
// answers — the hung-Redis case that a refused connection hides.
func (s *Server) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

// Command sends one command and returns the first reply line, as Redis
// wrote it ("+PONG", ":3", "$12", ...).
func (s *Server) Command(args ...string) (string, error) {
	lines, err := s.command(1, args...)
	if err != nil {
		return "", err
	}
	return lines[0], nil
}

// Bulk sends one command whose reply is a bulk string (INFO, CLUSTER
// NODES) and returns that string.
func (s *Server) Bulk(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(encode(args)); err != nil {
		return "", err
	}
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 3 || line[0] != '$' {
		return "", fmt.Errorf("redistest: %v: reply %q", args, line)
	}
	n, err := strconv.Atoi(line[1 : len(line)-2])
	if err != nil || n < 0 {
		return "", fmt.Errorf("redistest: %v: reply %q", args, line)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(r, buf); err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func (s *Server) command(n int, args ...string) ([]string, error) {
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(encode(args)); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	out := make([]string, 0, n)
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		out = append(out, line[:len(line)-2])
	}
	return out, nil
}

func encode(args []string) []byte {
	cmd := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(cmd)
}

// Dump saves the dataset and returns the RDB file's bytes: everything
// Redis holds at rest.
func (s *Server) Dump() []byte {
	s.t.Helper()
	if reply, err := s.Command("SAVE"); err != nil || reply != "+OK" {
		s.t.Fatalf("redis SAVE: %q %v", reply, err)
	}
	data, err := os.ReadFile(filepath.Join(s.dir, "dump.rdb"))
	if err != nil {
		s.t.Fatalf("reading dump: %v", err)
	}
	return data
}

// Info returns one field of INFO <section>, "" if absent or on error.
func (s *Server) Info(section, field string) string {
	text, err := s.Bulk("INFO", section)
	if err != nil {
		return ""
	}
	return infoField(text, field)
}

func infoField(text, field string) string {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if len(line) > len(field) && line[:len(field)] == field && line[len(field)] == ':' {
			return strings.TrimRight(line[len(field)+1:], "\r")
		}
	}
	return ""
}

// StartReplica starts a redis-server replicating master on a free port,
// waits until its link is up, and stops it at the end of the test.
func StartReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	r := &Server{t: t, port: FreePort(t), dir: t.TempDir(), args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}}
	r.Start()
	t.Cleanup(r.Stop)
	waitFor(t, 10*time.Second, "replica link up", func() bool {
		return r.Info("replication", "master_link_status") == "up"
	})
	return r
}

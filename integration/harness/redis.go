package harness

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Redis is a real redis-server on a free loopback port, owned by one test.
// Stop and Start keep the port, so clients configured with Addr recover.
type Redis struct {
	t    testing.TB
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// RequireRedisServer returns the path of redis-server. Without it the test
// is skipped, with the command that installs it, unless
// OUTERGATE_REQUIRE_REDIS=1 (set by .ci/run), where it fails.
func RequireRedisServer(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err == nil {
		return path
	}
	if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
		t.Fatalf("redis-server not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
	}
	t.Skip("redis-server not found: install it (Debian: apt-get install redis-server) to run the cluster tests")
	return ""
}

// StartRedis starts a redis-server without persistence on a free port and
// stops it at the end of the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	RequireRedisServer(t)
	r := &Redis{t: t, port: FreePort(t), dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is the server's redis:// URL, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start (re)starts the server, empty, and waits until it answers PING.
func (r *Redis) Start() {
	r.t.Helper()
	_ = os.Remove(filepath.Join(r.dir, "dump.rdb")) // start empty, even after Dump
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--rdbcompression", "no", "--dir", r.dir, "--dbfilename", "dump.rdb", "--loglevel", "warning")
	r.cmd.Stdout, r.cmd.Stderr = os.Stderr, os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if reply, err := r.Command("PING"); err == nil && reply == "+PONG" {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer PING", r.Addr())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server; its data is gone (no persistence).
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGCONT)
	_ = r.cmd.Process.Kill()
	<-r.done
	r.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open, nothing
// answers — the hung-Redis case that a refused connection hides.
func (r *Redis) Pause() { _ = r.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (r *Redis) Resume() { _ = r.cmd.Process.Signal(syscall.SIGCONT) }

// Command sends one inline command and returns the first reply line, as
// Redis wrote it ("+PONG", ":3", "$12", ...).
func (r *Redis) Command(args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", r.Addr(), time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	cmd := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		cmd += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(cmd)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", err
	}
	return line[:len(line)-2], nil
}

// Dump saves the dataset and returns the RDB file's bytes: everything
// Redis holds at rest.
func (r *Redis) Dump() []byte {
	r.t.Helper()
	if reply, err := r.Command("SAVE"); err != nil || reply != "+OK" {
		r.t.Fatalf("redis SAVE: %q %v", reply, err)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "dump.rdb"))
	if err != nil {
		r.t.Fatalf("reading dump: %v", err)
	}
	return data
}

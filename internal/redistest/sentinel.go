package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SentinelMasterName is the name the test sentinels monitor.
const SentinelMasterName = "mymaster"

// SentinelDownAfter is the down-after-milliseconds of test sentinels.
// (Redis's default is 30 s; a shorter one keeps tests short.)
const SentinelDownAfter = 1000 * time.Millisecond

// Sentinel is one Redis master with two replicas, watched by three
// sentinels (quorum 2).
type Sentinel struct {
	t         testing.TB
	Data      []*Server // master first, at start
	Sentinels []*Server
}

// RequireSentinel is Require for Sentinel mode: Debian ships it in the
// redis-sentinel package.
func RequireSentinel(t testing.TB) {
	t.Helper()
	Require(t)
	if _, err := exec.LookPath("redis-sentinel"); err != nil {
		if os.Getenv("OUTERGATE_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-sentinel not found and OUTERGATE_REQUIRE_REDIS=1: %v", err)
		}
		t.Skip("redis-sentinel not found: install it (Debian: apt-get install redis-sentinel)")
	}
}

// StartSentinel starts the master, its two replicas and three sentinels on
// free loopback ports, waits until every sentinel sees both replicas and
// the other sentinels, and stops every process at the end of the test.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	RequireSentinel(t)
	st := &Sentinel{t: t}
	master := Start(t)
	st.Data = append(st.Data, master)
	for range 2 {
		r := &Server{t: t, port: FreePort(t), dir: t.TempDir(), args: []string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}}
		r.Start()
		t.Cleanup(r.Stop)
		st.Data = append(st.Data, r)
	}
	for range 3 {
		s := &Server{t: t, port: FreePort(t), dir: t.TempDir(), args: []string{"--sentinel"}}
		s.conf = filepath.Join(s.dir, "sentinel.conf")
		conf := fmt.Sprintf("sentinel resolve-hostnames no\n"+
			"sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s %[3]d\n"+
			"sentinel failover-timeout %[1]s 10000\n"+
			"sentinel parallel-syncs %[1]s 2\n", SentinelMasterName, master.port, SentinelDownAfter.Milliseconds())
		if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(s.Stop)
		st.Sentinels = append(st.Sentinels, s)
	}
	st.WaitHealthy(30 * time.Second)
	return st
}

// SentinelAddrs are the sentinels' host:port.
func (st *Sentinel) SentinelAddrs() []string {
	out := make([]string, len(st.Sentinels))
	for i, s := range st.Sentinels {
		out[i] = s.Addr()
	}
	return out
}

// MasterAddr is the master's address as the first running sentinel sees
// it, "" on error.
func (st *Sentinel) MasterAddr(s *Server) string {
	lines, err := s.command(5, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMasterName)
	if err != nil || lines[0] != "*2" {
		return ""
	}
	return lines[2] + ":" + lines[4]
}

// Master is the data node every sentinel names as master, nil while they
// disagree.
func (st *Sentinel) Master() *Server {
	addr := ""
	for _, s := range st.Sentinels {
		a := st.MasterAddr(s)
		if a == "" || (addr != "" && a != addr) {
			return nil
		}
		addr = a
	}
	for _, d := range st.Data {
		if d.Addr() == addr {
			return d
		}
	}
	return nil
}

// WaitHealthy waits until every sentinel agrees on a running master that
// has two replicas in sync, and sees the two other sentinels.
func (st *Sentinel) WaitHealthy(timeout time.Duration) *Server {
	st.t.Helper()
	var m *Server
	waitFor(st.t, timeout, "sentinel setup healthy", func() bool {
		m = st.Master()
		if m == nil || m.PID() == 0 || m.Info("replication", "role") != "master" || m.Info("replication", "connected_slaves") != "2" {
			return false
		}
		for _, s := range st.Sentinels {
			line := s.Info("sentinel", "master0")
			if !strings.Contains(line, "status=ok") || !strings.Contains(line, "slaves=2") || !strings.Contains(line, "sentinels=3") {
				return false
			}
		}
		for _, d := range st.Data {
			if d != m && d.Info("replication", "master_link_status") != "up" {
				return false
			}
		}
		return true
	})
	return m
}

// WaitNewMaster waits until a data node other than old says it is a
// master and every sentinel names it, and returns it and when it was first
// seen as master (the promotion).
func (st *Sentinel) WaitNewMaster(old *Server, timeout time.Duration) (*Server, time.Time) {
	st.t.Helper()
	var promoted time.Time
	var m *Server
	waitFor(st.t, timeout, "sentinel promotion", func() bool {
		if promoted.IsZero() {
			for _, d := range st.Data {
				if d != old && d.PID() != 0 && d.Info("replication", "role") == "master" {
					promoted = time.Now()
				}
			}
		}
		m = st.Master()
		return !promoted.IsZero() && m != nil && m != old && m.Info("replication", "role") == "master"
	})
	return m, promoted
}

// Failover asks one sentinel for a planned switchover (SENTINEL FAILOVER).
func (st *Sentinel) Failover() {
	st.t.Helper()
	if reply, err := st.Sentinels[0].Command("SENTINEL", "FAILOVER", SentinelMasterName); err != nil || reply != "+OK" {
		st.t.Fatalf("SENTINEL FAILOVER: %q %v", reply, err)
	}
}

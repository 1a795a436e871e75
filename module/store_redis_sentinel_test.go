package outergate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// TestSentinelWatchEvents feeds Sentinel announcements to the watcher and
// checks the fence, the failover generation, the master and the
// connection epoch after each.
func TestSentinelWatchEvents(t *testing.T) {
	w := newSentinelWatch(&redis.UniversalOptions{MasterName: "mymaster", Addrs: []string{"127.0.0.1:1"}}, zap.NewNop())
	t.Cleanup(w.close)
	w.setMaster("10.0.0.1:6379") // the first master is learned, not a switch
	if w.epoch.Load() != 0 {
		t.Fatal("learning the first master changed the epoch")
	}
	switches := 0
	w.onSwitch = func() { switches++ }
	steps := []struct {
		channel, payload string
		fenced           bool
		genMoves         bool
		master           string
		switches         int
	}{
		{"+try-failover", "master other 10.0.0.9 6379", false, false, "10.0.0.1:6379", 0},
		{"+try-failover", "master mymaster 10.0.0.1 6379", true, true, "10.0.0.1:6379", 0},
		{"+failover-end", "master mymaster 10.0.0.1 6379", false, false, "10.0.0.1:6379", 0},
		{"+try-failover", "master mymaster 10.0.0.1 6379", true, true, "10.0.0.1:6379", 0},
		{"-failover-abort-not-elected", "master mymaster 10.0.0.1 6379", false, false, "10.0.0.1:6379", 0},
		{"+try-failover", "master mymaster 10.0.0.1 6379", true, true, "10.0.0.1:6379", 0},
		{"+switch-master", "other 10.0.0.9 1 10.0.0.8 2", true, false, "10.0.0.1:6379", 0},
		{"+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380", false, true, "10.0.0.2:6380", 1},
		// A repeated announcement (every Sentinel sends one) is no new switch.
		{"+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380", false, true, "10.0.0.2:6380", 1},
		{"+try-failover", "short", false, false, "10.0.0.2:6380", 1},
		{"+switch-master", "mymaster short", false, false, "10.0.0.2:6380", 1},
	}
	for i, st := range steps {
		gen := w.gen.Load()
		w.event(st.channel, st.payload)
		if w.fenced() != st.fenced {
			t.Errorf("step %d (%s %s): fenced = %v, want %v", i, st.channel, st.payload, w.fenced(), st.fenced)
		}
		if (w.gen.Load() != gen) != st.genMoves {
			t.Errorf("step %d (%s %s): generation moved = %v, want %v", i, st.channel, st.payload, w.gen.Load() != gen, st.genMoves)
		}
		if w.masterAddr() != st.master {
			t.Errorf("step %d: master %q, want %q", i, w.masterAddr(), st.master)
		}
		if switches != st.switches {
			t.Errorf("step %d: %d switches, want %d", i, switches, st.switches)
		}
	}
	if w.epoch.Load() != 1 {
		t.Errorf("epoch = %d after one switch, want 1", w.epoch.Load())
	}
	// The fence lapses on its own if its end is never announced.
	w.fenceUntil.Store(time.Now().Add(-time.Millisecond).UnixNano())
	if w.fenced() {
		t.Error("a lapsed fence still fences")
	}
}

// TestSentinelEpochConn shows that a connection dialed before a master
// switch carries nothing after it, with an error go-redis retries on a
// fresh connection.
func TestSentinelEpochConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	w := newSentinelWatch(&redis.UniversalOptions{MasterName: "m", Addrs: []string{"127.0.0.1:1"}, DialTimeout: time.Second}, zap.NewNop())
	t.Cleanup(w.close)
	w.setMaster(ln.Addr().String())
	conn, err := w.dial(context.Background(), "tcp", "ignored:1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatalf("write before the switch: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read before the switch: %q %v", buf, err)
	}
	w.setMaster("127.0.0.1:2")
	if _, err := conn.Write([]byte("ping")); !errors.Is(err, errStaleMaster) {
		t.Errorf("write after the switch: %v, want errStaleMaster", err)
	}
	if _, err := conn.Read(buf); !errors.Is(err, errStaleMaster) {
		t.Errorf("read after the switch: %v, want errStaleMaster", err)
	}
	var ne net.Error
	if !errors.As(errStaleMaster, &ne) || ne.Timeout() {
		t.Error("errStaleMaster must be a net.Error that is not a timeout, which go-redis retries")
	}
}

// TestRedisTopologyError tells errors that may come from a dead node or a
// stale slot map from errors of the command.
func TestRedisTopologyError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{errors.New("ERR wrong number of arguments"), false},
		{errNotReplicated, false},
		{errors.New("MOVED 3999 127.0.0.1:6381"), true},
		{errors.New("ASK 3999 127.0.0.1:6381"), true},
		{errors.New("CLUSTERDOWN The cluster is down"), true},
		{errors.New("READONLY You can't write against a read only replica."), true},
		{errors.New("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}, true},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("wrapped: %w", io.EOF), true},
		{redis.ErrClosed, true},
	} {
		if got := topologyError(tc.err); got != tc.want {
			t.Errorf("topologyError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestOnlineReplicas counts the replicas a master's INFO replication shows
// online and acknowledging.
func TestOnlineReplicas(t *testing.T) {
	for _, tc := range []struct {
		info string
		want int
	}{
		{"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n", 0},
		{"# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
			"slave0:ip=127.0.0.1,port=7001,state=online,offset=1234,lag=0\r\n" +
			"slave1:ip=127.0.0.1,port=7002,state=online,offset=1234,lag=1\r\n" +
			"master_failover_state:no-failover\r\n", 2},
		{"slave0:ip=127.0.0.1,port=7001,state=wait_bgsave,offset=0,lag=0\r\n" +
			"slave1:ip=127.0.0.1,port=7002,state=online,offset=1234,lag=6\r\n", 0},
		{"slave0:ip=127.0.0.1,port=7001,state=online,offset=1234,lag=5\r\n", 1},
		{"role:slave\r\nslave_read_repl_offset:1234\r\nslave_repl_offset:1234\r\n", 0},
		{"slave0:garbage\r\n", 0},
	} {
		if got := onlineReplicas(tc.info); got != tc.want {
			t.Errorf("onlineReplicas(%q) = %d, want %d", tc.info, got, tc.want)
		}
	}
}

package redistest

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterNodeTimeout is the cluster-node-timeout of test clusters: a dead
// master is declared failed after it, and its replica promoted a second or
// two later. (Redis's default is 15 s; a shorter one keeps tests short.)
const ClusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a real Redis Cluster of three masters, each with one
// replica, made by `redis-cli --cluster create --cluster-replicas 1`.
type Cluster struct {
	t     testing.TB
	Nodes []*Server
}

// StartCluster starts six cluster-enabled redis-servers on free loopback
// ports (each with its bus port free too), makes them a cluster, waits
// until it is healthy and every master has its replica in sync, and stops
// every node at the end of the test.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	requireCLI(t)
	c := &Cluster{t: t}
	addrs := make([]string, 0, 6)
	for range 6 {
		s := &Server{t: t, port: freePortPair(t), dir: t.TempDir(), args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
		}}
		s.Start()
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

// Addrs are every node's host:port.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// Masters are the running nodes that say they are masters.
func (c *Cluster) Masters() []*Server {
	var out []*Server
	for _, n := range c.Nodes {
		if n.PID() != 0 && n.Info("replication", "role") == "master" {
			out = append(out, n)
		}
	}
	return out
}

// ReplicaOf is the running node that replicates m, nil if none.
func (c *Cluster) ReplicaOf(m *Server) *Server {
	for _, n := range c.Nodes {
		if n.PID() != 0 && n != m && n.Info("replication", "master_port") == strconv.Itoa(m.port) {
			return n
		}
	}
	return nil
}

// healthy reports whether every running node sees the cluster as ok.
func (c *Cluster) healthy() bool {
	for _, n := range c.Nodes {
		if n.PID() == 0 {
			continue
		}
		info, err := n.Bulk("CLUSTER", "INFO")
		if err != nil || infoField(info, "cluster_state") != "ok" {
			return false
		}
	}
	return true
}

// WaitHealthy waits until every running node sees the cluster as ok and
// every master with a live replica has it in sync.
func (c *Cluster) WaitHealthy(timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, timeout, "cluster healthy", func() bool {
		if !c.healthy() {
			return false
		}
		masters := c.Masters()
		if len(masters) != 3 {
			return false
		}
		for _, n := range c.Nodes {
			if n.PID() == 0 || n.Info("replication", "role") != "slave" {
				continue
			}
			if n.Info("replication", "master_link_status") != "up" {
				return false
			}
		}
		return true
	})
}

// WaitPromoted waits until r is a master and every running node sees the
// cluster as ok, and returns when r was first seen as master (the
// promotion).
func (c *Cluster) WaitPromoted(r *Server, timeout time.Duration) time.Time {
	c.t.Helper()
	var promoted time.Time
	waitFor(c.t, timeout, "replica "+r.Addr()+" promoted", func() bool {
		if promoted.IsZero() && r.Info("replication", "role") == "master" {
			promoted = time.Now()
		}
		return !promoted.IsZero() && c.healthy()
	})
	return promoted
}

// Failover runs CLUSTER FAILOVER on replica r (the planned, coordinated
// switch: the master stops writes until r has caught up).
func (c *Cluster) Failover(r *Server) {
	c.t.Helper()
	if reply, err := r.Command("CLUSTER", "FAILOVER"); err != nil || !strings.HasPrefix(reply, "+OK") {
		c.t.Fatalf("CLUSTER FAILOVER on %s: %q %v", r.Addr(), reply, err)
	}
}

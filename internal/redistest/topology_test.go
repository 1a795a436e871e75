package redistest

import (
	"testing"
	"time"
)

// TestTopologies starts each topology and checks its shape, so that a
// broken harness fails here rather than as a puzzling gateway failure.
func TestTopologies(t *testing.T) {
	t.Run("cluster", func(t *testing.T) {
		c := StartCluster(t)
		if n := len(c.Masters()); n != 3 {
			t.Fatalf("%d masters, want 3", n)
		}
		for _, m := range c.Masters() {
			if c.ReplicaOf(m) == nil {
				t.Errorf("master %s has no replica", m.Addr())
			}
		}
	})
	t.Run("sentinel", func(t *testing.T) {
		st := StartSentinel(t)
		m := st.Master()
		if m != st.Data[0] {
			t.Fatalf("master is %v, want the first data node", m)
		}
		st.Failover()
		if n, _ := st.WaitNewMaster(m, 20*time.Second); n == m {
			t.Fatal("no new master")
		}
	})
}

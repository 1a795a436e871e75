package integration

// Managed clients on a real Redis Cluster (3 masters, 3 replicas) and a
// real Sentinel setup (1 master, 2 replicas, 3 sentinels): the registry's
// keys share a hash slot, and its subscription and writes go where the
// store's do.

import (
	"net/http"
	"strings"
	"testing"

	"github.com/outergate/outergate/internal/redistest"
)

func TestManagedClientsOnRedisTopologies(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T) string
	}{
		{"cluster", func(t *testing.T) string {
			c := redistest.StartCluster(t)
			return "\t\tstore redis {\n\t\t\taddress " + strings.Join(c.Addrs(), " ") + "\n\t\t}\n"
		}},
		{"sentinel", func(t *testing.T) string {
			st := redistest.StartSentinel(t)
			return "\t\tstore redis {\n\t\t\taddress " + strings.Join(st.SentinelAddrs(), " ") +
				"\n\t\t\tmaster_name " + redistest.SentinelMasterName + "\n\t\t}\n"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			extra := tc.store(t) + "\t\tthrottle off\n"
			a := startGateway(t, gatewayConfig{Extra: extra})
			b := startGateway(t, gatewayConfig{Extra: extra})
			managedLifecycle(t, a, b)
		})
	}
}

// managedLifecycle creates a client on a and checks it on b, narrows its
// scope on b and checks a live token on a, then deletes it on a and checks
// that its tokens are refused on both, each within managedBound.
func managedLifecycle(t *testing.T, a, b *gateway) {
	t.Helper()
	const id = "acme-topo"
	secret := managedCreate(t, a, `{"id":"acme-topo","scope":"read write"}`, b)
	if _, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(b, id, secret); return s == http.StatusOK }); !ok {
		t.Fatalf("a client created on A gets no token from B within %s", managedBound)
	}
	tok := opsIssueScoped(b, id, secret, "read write")
	a.remember(tok)
	if s, c := deviceStatus(a, tok, true); s != http.StatusOK {
		t.Fatalf("write with B's token on A: %d %d", s, c)
	}
	if s, _, raw := managedAdmin(t, b, http.MethodPatch, "/outergate/clients/"+id, `{"scope":"read"}`); s != http.StatusOK {
		t.Fatalf("patch on B: %d %s", s, raw)
	}
	if _, ok := waitUntil(managedBound, func() bool { s, _ := deviceStatus(a, tok, true); return s == http.StatusForbidden }); !ok {
		t.Errorf("A still lets the live token write %s after B narrowed its client", managedBound)
	}
	if s, _, raw := managedAdmin(t, a, http.MethodDelete, "/outergate/clients/"+id, ""); s != http.StatusOK {
		t.Fatalf("delete on A: %d %s", s, raw)
	}
	for _, g := range []*gateway{a, b} {
		if _, ok := waitUntil(managedBound, func() bool { s, _ := deviceStatus(g, tok, false); return s == http.StatusUnauthorized }); !ok {
			t.Errorf("%s still accepts a token of the deleted client %s after the delete", g.base, managedBound)
		}
		if _, ok := waitUntil(managedBound, func() bool { s, _ := tokenStatus(g, id, secret); return s == http.StatusUnauthorized }); !ok {
			t.Errorf("%s still authenticates the deleted client", g.base)
		}
	}
}

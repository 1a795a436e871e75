package outergate

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outergate/outergate/internal/redistest"
)

// TestRedisClients runs two instances' client registries on one real
// Redis: a change on one is seen by the other, and every write is a
// compare-and-swap, so a change made from a stale copy is refused.
func TestRedisClients(t *testing.T) {
	rd := redistest.Start(t)
	ctx := context.Background()
	open := func(n int) *redisClients {
		c, err := newRedisClients(redisTestInstance(t, rd, n, time.Second), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Destruct() })
		return c
	}
	a, b := open(1), open(2)
	seen := func(c *redisClients, cond func(*managedClient) bool) bool {
		_, ok := waitFor(2*time.Second, func() bool { return cond(c.Lookup("acme")) })
		return ok
	}

	rec := &managedClient{Client: Client{ID: "acme", SecretHashes: []string{secretHash("s")}, Scope: "read"}, CreatedAt: now()}
	if err := a.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if a.Lookup("acme") == nil {
		t.Error("the writer does not see its own change at once")
	}
	if !seen(b, func(r *managedClient) bool { return r != nil && r.Scope == "read" }) {
		t.Fatal("the other instance does not see the new client")
	}
	if err := b.Create(ctx, rec); !errors.Is(err, ErrClientExists) {
		t.Errorf("Create of an existing id: %v, want ErrClientExists", err)
	}

	stale := b.Lookup("acme")
	cur, err := a.Get(ctx, "acme")
	if err != nil || cur == nil {
		t.Fatalf("Get: %v %v", cur, err)
	}
	next := *cur
	next.Scope, next.raw = "read write", nil
	if err := a.Replace(ctx, cur, &next); err != nil {
		t.Fatal(err)
	}
	other := *stale
	other.Scope, other.raw = "groups", nil
	if err := b.Replace(ctx, stale, &other); !errors.Is(err, ErrClientChanged) {
		t.Errorf("Replace from a stale copy: %v, want ErrClientChanged", err)
	}
	if !seen(b, func(r *managedClient) bool { return r != nil && r.Scope == "read write" }) {
		t.Fatal("the other instance does not see the change")
	}
	kept := b.Lookup("acme")
	if err := b.poll(ctx); err != nil || b.Lookup("acme") != kept {
		t.Errorf("a poll with nothing changed replaced the record (%v)", err)
	}

	if err := a.Delete(ctx, a.Lookup("acme")); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, &next); !errors.Is(err, ErrClientNotFound) {
		t.Errorf("Delete of a deleted client: %v, want ErrClientNotFound", err)
	}
	if !seen(b, func(r *managedClient) bool { return r == nil }) {
		t.Fatal("the other instance still has the deleted client")
	}
	if got := a.List(); len(got) != 0 {
		t.Errorf("List after the delete: %d clients", len(got))
	}
}

// waitFor polls cond every 10 ms until it holds or bound passes.
func waitFor(bound time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for !cond() {
		if time.Since(start) > bound {
			return time.Since(start), false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start), true
}

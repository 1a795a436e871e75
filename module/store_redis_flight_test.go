package outergate

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outergate/outergate/internal/redistest"
)

// slowGets is a go-redis hook that counts the GETs a client sends and,
// while delay is set, holds each GET's answer back that long (after Redis
// answered), so that concurrent loads overlap.
type slowGets struct {
	n     atomic.Int64
	delay atomic.Int64 // ns
}

func (h *slowGets) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *slowGets) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *slowGets) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "get" {
			h.n.Add(1)
			time.Sleep(time.Duration(h.delay.Load()))
		}
		return err
	}
}

// TestRedisLoadCoalescesMisses: requests presenting one token that is not
// in the local cache share one GET instead of sending one each (the herd
// every cache_ttl, when a hot token's cached validation expires), and all
// of them get the record.
func TestRedisLoadCoalescesMisses(t *testing.T) {
	rd := redistest.Start(t)
	s := redisTestInstance(t, rd, 0, time.Minute)
	redisTestWaitListening(t, s.conn)
	key, rec := redisTestSave(t, s, "coalesce", time.Hour)
	hook := &slowGets{}
	s.conn.client.AddHook(hook)
	hook.delay.Store(int64(200 * time.Millisecond))

	const n = 64
	start := make(chan struct{})
	var found atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			got, ok, err := s.Load(context.Background(), key)
			if err == nil && ok && got.ClientID == rec.ClientID {
				found.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if found.Load() != n {
		t.Fatalf("%d of %d loads found the token", found.Load(), n)
	}
	if gets := hook.n.Load(); gets > n/4 {
		t.Fatalf("%d GETs for %d concurrent loads of one uncached token, want them shared", gets, n)
	} else {
		t.Logf("%d GET(s) for %d concurrent loads", gets, n)
	}
	if !redisTestCached(s.conn, key) {
		t.Fatal("the shared read did not fill the cache")
	}
}

// TestRedisLoadNoSharedReadAcrossARevocation: a load that starts after a
// revocation's invalidation arrived does not take the answer of a read
// that started before it: it sees the revocation, as it would without the
// coalescing.
func TestRedisLoadNoSharedReadAcrossARevocation(t *testing.T) {
	rd := redistest.Start(t)
	a := redisTestInstance(t, rd, 0, time.Minute)
	b := redisTestInstance(t, rd, 1, time.Minute)
	redisTestWaitListening(t, a.conn)
	redisTestWaitListening(t, b.conn)
	key, _ := redisTestSave(t, a, "revoked-meanwhile", time.Hour)
	hook := &slowGets{}
	a.conn.client.AddHook(hook)
	hook.delay.Store(int64(time.Second))

	// A read of the live token, held back in flight.
	early := make(chan bool, 1)
	go func() {
		_, ok, _ := a.Load(context.Background(), key)
		early <- ok
	}()
	deadline := time.Now().Add(5 * time.Second)
	for hook.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first load sent no GET")
		}
		time.Sleep(time.Millisecond)
	}
	// Revoked on the other instance; wait for the invalidation here.
	gen := a.conn.gen.Load()
	if _, err := b.RevokeToken(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	for a.conn.gen.Load() == gen {
		if time.Now().After(deadline) {
			t.Fatal("the invalidation did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	hook.delay.Store(0)
	if _, ok, err := a.Load(context.Background(), key); err != nil || ok {
		t.Fatalf("a load after the invalidation: found %v, error %v; want the token refused", ok, err)
	}
	<-early
	if redisTestCached(a.conn, key) {
		t.Fatal("the read from before the revocation was cached")
	}
}

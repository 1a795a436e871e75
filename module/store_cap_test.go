package outergate

import (
	"context"
	"testing"
	"time"

	"github.com/outergate/outergate/internal/redistest"
)

// testRevokedWithinCap runs issue 12 item 11 against a store: whatever a
// client does (issue, revoke, issue...), the records kept for it, live
// tokens and tombstones together, stay within max_tokens_per_client, and
// tombstones go before live tokens. records counts what the store holds.
func testRevokedWithinCap(t *testing.T, s Store, records func() int) {
	ctx := context.Background()
	const limit = 5
	client := "capped-" + t.Name()
	var live []TokenHash
	for i := range 40 {
		_, key := redisTestToken(t)
		if err := s.Save(ctx, key, liveRecord(client, time.Hour), limit); err != nil {
			t.Fatalf("Save %d: %v", i, err)
		}
		if i%10 == 0 {
			live = append(live, key) // kept live: the cap must evict tombstones first
			continue
		}
		if ok, err := s.RevokeToken(ctx, key); err != nil || !ok {
			t.Fatalf("RevokeToken %d = %v, %v", i, ok, err)
		}
		if n := records(); n > limit {
			t.Fatalf("after %d issue+revoke cycles the store keeps %d records, want <= %d", i+1, n, limit)
		}
	}
	// 4 tokens were kept live among 36 revoked: the cap only ever evicted
	// tombstones, so all 4 still load.
	for _, k := range live {
		if _, found, err := s.Load(ctx, k); err != nil || !found {
			t.Errorf("live token %s was evicted before tombstones (%v)", k.Fingerprint(), err)
		}
	}
	if n, err := s.CountClient(ctx, client); err != nil || n != len(live) {
		t.Errorf("CountClient = %d, %v; want %d", n, err, len(live))
	}
	// The last tombstone is still refused as revoked; an evicted one is
	// unknown, which is refused too.
	if n := records(); n > limit {
		t.Errorf("store keeps %d records, want <= %d", n, limit)
	}
}

func TestMemoryStoreRevokedWithinCap(t *testing.T) {
	s := provisionMemory(t, "cap")
	defer s.Cleanup()
	testRevokedWithinCap(t, s, s.tokens.table.len)
}

func TestRedisStoreRevokedWithinCap(t *testing.T) {
	rd := redistest.Start(t)
	insp := redisTestInspector(t, rd)
	s := redisTestInstance(t, rd, 0, 0)
	testRevokedWithinCap(t, s, func() int {
		keys, err := insp.Keys(context.Background(), "outergate:t:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(keys)
	})
}

package outergate

import (
	"context"
	"time"
)

// observeStore records the latency of one store operation.
func observeStore(op string, start time.Time) {
	storeLatency[op].Observe(time.Since(start).Seconds())
}

// timedStore measures every operation of the store it wraps.
type timedStore struct{ TokenStore }

func (s timedStore) poolKey() string { return storeKey(s.TokenStore) }

func (s timedStore) Save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int) error {
	defer observeStore("save", time.Now())
	return s.TokenStore.Save(ctx, key, rec, maxPerClient)
}

func (s timedStore) Load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	defer observeStore("load", time.Now())
	return s.TokenStore.Load(ctx, key)
}

func (s timedStore) RevokeToken(ctx context.Context, key TokenHash) (bool, error) {
	defer observeStore("revoke", time.Now())
	return s.TokenStore.RevokeToken(ctx, key)
}

func (s timedStore) RevokeClient(ctx context.Context, clientID string) (int, error) {
	defer observeStore("revoke_client", time.Now())
	return s.TokenStore.RevokeClient(ctx, clientID)
}

func (s timedStore) CountClient(ctx context.Context, clientID string) (int, error) {
	defer observeStore("count", time.Now())
	return s.TokenStore.CountClient(ctx, clientID)
}

func (s timedStore) Failures(ctx context.Context, key string) (int, time.Time, error) {
	defer observeStore("failures", time.Now())
	return s.TokenStore.Failures(ctx, key)
}

func (s timedStore) AddFailure(ctx context.Context, key string, window time.Duration) error {
	defer observeStore("add_failure", time.Now())
	return s.TokenStore.AddFailure(ctx, key, window)
}

func (s timedStore) ResetFailures(ctx context.Context, key string) error {
	defer observeStore("reset_failures", time.Now())
	return s.TokenStore.ResetFailures(ctx, key)
}

package outergate

import (
	"context"
	"time"
)

// timedStore is the metrics decorator of a Store: it measures every
// operation in outergate_store_operation_seconds. Provision wraps the
// configured store in it once.
type timedStore struct{ Store }

// poolKey is the wrapped store's, so that the admin API still sees which
// handlers share one store.
func (s timedStore) poolKey() string { return storeKey(s.Store) }

func (s timedStore) Save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int, locks ...Lockout) error {
	defer observeStore(opSave, time.Now())
	return s.Store.Save(ctx, key, rec, maxPerClient, locks...)
}

func (s timedStore) Load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	defer observeStore(opLoad, time.Now())
	return s.Store.Load(ctx, key)
}

func (s timedStore) RevokeToken(ctx context.Context, key TokenHash) (bool, error) {
	defer observeStore(opRevoke, time.Now())
	return s.Store.RevokeToken(ctx, key)
}

func (s timedStore) RevokeClient(ctx context.Context, clientID string) (int, error) {
	defer observeStore(opRevokeClient, time.Now())
	return s.Store.RevokeClient(ctx, clientID)
}

func (s timedStore) CountClient(ctx context.Context, clientID string) (int, error) {
	defer observeStore(opCount, time.Now())
	return s.Store.CountClient(ctx, clientID)
}

func (s timedStore) Failures(ctx context.Context, key string) (int, time.Time, error) {
	defer observeStore(opFailures, time.Now())
	return s.Store.Failures(ctx, key)
}

func (s timedStore) AddFailure(ctx context.Context, key string, window time.Duration) error {
	defer observeStore(opAddFailure, time.Now())
	return s.Store.AddFailure(ctx, key, window)
}

func (s timedStore) CountFailures(ctx context.Context, locks ...Lockout) ([]FailureCount, error) {
	defer observeStore(opCountFailures, time.Now())
	return s.Store.CountFailures(ctx, locks...)
}

func (s timedStore) Admit(ctx context.Context, locks ...Lockout) error {
	defer observeStore(opAdmit, time.Now())
	return s.Store.Admit(ctx, locks...)
}

func (s timedStore) ResetFailures(ctx context.Context, key string) error {
	defer observeStore(opResetFailures, time.Now())
	return s.Store.ResetFailures(ctx, key)
}

// Interface guards
var (
	_ Store       = timedStore{}
	_ pooledStore = timedStore{}
)

package outergate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// TokenHash is SHA-256 of an access token. Stores key tokens by it and
// never see the token itself.
type TokenHash [sha256.Size]byte

// hashToken returns the store key of an access token.
func hashToken(token string) TokenHash {
	// Copied into a buffer on the stack: []byte(token) would allocate for
	// any token over 32 bytes (issued ones are 43), on every validation.
	var buf [64]byte
	return sha256.Sum256(append(buf[:0], token...))
}

// fingerprint names a value that must not be logged as it is (an unknown
// client id, which may be a pasted secret) by the first 8 hex digits of its
// SHA-256, like a token's Fingerprint.
func fingerprint(s string) string {
	return hashToken(s).Fingerprint()
}

// Fingerprint is a short, non-reversible name of the token for logs: the
// first 8 hex digits of its SHA-256.
func (h TokenHash) Fingerprint() string {
	return hex.EncodeToString(h[:4])
}

// TokenRecord is what a store keeps about one live token.
type TokenRecord struct {
	// ClientID is the client the token was issued to.
	ClientID string `json:"c"`
	// Scope is the space-separated scope the token carries.
	Scope string `json:"s"`
	// IssuedAt and ExpiresAt are Unix milliseconds, so that a token
	// expires on time rather than up to a second early.
	IssuedAt  int64 `json:"i"`
	ExpiresAt int64 `json:"e"`
	// Binding names the issuer and the client credential the token was
	// issued under (binding.go); a handler accepts the token only if it
	// would issue it the same binding.
	Binding string `json:"b,omitempty"`
	// Revoked marks a tombstone: the token was revoked and is refused as
	// such until it would have expired or the client's cap evicts it
	// (tombstones count against max_tokens_per_client and go first). Tokens
	// evicted past the cap are deleted, so that neither issuance nor
	// revocation can grow the store.
	Revoked bool `json:"r,omitempty"`
}

// expired reports whether the token is past its lifetime at now.
func (r *TokenRecord) expired(now time.Time) bool {
	return now.UnixMilli() >= r.ExpiresAt
}

// ttl is the token's remaining lifetime.
func (r *TokenRecord) ttl() time.Duration {
	return time.Until(time.UnixMilli(r.ExpiresAt))
}

// ErrStoreUnavailable wraps every failure of a store to answer (as opposed to
// a token that is simply unknown): outergate answers 503 + 23090 for it.
var ErrStoreUnavailable = errors.New("token store unavailable")

// Store is what a guest module in the outergate.stores namespace provides:
// the tokens and the failure counters of the throttles, in one shared place.
// Implementations must be safe for concurrent use.
type Store interface {
	TokenStore
	FailureStore
}

// TokenStore keeps issued tokens by their hash.
type TokenStore interface {
	// Save keeps rec under key until rec.ExpiresAt. With maxPerClient > 0
	// it then evicts the client's records, revoked tombstones first, then
	// the oldest tokens, until no more than maxPerClient remain. With
	// locks, it first checks them in the same atomic step (Admit): if one
	// is at its limit nothing is written and the error is a *LockedOut.
	Save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int, locks ...Lockout) error
	// Load returns the record of key, and false if the token is unknown,
	// expired or revoked; for a revoked token the record has Revoked set,
	// so that the refusal can say so.
	Load(ctx context.Context, key TokenHash) (TokenRecord, bool, error)
	// RevokeToken turns one token into a tombstone, kept in its client's
	// index; false if it was not live. Every
	// instance sharing the store refuses it from then on.
	RevokeToken(ctx context.Context, key TokenHash) (bool, error)
	// RevokeClient deletes every live token of a client and returns how
	// many there were.
	RevokeClient(ctx context.Context, clientID string) (int, error)
	// CountClient returns how many live tokens a client has.
	CountClient(ctx context.Context, clientID string) (int, error)
}

// Lockout is one throttle's counter as a client authentication meets it:
// at most Max failures under Key per window, a window of Window starting
// with its first failure; with Reset a success forgets the failures
// (consecutive failures).
type Lockout struct {
	Key    string
	Max    int
	Window time.Duration
	Reset  bool
}

// LockedOut is the answer of Save and Admit when a lockout was at its
// limit: nothing was written, and the request is refused until Until.
type LockedOut struct {
	Key   string
	Until time.Time
}

func (e *LockedOut) Error() string {
	return fmt.Sprintf("locked out until %s", e.Until.UTC().Format(time.RFC3339))
}

// lockedOut returns the *LockedOut in err, if any.
func lockedOut(err error) (*LockedOut, bool) {
	var l *LockedOut
	ok := errors.As(err, &l)
	return l, ok
}

// FailureCount is a failure counter after CountFailures: the failures of
// the current window, and its end.
type FailureCount struct {
	N   int
	End time.Time
}

// FailureStore counts failed client authentications for the throttles.
// A failure is counted with CountFailures, whose counts decide the answer
// (at most Max failures per window are answered as such); a success passes
// Admit, or Save with the lockouts, in one atomic step each.
type FailureStore interface {
	// Failures returns how many failures were counted under key in the
	// current window, and when that window ends.
	Failures(ctx context.Context, key string) (int, time.Time, error)
	// AddFailure counts one failure under key; a new window of the given
	// length starts with the first failure.
	AddFailure(ctx context.Context, key string, window time.Duration) error
	// ResetFailures forgets the failures counted under key.
	ResetFailures(ctx context.Context, key string) error
	// CountFailures counts one failure under each lockout's key, each in
	// one atomic step (so concurrent failures get distinct counts), and
	// returns the counts in the order of locks.
	CountFailures(ctx context.Context, locks ...Lockout) ([]FailureCount, error)
	// Admit checks a success against locks: if one is at its limit it
	// returns a *LockedOut; otherwise it forgets the failures of those
	// with Reset. On one server it is one atomic step.
	Admit(ctx context.Context, locks ...Lockout) error
}

// pooledStore is a store whose state lives in a caddy.UsagePool entry
// shared by every handler configured with the same store; poolKey names
// that entry, so that the admin API asks each shared store once.
type pooledStore interface {
	poolKey() string
}

// storeKey names the shared state behind a store.
func storeKey(s Store) string {
	if k, ok := s.(pooledStore); ok {
		return k.poolKey()
	}
	return fmt.Sprintf("%p", s)
}

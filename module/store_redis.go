package outergate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

func init() {
	caddy.RegisterModule(RedisStore{})
	// go-redis logs connection trouble through the standard library's
	// log package; send it to Caddy's logs at Debug level instead, since
	// the store reports failures itself.
	redis.SetLogger(goRedisLogger{})
}

// Defaults of the Redis store.
const (
	DefaultRedisKeyPrefix   = "outergate:"
	DefaultRedisDialTimeout = 500 * time.Millisecond
	DefaultRedisTimeout     = time.Second
	DefaultRedisCacheTTL    = time.Second
)

// redisPool holds the Redis connections by store identity, so that they
// survive `caddy reload`.
var redisPool = caddy.NewUsagePool()

// RedisStore is the shared token store (module outergate.stores.redis) for
// running several gateway instances: tokens, per-client indexes and failure
// counters live in Redis (a single server, Sentinel or Cluster, through
// go-redis). Keys hold only SHA-256(token) and expire with the token. Each
// instance keeps a short cache of positive validations, invalidated
// through Redis pub/sub on revocation.
//
// Key layout: a token is outergate:t:<sha256 hex> (found from the token
// alone), a client's index of its tokens outergate:c:<client id>. On a
// Cluster these hash to different slots, spreading tokens over every
// master; there is no cross-slot transaction, so issuance writes the
// index first and the token second, each acknowledged (WAIT) before the
// next, and answers only after both: a crash in between leaves an index
// entry without a token, never a live token that revoke-all cannot find
// (see save).
//
// Topology changes: the Cluster client reloads its slot map every second
// and at once on any network error; with Sentinel the invalidation
// subscription follows +switch-master, and writes are refused (503) while
// a failover is announced, so none is acknowledged by a master about to be
// demoted.
//
// When Redis does not answer within Timeout, outergate fails closed: token
// requests and tokens not in the local cache get 503 + 23090. It recovers
// by itself when Redis is back.
type RedisStore struct {
	// URL is a redis:// or rediss:// URL (user, password, host, port and
	// database), e.g. "redis://127.0.0.1:6379/0". Either URL or Addresses.
	URL string `json:"url,omitempty"`

	// Addresses are host:port of the Redis server, of the Sentinels (with
	// MasterName) or of Cluster nodes (two or more without MasterName).
	Addresses []string `json:"addresses,omitempty"`

	// MasterName is the Sentinel master name; setting it selects Sentinel.
	MasterName string `json:"master_name,omitempty"`

	// Username for Redis ACL authentication. Placeholders are expanded.
	Username string `json:"username,omitempty"`

	// Password for Redis authentication; use a placeholder such as
	// {env.REDIS_PASSWORD} rather than writing it in the config.
	Password string `json:"password,omitempty"`

	// DB is the database number (not for Cluster). Default: 0.
	DB int `json:"db,omitempty"`

	// TLS connects with TLS. Default: false (true for rediss:// URLs).
	TLS bool `json:"tls,omitempty"`

	// KeyPrefix starts every key outergate writes. Default: "outergate:".
	KeyPrefix string `json:"key_prefix,omitempty"`

	// DialTimeout bounds opening a connection. Default: 500ms.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// Timeout bounds each store operation, retries included; past it the
	// request fails closed with 503 + 23090. Default: 1s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// CacheTTL is how long an instance trusts a positive validation without
	// asking Redis again. Revocations are pushed through pub/sub at once;
	// CacheTTL bounds the delay if a push is lost. 0 uses the default,
	// a negative value disables the cache. Default: 1s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// Replicas is how many replicas must acknowledge each write (a token,
	// a revocation) before it is answered, with Redis WAIT: a token
	// answered 200 then survives the master's loss and a failover. When
	// fewer acknowledge within 40% of Timeout the request gets 503 + 23090.
	// A write waits for no more replicas than the topology has healthy at
	// the time (a Cluster master whose replica was promoted has none), so
	// losing replicas costs the guarantee, not availability. 0 uses the
	// default, a negative value turns WAIT off. Default: with Sentinel
	// every replica the master shows healthy (Sentinel may promote any of
	// them, chosen by replication offsets that can be seconds old; the
	// price is that the slowest healthy replica sets each write's pace),
	// 1 with Cluster, none with a single server. A number N caps the
	// count at N.
	Replicas int `json:"replicas,omitempty"`

	conn    *redisConn
	key     string
	logger  *zap.Logger
	flights *singleflight.Group // concurrent cache misses of one token (store_redis_flight.go)
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "outergate.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision expands placeholders, fills in defaults and finds or creates
// the pooled connection. It does not wait for Redis: the first operation
// connects.
func (s *RedisStore) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	s.URL = repl.ReplaceKnown(s.URL, "")
	s.Username = repl.ReplaceKnown(s.Username, "")
	s.Password = repl.ReplaceKnown(s.Password, "")
	for i := range s.Addresses {
		s.Addresses[i] = repl.ReplaceKnown(s.Addresses[i], "")
	}
	if s.KeyPrefix == "" {
		s.KeyPrefix = DefaultRedisKeyPrefix
	}
	if s.DialTimeout == 0 {
		s.DialTimeout = caddy.Duration(DefaultRedisDialTimeout)
	}
	if s.Timeout == 0 {
		s.Timeout = caddy.Duration(DefaultRedisTimeout)
	}
	if s.CacheTTL == 0 {
		s.CacheTTL = caddy.Duration(DefaultRedisCacheTTL)
	}
	opts, err := s.options()
	if err != nil {
		return err
	}
	if s.Replicas == 0 {
		s.Replicas = defaultReplicas(modeOf(opts))
	}
	s.key = s.identity(opts)
	val, _, err := redisPool.LoadOrNew(s.key, func() (caddy.Destructor, error) {
		return newRedisConnReplicas(opts, s.KeyPrefix, time.Duration(s.Timeout), time.Duration(s.CacheTTL), s.Replicas, s.logger), nil
	})
	if err != nil {
		return err
	}
	s.conn = val.(*redisConn)
	s.flights = new(singleflight.Group)
	return nil
}

// options turns the config into go-redis options with small timeouts and
// few retries, so that a hung Redis fails within Timeout (see docs/ARCHITECTURE.md, traps).
func (s *RedisStore) options() (*redis.UniversalOptions, error) {
	opts := &redis.UniversalOptions{
		Addrs:      s.Addresses,
		MasterName: s.MasterName,
		Username:   s.Username,
		Password:   s.Password,
		DB:         s.DB,
	}
	if s.URL != "" {
		if len(s.Addresses) > 0 {
			return nil, errors.New("redis store: use url or addresses, not both")
		}
		u, err := redis.ParseURL(s.URL)
		if err != nil {
			return nil, fmt.Errorf("redis store: bad url: %w", redactErr(err, s.URL, s.Password))
		}
		opts.Addrs = []string{u.Addr}
		opts.DB = u.DB
		if u.Username != "" {
			opts.Username = u.Username
		}
		if u.Password != "" {
			opts.Password = u.Password
		}
		opts.TLSConfig = u.TLSConfig
	}
	if len(opts.Addrs) == 0 {
		return nil, errors.New("redis store: no url or address")
	}
	if s.TLS && opts.TLSConfig == nil {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	timeout := time.Duration(s.Timeout)
	opts.DialTimeout = time.Duration(s.DialTimeout)
	opts.ReadTimeout = timeout / 2
	opts.WriteTimeout = timeout / 2
	opts.PoolTimeout = timeout / 2
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = 1
	opts.MinRetryBackoff = 8 * time.Millisecond
	opts.MaxRetryBackoff = 64 * time.Millisecond
	opts.DisableIdentity = true // Debian's Redis 7.0 rejects CLIENT SETINFO
	return opts, nil
}

// identity names the pooled connection: where it goes and as whom, with
// the password only as a hash.
func (s *RedisStore) identity(o *redis.UniversalOptions) string {
	pw := sha256.Sum256([]byte(o.Password))
	return fmt.Sprintf("redis|%s|%s|%s|%x|%d|%t|%s|%d|%d|%d|%d", strings.Join(o.Addrs, ","), o.MasterName,
		o.Username, pw[:8], o.DB, o.TLSConfig != nil, s.KeyPrefix, s.DialTimeout, s.Timeout, s.CacheTTL, s.Replicas)
}

// Cleanup releases this config's hold on the connection.
func (s *RedisStore) Cleanup() error {
	if s.key == "" {
		return nil
	}
	_, err := redisPool.Delete(s.key)
	return err
}

// Save implements TokenStore.
func (s *RedisStore) Save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int, locks ...Lockout) error {
	return s.conn.save(ctx, key, rec, maxPerClient, locks)
}

// CountClient implements TokenStore.
func (s *RedisStore) CountClient(ctx context.Context, clientID string) (int, error) {
	return s.conn.countClient(ctx, clientID)
}

// ResetFailures implements FailureStore.
func (s *RedisStore) ResetFailures(ctx context.Context, key string) error {
	return s.conn.resetFailures(ctx, key)
}

// CountFailures implements FailureStore.
func (s *RedisStore) CountFailures(ctx context.Context, locks ...Lockout) ([]FailureCount, error) {
	return s.conn.countFailures(ctx, locks)
}

// Admit implements FailureStore.
func (s *RedisStore) Admit(ctx context.Context, locks ...Lockout) error {
	return s.conn.admit(ctx, locks)
}

// Load implements TokenStore.
func (s *RedisStore) Load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	return s.loadShared(ctx, key)
}

// RevokeToken implements TokenStore.
func (s *RedisStore) RevokeToken(ctx context.Context, key TokenHash) (bool, error) {
	return s.conn.revokeToken(ctx, key)
}

// RevokeClient implements TokenStore.
func (s *RedisStore) RevokeClient(ctx context.Context, clientID string) (int, error) {
	return s.conn.revokeClient(ctx, clientID)
}

// Failures implements FailureStore.
func (s *RedisStore) Failures(ctx context.Context, key string) (int, time.Time, error) {
	return s.conn.failures(ctx, key)
}

// AddFailure implements FailureStore.
func (s *RedisStore) AddFailure(ctx context.Context, key string, window time.Duration) error {
	return s.conn.addFailure(ctx, key, window)
}

// redactErr removes secrets (a URL that may carry a password, a password)
// from an error text.
func redactErr(err error, secrets ...string) error {
	text := err.Error()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		text = strings.ReplaceAll(text, strconv.Quote(s), `"<redacted>"`)
		text = strings.ReplaceAll(text, s, "<redacted>")
	}
	if text == err.Error() {
		return err
	}
	return errors.New(text)
}

// poolKey names the pooled connection behind the store.
func (s *RedisStore) poolKey() string { return s.key }

// rateLimitRedis lets the client limits count in this store's Redis
// (rateLimiterProvider, ratelimit_redis.go).
func (s *RedisStore) rateLimitRedis() (redis.UniversalClient, string, time.Duration) {
	return s.conn.client, s.conn.prefix, s.conn.timeout
}

// Interface guards
var (
	_ Store                 = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ caddy.Destructor      = (*redisConn)(nil)
)

package outergate

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/patrickmn/go-cache"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(RedisStore{})
	// go-redis logs connection trouble through the standard library's
	// log package; send it to Caddy's logs at Debug level instead, since
	// the store reports failures itself.
	redis.SetLogger(goRedisLogger{})
}

// goRedisLogger adapts go-redis's internal logging to Caddy's logger.
type goRedisLogger struct{}

func (goRedisLogger) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("outergate.redis").Check(zap.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
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
// go-redis's UniversalClient). Keys hold only SHA-256(token) and expire with
// the token. Each instance keeps a short cache of positive validations,
// invalidated through Redis pub/sub on revocation.
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

	conn   *redisConn
	key    string
	logger *zap.Logger
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
	s.key = s.identity(opts)
	val, _, err := redisPool.LoadOrNew(s.key, func() (caddy.Destructor, error) {
		return newRedisConn(opts, s.KeyPrefix, time.Duration(s.Timeout), time.Duration(s.CacheTTL), s.logger), nil
	})
	if err != nil {
		return err
	}
	s.conn = val.(*redisConn)
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
	return fmt.Sprintf("redis|%s|%s|%s|%x|%d|%t|%s|%d|%d|%d", strings.Join(o.Addrs, ","), o.MasterName,
		o.Username, pw[:8], o.DB, o.TLSConfig != nil, s.KeyPrefix, s.DialTimeout, s.Timeout, s.CacheTTL)
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
func (s *RedisStore) Save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int) error {
	return s.conn.save(ctx, key, rec, maxPerClient)
}

// CountClient implements TokenStore.
func (s *RedisStore) CountClient(ctx context.Context, clientID string) (int, error) {
	return s.conn.countClient(ctx, clientID)
}

// ResetFailures implements FailureStore.
func (s *RedisStore) ResetFailures(ctx context.Context, key string) error {
	return s.conn.resetFailures(ctx, key)
}

// Reserve implements FailureStore.
func (s *RedisStore) Reserve(ctx context.Context, key string, max int, window time.Duration) (bool, int, time.Time, error) {
	return s.conn.reserve(ctx, key, max, window)
}

// Release implements FailureStore.
func (s *RedisStore) Release(ctx context.Context, key string, failed, reset bool, window time.Duration) error {
	return s.conn.release(ctx, key, failed, reset, window)
}

// Load implements TokenStore.
func (s *RedisStore) Load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	return s.conn.load(ctx, key)
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

// redisConn is the pooled part of a RedisStore: the client, the local
// validation cache and the pub/sub listener that invalidates it.
type redisConn struct {
	client   redis.UniversalClient
	prefix   string
	timeout  time.Duration
	cacheTTL time.Duration
	logger   *zap.Logger
	channel  string

	cache *cache.Cache // string(TokenHash) -> *TokenRecord
	// gen changes on every invalidation; a Load only caches what it read
	// if gen did not change meanwhile, so a revocation that lands between
	// the Redis read and the insert is not undone.
	gen atomic.Uint64
	// listening is true while the invalidation subscription is live; the
	// cache is neither read nor filled otherwise.
	listening atomic.Bool

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once

	psMu sync.Mutex
	ps   *redis.PubSub // the live subscription, closed by Destruct to unblock it
}

func newRedisConn(opts *redis.UniversalOptions, prefix string, timeout, cacheTTL time.Duration, logger *zap.Logger) *redisConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &redisConn{
		client:   redis.NewUniversalClient(opts),
		prefix:   prefix,
		timeout:  timeout,
		cacheTTL: cacheTTL,
		logger:   logger,
		channel:  prefix + "revoked",
		cache:    cache.New(cacheTTL, time.Minute),
		cancel:   cancel,
		done:     make(chan struct{}),
	}
	if cacheTTL > 0 {
		go c.listen(ctx)
	} else {
		close(c.done)
	}
	return c
}

// Destruct implements caddy.Destructor: stops the listener and closes the
// connections.
func (c *redisConn) Destruct() error {
	var err error
	c.once.Do(func() {
		c.cancel()
		c.psMu.Lock()
		if c.ps != nil {
			_ = c.ps.Close()
		}
		c.psMu.Unlock()
		<-c.done
		err = c.client.Close()
	})
	return err
}

func (c *redisConn) tokenKey(key TokenHash) string {
	return c.prefix + "t:" + hex.EncodeToString(key[:])
}

func (c *redisConn) clientKey(clientID string) string {
	return c.prefix + "c:" + clientID
}

func (c *redisConn) failureKey(key string) string {
	return c.prefix + "f:" + key
}

// op bounds one store operation, retries included.
func (c *redisConn) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

// unavailable wraps a Redis failure as ErrStoreUnavailable.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: redis %s: %v", ErrStoreUnavailable, what, err)
}

// save writes the client index entry and the token in one MULTI/EXEC
// (per hash slot on a Cluster, where the index goes first: a crash between
// the two leaves an index entry without a token, never a token that
// revocation cannot find), then evicts the client's earliest issued tokens
// beyond maxPerClient. The index is scored by issue time in microseconds,
// tombstones by 0 (revokeToken); members of expired tokens stay until they
// are the oldest and go first, tombstones before them, so the index (and
// the token records it names) never holds more than maxPerClient members.
func (c *redisConn) save(ctx context.Context, key TokenHash, rec TokenRecord, maxPerClient int) error {
	ttl := rec.ttl()
	if ttl <= 0 {
		return nil
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := c.op(ctx)
	defer cancel()
	ck := c.clientKey(rec.ClientID)
	member := hex.EncodeToString(key[:])
	_, err = c.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, ck, redis.Z{Score: float64(time.Now().UnixMicro()), Member: member})
		// The index lives as long as its longest-lived token (Redis >= 7.0).
		p.ExpireNX(ctx, ck, ttl+time.Second)
		p.ExpireGT(ctx, ck, ttl+time.Second)
		p.Set(ctx, c.tokenKey(key), val, ttl)
		return nil
	})
	if err != nil {
		return unavailable("save", err)
	}
	if maxPerClient <= 0 {
		return nil
	}
	victims, err := capScript.Run(ctx, c.client, []string{ck}, maxPerClient, member).StringSlice()
	if err != nil {
		return unavailable("cap", err)
	}
	for _, v := range victims {
		// Deleted, not tombstoned: a client looping on the token endpoint
		// must not grow Redis with issuance rate × token_ttl.
		if err := c.client.Del(ctx, c.prefix+"t:"+v).Err(); err != nil {
			return unavailable("cap", err)
		}
		c.publish(ctx, "t:"+v)
	}
	return nil
}

// capScript removes the oldest members of a client index beyond ARGV[1],
// never ARGV[2] (the token being issued, which may share its millisecond
// score with others), in one step, so that concurrent issuers never evict
// more than needed.
var capScript = redis.NewScript(`
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if over <= 0 then return {} end
local out = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, over)) do
  if m ~= ARGV[2] and #out < over then out[#out + 1] = m end
end
redis.call('ZREM', KEYS[1], unpack(out))
return out`)

// countClient counts a client's live tokens: the members of its index
// whose token is there, not expired and not revoked.
func (c *redisConn) countClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	members, err := c.client.ZRange(ctx, c.clientKey(clientID), 0, -1).Result()
	if err != nil {
		return 0, unavailable("count", err)
	}
	if len(members) == 0 {
		return 0, nil
	}
	keys := make([]string, len(members))
	for i, m := range members {
		keys[i] = c.prefix + "t:" + m
	}
	vals := make([]*redis.StringCmd, len(keys))
	_, err = c.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			vals[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, unavailable("count", err)
	}
	n := 0
	now := time.Now()
	for _, v := range vals {
		var rec TokenRecord
		if b, err := v.Bytes(); err == nil && json.Unmarshal(b, &rec) == nil && !rec.Revoked && !rec.expired(now) {
			n++
		}
	}
	return n, nil
}

// load reads a token, from the local cache while the invalidation
// subscription is live.
func (c *redisConn) load(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	listening := c.cacheTTL > 0 && c.listening.Load()
	if listening {
		if v, ok := c.cache.Get(string(key[:])); ok {
			return *v.(*TokenRecord), true, nil
		}
	}
	gen := c.gen.Load()
	ctx, cancel := c.op(ctx)
	defer cancel()
	rec, found, err := c.read(ctx, key)
	if err != nil || !found {
		return rec, found, err
	}
	if listening && c.listening.Load() && c.gen.Load() == gen {
		ttl := min(c.cacheTTL, rec.ttl())
		if ttl > 0 {
			c.cache.Set(string(key[:]), &rec, ttl)
		}
	}
	return rec, true, nil
}

// read reads a token from Redis; found is false for unknown tokens and
// tombstones (whose record has Revoked set).
func (c *redisConn) read(ctx context.Context, key TokenHash) (TokenRecord, bool, error) {
	val, err := c.client.Get(ctx, c.tokenKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return TokenRecord{}, false, nil
	}
	if err != nil {
		return TokenRecord{}, false, unavailable("load", err)
	}
	var rec TokenRecord
	if err := json.Unmarshal(val, &rec); err != nil {
		return TokenRecord{}, false, unavailable("load", fmt.Errorf("corrupt record: %w", err))
	}
	return rec, !rec.Revoked, nil
}

// tombstoneScript turns a live token into a tombstone that keeps the
// token's TTL, and drops it from its client's index, in one step. It
// returns 1 if the token was live.
var tombstoneScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local rec = cjson.decode(v)
if rec['r'] then return 0 end
rec['r'] = true
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1`)

// tombstone revokes one token by its hex hash; the index entry is removed
// by the caller.
func (c *redisConn) tombstone(ctx context.Context, member string) (bool, error) {
	n, err := tombstoneScript.Run(ctx, c.client, []string{c.prefix + "t:" + member}).Int()
	if err != nil {
		return false, unavailable("revoke", err)
	}
	return n == 1, nil
}

// revokeToken revokes one token and tells every instance.
func (c *redisConn) revokeToken(ctx context.Context, key TokenHash) (bool, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	member := hex.EncodeToString(key[:])
	rec, _, err := c.read(ctx, key)
	if err != nil {
		return false, err
	}
	live, err := c.tombstone(ctx, member)
	if err != nil {
		return false, err
	}
	if rec.ClientID != "" {
		// Issue 12 item 11: the tombstone stays in its client's index,
		// rescored to 0 so that the cap (capScript, oldest score first)
		// evicts tombstones before live tokens and counts them: a client
		// cannot keep more than max_tokens_per_client records, revoked or
		// not. XX: a member the cap already removed is not added back.
		c.client.ZAddXX(ctx, c.clientKey(rec.ClientID), redis.Z{Score: 0, Member: member})
	}
	c.publish(ctx, "t:"+member)
	return live, nil
}

// revokeClient revokes every live token of a client and tells every
// instance.
func (c *redisConn) revokeClient(ctx context.Context, clientID string) (int, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	ck := c.clientKey(clientID)
	members, err := c.client.ZRange(ctx, ck, 0, -1).Result()
	if err != nil {
		return 0, unavailable("revoke", err)
	}
	n := 0
	for _, m := range members {
		live, err := c.tombstone(ctx, m)
		if err != nil {
			return n, err
		}
		if live {
			n++
		}
	}
	if len(members) > 0 {
		// Only the members read: a token saved meanwhile keeps its score.
		// Issue 12 item 11: tombstones stay indexed at score 0 (see
		// revokeToken), counted by the cap and evicted first.
		zs := make([]redis.Z, len(members))
		for i, m := range members {
			zs[i] = redis.Z{Score: 0, Member: m}
		}
		c.client.ZAddXX(ctx, ck, zs...)
	}
	c.publish(ctx, "c:"+clientID)
	return n, nil
}

// publish announces a revocation; the local cache is dropped first, so the
// revoking instance never depends on its own subscription.
func (c *redisConn) publish(ctx context.Context, what string) {
	c.invalidate(what)
	if err := c.client.Publish(ctx, c.channel, what).Err(); err != nil {
		c.logger.Warn("publishing revocation failed; other instances refuse the token within cache_ttl",
			zap.Duration("cache_ttl", c.cacheTTL), zap.Error(err))
	}
}

// invalidate drops cached validations named by a revocation message:
// "t:<hex hash>" one token, anything else the whole cache.
func (c *redisConn) invalidate(what string) {
	c.gen.Add(1)
	if h, ok := strings.CutPrefix(what, "t:"); ok {
		if raw, err := hex.DecodeString(h); err == nil && len(raw) == sha256.Size {
			c.cache.Delete(string(raw))
			return
		}
	}
	c.cache.Flush()
}

// stopListening marks the subscription dead and drops the cache: while no
// invalidation can arrive, nothing cached may be trusted.
func (c *redisConn) stopListening() {
	c.listening.Store(false)
	c.gen.Add(1)
	c.cache.Flush()
}

// listen keeps the invalidation subscription alive. Receive is used instead
// of Channel() so that every disconnect and resubscribe is seen: the cache
// is dropped on each, because invalidations may have been missed (or Redis
// may have restarted empty).
func (c *redisConn) listen(ctx context.Context) {
	defer close(c.done)
	defer c.stopListening()
	for ctx.Err() == nil {
		c.listenOnce(ctx)
		c.stopListening()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// listenOnce runs one subscription until it fails.
func (c *redisConn) listenOnce(ctx context.Context) {
	c.psMu.Lock()
	if ctx.Err() != nil {
		c.psMu.Unlock()
		return
	}
	ps := c.client.Subscribe(ctx, c.channel)
	c.ps = ps
	c.psMu.Unlock()
	defer ps.Close()
	pingPending := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.timeout)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() && !pingPending {
				// Quiet channel: make sure Redis still answers.
				pingCtx, cancel := context.WithTimeout(ctx, c.timeout)
				err = ps.Ping(pingCtx)
				cancel()
				if err == nil {
					pingPending = true
					continue
				}
			}
			if c.listening.Load() {
				c.logger.Warn("redis invalidation subscription lost; local cache disabled until it is back", zap.Error(err))
			}
			return
		}
		pingPending = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				c.gen.Add(1)
				c.cache.Flush()
				c.listening.Store(true)
			}
		case *redis.Message:
			c.invalidate(m.Payload)
		}
	}
}

// The failure counters of the throttles are one hash per key: f counts
// failures, h the claims of attempts still being checked; the key expires
// with the window that its first claim or failure started. A string at the
// key is a counter of an earlier version: read as the failure count, and
// replaced on the first write.
const failureLegacy = `if redis.call('TYPE', KEYS[1]).ok == 'string' then redis.call('DEL', KEYS[1]) end
`

var (
	failuresScript = redis.NewScript(`
local t = redis.call('TYPE', KEYS[1]).ok
local n = 0
if t == 'string' then n = tonumber(redis.call('GET', KEYS[1])) or 0
elseif t == 'hash' then n = tonumber(redis.call('HGET', KEYS[1], 'f')) or 0 end
return {n, redis.call('PTTL', KEYS[1])}`)

	addFailureScript = redis.NewScript(failureLegacy + `
local n = redis.call('HINCRBY', KEYS[1], 'f', 1)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

	resetFailuresScript = redis.NewScript(failureLegacy + `
redis.call('HDEL', KEYS[1], 'f')
return 1`)

	// ARGV: max, window ms. Returns {granted 0|1, failures, pttl ms}.
	reserveScript = redis.NewScript(failureLegacy + `
local f = tonumber(redis.call('HGET', KEYS[1], 'f')) or 0
local h = tonumber(redis.call('HGET', KEYS[1], 'h')) or 0
local ok = 0
if f + h < tonumber(ARGV[1]) then
  redis.call('HINCRBY', KEYS[1], 'h', 1)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  ok = 1
end
return {ok, f, redis.call('PTTL', KEYS[1])}`)

	// ARGV: failed 0|1, reset 0|1, window ms. An empty hash is deleted
	// by Redis itself.
	releaseScript = redis.NewScript(failureLegacy + `
if (tonumber(redis.call('HGET', KEYS[1], 'h')) or 0) > 0 then
  if redis.call('HINCRBY', KEYS[1], 'h', -1) <= 0 then redis.call('HDEL', KEYS[1], 'h') end
end
if ARGV[2] == '1' then redis.call('HDEL', KEYS[1], 'f') end
if ARGV[1] == '1' then
  redis.call('HINCRBY', KEYS[1], 'f', 1)
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return 1`)
)

// windowEnd turns a PTTL in milliseconds into the end of the window.
func windowEnd(pttl int64) time.Time {
	if pttl <= 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(pttl) * time.Millisecond)
}

func (c *redisConn) failures(ctx context.Context, key string) (int, time.Time, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	v, err := failuresScript.Run(ctx, c.client, []string{c.failureKey(key)}).Int64Slice()
	if err != nil {
		return 0, time.Time{}, unavailable("failures", err)
	}
	if len(v) != 2 || v[0] == 0 {
		return 0, time.Time{}, nil
	}
	return int(v[0]), windowEnd(v[1]), nil
}

func (c *redisConn) addFailure(ctx context.Context, key string, window time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := addFailureScript.Run(ctx, c.client, []string{c.failureKey(key)}, window.Milliseconds()).Err(); err != nil {
		return unavailable("add failure", err)
	}
	return nil
}

func (c *redisConn) resetFailures(ctx context.Context, key string) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := resetFailuresScript.Run(ctx, c.client, []string{c.failureKey(key)}).Err(); err != nil {
		return unavailable("reset failures", err)
	}
	return nil
}

func (c *redisConn) reserve(ctx context.Context, key string, max int, window time.Duration) (bool, int, time.Time, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	v, err := reserveScript.Run(ctx, c.client, []string{c.failureKey(key)}, max, window.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, time.Time{}, unavailable("reserve", err)
	}
	if len(v) != 3 {
		return false, 0, time.Time{}, unavailable("reserve", fmt.Errorf("unexpected reply of %d values", len(v)))
	}
	return v[0] == 1, int(v[1]), windowEnd(v[2]), nil
}

func (c *redisConn) release(ctx context.Context, key string, failed, reset bool, window time.Duration) error {
	ctx, cancel := c.op(ctx)
	defer cancel()
	if err := releaseScript.Run(ctx, c.client, []string{c.failureKey(key)},
		flag(failed), flag(reset), window.Milliseconds()).Err(); err != nil {
		return unavailable("release", err)
	}
	return nil
}

// flag is a boolean script argument.
func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store redis [<url>] [{
//	    address      <host:port> [<host:port>...]
//	    master_name  <name>
//	    username     <user>
//	    password     <password>
//	    db           <n>
//	    tls
//	    key_prefix   <prefix>
//	    dial_timeout <duration>
//	    timeout      <duration>
//	    cache_ttl    <duration>
//	}]
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store module name
	if d.NextArg() {
		s.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			s.Addresses = append(s.Addresses, args...)
		case "master_name", "username", "password", "key_prefix":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch sub {
			case "master_name":
				s.MasterName = v
			case "username":
				s.Username = v
			case "password":
				s.Password = v
			case "key_prefix":
				s.KeyPrefix = v
			}
		case "db":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("db: bad number %q", v)
			}
			s.DB = n
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
		case "dial_timeout", "timeout", "cache_ttl":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", sub, err)
			}
			switch sub {
			case "dial_timeout":
				s.DialTimeout = caddy.Duration(dur)
			case "timeout":
				s.Timeout = caddy.Duration(dur)
			case "cache_ttl":
				s.CacheTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized redis store subdirective %q", sub)
		}
	}
	return nil
}

// poolKey names the pooled connection behind the store.
func (s *RedisStore) poolKey() string { return s.key }

// Interface guards
var (
	_ Store                 = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ caddy.Destructor      = (*redisConn)(nil)
)

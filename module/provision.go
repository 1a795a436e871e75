package outergate

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"go.uber.org/zap"
)

// Provision fills in defaults and builds, once, what serves requests: the
// routes, the client authenticator with its throttles, the protector of
// the protected paths with its normalizer, and the store behind its
// metrics decorator.
func (h *Handler) Provision(ctx caddy.Context) error {
	return h.provision(ctx, ctx.Logger())
}

// provision is Provision with the logger given, so that tests can read
// what is logged.
func (h *Handler) provision(ctx caddy.Context, logger *zap.Logger) error {
	h.logger = logger
	h.audit = auditLog{h.logger.Named(auditLoggerName)}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	h.provisionDefaults()
	rt, err := newRoutes(ctx, h.endpointTable(), h.Protect)
	if err != nil {
		return err
	}
	h.routes = rt
	if h.guard.websocket, err = newPathPatterns(ctx, h.AllowWebSocket); err != nil {
		return err
	}
	scopeRules, err := newScopeRules(ctx, h.ScopeRules)
	if err != nil {
		return err
	}
	if err := h.provisionClients(); err != nil {
		return err
	}
	if err := h.provisionPortal(); err != nil {
		return err
	}
	if err := h.provisionStore(ctx); err != nil {
		return err
	}

	h.auth.byAddress = throttle{off: h.ThrottleOff, max: h.ThrottleFailures, window: time.Duration(h.ThrottleWindow), attempts: newAttempts()}
	h.auth.byClient = throttle{off: h.ThrottleClientOff, max: h.ThrottleClientFailures, window: time.Duration(h.ThrottleClientWindow), resets: true, attempts: newAttempts()}
	h.protect = &protector{
		clients:        h.clients,
		scopeRules:     scopeRules,
		requireParams:  h.RequireParams,
		opaqueBody:     h.OpaqueBody,
		identityHeader: h.IdentityHeader,
		normalize:      &normalizer{errorCodes: h.ErrorCodes, logger: h.logger},
		audit:          h.audit,
		logger:         h.logger,
		out:            envelopeRenderer{h.logger},
	}
	if err := h.provisionLimits(); err != nil {
		return err
	}
	h.useStore(h.store)
	if err := h.provisionManagedClients(ctx); err != nil {
		return err
	}
	h.liveKey = registerLive(h)
	return nil
}

// useStore makes s the store of the handler and of every collaborator
// that reads or writes it; the tests replace a store this way.
func (h *Handler) useStore(s Store) {
	h.store = s
	h.auth.failures = s
	h.protect.tokens = s
}

// provisionStore loads the store module (default: memory) and wraps it in
// the metrics decorator.
func (h *Handler) provisionStore(ctx caddy.Context) error {
	if h.StoreRaw == nil {
		h.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "module", "memory", nil)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading token store: %w", err)
	}
	store, ok := mod.(Store)
	if !ok {
		return fmt.Errorf("module %T is not an outergate token store", mod)
	}
	h.store = timedStore{store}
	return nil
}

// provisionLimits builds the clients' policies and their limiter: in
// Redis when the store offers it, else in this process.
func (h *Handler) provisionLimits() error {
	l := &limits{
		policies:        make(map[string]*policy, len(h.clients)),
		failOpen:        h.RateLimitFailOpen,
		clientMetrics:   h.RateLimitClientMetrics,
		audit:           h.audit,
		logger:          h.logger,
		auditSampleTime: defaultAuditSample,
	}
	for id, c := range h.clients {
		l.policies[id] = c.policy // provisionClient made it
	}
	l.localKey = limitStateKey(h.store)
	local, err := loadLimitState(l.localKey)
	if err != nil {
		return err
	}
	l.local = local
	l.counter = memoryLimiter{local}
	if p, ok := unwrapStore(h.store).(rateLimiterProvider); ok {
		l.counter = newRedisLimiter(p)
	}
	h.limits = l
	h.protect.limits = l
	return nil
}

// unwrapStore is the configured store behind timedStore.
func unwrapStore(s Store) Store {
	if t, ok := s.(timedStore); ok {
		return t.Store
	}
	return s
}

// Cleanup removes the handler from the admin API's view and releases its
// decoy hash and its hold on the limit state.
func (h *Handler) Cleanup() error {
	if h.auth != nil {
		releaseDecoy(h.auth.decoy)
	}
	if h.limits != nil && h.limits.localKey != "" {
		_, _ = limitStates.Delete(h.limits.localKey)
	}
	// Out of the admin API's view first, then the managed clients go.
	var err error
	if h.liveKey != "" {
		_, err = liveHandlers.Delete(h.liveKey)
	}
	return errors.Join(err, h.releaseManagedClients())
}

// provisionDefaults fills in every unset field.
func (h *Handler) provisionDefaults() {
	if h.TokenPath == "" {
		h.TokenPath = DefaultTokenPath
	}
	if len(h.Protect) == 0 {
		h.Protect = []string{DefaultProtect}
	}
	if h.TokenTTL == 0 {
		h.TokenTTL = caddy.Duration(DefaultTokenTTL)
	}
	h.ttl = time.Duration(h.TokenTTL)
	if h.Scope == "" {
		h.Scope = DefaultScope
	}
	h.scopes = strings.Fields(h.Scope)
	if len(h.RequireParams) == 0 && !h.RequireParamsOff {
		h.RequireParams = []string{DefaultRequireParam}
	}
	if h.IdentityHeader == "" {
		h.IdentityHeader = DefaultIdentityHeader
	}
	h.identityKey = normalizeHeaderName(h.IdentityHeader)
	if h.ThrottleFailures == 0 {
		h.ThrottleFailures = DefaultThrottle
	}
	if h.ThrottleWindow == 0 {
		h.ThrottleWindow = caddy.Duration(DefaultThrottleWindow)
	}
	if h.ThrottleClientFailures == 0 {
		h.ThrottleClientFailures = DefaultThrottleClient
	}
	if h.ThrottleClientWindow == 0 {
		h.ThrottleClientWindow = caddy.Duration(DefaultThrottleClientWindow)
	}
	if h.MaxTokensPerClient == 0 {
		h.MaxTokensPerClient = DefaultMaxTokensPerClient
	}
	if h.OAuth2TokenPath == "" {
		h.OAuth2TokenPath = DefaultOAuth2TokenPath
	}
}

// provisionClients expands placeholders in the clients' secret hashes,
// parses them and indexes the clients by id.
func (h *Handler) provisionClients() error {
	var err error
	if h.auths, err = parseAuthMethod(h.AuthMethod); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	h.clients = make(map[string]*Client, len(h.Clients))
	for i := range h.Clients {
		c := &h.Clients[i]
		if c.ID == "" {
			return fmt.Errorf("client %d: empty id", i)
		}
		if _, dup := h.clients[c.ID]; dup {
			return fmt.Errorf("client %q: configured twice", c.ID)
		}
		if err := h.provisionClient(c, repl); err != nil {
			return err
		}
		h.clients[c.ID] = c
	}
	decoy, err := decoyVerifier(h.Clients)
	if err != nil {
		return err
	}
	cost, cheaper := planFailureCost(h.clients)
	if len(cheaper) > 0 {
		slices.Sort(cheaper)
		h.logger.Warn("bcrypt hashes below the highest configured cost: a failed authentication of these clients takes longer than one of an unknown id; give every bcrypt hash the same cost",
			zap.Strings("client_ids", cheaper))
	}
	h.auth = &clientAuth{clients: h.clients, decoy: decoy, cost: cost, audit: h.audit}
	return nil
}

// provisionClient parses the secret hashes of one client (configured or
// managed through the admin API) and fills in its defaults from the
// handler's.
func (h *Handler) provisionClient(c *Client, repl *caddy.Replacer) error {
	if len(c.SecretHashes) == 0 {
		return fmt.Errorf("client %q: no secret hash", c.ID)
	}
	c.verifiers, c.bindings = c.verifiers[:0], c.bindings[:0]
	for j, raw := range c.SecretHashes {
		expanded, err := repl.ReplaceOrErr(raw, true, true)
		if err != nil {
			return fmt.Errorf("client %q: secret hash %d: %w", c.ID, j, err)
		}
		v, err := parseSecretHash(expanded)
		if err != nil {
			return fmt.Errorf("client %q: secret hash %d: %w", c.ID, j, err)
		}
		c.verifiers = append(c.verifiers, v)
		c.bindings = append(c.bindings, tokenBinding(h.Issuer, c.ID, expanded))
	}
	c.ttl = h.ttl
	if c.TokenTTL != 0 {
		c.ttl = time.Duration(c.TokenTTL)
	}
	c.scopes = h.scopes
	if c.Scope != "" {
		c.scopes = strings.Fields(c.Scope)
	}
	p, err := newPolicy(h.RateLimit, c.RateLimit, h.Quota, c.Quota, h.MaxInFlight, c.MaxInFlight)
	if err != nil {
		return fmt.Errorf("client %q: %w", c.ID, err)
	}
	c.policy = &p
	c.auth = h.auths
	if c.AuthMethod != "" {
		if c.auth, err = parseAuthMethod(c.AuthMethod); err != nil {
			return fmt.Errorf("client %q: %w", c.ID, err)
		}
	}
	if c.introspectAny, err = parseIntrospect(c.Introspect); err != nil {
		return fmt.Errorf("client %q: %w", c.ID, err)
	}
	return nil
}

// Validate checks the provisioned config.
func (h *Handler) Validate() error {
	if !strings.HasPrefix(h.TokenPath, "/") {
		return fmt.Errorf("token_path must start with '/': %q", h.TokenPath)
	}
	if h.OAuth2TokenPath != "off" && !strings.HasPrefix(h.OAuth2TokenPath, "/") {
		return fmt.Errorf("oauth2_token_path must start with '/' or be off: %q", h.OAuth2TokenPath)
	}
	if h.Issuer != "" {
		if u, err := url.Parse(h.Issuer); err != nil || u.Scheme == "" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("issuer must be an absolute URL without query or fragment: %q", h.Issuer)
		}
	}
	if h.ttl < time.Second {
		return fmt.Errorf("token_ttl must be at least 1s, got %s", h.ttl)
	}
	if h.ThrottleFailures < 0 || h.ThrottleWindow < 0 || h.ThrottleClientFailures < 0 || h.ThrottleClientWindow < 0 {
		return fmt.Errorf("throttle: failures and window must be positive")
	}
	for _, c := range h.clients {
		if c.ttl < time.Second {
			return fmt.Errorf("client %q: token_ttl must be at least 1s, got %s", c.ID, c.ttl)
		}
	}
	if h.MaxInFlight < 0 {
		return fmt.Errorf("max_in_flight must be positive, got %d", h.MaxInFlight)
	}
	if h.MaxTokensPerClient < 0 {
		return fmt.Errorf("max_tokens_per_client must be positive, got %d", h.MaxTokensPerClient)
	}
	for status, code := range h.ErrorCodes {
		if status < 400 || status > 599 {
			return fmt.Errorf("error_code: status %d is not an HTTP error status", status)
		}
		if code <= 0 {
			return fmt.Errorf("error_code: code for %d must be positive, got %d", status, code)
		}
	}
	return nil
}

package outergate

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Provision fills in defaults, parses the clients' secret hashes and loads
// the token store.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.audit = h.logger.Named("audit")
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	h.provisionDefaults()
	if err := h.provisionMatchers(ctx); err != nil {
		return err
	}
	if err := h.provisionClients(); err != nil {
		return err
	}

	if h.StoreRaw == nil {
		h.StoreRaw = caddyconfig.JSONModuleObject(MemoryStore{}, "module", "memory", nil)
	}
	mod, err := ctx.LoadModule(h, "StoreRaw")
	if err != nil {
		return fmt.Errorf("loading token store: %w", err)
	}
	store, ok := mod.(TokenStore)
	if !ok {
		return fmt.Errorf("module %T is not an outergate token store", mod)
	}
	h.store = timedStore{store}
	h.liveKey = registerLive(h)
	return nil
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

// provisionMatchers builds the path matchers of the endpoints, the
// protected paths and the scope rules.
func (h *Handler) provisionMatchers(ctx caddy.Context) error {
	h.endpoints = []endpoint{
		{exactPath(h.TokenPath), h.serveToken},
		{exactPath(subPath(h.TokenPath, "revoke/")), h.serveRevoke},         // RFC 7009
		{exactPath(subPath(h.TokenPath, "introspect/")), h.serveIntrospect}, // RFC 7662
	}
	if h.OAuth2TokenPath != "off" {
		tok, rev, intro := oauth2Paths(h.OAuth2TokenPath)
		h.endpoints = append(h.endpoints,
			endpoint{exactPath(tok), h.serveOAuth2Token},
			endpoint{exactPath(rev), h.serveOAuth2Revoke},
			endpoint{exactPath(intro), h.serveOAuth2Introspect},
			endpoint{caddyhttp.MatchPath(metadataPaths(h.Issuer)), h.serveMetadata})
	}
	h.protectMatch = nil
	for _, p := range h.Protect {
		h.protectMatch = append(h.protectMatch, p)
		if bare := strings.TrimSuffix(p, "/*"); bare != p && bare != "" {
			h.protectMatch = append(h.protectMatch, bare)
		}
	}
	matchers := []caddyhttp.MatchPath{h.protectMatch}
	for _, ep := range h.endpoints {
		matchers = append(matchers, ep.match)
	}
	h.scopeMatch = nil
	for i, rule := range h.ScopeRules {
		if len(rule.Paths) == 0 || rule.Scope == "" || strings.ContainsRune(rule.Scope, ' ') {
			return fmt.Errorf("scope rule %d: needs paths and one scope", i)
		}
		m := caddyhttp.MatchPath(slices.Clone(rule.Paths))
		h.scopeMatch = append(h.scopeMatch, m)
		matchers = append(matchers, m)
	}
	for _, m := range matchers {
		if err := m.Provision(ctx); err != nil {
			return err
		}
	}
	// Endpoint paths are literal: a map of their lower-case, cleaned form
	// answers what their path matchers would, with one clean per request.
	h.byPath = make(map[string]endpoint)
	for _, ep := range h.endpoints {
		for _, p := range ep.match {
			if strings.ContainsAny(p, "*?[{%") {
				return fmt.Errorf("endpoint path %q must be a literal path", p)
			}
			if _, taken := h.byPath[p]; !taken {
				h.byPath[p] = ep
			}
		}
	}
	return nil
}

// provisionClients expands placeholders in the clients' secret hashes,
// parses them and indexes the clients by id.
func (h *Handler) provisionClients() error {
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
		if len(c.SecretHashes) == 0 {
			return fmt.Errorf("client %q: no secret hash", c.ID)
		}
		c.verifiers = c.verifiers[:0]
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
		}
		c.scopes = h.scopes
		if c.Scope != "" {
			c.scopes = strings.Fields(c.Scope)
		}
		h.clients[c.ID] = c
	}
	decoy, err := decoyVerifier(h.Clients)
	if err != nil {
		return err
	}
	h.decoy = decoy
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

// Cleanup removes the handler from the admin API's view and releases its
// decoy hash.
func (h *Handler) Cleanup() error {
	releaseDecoy(h.decoy)
	if h.liveKey != "" {
		_, err := liveHandlers.Delete(h.liveKey)
		return err
	}
	return nil
}

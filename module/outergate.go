// Package outergate is a Caddy v2 plugin that turns Caddy into an OAuth2
// client-credentials gateway in front of a legacy device platform: it issues
// tokens itself, checks `Authorization: Bearer` on the protected paths, keeps
// every answer in the platform's JSON envelope and lets Caddy's reverse_proxy
// carry the device calls upstream.
package outergate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Defaults of the Handler's config (DESIGN.md).
const (
	DefaultTokenPath            = "/outer/token/"
	DefaultProtect              = "/outer/device/*"
	DefaultTokenTTL             = 36000 * time.Second
	DefaultScope                = "read write groups"
	DefaultRequireParam         = "deviceid"
	DefaultIdentityHeader       = "X-Outer-Client-Id"
	DefaultThrottle             = 10
	DefaultThrottleWindow       = time.Minute
	DefaultThrottleClient       = 100
	DefaultThrottleClientWindow = 15 * time.Minute
	DefaultMaxTokensPerClient   = 100
	// maxBodyBytes bounds every request body outergate reads (413 past it).
	maxBodyBytes = 64 << 10
)

// Handler is the outergate HTTP handler (module http.handlers.outergate).
// It answers the token endpoint itself, checks Bearer tokens on the protected
// paths before calling the next handler (normally reverse_proxy) and turns
// that handler's errors into the platform's envelope. Every other request goes
// to the next handler untouched, but for the removal of client-sent identity
// headers.
type Handler struct {
	// TokenPath is where clients POST client-credentials token requests.
	// It matches like Caddy's path matcher and also without its trailing
	// slash. Default: "/outer/token/".
	TokenPath string `json:"token_path,omitempty"`

	// OAuth2TokenPath is where the standard (RFC 6749 §5) token endpoint
	// answers, beside the envelope one; revocation (RFC 7009) and
	// introspection (RFC 7662) sit next to it ("/oauth2/revoke",
	// "/oauth2/introspect"), and RFC 8414 metadata at
	// /.well-known/oauth-authorization-server. "off" disables all four.
	// Default: "/oauth2/token".
	OAuth2TokenPath string `json:"oauth2_token_path,omitempty"`

	// Issuer is the RFC 8414 issuer identifier, echoed exactly as written;
	// set it behind a TLS-terminating proxy. Default: the request's scheme
	// and host.
	Issuer string `json:"issuer,omitempty"`

	// Protect lists the path patterns (Caddy path matcher syntax) that need
	// a valid Bearer token. A pattern ending in "/*" also covers the bare
	// prefix. Default: ["/outer/device/*"].
	Protect []string `json:"protect,omitempty"`

	// TokenTTL is the lifetime of an issued token; `expires_in` reports it
	// in whole seconds. Default: 36000s (the platform document's value).
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`

	// Scope is the space-separated set of scopes granted to a client that
	// has no scope of its own. GET, HEAD and OPTIONS on protected paths need
	// "read"; every other method needs "write". Default: "read write groups".
	Scope string `json:"scope,omitempty"`

	// ScopeRules override, per path pattern, the scope a request to a
	// protected path needs; the first rule whose pattern matches wins.
	// Default: none (GET, HEAD and OPTIONS need "read", other methods
	// "write").
	ScopeRules []ScopeRule `json:"scope_rules,omitempty"`

	// Clients are the integrators allowed to obtain tokens.
	Clients []Client `json:"clients,omitempty"`

	// RequireParams are the parameters every request to a protected path
	// must carry exactly once, non-empty, in the query string, a form body
	// or a JSON body. Default: ["deviceid"].
	RequireParams []string `json:"require_params,omitempty"`

	// RequireParamsOff disables the parameter check (Caddyfile
	// `require_param off`). Default: false.
	RequireParamsOff bool `json:"require_params_off,omitempty"`

	// IdentityHeader is the request header that carries the verified
	// client id upstream. Copies sent by clients are removed from every
	// request, in any spelling. Default: "X-Outer-Client-Id".
	IdentityHeader string `json:"identity_header,omitempty"`

	// ErrorCodes overrides the envelope code given to an upstream error
	// status, e.g. {"409": 23010}. Defaults: 404 and 410 → 23030, 403 and
	// 423 → 23031, 401 → 23090 (answered as 502), any other 4xx → 23010,
	// 5xx → 23090.
	ErrorCodes map[int]int `json:"error_codes,omitempty"`

	// ThrottleFailures is how many failed client authentications one
	// client address (Caddy's client IP, so trusted_proxies is honoured)
	// may make within ThrottleWindow. Past it, every token request from
	// that address is answered 429 + 23029 with Retry-After until the
	// window ends, whatever the credentials. Default: 10.
	ThrottleFailures int `json:"throttle_failures,omitempty"`

	// ThrottleWindow is the length of the failure-counting window; it
	// starts with an address's first failure. Default: 1m.
	ThrottleWindow caddy.Duration `json:"throttle_window,omitempty"`

	// ThrottleOff disables the throttle (Caddyfile `throttle off`).
	// Default: false.
	ThrottleOff bool `json:"throttle_off,omitempty"`

	// ThrottleClientFailures is how many consecutive failed
	// authentications a configured client id may suffer, from any address,
	// within ThrottleClientWindow; past it, token requests for that client
	// get 429 + 23029 until the window ends. A success resets the count.
	// Default: 100 (NIST SP 800-63B §5.2.2's ceiling).
	ThrottleClientFailures int `json:"throttle_client_failures,omitempty"`

	// ThrottleClientWindow is the per-client counting window.
	// Default: 15m.
	ThrottleClientWindow caddy.Duration `json:"throttle_client_window,omitempty"`

	// ThrottleClientOff disables the per-client lockout (Caddyfile
	// `throttle_client off`). Default: false.
	ThrottleClientOff bool `json:"throttle_client_off,omitempty"`

	// MaxTokensPerClient bounds the live tokens of one client: issuing one
	// more evicts that client's oldest, so a client looping on the token
	// endpoint cannot grow the store without bound. Default: 100.
	MaxTokensPerClient int `json:"max_tokens_per_client,omitempty"`

	// StoreRaw is the token store, a module in the outergate.stores
	// namespace. Default: {"module": "memory"}.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=outergate.stores inline_key=module"`

	// Portal is the path prefix of the developer portal: the API's OpenAPI
	// 3.1 document at <portal>openapi.json and a page rendering it, with a
	// console that tries the API from the browser. The portal is public;
	// it must not be under a protected path. Default: "" (off).
	Portal string `json:"portal,omitempty"`

	// PortalDocument names an OpenAPI 3.1 document (JSON) of the backend's
	// routes; the portal merges the gateway's parts into it instead of
	// describing the platform document's three device routes. Default: ""
	// (the built-in device routes).
	PortalDocument string `json:"portal_document,omitempty"`

	scopeMatch   []caddyhttp.MatchPath // one per ScopeRules entry
	store        TokenStore
	endpoints    []endpoint          // token, revocation, introspection, standard ones
	byPath       map[string]endpoint // the endpoints by lower-case, cleaned literal path
	protectMatch caddyhttp.MatchPath
	clients      map[string]*Client
	decoy        secretVerifier
	scopes       []string
	identityKey  string // identity header, lower case, '_' as '-'
	ttl          time.Duration
	logger       *zap.Logger
	audit        *zap.Logger // issuance, revocation and refusals, at Info
	liveKey      string      // this handler's entry in liveHandlers
	portal       *portal     // nil when Portal is off
}

// ScopeRule names the scope that requests to some protected paths need,
// whatever their method.
type ScopeRule struct {
	// Paths are path patterns, in Caddy path matcher syntax.
	Paths []string `json:"paths"`
	// Scope is the one scope a token must carry for these paths.
	Scope string `json:"scope"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.outergate",
		New: func() caddy.Module { return new(Handler) },
	}
}

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
	if err := h.provisionPortal(); err != nil {
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

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripHeader(r.Header, h.identityKey)
	if ep, ok := h.endpointFor(r); ok {
		return ep.serve(w, r)
	}
	if ok, err := h.servePortal(w, r); ok {
		return err
	}
	if h.matches(h.protectMatch, r) {
		return h.serveProtected(w, r, next)
	}
	return next.ServeHTTP(w, r)
}

// endpointFor finds the endpoint a request is for. The path is cleaned as
// Caddy's path matcher cleans it (lower case, dot segments, doubled
// slashes); the ";param" and backslash spellings go through the matchers.
func (h *Handler) endpointFor(r *http.Request) (endpoint, bool) {
	if strings.ContainsAny(r.URL.Path, ";\\") {
		for _, ep := range h.endpoints {
			if h.matches(ep.match, r) {
				return ep, true
			}
		}
		return endpoint{}, false
	}
	ep, ok := h.byPath[caddyhttp.CleanPath(strings.ToLower(r.URL.Path), true)]
	return ep, ok
}

// endpoint is one path outergate answers itself.
type endpoint struct {
	match caddyhttp.MatchPath
	serve func(http.ResponseWriter, *http.Request) error
}

// matches runs Caddy's path matcher on the request, and once more on a copy
// whose path has ";params" and backslashes removed, because many legacy
// backends (servlet containers, IIS) route those spellings to the same place.
func (h *Handler) matches(m caddyhttp.MatchPath, r *http.Request) bool {
	if m.Match(r) {
		return true
	}
	if !strings.ContainsAny(r.URL.Path, ";\\") {
		return false
	}
	u := *r.URL
	u.Path = stripPathParams(strings.ReplaceAll(u.Path, "\\", "/"))
	u.RawPath = ""
	r2 := *r
	r2.URL = &u
	return m.Match(&r2)
}

// exactPath matches p with and without a trailing slash.
func exactPath(p string) caddyhttp.MatchPath {
	trimmed := strings.TrimSuffix(p, "/")
	if trimmed == "" {
		return caddyhttp.MatchPath{p}
	}
	return caddyhttp.MatchPath{trimmed, trimmed + "/"}
}

// subPath joins a path and a relative one with exactly one slash.
func subPath(base, rel string) string {
	return strings.TrimSuffix(base, "/") + "/" + rel
}

// stripPathParams removes ";..." from every segment of a path.
func stripPathParams(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			segs[i] = seg[:j]
		}
	}
	return strings.Join(segs, "/")
}

// respond writes an apiError; a failure to write is only logged, since the
// client is gone.
func (h *Handler) respond(w http.ResponseWriter, e *apiError) error {
	if err := writeAPIError(w, e); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		h.logger.Debug("writing envelope", zap.Error(err))
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// Package outergate is a Caddy v2 plugin that turns Caddy into an OAuth2
// client-credentials gateway in front of a legacy device platform: it issues
// tokens itself, checks `Authorization: Bearer` on the protected paths, keeps
// every answer in the platform's JSON envelope and lets Caddy's reverse_proxy
// carry the device calls upstream.
package outergate

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// handlerModuleID is the Handler's module ID, which is also its logger's
// name.
const handlerModuleID = "http.handlers.outergate"

// Defaults of the Handler's config (docs/API.md lists the endpoints and
// codes; README.md the directives).
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
	// prefix, and the spellings legacy backends fold (";param",
	// backslashes, NTFS streams, trailing dots and spaces) match too; every
	// path pattern of the handler matches this way. Default:
	// ["/outer/device/*"].
	Protect []string `json:"protect,omitempty"`

	// TokenTTL is the lifetime of an issued token; `expires_in` reports it
	// in whole seconds. Default: 36000s (the platform's value, docs/API.md).
	TokenTTL caddy.Duration `json:"token_ttl,omitempty"`

	// Scope is the space-separated set of scopes granted to a client that
	// has no scope of its own. GET, HEAD and OPTIONS on protected paths need
	// "read"; every other method needs "write". Default: "read write groups".
	Scope string `json:"scope,omitempty"`

	// ScopeRules override, per path pattern (matched like Protect), the
	// scope a request to a protected path needs; the first rule whose
	// pattern matches wins.
	// Default: none (GET, HEAD and OPTIONS need "read", other methods
	// "write").
	ScopeRules []ScopeRule `json:"scope_rules,omitempty"`

	// Clients are the integrators allowed to obtain tokens.
	Clients []Client `json:"clients,omitempty"`

	// AuthMethod is the client authentication method of every client that
	// sets none: "basic", "post" or "both" (see Client.AuthMethod).
	// Default: "both".
	AuthMethod string `json:"auth_method,omitempty"`

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

	// MaxTokensPerClient bounds the records a store keeps for one client,
	// live tokens and revoked tombstones together: issuing one more evicts
	// a tombstone first, else that client's oldest token, so that a client
	// looping on the token endpoint (and on revocation) cannot grow the
	// store without bound. Default: 100.
	MaxTokensPerClient int `json:"max_tokens_per_client,omitempty"`

	// RateLimit is every client's rate limit on protected requests (a
	// token bucket: Requests per Period, bursts of Burst), unless the
	// client sets its own. Counted in the store: with Redis, exactly across
	// instances. Default: none.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	// Quota is every client's request quota on protected requests per
	// fixed window, unless the client sets its own. Default: none.
	Quota *Quota `json:"quota,omitempty"`

	// MaxInFlight is how many protected requests of one client this
	// instance proxies at once, unless the client sets its own; one more
	// is refused at once with 429. Default: 0 (no cap).
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// RateLimitFailOpen lets protected requests through uncounted when
	// the store cannot count the limits (Redis down). Default: false: they
	// are refused with 503 + 23090, like a token the store cannot check.
	RateLimitFailOpen bool `json:"rate_limit_fail_open,omitempty"`

	// RateLimitClientMetrics also counts limit refusals per client id, in
	// outergate_rate_limited_by_client_total (one series per client and
	// reason). Default: false.
	RateLimitClientMetrics bool `json:"rate_limit_client_metrics,omitempty"`

	// AllowWebSocket lists the path patterns (Caddy path matcher syntax,
	// matched like Protect) where a WebSocket upgrade may pass; on a
	// protected path it is checked like any request first (token, scope,
	// parameters). Every other protocol upgrade, h2c and CONNECT tunnels
	// are refused on every path with 400 + 23010. Default: none.
	AllowWebSocket []string `json:"allow_websocket,omitempty"`

	// OpaqueBody lists the media types (e.g. "text/plain") a protected
	// request's body may have without being inspected; "*" admits any
	// body, also one without Content-Type or with a Content-Encoding.
	// Such bodies are forwarded unread by the parameter checks, which then
	// look at the query string only. Default: none (only form and JSON
	// bodies without Content-Encoding; others get 415 + 23010).
	OpaqueBody []string `json:"opaque_body,omitempty"`

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

	// Built once in Provision; see docs/ARCHITECTURE.md.
	routes  *routes     // endpoint table and protected paths
	guard   guard       // upgrades and short names, on every path
	auth    *clientAuth // client authentication and its throttles
	protect *protector  // Bearer, scope and parameter checks, normalization
	limits  *limits     // per-client rate limits, quotas and in-flight caps
	store   Store       // the configured store behind timedStore
	clients map[string]*Client
	managed *managedView // the clients managed through the admin API
	scopes  []string     // the default scopes, parsed
	auths   authMethods  // the default auth_method, parsed
	ttl     time.Duration
	logger  *zap.Logger
	audit   auditLog
	// identityKey is the identity header's name folded (lower case, '_' as
	// '-'), to strip client-sent copies in any spelling.
	identityKey string
	liveKey     string  // this handler's entry in liveHandlers (admin API)
	portal      *portal // the developer portal; nil when Portal is off
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
		ID:  handlerModuleID,
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler: it strips client-sent
// identity headers, then dispatches to an endpoint outergate answers
// itself, to the protector, or untouched to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	stripHeader(r.Header, h.identityKey)
	rp := newRequestPath(r.URL.Path) // lowered and cleaned once, for every pattern
	if ep, ok := h.routes.endpointFor(r, &rp); ok {
		return ep.serve(w, r) // answered here, never relayed: an Upgrade is ignored
	}
	if ok, err := h.servePortal(w, r); ok {
		return err
	}
	// Everything below may reach next (reverse_proxy).
	if aerr := h.guard.check(r, &rp); aerr != nil {
		h.audit.refusal(r, "request refused", aerr)
		return envelopeRenderer{h.logger}.failure(w, aerr)
	}
	if h.routes.protectedPath(r, &rp) {
		return h.protect.serve(w, r, &rp, next)
	}
	scrubTrailers(r, h.identityKey)
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

package outergate

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// requiredScope is the scope a request to a protected path needs: that of
// the first matching scope rule, else the method's.
func (h *Handler) requiredScope(r *http.Request) string {
	for i, m := range h.scopeMatch {
		if h.matches(m, r) {
			return h.ScopeRules[i].Scope
		}
	}
	return requiredScope(r.Method)
}

// requiredScope is the scope a method needs on a protected path.
func requiredScope(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return "read"
	}
	return "write"
}

// hasScope reports whether the space-separated scope holds want, without
// allocating.
func hasScope(scope, want string) bool {
	for scope != "" {
		var s string
		s, scope, _ = strings.Cut(scope, " ")
		if s == want {
			return true
		}
	}
	return false
}

// serveProtected checks the token, its scope and the required parameters,
// then hands the request, stripped of its credentials and carrying the
// verified identity, to next.
func (h *Handler) serveProtected(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rec, outcome, aerr, err := h.validate(r)
	validations[outcome].Inc()
	if err != nil {
		return h.storeError(w, "loading token", err)
	}
	if aerr != nil {
		return h.respond(w, aerr)
	}
	if aerr := methodOverride(r.Header); aerr != nil {
		h.auditRefusal(r, "method override refused", aerr, zap.String("client_id", rec.ClientID))
		return h.respond(w, aerr)
	}
	if aerr := h.checkParams(r); aerr != nil {
		h.auditRefusal(r, "parameters refused", aerr, zap.String("client_id", rec.ClientID))
		return h.respond(w, aerr)
	}

	r.Header.Del("Authorization")
	r.Header.Set(h.IdentityHeader, rec.ClientID)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", rec.ClientID)
	repl.Set("http.auth.user.scope", rec.Scope)
	return h.proxy(w, r, next)
}

// validate checks the request's Bearer token and its scope. outcome names
// the result for the metrics: ok, missing, invalid, expired, revoked,
// insufficient_scope or store_error.
func (h *Handler) validate(r *http.Request) (rec TokenRecord, outcome string, aerr *apiError, err error) {
	token, aerr := bearerToken(r)
	if aerr != nil {
		outcome = "invalid"
		if aerr.header.Get("WWW-Authenticate") == bearerChallenge {
			outcome = "missing"
		}
		h.auditRefusal(r, "bearer refused", aerr)
		return rec, outcome, aerr, nil
	}
	key := hashToken(token)
	rec, found, err := h.store.Load(r.Context(), key)
	if err != nil {
		return rec, "store_error", nil, err
	}
	switch {
	case rec.Revoked:
		outcome, aerr = "revoked", invalidToken("access token revoked")
	case !found:
		outcome, aerr = "invalid", invalidToken("invalid access token")
	case rec.expired(time.Now()):
		outcome, aerr = "expired", invalidToken("access token expired")
	case h.clients[rec.ClientID] == nil:
		outcome, aerr = "invalid", invalidToken("invalid access token")
	default:
		if want := h.requiredScope(r); !hasScope(rec.Scope, want) {
			outcome = "insufficient_scope"
			aerr = newAPIError(http.StatusForbidden, CodeInsufficientScope, "insufficient scope: "+want+" required",
				"WWW-Authenticate", `Bearer realm="outer", error="insufficient_scope", scope="`+want+`"`)
		}
	}
	if aerr != nil {
		h.auditRefusal(r, "bearer refused", aerr, zap.String("client_id", rec.ClientID), zap.String("token_fp", key.Fingerprint()))
		return rec, outcome, aerr, nil
	}
	return rec, "ok", nil, nil
}

// methodOverrideHeaders make some backends (Rails, Express, Spring,
// ASP.NET) run another method than the one the scope check saw.
var methodOverrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// methodOverride refuses a request that asks the upstream to change its
// method, so that a read-only token cannot write.
func methodOverride(h http.Header) *apiError {
	for _, name := range methodOverrideHeaders {
		if _, ok := h[name]; ok {
			return badRequest(name + " is not allowed")
		}
	}
	return nil
}

// checkParams reads a request body whole (limit 64 KiB, 413 past it) and
// puts it back byte for byte, so that a broken body is refused here rather
// than half-forwarded; then it enforces RequireParams: each present exactly
// once, as a non-empty string, in the query string or a form or JSON body.
func (h *Handler) checkParams(r *http.Request) *apiError {
	body := params{}
	if hasBody(r) {
		raw, aerr := readBody(r)
		if aerr != nil {
			return aerr
		}
		restoreBody(r, raw)
		if kind := contentKind(r.Header.Get("Content-Type")); kind != bodyOther {
			p, err := parseBodyParams(kind, raw)
			if err != nil {
				return badRequest(err.Error())
			}
			body = p
		}
	}
	if _, sent := body["access_token"]; sent {
		// RFC 6750 §2: one method per request, and here only the header.
		return invalidToken("access token must be sent only in the Authorization header")
	}
	if len(h.RequireParams) == 0 {
		return nil
	}
	query := params{}
	if r.URL.RawQuery != "" {
		q, err := parseFormParams(r.URL.RawQuery)
		if err != nil {
			return badRequest("malformed query string")
		}
		query = q
	}
	for _, name := range h.RequireParams {
		_, found, err := single(name, query, body)
		if err != nil {
			return badRequest(err.Error())
		}
		if !found {
			return badRequest(name + " is required")
		}
	}
	return nil
}

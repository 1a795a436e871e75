package outergate

import (
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// protector guards the protected paths: the Bearer token (bearer.go), its
// scope, the required parameters; then it hands the request, stripped of
// its credentials and carrying the verified identity, to the next handler
// through the normalizer. Provision builds it once.
type protector struct {
	tokens         TokenStore
	clients        map[string]*Client // a token of a removed client is refused
	managed        *managedView       // so is one of a deleted managed client
	scopeRules     []scopeRule
	requireParams  []string
	opaqueBody     []string // media types whose bodies pass uninspected ("*": any)
	identityHeader string
	normalize      *normalizer
	limits         *limits // the clients' rate limits, quotas and in-flight caps
	audit          auditLog
	logger         *zap.Logger
	out            envelopeRenderer
}

// scopeRule is a provisioned ScopeRule.
type scopeRule struct {
	paths pathPatterns
	scope string
}

// newScopeRules checks and provisions the scope rules.
func newScopeRules(ctx caddy.Context, rules []ScopeRule) ([]scopeRule, error) {
	var out []scopeRule
	for i, rule := range rules {
		if len(rule.Paths) == 0 || rule.Scope == "" || strings.ContainsRune(rule.Scope, ' ') {
			return nil, fmt.Errorf("scope rule %d: needs paths and one scope", i)
		}
		pp, err := newPathPatterns(ctx, slices.Clone(rule.Paths))
		if err != nil {
			return nil, err
		}
		out = append(out, scopeRule{paths: pp, scope: rule.Scope})
	}
	return out, nil
}

// serve checks the token, its scope and the required parameters, then
// hands the request to next. rp is r's path as ServeHTTP cleaned it.
func (p *protector) serve(w http.ResponseWriter, r *http.Request, rp *requestPath, next caddyhttp.Handler) error {
	rec, outcome, aerr, err := p.checkToken(r, rp)
	countValidation(outcome)
	if err != nil {
		return p.out.failure(w, storeFailed(p.logger, "loading token", err))
	}
	if aerr != nil {
		return p.out.failure(w, aerr)
	}
	// The in-flight place first, so that a request it refuses takes
	// nothing from the rate limit or the quota.
	slot, aerr := p.limits.acquire(r, rec.ClientID)
	if aerr != nil {
		return p.out.failure(w, aerr)
	}
	defer slot.release()
	if aerr := p.limits.check(w, r, rec.ClientID); aerr != nil {
		return p.out.failure(w, aerr)
	}
	if aerr := methodOverride(r.Header); aerr != nil {
		p.audit.refusal(r, "method override refused", aerr, zap.String("client_id", rec.ClientID))
		return p.out.failure(w, aerr)
	}
	if aerr := p.checkParams(r); aerr != nil {
		p.audit.refusal(r, "parameters refused", aerr, zap.String("client_id", rec.ClientID))
		return p.out.failure(w, aerr)
	}
	if aerr := overrideParam(r); aerr != nil {
		p.audit.refusal(r, "method override refused", aerr, zap.String("client_id", rec.ClientID))
		return p.out.failure(w, aerr)
	}

	r.Header.Del("Authorization")
	r.Header.Set(p.identityHeader, rec.ClientID)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", rec.ClientID)
	repl.Set("http.auth.user.scope", rec.Scope)
	return p.normalize.proxy(w, r, next)
}

// checkToken checks the request's Bearer token and its scope; outcome
// names the result for the metrics.
func (p *protector) checkToken(r *http.Request, rp *requestPath) (rec TokenRecord, outcome validationOutcome, aerr *apiError, err error) {
	token, aerr := bearerToken(r)
	if aerr != nil {
		outcome = validationInvalid
		if aerr.header.Get("WWW-Authenticate") == bearerChallenge {
			outcome = validationMissing
		}
		p.audit.refusal(r, "bearer refused", aerr)
		return rec, outcome, aerr, nil
	}
	key := hashToken(token)
	rec, found, err := p.tokens.Load(r.Context(), key)
	if err != nil {
		return rec, validationStoreError, nil, err
	}
	switch {
	case rec.Revoked:
		outcome, aerr = validationRevoked, invalidToken("access token revoked")
	case !found:
		outcome, aerr = validationInvalid, invalidToken("invalid access token")
	case rec.expired(time.Now()):
		outcome, aerr = validationExpired, invalidToken("access token expired")
	default:
		client := lookupClient(p.clients, p.managed, rec.ClientID)
		if !client.binds(rec) {
			// A removed or deleted client, or a token another handler
			// issued (binding.go).
			outcome, aerr = validationInvalid, invalidToken("invalid access token")
			break
		}
		rec.Scope = client.currentScope(rec.Scope)
		if want := p.requiredScope(r, rp); !hasScope(rec.Scope, want) {
			outcome, aerr = validationInsufficientScope, insufficientScope(want)
		}
	}
	if aerr != nil {
		p.audit.refusal(r, "bearer refused", aerr, zap.String("client_id", rec.ClientID), zap.String("token_fp", key.Fingerprint()))
		return rec, outcome, aerr, nil
	}
	return rec, validationOK, nil, nil
}

// requiredScope is the scope a request to a protected path needs: that of
// the first matching scope rule, else the method's.
func (p *protector) requiredScope(r *http.Request, rp *requestPath) string {
	for _, rule := range p.scopeRules {
		if rule.paths.matchesPath(r, rp) {
			return rule.scope
		}
	}
	return methodScope(r.Method)
}

// methodScope is the scope a method needs on a protected path.
func methodScope(method string) string {
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

// checkParams reads a request body whole (limit 64 KiB, 413 past it) and
// puts it back byte for byte, so that a broken body is refused here rather
// than half-forwarded; the body's trailers are checked and dropped
// (trailers.go). A body outergate cannot inspect (no Content-Type, a media
// type other than form or JSON, any Content-Encoding) is refused with 415
// unless opaque_body admits it. Then it enforces RequireParams: each
// present exactly once, as a non-empty string, in the query string or a
// form or JSON body.
func (p *protector) checkParams(r *http.Request) *apiError {
	body := params{}
	if hasBody(r) {
		raw, aerr := readBody(r)
		if aerr != nil {
			return aerr
		}
		restoreBody(r, raw)
		if aerr := dropTrailers(r); aerr != nil {
			return aerr
		}
		if body, aerr = p.bodyParams(r.Header, raw); aerr != nil {
			return aerr
		}
	}
	if len(body.get("access_token")) > 0 {
		// RFC 6750 §2: one method per request, and here only the header.
		return invalidToken("access token must be sent only in the Authorization header")
	}
	if len(p.requireParams) == 0 {
		return nil
	}
	// The query string is scanned for the required names only
	// (queryparams.go), with url.ParseQuery's refusals.
	var buf [4]queryParam
	query := buf[:0]
	if len(p.requireParams) > len(buf) {
		query = make([]queryParam, 0, len(p.requireParams))
	}
	query = query[:len(p.requireParams)]
	if !scanQuery(r.URL.RawQuery, p.requireParams, query) {
		return badRequest("malformed query string")
	}
	for i, name := range p.requireParams {
		if aerr := requiredParam(name, query[i], body); aerr != nil {
			return aerr
		}
	}
	return nil
}

// bodyParams parses the parameters of a protected request's body, or
// refuses it with 415 when it cannot be inspected. An empty body has
// nothing to inspect; a body opaque_body admits yields no parameters.
func (p *protector) bodyParams(h http.Header, raw []byte) (params, *apiError) {
	if len(raw) == 0 {
		return params{}, nil
	}
	if aerr := repeatedContentType(h); aerr != nil {
		return params{}, aerr
	}
	ct := h.Get("Content-Type")
	if p.opaque(ct) {
		return params{}, nil
	}
	kind := contentKind(ct)
	switch {
	case ct == "":
		return params{}, unsupportedMedia("a request body needs a Content-Type: application/x-www-form-urlencoded or application/json")
	case kind == bodyOther:
		return params{}, unsupportedMedia("unsupported content type: use application/x-www-form-urlencoded or application/json")
	case contentEncoded(h):
		return params{}, unsupportedMedia("Content-Encoding is not supported on request bodies")
	}
	body, err := parseBodyParams(kind, raw)
	if err != nil {
		return params{}, badRequest(err.Error())
	}
	return body, nil
}

// opaque reports whether opaque_body admits a body of Content-Type ct
// unread: "*" any body, else its media type (parameters ignored, case
// folded) listed.
func (p *protector) opaque(ct string) bool {
	if len(p.opaqueBody) == 0 {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	for _, allowed := range p.opaqueBody {
		if allowed == "*" || (err == nil && strings.EqualFold(allowed, mt)) {
			return true
		}
	}
	return false
}

package outergate

import (
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file says where each request goes: the endpoint table (the paths
// outergate answers itself), the protected paths, and path matching with
// the spellings legacy backends treat as the same path.

// endpoint is one path outergate answers itself.
type endpoint struct {
	match caddyhttp.MatchPath // literal paths
	serve func(http.ResponseWriter, *http.Request) error
}

// operation is one client-authenticated POST operation (issue, revoke,
// introspect), written once and rendered by each endpoint family.
type operation struct {
	name    string // what failed, in the store-failure log
	message string // the envelope's message on success
	run     func(*http.Request) (data any, aerr *apiError, err error)
}

// endpointTable lists the endpoints of h's config: the envelope ones under
// token_path and, unless oauth2_token_path is off, the standard ones. A new
// endpoint is one more row here.
func (h *Handler) endpointTable() []endpoint {
	issue := operation{"issuing token", "token info", h.issueToken}
	revoke := operation{"revoking token", "token revoked", h.revoke}                    // RFC 7009
	introspect := operation{"introspecting token", "token introspection", h.introspect} // RFC 7662
	envelope, rfc := envelopeRenderer{h.logger}, rfcRenderer{h.logger}

	eps := []endpoint{
		{exactPath(h.TokenPath), h.serveOperation(issue, envelope)},
		{exactPath(subPath(h.TokenPath, "revoke/")), h.serveOperation(revoke, envelope)},
		{exactPath(subPath(h.TokenPath, "introspect/")), h.serveOperation(introspect, envelope)},
	}
	if h.OAuth2TokenPath != "off" {
		tok, rev, intro := oauth2Paths(h.OAuth2TokenPath)
		eps = append(eps,
			endpoint{exactPath(tok), h.serveOperation(issue, rfc)},
			endpoint{exactPath(rev), h.serveOperation(revoke, rfc)},
			endpoint{exactPath(intro), h.serveOperation(introspect, rfc)},
			endpoint{caddyhttp.MatchPath(metadataPaths(h.Issuer)), h.serveMetadata})
	}
	return eps
}

// serveOperation is what every client-authenticated endpoint shares: POST
// only, Cache-Control: no-store on every answer, the fail-closed answer on a
// store failure, and out's rendering.
func (h *Handler) serveOperation(op operation, out renderer) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		noStore(w)
		if r.Method != http.MethodPost {
			return out.failure(w, methodNotAllowed())
		}
		data, aerr, err := op.run(r)
		if err != nil {
			aerr = storeFailed(h.logger, op.name, err)
		}
		if aerr != nil {
			return out.failure(w, aerr)
		}
		return out.success(w, op.message, data)
	}
}

// routes finds what a request is for; Provision builds it once.
type routes struct {
	endpoints []endpoint
	epPaths   []pathPatterns      // the endpoints' paths as patterns, by index
	byPath    map[string]endpoint // the endpoints by lower-case, cleaned literal path
	protect   pathPatterns
}

// newRoutes provisions the patterns of the endpoints and of the protected
// paths (pathmatch.go: a "/*" pattern also covers its bare prefix).
func newRoutes(ctx caddy.Context, endpoints []endpoint, protect []string) (*routes, error) {
	rt := &routes{endpoints: endpoints}
	var err error
	if rt.protect, err = newPathPatterns(ctx, protect); err != nil {
		return nil, err
	}
	for _, ep := range endpoints {
		pp, err := newPathPatterns(ctx, ep.match)
		if err != nil {
			return nil, err
		}
		rt.epPaths = append(rt.epPaths, pp)
	}
	// Endpoint paths are literal: a map of their lower-case, cleaned form
	// answers what their path matchers would, with one clean per request.
	rt.byPath = make(map[string]endpoint)
	for _, ep := range endpoints {
		for _, p := range ep.match {
			if strings.ContainsAny(p, "*?[{%") {
				return nil, fmt.Errorf("endpoint path %q must be a literal path", p)
			}
			// Keyed as requests are looked up (rp.clean): a path
			// configured with capitals or doubled slashes must not be
			// missed, which would relay its request upstream.
			key := cleanLower(p)
			if _, taken := rt.byPath[key]; !taken {
				rt.byPath[key] = ep
			}
		}
	}
	return rt, nil
}

// endpointFor finds the endpoint a request is for. The path is cleaned as
// Caddy's path matcher cleans it (lower case, dot segments, doubled
// slashes); a path that has a folded spelling (pathmatch.go) goes through
// the endpoints' patterns.
func (rt *routes) endpointFor(r *http.Request, rp *requestPath) (endpoint, bool) {
	if strings.ContainsAny(rp.raw, foldChars) {
		for i, pp := range rt.epPaths {
			if pp.matchesPath(r, rp) {
				return rt.endpoints[i], true
			}
		}
		return endpoint{}, false
	}
	ep, ok := rt.byPath[rp.clean]
	return ep, ok
}

// protected reports whether a request needs a Bearer token.
func (rt *routes) protected(r *http.Request) bool {
	rp := newRequestPath(r.URL.Path)
	return rt.protectedPath(r, &rp)
}

// protectedPath is protected with the request's path already cleaned.
func (rt *routes) protectedPath(r *http.Request, rp *requestPath) bool {
	return rt.protect.matchesPath(r, rp)
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

// oauth2Paths derives the standard endpoints from oauth2_token_path:
// revoke and introspect sit beside the token endpoint.
func oauth2Paths(tokenPath string) (token, revoke, introspect string) {
	dir := path.Dir(strings.TrimSuffix(tokenPath, "/"))
	return tokenPath, path.Join(dir, "revoke"), path.Join(dir, "introspect")
}

// metadataPaths are where RFC 8414 §3 clients look: the well-known path,
// with the issuer's path appended when it has one; and where OpenID
// Connect Discovery clients look: the same under openid-configuration, with
// the issuer's path inserted (RFC 8414 §5) or in front (OpenID Connect
// Discovery 1.0 §4).
func metadataPaths(issuer string) []string {
	paths := []string{wellKnownMetadata, wellKnownOpenID}
	if u, err := url.Parse(issuer); err == nil && strings.Trim(u.Path, "/") != "" {
		p := strings.TrimSuffix(u.Path, "/")
		paths = append(paths, wellKnownMetadata+p, wellKnownMetadata+p+"/",
			wellKnownOpenID+p, wellKnownOpenID+p+"/", p+wellKnownOpenID)
	}
	return paths
}

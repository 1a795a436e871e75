package outergate

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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

// oauth2Paths derives the standard endpoints from oauth2_token_path:
// revoke and introspect sit beside the token endpoint.
func oauth2Paths(tokenPath string) (token, revoke, introspect string) {
	dir := path.Dir(strings.TrimSuffix(tokenPath, "/"))
	return tokenPath, path.Join(dir, "revoke"), path.Join(dir, "introspect")
}

// metadataPaths are where RFC 8414 §3 clients look: the well-known path,
// with the issuer's path appended when it has one.
func metadataPaths(issuer string) []string {
	paths := []string{wellKnownMetadata}
	if u, err := url.Parse(issuer); err == nil && strings.Trim(u.Path, "/") != "" {
		p := strings.TrimSuffix(u.Path, "/")
		paths = append(paths, wellKnownMetadata+p, wellKnownMetadata+p+"/")
	}
	return paths
}

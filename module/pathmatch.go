package outergate

import (
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file holds the one path-matching rule of the handler. Every pattern
// outergate holds (protect, require_scope, allow_websocket, the endpoint
// paths) is a pathPatterns, so that a spelling one of them sees is seen by
// all of them.

// pathPatterns is a provisioned set of path patterns in Caddy path matcher
// syntax. A pattern ending in "/*" also covers its bare prefix ("/a/b/*"
// matches "/a/b"). A request matches when Caddy's matcher matches its path
// (lower case, dot segments, doubled slashes) or the path's folded spelling
// (see foldPath).
type pathPatterns struct {
	match caddyhttp.MatchPath
}

// newPathPatterns expands the bare prefixes of patterns and provisions the
// matcher.
func newPathPatterns(ctx caddy.Context, patterns []string) (pathPatterns, error) {
	var m caddyhttp.MatchPath
	for _, p := range patterns {
		m = append(m, p)
		if bare := strings.TrimSuffix(p, "/*"); bare != p && bare != "" {
			m = append(m, bare)
		}
	}
	if err := m.Provision(ctx); err != nil {
		return pathPatterns{}, err
	}
	return pathPatterns{match: m}, nil
}

// matches reports whether the request's path, as it is or folded, matches.
func (pp pathPatterns) matches(r *http.Request) bool {
	if len(pp.match) == 0 {
		return false
	}
	if pp.match.Match(r) {
		return true
	}
	folded, changed := foldPath(r.URL.Path)
	if !changed {
		return false
	}
	u := *r.URL
	u.Path, u.RawPath = folded, ""
	r2 := *r
	r2.URL = &u
	return pp.match.Match(&r2)
}

// foldChars are the bytes a path must hold for foldPath to change it; a
// path without any is matched once.
const foldChars = ";\\:. "

// foldPath returns the spelling of p that servlet containers and IIS route
// to: backslashes as slashes, and in every segment, ";params" removed, an
// NTFS stream suffix (":$DATA", "::$DATA", ":name:$DATA",
// ":$I30:$INDEX_ALLOCATION") removed from the first ':', and trailing dots
// and spaces removed ("device." and "device " are "device" on Windows). The
// dot segments "." and ".." are left for Caddy's cleaning. changed is false
// when p holds none of foldChars.
//
// Cutting at ':' and trimming dots also folds spellings no backend uses;
// that only ever makes a pattern match more requests, which for protect and
// require_scope means more checks, never fewer.
func foldPath(p string) (folded string, changed bool) {
	if !strings.ContainsAny(p, foldChars) {
		return p, false
	}
	segs := strings.Split(strings.ReplaceAll(p, "\\", "/"), "/")
	for i, seg := range segs {
		if j := strings.IndexAny(seg, ";:"); j >= 0 {
			seg = seg[:j]
		}
		if seg != "." && seg != ".." {
			seg = strings.TrimRight(seg, ". ")
		}
		segs[i] = seg
	}
	folded = strings.Join(segs, "/")
	return folded, folded != p
}

package outergate

import (
	"net/http"
	"path"
	"runtime"
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
	// compiled is match precompiled to run on a requestPath, so that a
	// request's path is lowered and cleaned once for every pattern; nil
	// when a pattern needs Caddy's matcher itself (placeholders, escaped
	// "%" patterns, "//"; or on Windows, where Caddy folds paths its own
	// way first).
	compiled []compiledPattern
}

// patternKind is how Caddy's path matcher treats a pattern.
type patternKind uint8

const (
	patternAll       patternKind = iota // "*"
	patternSubstring                    // "*x*"
	patternSuffix                       // "*x"
	patternPrefix                       // "x*"
	patternGlob                         // path.Match, which is equality without wildcards
)

// compiledPattern is one provisioned (lower-case) pattern and its kind.
type compiledPattern struct {
	kind patternKind
	text string // the pattern without the wildcards its kind implies
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
	return pathPatterns{match: m, compiled: compilePatterns(m)}, nil
}

// compilePatterns sorts each provisioned pattern into the case of
// caddyhttp.MatchPath.MatchWithError that handles it, or returns nil when
// one of them takes a case this file does not reproduce (see
// pathPatterns.compiled).
func compilePatterns(m caddyhttp.MatchPath) []compiledPattern {
	if runtime.GOOS == "windows" {
		return nil
	}
	out := make([]compiledPattern, 0, len(m))
	for _, p := range m {
		if strings.ContainsAny(p, "{%") || strings.Contains(p, "//") {
			return nil
		}
		stars := strings.Count(p, "*")
		switch {
		case p == "*":
			out = append(out, compiledPattern{kind: patternAll})
		case stars == 2 && strings.HasPrefix(p, "*") && strings.HasSuffix(p, "*"):
			out = append(out, compiledPattern{kind: patternSubstring, text: p[1 : len(p)-1]})
		case stars == 1 && strings.HasPrefix(p, "*"):
			out = append(out, compiledPattern{kind: patternSuffix, text: p[1:]})
		case stars == 1 && strings.HasSuffix(p, "*"):
			out = append(out, compiledPattern{kind: patternPrefix, text: p[:len(p)-1]})
		default:
			out = append(out, compiledPattern{kind: patternGlob, text: p})
		}
	}
	return out
}

// matchClean runs the compiled patterns on a cleaned path, as
// MatchWithError runs them on the path it cleans.
func matchClean(patterns []compiledPattern, clean string) bool {
	for _, p := range patterns {
		var ok bool
		switch p.kind {
		case patternAll:
			ok = true
		case patternSubstring:
			ok = strings.Contains(clean, p.text)
		case patternSuffix:
			ok = strings.HasSuffix(clean, p.text)
		case patternPrefix:
			ok = strings.HasPrefix(clean, p.text)
		default:
			ok, _ = path.Match(p.text, clean)
		}
		if ok {
			return true
		}
	}
	return false
}

// requestPath is a request's path in the forms the patterns are matched
// on, computed once per request (ServeHTTP) and shared by every
// pathPatterns: lower case and cleaned as Caddy's path matcher cleans it
// (dot segments, doubled slashes), and the same of its folded spelling.
type requestPath struct {
	raw       string // r.URL.Path
	clean     string
	folded    string // the folded spelling, cleaned; set when hasFolded
	hasFolded bool   // raw has a folded spelling other than itself
}

// newRequestPath lowers and cleans p, and its folded spelling, once.
func newRequestPath(p string) requestPath {
	rp := requestPath{raw: p, clean: cleanLower(p)}
	if folded, changed := foldPath(p); changed {
		rp.folded, rp.hasFolded = cleanLower(folded), true
	}
	return rp
}

// cleanLower is caddyhttp.CleanPath(strings.ToLower(p), true), the path
// Caddy's matcher compares a pattern without "//" to, without the
// allocation CleanPath makes to put back a trailing slash that path.Clean
// took off.
func cleanLower(p string) string {
	p = strings.ToLower(p)
	cleaned := path.Clean(p)
	if cleaned == "/" || !strings.HasSuffix(p, "/") {
		return cleaned
	}
	if len(cleaned)+1 == len(p) && strings.HasPrefix(p, cleaned) {
		return p // cleaned + "/", which p already is
	}
	return cleaned + "/"
}

// matchesPath reports whether a request's path (rp, of r), as it is or
// folded, matches.
func (pp pathPatterns) matchesPath(r *http.Request, rp *requestPath) bool {
	if pp.compiled == nil {
		return pp.matches(r)
	}
	return matchClean(pp.compiled, rp.clean) || (rp.hasFolded && matchClean(pp.compiled, rp.folded))
}

// matches reports whether the request's path, as it is or folded, matches,
// through Caddy's matcher.
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

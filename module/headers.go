package outergate

import (
	"net/http"
	"strings"
)

// normalizeHeaderName folds a header name the way lenient upstreams read
// it: lower case, with '_' taken as '-' (CGI, PHP, some proxies).
func normalizeHeaderName(name string) string {
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// sameHeaderName reports whether name folds to key (see normalizeHeaderName)
// without allocating.
func sameHeaderName(name, key string) bool {
	if len(name) != len(key) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != key[i] {
			return false
		}
	}
	return true
}

// stripHeader removes every spelling of the header named by key from h, and
// its name from Connection, so that a client cannot make reverse_proxy drop a
// header outergate sets later.
func stripHeader(h http.Header, key string) {
	for name := range h {
		if sameHeaderName(name, key) {
			delete(h, name)
		}
	}
	conn, ok := h["Connection"]
	if !ok {
		return
	}
	var kept []string
	changed := false
	for _, v := range conn {
		for opt := range strings.SplitSeq(v, ",") {
			opt = strings.TrimSpace(opt)
			if opt == "" {
				continue
			}
			if sameHeaderName(opt, key) {
				changed = true
				continue
			}
			kept = append(kept, opt)
		}
	}
	if !changed {
		return
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = []string{strings.Join(kept, ", ")}
}

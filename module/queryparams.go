package outergate

import (
	"net/url"
	"strings"
)

// This file holds the required-parameter check's reading of the query
// string: one pass over the raw query that refuses what url.ParseQuery
// refuses and keeps only the required names, instead of a map of every
// parameter built per request.

// maxScannedParams is the most query parameters scanQuery reads itself; a
// longer query goes through url.ParseQuery, so that net/url's own limit on
// the number of parameters (GODEBUG urlmaxqueryparams, 10,000 by default)
// answers as before.
const maxScannedParams = 64

// queryParam is what the query string holds of one required parameter:
// how many times it appears, and its last value, decoded.
type queryParam struct {
	n     int
	value string
}

// scanQuery fills found[i] for names[i] from the raw query string and
// reports whether the query is well-formed: ok is false exactly when
// url.ParseQuery(raw) returns an error (a ';' in a parameter, a malformed
// percent escape in a name or a value, too many parameters), and the
// counts and values are those of its result.
func scanQuery(raw string, names []string, found []queryParam) (ok bool) {
	if strings.Count(raw, "&") >= maxScannedParams {
		vals, err := url.ParseQuery(raw)
		if err != nil {
			return false
		}
		for i, name := range names {
			if vs := vals[name]; len(vs) > 0 {
				found[i] = queryParam{n: len(vs), value: vs[len(vs)-1]}
			}
		}
		return true
	}
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(seg, ";") {
			return false
		}
		if seg == "" {
			continue
		}
		key, value, _ := strings.Cut(seg, "=")
		key, err := url.QueryUnescape(key) // no allocation without '%' or '+'
		if err != nil {
			return false
		}
		matched := false
		for i, name := range names {
			if key != name {
				continue
			}
			if !matched {
				if value, err = url.QueryUnescape(value); err != nil {
					return false
				}
				matched = true
			}
			found[i].n++
			found[i].value = value
		}
		if !matched && !validEscapes(value) {
			return false
		}
	}
	return true
}

// validEscapes reports whether url.QueryUnescape(s) succeeds: every '%'
// is followed by two hex digits.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// requiredParam judges one required parameter as single(name, query,
// body) does (body.go): q is what the query holds of it, body the
// parameters of the request's body. The answers, messages included, are
// single's.
func requiredParam(name string, q queryParam, body params) *apiError {
	n, value := q.n, q.value
	for _, v := range body.get(name) {
		n++
		if v.notString {
			return badRequest(name + " must be a string")
		}
		value = v.value
	}
	switch {
	case n == 0:
		return badRequest(name + " is required")
	case n > 1:
		return badRequest("duplicate parameter " + name)
	case value == "":
		return badRequest(name + " must not be empty")
	case hasControl(value):
		return badRequest(name + " holds control characters")
	}
	return nil
}

package outergate

import (
	"bytes"
	"encoding/json"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// This file holds the refusal of method overrides: a header or a parameter
// that makes a backend run another method than the request's. Rails
// (Rack::MethodOverride), Laravel and Symfony, Spring's HiddenHttpMethodFilter,
// Slim, CakePHP, Express's method-override and ASP.NET read `_method` in a
// form body, the query string or (Laravel) a JSON body, or one of the
// X-HTTP-Method-Override headers, so a read-only token's POST or GET would
// become a PUT or a DELETE behind the scope check. Every spelling is refused
// (400 + 23010), whatever method it names: a client of the device API can
// send the real method, and the scope check must see the method the backend
// runs.

// overrideNames are the header and parameter names of a method override,
// as overrideFold folds them.
var overrideNames = [...]string{"x-http-method-override", "x-http-method", "x-method-override", "-method"}

// overrideFold folds a header or parameter name the way the backends read
// it: ASCII lower case, encoding/json's folding of other letters (foldKey:
// "overrıde" is "override"), '_', '.' and ' ' taken as '-' (CGI and PHP make
// "X_HTTP_METHOD_OVERRIDE" the header "X-HTTP-Method-Override", and PHP turns
// ".method" and " method" into "_method"), leading spaces dropped (PHP) and
// an array suffix cut ("_method[]" is "_method" in PHP and Rack).
func overrideFold(name string) string {
	if i := strings.IndexByte(name, '['); i > 0 {
		name = name[:i]
	}
	name = strings.TrimLeft(name, " ")
	return strings.Map(func(r rune) rune {
		switch r {
		case '_', '.', ' ':
			return '-'
		}
		if r >= 0x80 {
			r = []rune(foldKey(string(r)))[0]
		}
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}, name)
}

// isOverrideName reports whether a header or parameter name asks for a
// method override.
func isOverrideName[T string | []byte](name T) bool {
	if !mentionsMethod(name) {
		return false
	}
	folded := overrideFold(string(name))
	for _, n := range overrideNames {
		if folded == n {
			return true
		}
	}
	return false
}

// mentionsMethod reports whether s holds "method" in any ASCII case: every
// override name does, so text without it (and without an escape that could
// spell it) needs no closer look.
func mentionsMethod[T string | []byte](s T) bool {
	const word = "method"
	for i := 0; i+len(word) <= len(s); i++ {
		j := 0
		for ; j < len(word); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != word[j] {
				break
			}
		}
		if j == len(word) {
			return true
		}
	}
	return false
}

// methodOverride refuses a request whose headers (or trailers, trailers.go)
// ask the upstream to change its method, so that a read-only token cannot
// write. Names are folded as the backends fold them (overrideFold).
func methodOverride(h http.Header) *apiError {
	for name := range h {
		if isOverrideName(name) {
			return badRequest(name + " is not allowed")
		}
	}
	return nil
}

// overrideParam refuses a protected request that asks for a method override
// in a parameter: in the query string, or in a form, JSON (application/json
// and any +json type, as Laravel reads them) or multipart form body. It
// reads the body as it will be forwarded, so it runs after the body was
// read and put back (protector.checkParams); a body of another type is not
// looked into.
func overrideParam(r *http.Request) *apiError {
	if _, ok := overrideInForm(r.URL.RawQuery); ok {
		return overrideRefused()
	}
	if !hasBody(r) {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	// Classified as leniently as the backends read it, since opaque_body
	// may admit a Content-Type mime cannot parse: the media type is what
	// comes before any ';' (PHP), and "json" anywhere makes a JSON body
	// (Laravel's isJson looks for "/json" or "+json").
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	var scans []func([]byte) (string, bool)
	if mt == "application/x-www-form-urlencoded" {
		scans = append(scans, overrideInForm[[]byte])
	}
	if mentionsJSON(ct) {
		scans = append(scans, overrideInJSON)
	}
	if mt == "multipart/form-data" {
		_, mparams, _ := mime.ParseMediaType(ct)
		boundary := mparams["boundary"]
		scans = append(scans, func(b []byte) (string, bool) { return overrideInMultipart(b, boundary) })
	}
	if len(scans) == 0 {
		return nil
	}
	raw, aerr := forwardedBody(r)
	if aerr != nil {
		return aerr
	}
	for _, scan := range scans {
		if _, ok := scan(raw); ok {
			return overrideRefused()
		}
	}
	return nil
}

// overrideRefused is the refusal of an override parameter. It does not
// repeat the parameter's name: a client chose it (an array suffix may hold
// anything), and the message goes to the audit log too.
func overrideRefused() *apiError {
	return badRequest("method override parameter (_method) is not allowed: send the real method")
}

// overrideInForm finds an override name among the keys of a query string
// or form body. Keys are split on '&' and on ';' (which Rack 2 also takes as
// a separator), and percent-decoded ("%5Fmethod" is "_method"); a key that
// does not decode is looked at as it is.
func overrideInForm[T string | []byte](s T) (string, bool) {
	for len(s) > 0 {
		end := 0
		for end < len(s) && s[end] != '&' && s[end] != ';' {
			end++
		}
		pair := s[:end]
		if end < len(s) {
			end++
		}
		s = s[end:]
		keyEnd := 0
		escaped := false
		for keyEnd < len(pair) && pair[keyEnd] != '=' {
			escaped = escaped || pair[keyEnd] == '%' || pair[keyEnd] == '+'
			keyEnd++
		}
		key := pair[:keyEnd]
		if !escaped {
			if isOverrideName(key) {
				return string(key), true
			}
			continue
		}
		k, err := url.QueryUnescape(string(key))
		if err != nil {
			k = string(key)
		}
		if isOverrideName(k) {
			return k, true
		}
	}
	return "", false
}

// overrideInJSON finds an override name among the keys of a JSON object
// (its top level, where backends look). A body that is no JSON object has
// none: checkParams refuses a malformed one unless opaque_body admits it.
func overrideInJSON(b []byte) (string, bool) {
	if !mentionsMethod(b) && bytes.IndexByte(b, '\\') < 0 {
		return "", false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if key, _ := tok.(string); isOverrideName(key) {
			return key, true
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return "", false
		}
	}
	return "", false
}

// overrideInMultipart finds an override name among the field names of a
// multipart/form-data body (which reaches the backend only through
// opaque_body). Its parts stop at the first one Go cannot read.
func overrideInMultipart(b []byte, boundary string) (string, bool) {
	// '%' (RFC 2231 names) and '\\' (escapes in a quoted name) may spell
	// the name without "method" in the bytes.
	if boundary == "" || (!mentionsMethod(b) && bytes.IndexByte(b, '%') < 0 && bytes.IndexByte(b, '\\') < 0) {
		return "", false
	}
	mr := multipart.NewReader(bytes.NewReader(b), boundary)
	for {
		part, err := mr.NextPart()
		if err != nil {
			return "", false
		}
		// Go unescapes a quoted name's quoted-pairs only before special
		// characters ("\e" stays); a parser that follows the quoted-pair
		// rule (RFC 9110 §5.6.4: "\" and any visible character) unescapes
		// every one, so the name is also looked at that way.
		name := part.FormName()
		if isOverrideName(name) || (strings.IndexByte(name, '\\') >= 0 && isOverrideName(strings.ReplaceAll(name, `\`, ""))) {
			return name, true
		}
	}
}

// mentionsJSON reports whether a Content-Type holds "json" in any case.
func mentionsJSON(ct string) bool {
	for i := 0; i+4 <= len(ct); i++ {
		if strings.EqualFold(ct[i:i+4], "json") {
			return true
		}
	}
	return false
}

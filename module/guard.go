package outergate

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/net/http/httpguts"
)

// This file holds the checks every request that may reach the next handler
// (reverse_proxy) goes through, on protected paths and all others alike:
// protocol upgrades, path rewrite headers and Windows 8.3 short names, all
// of which would let a request past the gateway's view of it. The
// endpoints outergate answers itself (token, revocation, introspection,
// metadata, portal) never relay a request, so they are not guarded: an
// Upgrade there is ignored.

// guard refuses what the rest of the handler cannot see through.
// Provision builds it once.
type guard struct {
	websocket pathPatterns // allow_websocket: where a WebSocket upgrade may pass
}

// check returns the refusal of r, or nil. A protocol upgrade would let the
// upstream take the connection over after one checked request (with a
// catch-all reverse_proxy, with no token at all), so every upgrade is
// refused but a WebSocket one on an allow_websocket path, which then goes
// through the usual checks. h2c is refused everywhere: RFC 9113 §3.1
// deprecates it, and it is not the client's to ask of the backend. A path
// component with the syntax of an NTFS 8.3 short name ("DEVICE~1") is
// refused, as Caddy's file server refuses it on Windows: IIS may resolve
// it to a route no pattern names.
//
// rp is r's path as ServeHTTP cleaned it for every pattern.
func (g guard) check(r *http.Request, rp *requestPath) *apiError {
	if proto, ok := upgradeRequested(r); ok {
		if proto != "websocket" || !g.websocket.matchesPath(r, rp) {
			return badRequest("protocol upgrade not allowed")
		}
	}
	if name, ok := rewriteHeader(r.Header); ok {
		return badRequest(name + " is not allowed")
	}
	// A short name has a '~' (HasWindowsShortName allocates; most paths
	// have none).
	if strings.IndexByte(r.URL.Path, '~') >= 0 && caddyhttp.HasWindowsShortName(r.URL.Path) {
		return badRequest("path component is a Windows short name")
	}
	if !plainPath(r.URL.Path) {
		return badRequest("path holds a control, invisible or malformed character")
	}
	return nil
}

// rewriteHeaders name the request's "real" path to some backends: Symfony
// (before 4), Zend and Laminas, and ASP.NET behind IIS URL Rewrite route by
// X-Original-URL or X-Rewrite-URL instead of the request line, so a request
// for an unprotected path, or one a scope rule does not cover, would reach
// a device route the gateway never checked. A client has no business
// sending them, so they are refused in every spelling (headers.go's
// folding: CGI and PHP read X_Original_URL as X-Original-URL).
var rewriteHeaders = [...]string{"x-original-url", "x-rewrite-url"}

// rewriteHeader returns the name of a path rewrite header r carries.
func rewriteHeader(h http.Header) (string, bool) {
	for name := range h {
		for _, key := range rewriteHeaders {
			if sameHeaderName(name, key) {
				return name, true
			}
		}
	}
	return "", false
}

// plainPath reports whether the decoded path p is free of what backends
// cut, trim or decode differently from Caddy's matcher, so that the path a
// pattern saw is the path the backend routes: control characters (a C or
// CGI backend ends the path at NUL; Java's String.trim removes everything
// up to U+0020), invalid UTF-8 (overlong encodings of "/" and "." that old
// decoders accept), and invisible format characters such as U+200B. Such a
// path names no device route, so refusing it costs no real client.
func plainPath(p string) bool {
	for i := 0; i < len(p); {
		c := p[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(p[i:])
		if r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.IsControl(r) ||
			(unicode.IsSpace(r) && r != ' ') {
			return false
		}
		i += size
	}
	return true
}

// upgradeRequested reports whether r asks to switch protocols, and to
// which (lower case; "" when it cannot be told): an HTTP/1.1 Upgrade header
// or an Upgrade token in Connection, or a CONNECT: a tunnel, or on HTTP/2
// and HTTP/3 an extended CONNECT (RFC 8441, RFC 9220) naming its protocol.
// proto is "websocket" only for exactly one Upgrade value naming WebSocket
// alone, or an extended CONNECT for WebSocket.
func upgradeRequested(r *http.Request) (proto string, ok bool) {
	if r.Method == http.MethodConnect {
		p := r.Header.Get(":protocol")
		if r.ProtoMajor == 3 && p == "" {
			p = r.Proto // quic-go puts :protocol there
		}
		return strings.ToLower(p), true
	}
	up, hasUp := r.Header["Upgrade"]
	if !hasUp && !httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return "", false
	}
	if len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket") {
		return "websocket", true
	}
	return "", true
}

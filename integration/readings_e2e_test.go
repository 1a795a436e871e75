package integration

// Requests the backend would read otherwise than the gateway checked them
// (last session's red-team findings), through the built binary with a
// catch-all reverse_proxy and a recording upstream: a method override in a
// parameter or in any header spelling, a body in a charset other than
// UTF-8, and path rewrite headers. Every refusal is checked never to reach
// the upstream.

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/outergate/outergate/integration/legacy"
)

// TestMethodOverrideRefused: a read-only token cannot turn its GET into a
// write through any override spelling a backend framework honours (Rails,
// Laravel, Symfony, Spring, Slim, Express method-override, ASP.NET), in
// the query string, a form or JSON body, or a header; a write token's
// override is refused all the same. 400 + 23010, nothing forwarded.
func TestMethodOverrideRefused(t *testing.T) {
	g, up := outOfBounds(t, "")
	readTok := g.issue(readerID, readerSecret)
	appTok := g.issue(appID, appSecret)
	dev := "deviceid=" + legacy.DeviceOnline
	info := "/outer/device/info/"
	read := func(extra ...string) [][2]string {
		return append(hdr("Authorization", "Bearer "+readTok), hdr(extra...)...)
	}

	for _, tc := range []struct {
		name string
		rr   rawRequest
	}{
		{"query _method", rawRequest{method: "GET", target: info + "?" + dev + "&_method=PUT", headers: read()}},
		{"query _METHOD", rawRequest{method: "GET", target: info + "?_METHOD=DELETE&" + dev, headers: read()}},
		{"query %5Fmethod", rawRequest{method: "GET", target: info + "?" + dev + "&%5Fmethod=PUT", headers: read()}},
		{"query _%6Dethod", rawRequest{method: "GET", target: info + "?" + dev + "&_%6Dethod=PUT", headers: read()}},
		{"query _method[]", rawRequest{method: "GET", target: info + "?" + dev + "&_method%5B%5D=PUT", headers: read()}},
		{"query X-HTTP-Method-Override", rawRequest{method: "GET", target: info + "?" + dev + "&X-HTTP-Method-Override=PUT", headers: read()}},
		{"query after a semicolon (Rack 2)", rawRequest{method: "GET", target: info + "?" + dev + ";_method=PUT", headers: read()}},
		{"form body _method", rawRequest{method: "GET", target: info, headers: read("Content-Type", formCT), body: dev + "&_method=PUT"}},
		{"form body %5FMETHOD", rawRequest{method: "GET", target: info, headers: read("Content-Type", formCT), body: "%5FMETHOD=DELETE&" + dev}},
		{"JSON body _method", rawRequest{method: "GET", target: info, headers: read("Content-Type", "application/json"),
			body: `{"deviceid":"` + legacy.DeviceOnline + `","_method":"PUT"}`}},
		{"JSON body escaped \\u005fmethod", rawRequest{method: "GET", target: info, headers: read("Content-Type", "application/json"),
			body: `{"deviceid":"` + legacy.DeviceOnline + `","\u005fMethod":"DELETE"}`}},
		{"header X-HTTP-Method-Override", rawRequest{method: "GET", target: info + "?" + dev, headers: read("X-HTTP-Method-Override", "PUT")}},
		{"header x-http-method", rawRequest{method: "GET", target: info + "?" + dev, headers: read("x-http-method", "PUT")}},
		{"header X-METHOD-OVERRIDE", rawRequest{method: "GET", target: info + "?" + dev, headers: read("X-METHOD-OVERRIDE", "DELETE")}},
		{"write token: form _method", rawRequest{method: "POST", target: "/outer/device/unbind/",
			headers: hdr("Authorization", "Bearer "+appTok, "Content-Type", formCT), body: dev + "&_method=DELETE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := refusedUnseen(t, g, up, tc.rr, 400, 23010)
			// Go's query parser refuses the ';' first (malformed query
			// string): refused either way.
			if !strings.Contains(tc.name, "semicolon") && !strings.Contains(strings.ToLower(r.env.Meta.Message), "method") {
				t.Errorf("message %q does not name the override", r.env.Meta.Message)
			}
		})
	}
	// Caddy drops a header spelled with '_' before any handler (unless the
	// server's allow list names it, and outergate then refuses it like the
	// others): the CGI spelling, which PHP would read as the override,
	// never reaches the upstream.
	t.Run("header in the CGI spelling X_HTTP_METHOD_OVERRIDE never forwarded", func(t *testing.T) {
		before := len(up.backend.Requests())
		r := g.sendRaw(t, rawRequest{method: "GET", target: info + "?" + dev, headers: read("X_HTTP_METHOD_OVERRIDE", "PUT")})
		if r.status == 0 {
			t.Fatal("no answer")
		}
		for _, s := range up.backend.Requests()[before:] {
			for name := range s.Header {
				if strings.Contains(strings.ToLower(name), "method") {
					t.Errorf("upstream received %s", name)
				}
			}
		}
	})
	// Names and values that only look alike pass.
	for _, target := range []string{info + "?" + dev + "&method=PUT", info + "?" + dev + "&note=_method", info + "?" + dev + "&_methods=x"} {
		t.Run("passes: "+target, func(t *testing.T) {
			before := len(up.backend.Requests())
			r := g.sendRaw(t, rawRequest{method: "GET", target: target, headers: read()})
			if r.status != 200 || r.code() != 0 {
				t.Fatalf("answer %d %s", r.status, r.body)
			}
			checkForwarded(t, up.backend.Requests()[before:], readerID, []string{readTok, readerSecret})
		})
	}
}

// utf16le encodes s as UTF-16LE, without a byte order mark.
func utf16le(s string) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(s)) {
		b.WriteByte(byte(u))
		b.WriteByte(byte(u >> 8))
	}
	return b.String()
}

// TestForeignCharsetRefused: a form or JSON body in a charset other than
// UTF-8 (any case, quoted or not), or a JSON body with a byte order mark or
// in UTF-16 without one, is refused with 415 + 23010 on protected paths and
// on the token endpoints: the gateway reads UTF-8, the backend may not.
func TestForeignCharsetRefused(t *testing.T) {
	g, up := outOfBounds(t, "")
	tok := g.issue(appID, appSecret)
	jsonBody := `{"deviceid":"` + legacy.DeviceOnline + `"}`
	form := "deviceid=" + legacy.DeviceOnline
	members := []struct{ name, contentType, body string }{
		{"JSON utf-16", "application/json; charset=utf-16", jsonBody},
		{"JSON UTF-16LE in UTF-16LE", "application/json; charset=UTF-16LE", utf16le(jsonBody)},
		{"JSON quoted UTF-32", `application/json; charset="UTF-32"`, jsonBody},
		{"JSON iso-8859-1", "application/json;charset=iso-8859-1", jsonBody},
		{"JSON with a UTF-8 BOM", "application/json", "\xef\xbb\xbf" + jsonBody},
		{"JSON in UTF-16LE with its BOM", "application/json", "\xff\xfe" + utf16le(jsonBody)},
		{"JSON in UTF-16LE without a BOM", "application/json", utf16le(jsonBody)},
		{"form ISO-8859-1", formCT + "; charset=ISO-8859-1", form},
		{"form windows-1252", formCT + "; Charset=\"windows-1252\"", form},
		// A parameter other than charset: Laravel reads a Content-Type
		// holding "/json" anywhere as JSON.
		{"form with x=\"/json\"", formCT + `; x="/json"`, form},
		{"JSON with a boundary", "application/json; boundary=zz", jsonBody},
	}
	for _, m := range members {
		t.Run("protected: "+m.name, func(t *testing.T) {
			refusedUnseen(t, g, up, rawRequest{method: "PUT", target: "/outer/device/unbind/",
				headers: hdr("Authorization", "Bearer "+tok, "Content-Type", m.contentType), body: m.body}, 415, 23010)
		})
	}
	creds := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret}}.Encode()
	credsJSON := `{"grant_type":"client_credentials","client_id":"` + appID + `","client_secret":"` + appSecret + `"}`
	for _, m := range []struct{ name, contentType, body string }{
		{"form ISO-8859-1", formCT + "; charset=ISO-8859-1", creds},
		{"JSON utf-16", "application/json; charset=utf-16", credsJSON},
		{"JSON with a UTF-8 BOM", "application/json", "\xef\xbb\xbf" + credsJSON},
	} {
		t.Run("token endpoint: "+m.name, func(t *testing.T) {
			r := g.sendRaw(t, rawRequest{method: "POST", target: "/outer/token/", headers: hdr("Content-Type", m.contentType), body: m.body})
			if r.status != 415 || r.code() != 23010 {
				t.Errorf("answer %d %s, want 415 with code 23010", r.status, r.body)
			}
		})
		t.Run("/oauth2/token: "+m.name, func(t *testing.T) {
			r := g.sendRaw(t, rawRequest{method: "POST", target: "/oauth2/token", headers: hdr("Content-Type", m.contentType), body: m.body})
			if r.status != 415 || strings.Contains(string(r.body), "access_token") {
				t.Errorf("answer %d %s, want 415 without a token", r.status, r.body)
			}
		})
	}
	for _, path := range []string{"/oauth2/revoke", "/oauth2/introspect"} {
		t.Run(path+": form ISO-8859-1", func(t *testing.T) {
			body := url.Values{"token": {tok}, "client_id": {appID}, "client_secret": {appSecret}}.Encode()
			r := g.sendRaw(t, rawRequest{method: "POST", target: path, headers: hdr("Content-Type", formCT+"; charset=ISO-8859-1"), body: body})
			if r.status != 415 {
				t.Errorf("answer %d %s, want 415", r.status, r.body)
			}
		})
	}
	// UTF-8 and US-ASCII, in any case and quoted, pass.
	for _, ct := range []string{"application/json; charset=utf-8", `application/json; charset="UTF-8"`, "application/json; charset=US-ASCII"} {
		t.Run("passes: "+ct, func(t *testing.T) {
			up.backend.ResetDevices()
			before := len(up.backend.Requests())
			r := g.sendRaw(t, rawRequest{method: "PUT", target: "/outer/device/unbind/",
				headers: hdr("Authorization", "Bearer "+tok, "Content-Type", ct), body: jsonBody})
			if r.status != 200 || r.code() != 0 {
				t.Fatalf("answer %d %s", r.status, r.body)
			}
			checkForwarded(t, up.backend.Requests()[before:], appID, []string{tok, appSecret})
		})
	}
	t.Run("token endpoint passes: form; charset=UTF-8", func(t *testing.T) {
		r := g.sendRaw(t, rawRequest{method: "POST", target: "/outer/token/", headers: hdr("Content-Type", formCT+"; charset=UTF-8"), body: creds})
		if r.status != 200 || r.code() != 0 {
			t.Fatalf("answer %d %s", r.status, r.body)
		}
		g.rememberFrom(r)
	})
}

// TestRewriteHeadersRefused: X-Original-URL and X-Rewrite-URL, by which
// Symfony, Zend and IIS URL Rewrite route, are refused on every request
// that may reach the upstream, protected or not, in every spelling.
func TestRewriteHeadersRefused(t *testing.T) {
	g, up := outOfBounds(t, "")
	readTok := g.issue(readerID, readerSecret)
	endusers := "/outer/device/endusers/?deviceid=" + legacy.DeviceOnline
	for _, tc := range []struct {
		name string
		rr   rawRequest
	}{
		{"X-Original-URL on an unprotected path, no token", rawRequest{method: "GET", target: "/elsewhere", headers: hdr("X-Original-URL", endusers)}},
		{"x-rewrite-url on an unprotected path", rawRequest{method: "GET", target: "/elsewhere", headers: hdr("x-rewrite-url", endusers)}},
		{"X-Original-URL with a read token on info", rawRequest{method: "GET", target: "/outer/device/info/?deviceid=" + legacy.DeviceOnline,
			headers: hdr("Authorization", "Bearer "+readTok, "X-Original-URL", endusers)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnseen(t, g, up, tc.rr, 400, 23010)
		})
	}
	t.Run("X_ORIGINAL_URL (CGI spelling) never forwarded", func(t *testing.T) {
		before := len(up.backend.Requests())
		if r := g.sendRaw(t, rawRequest{method: "GET", target: "/elsewhere", headers: hdr("X_ORIGINAL_URL", endusers)}); r.status == 0 {
			t.Fatal("no answer")
		}
		for _, s := range up.backend.Requests()[before:] {
			for name := range s.Header {
				if strings.Contains(strings.ToLower(name), "original") {
					t.Errorf("upstream received %s", name)
				}
			}
		}
	})
}

// TestMethodOverrideInOpaqueBodies: bodies opaque_body admits are handed on
// unread, but an override in one a backend reads as a form, as JSON (any
// Content-Type holding "json", as Laravel reads it) or as a multipart form
// is refused all the same; a text body is not looked into.
func TestMethodOverrideInOpaqueBodies(t *testing.T) {
	g, up := outOfBounds(t, "\t\topaque_body text/plain multipart/form-data application/vnd.api+json\n")
	readTok := g.issue(readerID, readerSecret)
	target := "/outer/device/info/?deviceid=" + legacy.DeviceOnline
	read := func(ct string) [][2]string { return hdr("Authorization", "Bearer "+readTok, "Content-Type", ct) }
	multipart := "--zz\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nPUT\r\n--zz--\r\n"
	for _, tc := range []struct{ name, ct, body string }{
		{"vnd.api+json", "application/vnd.api+json", `{"_method":"PUT"}`},
		{`text/plain; x="/json"`, `text/plain; x="/json"`, `{"_METHOD":"PUT"}`},
		{"multipart _method field", "multipart/form-data; boundary=zz", multipart},
		{"multipart RFC 2231 name", "multipart/form-data; boundary=zz", strings.Replace(multipart, `name="_method"`, `name*=UTF-8''%5Fmethod`, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnseen(t, g, up, rawRequest{method: "GET", target: target, headers: read(tc.ct), body: tc.body}, 400, 23010)
		})
	}
	t.Run("text/plain is not looked into", func(t *testing.T) {
		before := len(up.backend.Requests())
		r := g.sendRaw(t, rawRequest{method: "GET", target: target, headers: read("text/plain"), body: "_method=PUT"})
		if r.status != 200 {
			t.Fatalf("answer %d %s", r.status, r.body)
		}
		checkForwarded(t, up.backend.Requests()[before:], readerID, []string{readTok, readerSecret})
	})
}

// TestAllowedUnderscoreHeadersRefused: when the server's
// expected_underscore_headers lets the CGI spellings through to the
// handlers, outergate refuses them like the dash spellings (PHP reads
// X_HTTP_METHOD_OVERRIDE as the override and X_ORIGINAL_URL as the path).
func TestAllowedUnderscoreHeadersRefused(t *testing.T) {
	up := &upgradeUpstream{backend: legacy.New(legacy.Options{})}
	g := startGateway(t, gatewayConfig{Upstream: newUpstream(t, up),
		Global: "servers {\n\t\texpected_underscore_headers X_HTTP_METHOD_OVERRIDE X_Original_URL\n\t}"})
	readTok := g.issue(readerID, readerSecret)
	info := "/outer/device/info/?deviceid=" + legacy.DeviceOnline
	refusedUnseen(t, g, up, rawRequest{method: "GET", target: info,
		headers: hdr("Authorization", "Bearer "+readTok, "X_HTTP_METHOD_OVERRIDE", "PUT")}, 400, 23010)
	refusedUnseen(t, g, up, rawRequest{method: "GET", target: "/elsewhere",
		headers: hdr("X_Original_URL", "/outer/device/endusers/")}, 400, 23010)
}

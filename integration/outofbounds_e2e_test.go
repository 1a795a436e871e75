package integration

// Issue 12, "reaching the backend out of bounds" (items 1 to 5), through the
// built binary with a catch-all reverse_proxy and a recording upstream that
// answers any upgrade with 101: path spellings scope rules and protect must
// both see, protocol upgrades, request trailers, and bodies the gateway
// cannot inspect. Every refused request is checked never to reach the
// upstream.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/legacy"
)

// outOfBounds is the gateway of these tests: endusers need "groups"
// (require_scope), WebSocket is allowed on /outer/device/events/* only, and
// reverse_proxy forwards every path (the catch-all that makes a path the
// handler does not protect reach the backend).
func outOfBounds(t *testing.T, extra string) (*gateway, *upgradeUpstream) {
	t.Helper()
	up := &upgradeUpstream{backend: legacy.New(legacy.Options{SlowDelay: 10 * time.Second})}
	g := startGateway(t, gatewayConfig{Upstream: newUpstream(t, up), Extra: "\t\tthrottle off\n\t\tthrottle_client off\n" +
		"\t\trequire_scope /outer/device/endusers/* groups\n\t\tallow_websocket /outer/device/events/*\n" + extra})
	return g, up
}

// refusedUnseen sends rr and checks the envelope refusal and that the
// upstream saw nothing of it, upgrade or not.
func refusedUnseen(t *testing.T, g *gateway, up *upgradeUpstream, rr rawRequest, status, code int) reply {
	t.Helper()
	before, beforeUp := len(up.backend.Requests()), len(up.seenUpgrades())
	r := g.sendRaw(t, rr)
	if r.status != status || !r.isEnv || r.code() != code {
		t.Errorf("answer %d %s, want %d with code %d", r.status, r.body, status, code)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q, want JSON", ct)
	}
	if seen := up.backend.Requests()[before:]; len(seen) != 0 {
		t.Errorf("upstream received %d refused request(s): %s %s", len(seen), seen[0].Method, seen[0].Path)
	}
	if seen := up.seenUpgrades()[beforeUp:]; len(seen) != 0 {
		t.Errorf("upstream received the upgrade %s %s", seen[0].Method, seen[0].Path)
	}
	return r
}

// TestScopeRulesCoverEverySpelling: a read-only client gets no enduser data
// through any spelling of a require_scope path (item 1) and no device data
// without a token through the Windows spellings (item 5).
func TestScopeRulesCoverEverySpelling(t *testing.T) {
	g, up := outOfBounds(t, "")
	readTok := g.issue(readerID, readerSecret)
	appTok := g.issue(appID, appSecret)
	dev := "?deviceid=" + legacy.DeviceOnline
	auth := func(tok string) [][2]string { return hdr("Authorization", "Bearer "+tok) }

	for _, target := range []string{
		"/outer/device/endusers" + dev, // the bare path of endusers/*
		"/outer/device/endusers/" + dev,
		"/OUTER/Device/EndUsers" + dev,
		"/outer//device//endusers" + dev,
		"/outer/device/info/../endusers" + dev,
		"/outer/device/endusers;jsessionid=1" + dev,
		"/outer/device/endusers;x=1/" + dev,
		"/outer/device;x/endusers/" + dev,
		`/outer\device\endusers` + dev,
		"/outer/device/endusers." + dev,
		"/outer/device/endusers.%20." + dev,
		"/outer/device/endusers%3Bx" + dev,
		"/outer/device/endusers%20" + dev,
		"/outer/device/endusers::$DATA" + dev,
		"/outer/device/endusers:$i30:$index_allocation/" + dev,
	} {
		t.Run("read token on "+target, func(t *testing.T) {
			r := refusedUnseen(t, g, up, rawRequest{method: "GET", target: target, headers: auth(readTok)}, 403, 23022)
			if got := r.header.Get("WWW-Authenticate"); got != insufficient("groups") {
				t.Errorf("WWW-Authenticate = %q", got)
			}
		})
	}
	t.Run("a groups token reaches the bare path", func(t *testing.T) {
		before := len(up.backend.Requests())
		r := g.sendRaw(t, rawRequest{method: "GET", target: "/outer/device/endusers" + dev, headers: auth(appTok)})
		if r.status != 200 || r.code() != 0 {
			t.Fatalf("answer %d %s", r.status, r.body)
		}
		checkForwarded(t, up.backend.Requests()[before:], appID, []string{appTok, appSecret})
	})

	// Item 5: Windows spellings of the protected prefix, without a token.
	for _, target := range []string{
		"/outer/device./info/" + dev,
		"/outer/device.../info/" + dev,
		"/outer/device%20/info/" + dev,
		"/outer/device%20.%20/info/" + dev,
		"/outer/device::$DATA/info/" + dev,
		"/outer/device::$data/info/" + dev,
		"/outer/device:stream:$DATA/info/" + dev,
		"/outer./device/info/" + dev,
		`/outer\device.\info\` + dev,
		"/outer/device;x./info/" + dev,
	} {
		t.Run("no token on "+target, func(t *testing.T) {
			refusedUnseen(t, g, up, rawRequest{method: "GET", target: target}, 401, 23021)
		})
	}
	// Characters backends cut, trim or decode differently from Caddy's
	// matcher (NUL, other controls, overlong UTF-8, invisible format
	// characters): refused on every path, with a token or without.
	for _, target := range []string{
		"/outer/device%00/info/" + dev,
		"/outer/device%00",
		"/outer/device%09/info/" + dev,
		"/outer/device%0a/info/" + dev,
		"/outer/device%7f/info/" + dev,
		"/outer/%c0%afdevice/info/" + dev,
		"/outer/device%c0%ae/info/" + dev,
		"/outer/device%ff/info/" + dev,
		"/outer/device%e2%80%8b/info/" + dev,
		"/elsewhere%00/x",
	} {
		t.Run("odd character "+target, func(t *testing.T) {
			refusedUnseen(t, g, up, rawRequest{method: "GET", target: target}, 400, 23010)
			refusedUnseen(t, g, up, rawRequest{method: "GET", target: target, headers: auth(appTok)}, 400, 23010)
		})
	}
	// 8.3 short names cannot be folded without the backend's disk: refused.
	for _, target := range []string{"/outer/DEVICE~1/info/" + dev, "/OUTER~1/device/info/" + dev, "/outer/device/ENDUSE~1/" + dev} {
		t.Run("short name "+target, func(t *testing.T) {
			refusedUnseen(t, g, up, rawRequest{method: "GET", target: target, headers: auth(appTok)}, 400, 23010)
		})
	}
}

// TestUpgradesRefused: no protocol upgrade reaches the upstream but a
// WebSocket one on an allow_websocket path after the token check (item 2).
func TestUpgradesRefused(t *testing.T) {
	g, up := outOfBounds(t, "")
	tok := g.issue(appID, appSecret)
	info := infoPath + legacy.DeviceOnline
	wsHdr := func(extra ...string) [][2]string {
		return append(hdr("Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13",
			"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), hdr(extra...)...)
	}
	for _, tc := range []struct {
		name string
		rr   rawRequest
	}{
		{"h2c on a protected path with a token", devReq("GET", info, "Authorization", "Bearer "+tok,
			"Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c", "HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")},
		{"h2c on an unprotected path", devReq("GET", "/healthz", "Connection", "Upgrade, HTTP2-Settings", "Upgrade", "h2c",
			"HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")},
		{"h2c on an allow_websocket path with a token", devReq("GET", "/outer/device/events/?deviceid="+legacy.DeviceOnline,
			"Authorization", "Bearer "+tok, "Connection", "Upgrade", "Upgrade", "h2c")},
		{"WebSocket on an unprotected path", rawRequest{method: "GET", target: "/healthz", headers: wsHdr()}},
		{"WebSocket on a protected path not allowed, with a token", rawRequest{method: "GET", target: info,
			headers: wsHdr("Authorization", "Bearer "+tok)}},
		{"WebSocket without a token on a path outside protect", rawRequest{method: "GET", target: "/outer/admin/", headers: wsHdr()}},
		{"Upgrade in odd case", devReq("GET", "/healthz", "connection", "UPGRADE", "upgrade", "WebSocket2")},
		{"Connection: upgrade alone", devReq("GET", "/healthz", "Connection", "keep-alive, Upgrade")},
		{"Upgrade alone", devReq("GET", "/healthz", "Upgrade", "websocket")},
		{"CONNECT on a protected path with a token", devReq("CONNECT", info, "Authorization", "Bearer "+tok)},
		{"CONNECT on an unprotected path", devReq("CONNECT", "/healthz")},
		{"two protocols", rawRequest{method: "GET", target: "/outer/device/events/?deviceid=" + legacy.DeviceOnline,
			headers: hdr("Authorization", "Bearer "+tok, "Connection", "Upgrade", "Upgrade", "websocket, h2c")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnseen(t, g, up, tc.rr, 400, 23010)
		})
	}

	t.Run("the token endpoint answers an upgrade itself, never relays it", func(t *testing.T) {
		before, beforeUp := len(up.backend.Requests()), len(up.seenUpgrades())
		r := g.sendRaw(t, tokenPost(formCT, "grant_type=client_credentials&client_id="+appID+"&client_secret="+appSecret,
			"Connection", "Upgrade", "Upgrade", "h2c"))
		g.rememberFrom(r)
		if r.status != 200 || r.code() != 0 {
			t.Fatalf("answer %d %s", r.status, r.body)
		}
		if len(up.backend.Requests()) != before || len(up.seenUpgrades()) != beforeUp {
			t.Error("the token request reached the upstream")
		}
	})
	t.Run("WebSocket on an allowed path needs a token", func(t *testing.T) {
		refusedUnseen(t, g, up, rawRequest{method: "GET", target: "/outer/device/events/?deviceid=" + legacy.DeviceOnline, headers: wsHdr()}, 401, 23021)
	})
	t.Run("WebSocket on an allowed path needs its parameters", func(t *testing.T) {
		refusedUnseen(t, g, up, rawRequest{method: "GET", target: "/outer/device/events/", headers: wsHdr("Authorization", "Bearer "+tok)}, 400, 23010)
	})
	t.Run("WebSocket on an allowed path with a token is relayed", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", g.hostPort(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		rr := rawRequest{method: "GET", target: "/outer/device/events/?deviceid=" + legacy.DeviceOnline, headers: wsHdr("Authorization", "Bearer "+tok)}
		if _, err := conn.Write(rr.bytes(g.hostPort())); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			body, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d %s, want 101", resp.StatusCode, body)
		}
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("echo = %q, %v", line, err)
		}
		seen := up.seenUpgrades()
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d upgrades, want 1", len(seen))
		}
		if seen[0].Header.Get("Authorization") != "" || seen[0].Header.Get("X-Outer-Client-Id") != appID {
			t.Errorf("upgrade forwarded with Authorization %q, identity %q", seen[0].Header.Get("Authorization"), seen[0].Header.Get("X-Outer-Client-Id"))
		}
	})
}

// TestTrailersNeverPassChecks: request trailers carry no header past the
// checks (item 3). Protected requests are forwarded without any trailer
// and a method override in a trailer is refused like the header; on other
// paths, the identity header is removed from trailers in every spelling.
func TestTrailersNeverPassChecks(t *testing.T) {
	g, up := outOfBounds(t, "")
	tok := g.issue(appID, appSecret)
	form := "deviceid=" + legacy.DeviceOnline
	protected := hdr("Authorization", "Bearer "+tok, "Content-Type", formCT)

	for _, tc := range []struct {
		name     string
		declared string // a Trailer header, "" for none
		trailers [][2]string
	}{
		{"identity header", "X-Outer-Client-Id", hdr("X-Outer-Client-Id", "admin")},
		{"identity header undeclared, odd spelling", "", hdr("x_outer_client_id", "admin")},
		{"credentials and an unknown field", "Authorization, X-Checksum", hdr("Authorization", "Basic YWRtaW46YWRtaW4=", "X-Checksum", "1")},
	} {
		t.Run("protected: "+tc.name+" dropped", func(t *testing.T) {
			up.backend.ResetDevices()
			before := len(up.backend.Requests())
			headers := protected
			if tc.declared != "" {
				headers = append(hdr("Trailer", tc.declared), headers...)
			}
			r := g.sendRaw(t, chunkedWithTrailers("PUT", "/outer/device/unbind/", headers, form, tc.trailers))
			if r.status != 200 || r.code() != 0 {
				t.Fatalf("answer %d %s", r.status, r.body)
			}
			seen := up.backend.Requests()[before:]
			checkForwarded(t, seen, appID, []string{tok, appSecret, "YWRtaW46YWRtaW4="})
			if len(seen[0].Trailer) != 0 {
				t.Errorf("upstream received trailers %v", seen[0].Trailer)
			}
			if string(seen[0].Body) != form {
				t.Errorf("upstream body %q, want %q", seen[0].Body, form)
			}
		})
	}
	for _, name := range []string{"X-HTTP-Method-Override", "X-Http-Method", "x-method-override"} {
		t.Run("protected: "+name+" trailer refused", func(t *testing.T) {
			refusedUnseen(t, g, up, chunkedWithTrailers("PUT", "/outer/device/unbind/", append(hdr("Trailer", name), protected...),
				form, hdr(name, "DELETE")), 400, 23010)
		})
	}
	// An undeclared trailer is filled into net/http's own copy of the
	// request, which neither outergate nor reverse_proxy sees: it is
	// never forwarded.
	t.Run("protected: undeclared method override trailer never forwarded", func(t *testing.T) {
		up.backend.ResetDevices()
		before := len(up.backend.Requests())
		r := g.sendRaw(t, chunkedWithTrailers("PUT", "/outer/device/unbind/", protected, form, hdr("X-HTTP-Method-Override", "DELETE")))
		if r.status == 0 {
			t.Fatal("no answer")
		}
		for _, s := range up.backend.Requests()[before:] {
			if len(s.Trailer) != 0 || s.Header.Get("X-Http-Method-Override") != "" {
				t.Errorf("upstream received the override: trailers %v", s.Trailer)
			}
		}
	})
	t.Run("unprotected: identity removed from trailers in every spelling", func(t *testing.T) {
		before := len(up.backend.Requests())
		r := g.sendRaw(t, chunkedWithTrailers("POST", "/elsewhere", hdr("Trailer", "X-Outer-Client-Id, X-Checksum", "Content-Type", "text/plain"),
			"hello", hdr("X-Outer-Client-Id", "admin", "X_Outer_Client_Id", "admin", "x-outer-client-ID", "admin", "X-Checksum", "1")))
		if r.status == 0 {
			t.Fatal("no answer")
		}
		seen := up.backend.Requests()[before:]
		if len(seen) != 1 {
			t.Fatalf("upstream saw %d requests, want 1", len(seen))
		}
		if names := identityNames(seen[0].Trailer); len(names) != 0 {
			t.Errorf("upstream received identity trailers %v", names)
		}
		if names := identityNames(seen[0].Header); len(names) != 0 {
			t.Errorf("upstream received identity headers %v", names)
		}
		if seen[0].Trailer.Get("X-Checksum") != "1" {
			t.Errorf("other trailers not forwarded on an unprotected path: %v", seen[0].Trailer)
		}
	})
}

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestUninspectableBodiesRefused: a protected body the gateway cannot read
// is refused with 415 unless opaque_body admits it, and JSON keys that
// differ only in case are one parameter (item 4), on protected paths and
// on the token endpoint alike.
func TestUninspectableBodiesRefused(t *testing.T) {
	g, up := outOfBounds(t, "")
	tok := g.issue(appID, appSecret)
	target := "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline
	second := `{"deviceid":"` + legacy.DeviceOffline + `"}`
	put := func(body string, extra ...string) rawRequest {
		return rawRequest{method: "PUT", target: target, headers: append(hdr("Authorization", "Bearer "+tok), hdr(extra...)...), body: body}
	}
	for _, tc := range []struct {
		name   string
		rr     rawRequest
		status int
		code   int
	}{
		{"no Content-Type", put("deviceid=" + legacy.DeviceOffline), 415, 23010},
		{"merge-patch+json", put(second, "Content-Type", "application/merge-patch+json"), 415, 23010},
		{"text/plain", put("deviceid="+legacy.DeviceOffline, "Content-Type", "text/plain"), 415, 23010},
		{"multipart/form-data", put("--b\r\nContent-Disposition: form-data; name=\"deviceid\"\r\n\r\n"+legacy.DeviceOffline+"\r\n--b--\r\n",
			"Content-Type", "multipart/form-data; boundary=b"), 415, 23010},
		{"gzip-encoded JSON", put(gzipped(t, second), "Content-Type", jsonCTValue, "Content-Encoding", "gzip"), 415, 23010},
		{"deflate-encoded form", put("x", "Content-Type", formCT, "Content-Encoding", "deflate"), 415, 23010},
		{"chunked gzip JSON", rawRequest{method: "PUT", target: target, chunked: true, body: gzipped(t, second),
			headers: hdr("Authorization", "Bearer "+tok, "Content-Type", jsonCTValue, "Content-Encoding", "gzip")}, 415, 23010},
		{"JSON deviceid and DeviceID", put(`{"deviceid":"`+legacy.DeviceOnline+`","DeviceID":"`+legacy.DeviceOffline+`"}`,
			"Content-Type", jsonCTValue), 400, 23010},
		{"JSON DEVICEID beside the query's deviceid", put(`{"DEVICEID":"`+legacy.DeviceOffline+`"}`, "Content-Type", jsonCTValue), 400, 23010},
		{"JSON key folding onto deviceid (Kelvin sign, dotless i)", put(`{"devıceid":"`+legacy.DeviceOffline+`"}`, "Content-Type", jsonCTValue), 400, 23010},
		{"JSON Access_Token", put(`{"Access_Token":"`+tok+`"}`, "Content-Type", jsonCTValue), 401, 23021},
		{"token endpoint: JSON client_id and Client_ID", tokenPost(jsonCTValue, `{"grant_type":"client_credentials","client_id":"`+appID+
			`","Client_ID":"`+rotID+`","client_secret":"`+appSecret+`"}`), 400, 23010},
		{"token endpoint: JSON Grant_Type twice", tokenPost(jsonCTValue, `{"grant_type":"client_credentials","GRANT_TYPE":"password","client_id":"`+appID+
			`","client_secret":"`+appSecret+`"}`), 400, 23010},
		{"two Content-Type fields, form then JSON", put(`{"a":"&deviceid=`+legacy.DeviceOnline+`&","deviceid":"`+legacy.DeviceOffline+`"}`,
			"Content-Type", formCT, "Content-Type", jsonCTValue), 400, 23010},
		{"two Content-Type fields, both JSON", put(second, "Content-Type", jsonCTValue, "Content-Type", jsonCTValue), 400, 23010},
		{"token endpoint: two Content-Type fields", tokenPost(formCT, "grant_type=client_credentials&client_id="+appID+"&client_secret="+appSecret,
			"Content-Type", jsonCTValue), 400, 23010},
		{"token endpoint: gzip body", tokenPost(formCT, gzipped(t, "grant_type=client_credentials&client_id="+appID+"&client_secret="+appSecret),
			"Content-Encoding", "gzip"), 415, 23010},
	} {
		t.Run(tc.name, func(t *testing.T) {
			refusedUnseen(t, g, up, tc.rr, tc.status, tc.code)
		})
	}
	t.Run("JSON DeviceID alone is the parameter", func(t *testing.T) {
		up.backend.ResetDevices()
		before := len(up.backend.Requests())
		body := `{"DeviceID":"` + legacy.DeviceOnline + `"}`
		r := g.sendRaw(t, rawRequest{method: "PUT", target: "/outer/device/unbind/", body: body,
			headers: hdr("Authorization", "Bearer "+tok, "Content-Type", jsonCTValue)})
		if r.status == 400 || r.status == 415 || r.status == 0 {
			t.Fatalf("refused: %d %s", r.status, r.body)
		}
		checkForwarded(t, up.backend.Requests()[before:], appID, []string{tok})
	})
}

// TestOpaqueBodyAdmitsConfiguredTypes: opaque_body lets the named media
// types through uninspected, byte for byte, with the parameters then read
// from the query string only.
func TestOpaqueBodyAdmitsConfiguredTypes(t *testing.T) {
	g, up := outOfBounds(t, "\t\topaque_body text/plain\n")
	tok := g.issue(appID, appSecret)
	body := "free text\nwith deviceid=" + legacy.DeviceOffline
	before := len(up.backend.Requests())
	r := g.sendRaw(t, rawRequest{method: "PUT", target: "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline, body: body,
		headers: hdr("Authorization", "Bearer "+tok, "Content-Type", "text/plain; charset=utf-8")})
	if r.status == 415 || r.status == 400 || r.status == 0 {
		t.Fatalf("refused: %d %s", r.status, r.body)
	}
	seen := up.backend.Requests()[before:]
	checkForwarded(t, seen, appID, []string{tok})
	if string(seen[0].Body) != body {
		t.Errorf("upstream body %q, want %q", seen[0].Body, body)
	}
	// Other types are still refused.
	refusedUnseen(t, g, up, rawRequest{method: "PUT", target: "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline, body: "x",
		headers: hdr("Authorization", "Bearer "+tok, "Content-Type", "application/xml")}, 415, 23010)
}

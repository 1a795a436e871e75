package integration

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/outergate/outergate/integration/legacy"
)

// accessLog is the site directive that turns on Caddy's access logs.
const accessLog = "\tlog {\n\t\toutput stderr\n\t}"

// filteredAccessLog is the access log README recommends: Caddy logs the
// request URI as received, before any handler runs, so credentials that a
// client wrongly put in the query string (and that outergate refuses) are
// deleted from it by Caddy's own log filter.
const filteredAccessLog = "\tlog {\n\t\toutput stderr\n\t\tformat filter {\n\t\t\trequest>uri query {\n" +
	"\t\t\t\tdelete access_token\n\t\t\t\tdelete client_secret\n\t\t\t\tdelete client_id\n\t\t\t}\n\t\t}\n\t}"

// leaks returns a description of the first secret (whole, or any
// 12-character piece of it) found in logs, or "".
func leaks(logs string, secrets map[string]string) string {
	for label, s := range secrets {
		if len(s) < 12 {
			if strings.Contains(logs, s) {
				return label
			}
			continue
		}
		for i := 0; i+12 <= len(s); i++ {
			if piece := s[i : i+12]; strings.Contains(logs, piece) {
				line := logs[strings.LastIndexByte(logs[:strings.Index(logs, piece)], '\n')+1:]
				if j := strings.IndexByte(line, '\n'); j >= 0 {
					line = line[:j]
				}
				return label + " in: " + line
			}
		}
	}
	return ""
}

// TestLogHygiene runs a gateway with access logs in the site and debug
// logging globally, drives every kind of request at it (token successes and
// failures with Basic and body credentials, device calls, throttling and
// hostile requests), and checks that no secret and no token, whole or as any
// 12-character piece, appears in anything the process logged.
func TestLogHygiene(t *testing.T) {
	g := startGatewaySite(t, gatewayConfig{
		Extra:  "\t\tthrottle 3 1m\n\t\trequire_scope /outer/device/endusers/* groups",
		Global: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}",
	}, accessLog)
	secrets := map[string]string{"appSecret": appSecret, "readerSecret": readerSecret, "rotOld": rotOld, "rotNew": rotNew}
	track := func(label string, r reply) {
		var data struct {
			AccessToken string `json:"access_token"`
		}
		if r.code() == 0 && jsonUnmarshal(r.env.Data, &data) == nil && data.AccessToken != "" {
			secrets[label] = data.AccessToken
			g.remember(data.AccessToken)
		}
	}
	form := func(v url.Values, extra ...string) request {
		req := tokenForm(v)
		for i := 0; i+1 < len(extra); i += 2 {
			req.header[extra[i]] = extra[i+1]
		}
		return req
	}
	basic := func(id, secret, body string) request {
		return request{method: "POST", path: "/outer/token/", body: body,
			header: map[string]string{"Content-Type": formCT, "Authorization": basicAuth(id, secret)}}
	}
	jsonTok := request{method: "POST", path: "/outer/token/", header: map[string]string{"Content-Type": jsonCTValue},
		body: `{"grant_type":"client_credentials","client_id":"` + appID + `","client_secret":"` + appSecret + `"}`}

	// Token successes: form, JSON, Basic, rotated secrets, bcrypt, narrowed.
	for label, req := range map[string]request{
		"tokForm": form(cc(appID, appSecret)), "tokJSON": jsonTok, "tokBasic": basic(appID, appSecret, "grant_type=client_credentials"),
		"tokRotOld": form(cc(rotID, rotOld)), "tokRotNew": basic(rotID, rotNew, "grant_type=client_credentials"),
		"tokReader": form(cc(readerID, readerSecret)),
		"tokSpoof":  form(cc(appID, appSecret), "X-Outer-Client-Id", "admin", "x_outer_client_id", "root"),
		"tokNarrow": form(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret}, "scope": {"read"}}),
	} {
		r := g.do(req)
		expect(t, r, 200, 0, "token info")
		track(label, r)
	}
	tok, readTok := secrets["tokForm"], secrets["tokReader"]

	// Token failures, each carrying a real secret somewhere.
	failures := 0
	for _, req := range []request{
		form(cc(appID, "wrong-secret")),
		form(cc("ghost", appSecret)),
		basic(appID, "wrong-secret", "grant_type=client_credentials"),
		basic(appID, appSecret, "grant_type=client_credentials&client_secret="+appSecret),
		basic(appID+"x", appSecret, "grant_type=client_credentials"),
		form(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret, appSecret}}),
		form(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret + "\x00"}}),
		form(url.Values{"grant_type": {"password"}, "client_id": {appID}, "client_secret": {appSecret}}),
		form(url.Values{"grant_type": {"client_credentials"}, "client_id": {readerID}, "client_secret": {readerSecret}, "scope": {"write"}}),
		form(url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {appSecret}, "pad": {strings.Repeat("x", 70<<10)}}),
		{method: "POST", path: "/outer/token/", header: map[string]string{"Content-Type": jsonCTValue},
			body: `{"grant_type":"client_credentials","client_id":"` + appID + `","client_secret":"` + appSecret + `",}`},
		{method: "POST", path: "/outer/token/", header: map[string]string{"Content-Type": "text/plain"}, body: cc(appID, appSecret).Encode()},
		{method: "GET", path: "/outer/token/", header: map[string]string{"Authorization": basicAuth(appID, appSecret)}},
		form(cc(appID, appSecret), "Authorization", "Bearer "+tok),
	} {
		// Each from its own address, so that the throttle does not
		// answer in place of the parsers.
		failures++
		req.header["X-Forwarded-For"] = "198.51.100." + strconv.Itoa(failures)
		if r := g.do(req); r.status < 400 || r.status >= 500 || !r.isEnv || r.status == 429 {
			t.Errorf("%s %s: %d %q", req.method, req.path, r.status, r.body)
		}
	}
	// Throttle: three failures from one address, then 429 for the right secret.
	for range 3 {
		g.do(form(cc(appID, "wrong"), "X-Forwarded-For", "203.0.113.5"))
	}
	expect(t, g.do(form(cc(appID, appSecret), "X-Forwarded-For", "203.0.113.5")), 429, 23029, "")

	// Device calls: success, scope and parameter refusals, upstream errors,
	// hostile Authorization headers.
	info := infoPath + legacy.DeviceOnline
	for _, req := range []request{
		{path: info, header: bearer(tok)},
		{path: "/outer/device/endusers/?deviceid=" + legacy.DeviceOnline, header: bearer(tok)},
		{method: "PUT", path: "/outer/device/unbind/", header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": jsonCTValue},
			body: `{"deviceid":"` + legacy.DeviceOffline + `"}`},
		{method: "PUT", path: "/outer/device/unbind/?deviceid=" + legacy.DeviceOnline, header: bearer(readTok)},
		{path: "/outer/device/endusers/?deviceid=" + legacy.DeviceOnline, header: bearer(readTok)},
		{path: "/outer/device/info/", header: bearer(tok)},
		{path: infoPath + legacy.DeviceUnknown, header: bearer(tok)},
		{path: infoPath + legacy.DeviceFault, header: bearer(tok)},
		{path: infoPath + legacy.DeviceDisabled, header: bearer(tok)},
		{path: info},
		{path: info, header: bearer(tok[:40] + "AAA")},
		{path: info, header: map[string]string{"Authorization": "Bearer " + tok + " " + readTok}},
		{path: info, header: map[string]string{"Authorization": "Bearer " + tok + "<" + readTok}},
		{path: info, header: map[string]string{"Authorization": basicAuth(appID, appSecret)}},
		{path: info, header: map[string]string{"Proxy-Authorization": "Bearer " + tok}},
		{path: info, multi: map[string][]string{"Authorization": {"Bearer " + tok, "Bearer " + readTok}}},
		{path: info, header: map[string]string{"Authorization": "Bearer " + tok, "X-Outer-Client-Id": "admin", "Connection": "X-Outer-Client-Id"}},
		{method: "PUT", path: "/outer/device/unbind/", header: map[string]string{"Authorization": "Bearer " + tok, "Content-Type": formCT},
			body: "deviceid=" + legacy.DeviceOnline + "&deviceid=" + legacy.DeviceOffline},
		{path: "/healthz", header: map[string]string{"Authorization": "Bearer " + tok}},
	} {
		if r := g.do(req); r.status >= 500 && req.path != infoPath+legacy.DeviceFault {
			t.Errorf("%s %s: %d %q", req.method, req.path, r.status, r.body)
		}
	}
	// Raw requests: odd spellings of Authorization.
	for _, rr := range []rawRequest{
		devReq("GET", info, "authorization", "Bearer "+tok, "AUTHORIZATION", "Bearer "+readTok),
		devReq("GET", info, "authorization", "bearer "+tok),
		tokenPost(formCT, "grant_type=client_credentials", "authorization", basicAuth(appID, appSecret)),
	} {
		if r := g.sendRaw(t, rr); r.status >= 500 {
			t.Errorf("%s %s: %d", rr.method, rr.target, r.status)
		}
	}

	// The detector itself: a planted 12-character piece is found.
	if leaks(`{"msg":"x`+tok[7:19]+`"}`, map[string]string{"tok": tok}) == "" {
		t.Fatal("leaks() misses a 12-character piece of a token")
	}
	logs := g.caddy.Logs()
	if !strings.Contains(logs, `"logger":"http.log.access`) {
		t.Fatalf("no access log lines: is the site's log directive in effect?")
	}
	if !strings.Contains(logs, `"level":"debug"`) {
		t.Fatalf("no debug log lines: is debug logging on?")
	}
	if where := leaks(logs, secrets); where != "" {
		t.Errorf("a secret or token reached the logs: %s", where)
	}
}

// TestLogHygieneCredentialsInQuery sends credentials where they must never
// be sent, in the query string (refused by outergate), and checks that with
// the access log configuration README gives they do not end up in the
// access log either (RFC 6819 §4.6.7).
func TestLogHygieneCredentialsInQuery(t *testing.T) {
	const leakyID, leakySecret = "leaky", "leaky-secret-in-query-0007"
	g := startGatewaySite(t, gatewayConfig{Extra: "\t\tclient " + leakyID + " " + sha256Hash(leakySecret)}, filteredAccessLog)
	r := g.do(tokenForm(cc(leakyID, leakySecret)))
	expect(t, r, 200, 0, "token info")
	var data struct {
		AccessToken string `json:"access_token"`
	}
	if err := jsonUnmarshal(r.env.Data, &data); err != nil {
		t.Fatal(err)
	}
	token := data.AccessToken // deliberately not remembered: checked here only
	expect(t, g.do(request{method: "POST", path: "/outer/token/?client_secret=" + leakySecret, header: map[string]string{"Content-Type": formCT},
		body: "grant_type=client_credentials&client_id=" + leakyID}), 400, 23010, "")
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline + "&access_token=" + token}), 401, 23021, "")
	logs := g.caddy.Logs()
	if !strings.Contains(logs, `"uri":"/outer/token/"`) {
		t.Errorf("the filtered access log did not log the refused token request: is the filter in effect?")
	}
	if where := leaks(logs, map[string]string{"secret in query": leakySecret, "token in query": token}); where != "" {
		t.Errorf("a credential sent in the query string reached the logs: %s", where)
	}
}

// TestLogHygieneSwappedCredentials sends a client's secret as its client_id
// (a common integration mistake): the refusal must not log it.
func TestLogHygieneSwappedCredentials(t *testing.T) {
	const swapID, swapSecret = "swapper", "swapper-secret-0008-long-enough"
	g := startGateway(t, gatewayConfig{Extra: "\t\tclient " + swapID + " " + sha256Hash(swapSecret)})
	expect(t, g.do(tokenForm(cc(swapSecret, swapID))), 401, 23020, "client authentication failed")
	expect(t, g.do(request{method: "POST", path: "/outer/token/", body: "grant_type=client_credentials",
		header: map[string]string{"Content-Type": formCT, "Authorization": basicAuth(swapSecret, swapID)}}), 401, 23020, "")
	if where := leaks(g.caddy.Logs(), map[string]string{"secret sent as client_id": swapSecret}); where != "" {
		t.Errorf("a secret sent as client_id reached the logs: %s", where)
	}
}

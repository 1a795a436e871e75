package integration

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outergate/outergate/integration/legacy"
)

// malformedCount is how many random malformed requests issue 4 asks for.
const malformedCount = 300

// malformed is one generated request and what it is allowed to get back.
type malformed struct {
	desc string
	req  rawRequest
	// goMay: the request is malformed at the HTTP level (a control
	// character in a header, a bad request line), so Go's own plain-text
	// 400 may answer it before any handler runs (docs/ARCHITECTURE.md, traps); every other
	// answer must still be an envelope.
	goMay bool
	// badChunk: the body's chunked framing is broken.
	badChunk bool
}

// malformedGen builds random malformed requests to the token endpoint and
// the device routes.
type malformedGen struct {
	rng    *rand.Rand
	tokens []string // valid tokens, so that some requests get past the token check
	n      int
}

func (m *malformedGen) pick(s ...string) string { return s[m.rng.IntN(len(s))] }
func (m *malformedGen) chance(p float64) bool   { return m.rng.Float64() < p }

// junk returns up to n random bytes of any value.
func (m *malformedGen) junk(n int) string {
	b := make([]byte, m.rng.IntN(n+1))
	for i := range b {
		b[i] = byte(m.rng.IntN(256))
	}
	return string(b)
}

// printable returns up to n random printable ASCII characters.
func (m *malformedGen) printable(n int) string {
	b := make([]byte, m.rng.IntN(n+1))
	for i := range b {
		b[i] = byte(0x21 + m.rng.IntN(0x7e-0x21))
	}
	return string(b)
}

// address returns a client address for X-Forwarded-For: mostly a fresh
// one, so that the per-address throttle does not hide the parsers behind
// 429s; sometimes garbage or nothing.
func (m *malformedGen) address() string {
	switch m.rng.IntN(10) {
	case 0:
		return m.pick("not-an-ip", "1.2.3.4, 5.6.7.8", "::1", "[::1]:80", "999.1.1.1", ",,,", "unknown")
	case 1:
		return ""
	}
	m.n++
	return fmt.Sprintf("10.%d.%d.%d", m.n>>16&255, m.n>>8&255, m.n&255)
}

func (m *malformedGen) query(device bool) string {
	var parts []string
	for range m.rng.IntN(4) {
		parts = append(parts, m.pick(
			"deviceid="+legacy.DeviceOnline, "deviceid=", "deviceid=%zz", "deviceid=a;deviceid=b",
			"deviceid="+legacy.DeviceOnline+"&deviceid="+legacy.DeviceOffline, "deviceid=%00",
			"deviceid="+legacy.DeviceUnknown, "deviceid=not-a-uuid", "client_secret=not-the-secret", "client_id="+appID,
			"access_token="+m.tokens[0], "%", "&&&", "=", "a=%00", "grant_type=client_credentials",
			url.QueryEscape(m.junk(12))+"="+url.QueryEscape(m.junk(12)), "%61ccess_token=x", "deviceid[]=x"))
	}
	if device && m.chance(0.6) {
		parts = append(parts, "deviceid="+m.pick(legacy.DeviceOnline, legacy.DeviceOffline, legacy.DeviceDisabled))
	}
	if len(parts) == 0 {
		return ""
	}
	return "?" + strings.Join(parts, "&")
}

func (m *malformedGen) contentType() string {
	return m.pick("application/x-www-form-urlencoded", "application/json", "application/json; charset=utf-8",
		"APPLICATION/X-WWW-FORM-URLENCODED", "application/x-www-form-urlencoded;;", "application/json; charset=",
		"text/plain", "multipart/form-data; boundary=zz", "application/xml", "", "*/*", "application/json, text/plain",
		"application/x-www-form-urlencoded; charset=\"unterminated", m.printable(30))
}

func (m *malformedGen) authorization() (string, bool) {
	tok := m.tokens[m.rng.IntN(len(m.tokens))]
	switch m.rng.IntN(14) {
	case 0:
		return "", false
	case 1:
		return "Bearer " + tok, true
	case 2:
		return "Bearer " + tok + " " + m.printable(10), true
	case 3:
		return "Bearer", true
	case 4:
		return "Bearer " + m.printable(60), true
	case 5:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(m.printable(30))), true
	case 6:
		return "Basic " + m.printable(40), true
	case 7:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(appID+":"+m.printable(20))), true
	case 8:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(m.junk(30))), true
	case 9:
		return m.pick("Digest x", "Negotiate", "bearer "+tok, "BEARER  "+tok, "Bearer "+strings.Repeat("A", 3000), "Bearer ="), true
	case 10:
		return "Bearer " + tok + "," + tok, true
	case 11:
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(appID)+":"+url.QueryEscape(appSecret))), true
	}
	return "", false
}

func (m *malformedGen) body() string {
	creds := []string{"grant_type=client_credentials", "client_id=" + appID, "client_secret=" + m.pick(appSecret, "wrong", ""),
		"scope=" + m.pick("read", "admin", "", "read%09write", "read+read"), "deviceid=" + legacy.DeviceOnline,
		"deviceid=", "grant_type=password", "client_id=ghost", "%zz=1", "a", "=", "&", "client_secret=%00"}
	switch m.rng.IntN(10) {
	case 0:
		return ""
	case 1, 2: // a form of random parameters, some repeated
		var parts []string
		for range 1 + m.rng.IntN(6) {
			parts = append(parts, creds[m.rng.IntN(len(creds))])
		}
		return strings.Join(parts, "&")
	case 3, 4: // JSON, often broken
		js := []string{`{"grant_type":"client_credentials","client_id":"` + appID + `","client_secret":"` + appSecret + `"}`,
			`{"grant_type":"client_credentials","client_id":"` + appID + `","client_id":"` + appID + `"}`,
			`{"deviceid":"` + legacy.DeviceOnline + `"}`, `{"deviceid":` + strconv.Itoa(m.rng.IntN(1000)) + `}`,
			`{"deviceid":null}`, `{"deviceid":{"$ne":""}}`, `[]`, `null`, `"x"`, `{`, `{"a":1}{"b":2}`, `{"a":"\ud800"}`,
			`{"grant_type":["client_credentials"]}`, strings.Repeat("[", 5000), `{"deviceid":"` + legacy.DeviceOnline + `",}`}
		s := js[m.rng.IntN(len(js))]
		if m.chance(0.3) && len(s) > 2 {
			cut := m.rng.IntN(len(s))
			s = s[:cut]
		}
		return s
	case 5: // random bytes
		return m.junk(300)
	case 6: // over the 64 KiB limit
		return "grant_type=client_credentials&deviceid=" + legacy.DeviceOnline + "&pad=" + strings.Repeat("x", 64<<10+m.rng.IntN(8<<10))
	case 7: // printable garbage
		return m.printable(200)
	default:
		return strings.Join([]string{creds[0], creds[1], creds[2]}, "&")
	}
}

// next returns one random malformed request.
func (m *malformedGen) next() malformed {
	device := m.chance(0.5)
	var path, method string
	if device {
		path = m.pick("/outer/device/info/", "/outer/device/endusers/", "/outer/device/unbind/", "/outer/device/",
			"/outer/device", "/outer/device/nope/", "/OUTER/Device/info/", "//outer/device/info/")
		method = m.pick("GET", "GET", "PUT", "PUT", "POST", "DELETE", "PATCH", "OPTIONS")
	} else {
		path = m.pick("/outer/token/", "/outer/token/", "/outer/token", "/OUTER/TOKEN/", "//outer/token/")
		method = m.pick("POST", "POST", "POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS", "FOO", "post")
	}
	req := rawRequest{method: method, target: path + m.query(device)}
	var desc []string
	desc = append(desc, method+" "+shorten(req.target))

	if ct := m.contentType(); ct != "" || m.chance(0.5) {
		req.headers = append(req.headers, [2]string{"Content-Type", ct})
		desc = append(desc, "ct="+shorten(ct))
	}
	auth, ok := m.authorization()
	if device && m.chance(0.5) {
		// Past the token check, so that scopes, parameters and bodies
		// are exercised too.
		auth, ok = "Bearer "+m.tokens[m.rng.IntN(len(m.tokens))], true
	}
	if ok {
		name := m.pick("Authorization", "Authorization", "authorization", "AUTHORIZATION")
		req.headers = append(req.headers, [2]string{name, auth})
		if m.chance(0.1) {
			req.headers = append(req.headers, [2]string{"Authorization", auth})
			desc = append(desc, "2xAuthorization")
		}
		desc = append(desc, "auth="+shorten(auth))
	}
	if from := m.address(); from != "" {
		req.headers = append(req.headers, [2]string{"X-Forwarded-For", from})
	}
	if m.chance(0.2) {
		name := m.pick("X-Outer-Client-Id", "x_outer_client_id", "X-OUTER-CLIENT-ID")
		req.headers = append(req.headers, [2]string{name, m.printable(20)})
		if m.chance(0.5) {
			req.headers = append(req.headers, [2]string{"Connection", "keep-alive, " + name})
		}
		desc = append(desc, "spoof="+name)
	}
	if m.chance(0.1) {
		req.headers = append(req.headers, [2]string{"X-" + strings.Map(keepToken, m.printable(10)) + "z", m.printable(50)})
	}
	req.body = m.body()
	desc = append(desc, fmt.Sprintf("body=%dB", len(req.body)))

	switch m.rng.IntN(10) {
	case 0:
		req.chunked = true
		desc = append(desc, "chunked")
	case 1:
		if req.body != "" {
			// A broken chunk size: reading the body fails.
			req.headers = append(req.headers, [2]string{"Transfer-Encoding", "chunked"})
			req.body = "zz\r\n" + req.body + "\r\n0\r\n\r\n"
			desc = append(desc, "bad-chunk")
		}
	case 2:
		if req.body != "" {
			// Content-Length shorter than the body: the rest is garbage
			// on the connection after the request.
			req.headers = append(req.headers, [2]string{"Content-Length", strconv.Itoa(m.rng.IntN(len(req.body)))})
			desc = append(desc, "short-cl")
		}
	}

	mal := malformed{req: req, badChunk: strings.HasPrefix(req.body, "zz\r\n")}
	// HTTP-level breakage that Go's server refuses by itself.
	if m.chance(0.1) {
		mal.goMay = true
		// Go answers these before reading the body and closes: a large
		// unread body would make the kernel reset the connection under
		// its answer. That is net/http's business, not outergate's.
		for i, h := range mal.req.headers {
			if len(h[1]) > 512 {
				mal.req.headers[i][1] = h[1][:512]
			}
		}
		if len(mal.req.body) > 1024 {
			mal.req.body = mal.req.body[:1024]
			for i, h := range mal.req.headers {
				if h[0] == "Content-Length" {
					mal.req.headers[i][1] = "1024"
				}
			}
		}
		switch m.rng.IntN(5) {
		case 0:
			mal.req.headers = append(mal.req.headers, [2]string{"X-Ctl", "a" + string(rune(m.rng.IntN(0x20))) + "b"})
			desc = append(desc, "ctl-in-header")
		case 1:
			mal.req.headers = append(mal.req.headers, [2]string{"Bad Name", "x"})
			desc = append(desc, "space-in-header-name")
		case 2:
			mal.req.target = path + "?a=b c"
			desc = append(desc, "space-in-target")
		case 3:
			mal.req.target = path + "%zz/"
			desc = append(desc, "bad-escape-in-path")
		case 4:
			mal.req.headers = append(mal.req.headers, [2]string{"Content-Length", "-1"})
			desc = append(desc, "negative-cl")
		}
	}
	mal.desc = strings.Join(desc, " ")
	return mal
}

func keepToken(r rune) rune {
	if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') || r == '-' {
		return r
	}
	return -1
}

func shorten(s string) string {
	s = strconv.Quote(s)
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

// isGoPlain400 reports whether r is net/http's own answer to a request it
// could not parse.
func isGoPlain400(r reply) bool {
	return r.status == 400 && r.header.Get("Content-Type") == "text/plain; charset=utf-8" &&
		strings.HasPrefix(string(r.body), "400 Bad Request")
}

// TestMalformedRequests sends 300 random malformed requests (seeded; set
// OUTERGATE_MALFORMED_SEED to replay) to the token endpoint and the device
// routes over raw TCP. Every one must get a parseable HTTP response whose
// body is an envelope (Go's own plain-text 400 only where the HTTP framing
// itself is broken), never a 5xx, never a dropped connection; afterwards a
// normal token and device call work.
func TestMalformedRequests(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("OUTERGATE_MALFORMED_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("OUTERGATE_MALFORMED_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with OUTERGATE_MALFORMED_SEED=%d)", seed, seed)

	g := startGateway(t, gatewayConfig{Global: "servers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}"})
	gen := &malformedGen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	gen.tokens = []string{g.issue(appID, appSecret), g.issue(readerID, readerSecret)}

	statuses := map[int]int{}
	goPlain := 0
	var knownBug []string
	for i := range malformedCount {
		m := gen.next()
		r, err := rawSend(g.hostPort(), m.req.method, m.req.bytes(g.hostPort()))
		if err != nil && m.goMay && r.status == 400 && r.header.Get("Content-Type") == "text/plain; charset=utf-8" &&
			r.header.Get("Content-Length") == "" {
			// Go's own 400 arrived, then its close reset the connection
			// under the rest of a request it never read: net/http's
			// doing, before any handler.
			goPlain++
			statuses[r.status]++
			continue
		}
		if err != nil {
			t.Errorf("#%d %s: no complete HTTP response: %v", i, m.desc, err)
			continue
		}
		g.checkRaw(t, m.req.bytes(g.hostPort()), r)
		statuses[r.status]++
		switch {
		case r.status == 502 && r.code() == 23090 && m.badChunk:
			// Known bug (see TestHostileRequests, "malformed chunked body
			// the gateway does not parse").
			knownBug = append(knownBug, fmt.Sprintf("#%d %s", i, m.desc))
		case r.status >= 500:
			t.Errorf("#%d %s: %d %q", i, m.desc, r.status, r.body)
		case isGoPlain400(r):
			goPlain++
			if !m.goMay {
				t.Errorf("#%d %s: Go's plain-text 400 for a request that HTTP can parse: %q", i, m.desc, r.body)
			}
		case !r.isEnv:
			t.Errorf("#%d %s: %d, body is not an envelope: %q", i, m.desc, r.status, r.body)
		case r.header.Get("Via") == "" && r.code() != 0:
			// Written by outergate itself (proxied answers carry Via).
			if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
				t.Errorf("#%d %s: Content-Type %q", i, m.desc, ct)
			}
			if string(r.env.Data) != "null" {
				t.Errorf("#%d %s: data = %s, want null", i, m.desc, r.env.Data)
			}
			if r.status < 400 {
				t.Errorf("#%d %s: error code %d with status %d", i, m.desc, r.code(), r.status)
			}
		}
	}
	keys := make([]int, 0, len(statuses))
	for s := range statuses {
		keys = append(keys, s)
	}
	sort.Ints(keys)
	var summary []string
	for _, s := range keys {
		summary = append(summary, fmt.Sprintf("%d×%d", statuses[s], s))
	}
	t.Logf("statuses: %s; Go's own plain 400: %d", strings.Join(summary, " "), goPlain)

	// The gateway is healthy afterwards.
	r := g.do(tokenReq(cc(rotID, rotNew), "192.0.2.250"))
	expect(t, r, 200, 0, "token info")
	g.rememberFrom(r)
	var data struct {
		AccessToken string `json:"access_token"`
	}
	if err := jsonUnmarshal(r.env.Data, &data); err != nil {
		t.Fatal(err)
	}
	expect(t, g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(data.AccessToken)}), 200, 0, "Device info")
	// A random request may have unbound the device already; bind it again
	// so the write below checks the gateway, not what the random run left.
	g.backend.ResetDevices()
	expect(t, g.do(request{method: "PUT", path: "/outer/device/unbind/?deviceid=" + legacy.DeviceOffline,
		header: bearer(data.AccessToken)}), 200, 0, "unbind success")

	if len(knownBug) > 0 {
		t.Errorf("%d malformed requests got 502 + 23090", len(knownBug))
	}
}

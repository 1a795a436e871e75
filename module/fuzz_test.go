package outergate

// Fuzz targets of issue 4: token-request parsing, Authorization parsing and
// upstream error normalization. Seed corpora live in
// testdata/fuzz/<FuzzName>/; integration/fuzz.sh runs each target for a
// given time. Every target checks invariants of the contract (docs/API.md)
// that hold for any input, with its own independent reading of the input
// where it can.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// fuzzTokenRequest builds the POST a client would send to the token
// endpoint; empty contentType and authorization mean no such header.
func fuzzTokenRequest(contentType string, body []byte, authorization, query string) *http.Request {
	r := &http.Request{
		Method:        http.MethodPost,
		URL:           &url.URL{Path: "/outer/token/", RawQuery: query},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          "gateway.test",
	}
	if len(body) == 0 {
		r.Body = http.NoBody
	}
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return r.WithContext(context.Background())
}

// fuzzBodyFields reads the body the way the contract describes it, with
// the standard library only: its parameters, or ok=false if it cannot be
// read as a form or a JSON object.
func fuzzBodyFields(contentType string, body []byte) (fields map[string][]string, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, false
	}
	switch mt {
	case "application/x-www-form-urlencoded":
		v, err := url.ParseQuery(string(body))
		return v, err == nil
	case "application/json":
		if len(bytes.TrimSpace(body)) == 0 {
			return map[string][]string{}, true
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, false
		}
		fields = map[string][]string{}
		for k, raw := range obj {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				fields[k] = []string{s}
			} else {
				fields[k] = []string{"\x00not a string"}
			}
		}
		return fields, true
	}
	return nil, false
}

func FuzzParseTokenRequest(f *testing.F) {
	f.Add(formType, []byte("grant_type=client_credentials&client_id=app&client_secret=s3cret"), "", "")
	f.Add(jsonType, []byte(`{"grant_type":"client_credentials","client_id":"app","client_secret":"s3cret"}`), "", "")
	f.Add(formType, []byte("grant_type=client_credentials"), basicAuth("app:s3cret"), "")
	f.Add(formType, []byte("grant_type=client_credentials&client_secret=x"), basicAuth("app:s3cret"), "")
	f.Add(formType, []byte("grant_type=client_credentials&client_id=app&client_secret=s3cret"), "", "client_secret=x")
	f.Fuzz(func(t *testing.T, contentType string, body []byte, authorization, query string) {
		req, aerr := parseClientRequest(fuzzTokenRequest(contentType, body, authorization, query), grantParams)
		// Deterministic: the same request gets the same answer.
		req2, aerr2 := parseClientRequest(fuzzTokenRequest(contentType, body, authorization, query), grantParams)
		if req != req2 || (aerr == nil) != (aerr2 == nil) || (aerr != nil && aerr.Error() != aerr2.Error()) {
			t.Fatalf("two parses differ: %+v %v / %+v %v", req, aerr, req2, aerr2)
		}
		fields, bodyOK := fuzzBodyFields(contentType, body)
		basicScheme := false
		if scheme, _, _ := strings.Cut(authorization, " "); strings.EqualFold(scheme, "Basic") {
			basicScheme = true
		}

		if aerr != nil {
			switch {
			case aerr.status == 400 && aerr.code == CodeBadRequest:
			case aerr.status == 413 && aerr.code == CodeBadRequest:
				if len(body) <= maxBodyBytes {
					t.Fatalf("413 for a body of %d bytes", len(body))
				}
			case aerr.status == 401 && aerr.code == CodeClientAuthFailed && basicScheme:
				if got := aerr.header.Get("WWW-Authenticate"); got != basicChallenge {
					t.Fatalf("401 with WWW-Authenticate %q", got)
				}
			case aerr.status == 401 && aerr.code == CodeClientAuthFailed:
				// Without Basic, 401 means no client authentication: no
				// client_id or no client_secret (RFC 6749 §5.2).
				if fields != nil && len(fields["client_id"]) == 1 && fields["client_id"][0] != "" &&
					len(fields["client_secret"]) == 1 && fields["client_secret"][0] != "" {
					t.Fatalf("401 without HTTP Basic for body credentials %q", fields["client_id"])
				}
				if got := aerr.header.Get("WWW-Authenticate"); got != "" {
					t.Fatalf("401 without Basic carries WWW-Authenticate %q", got)
				}
			default:
				t.Fatalf("unexpected answer %d %d %q", aerr.status, aerr.code, aerr.message)
			}
			if aerr.message == "" || !utf8.ValidString(aerr.message) || hasControl(aerr.message) {
				t.Fatalf("bad message %q", aerr.message)
			}
			// The answer never echoes a presented secret.
			var presented []string
			if fields != nil {
				presented = append(presented, fields["client_secret"]...)
			}
			if _, pass, ok := fuzzBasic(authorization); ok {
				presented = append(presented, pass)
			}
			for _, s := range presented {
				// Long enough, digit-bearing and space-free: no fixed
				// message can hold it by chance.
				if len(s) >= 12 && strings.ContainsAny(s, "0123456789") && !strings.ContainsRune(s, ' ') &&
					strings.Contains(aerr.message, s) {
					t.Fatalf("message %q echoes the secret", aerr.message)
				}
			}
			return
		}

		// Accepted: a well-formed client-credentials request.
		if req.clientID == "" || req.clientSecret == "" || hasControl(req.clientID) || hasControl(req.clientSecret) || hasControl(req.params.scope) {
			t.Fatalf("accepted with bad credentials: %+v", req)
		}
		if len(body) > maxBodyBytes {
			t.Fatalf("accepted a %d-byte body", len(body))
		}
		if !bodyOK {
			t.Fatalf("accepted a body of type %q that is neither a form nor a JSON object: %q", contentType, body)
		}
		if q, err := url.ParseQuery(query); err != nil || q.Has("client_id") || q.Has("client_secret") {
			t.Fatalf("accepted with query %q", query)
		}
		if got := fields["grant_type"]; len(got) != 1 || got[0] != "client_credentials" {
			t.Fatalf("accepted with grant_type %q", got)
		}
		for _, name := range []string{"client_id", "client_secret", "scope"} {
			if len(fields[name]) > 1 {
				t.Fatalf("accepted a duplicate %s", name)
			}
		}
		if req.basic != (authorization != "") || req.basic != basicScheme {
			t.Fatalf("basic = %v with Authorization %q", req.basic, authorization)
		}
		if req.basic {
			id, pass, ok := fuzzBasic(authorization)
			if !ok || id != req.clientID || pass != req.clientSecret {
				t.Fatalf("Basic %q read as %q:%q, want %q:%q", authorization, req.clientID, req.clientSecret, id, pass)
			}
			if _, has := fields["client_secret"]; has {
				t.Fatalf("accepted Basic beside a body client_secret")
			}
			if ids := fields["client_id"]; len(ids) == 1 && ids[0] != id {
				t.Fatalf("accepted Basic %q beside body client_id %q", id, ids[0])
			}
		} else {
			if got := fields["client_id"]; len(got) != 1 || got[0] != req.clientID {
				t.Fatalf("client_id %q, body has %q", req.clientID, got)
			}
			if got := fields["client_secret"]; len(got) != 1 || got[0] != req.clientSecret {
				t.Fatalf("client_secret differs from the body's")
			}
		}
		if got := fields["scope"]; (len(got) == 1) != (req.params.scope != "") || (len(got) == 1 && got[0] != req.params.scope) {
			t.Fatalf("scope %q, body has %q", req.params.scope, got)
		}
	})
}

// fuzzBasic decodes `Basic base64(urlencoded-id ":" urlencoded-secret)`
// (RFC 6749 §2.3.1, RFC 7617).
func fuzzBasic(authorization string) (id, secret string, ok bool) {
	scheme, rest, _ := strings.Cut(authorization, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false
	}
	return id, secret, true
}

// b64tokenRe is RFC 6750 §2.1's b64token.
var b64tokenRe = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

func FuzzParseBearer(f *testing.F) {
	f.Add("Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("bearer abc")
	f.Add("Bearer")
	f.Add("Bearer abc def")
	f.Add("Basic YTpi")
	f.Fuzz(func(t *testing.T, v string) {
		token, aerr := parseBearer(v)
		if aerr != nil {
			if aerr.status != 401 || aerr.code != CodeInvalidToken {
				t.Fatalf("answer %d %d", aerr.status, aerr.code)
			}
			if c := aerr.header.Get("WWW-Authenticate"); c != bearerChallenge && c != invalidTokenChallenge {
				t.Fatalf("challenge %q", c)
			}
			if token != "" {
				t.Fatalf("token %q beside an error", token)
			}
			return
		}
		if len(v) < 8 || !strings.EqualFold(v[:6], "Bearer") || v[6] != ' ' {
			t.Fatalf("accepted %q without the Bearer scheme", v)
		}
		if token != strings.TrimLeft(v[7:], " ") {
			t.Fatalf("token %q from %q: something after the token was dropped", token, v)
		}
		if len(token) > maxTokenLen || !b64tokenRe.MatchString(token) {
			t.Fatalf("accepted token %q that is not one b64token", token)
		}
	})
}

func FuzzBearerToken(f *testing.F) {
	tok := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	f.Add("Bearer "+tok, "", 1, "deviceid=d1")
	f.Add("Bearer "+tok, "Bearer "+tok, 2, "")
	f.Add("", "", 0, "access_token="+tok)
	f.Add("Bearer "+tok, "", 1, "%61ccess_token="+tok)
	f.Fuzz(func(t *testing.T, auth1, auth2 string, n int, query string) {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: "/outer/device/info/", RawQuery: query}, Header: http.Header{}}
		headers := []string{auth1, auth2}[:uint(n)%3]
		if len(headers) > 0 {
			r.Header["Authorization"] = headers
		}
		token, aerr := bearerToken(r)
		q, _ := url.ParseQuery(query)
		inQuery := q.Has("access_token")
		if aerr != nil {
			if aerr.status != 401 || aerr.code != CodeInvalidToken {
				t.Fatalf("answer %d %d", aerr.status, aerr.code)
			}
			c := aerr.header.Get("WWW-Authenticate")
			switch {
			case inQuery || len(headers) == 2:
				if c != invalidTokenChallenge {
					t.Fatalf("token in query or two headers: challenge %q", c)
				}
			case len(headers) == 0:
				if c != bearerChallenge {
					t.Fatalf("no token: challenge %q", c)
				}
			}
			return
		}
		if inQuery {
			t.Fatalf("accepted with access_token in query %q", query)
		}
		if len(headers) != 1 {
			t.Fatalf("accepted with %d Authorization headers", len(headers))
		}
		if want, werr := parseBearer(headers[0]); werr != nil || want != token {
			t.Fatalf("token %q, parseBearer says %q %v", token, want, werr)
		}
	})
}

// fuzzNormalizeHandler provisions one handler for a fuzz process and saves
// a token for it directly in its store.
func fuzzNormalizeHandler(f *testing.F) (*Handler, string) {
	h := &Handler{
		Clients:  []Client{{ID: testClientID, SecretHashes: []string{sha256Hash(testClientSecret)}}},
		StoreRaw: json.RawMessage(`{"module":"memory","name":"fuzz/normalize"}`),
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	f.Cleanup(cancel)
	if err := h.provision(ctx, zap.NewNop()); err != nil {
		f.Fatalf("Provision: %v", err)
	}
	f.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		f.Fatalf("Validate: %v", err)
	}
	token := "FuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuzzFuz"
	now := time.Now()
	rec := TokenRecord{ClientID: testClientID, Scope: "read write groups", IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(24 * time.Hour).UnixMilli(),
		Binding: h.clients[testClientID].bindings[0]}
	if err := h.store.Save(context.Background(), hashToken(token), rec, 0); err != nil {
		f.Fatalf("Save: %v", err)
	}
	return h, token
}

// fuzzUpstreamJSON returns an upstream error body as JSON text to look at,
// as the contract reads it: gunzipped for gzip, nil for other encodings,
// bodies over limit bytes or anything that is not a JSON object.
func fuzzUpstreamJSON(contentEncoding string, body []byte, limit int) []byte {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil
		}
		plain, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
		if err != nil {
			return nil
		}
		body = plain
	default:
		return nil
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || len(body) > limit || body[0] != '{' || !json.Valid(body) {
		return nil
	}
	return body
}

// fuzzIsEnvelope reports whether js is an envelope with a non-zero code.
func fuzzIsEnvelope(js []byte) bool {
	var env struct {
		Meta *struct {
			Message *string `json:"message"`
			Code    *int    `json:"code"`
		} `json:"meta"`
	}
	return json.Unmarshal(js, &env) == nil && env.Meta != nil && env.Meta.Message != nil &&
		env.Meta.Code != nil && *env.Meta.Code != 0
}

// fuzzEnvelopeCode returns the code of an upstream envelope.
func fuzzEnvelopeCode(js []byte) int {
	var env struct {
		Meta struct {
			Code int `json:"code"`
		} `json:"meta"`
	}
	_ = json.Unmarshal(js, &env)
	return env.Meta.Code
}

// stackTraceRe matches the frames and headers of common stack traces
// (Python, Java, Go, Node, .NET, PHP), as they would read once cleaned.
var stackTraceRe = regexp.MustCompile(`Traceback \(most recent call last\)|\bat [\w$.<>]+\([\w.]+\.java:\d+\)|` +
	`goroutine \d+ \[|File "[^"]+", line \d+|\bat .+ \(.+\.js:\d+:\d+\)|\.cs:line \d+|\.php:\d+|\.go:\d+`)

var fixedPhrases = map[string]bool{"parameter error": true, "device id error": true, "device disabled": true, "internal error": true}

func FuzzNormalize(f *testing.F) {
	f.Add(500, "text/html", "", []byte("<html><body><pre>java.lang.NullPointerException\n\tat A.b(A.java:1)</pre></body></html>"))
	f.Add(404, "application/json", "", []byte(`{"message":"no such device"}`))
	f.Add(403, "application/json", "", []byte(`{"meta":{"message":"device disabled","code":23031},"data":null}`))
	f.Add(409, "application/json", "gzip", gzipped(`{"error":"<b>conflict</b>"}`))
	f.Add(401, "", "", []byte{})
	h, token := fuzzNormalizeHandler(f)
	f.Fuzz(func(t *testing.T, status int, contentType, contentEncoding string, body []byte) {
		upstream := 400 + int(uint(status)%200)
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			if contentEncoding != "" {
				w.Header().Set("Content-Encoding", contentEncoding)
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.WriteHeader(upstream)
			_, err := w.Write(body)
			return err
		})
		r := httptest.NewRequest(http.MethodGet, "/outer/device/info/?deviceid=d1", nil)
		ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
		r = r.WithContext(ctx)
		r.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, next); err != nil {
			t.Fatalf("ServeHTTP: %v", err)
		}
		out := rec.Body.Bytes()
		if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(len(out)) {
			t.Fatalf("Content-Length %q for a %d-byte answer", cl, len(out))
		}
		if rec.Code < 400 || rec.Code > 599 {
			t.Fatalf("status %d for an upstream %d", rec.Code, upstream)
		}
		// What outergate may look at (64 KiB), and, clear of that bound,
		// what it must recognize as an envelope.
		upJSON := fuzzUpstreamJSON(contentEncoding, body, maxInspect)
		upEnvelope := fuzzUpstreamJSON(contentEncoding, body, 60<<10) != nil && fuzzIsEnvelope(upJSON)

		// Nothing passes through (issue 12): an upstream envelope is
		// rendered again like any other error, keeping its status and code.
		isEnvelope := upJSON != nil && fuzzIsEnvelope(upJSON)
		if upEnvelope && !isEnvelope {
			t.Fatalf("an upstream envelope %q (encoding %q) was not recognized", body, contentEncoding)
		}
		// Normalized: outergate's own envelope.
		if ct := rec.Header().Get("Content-Type"); ct != contentTypeJSONUTF8 {
			t.Fatalf("Content-Type %q", ct)
		}
		if ce := rec.Header().Values("Content-Encoding"); len(ce) != 0 {
			t.Fatalf("Content-Encoding %q on an envelope", ce)
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(out, &members); err != nil || len(members) != 2 || string(members["data"]) != "null" {
			t.Fatalf("not an error envelope: %q", out)
		}
		var env struct {
			Meta struct {
				Message *string `json:"message"`
				Code    *int    `json:"code"`
			} `json:"meta"`
		}
		if err := json.Unmarshal(out, &env); err != nil || env.Meta.Message == nil || env.Meta.Code == nil {
			t.Fatalf("not an envelope: %q", out)
		}
		msg, code := *env.Meta.Message, *env.Meta.Code
		if msg != strings.TrimSpace(msg) {
			t.Fatalf("message %q is not trimmed", msg)
		}
		if msg == "" || len(msg) > maxEnvelopeMessageSize || !utf8.ValidString(msg) || hasControl(msg) ||
			strings.ContainsRune(msg, '<') {
			t.Fatalf("bad message %q (%d bytes)", msg, len(msg))
		}
		if stackTraceRe.MatchString(msg) {
			t.Fatalf("message %q carries a stack trace", msg)
		}
		if upJSON == nil && !fixedPhrases[msg] {
			t.Fatalf("message %q taken from an upstream body that is not JSON: %q", msg, body)
		}
		if isEnvelope {
			if want := fuzzEnvelopeCode(upJSON); rec.Code != upstream || code != want {
				t.Fatalf("upstream envelope %d with code %d answered %d with code %d", upstream, want, rec.Code, code)
			}
			return
		}
		var want int
		switch {
		case code == CodeDeviceIDError:
			want = 404
		case code == CodeDeviceDisabled:
			want = 403
		case code == CodeBadRequest && upstream < 500 && upstream != 401:
			want = upstream
		case code == CodeBadRequest:
			want = 400
		case code == CodeInternal && upstream >= 500:
			want = upstream
		case code == CodeInternal:
			want = 502
		default:
			t.Fatalf("code %d for upstream %d", code, upstream)
		}
		if rec.Code != want {
			t.Fatalf("status %d with code %d for upstream %d, want %d", rec.Code, code, upstream, want)
		}
		wantCode := CodeBadRequest
		switch {
		case upstream == 404 || upstream == 410:
			wantCode = CodeDeviceIDError
		case upstream == 403 || upstream == 423:
			wantCode = CodeDeviceDisabled
		case upstream == 401 || upstream >= 500:
			wantCode = CodeInternal
		}
		if code != wantCode {
			t.Fatalf("code %d for upstream %d, want %d", code, upstream, wantCode)
		}
	})
}

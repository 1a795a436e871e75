package outergate

// The helpers the unit tests share: the test clients, a provisioned
// handler, requests as Caddy builds them, a recording next handler, the
// envelope checks and token issuance.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// sha256Hash is the Caddyfile/JSON form of a sha256 secret hash.
func sha256Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// newTestHandler provisions a Handler with the two test clients and a
// memory store of its own (named after the test, so tests do not share
// tokens or failure counters). configure may change the config before
// Provision.
func newTestHandler(t *testing.T, configure func(h *Handler)) *Handler {
	t.Helper()
	return newTestHandlerLogging(t, configure, zaptest.NewLogger(t))
}

// newTestHandlerLogging is newTestHandler logging to logger.
func newTestHandlerLogging(t *testing.T, configure func(h *Handler), logger *zap.Logger) *Handler {
	t.Helper()
	name, _ := json.Marshal("test/" + t.Name())
	h := &Handler{
		Clients: []Client{
			{ID: testClientID, SecretHashes: []string{sha256Hash(testClientSecret)}},
			{ID: readerClientID, SecretHashes: []string{sha256Hash(readerSecret)}, Scope: "read"},
		},
		StoreRaw: json.RawMessage(`{"module":"memory","name":` + string(name) + `}`),
	}
	if configure != nil {
		configure(h)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.provision(ctx, logger); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() }) // as Caddy does: leave the admin API's view
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	return h
}

// newRequest builds a request the way Caddy hands it to a handler: with a
// replacer and Caddy's client IP in its context.
func newRequest(method, target string, body io.Reader) (*http.Request, *caddy.Replacer) {
	r := httptest.NewRequest(method, target, body)
	repl := caddy.NewReplacer()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: testClientIP})
	return r.WithContext(ctx), repl
}

// nextRecorder is a next handler that records whether and how it was called.
type nextRecorder struct {
	called bool
	req    *http.Request
	body   []byte
	serve  func(w http.ResponseWriter, r *http.Request) error
}

func (n *nextRecorder) handler() caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		n.called = true
		n.req = r
		if r.Body != nil {
			n.body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(n.body))
		}
		if n.serve != nil {
			return n.serve(w, r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, err := w.Write([]byte(`{"meta":{"message":"ok","code":0},"data":{}}`))
		return err
	})
}

// failNext fails the test if it is called.
func failNext(t *testing.T) caddyhttp.Handler {
	return caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("next handler must not be called")
		return nil
	})
}

// envelopeReply is a decoded envelope answer.
type envelopeReply struct {
	Meta Meta            `json:"meta"`
	Data json.RawMessage `json:"data"`
}

// checkEnvelope asserts that rec holds an envelope outergate wrote, with the
// given status and code, the JSON content type, a correct Content-Length
// and a "data" member; it returns the envelope.
func checkEnvelope(t *testing.T, rec *httptest.ResponseRecorder, status, code int) envelopeReply {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d (body %q)", rec.Code, status, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != contentTypeJSONUTF8 {
		t.Errorf("Content-Type = %q, want %q", ct, contentTypeJSONUTF8)
	}
	if cl := rec.Header().Get("Content-Length"); cl != strconv.Itoa(rec.Body.Len()) {
		t.Errorf("Content-Length = %q, body is %d bytes", cl, rec.Body.Len())
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &members); err != nil {
		t.Fatalf("body is not a JSON object: %v (%q)", err, rec.Body.String())
	}
	if _, ok := members["data"]; !ok {
		t.Errorf("envelope has no data member: %q", rec.Body.String())
	}
	var env envelopeReply
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		t.Fatalf("decoding envelope: %v", err)
	}
	if env.Meta.Code != code {
		t.Errorf("code = %d, want %d (message %q)", env.Meta.Code, code, env.Meta.Message)
	}
	return env
}

// checkErrorEnvelope is checkEnvelope for an error: data must be null.
func checkErrorEnvelope(t *testing.T, rec *httptest.ResponseRecorder, status, code int) envelopeReply {
	t.Helper()
	env := checkEnvelope(t, rec, status, code)
	if string(env.Data) != "null" {
		t.Errorf("data = %s, want null", env.Data)
	}
	return env
}

// issueToken gets a token from the handler's token endpoint.
func issueToken(t *testing.T, h *Handler, id, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	r, _ := newRequest(http.MethodPost, "/outer/token/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
		t.Fatalf("token endpoint returned error: %v", err)
	}
	env := checkEnvelope(t, rec, http.StatusOK, CodeOK)
	var data tokenData
	if err := json.Unmarshal(env.Data, &data); err != nil || data.AccessToken == "" {
		t.Fatalf("no access token in %q (%v)", rec.Body.String(), err)
	}
	return data.AccessToken
}

// saveRecord stores rec under token directly in the handler's memory store,
// bypassing Save (which refuses past expiries).
func saveRecord(t *testing.T, h *Handler, token string, rec TokenRecord) {
	t.Helper()
	ms, ok := memoryStoreOf(h)
	if !ok {
		t.Fatalf("store is %T, want *MemoryStore", h.store)
	}
	if c := h.clients[rec.ClientID]; c != nil && rec.Binding == "" {
		rec.Binding = c.bindings[0] // as if issued by h with its first secret
	}
	ms.tokens.keep(t, hashToken(token), rec, time.Hour)
}

// memoryStoreOf returns the memory store behind the handler's metrics
// wrapper.
func memoryStoreOf(h *Handler) (*MemoryStore, bool) {
	ts, ok := h.store.(timedStore)
	if !ok {
		return nil, false
	}
	ms, ok := ts.Store.(*MemoryStore)
	return ms, ok
}

func basicAuth(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

// contextWithClientIP is r's context with Caddy's client IP set to ip.
func contextWithClientIP(r *http.Request, ip string) context.Context {
	return context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: ip})
}

// chunkedReader hides the length of a body, as a chunked request does.
type chunkedReader struct{ io.Reader }

// tokenCall posts to the token endpoint of h.
type tokenCall struct {
	method      string
	target      string
	contentType string
	body        string
	auth        string
	ip          string
	counted     bool // the request's context carries countedKey (see setupTrips)
}

// countedKey marks the context of a request whose store commands a test
// counts, so that the store's own background commands are not counted.
type countedKey struct{}

func (c tokenCall) do(t *testing.T, h *Handler) *httptest.ResponseRecorder {
	t.Helper()
	method, target, ct := c.method, c.target, c.contentType
	if method == "" {
		method = http.MethodPost
	}
	if target == "" {
		target = "/outer/token/"
	}
	if ct == "" {
		ct = formType
	}
	r, _ := newRequest(method, target, strings.NewReader(c.body))
	r.Header.Set("Content-Type", ct)
	if c.auth != "" {
		r.Header.Set("Authorization", c.auth)
	}
	if c.ip != "" {
		r = r.WithContext(contextWithClientIP(r, c.ip))
	}
	if c.counted {
		r = r.WithContext(context.WithValue(r.Context(), countedKey{}, true))
	}
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, failNext(t)); err != nil {
		t.Fatalf("ServeHTTP returned %v", err)
	}
	return rec
}

func formCreds(id, secret string, extra ...string) string {
	v := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v.Encode()
}

// Test clients: "app" holds the handler's default scopes, "reader" only read.
const (
	testClientID     = "app"
	testClientSecret = "app-secret-0123456789"
	readerClientID   = "reader"
	readerSecret     = "reader-secret-0123456789"
	testClientIP     = "192.0.2.10"
)

const (
	formType = "application/x-www-form-urlencoded"
	jsonType = "application/json"
)

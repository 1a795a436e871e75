package outergate

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	"go.uber.org/zap/zaptest"
)

// Test clients: "app" holds the handler's default scopes, "reader" only read.
const (
	testClientID     = "app"
	testClientSecret = "app-secret-0123456789"
	readerClientID   = "reader"
	readerSecret     = "reader-secret-0123456789"
	testClientIP     = "192.0.2.10"
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
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	h.logger = zaptest.NewLogger(t)
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
	key := hashToken(token)
	ms.tokens.cache.Set(string(key[:]), &rec, time.Hour)
}

func TestProvisionDefaults(t *testing.T) {
	h := newTestHandler(t, nil)
	if h.TokenPath != DefaultTokenPath {
		t.Errorf("TokenPath = %q", h.TokenPath)
	}
	if len(h.Protect) != 1 || h.Protect[0] != DefaultProtect {
		t.Errorf("Protect = %q", h.Protect)
	}
	if time.Duration(h.TokenTTL) != 36000*time.Second {
		t.Errorf("TokenTTL = %v", time.Duration(h.TokenTTL))
	}
	if h.Scope != "read write groups" {
		t.Errorf("Scope = %q", h.Scope)
	}
	if len(h.RequireParams) != 1 || h.RequireParams[0] != "deviceid" {
		t.Errorf("RequireParams = %q", h.RequireParams)
	}
	if h.IdentityHeader != "X-Outer-Client-Id" {
		t.Errorf("IdentityHeader = %q", h.IdentityHeader)
	}
	if h.ThrottleFailures != 10 || time.Duration(h.ThrottleWindow) != time.Minute {
		t.Errorf("throttle = %d per %v", h.ThrottleFailures, time.Duration(h.ThrottleWindow))
	}
	if _, ok := memoryStoreOf(h); !ok {
		t.Errorf("store = %T, want *MemoryStore", h.store)
	}
	if got := h.clients[readerClientID].scopes; strings.Join(got, " ") != "read" {
		t.Errorf("reader scopes = %q", got)
	}
	if got := h.clients[testClientID].scopes; strings.Join(got, " ") != "read write groups" {
		t.Errorf("app scopes = %q", got)
	}
}

func TestProvisionDefaultStoreIsMemory(t *testing.T) {
	h := &Handler{Clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("s")}}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := memoryStoreOf(h); !ok {
		t.Fatalf("store = %T, want *MemoryStore", h.store)
	}
}

func TestProvisionErrors(t *testing.T) {
	hash := sha256Hash("s")
	for _, tc := range []struct {
		name    string
		clients []Client
		secret  string // must not appear in the error
	}{
		{name: "client without id", clients: []Client{{SecretHashes: []string{hash}}}},
		{name: "client configured twice", clients: []Client{
			{ID: "a", SecretHashes: []string{hash}}, {ID: "a", SecretHashes: []string{hash}}}},
		{name: "client without hash", clients: []Client{{ID: "a"}}},
		{name: "bad hash is not echoed", clients: []Client{{ID: "a", SecretHashes: []string{"sha256:deadbeefcafe"}}},
			secret: "deadbeefcafe"},
		{name: "unknown hash kind is not echoed", clients: []Client{{ID: "a", SecretHashes: []string{"plain-text-secret"}}},
			secret: "plain-text-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Clients: tc.clients, StoreRaw: json.RawMessage(`{"module":"memory","name":"provision-errors"}`)}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := h.Provision(ctx)
			if err == nil {
				t.Fatal("Provision succeeded, want an error")
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error %q repeats the hash", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		configure func(h *Handler)
		wantErr   bool
	}{
		{name: "defaults are valid", configure: func(*Handler) {}},
		{name: "token_path must start with a slash", configure: func(h *Handler) { h.TokenPath = "outer/token/" }, wantErr: true},
		{name: "token_ttl under one second", configure: func(h *Handler) { h.TokenTTL = caddy.Duration(500 * time.Millisecond) }, wantErr: true},
		{name: "error_code status must be 4xx/5xx", configure: func(h *Handler) { h.ErrorCodes = map[int]int{200: 23010} }, wantErr: true},
		{name: "error_code code must be positive", configure: func(h *Handler) { h.ErrorCodes = map[int]int{409: 0} }, wantErr: true},
		{name: "error_code 409 -> 23030 is valid", configure: func(h *Handler) { h.ErrorCodes = map[int]int{409: 23030} }},
		{name: "negative throttle", configure: func(h *Handler) { h.ThrottleFailures = -1 }, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Clients: []Client{{ID: "a", SecretHashes: []string{sha256Hash("s")}}},
				StoreRaw: json.RawMessage(`{"module":"memory","name":"validate"}`)}
			tc.configure(h)
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			if err := h.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			if err := h.Validate(); (err != nil) != tc.wantErr {
				t.Fatalf("Validate() = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func TestUnprotectedPathsGoToNextUntouched(t *testing.T) {
	h := newTestHandler(t, nil)
	for _, target := range []string{"/", "/other", "/outer/devices/x", "/outer/token/x", "/outer/tokenx"} {
		t.Run(target, func(t *testing.T) {
			r, _ := newRequest(http.MethodGet, target, nil)
			r.Header.Set("Authorization", "Bearer whatever")
			r.Header["x_outer_client_id"] = []string{"forged"}
			next := &nextRecorder{}
			rec := httptest.NewRecorder()
			if err := h.ServeHTTP(rec, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if !next.called {
				t.Fatal("next was not called for an unprotected path")
			}
			if next.req.Header.Get("Authorization") != "Bearer whatever" {
				t.Error("Authorization must reach next untouched on unprotected paths")
			}
			for name := range next.req.Header {
				if normalizeHeaderName(name) == "x-outer-client-id" {
					t.Errorf("client-supplied identity header %q reached next", name)
				}
			}
		})
	}
}

// memoryStoreOf returns the memory store behind the handler's metrics
// wrapper.
func memoryStoreOf(h *Handler) (*MemoryStore, bool) {
	ts, ok := h.store.(timedStore)
	if !ok {
		return nil, false
	}
	ms, ok := ts.TokenStore.(*MemoryStore)
	return ms, ok
}

package outergate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

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
	// As Caddy does when a config stops: out of the admin API's view, so
	// that no later test (nor a -count=2 rerun) lists this handler's clients.
	defer func() { _ = h.Cleanup() }()
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
			defer func() { _ = h.Cleanup() }() // Caddy cleans up after a failed Provision too
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
			defer func() { _ = h.Cleanup() }() // else its clients (and token_ttl) stay in the admin API's view
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

package outergate

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestCheckClientID(t *testing.T) {
	for _, tc := range []struct {
		id, want string // want: a piece of the error, "" for none
	}{
		{"acme-2", ""},
		{"a.b_c-9", ""},
		{strings.Repeat("a", 128), ""},
		{"", "required"},
		{strings.Repeat("a", 129), "at most 128"},
		{"a\x00b", "control character"},
		{"a\tb", "control character"},
		{"a\u0085b", "control character"},
		{"\xff", "UTF-8"},
		{"a b", "letters, digits"},
		{"a/b", "letters, digits"},
		{"..", "letters, digits"},
		{"-x", "letters, digits"},
		{"é", "letters, digits"},
	} {
		err := checkClientID(tc.id)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkClientID(%q) = %v, want %q", tc.id, err, tc.want)
		}
	}
}

func TestCheckScope(t *testing.T) {
	for _, tc := range []struct {
		scope string
		ok    bool
	}{
		{"", true}, {"read", true}, {"read write groups", true}, {"a:b/c!", true},
		{" read", false}, {"read ", false}, {"read  write", false}, {"re\"ad", false},
		{`re\ad`, false}, {"réad", false}, {"read\twrite", false},
	} {
		if err := checkScope(tc.scope); (err == nil) != tc.ok {
			t.Errorf("checkScope(%q) = %v, want ok %v", tc.scope, err, tc.ok)
		}
	}
}

func TestCurrentScope(t *testing.T) {
	c := &Client{scopes: []string{"read", "groups"}}
	for _, tc := range []struct{ token, want string }{
		{"read", "read"},
		{"read groups", "read groups"},
		{"read write", "read"},
		{"write read groups", "read groups"},
		{"write", ""},
		{"", ""},
	} {
		if got := c.currentScope(tc.token); got != tc.want {
			t.Errorf("currentScope(%q) = %q, want %q", tc.token, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { c.currentScope("read groups") }); n != 0 {
		t.Errorf("an unnarrowed scope allocates %.0f times, want 0", n)
	}
}

func TestGraceVerifier(t *testing.T) {
	v, err := parseSecretHash(secretHash("old"))
	if err != nil {
		t.Fatal(err)
	}
	if !(graceVerifier{v, time.Now().Add(time.Hour)}).verify("old") {
		t.Error("a secret within its grace is refused")
	}
	if (graceVerifier{v, time.Now().Add(-time.Millisecond)}).verify("old") {
		t.Error("a secret past its grace is accepted")
	}
	if (graceVerifier{v, time.Now().Add(time.Hour)}).verify("other") {
		t.Error("a wrong secret is accepted within a grace")
	}
}

// mapStorage is the part of Caddy's storage the client store uses, in
// memory, standing in for the file system storage the e2e tests use.
type mapStorage struct {
	mu   sync.Mutex
	data map[string][]byte
	fail error
}

func (s *mapStorage) Store(_ context.Context, k string, v []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.data[k] = slices.Clone(v)
	return nil
}

func (s *mapStorage) Load(_ context.Context, k string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.data[k]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return v, nil
}

func (s *mapStorage) Delete(_ context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	delete(s.data, k)
	return nil
}

func (s *mapStorage) List(_ context.Context, p string, _ bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.data {
		if strings.HasPrefix(k, p+"/") {
			out = append(out, k)
		}
	}
	return out, nil
}

func TestStorageClients(t *testing.T) {
	ctx := context.Background()
	st := &mapStorage{data: map[string][]byte{}}
	c, err := newStorageClients(st, "outergate/clients/x", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := &managedClient{Client: Client{ID: "acme", SecretHashes: []string{secretHash("s")}, Scope: "read"}, CreatedAt: now()}
	if err := c.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, rec); !errors.Is(err, ErrClientExists) {
		t.Errorf("second Create: %v, want ErrClientExists", err)
	}
	next := *rec
	next.Scope = "read write"
	if err := c.Replace(ctx, rec, &next); err != nil {
		t.Fatal(err)
	}
	if err := c.Replace(ctx, rec, &next); !errors.Is(err, ErrClientChanged) {
		t.Errorf("Replace of a stale record: %v, want ErrClientChanged", err)
	}

	// A new process reads what was written.
	again, err := newStorageClients(st, "outergate/clients/x", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := again.Lookup("acme"); got == nil || got.Scope != "read write" || got.SecretHashes[0] != secretHash("s") {
		t.Errorf("after a restart: %+v", got)
	}
	if other, _ := newStorageClients(st, "outergate/clients/y", testLogger(t)); other.Lookup("acme") != nil {
		t.Error("another store's prefix sees the client")
	}

	// A failed write changes nothing, in memory either.
	st.fail = errors.New("disk full")
	if err := c.Delete(ctx, c.Lookup("acme")); err == nil {
		t.Error("Delete with a failing storage succeeded")
	}
	if c.Lookup("acme") == nil {
		t.Error("a failed Delete removed the client from memory")
	}
	st.fail = nil
	if err := c.Delete(ctx, c.Lookup("acme")); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, rec); !errors.Is(err, ErrClientNotFound) {
		t.Errorf("second Delete: %v, want ErrClientNotFound", err)
	}
	if again, _ := newStorageClients(st, "outergate/clients/x", testLogger(t)); len(again.List()) != 0 {
		t.Error("a deleted client is read back after a restart")
	}

	// A corrupt file is skipped, not fatal.
	st.data["outergate/clients/x/bad.json"] = []byte("{")
	if _, err := newStorageClients(st, "outergate/clients/x", testLogger(t)); err != nil {
		t.Errorf("a corrupt file stops the store: %v", err)
	}
}

// TestManagedClientsInProcess drives the admin routes against a handler:
// a created client gets a token, a PATCH narrows that token at once, a
// rotation without grace ends the old secret, a DELETE refuses the token.
func TestManagedClientsInProcess(t *testing.T) {
	h := newTestHandler(t, nil)
	a := new(AdminAPI)
	call := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		r, _ := newRequest(method, path, strings.NewReader(body))
		w := newRecorder()
		handle := a.handleClient
		if path == clientsPath {
			handle = a.handleClients
		}
		status := http.StatusOK
		if err := handle(w, r); err != nil {
			status = apiStatus(t, err)
		} else {
			status = w.Code
		}
		return status, decodeObject(w.Body.Bytes())
	}
	status, obj := call("POST", clientsPath, `{"id":"acme","scope":"read write"}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, obj)
	}
	secret := obj["client_secret"].(string)
	tok := issueToken(t, h, "acme", secret, "read write")
	if got := introspectScope(t, h, tok, "acme", secret); got != "read write" {
		t.Errorf("introspected scope %q, want read write", got)
	}
	if status, obj = call("PATCH", clientsPath+"/acme", `{"scope":"read"}`); status != http.StatusOK || obj["scope"] != "read" {
		t.Fatalf("patch: %d %v", status, obj)
	}
	if got := introspectScope(t, h, tok, "acme", secret); got != "read" {
		t.Errorf("introspected scope after the patch %q, want read", got)
	}
	if status, obj = call("POST", clientsPath+"/acme/rotate", ``); status != http.StatusOK {
		t.Fatalf("rotate: %d %v", status, obj)
	}
	if _, _, ok := h.auth.verify("acme", secret); ok {
		t.Error("the old secret works after a rotation without grace")
	}
	rotated := obj["client_secret"].(string)
	if _, _, ok := h.auth.verify("acme", rotated); !ok {
		t.Error("the new secret does not work")
	}
	if status, obj = call("DELETE", clientsPath+"/acme", ``); status != http.StatusOK || obj["revoked"] != float64(1) {
		t.Fatalf("delete: %d %v", status, obj)
	}
	if _, _, ok := h.auth.verify("acme", rotated); ok || h.managed.get("acme") != nil {
		t.Error("a deleted client still authenticates")
	}
}

// testLogger logs to the test.
func testLogger(t *testing.T) *zap.Logger { return zaptest.NewLogger(t) }

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// apiStatus is the status of an admin route's caddy.APIError.
func apiStatus(t *testing.T, err error) int {
	t.Helper()
	var e caddy.APIError
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a caddy.APIError", err)
	}
	return e.HTTPStatus
}

func decodeObject(raw []byte) map[string]any {
	var obj map[string]any
	_ = json.Unmarshal(raw, &obj)
	return obj
}

// introspectScope is the scope introspection reports for tok.
func introspectScope(t *testing.T, h *Handler, tok, id, secret string) string {
	t.Helper()
	rec := postForm(t, h, http.MethodPost, "/outer/token/introspect/", creds(id, secret, "token", tok))
	env := checkEnvelope(t, rec, http.StatusOK, CodeOK)
	var got introspection
	if err := json.Unmarshal(env.Data, &got); err != nil || !got.Active {
		t.Fatalf("introspection: %s (%v)", env.Data, err)
	}
	return got.Scope
}

// TestManagedViewConcurrent looks clients up while they change; run with
// -race it checks that a lookup never reads a record being written.
func TestManagedViewConcurrent(t *testing.T) {
	h := newTestHandler(t, nil)
	ctx := context.Background()
	rec := &managedClient{Client: Client{ID: "busy", SecretHashes: []string{secretHash("s")}, Scope: "read"}, CreatedAt: now()}
	if err := h.managed.store.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, _, ok := h.auth.verify("busy", "s"); !ok || c.currentScope("read write") == "" {
					t.Error("a client being changed failed to authenticate")
					return
				}
			}
		}()
	}
	for i := range 200 {
		cur := h.managed.store.Lookup("busy")
		next := *cur
		next.Scope = []string{"read", "read write"}[i%2]
		next.UpdatedAt = now()
		if err := h.managed.store.Replace(ctx, cur, &next); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestRotationKeepsFourGraceSecrets rotates with a grace period six times:
// the new secret and the last four rotated-out ones work, older ones not.
func TestRotationKeepsFourGraceSecrets(t *testing.T) {
	h := newTestHandler(t, nil)
	a := new(AdminAPI)
	post := func(path, body string) map[string]any {
		t.Helper()
		r, _ := newRequest(http.MethodPost, path, strings.NewReader(body))
		w := newRecorder()
		handle := a.handleClient
		if path == clientsPath {
			handle = a.handleClients
		}
		if err := handle(w, r); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		return decodeObject(w.Body.Bytes())
	}
	secrets := []string{post(clientsPath, `{"id":"rot"}`)["client_secret"].(string)}
	for range 6 {
		secrets = append(secrets, post(clientsPath+"/rot/rotate", `{"grace":"1h"}`)["client_secret"].(string))
	}
	for i, s := range secrets {
		_, _, ok := h.auth.verify("rot", s)
		if want := i >= len(secrets)-1-maxGraceHashes; ok != want {
			t.Errorf("secret %d of %d: authenticates %v, want %v", i, len(secrets), ok, want)
		}
	}
}

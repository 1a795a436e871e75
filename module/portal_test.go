package outergate

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func caddyContext() (caddy.Context, context.CancelFunc) {
	return caddy.NewContext(caddy.Context{Context: context.Background()})
}

func TestPortalServes(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Portal = "/outer/docs/" })
	tests := []struct {
		name, method, path string
		status             int
		contentType        string
		bodyHas            string
	}{
		{"page", "GET", "/outer/docs/", 200, "text/html; charset=utf-8", `src="/outer/docs/portal.js"`},
		{"page without its slash", "GET", "/outer/docs", 200, "text/html; charset=utf-8", `id="swagger-ui"`},
		{"page as index.html", "GET", "/outer/docs/index.html", 200, "text/html; charset=utf-8", "swagger-ui-bundle.js"},
		{"page in another case", "GET", "/OUTER/Docs/", 200, "text/html; charset=utf-8", "openapi.json"},
		{"document", "GET", "/outer/docs/openapi.json", 200, "application/json; charset=utf-8", `"openapi": "3.1.0"`},
		{"init script", "GET", "/outer/docs/portal.js", 200, "text/javascript; charset=utf-8", "SwaggerUIBundle("},
		{"renderer", "GET", "/outer/docs/swagger-ui-bundle.js", 200, "text/javascript; charset=utf-8", `PACKAGE_VERSION:"` + swaggerUIVersion + `"`},
		{"stylesheet", "GET", "/outer/docs/swagger-ui.css", 200, "text/css; charset=utf-8", ".swagger-ui"},
		{"HEAD", "HEAD", "/outer/docs/openapi.json", 200, "application/json; charset=utf-8", ""},
		{"wrong method", "POST", "/outer/docs/openapi.json", 405, "application/json; charset=utf-8", `"code":23010`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := newRequest(tt.method, tt.path, nil)
			w := httptest.NewRecorder()
			next := &nextRecorder{}
			if err := h.ServeHTTP(w, r, next.handler()); err != nil {
				t.Fatal(err)
			}
			if next.called {
				t.Fatal("the portal request reached the next handler")
			}
			res := w.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status || res.Header.Get("Content-Type") != tt.contentType {
				t.Fatalf("%d %q, want %d %q", res.StatusCode, res.Header.Get("Content-Type"), tt.status, tt.contentType)
			}
			if !strings.Contains(string(body), tt.bodyHas) {
				t.Errorf("body lacks %q", tt.bodyHas)
			}
			csp := res.Header.Get("Content-Security-Policy")
			for _, want := range []string{"default-src 'none'", "script-src 'self';", "frame-ancestors 'none'", "connect-src 'self';"} {
				if !strings.Contains(csp, want) {
					t.Errorf("CSP %q lacks %q", csp, want)
				}
			}
			if strings.Contains(csp, "unsafe") {
				t.Errorf("CSP %q allows unsafe sources", csp)
			}
			if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Referrer-Policy") != "no-referrer" {
				t.Error("no X-Content-Type-Options: nosniff or Referrer-Policy: no-referrer")
			}
			if tt.status == 200 && (res.Header.Get("Cache-Control") != "no-cache" || res.Header.Get("ETag") == "") {
				t.Errorf("Cache-Control %q, ETag %q", res.Header.Get("Cache-Control"), res.Header.Get("ETag"))
			}
			if tt.status == 405 && res.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow = %q", res.Header.Get("Allow"))
			}
		})
	}
}

// TestPortalPageHasNoInlineScript keeps the page within its CSP: every
// script is a file of the portal.
func TestPortalPageHasNoInlineScript(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) {
		h.Portal = "/docs/"
		h.Clients = append(h.Clients, Client{ID: "integrator-5c1e", SecretHashes: []string{sha256Hash("integrator-secret-77")}})
	})
	page := string(h.portal.files[""].body)
	if n, m := strings.Count(page, "<script"), strings.Count(page, `<script src="/docs/`); n == 0 || n != m {
		t.Errorf("%d script tags, %d of them portal files:\n%s", n, m, page)
	}
	for _, bad := range []string{"onload=", "onclick=", "javascript:", "<style", " style="} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, secret := range []string{"integrator-5c1e", "integrator-secret-77", testClientSecret, readerClientID, "sha256:"} {
		for name, f := range h.portal.files {
			if name != "swagger-ui-bundle.js" && name != "swagger-ui.css" && strings.Contains(string(f.body), secret) {
				t.Errorf("portal file %q contains %q", name, secret)
			}
		}
	}
}

func TestPortalConditionalAndPassThrough(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Portal = "/outer/docs/" })
	r, _ := newRequest("GET", "/outer/docs/openapi.json", nil)
	w := httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, failNext(t)); err != nil {
		t.Fatal(err)
	}
	etag := w.Result().Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	r, _ = newRequest("GET", "/outer/docs/openapi.json", nil)
	r.Header.Set("If-None-Match", etag)
	w = httptest.NewRecorder()
	if err := h.ServeHTTP(w, r, failNext(t)); err != nil {
		t.Fatal(err)
	}
	if w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
	// Names the portal does not have go on to the next handler, as does
	// everything when the portal is off.
	for _, tt := range []struct {
		portal, path string
	}{{"/outer/docs/", "/outer/docs/other.js"}, {"/outer/docs/", "/outer/docs/portal/../../x"}, {"", "/outer/docs/openapi.json"}} {
		h := newTestHandler(t, func(h *Handler) { h.Portal = tt.portal })
		r, _ := newRequest("GET", tt.path, nil)
		next := &nextRecorder{}
		if err := h.ServeHTTP(httptest.NewRecorder(), r, next.handler()); err != nil {
			t.Fatal(err)
		}
		if !next.called {
			t.Errorf("portal %q, %s: not passed on", tt.portal, tt.path)
		}
	}
}

func TestPortalCSPNamesIssuerOrigin(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Portal = "/docs/"; h.Issuer = "https://login.example.com/t1" })
	if csp := h.portal.csp; !strings.Contains(csp, "connect-src 'self' https://login.example.com;") {
		t.Errorf("CSP = %q", csp)
	}
	if doc := string(h.portal.files["openapi.json"].body); !strings.Contains(doc, `"tokenUrl": "https://login.example.com/oauth2/token"`) {
		t.Error("the oauth2 scheme does not name the token URL under the issuer")
	}
}

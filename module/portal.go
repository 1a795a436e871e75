package outergate

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// swaggerUIVersion is the swagger-ui-dist release embedded in portal/
// (portal/update.sh fetches it from the npm registry).
const swaggerUIVersion = "5.35.0"

// portalAssets are the files of the developer portal: Swagger UI's built
// bundle and stylesheet, the page and its own script.
//
//go:embed portal/index.html portal/portal.js portal/portal.css portal/swagger-ui-bundle.js portal/swagger-ui.css portal/favicon-32x32.png
var portalAssets embed.FS

// portalFile is one answer of the portal.
type portalFile struct {
	body        []byte
	contentType string
	etag        string
}

// portal serves the OpenAPI document of the gateway and a documentation
// page that renders it, under one path prefix. Everything it serves is
// public and the same for every request.
type portal struct {
	prefix string                // lower-case, cleaned, with a trailing slash
	files  map[string]portalFile // by name below prefix; "" is the page
	csp    string
	out    envelopeRenderer // answers a wrong method
}

// provisionPortal builds the portal when Portal is set: the OpenAPI
// document (merged into the operator's, if PortalDocument names one), the
// page and the assets. It runs after the clients are provisioned, since the
// document lists their scopes.
func (h *Handler) provisionPortal() error {
	h.portal = nil
	if h.Portal == "" {
		if h.PortalDocument != "" {
			return fmt.Errorf("portal_document needs portal")
		}
		return nil
	}
	if !strings.HasPrefix(h.Portal, "/") || strings.ContainsAny(h.Portal, "*?[{%") {
		return fmt.Errorf("portal must be a literal path starting with '/': %q", h.Portal)
	}
	prefix := caddyhttp.CleanPath(strings.ToLower(h.Portal), true)
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if h.protectsPath(prefix) || h.protectsPath(prefix+"openapi.json") {
		return fmt.Errorf("portal %q is under a protected path: the portal is public", h.Portal)
	}
	var backend obj
	if h.PortalDocument != "" {
		var err error
		if backend, err = loadBackendDocument(h.PortalDocument); err != nil {
			return err
		}
	}
	doc, err := json.MarshalIndent(h.openAPIDocument(backend), "", "  ")
	if err != nil {
		return fmt.Errorf("portal: encoding the OpenAPI document: %w", err)
	}
	p := &portal{prefix: prefix, files: map[string]portalFile{}, csp: portalCSP(h.Issuer), out: envelopeRenderer{h.logger}}
	p.add("openapi.json", "application/json; charset=utf-8", doc)
	page, err := portalPage(prefix)
	if err != nil {
		return err
	}
	p.add("", "text/html; charset=utf-8", page)
	for name, ct := range map[string]string{
		"portal.js":            "text/javascript; charset=utf-8",
		"portal.css":           "text/css; charset=utf-8",
		"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
		"swagger-ui.css":       "text/css; charset=utf-8",
		"favicon-32x32.png":    "image/png",
	} {
		b, err := portalAssets.ReadFile("portal/" + name)
		if err != nil {
			return fmt.Errorf("portal: embedded asset %s: %w", name, err)
		}
		p.add(name, ct, b)
	}
	h.portal = p
	return nil
}

// loadBackendDocument reads the operator's OpenAPI 3.1 document (JSON) for
// the backend's routes.
func loadBackendDocument(file string) (obj, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("portal document: %w", err)
	}
	var doc obj
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("portal document %s: not a JSON object: %w", file, err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		return nil, fmt.Errorf("portal document %s: openapi version %q, want 3.1.x", file, v)
	}
	if _, ok := doc["paths"].(obj); !ok {
		return nil, fmt.Errorf("portal document %s: no paths object", file)
	}
	return doc, nil
}

var portalPageTemplate = template.Must(template.ParseFS(portalAssets, "portal/index.html"))

// portalPage renders the page with absolute asset links, so that it works
// with and without its trailing slash.
func portalPage(prefix string) ([]byte, error) {
	var buf bytes.Buffer
	err := portalPageTemplate.Execute(&buf, struct{ Title, Base string }{"API documentation", prefix})
	if err != nil {
		return nil, fmt.Errorf("portal: rendering the page: %w", err)
	}
	return buf.Bytes(), nil
}

// portalCSP is the Content-Security-Policy of every portal answer: only
// the portal's own scripts and styles, no inline script, no framing, and
// requests only to this origin (and the issuer's, where the token endpoint
// is named under it).
func portalCSP(issuer string) string {
	connect := "'self'"
	if u, err := url.Parse(issuer); issuer != "" && err == nil && u.Host != "" {
		connect += " " + u.Scheme + "://" + u.Host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

func (p *portal) add(name, contentType string, body []byte) {
	sum := sha256.Sum256(body)
	p.files[name] = portalFile{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
}

// file finds the portal file a request is for: the page at the prefix
// (with or without its trailing slash) or at index.html, an asset or the
// document below it. Other paths are not the portal's.
func (p *portal) file(r *http.Request) (portalFile, bool) {
	clean := caddyhttp.CleanPath(strings.ToLower(r.URL.Path), true)
	if clean+"/" == p.prefix {
		clean = p.prefix
	}
	name, ok := strings.CutPrefix(clean, p.prefix)
	if !ok {
		return portalFile{}, false
	}
	if name == "index.html" {
		name = ""
	}
	f, ok := p.files[name]
	return f, ok
}

// serve answers a portal request: GET and HEAD only, conditional requests
// by ETag, and the page's security headers on every answer.
func (p *portal) serve(w http.ResponseWriter, r *http.Request, f portalFile) error {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", p.csp)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("Cross-Origin-Opener-Policy", "same-origin")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return p.out.failure(w, newAPIError(http.StatusMethodNotAllowed, CodeBadRequest,
			"method not allowed: use GET", "Allow", "GET, HEAD"))
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	return nil
}

// servePortal answers the request if it is for the portal; ok is false
// when it is not.
func (h *Handler) servePortal(w http.ResponseWriter, r *http.Request) (ok bool, err error) {
	if h.portal == nil {
		return false, nil
	}
	f, ok := h.portal.file(r)
	if !ok {
		return false, nil
	}
	return true, h.portal.serve(w, r, f)
}

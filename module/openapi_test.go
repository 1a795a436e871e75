package outergate

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadServedDocument provisions a handler with the portal on and loads the
// document it serves with kin-openapi, validating it.
func loadServedDocument(t *testing.T, configure func(h *Handler)) (*openapi3.T, []byte) {
	t.Helper()
	h := newTestHandler(t, func(h *Handler) {
		h.Portal = "/outer/docs/"
		if configure != nil {
			configure(h)
		}
	})
	raw := h.portal.files["openapi.json"].body
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatalf("loading the served document: %v\n%s", err, raw)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the served document does not validate: %v", err)
	}
	return doc, raw
}

// operations lists "METHOD path" of every operation in doc.
func operations(doc *openapi3.T) []string {
	var ops []string
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			ops = append(ops, m+" "+p)
		}
	}
	slices.Sort(ops)
	return ops
}

func TestOpenAPIDocumentValidates(t *testing.T) {
	tests := []struct {
		name      string
		configure func(h *Handler)
		want      []string
		wantNot   []string
	}{
		{name: "defaults", want: []string{
			"GET /.well-known/oauth-authorization-server",
			"GET /outer/device/endusers/", "GET /outer/device/info/", "PUT /outer/device/unbind/",
			"POST /oauth2/introspect", "POST /oauth2/revoke", "POST /oauth2/token",
			"POST /outer/token/", "POST /outer/token/introspect/", "POST /outer/token/revoke/",
		}},
		{name: "standard endpoints off", configure: func(h *Handler) { h.OAuth2TokenPath = "off" },
			want:    []string{"POST /outer/token/", "GET /outer/device/info/"},
			wantNot: []string{"POST /oauth2/token", "GET /.well-known/oauth-authorization-server"}},
		{name: "custom token path and issuer with a path", configure: func(h *Handler) {
			h.TokenPath = "/api/token/"
			h.Issuer = "https://gw.example.com/tenant"
		}, want: []string{"POST /api/token/", "POST /api/token/revoke/",
			"GET /.well-known/oauth-authorization-server/tenant"},
			wantNot: []string{"POST /outer/token/"}},
		{name: "device routes not protected are not listed", configure: func(h *Handler) { h.Protect = []string{"/api/*"} },
			wantNot: []string{"GET /outer/device/info/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, _ := loadServedDocument(t, tt.configure)
			if doc.OpenAPI != "3.1.0" {
				t.Errorf("openapi = %q, want 3.1.0", doc.OpenAPI)
			}
			ops := operations(doc)
			for _, w := range tt.want {
				if !slices.Contains(ops, w) {
					t.Errorf("operation %q missing; have %v", w, ops)
				}
			}
			for _, w := range tt.wantNot {
				if slices.Contains(ops, w) {
					t.Errorf("operation %q listed; it should not be", w)
				}
			}
		})
	}
}

// TestOpenAPISecuritySchemes checks the oauth2 scheme names the standard
// token endpoint and every configured scope, and that the device routes
// need the scope of their method.
func TestOpenAPISecuritySchemes(t *testing.T) {
	doc, raw := loadServedDocument(t, func(h *Handler) {
		h.Clients = append(h.Clients, Client{ID: "ops-integrator-7f3a", SecretHashes: []string{sha256Hash("ops-secret-0123456789")}, Scope: "read admin"})
	})
	oauth := doc.Components.SecuritySchemes["oauth2"].Value
	if oauth == nil || oauth.Type != "oauth2" || oauth.Flows.ClientCredentials == nil {
		t.Fatalf("oauth2 scheme = %+v", oauth)
	}
	cc := oauth.Flows.ClientCredentials
	if cc.TokenURL != "/oauth2/token" {
		t.Errorf("tokenUrl = %q", cc.TokenURL)
	}
	var scopes []string
	for s := range cc.Scopes {
		scopes = append(scopes, s)
	}
	slices.Sort(scopes)
	if want := []string{"admin", "groups", "read", "write"}; !slices.Equal(scopes, want) {
		t.Errorf("scopes = %v, want %v", scopes, want)
	}
	for _, tt := range []struct{ path, method, scope string }{
		{"/outer/device/info/", "GET", "read"},
		{"/outer/device/unbind/", "PUT", "write"},
	} {
		path, method, scope := tt.path, tt.method, tt.scope
		op := doc.Paths.Find(path).GetOperation(method)
		if op == nil || op.Security == nil {
			t.Fatalf("%s %s: no security", method, path)
		}
		found := false
		for _, req := range *op.Security {
			if s, ok := req["oauth2"]; ok && slices.Equal(s, []string{scope}) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s: security %v does not ask oauth2 for %q", method, path, *op.Security, scope)
		}
	}
	// The document is public: no client id, no secret hash.
	for _, c := range []string{readerClientID, "ops-integrator-7f3a", "sha256:"} {
		if strings.Contains(string(raw), c) {
			t.Errorf("the document contains %q", c)
		}
	}
}

// TestOpenAPICodesAndStatuses checks every DESIGN.md code is documented
// with its HTTP status on the operations that give it.
func TestOpenAPICodesAndStatuses(t *testing.T) {
	doc, _ := loadServedDocument(t, nil)
	codesAt := func(path, method, status string) []float64 {
		t.Helper()
		op := doc.Paths.Find(path).GetOperation(method)
		r := op.Responses.Value(status)
		if r == nil {
			t.Fatalf("%s %s: no %s response", method, path, status)
		}
		s := r.Value.Content.Get("application/json").Schema.Value
		var codes []float64
		for _, c := range s.Properties["meta"].Value.Properties["code"].Value.Enum {
			codes = append(codes, c.(float64))
		}
		return codes
	}
	for _, tt := range []struct {
		path, method, status string
		codes                []float64
	}{
		{"/outer/token/", "POST", "400", []float64{CodeBadRequest}},
		{"/outer/token/", "POST", "401", []float64{CodeClientAuthFailed}},
		{"/outer/token/", "POST", "405", []float64{CodeBadRequest}},
		{"/outer/token/", "POST", "413", []float64{CodeBadRequest}},
		{"/outer/token/", "POST", "429", []float64{CodeTooManyFailures}},
		{"/outer/token/", "POST", "503", []float64{CodeInternal}},
		{"/outer/device/info/", "GET", "400", []float64{CodeBadRequest}},
		{"/outer/device/info/", "GET", "401", []float64{CodeInvalidToken}},
		{"/outer/device/info/", "GET", "403", []float64{CodeInsufficientScope, CodeDeviceDisabled}},
		{"/outer/device/info/", "GET", "404", []float64{CodeDeviceIDError}},
		{"/outer/device/info/", "GET", "502", []float64{CodeInternal}},
		{"/outer/device/unbind/", "PUT", "504", []float64{CodeInternal}},
	} {
		if got := codesAt(tt.path, tt.method, tt.status); !slices.Equal(got, tt.codes) {
			t.Errorf("%s %s %s: codes %v, want %v", tt.method, tt.path, tt.status, got, tt.codes)
		}
	}
	if r := doc.Paths.Find("/outer/token/").Post.Responses.Value("429"); r.Value.Headers["Retry-After"] == nil {
		t.Error("429 without Retry-After")
	}
	if r := doc.Paths.Find("/outer/device/info/").Get.Responses.Value("401"); r.Value.Headers["WWW-Authenticate"] == nil {
		t.Error("device 401 without WWW-Authenticate")
	}
}

// TestOpenAPIMergesOperatorDocument checks an operator's document keeps
// its backend routes and gains the gateway's parts.
func TestOpenAPIMergesOperatorDocument(t *testing.T) {
	file := filepath.Join(t.TempDir(), "backend.json")
	backend := `{"openapi":"3.1.0","info":{"title":"Acme devices","version":"7"},
	 "paths":{"/outer/device/firmware/":{"get":{"operationId":"getFirmware","parameters":[{"name":"deviceid","in":"query","required":true,"schema":{"type":"string"}}],
	   "responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Firmware"}}}},
	                "404":{"description":"the backend's own 404","content":{"application/json":{"schema":{"type":"object"}}}}}}},
	  "/public/status":{"get":{"operationId":"status","responses":{"200":{"description":"ok"}}}}},
	 "components":{"schemas":{"Firmware":{"type":"object","properties":{"version":{"type":"string"}}}}}}`
	if err := os.WriteFile(file, []byte(backend), 0o600); err != nil {
		t.Fatal(err)
	}
	doc, _ := loadServedDocument(t, func(h *Handler) { h.PortalDocument = file })
	if doc.Info.Title != "Acme devices" || doc.Info.Version != "7" {
		t.Errorf("info = %+v, want the operator's", doc.Info)
	}
	ops := operations(doc)
	for _, w := range []string{"GET /outer/device/firmware/", "GET /public/status", "POST /outer/token/", "POST /oauth2/token"} {
		if !slices.Contains(ops, w) {
			t.Errorf("operation %q missing; have %v", w, ops)
		}
	}
	if slices.Contains(ops, "GET /outer/device/info/") {
		t.Error("built-in device route listed beside the operator's document")
	}
	if doc.Components.Schemas["Firmware"] == nil || doc.Components.Schemas["ErrorEnvelope"] == nil {
		t.Error("components not merged")
	}
	fw := doc.Paths.Find("/outer/device/firmware/").Get
	if fw.Security == nil || len(*fw.Security) == 0 {
		t.Error("protected backend route without security")
	}
	if fw.Responses.Value("401") == nil || fw.Responses.Value("5XX") == nil {
		t.Error("protected backend route without the gateway's answers")
	}
	if d := fw.Responses.Value("404").Value.Description; d == nil || *d != "the backend's own 404" {
		t.Error("the operator's own 404 was replaced")
	}
	if st := doc.Paths.Find("/public/status").Get; st.Security != nil {
		t.Error("unprotected backend route got a security requirement")
	}
}

func TestPortalConfigErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name      string
		configure func(h *Handler)
		want      string
	}{
		{"under a protected path", func(h *Handler) { h.Portal = "/outer/device/docs/" }, "protected"},
		{"not a path", func(h *Handler) { h.Portal = "docs/" }, "literal path"},
		{"a pattern", func(h *Handler) { h.Portal = "/docs/*" }, "literal path"},
		{"document without portal", func(h *Handler) { h.PortalDocument = "x.json" }, "needs portal"},
		{"missing document", func(h *Handler) { h.Portal = "/docs/"; h.PortalDocument = filepath.Join(dir, "none.json") }, "no such file"},
		{"3.0 document", func(h *Handler) {
			h.Portal = "/docs/"
			h.PortalDocument = write("v30.json", `{"openapi":"3.0.3","info":{"title":"t","version":"1"},"paths":{}}`)
		}, "want 3.1.x"},
		{"not JSON", func(h *Handler) { h.Portal = "/docs/"; h.PortalDocument = write("y.yaml", "openapi: 3.1.0\n") }, "not a JSON object"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := &Handler{Clients: []Client{{ID: testClientID, SecretHashes: []string{sha256Hash(testClientSecret)}}}}
			tt.configure(h)
			h.provisionDefaults()
			ctx, cancel := caddyContext()
			defer cancel()
			rt, err := newRoutes(ctx, h.endpointTable(), h.Protect)
			if err != nil {
				t.Fatal(err)
			}
			h.routes = rt
			if err := h.provisionClients(); err != nil {
				t.Fatal(err)
			}
			err = h.provisionPortal()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("provisionPortal() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestOpenAPIDocumentIsJSON guards the encoding: the served bytes decode
// to the same document the builder made.
func TestOpenAPIDocumentIsJSON(t *testing.T) {
	_, raw := loadServedDocument(t, nil)
	var v map[string]any
	if err := json.Unmarshal(raw, &v); err != nil || v["openapi"] != "3.1.0" {
		t.Fatalf("decode: %v, openapi %v", err, v["openapi"])
	}
}

// TestOpenAPIValidationIsNotVacuous breaks the built document in one way
// each and checks kin-openapi refuses it, so a passing validation means
// something.
func TestOpenAPIValidationIsNotVacuous(t *testing.T) {
	for _, tt := range []struct {
		name     string
		breakDoc func(doc obj)
	}{
		{"dangling $ref", func(doc obj) {
			doc["components"].(obj)["schemas"].(obj)["Token"] = ref("schemas", "Missing")
		}},
		{"response without description", func(doc obj) {
			op := doc["paths"].(obj)["/outer/token/"].(obj)["post"].(obj)
			delete(op["responses"].(obj)["200"].(obj), "description")
		}},
		{"oauth2 scheme without flows", func(doc obj) {
			delete(doc["components"].(obj)["securitySchemes"].(obj)["oauth2"].(obj), "flows")
		}},
		{"duplicate operationId", func(doc obj) {
			doc["paths"].(obj)["/outer/device/info/"].(obj)["get"].(obj)["operationId"] = "issueToken"
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler(t, nil)
			doc := h.openAPIDocument(nil)
			tt.breakDoc(doc)
			raw, err := json.Marshal(doc)
			if err != nil {
				t.Fatal(err)
			}
			loaded, err := openapi3.NewLoader().LoadFromData(raw)
			if err == nil {
				err = loaded.Validate(context.Background())
			}
			if err == nil {
				t.Error("kin-openapi accepted the broken document")
			}
		})
	}
}

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	oapirouter "github.com/getkin/kin-openapi/routers/legacy"
	"github.com/outergate/outergate/integration/legacy"
)

// portalPath is where every test gateway serves its developer portal, and
// so its OpenAPI document.
const portalPath = "/outer/docs/"

// contractTransport is the round tripper of the test gateways' clients: it
// validates every answer against the OpenAPI document the gateway itself
// serves (kin-openapi's openapi3filter), so that the document and the
// gateway cannot disagree. The document is fetched from the gateway once
// and again after CloseIdleConnections, which the tests call on every
// reload.
//
// Answers to requests the tests write on a socket go through the same
// check (gateway.checkRaw).
//
// What is not checked, and why: HEAD answers (no body; openapi3filter
// skips them too); answers for paths that are neither an operation of the
// document nor under a protected prefix: the gateway hands those to the
// backend untouched, so they are the backend's and not the gateway's API;
// and Go's own plain-text 400 to a raw request it cannot parse, written
// before any handler runs.
// An answer for a documented path with a method the document does not list,
// or for an undocumented path under a protected prefix (the tests send such
// requests on purpose), must still be one of the two documented error
// bodies (ErrorEnvelope or OAuthError) with an error status.
type contractTransport struct {
	inner  *http.Transport
	report func(format string, args ...any) // t.Errorf

	mu   sync.Mutex
	docs map[string]*contractDoc // by scheme://host
}

// contractCounts are how many answers the contract check saw, by kind,
// over the whole test binary (printed by TestMain).
var contractCounts struct{ validated, errorBodies, passedThrough, head, goRejected atomic.Int64 }

// contractSummary is the line TestMain prints after the tests.
func contractSummary() string {
	c := &contractCounts
	return fmt.Sprintf("contract: %d answers validated against the served OpenAPI document, %d as documented error bodies, %d backend answers outside the gateway's paths not checked, %d HEAD answers not checked, %d plain-text 400s of Go's HTTP server (before any handler) not checked",
		c.validated.Load(), c.errorBodies.Load(), c.passedThrough.Load(), c.head.Load(), c.goRejected.Load())
}

// contractDoc is one fetched document with its router.
type contractDoc struct {
	doc       *openapi3.T
	router    routers.Router
	protected []string // directory prefixes of the secured operations
}

func newContractTransport(t *testing.T) *contractTransport {
	return &contractTransport{inner: &http.Transport{}, report: t.Errorf, docs: map[string]*contractDoc{}}
}

// CloseIdleConnections drops the connections and the cached documents
// (http.Client.CloseIdleConnections calls it).
func (c *contractTransport) CloseIdleConnections() {
	c.inner.CloseIdleConnections()
	c.mu.Lock()
	clear(c.docs)
	c.mu.Unlock()
}

func (c *contractTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if req.Method == http.MethodHead {
		contractCounts.head.Add(1)
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return resp, nil // the test sees the short body itself
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	cd, err := c.document(req.Context(), origin)
	if err != nil {
		c.report("contract: %s %s: %v", req.Method, req.URL.Path, err)
		return resp, nil
	}
	if err := cd.check(req, resp, body); err != nil {
		c.report("contract: %s %s -> %d %s: %v", req.Method, req.URL.RequestURI(), resp.StatusCode, truncate(body), err)
	}
	return resp, nil
}

// document fetches, loads and validates the document of the gateway at
// origin, once per connection generation.
func (c *contractTransport) document(ctx context.Context, origin string) (*contractDoc, error) {
	c.mu.Lock()
	cd := c.docs[origin]
	c.mu.Unlock()
	if cd != nil {
		return cd, nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, origin+portalPath+"openapi.json", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.inner.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the OpenAPI document: %w", err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the OpenAPI document: %d %v", resp.StatusCode, err)
	}
	cd, err = loadContract(raw)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.docs[origin] = cd
	c.mu.Unlock()
	return cd, nil
}

// loadContract loads and validates a served document and routes it.
func loadContract(raw []byte) (*contractDoc, error) {
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("loading the OpenAPI document: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document does not validate: %w", err)
	}
	doc.Servers = nil // route on the path alone: the transport asks one gateway
	router, err := oapirouter.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing the OpenAPI document: %w", err)
	}
	cd := &contractDoc{doc: doc, router: router}
	for p, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			if op.Security != nil && len(*op.Security) > 0 && !hasEmptyRequirement(*op.Security) {
				cd.protected = append(cd.protected, path.Dir(strings.TrimSuffix(p, "/"))+"/")
			}
		}
	}
	return cd, nil
}

// hasEmptyRequirement tells whether a security list allows no credentials
// at all (the client-authenticated endpoints accept body credentials).
func hasEmptyRequirement(reqs openapi3.SecurityRequirements) bool {
	for _, r := range reqs {
		if len(r) == 0 {
			return true
		}
	}
	return false
}

// check validates one answer.
func (cd *contractDoc) check(req *http.Request, resp *http.Response, body []byte) error {
	clean := contractPath(req.URL.Path)
	route, params, err := cd.find(req, clean)
	if err == nil {
		input := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 resp.StatusCode,
			Header:                 resp.Header,
			Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		input.SetBodyBytes(body)
		contractCounts.validated.Add(1)
		return openapi3filter.ValidateResponse(context.Background(), input)
	}
	notFound, noMethod := isRouteError(err, routers.ErrPathNotFound), isRouteError(err, routers.ErrMethodNotAllowed)
	if !notFound && !noMethod {
		return err
	}
	if notFound && !cd.underProtected(clean) {
		contractCounts.passedThrough.Add(1)
		return nil // the backend's, passed through untouched
	}
	contractCounts.errorBodies.Add(1)
	if resp.StatusCode < 400 {
		return fmt.Errorf("an operation the document does not list answered %d", resp.StatusCode)
	}
	return cd.errorBody(resp.Header, body)
}

// find routes a request by the path the gateway matches on (Caddy's path
// matcher: lower case, cleaned, ";params" dropped; the endpoints also
// answer without their trailing slash).
func (cd *contractDoc) find(req *http.Request, clean string) (*routers.Route, map[string]string, error) {
	r2 := req.Clone(context.Background())
	u := *req.URL
	u.Path, u.RawPath = clean, ""
	r2.URL = &u
	route, params, err := cd.router.FindRoute(r2)
	if isRouteError(err, routers.ErrPathNotFound) {
		alt := u
		if strings.HasSuffix(clean, "/") {
			alt.Path = strings.TrimSuffix(clean, "/")
		} else {
			alt.Path = clean + "/"
		}
		r2.URL = &alt
		if route2, params2, err2 := cd.router.FindRoute(r2); !isRouteError(err2, routers.ErrPathNotFound) {
			return route2, params2, err2
		}
	}
	return route, params, err
}

// isRouteError tells whether err is the router's error kind: the legacy
// router returns new RouteErrors with the same reason, not the sentinels.
func isRouteError(err, kind error) bool {
	var re *routers.RouteError
	return errors.As(err, &re) && re.Reason == kind.Error()
}

func (cd *contractDoc) underProtected(p string) bool {
	for _, prefix := range cd.protected {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// errorBody checks a body is one of the two documented error forms.
func (cd *contractDoc) errorBody(h http.Header, body []byte) error {
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("error answer with Content-Type %q, want JSON", ct)
	}
	var v any
	if err := jsonUnmarshal(body, &v); err != nil {
		return fmt.Errorf("error answer is not JSON: %w", err)
	}
	opts := []openapi3.SchemaValidationOption{openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()}
	var errs []error
	for _, name := range []string{"ErrorEnvelope", "OAuthError"} {
		s := cd.doc.Components.Schemas[name]
		if s == nil {
			return fmt.Errorf("document has no %s schema", name)
		}
		err := s.Value.VisitJSON(v, opts...)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	return errors.Join(errs...)
}

// contractPath cleans a request path as Caddy's path matcher sees it.
func contractPath(p string) string {
	if unescaped, err := url.PathUnescape(p); err == nil {
		p = unescaped
	}
	p = strings.ReplaceAll(strings.ToLower(p), "\\", "/")
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if j := strings.IndexByte(s, ';'); j >= 0 {
			segs[i] = s[:j]
		}
	}
	p = strings.Join(segs, "/")
	trailing := strings.HasSuffix(p, "/")
	p = path.Clean("/" + p)
	if trailing && p != "/" {
		p += "/"
	}
	return p
}

func truncate(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// TestContractCatchesDrift feeds the contract check answers that differ
// from the document in one way each, beside the gateway's real answers:
// each must be refused, so that a drift between the two cannot pass.
func TestContractCatchesDrift(t *testing.T) {
	g := startGateway(t, gatewayConfig{})
	tr := g.client.Transport.(*contractTransport)
	var seen []string
	tr.report = func(format string, args ...any) { seen = append(seen, fmt.Sprintf(format, args...)) }

	token := g.issue(appID, appSecret)
	g.do(request{path: infoPath + legacy.DeviceOnline, header: bearer(token)})
	g.do(request{path: infoPath + legacy.DeviceUnknown, header: bearer(token)})
	g.do(request{path: "/outer/device/nowhere/?deviceid=" + legacy.DeviceOnline, header: bearer(token)})
	g.do(request{method: http.MethodDelete, path: "/outer/token/"})
	if len(seen) != 0 {
		t.Fatalf("the gateway's own answers were refused: %v", seen)
	}
	cd, err := tr.document(context.Background(), g.base)
	if err != nil {
		t.Fatal(err)
	}
	jsonHdr := func(extra ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	tokenBody := `{"meta":{"message":"token info","code":0},"data":{"access_token":"` + strings.Repeat("a", 43) +
		`","token_type":"Bearer","expires_in":36000,"scope":"read"}}`
	infoOK := `{"meta":{"message":"Device info","code":0},"data":{"mac":"x","online":true,"pname":"p","createtime":"t","productid":"c"}}`
	for _, tt := range []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
		refused            bool
	}{
		{"token reply as served", "POST", "/outer/token/", 200, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"), tokenBody, false},
		{"token reply without Cache-Control", "POST", "/outer/token/", 200, jsonHdr("Pragma", "no-cache"), tokenBody, true},
		{"token reply with a number as expires_in string", "POST", "/outer/token/", 200, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"),
			strings.Replace(tokenBody, "36000", `"36000"`, 1), true},
		{"token error with another code", "POST", "/outer/token/", 401, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"),
			`{"meta":{"message":"x","code":23021},"data":null}`, true},
		{"undocumented status", "POST", "/outer/token/", 418, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"),
			`{"meta":{"message":"x","code":23010},"data":null}`, true},
		{"device info as served", "GET", infoPath + legacy.DeviceOnline, 200, jsonHdr(), infoOK, false},
		{"device info with online as a string", "GET", infoPath + legacy.DeviceOnline, 200, jsonHdr(),
			strings.Replace(infoOK, "true", `"yes"`, 1), true},
		{"device 401 without its challenge", "GET", infoPath + legacy.DeviceOnline, 401, jsonHdr(),
			`{"meta":{"message":"x","code":23021},"data":null}`, true},
		{"error envelope with data", "GET", infoPath + legacy.DeviceOnline, 404, jsonHdr(),
			`{"meta":{"message":"x","code":23030},"data":{}}`, true},
		{"HTML error under a protected prefix", "GET", "/outer/device/nowhere/", 404, http.Header{"Content-Type": {"text/html"}}, "<h1>404</h1>", true},
		{"success for an undocumented protected path", "GET", "/outer/device/nowhere/", 200, jsonHdr(), infoOK, true},
		{"RFC error in the standard form", "POST", "/oauth2/token", 400, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"),
			`{"error":"invalid_request"}`, false},
		{"RFC error with an unknown error code", "POST", "/oauth2/token", 400, jsonHdr("Cache-Control", "no-store", "Pragma", "no-cache"),
			`{"error":"bad_thing"}`, true},
		{"backend page outside the gateway's paths", "GET", "/somewhere", 404, http.Header{"Content-Type": {"text/html"}}, "<h1>404</h1>", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, g.base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = cd.check(req, &http.Response{StatusCode: tt.status, Header: tt.header}, []byte(tt.body))
			if refused := err != nil; refused != tt.refused {
				t.Errorf("refused = %v (%v), want %v", refused, err, tt.refused)
			}
		})
	}
}

// checkRaw runs the contract check on an answer to a request the tests
// wrote on a socket themselves (hostile and malformed requests), routed by
// its request line. Left out, with their reason: Go's own plain-text 400,
// which net/http writes before any handler runs (DESIGN.md: that one answer
// cannot be an envelope), and answers without a status line.
func (g *gateway) checkRaw(t *testing.T, payload []byte, r reply) {
	t.Helper()
	if r.status == 0 {
		return
	}
	if r.status == http.StatusBadRequest && !r.isEnv && r.header.Get("Content-Type") == "text/plain; charset=utf-8" {
		contractCounts.goRejected.Add(1)
		return
	}
	line, _, _ := bytes.Cut(payload, []byte("\r\n"))
	method, target, ok := strings.Cut(string(line), " ")
	target, _, _ = strings.Cut(target, " ")
	u, err := url.ParseRequestURI(target)
	if !ok || err != nil {
		t.Errorf("contract: %q answered %d by the gateway, but its request line does not parse", line, r.status)
		return
	}
	if method == http.MethodHead {
		contractCounts.head.Add(1)
		return
	}
	tr, ok := g.client.Transport.(*contractTransport)
	if !ok {
		return
	}
	cd, err := tr.document(context.Background(), g.base)
	if err != nil {
		t.Errorf("contract: %v", err)
		return
	}
	req := &http.Request{Method: method, Header: http.Header{},
		URL: &url.URL{Scheme: "http", Host: g.hostPort(), Path: u.Path, RawPath: u.RawPath, RawQuery: u.RawQuery}}
	if err := cd.check(req, &http.Response{StatusCode: r.status, Header: r.header}, r.body); err != nil {
		t.Errorf("contract: raw %s -> %d %s: %v", line, r.status, truncate(r.body), err)
	}
}

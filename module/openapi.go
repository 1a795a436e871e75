package outergate

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// openAPIVersion is the OpenAPI version of the document the portal serves.
const openAPIVersion = "3.1.0"

// obj is one JSON object of the OpenAPI document.
type obj = map[string]any

// ref points at a component of the document.
func ref(kind, name string) obj { return obj{"$ref": "#/components/" + kind + "/" + name} }

// openAPIDocument builds the OpenAPI 3.1 document of the API this handler
// serves: its own endpoints (envelope token, revocation and introspection;
// the RFC ones and their metadata), the device routes it protects, the
// envelope and its codes, and the security schemes with the configured
// scopes. backend, when not nil, is the operator's document for the
// backend's routes: the gateway's parts are merged into it, and the built-in
// device routes (those of the platform document) are left out.
func (h *Handler) openAPIDocument(backend obj) obj {
	doc := backend
	if doc == nil {
		doc = obj{"info": obj{"title": "Device platform API (outer API v2)", "version": "2"}}
	}
	doc["openapi"] = openAPIVersion
	info, _ := doc["info"].(obj)
	if info == nil {
		info = obj{"title": "Device platform API", "version": "2"}
	}
	desc, _ := info["description"].(string)
	info["description"] = strings.TrimSpace(gatewayDescription + "\n\n" + desc)
	doc["info"] = info

	servers := []any{obj{"url": "/"}}
	if h.Issuer != "" {
		if u, err := url.Parse(h.Issuer); err == nil {
			servers = []any{obj{"url": u.Scheme + "://" + u.Host}}
		}
	}
	if _, ok := doc["servers"]; !ok {
		doc["servers"] = servers
	}

	components, _ := doc["components"].(obj)
	if components == nil {
		components = obj{}
	}
	for kind, entries := range h.openAPIComponents() {
		m, _ := components[kind].(obj)
		if m == nil {
			m = obj{}
		}
		for name, v := range entries {
			m[name] = v
		}
		components[kind] = m
	}
	doc["components"] = components

	paths, _ := doc["paths"].(obj)
	if paths == nil {
		paths = obj{}
		for p, item := range builtinDeviceRoutes() {
			if h.protectsPath(p) {
				paths[p] = item
			}
		}
	}
	for p, rawItem := range paths {
		item, ok := rawItem.(obj)
		if ok && h.protectsPath(p) {
			h.secureBackendItem(item)
		}
	}
	for p, item := range h.gatewayPaths() {
		paths[p] = item
	}
	doc["paths"] = paths
	h.addTags(doc)
	return doc
}

// gatewayDescription opens the document's description: what the gateway
// adds to the platform's API.
const gatewayDescription = "This API is served by an outergate gateway: it issues OAuth2 " +
	"client-credentials tokens and checks `Authorization: Bearer` on the device routes.\n\n" +
	"Every answer of the envelope endpoints is `{\"meta\":{\"message\",\"code\"},\"data\"}`; " +
	"`code` 0 is success, and errors carry `\"data\": null`:\n\n" +
	"| code | when | HTTP |\n|---|---|---|\n" +
	"| 0 | success | 200 |\n" +
	"| 23010 | bad parameters: grant_type, body, content type, credentials in the query string, scope, missing deviceid | 400 (405 + `Allow` for a wrong method, 413 for a body over 64 KiB) |\n" +
	"| 23020 | client authentication failed | 401 (`WWW-Authenticate: Basic` when Basic was used) |\n" +
	"| 23021 | access token missing, malformed, unknown, expired or revoked | 401 + `WWW-Authenticate: Bearer` |\n" +
	"| 23022 | token lacks the scope (GET/HEAD/OPTIONS need `read`, other methods `write`) | 403 |\n" +
	"| 23029 | too many failed client authentications, or a client's limit reached | 429 + `Retry-After` |\n" +
	"| 23030 | device id error | 404 |\n" +
	"| 23031 | device disabled | 403 |\n" +
	"| 23090 | internal: token store down, upstream unreachable, timeout or failing | 5xx |\n\n" +
	"The `/oauth2/*` endpoints answer in RFC 6749/7009/7662 form instead, for standard OAuth2 libraries."

// protectsPath tells whether the handler checks Bearer tokens on the
// literal path p.
func (h *Handler) protectsPath(p string) bool {
	r := &http.Request{URL: &url.URL{Path: p}}
	r = r.WithContext(context.WithValue(context.Background(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	return h.routes.protected(r)
}

// openAPIComponents are the document's schemas, responses' parts and
// security schemes.
func (h *Handler) openAPIComponents() map[string]obj {
	scopes := obj{}
	for _, s := range h.allScopes() {
		scopes[s] = scopeDescription(s)
	}
	schemes := obj{
		"bearer": obj{"type": "http", "scheme": "bearer",
			"description": "A token from `POST " + h.TokenPath + "` (or the OAuth2 token endpoint), sent as `Authorization: Bearer <access_token>`."},
		"clientBasic": obj{"type": "http", "scheme": "basic",
			"description": "Client authentication with HTTP Basic (RFC 6749 §2.3.1): client_id as user, client_secret as password. The alternative is both in the body."},
	}
	if h.OAuth2TokenPath != "off" {
		schemes["oauth2"] = obj{"type": "oauth2",
			"description": "OAuth2 client credentials (RFC 6749 §4.4) against the standard token endpoint.",
			"flows":       obj{"clientCredentials": obj{"tokenUrl": h.absolute(h.OAuth2TokenPath), "scopes": scopes}}}
	}
	return map[string]obj{
		"securitySchemes": schemes,
		"schemas": {
			"ErrorCode": obj{"type": "integer",
				"enum":        []int{CodeBadRequest, CodeClientAuthFailed, CodeInvalidToken, CodeInsufficientScope, CodeTooManyFailures, CodeDeviceIDError, CodeDeviceDisabled, CodeInternal},
				"description": "The gateway's and the platform's error codes; see the table above. An upstream envelope's own non-zero code is passed on as it is."},
			"Meta": obj{"type": "object", "required": []string{"message", "code"},
				"properties": obj{"message": obj{"type": "string"}, "code": obj{"type": "integer"}}},
			"Envelope": obj{"type": "object", "required": []string{"meta", "data"},
				"description": "The platform's envelope around every answer of the envelope endpoints.",
				"properties":  obj{"meta": ref("schemas", "Meta"), "data": obj{}}},
			"ErrorEnvelope": errorEnvelope(),
			"TokenRequest": obj{"type": "object", "required": []string{"grant_type"},
				"properties": obj{
					"grant_type":    obj{"type": "string", "const": "client_credentials"},
					"client_id":     obj{"type": "string", "description": "Required unless sent with HTTP Basic."},
					"client_secret": obj{"type": "string", "description": "Required unless sent with HTTP Basic; never both."},
					"scope":         obj{"type": "string", "description": "Optional: a space-separated subset of the client's scopes; empty or absent: the client's default scopes."},
				}},
			"TokenRequestToken": obj{"type": "object", "required": []string{"token"},
				"properties": obj{
					"token":           obj{"type": "string"},
					"token_type_hint": obj{"type": "string"},
					"client_id":       obj{"type": "string"},
					"client_secret":   obj{"type": "string"},
				}},
			"Token": obj{"type": "object", "required": []string{"access_token", "token_type", "expires_in", "scope"},
				"properties": obj{
					"access_token": obj{"type": "string", "minLength": 43, "maxLength": 43},
					"token_type":   obj{"type": "string", "const": "Bearer"},
					"expires_in":   obj{"type": "integer", "minimum": 1, "description": "token_ttl in whole seconds"},
					"scope":        obj{"type": "string"},
				}},
			"Introspection": obj{"type": "object", "required": []string{"active"},
				"description": "RFC 7662 §2.2; only `active` when the token is not an active token the caller may see. A client with `introspect any` (a resource server) sees every client's live tokens, with `sub`, `iss` and `nbf` too.",
				"properties": obj{
					"active":     obj{"type": "boolean"},
					"client_id":  obj{"type": "string"},
					"scope":      obj{"type": "string"},
					"exp":        obj{"type": "integer"},
					"iat":        obj{"type": "integer"},
					"token_type": obj{"type": "string", "const": "Bearer"},
					"sub":        obj{"type": "string", "description": "the token's client; to `introspect any` clients only"},
					"iss":        obj{"type": "string", "description": "the metadata's issuer; to `introspect any` clients only"},
					"nbf":        obj{"type": "integer", "description": "= iat; to `introspect any` clients only"},
				}},
			"OAuthError": obj{"type": "object", "required": []string{"error"},
				"description": "RFC 6749 §5.2 error.",
				"properties": obj{
					"error": obj{"type": "string", "enum": []string{"invalid_request", "invalid_client", "invalid_scope",
						"unsupported_grant_type", "temporarily_unavailable"}},
					"error_description": obj{"type": "string"},
				}},
			"ServerMetadata": obj{"type": "object",
				"required": []string{"issuer", "token_endpoint", "grant_types_supported", "scopes_supported"},
				"properties": obj{
					"issuer":                                        obj{"type": "string"},
					"token_endpoint":                                obj{"type": "string"},
					"revocation_endpoint":                           obj{"type": "string"},
					"introspection_endpoint":                        obj{"type": "string"},
					"grant_types_supported":                         stringArray(),
					"token_endpoint_auth_methods_supported":         stringArray(),
					"revocation_endpoint_auth_methods_supported":    stringArray(),
					"introspection_endpoint_auth_methods_supported": stringArray(),
					"scopes_supported":                              stringArray(),
					"response_types_supported": obj{"type": "array", "items": obj{"type": "string"},
						"description": "[\"none\"]: there is no authorization endpoint, and RFC 8414 requires the member"},
				}},
		},
	}
}

func stringArray() obj { return obj{"type": "array", "items": obj{"type": "string"}} }

// scopeDescription says what a scope allows on the device routes.
func scopeDescription(s string) string {
	switch s {
	case "read":
		return "GET, HEAD and OPTIONS on the device routes"
	case "write":
		return "every other method on the device routes"
	}
	return "scope " + s
}

// absolute turns a gateway path into the URL the document names: relative
// to the page's origin, or under the configured issuer's origin.
func (h *Handler) absolute(p string) string {
	if h.Issuer != "" {
		if u, err := url.Parse(h.Issuer); err == nil {
			return u.Scheme + "://" + u.Host + p
		}
	}
	return p
}

// errorEnvelope is an envelope with a non-zero code and no data; codes,
// when given, are the only ones allowed.
func errorEnvelope(codes ...int) obj {
	code := obj{"type": "integer", "not": obj{"const": 0}}
	if len(codes) > 0 {
		code = obj{"type": "integer", "enum": codes}
	}
	return obj{"type": "object", "required": []string{"meta", "data"},
		"properties": obj{
			"meta": obj{"type": "object", "required": []string{"message", "code"},
				"properties": obj{"message": obj{"type": "string"}, "code": code}},
			"data": obj{"type": "null"},
		}}
}

// dataEnvelope is a success envelope around data.
func dataEnvelope(message string, data obj) obj {
	meta := obj{"type": "object", "required": []string{"message", "code"},
		"properties": obj{"message": obj{"type": "string", "examples": []string{message}}, "code": obj{"const": 0}}}
	return obj{"type": "object", "required": []string{"meta", "data"},
		"properties": obj{"meta": meta, "data": data}}
}

// header is a response header; value, when not "", is its only value.
func header(required bool, desc, value string) obj {
	schema := obj{"type": "string"}
	if value != "" {
		schema["const"] = value
	}
	return obj{"required": required, "description": desc, "schema": schema}
}

// jsonResponse is a response with one JSON body and headers.
func jsonResponse(desc string, schema obj, headers obj) obj {
	r := obj{"description": desc, "content": obj{"application/json": obj{"schema": schema}}}
	if len(headers) > 0 {
		r["headers"] = headers
	}
	return r
}

// withHeaders adds headers to each response of a set.
func withHeaders(responses obj, headers obj) obj {
	for _, v := range responses {
		r := v.(obj)
		hs, _ := r["headers"].(obj)
		if hs == nil {
			hs = obj{}
		}
		for name, hd := range headers {
			hs[name] = hd
		}
		r["headers"] = hs
	}
	return responses
}

func allowPost() obj { return obj{"Allow": header(true, "The allowed method.", http.MethodPost)} }

func retryAfter() obj { return obj{"Retry-After": header(true, "Seconds until the window ends.", "")} }

// rateLimitHeaders are the IETF RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers) of a client with a rate limit or
// a quota, on accepted and refused answers alike.
func rateLimitHeaders() obj {
	return obj{
		"RateLimit-Policy": header(false, `The client's limits: "rate";q=<burst>;w=<seconds a burst takes to come back>, "quota";q=<requests>;w=<window seconds>.`, ""),
		"RateLimit":        header(false, `What is left of them: "rate";r=<remaining>;t=<seconds until full>, "quota";r=<remaining>;t=<seconds until the window ends>.`, ""),
	}
}

func noStoreHeaders() obj {
	return obj{
		"Cache-Control": header(true, "Answers that carry or concern credentials are not cached.", "no-store"),
		"Pragma":        header(true, "For HTTP/1.0 caches.", "no-cache"),
	}
}

// metadataCacheHeaders describe the metadata's cache policy (oauth2.go).
func metadataCacheHeaders(fixedIssuer bool) obj {
	if fixedIssuer {
		return obj{"Cache-Control": header(true, "Built from the configured issuer: the same for every request.", "public, max-age=3600")}
	}
	return obj{
		"Cache-Control": header(true, "Built from the request's Host: no shared cache may keep it.", "no-store"),
		"Vary":          header(true, "The document depends on Host.", "Host"),
	}
}

// clientErrors are the answers of a client-authenticated POST endpoint
// (token, revocation, introspection), in the envelope or in RFC form.
func clientErrors(rfc bool) obj {
	body := func(codes ...int) obj {
		if rfc {
			return ref("schemas", "OAuthError")
		}
		return errorEnvelope(codes...)
	}
	return obj{
		"400": jsonResponse("Bad parameters (23010): grant_type, body, content type, credentials in the query string, a duplicate parameter, scope.", body(CodeBadRequest), nil),
		"401": jsonResponse("Client authentication failed (23020): unknown client, wrong secret, no client authentication, or a method the client's auth_method does not allow; the same answer for all.", body(CodeClientAuthFailed),
			obj{"WWW-Authenticate": header(false, "Sent when HTTP Basic was used.", basicChallenge)}),
		"405": jsonResponse("Wrong method (23010).", body(CodeBadRequest), allowPost()),
		"413": jsonResponse("Body over 64 KiB (23010).", body(CodeBadRequest), nil),
		"415": jsonResponse("Body with a Content-Encoding (23010): request bodies are not decoded; or in a charset other than UTF-8 or with a Content-Type parameter other than charset, or (JSON) with a byte order mark.", body(CodeBadRequest), nil),
		"429": jsonResponse("Too many failed client authentications from this address or for this client (23029).", body(CodeTooManyFailures), retryAfter()),
		"503": jsonResponse("Token store unavailable (23090).", body(CodeInternal), nil),
	}
}

// clientPost is a client-authenticated POST operation.
func clientPost(id, summary, desc, tag, schema string, ok obj, rfc bool) obj {
	responses := clientErrors(rfc)
	for k, v := range ok {
		responses[k] = v
	}
	withHeaders(responses, noStoreHeaders())
	body := obj{"schema": ref("schemas", schema)}
	return obj{"post": obj{
		"operationId": id, "summary": summary, "description": desc, "tags": []string{tag},
		"security": []any{obj{}, obj{"clientBasic": []string{}}},
		"requestBody": obj{"required": true, "content": obj{
			"application/x-www-form-urlencoded": body,
			"application/json":                  body,
		}},
		"responses": responses,
	}}
}

// gatewayPaths are the paths the gateway answers itself.
func (h *Handler) gatewayPaths() obj {
	tag := "Tokens"
	paths := obj{
		h.TokenPath: clientPost("issueToken", "Obtain an access token (client credentials)",
			"RFC 6749 §4.4 in the platform's envelope. The body is a form or JSON; client credentials go in the body or in HTTP Basic, never both, never in the query string (RFC 6749 clients send forms; JSON is kept for the platform's integrators). An empty `scope` is an omitted one (the client's default scopes); a parameter given twice is refused; unknown extra parameters are ignored.",
			tag, "TokenRequest",
			obj{"200": jsonResponse("The token, in the envelope.", dataEnvelope("token info", ref("schemas", "Token")), nil)}, false),
		subPath(h.TokenPath, "revoke/"): clientPost("revokeToken", "Revoke one of your tokens (RFC 7009)",
			"A client revokes only its own tokens; an unknown token, or another client's, gets the same success.",
			tag, "TokenRequestToken",
			obj{"200": jsonResponse("Revoked (or nothing to revoke).", dataEnvelope("token revoked", obj{"type": "null"}), nil)}, false),
		subPath(h.TokenPath, "introspect/"): clientPost("introspectToken", "Introspect one of your tokens (RFC 7662)",
			"Any token that is not an active token of the caller is `{\"active\": false}`; a client with `introspect any` sees every client's.",
			tag, "TokenRequestToken",
			obj{"200": jsonResponse("The token's state, in the envelope.", dataEnvelope("token introspection", ref("schemas", "Introspection")), nil)}, false),
	}
	if h.OAuth2TokenPath == "off" {
		return paths
	}
	rtag := "Standard OAuth2"
	tok, rev, intro := oauth2Paths(h.OAuth2TokenPath)
	paths[tok] = clientPost("oauth2Token", "Obtain an access token (RFC 6749 §5 replies)",
		"The same grant as the envelope token endpoint, answered as RFC 6749 §5.1/§5.2 JSON for standard OAuth2 client libraries.",
		rtag, "TokenRequest", obj{"200": jsonResponse("The token (RFC 6749 §5.1).", ref("schemas", "Token"), nil)}, true)
	paths[rev] = clientPost("oauth2Revoke", "Revoke one of your tokens (RFC 7009)", "200 with an empty body, known token or not.",
		rtag, "TokenRequestToken", obj{"200": obj{"description": "Revoked (or nothing to revoke); empty body."}}, true)
	paths[intro] = clientPost("oauth2Introspect", "Introspect one of your tokens (RFC 7662)", "RFC 7662 §2.2 at the top level.",
		rtag, "TokenRequestToken", obj{"200": jsonResponse("The token's state.", ref("schemas", "Introspection"), nil)}, true)
	for i, p := range metadataPaths(h.Issuer) {
		id := "serverMetadata"
		if i > 0 {
			id = fmt.Sprintf("serverMetadata%d", i)
		}
		paths[p] = obj{"get": obj{
			"operationId": id, "summary": metadataSummary(p), "tags": []string{rtag},
			"responses": obj{
				"200": jsonResponse("The metadata.", ref("schemas", "ServerMetadata"), metadataCacheHeaders(h.Issuer != "")),
				"405": jsonResponse("Wrong method.", ref("schemas", "OAuthError"), obj{"Allow": header(true, "", "GET, HEAD")}),
			},
		}}
	}
	return paths
}

// deviceIDParam is the platform's device id parameter.
func deviceIDParam(required bool) obj {
	return obj{"name": DefaultRequireParam, "in": "query", "required": required,
		"description": "The device id.", "schema": obj{"type": "string"},
		"examples": obj{"online": obj{"value": "e22cfa2e-9752-11e6-9baf-00163e120d98"}}}
}

// builtinDeviceRoutes are the three device routes of the platform document,
// with the schemas of what the backend answers.
func builtinDeviceRoutes() obj {
	tag := []string{"Devices"}
	endUser := obj{"type": "object", "properties": obj{
		"enduserid": obj{"type": "string"},
		"phone":     obj{"type": "string"},
		"email":     obj{"type": "string"},
		"app":       obj{"type": "string"},
		"role":      obj{"type": "integer", "enum": []int{1, 2, 3}, "description": "1 super user, 2 administrator, 3 ordinary user"},
	}}
	info := obj{"type": "object", "properties": obj{
		"mac":        obj{"type": "string"},
		"online":     obj{"type": "boolean"},
		"pname":      obj{"type": "string", "description": "product name"},
		"createtime": obj{"type": "string", "description": "activation time"},
		"productid":  obj{"type": "string"},
	}}
	deviceBody := obj{"schema": obj{"type": "object", "properties": obj{"deviceid": obj{"type": "string"}}}}
	return obj{
		"/outer/device/endusers/": obj{"get": obj{
			"operationId": "getDeviceEndUsers", "summary": "Users bound to a device", "tags": tag,
			"parameters": []any{deviceIDParam(true)},
			"responses": obj{"200": jsonResponse("The device's users.",
				dataEnvelope("get users success", obj{"type": "array", "items": endUser}), nil)},
		}},
		"/outer/device/info/": obj{"get": obj{
			"operationId": "getDeviceInfo", "summary": "Device information", "tags": tag,
			"parameters": []any{deviceIDParam(true)},
			"responses":  obj{"200": jsonResponse("The device.", dataEnvelope("Device info", info), nil)},
		}},
		"/outer/device/unbind/": obj{"put": obj{
			"operationId": "unbindDevice", "summary": "Unbind a device from its users", "tags": tag,
			"description": "deviceid travels in the query string, a form body or a JSON body.",
			"parameters":  []any{deviceIDParam(false)},
			"requestBody": obj{"required": false, "content": obj{
				"application/x-www-form-urlencoded": deviceBody, "application/json": deviceBody}},
			"responses": obj{"200": jsonResponse("Unbound.", dataEnvelope("unbind success",
				obj{"type": "object", "properties": obj{"deviceid": obj{"type": "string"}}}), nil)},
		}},
	}
}

// secureBackendItem adds, to each operation of a protected path, the
// security requirement and the answers the gateway gives in front of the
// backend; the operator's own answers for a status are kept.
func (h *Handler) secureBackendItem(item obj) {
	bearerChallenge := header(true, `Bearer realm="outer", with error="invalid_token" when a token was sent.`, "")
	gateway := obj{
		"400": jsonResponse("Bad parameters (23010), e.g. "+strings.Join(h.RequireParams, ", ")+" missing, empty or repeated (JSON keys differing only in case are one parameter); "+
			"a method override header, trailer or parameter (_method); a path rewrite header (X-Original-URL, X-Rewrite-URL); a protocol upgrade not allowed (allow_websocket); a path component that is a Windows 8.3 short name.", errorEnvelope(CodeBadRequest), nil),
		"401": jsonResponse("Access token missing, malformed, unknown, expired or revoked (23021).", errorEnvelope(CodeInvalidToken),
			obj{"WWW-Authenticate": bearerChallenge}),
		"403": jsonResponse("The token lacks the scope (23022), or the device is disabled (23031).", errorEnvelope(CodeInsufficientScope, CodeDeviceDisabled), nil),
		"404": jsonResponse("Device id error (23030).", errorEnvelope(CodeDeviceIDError), nil),
		"413": jsonResponse("Body over 64 KiB (23010).", errorEnvelope(CodeBadRequest), nil),
		"415": jsonResponse("A body the gateway cannot inspect (23010): no Content-Type, a media type other than form or JSON, or a Content-Encoding, unless opaque_body admits it; a form or JSON body in a charset other than UTF-8 or with a Content-Type parameter other than charset, or a JSON body with a byte order mark.", errorEnvelope(CodeBadRequest), nil),
		"429": jsonResponse("A client's rate limit, quota or in-flight cap was reached (23029); nothing was forwarded.", errorEnvelope(CodeTooManyFailures),
			obj{"Retry-After": header(true, "Whole seconds until the next request would pass.", "")}),
		"4XX": jsonResponse("Any other client error of the backend, kept with its status (23010, or the backend envelope's own code).", errorEnvelope(), nil),
		"502": jsonResponse("Upstream unreachable, or it refused the gateway (23090).", errorEnvelope(CodeInternal), nil),
		"503": jsonResponse("Token store, rate limit store or upstream unavailable (23090).", errorEnvelope(CodeInternal), nil),
		"504": jsonResponse("Upstream timeout (23090).", errorEnvelope(CodeInternal), nil),
		"5XX": jsonResponse("Any other upstream failure, with its status (23090, or the backend envelope's own code).", errorEnvelope(), nil),
	}
	security := []any{obj{"bearer": []string{}}}
	if h.OAuth2TokenPath != "off" {
		security = append(security, obj{"oauth2": []string{}})
	}
	for method, rawOp := range item {
		op, ok := rawOp.(obj)
		if !ok || !slices.Contains(httpMethods, method) {
			continue
		}
		needs := "read"
		if method != "get" && method != "head" && method != "options" {
			needs = "write"
		}
		sec := slices.Clone(security)
		if len(sec) > 1 {
			sec[1] = obj{"oauth2": []string{needs}}
		}
		op["security"] = sec
		responses, _ := op["responses"].(obj)
		if responses == nil {
			responses = obj{}
		}
		for status, r := range gateway {
			if _, own := responses[status]; !own {
				responses[status] = r
			}
		}
		op["responses"] = withHeaders(responses, rateLimitHeaders())
	}
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// addTags names the document's tags in a stable order.
func (h *Handler) addTags(doc obj) {
	if _, ok := doc["tags"]; ok {
		return
	}
	tags := []any{
		obj{"name": "Tokens", "description": "Tokens in the platform's envelope."},
		obj{"name": "Devices", "description": "The device routes: a Bearer token with the scope the method needs."},
	}
	if h.OAuth2TokenPath != "off" {
		tags = append(tags, obj{"name": "Standard OAuth2", "description": "The same operations, answered in RFC form."})
	}
	doc["tags"] = tags
}

// metadataSummary names a metadata path in the document: RFC 8414's, or
// OpenID Connect Discovery's path serving the same document.
func metadataSummary(path string) string {
	if strings.Contains(path, wellKnownOpenID) {
		return "Authorization server metadata (RFC 8414) at OpenID Connect Discovery's path"
	}
	return "Authorization server metadata (RFC 8414)"
}

package outergate

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// Standard OAuth2 endpoints beside the envelope ones: the same clients,
// scopes, throttle and store, answering in RFC form so that unmodified
// OAuth2 client libraries work.
const (
	DefaultOAuth2TokenPath = "/oauth2/token"
	wellKnownMetadata      = "/.well-known/oauth-authorization-server"
)

// serveOAuth2Token answers RFC 6749 §4.4 with §5.1/§5.2 replies.
func (h *Handler) serveOAuth2Token(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	data, aerr, err := h.issueToken(r)
	if err != nil {
		aerr = h.failClosed("issuing token", err)
	}
	if aerr != nil {
		return h.oauthRespond(w, aerr)
	}
	return writeRFCJSON(w, http.StatusOK, data)
}

// serveOAuth2Revoke answers RFC 7009: 200 with an empty body.
func (h *Handler) serveOAuth2Revoke(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	aerr, err := h.revoke(r)
	if err != nil {
		aerr = h.failClosed("revoking token", err)
	}
	if aerr != nil {
		return h.oauthRespond(w, aerr)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
	return nil
}

// serveOAuth2Introspect answers RFC 7662 §2.2 at the top level.
func (h *Handler) serveOAuth2Introspect(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	info, aerr, err := h.introspect(r)
	if err != nil {
		aerr = h.failClosed("introspecting token", err)
	}
	if aerr != nil {
		return h.oauthRespond(w, aerr)
	}
	return writeRFCJSON(w, http.StatusOK, info)
}

// oauthErrorBody is an RFC 6749 §5.2 error.
type oauthErrorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// oauthRespond writes an apiError in RFC 6749 §5.2 form, with its status
// and headers (WWW-Authenticate: Basic, Allow, Retry-After).
func (h *Handler) oauthRespond(w http.ResponseWriter, e *apiError) error {
	code := e.oauth
	if code == "" {
		switch e.code {
		case CodeClientAuthFailed:
			code = "invalid_client"
		case CodeTooManyFailures, CodeInternal:
			code = "temporarily_unavailable"
		default:
			code = "invalid_request"
		}
	}
	for name, values := range e.header {
		w.Header()[name] = values
	}
	return writeRFCJSON(w, e.status, oauthErrorBody{Error: code, ErrorDescription: e.message})
}

// writeRFCJSON writes a top-level JSON answer.
func writeRFCJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentTypeJSONUTF8)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err = w.Write(body)
	return err
}

// serverMetadata is RFC 8414 §2 authorization server metadata.
type serverMetadata struct {
	Issuer                                    string   `json:"issuer"`
	TokenEndpoint                             string   `json:"token_endpoint"`
	RevocationEndpoint                        string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                     string   `json:"introspection_endpoint"`
	GrantTypesSupported                       []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported         []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported    []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	ScopesSupported                           []string `json:"scopes_supported"`
	ResponseTypesSupported                    []string `json:"response_types_supported"`
}

// serveMetadata answers RFC 8414 discovery.
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeRFCJSON(w, http.StatusMethodNotAllowed, oauthErrorBody{Error: "invalid_request", ErrorDescription: "use GET"})
	}
	issuer := h.Issuer
	origin := ""
	if issuer == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		origin = scheme + "://" + r.Host
		issuer = origin
	} else if u, err := url.Parse(issuer); err == nil {
		origin = u.Scheme + "://" + u.Host
	}
	auth := []string{"client_secret_basic", "client_secret_post"}
	tok, rev, intro := oauth2Paths(h.OAuth2TokenPath)
	return writeRFCJSON(w, http.StatusOK, serverMetadata{
		Issuer:                                    issuer,
		TokenEndpoint:                             origin + tok,
		RevocationEndpoint:                        origin + rev,
		IntrospectionEndpoint:                     origin + intro,
		GrantTypesSupported:                       []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported:         auth,
		RevocationEndpointAuthMethodsSupported:    auth,
		IntrospectionEndpointAuthMethodsSupported: auth,
		ScopesSupported:                           h.allScopes(),
		ResponseTypesSupported:                    []string{},
	})
}

// allScopes lists every scope a configured client may hold, sorted.
func (h *Handler) allScopes() []string {
	all := slices.Clone(h.scopes)
	for _, c := range h.clients {
		all = append(all, c.scopes...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

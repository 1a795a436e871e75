package outergate

import (
	"net/http"
	"net/url"
	"slices"
)

// Standard OAuth2 endpoints beside the envelope ones: the same clients,
// scopes, throttle and store, answering in RFC form (rfcRenderer) so that
// unmodified OAuth2 client libraries work. This file holds the RFC 8414
// metadata; routes.go lists the endpoints.
const (
	DefaultOAuth2TokenPath = "/oauth2/token"
	wellKnownMetadata      = "/.well-known/oauth-authorization-server"
	// wellKnownOpenID serves the same document for clients that discover
	// only through OpenID Connect Discovery's path; it claims nothing of
	// OpenID Connect (no id_token, no jwks_uri, no userinfo).
	wellKnownOpenID = "/.well-known/openid-configuration"
)

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
		return writeJSON(w, http.StatusMethodNotAllowed, oauthErrorBody{Error: "invalid_request", ErrorDescription: "use GET"})
	}
	issuer, origin := h.issuer(r)
	metadataCachePolicy(w.Header(), h.Issuer != "")
	auth := authMethodNames(h.clients, h.auths)
	tok, rev, intro := oauth2Paths(h.OAuth2TokenPath)
	return writeJSON(w, http.StatusOK, serverMetadata{
		Issuer:                                    issuer,
		TokenEndpoint:                             origin + tok,
		RevocationEndpoint:                        origin + rev,
		IntrospectionEndpoint:                     origin + intro,
		GrantTypesSupported:                       []string{"client_credentials"},
		TokenEndpointAuthMethodsSupported:         auth,
		RevocationEndpointAuthMethodsSupported:    auth,
		IntrospectionEndpointAuthMethodsSupported: auth,
		ScopesSupported:                           h.allScopes(),
		ResponseTypesSupported:                    responseTypes,
	})
}

// responseTypes is response_types_supported. RFC 8414 §2 requires the
// member, and strict validators (authlib's) read an empty list as a missing
// one; but this server has no authorization endpoint, so no response type
// that returns a credential may be claimed. "none" (OAuth 2.0 Multiple
// Response Type Encoding Practices §4) is the registered response type that
// returns none: listing it alone claims no flow a client could start.
var responseTypes = []string{"none"}

// issuer is the RFC 8414 issuer identifier and the origin of the endpoint
// URLs: the configured issuer, else the request's scheme and host.
func (h *Handler) issuer(r *http.Request) (issuer, origin string) {
	if h.Issuer != "" {
		if u, err := url.Parse(h.Issuer); err == nil {
			origin = u.Scheme + "://" + u.Host
		}
		return h.Issuer, origin
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	origin = scheme + "://" + r.Host
	return origin, origin
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

// metadataCachePolicy sets the cache policy of the metadata document. Built
// from a configured issuer it is the same for every request and may be
// cached for an hour; built from the request's Host it must not be kept by
// a shared cache, which could serve one Host's document for another.
func metadataCachePolicy(h http.Header, fixedIssuer bool) {
	if fixedIssuer {
		h.Set("Cache-Control", "public, max-age=3600")
		return
	}
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Host")
}

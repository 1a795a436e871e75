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
	metadataCachePolicy(w.Header(), h.Issuer != "")
	auth := []string{"client_secret_basic", "client_secret_post"}
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

package outergate

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// basicChallenge is sent with 401 + 23020 when the client used HTTP Basic.
const basicChallenge = `Basic realm="outer"`

// tokenRequest is a parsed client-credentials token request.
type tokenRequest struct {
	clientID     string
	clientSecret string
	scope        string // requested scope, may be empty
	basic        bool   // credentials came in an Authorization: Basic header
}

// tokenData is the "data" of a successful token reply, in the document's
// field order.
type tokenData struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// serveToken answers the token endpoint. Every answer carries
// Cache-Control: no-store.
func (h *Handler) serveToken(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	data, aerr, err := h.issueToken(r)
	if err != nil {
		return h.storeError(w, "issuing token", err)
	}
	if aerr != nil {
		return h.respond(w, aerr)
	}
	return writeEnvelope(w, http.StatusOK, CodeOK, "token info", data)
}

// noStore marks an answer that carries or concerns credentials as not to
// be cached (RFC 6749 §5.1).
func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
}

// issueToken runs a client-credentials grant: it authenticates the client,
// grants the scope, and saves a new token. err is a store failure.
func (h *Handler) issueToken(r *http.Request) (*tokenData, *apiError, error) {
	if r.Method != http.MethodPost {
		return nil, methodNotAllowed(), nil
	}
	var scopeParam string
	client, _, aerr, err := h.authenticateClient(r, func(p params) *apiError {
		req, aerr := tokenParams(p)
		scopeParam = req.scope
		return aerr
	})
	if err != nil || aerr != nil {
		tokenRequests(aerr, err)
		return nil, aerr, err
	}
	scope, aerr := grantScope(client.scopes, scopeParam)
	if aerr != nil {
		tokenRequests(aerr, nil)
		return nil, aerr, nil
	}
	token, err := newToken()
	if err != nil {
		return nil, nil, fmt.Errorf("generating token: %w", err)
	}
	now := time.Now()
	key := hashToken(token)
	rec := TokenRecord{ClientID: client.ID, Scope: scope, IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(h.ttl).UnixMilli()}
	if err := h.store.Save(r.Context(), key, rec, h.MaxTokensPerClient); err != nil {
		tokenRequests(nil, err)
		return nil, nil, err
	}
	tokenRequests(nil, nil)
	h.audit.Info("token issued",
		zap.String("client_id", client.ID),
		zap.String("remote_ip", clientIP(r)),
		zap.String("token_fp", key.Fingerprint()),
		zap.String("scope", scope))
	return &tokenData{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(h.ttl / time.Second),
		Scope:       scope,
	}, nil, nil
}

// methodNotAllowed is the answer of the POST-only endpoints to other methods.
func methodNotAllowed() *apiError {
	return newAPIError(http.StatusMethodNotAllowed, CodeBadRequest,
		"method not allowed: use POST", "Allow", http.MethodPost)
}

// parseTokenRequest reads a token request per RFC 6749 §4.4 and §2.3: a form
// or JSON body, client credentials in the body or in HTTP Basic, never both,
// never in the query string, no parameter twice.
func parseTokenRequest(r *http.Request) (tokenRequest, *apiError) {
	var req tokenRequest
	cr, aerr := parseClientRequest(r, func(p params) *apiError {
		var aerr *apiError
		req, aerr = tokenParams(p)
		return aerr
	})
	req.clientID, req.clientSecret, req.basic = cr.clientID, cr.clientSecret, cr.basic
	return req, aerr
}

// tokenParams checks the grant's own parameters: grant_type and scope.
func tokenParams(p params) (tokenRequest, *apiError) {
	var req tokenRequest
	grantType, found, err := single("grant_type", p)
	switch {
	case err != nil:
		return req, badRequest(err.Error())
	case !found:
		return req, badRequest("grant_type is required")
	case grantType != "client_credentials":
		return req, oauthError(badRequest("unsupported grant_type: only client_credentials is supported"), "unsupported_grant_type")
	}
	scope, _, err := single("scope", p)
	if err != nil {
		return req, oauthError(badRequest(err.Error()), "invalid_scope")
	}
	req.scope = scope
	return req, nil
}

// grantScope returns the scope of a new token: the requested subset of the
// client's scopes, or all of them when none was requested.
func grantScope(allowed []string, requested string) (string, *apiError) {
	if requested == "" {
		return strings.Join(allowed, " "), nil
	}
	if strings.TrimSpace(requested) == "" {
		return "", oauthError(badRequest("invalid scope"), "invalid_scope")
	}
	var granted []string
	for s := range strings.FieldsSeq(requested) {
		if !containsScope(allowed, s) {
			return "", oauthError(badRequest("invalid scope"), "invalid_scope")
		}
		if !containsScope(granted, s) {
			granted = append(granted, s)
		}
	}
	return strings.Join(granted, " "), nil
}

func containsScope(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// newToken returns 32 random bytes, base64url without padding (43 chars).
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// clientIP is Caddy's idea of the client's address, which honours
// trusted_proxies.
func clientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		return ip
	}
	return r.RemoteAddr
}

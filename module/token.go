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

// tokenRequest is the token endpoint's own parameter: the requested scope,
// "" when none was requested.
type tokenRequest struct {
	scope string
}

// tokenData is the "data" of a successful token reply, in the platform
// document's field order (docs/API.md).
type tokenData struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope"`
}

// issueToken runs a client-credentials grant (RFC 6749 §4.4): it
// authenticates the client, grants the scope, and saves a new token. err is
// a store failure. It is the issue operation of both token endpoints.
func (h *Handler) issueToken(r *http.Request) (any, *apiError, error) {
	req, aerr, err := checkClient(h.auth, r, grantParams)
	if err != nil || aerr != nil {
		countTokenRequest(aerr, err)
		return nil, aerr, err
	}
	client := req.client
	scope, aerr := grantScope(client.scopes, req.params.scope)
	if aerr != nil {
		// A locked-out key gets 429 whatever it sends, a right secret too.
		if lerr, err := h.auth.admit(r, req.pass); err != nil || lerr != nil {
			countTokenRequest(lerr, err)
			return nil, lerr, err
		}
		countTokenRequest(aerr, nil)
		return nil, aerr, nil
	}
	token, err := randomSecret()
	if err != nil {
		return nil, nil, fmt.Errorf("generating token: %w", err)
	}
	now := time.Now()
	key := hashToken(token)
	rec := TokenRecord{ClientID: client.ID, Scope: scope, IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(client.ttl).UnixMilli(), Binding: req.binding}
	// One step: the lockouts checked (and the consecutive failures
	// forgotten), the token written, the cap applied.
	saveErr := h.store.Save(r.Context(), key, rec, h.MaxTokensPerClient, req.pass.locks...)
	if aerr, err := h.auth.saved(r, req.pass, saveErr); err != nil || aerr != nil {
		countTokenRequest(aerr, err)
		return nil, aerr, err
	}
	countTokenRequest(nil, nil)
	h.audit.Info("token issued",
		zap.String("client_id", client.ID),
		zap.String("remote_ip", clientIP(r)),
		zap.String("token_fp", key.Fingerprint()),
		zap.String("scope", scope))
	return &tokenData{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(client.ttl / time.Second),
		Scope:       scope,
	}, nil, nil
}

// grantParams checks the grant's own parameters: grant_type and scope.
func grantParams(p params) (tokenRequest, *apiError) {
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
	// An empty scope is an omitted one (RFC 6749 §3.3: the default grant);
	// a repeated one is a repeated parameter, invalid_request (§3.2).
	scope, err := optional("scope", p)
	if err != nil {
		return req, badRequest(err.Error())
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

// randomSecret returns 32 random bytes, base64url without padding (43
// chars): an access token, or a client secret from `caddy outergate
// new-client`.
func randomSecret() (string, error) {
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

package outergate

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
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
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		return h.respond(w, newAPIError(http.StatusMethodNotAllowed, CodeBadRequest,
			"method not allowed: use POST", "Allow", http.MethodPost))
	}
	ipKey := "ip:" + clientIP(r)
	if aerr, err := h.throttled(r, h.addressThrottle(), ipKey); err != nil {
		return h.storeError(w, "reading failure count", err)
	} else if aerr != nil {
		h.logRefusal(r, "token request throttled", aerr)
		return h.respond(w, aerr)
	}
	req, aerr := parseTokenRequest(r)
	if aerr != nil {
		h.logRefusal(r, "token request refused", aerr)
		if aerr.code == CodeClientAuthFailed {
			if err := h.countFailure(r, h.addressThrottle(), ipKey); err != nil {
				return h.storeError(w, "counting failure", err)
			}
		}
		return h.respond(w, aerr)
	}
	// Per-client lockout applies to configured clients only, so that
	// random ids cannot fill the store with counters.
	clientKey := ""
	clientFailures := 0
	if _, known := h.clients[req.clientID]; known {
		clientKey = "client:" + req.clientID
		n, aerr, err := h.checkThrottle(r, h.clientThrottle(), clientKey)
		if err != nil {
			return h.storeError(w, "reading failure count", err)
		}
		if aerr != nil {
			h.logRefusal(r, "token request throttled", aerr, zap.String("client_id", req.clientID))
			return h.respond(w, aerr)
		}
		clientFailures = n
	}
	client, ok := h.authenticate(req.clientID, req.clientSecret)
	if !ok {
		err := h.countFailure(r, h.addressThrottle(), ipKey)
		if err == nil && clientKey != "" {
			err = h.countFailure(r, h.clientThrottle(), clientKey)
		}
		if err != nil {
			return h.storeError(w, "counting failure", err)
		}
		e := newAPIError(http.StatusUnauthorized, CodeClientAuthFailed, "client authentication failed")
		if req.basic {
			e.header = http.Header{"Www-Authenticate": {basicChallenge}}
		}
		h.logger.Info("client authentication failed",
			zap.String("client_id", req.clientID), zap.String("remote_ip", clientIP(r)))
		return h.respond(w, e)
	}
	if clientFailures > 0 {
		// NIST SP 800-63B counts consecutive failures: a success resets.
		if err := h.store.ResetFailures(r.Context(), clientKey); err != nil {
			return h.storeError(w, "resetting failure count", err)
		}
	}
	scope, aerr := grantScope(client.scopes, req.scope)
	if aerr != nil {
		return h.respond(w, aerr)
	}

	token, err := newToken()
	if err != nil {
		return h.internalError(w, "generating token", err)
	}
	now := time.Now()
	key := hashToken(token)
	rec := TokenRecord{ClientID: client.ID, Scope: scope, IssuedAt: now.UnixMilli(), ExpiresAt: now.Add(h.ttl).UnixMilli()}
	if err := h.store.Save(r.Context(), key, rec, h.MaxTokensPerClient); err != nil {
		return h.storeError(w, "saving token", err)
	}
	h.logger.Info("token issued",
		zap.String("client_id", client.ID),
		zap.String("remote_ip", clientIP(r)),
		zap.String("token_fp", key.Fingerprint()),
		zap.String("scope", scope))
	return writeEnvelope(w, http.StatusOK, CodeOK, "token info", tokenData{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(h.ttl / time.Second),
		Scope:       scope,
	})
}

// parseTokenRequest reads a token request per RFC 6749 §4.4 and §2.3: a form
// or JSON body, client credentials in the body or in HTTP Basic, never both,
// never in the query string, no parameter twice.
func parseTokenRequest(r *http.Request) (tokenRequest, *apiError) {
	var req tokenRequest
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return req, badRequest("malformed query string")
		}
		if q.Has("client_secret") || q.Has("client_id") {
			return req, badRequest("client credentials must not be sent in the query string")
		}
	}
	kind := contentKind(r.Header.Get("Content-Type"))
	if kind == bodyOther {
		return req, badRequest("unsupported content type: use application/x-www-form-urlencoded or application/json")
	}
	body, aerr := readBody(r)
	if aerr != nil {
		return req, aerr
	}
	p, err := parseBodyParams(kind, body)
	if err != nil {
		return req, badRequest(err.Error())
	}

	grantType, found, err := single("grant_type", p)
	switch {
	case err != nil:
		return req, badRequest(err.Error())
	case !found:
		return req, badRequest("grant_type is required")
	case grantType != "client_credentials":
		return req, badRequest("unsupported grant_type: only client_credentials is supported")
	}
	fields := [...]struct {
		name string
		dst  *string
	}{{"client_id", &req.clientID}, {"client_secret", &req.clientSecret}, {"scope", &req.scope}}
	for _, f := range fields {
		v, _, err := single(f.name, p)
		if err != nil {
			return req, badRequest(err.Error())
		}
		*f.dst = v
	}

	user, pass, basic, aerr := basicCredentials(r.Header)
	if aerr != nil {
		return req, aerr
	}
	if basic {
		if req.clientSecret != "" || len(p["client_secret"]) > 0 {
			return req, badRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
		}
		if req.clientID != "" && req.clientID != user {
			return req, badRequest("client_id in the body differs from HTTP Basic")
		}
		req.clientID, req.clientSecret, req.basic = user, pass, true
	}
	if req.clientID == "" || req.clientSecret == "" {
		return req, badRequest("client_id and client_secret are required")
	}
	return req, nil
}

// basicCredentials parses `Authorization: Basic` and form-decodes the id and
// secret as RFC 6749 §2.3.1 requires. ok is false when there is no
// Authorization header.
func basicCredentials(h http.Header) (id, secret string, ok bool, aerr *apiError) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", "", false, nil
	case 1:
	default:
		return "", "", false, badRequest("more than one Authorization header")
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, badRequest("unsupported Authorization scheme: use Basic or body credentials")
	}
	fail := newAPIError(http.StatusUnauthorized, CodeClientAuthFailed,
		"client authentication failed", "WWW-Authenticate", basicChallenge)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, fail
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, fail
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false, fail
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false, fail
	}
	if id == "" || secret == "" || hasControl(id) || hasControl(secret) {
		return "", "", false, fail
	}
	return id, secret, true, nil
}

// authenticate checks a client's secret; an unknown client is checked
// against a decoy hash so that it costs the same as a wrong secret.
func (h *Handler) authenticate(id, secret string) (*Client, bool) {
	c, known := h.clients[id]
	if !known {
		h.decoy.verify(secret)
		return nil, false
	}
	if !c.authenticate(secret) {
		return nil, false
	}
	return c, true
}

// grantScope returns the scope of a new token: the requested subset of the
// client's scopes, or all of them when none was requested.
func grantScope(allowed []string, requested string) (string, *apiError) {
	if requested == "" {
		return strings.Join(allowed, " "), nil
	}
	if strings.TrimSpace(requested) == "" {
		return "", badRequest("invalid scope")
	}
	var granted []string
	for s := range strings.FieldsSeq(requested) {
		if !containsScope(allowed, s) {
			return "", badRequest("invalid scope")
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

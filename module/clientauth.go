package outergate

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// clientRequest is a parsed POST of a client-authenticated endpoint (token,
// revocation, introspection): its body parameters and the client's
// credentials.
type clientRequest struct {
	params       params
	clientID     string
	clientSecret string
	basic        bool // credentials came in an Authorization: Basic header
}

// parseClientRequest reads a client-authenticated POST per RFC 6749 §2.3: a
// form or JSON body, credentials in the body or in HTTP Basic, never both,
// never in the query string, no parameter twice. check validates the
// endpoint's own parameters before the credentials are looked at.
func parseClientRequest(r *http.Request, check func(params) *apiError) (clientRequest, *apiError) {
	var req clientRequest
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
	req.params = p
	if aerr := check(p); aerr != nil {
		return req, aerr
	}
	for _, f := range [...]struct {
		name string
		dst  *string
	}{{"client_id", &req.clientID}, {"client_secret", &req.clientSecret}} {
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

// clientAuthFailed is the 401 + 23020 answer; with Basic it carries the
// Basic challenge (RFC 6749 §5.2).
func clientAuthFailed(basic bool) *apiError {
	e := oauthError(newAPIError(http.StatusUnauthorized, CodeClientAuthFailed, "client authentication failed"), "invalid_client")
	if basic {
		e.header = http.Header{"Www-Authenticate": {basicChallenge}}
	}
	return e
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
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, clientAuthFailed(true)
	}
	rawID, rawSecret, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, clientAuthFailed(true)
	}
	if id, err = url.QueryUnescape(rawID); err != nil {
		return "", "", false, clientAuthFailed(true)
	}
	if secret, err = url.QueryUnescape(rawSecret); err != nil {
		return "", "", false, clientAuthFailed(true)
	}
	if id == "" || secret == "" || hasControl(id) || hasControl(secret) {
		return "", "", false, clientAuthFailed(true)
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

// claimedClient names an unverified client id in the audit log: as it is
// when it is a configured client, else only as a fingerprint, since people
// paste secrets into the id field.
func (h *Handler) claimedClient(id string) zap.Field {
	if _, known := h.clients[id]; known {
		return zap.String("client_id", id)
	}
	return zap.String("unknown_client_fp", hashToken(id).Fingerprint())
}

// authenticateClient runs what every client-authenticated endpoint shares:
// the per-address throttle, parsing (check validates the endpoint's own
// parameters), the per-client lockout, the secret check, and counting
// failures. aerr is the client's mistake; err is a store failure.
func (h *Handler) authenticateClient(r *http.Request, check func(params) *apiError) (*Client, clientRequest, *apiError, error) {
	ipKey := "ip:" + clientIP(r)
	if aerr, err := h.throttled(r, h.addressThrottle(), ipKey); err != nil || aerr != nil {
		h.auditRefusal(r, "client request throttled", aerr)
		return nil, clientRequest{}, aerr, err
	}
	req, aerr := parseClientRequest(r, check)
	if aerr != nil {
		h.auditRefusal(r, "client request refused", aerr)
		if aerr.code == CodeClientAuthFailed {
			if err := h.countFailure(r, h.addressThrottle(), ipKey); err != nil {
				return nil, req, nil, err
			}
		}
		return nil, req, aerr, nil
	}
	// The per-client lockout covers configured clients only, so that random
	// ids cannot fill the store with counters.
	clientKey, clientFailures := "", 0
	if _, known := h.clients[req.clientID]; known {
		clientKey = "client:" + req.clientID
		n, aerr, err := h.checkThrottle(r, h.clientThrottle(), clientKey)
		if err != nil || aerr != nil {
			h.auditRefusal(r, "client request throttled", aerr, zap.String("client_id", req.clientID))
			return nil, req, aerr, err
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
			return nil, req, nil, err
		}
		aerr := clientAuthFailed(req.basic)
		h.auditRefusal(r, "client authentication failed", aerr, h.claimedClient(req.clientID))
		return nil, req, aerr, nil
	}
	if clientFailures > 0 {
		// NIST SP 800-63B counts consecutive failures: a success resets.
		if err := h.store.ResetFailures(r.Context(), clientKey); err != nil {
			return nil, req, nil, err
		}
	}
	return client, req, nil, nil
}

package outergate

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"
)

// basicChallenge is sent with 401 + 23020 when the client used HTTP Basic.
const basicChallenge = `Basic realm="outer"`

// clientAuth authenticates the clients of the token, revocation and
// introspection endpoints: the configured clients, the decoy hash that
// makes an unknown client cost as much as a wrong secret, the per-address
// throttle, the per-client lockout, and the audit of refusals. Provision
// builds it once.
type clientAuth struct {
	clients   map[string]*Client
	managed   *managedView // clients managed through the admin API
	decoy     secretVerifier
	cost      failureCost // what every failed check pays
	byAddress throttle    // failures per client address
	byClient  throttle    // consecutive failures per configured client id
	audit     auditLog
}

// clientRequest is a parsed POST of a client-authenticated endpoint: the
// client's credentials and P, the endpoint's own parameters.
type clientRequest[P any] struct {
	clientID     string
	clientSecret string
	basic        bool // credentials came in an Authorization: Basic header
	params       P
}

// parseClientRequest reads a client-authenticated POST per RFC 6749 §2.3: a
// form or JSON body, credentials in the body or in HTTP Basic, never both,
// never in the query string, no parameter twice. parse reads the
// endpoint's own parameters; it runs before the credentials are looked at.
func parseClientRequest[P any](r *http.Request, parse func(params) (P, *apiError)) (clientRequest[P], *apiError) {
	var req clientRequest[P]
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return req, badRequest("malformed query string")
		}
		if q.Has("client_secret") || q.Has("client_id") {
			return req, badRequest("client credentials must not be sent in the query string")
		}
	}
	if aerr := repeatedContentType(r.Header); aerr != nil {
		return req, aerr
	}
	kind := contentKind(r.Header.Get("Content-Type"))
	if kind == bodyOther {
		return req, badRequest("unsupported content type: use application/x-www-form-urlencoded or application/json")
	}
	if contentEncoded(r.Header) {
		return req, unsupportedMedia("Content-Encoding is not supported on request bodies")
	}
	body, aerr := readBody(r)
	if aerr != nil {
		return req, aerr
	}
	p, err := parseBodyParams(kind, body)
	if err != nil {
		return req, badRequest(err.Error())
	}
	if req.params, aerr = parse(p); aerr != nil {
		return req, aerr
	}
	if req.clientID, err = optional("client_id", p); err != nil {
		return req, badRequest(err.Error())
	}
	// RFC 6749 §2.3.1: an empty client_secret is an omitted one.
	if req.clientSecret, err = optional("client_secret", p); err != nil {
		return req, badRequest(err.Error())
	}

	user, pass, basic, aerr := basicCredentials(r.Header)
	if aerr != nil {
		return req, aerr
	}
	if basic {
		if req.clientSecret != "" || len(p.get("client_secret")) > 0 {
			return req, badRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
		}
		if req.clientID != "" && req.clientID != user {
			return req, badRequest("client_id in the body differs from HTTP Basic")
		}
		req.clientID, req.clientSecret, req.basic = user, pass, true
	}
	if req.clientID == "" || req.clientSecret == "" {
		// RFC 6749 §5.2: a request without client authentication is
		// invalid_client, like a wrong secret.
		return req, clientAuthFailed(req.basic)
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
	value, n := authorizationHeader(h)
	switch n {
	case 0:
		return "", "", false, nil
	case 1:
	default:
		return "", "", false, badRequest("more than one Authorization header")
	}
	scheme, rest, _ := strings.Cut(value, " ")
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

// authorizationHeader returns the request's Authorization header and how
// many there are; the value is set only when there is exactly one, since
// both Basic and Bearer refuse a repeated header.
func authorizationHeader(h http.Header) (string, int) {
	values := h["Authorization"]
	if len(values) != 1 {
		return "", len(values)
	}
	return values[0], 1
}

// authenticated is a client whose secret was checked, with the parameters
// of its request.
type authenticated[P any] struct {
	client  *Client
	binding string // of the secret hash that matched (binding.go)
	params  P
}

// authenticateClient runs what every client-authenticated endpoint shares:
// the per-address throttle, parsing (parse reads the endpoint's own
// parameters), the per-client lockout, the secret check, and counting
// failures. aerr is the client's mistake; err is a store failure.
func authenticateClient[P any](a *clientAuth, r *http.Request, parse func(params) (P, *apiError)) (authenticated[P], *apiError, error) {
	var none authenticated[P]
	ctx := r.Context()
	ipKey := "ip:" + clientIP(r)
	if _, aerr, err := a.byAddress.check(ctx, ipKey); err != nil || aerr != nil {
		a.audit.refusal(r, "client request throttled", aerr)
		return none, aerr, err
	}
	req, aerr := parseClientRequest(r, parse)
	if aerr != nil {
		a.audit.refusal(r, "client request refused", aerr)
		if aerr.code == CodeClientAuthFailed {
			if err := a.byAddress.count(ctx, ipKey); err != nil {
				return none, nil, err
			}
		}
		return none, aerr, nil
	}
	// Both throttles claim this attempt before the secret is checked, so
	// that concurrent attempts cannot all pass a check made before any of
	// them failed. Unknown ids are locked out like configured ones.
	clientKey := lockKey(a.clients, req.clientID)
	if aerr, err := a.byAddress.reserve(ctx, ipKey); err != nil || aerr != nil {
		a.audit.refusal(r, "client request throttled", aerr)
		return none, aerr, err
	}
	if aerr, err := a.byClient.reserve(ctx, clientKey); err != nil || aerr != nil {
		if rerr := a.byAddress.release(ctx, ipKey, false); rerr != nil && err == nil {
			err = rerr
		}
		a.audit.refusal(r, "client request throttled", aerr, a.claimedClient(req.clientID))
		return none, aerr, err
	}
	client, binding, ok := a.verify(req.clientID, req.clientSecret)
	err := a.byAddress.release(ctx, ipKey, !ok)
	if cerr := a.byClient.release(ctx, clientKey, !ok); err == nil {
		err = cerr
	}
	if err != nil {
		return none, nil, err
	}
	if !ok {
		aerr := clientAuthFailed(req.basic)
		a.audit.refusal(r, "client authentication failed", aerr, a.claimedClient(req.clientID))
		return none, aerr, nil
	}
	if !client.auth.allows(req.basic) {
		// The secret was right, so this is no guess and is not counted;
		// the answer is a wrong secret's (RFC 6749 §5.2: an unsupported
		// authentication method is invalid_client).
		aerr := clientAuthFailed(req.basic)
		a.audit.refusal(r, "client authentication method not allowed", aerr, zap.String("client_id", client.ID),
			zap.Bool("basic", req.basic))
		return none, aerr, nil
	}
	return authenticated[P]{client: client, binding: binding, params: req.params}, nil, nil
}

// lockKey names the per-client lockout counter of a client id: the id
// itself for a configured client, a 128-bit fingerprint for any other, so
// that an unknown id locks out like a known one without its text (perhaps
// a pasted secret) reaching the store.
func lockKey(clients map[string]*Client, id string) string {
	if _, known := clients[id]; known {
		return "client:" + id
	}
	sum := hashToken(id)
	return "client:~" + hex.EncodeToString(sum[:16])
}

// verify checks a client's secret and returns the binding of the hash that
// matched (binding.go). Every failure costs the same work whatever the id
// (failcost.go): a success may be quick, a failure pays the decoy for what
// the id's own hashes did not cost.
func (a *clientAuth) verify(id, secret string) (*Client, string, bool) {
	c := a.lookup(id)
	known := c != nil
	if known {
		if binding, ok := c.authenticate(secret); ok {
			return c, binding, true
		}
	}
	paid := 0
	if known {
		paid = c.decoyEquivalents
	}
	a.cost.payDecoy(a.decoy, secret, paid)
	return nil, "", false
}

// lookup finds a configured or managed client; nil if unknown.
func (a *clientAuth) lookup(id string) *Client {
	return lookupClient(a.clients, a.managed, id)
}

// claimedClient names an unverified client id in the audit log: as it is
// when it is a configured client, else only as a fingerprint, since people
// paste secrets into the id field.
func (a *clientAuth) claimedClient(id string) zap.Field {
	if a.lookup(id) != nil {
		return zap.String("client_id", id)
	}
	return zap.String("unknown_client_fp", fingerprint(id))
}

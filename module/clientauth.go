package outergate

import (
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"time"

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
	cost      failureCost  // what every failed check pays
	byAddress throttle     // failures per client address
	byClient  throttle     // consecutive failures per configured client id
	failures  FailureStore // where both throttles count
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
// of its request. pass is what the success must still pass (Admit, or Save
// with its lockouts), which authenticateClient already did and checkClient
// leaves to its caller.
type authenticated[P any] struct {
	client  *Client
	binding string // of the secret hash that matched (binding.go)
	params  P
	pass    passage
}

// passage is what a checked secret must still pass: the lockouts, and what
// a refusal by one of them must pay first (the decoy, for the part of a
// failure's work the check did not do: paid slots of it), so that a locked
// key's 429 takes as long for a right secret as for a wrong one.
type passage struct {
	locks  []Lockout
	secret string
	paid   int
}

// authenticateClient runs what every client-authenticated endpoint shares:
// the early refusal of a locked address, parsing (parse reads the
// endpoint's own parameters), the secret check and the lockouts. aerr is
// the client's mistake; err is a store failure.
func authenticateClient[P any](a *clientAuth, r *http.Request, parse func(params) (P, *apiError)) (authenticated[P], *apiError, error) {
	req, aerr, err := checkClient(a, r, parse)
	if err != nil || aerr != nil {
		return req, aerr, err
	}
	if aerr, err := a.admit(r, req.pass); err != nil || aerr != nil {
		return authenticated[P]{}, aerr, err
	}
	return req, nil, nil
}

// checkClient is authenticateClient up to a right secret, for an
// operation that writes on success: the lockouts in req.pass are checked
// by that write (Save with them, then a.saved), so that a success is one
// step of the store. Any other answer the operation gives a checked client
// must pass a.admit first: a locked-out key gets 429 whatever the
// credentials.
//
// The secret is checked first, locally; a failure is then counted on both
// keys in one step whose counts decide the answer (401 while within the
// limits, else 429), so that however many guesses arrive at once, at most
// max per window and key get an answer that says anything. Each instance
// refuses at once a key the store said is locked, and runs at most max
// checks at once per key (throttle.claim).
func checkClient[P any](a *clientAuth, r *http.Request, parse func(params) (P, *apiError)) (authenticated[P], *apiError, error) {
	var none authenticated[P]
	ctx := r.Context()
	ipKey := "ip:" + clientIP(r)
	if aerr := a.byAddress.early(ipKey); aerr != nil {
		a.audit.refusal(r, "client request throttled", aerr)
		return none, aerr, nil
	}
	req, aerr := parseClientRequest(r, parse)
	if aerr != nil {
		aerr, err := a.refused(r, ipKey, aerr)
		return none, aerr, err
	}
	clientKey := lockKey(a.clients, req.clientID)
	locks := make([]Lockout, 0, 2)
	if !a.byAddress.off {
		locks = append(locks, a.byAddress.lockout(ipKey))
	}
	if !a.byClient.off {
		locks = append(locks, a.byClient.lockout(clientKey))
	}
	// Both throttles give this attempt a place before the secret is
	// checked, so that a burst cannot run more checks on this instance
	// than the limits leave. Unknown ids are locked out like configured ones.
	if aerr := a.byAddress.claim(ctx, ipKey); aerr != nil {
		a.audit.refusal(r, "client request throttled", aerr)
		return none, aerr, nil
	}
	if aerr := a.byClient.claim(ctx, clientKey); aerr != nil {
		a.byAddress.done(ipKey)
		a.audit.refusal(r, "client request throttled", aerr, a.claimedClient(req.clientID))
		return none, aerr, nil
	}
	client, binding, ok, paid := a.checkSecret(req.clientID, req.clientSecret)
	if !ok {
		// The failure is counted before the decoy is paid, so that a wrong
		// guess reaches the store as soon as a right one checked with it
		// would: concurrent guesses, on however many instances, are counted
		// in the order they were checked, and a right one among them gets a
		// token only while fewer than max wrong ones came first. The answer
		// still waits for the decoy (equal failure cost).
		aerr, err := a.failed(r, locks, clientAuthFailed(req.basic))
		a.cost.payDecoy(a.decoy, req.clientSecret, paid)
		a.byAddress.done(ipKey)
		a.byClient.done(clientKey)
		if err != nil {
			return none, nil, err
		}
		if aerr.status == http.StatusTooManyRequests {
			a.audit.refusal(r, "client request throttled", aerr, a.claimedClient(req.clientID))
		} else {
			a.audit.refusal(r, "client authentication failed", aerr, a.claimedClient(req.clientID))
		}
		return none, aerr, nil
	}
	a.byAddress.done(ipKey)
	a.byClient.done(clientKey)
	pass := passage{locks: locks, secret: req.clientSecret, paid: paid}
	if !client.auth.allows(req.basic) {
		// The secret was right, so this is no guess and is not counted;
		// the answer is a wrong secret's (RFC 6749 §5.2: an unsupported
		// authentication method is invalid_client), or 429 if locked.
		if aerr, err := a.admit(r, pass); err != nil || aerr != nil {
			return none, aerr, err
		}
		aerr := clientAuthFailed(req.basic)
		a.audit.refusal(r, "client authentication method not allowed", aerr, zap.String("client_id", client.ID),
			zap.Bool("basic", req.basic))
		return none, aerr, nil
	}
	return authenticated[P]{client: client, binding: binding, params: req.params, pass: pass}, nil, nil
}

// refused answers a request that could not be parsed: a missing secret
// counts as a failed authentication of the address; any other mistake is
// answered as such unless the address is locked out (asked of the store:
// a locked address gets 429 whatever it sends).
func (a *clientAuth) refused(r *http.Request, ipKey string, aerr *apiError) (*apiError, error) {
	if a.byAddress.off {
		a.audit.refusal(r, "client request refused", aerr)
		return aerr, nil
	}
	if aerr.code == CodeClientAuthFailed {
		answer, err := a.failed(r, []Lockout{a.byAddress.lockout(ipKey)}, aerr)
		if err != nil {
			return nil, err
		}
		a.audit.refusal(r, "client request refused", answer)
		return answer, nil
	}
	n, end, err := a.failures.Failures(r.Context(), ipKey)
	if err != nil {
		return nil, err
	}
	if wait := time.Until(end); n >= a.byAddress.max && wait > 0 {
		a.byAddress.learn(ipKey, n, end)
		aerr = tooManyFailures(wait)
	}
	a.audit.refusal(r, "client request refused", aerr)
	return aerr, nil
}

// failed counts a failed authentication under locks and returns its
// answer: aerr while every count is within its limit, else 429 until the
// window of the counter past it ends.
func (a *clientAuth) failed(r *http.Request, locks []Lockout, aerr *apiError) (*apiError, error) {
	if len(locks) == 0 {
		return aerr, nil
	}
	counts, err := a.failures.CountFailures(r.Context(), locks...)
	if err != nil {
		return nil, err
	}
	var until time.Time
	for i, l := range locks {
		if i >= len(counts) {
			break
		}
		a.throttleOf(l.Key).learn(l.Key, counts[i].N, counts[i].End)
		if counts[i].N > l.Max && counts[i].End.After(until) {
			until = counts[i].End
		}
	}
	if !until.IsZero() {
		return tooManyFailures(time.Until(until)), nil
	}
	return aerr, nil
}

// admit passes a checked client's success through its lockouts (one step
// of the store): 429 if one is locked, else nil, the failures of the
// consecutive-failure lockout forgotten.
func (a *clientAuth) admit(r *http.Request, pass passage) (*apiError, error) {
	if len(pass.locks) == 0 {
		return nil, nil
	}
	return a.saved(r, pass, a.failures.Admit(r.Context(), pass.locks...))
}

// saved turns the answer of Admit, or of Save with the lockouts, into the
// request's: 429 if a lockout was at its limit (learned, so that this
// instance refuses the key early from then on), paid as a failure is, err
// if the store failed, else nil.
func (a *clientAuth) saved(r *http.Request, pass passage, err error) (*apiError, error) {
	locks := pass.locks
	if l, ok := lockedOut(err); ok {
		// A right secret costs less than a wrong one (the match cache, no
		// decoy); refused like one, it pays like one.
		a.cost.payDecoy(a.decoy, pass.secret, pass.paid)
		t := a.throttleOf(l.Key)
		t.learn(l.Key, t.max, l.Until)
		aerr := tooManyFailures(time.Until(l.Until))
		a.audit.refusal(r, "client request throttled", aerr)
		return aerr, nil
	}
	if err != nil {
		return nil, err
	}
	for _, l := range locks {
		if l.Reset {
			a.throttleOf(l.Key).learn(l.Key, 0, time.Time{})
		}
	}
	return nil, nil
}

// throttleOf is the throttle whose counter key is.
func (a *clientAuth) throttleOf(key string) throttle {
	if strings.HasPrefix(key, "ip:") {
		return a.byAddress
	}
	return a.byClient
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
	c, binding, ok, paid := a.checkSecret(id, secret)
	if !ok {
		a.cost.payDecoy(a.decoy, secret, paid)
	}
	return c, binding, ok
}

// checkSecret is verify without the decoy: it returns, with the outcome,
// the decoy slots the check itself paid (Client.authenticatePaid for a
// success, the id's own hashes for a failure), which the caller makes up
// for with a.cost.payDecoy on a failure, or on a success a lockout
// refuses.
func (a *clientAuth) checkSecret(id, secret string) (*Client, string, bool, int) {
	c := a.lookup(id)
	if c == nil {
		return nil, "", false, 0
	}
	if binding, ok, paid := c.authenticatePaid(secret); ok {
		return c, binding, true, paid
	}
	return nil, "", false, c.decoyEquivalents
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

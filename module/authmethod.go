package outergate

import "fmt"

// This file holds the per-client policies of the client-authenticated
// endpoints: the authentication methods a client may use (`auth_method`)
// and whether it may introspect every client's tokens (`introspect any`).

// Values of Client.AuthMethod and Handler.AuthMethod.
const (
	AuthMethodBasic = "basic" // HTTP Basic only: RFC 8414 client_secret_basic
	AuthMethodPost  = "post"  // body credentials only: client_secret_post
	AuthMethodBoth  = "both"  // either (the default)
)

// Values of Client.Introspect.
const (
	IntrospectOwn = "own" // the client's own tokens (the default)
	IntrospectAny = "any" // any client's tokens: a resource server
)

// authMethods is the set of client authentication methods a client may
// use, parsed once in provisionClients. The zero value allows both, the
// default, so that a Client built without it is not locked out.
type authMethods struct {
	noBasic, noPost bool
}

// parseAuthMethod reads an auth_method value; "" is the default, both.
func parseAuthMethod(s string) (authMethods, error) {
	switch s {
	case "", AuthMethodBoth:
		return authMethods{}, nil
	case AuthMethodBasic:
		return authMethods{noPost: true}, nil
	case AuthMethodPost:
		return authMethods{noBasic: true}, nil
	}
	return authMethods{}, fmt.Errorf("auth_method must be %s, %s or %s, got %q", AuthMethodBasic, AuthMethodPost, AuthMethodBoth, s)
}

// allows reports whether a request authenticated with HTTP Basic (basic)
// or with body credentials (!basic) uses an allowed method.
func (m authMethods) allows(basic bool) bool {
	if basic {
		return !m.noBasic
	}
	return !m.noPost
}

// parseIntrospect reads an introspect value; "" is the default, own.
func parseIntrospect(s string) (any bool, err error) {
	switch s {
	case "", IntrospectOwn:
		return false, nil
	case IntrospectAny:
		return true, nil
	}
	return false, fmt.Errorf("introspect must be %s or %s, got %q", IntrospectAny, IntrospectOwn, s)
}

// authMethodNames are the RFC 8414 names of the methods some configured
// client may use, in the order basic, post; with no client configured,
// the handler's default.
func authMethodNames(clients map[string]*Client, fallback authMethods) []string {
	basic, post := false, false
	for _, c := range clients {
		basic = basic || c.auth.allows(true)
		post = post || c.auth.allows(false)
	}
	if len(clients) == 0 {
		basic, post = fallback.allows(true), fallback.allows(false)
	}
	var names []string
	if basic {
		names = append(names, "client_secret_basic")
	}
	if post {
		names = append(names, "client_secret_post")
	}
	return names
}

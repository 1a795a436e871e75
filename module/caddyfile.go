package outergate

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("outergate", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("outergate", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	outergate [<matcher>] {
//	    token_path      /outer/token/
//	    oauth2_token_path /oauth2/token | off
//	    issuer          https://gateway.example.com
//	    protect         /outer/device/* [<pattern>...]
//	    token_ttl       36000s
//	    scope           "read write groups"
//	    auth_method     basic | post | both
//	    client <id> <secret-hash> [<secret-hash>...] {
//	        scope read
//	        auth_method basic | post | both
//	        introspect  any | own
//	    }
//	    require_scope   <path-pattern>... <scope>
//	    require_param   deviceid [<name>...] | off
//	    identity_header X-Outer-Client-Id
//	    throttle        10 1m | off
//	    throttle_client 100 15m | off
//	    max_tokens_per_client 100
//	    error_code      <upstream-status> <code>
//	    store           memory | <module> [<args...>] { ... }
//	    allow_websocket <path-pattern>...
//	    opaque_body     <media-type>... | *
//	    portal          /outer/docs/ [<backend-openapi.json>]
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "client", "protect", "error_code", "require_param", "require_scope", "allow_websocket", "opaque_body":
			// repeatable
		default:
			if seen[sub] {
				return d.Errf("%s specified more than once", sub)
			}
		}
		seen[sub] = true

		switch sub {
		case "token_path":
			if !d.AllArgs(&h.TokenPath) {
				return d.ArgErr()
			}
		case "oauth2_token_path":
			if !d.AllArgs(&h.OAuth2TokenPath) {
				return d.ArgErr()
			}
		case "issuer":
			if !d.AllArgs(&h.Issuer) {
				return d.ArgErr()
			}
		case "protect":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Protect = append(h.Protect, args...)
		case "token_ttl":
			dur, err := durationArg(d, sub)
			if err != nil {
				return err
			}
			h.TokenTTL = caddy.Duration(dur)
		case "scope":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Scope = strings.Join(args, " ")
		case "auth_method":
			if !d.AllArgs(&h.AuthMethod) {
				return d.ArgErr()
			}
			if _, err := parseAuthMethod(h.AuthMethod); err != nil {
				return d.Err(err.Error())
			}
		case "require_scope":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.ArgErr()
			}
			h.ScopeRules = append(h.ScopeRules, ScopeRule{Scope: args[len(args)-1], Paths: args[:len(args)-1]})
		case "client":
			c, err := unmarshalClient(d)
			if err != nil {
				return err
			}
			h.Clients = append(h.Clients, c)
		case "require_param":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if slices.Contains(args, "off") {
				if len(args) > 1 || len(h.RequireParams) > 0 {
					return d.Err("require_param off cannot be combined with parameter names")
				}
				h.RequireParamsOff = true
				continue
			}
			if h.RequireParamsOff {
				return d.Err("require_param off cannot be combined with parameter names")
			}
			h.RequireParams = append(h.RequireParams, args...)
		case "throttle", "throttle_client":
			args := d.RemainingArgs()
			off := len(args) == 1 && args[0] == "off"
			var n int
			var window time.Duration
			if !off {
				if len(args) != 2 {
					return d.ArgErr()
				}
				var err error
				if n, err = strconv.Atoi(args[0]); err != nil || n <= 0 {
					return d.Errf("%s: bad failure count %q", sub, args[0])
				}
				if window, err = caddy.ParseDuration(args[1]); err != nil || window <= 0 {
					return d.Errf("%s: bad window %q", sub, args[1])
				}
			}
			if sub == "throttle" {
				h.ThrottleOff, h.ThrottleFailures, h.ThrottleWindow = off, n, caddy.Duration(window)
			} else {
				h.ThrottleClientOff, h.ThrottleClientFailures, h.ThrottleClientWindow = off, n, caddy.Duration(window)
			}
		case "max_tokens_per_client":
			n, err := intArg(d, sub, 1)
			if err != nil {
				return err
			}
			h.MaxTokensPerClient = n
		case "identity_header":
			if !d.AllArgs(&h.IdentityHeader) {
				return d.ArgErr()
			}
		case "error_code":
			var statusArg, codeArg string
			if !d.AllArgs(&statusArg, &codeArg) {
				return d.ArgErr()
			}
			status, err := strconv.Atoi(statusArg)
			if err != nil {
				return d.Errf("error_code: bad status %q", statusArg)
			}
			code, err := strconv.Atoi(codeArg)
			if err != nil {
				return d.Errf("error_code: bad code %q", codeArg)
			}
			if h.ErrorCodes == nil {
				h.ErrorCodes = map[int]int{}
			}
			h.ErrorCodes[status] = code
		case "portal":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			h.Portal = args[0]
			if len(args) == 2 {
				h.PortalDocument = args[1]
			}
		case "allow_websocket", "opaque_body":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if sub == "allow_websocket" {
				h.AllowWebSocket = append(h.AllowWebSocket, args...)
			} else {
				h.OpaqueBody = append(h.OpaqueBody, args...)
			}
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "outergate.stores."+name)
			if err != nil {
				return err
			}
			h.StoreRaw = caddyconfig.JSONModuleObject(unm, "module", name, nil)
		default:
			return d.Errf("unrecognized subdirective %q", sub)
		}
	}
	return nil
}

// durationArg reads the one argument of the subdirective sub as a
// duration. The store parsers use it too.
func durationArg(d *caddyfile.Dispenser, sub string) (time.Duration, error) {
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: %v", sub, err)
	}
	return dur, nil
}

// intArg reads the one argument of the subdirective sub as an integer of
// at least least. The store parsers use it too.
func intArg(d *caddyfile.Dispenser, sub string, least int) (int, error) {
	var v string
	if !d.AllArgs(&v) {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < least {
		return 0, d.Errf("%s: bad number %q", sub, v)
	}
	return n, nil
}

// unmarshalClient parses `client <id> <hash>... [{ scope ... }]`.
func unmarshalClient(d *caddyfile.Dispenser) (Client, error) {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return Client{}, d.ArgErr()
	}
	c := Client{ID: args[0], SecretHashes: args[1:]}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "scope":
			if c.Scope != "" {
				return c, d.Err("scope specified more than once")
			}
			scopes := d.RemainingArgs()
			if len(scopes) == 0 {
				return c, d.ArgErr()
			}
			c.Scope = strings.Join(scopes, " ")
		case "auth_method":
			if c.AuthMethod != "" {
				return c, d.Err("auth_method specified more than once")
			}
			if !d.AllArgs(&c.AuthMethod) {
				return c, d.ArgErr()
			}
			if _, err := parseAuthMethod(c.AuthMethod); err != nil {
				return c, d.Err(err.Error())
			}
		case "introspect":
			if c.Introspect != "" {
				return c, d.Err("introspect specified more than once")
			}
			if !d.AllArgs(&c.Introspect) {
				return c, d.ArgErr()
			}
			if _, err := parseIntrospect(c.Introspect); err != nil {
				return c, d.Err(err.Error())
			}
		default:
			return c, d.Errf("unrecognized client subdirective %q", d.Val())
		}
	}
	return c, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)

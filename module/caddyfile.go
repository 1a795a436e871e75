package outergate

import (
	"fmt"
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
//	        token_ttl     1h
//	        rate_limit    <n>/<duration> [burst <m>] | off
//	        quota         <n>/<window> | off
//	        max_in_flight <n> | off
//	        auth_method basic | post | both
//	        introspect  any | own
//	    }
//	    rate_limit      <n>/<duration> [burst <m>]
//	    quota           <n>/<window>
//	    max_in_flight   <n>
//	    rate_limit_fail_open
//	    rate_limit_client_metrics
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
		case "rate_limit":
			rl, err := rateLimitArgs(d, false)
			if err != nil {
				return err
			}
			h.RateLimit = rl
		case "quota":
			q, err := quotaArgs(d, false)
			if err != nil {
				return err
			}
			h.Quota = q
		case "max_in_flight":
			n, err := intArg(d, sub, 1)
			if err != nil {
				return err
			}
			h.MaxInFlight = n
		case "rate_limit_fail_open":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RateLimitFailOpen = true
		case "rate_limit_client_metrics":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.RateLimitClientMetrics = true
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
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && sub != "scope" {
			return c, d.Errf("%s specified more than once", sub)
		}
		seen[sub] = true
		switch sub {
		case "token_ttl":
			dur, err := durationArg(d, sub)
			if err != nil {
				return c, err
			}
			c.TokenTTL = caddy.Duration(dur)
		case "rate_limit":
			rl, err := rateLimitArgs(d, true)
			if err != nil {
				return c, err
			}
			c.RateLimit = rl
		case "quota":
			q, err := quotaArgs(d, true)
			if err != nil {
				return c, err
			}
			c.Quota = q
		case "max_in_flight":
			var v string
			if !d.AllArgs(&v) {
				return c, d.ArgErr()
			}
			if v == "off" {
				c.MaxInFlight = -1
				continue
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return c, d.Errf("max_in_flight: bad number %q", v)
			}
			c.MaxInFlight = n
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

// rateLimitArgs parses `<n>/<duration> [burst <m>]`, or `off` where
// allowOff (a client overriding the handler's default).
func rateLimitArgs(d *caddyfile.Dispenser, allowOff bool) (*RateLimit, error) {
	args := d.RemainingArgs()
	if allowOff && len(args) == 1 && args[0] == "off" {
		return &RateLimit{Off: true}, nil
	}
	if len(args) != 1 && (len(args) != 3 || args[1] != "burst") {
		return nil, d.Errf("rate_limit: want <n>/<duration> [burst <m>]%s", offHint(allowOff))
	}
	n, per, err := perArg(args[0])
	if err != nil {
		return nil, d.Errf("rate_limit: %v", err)
	}
	rl := &RateLimit{Requests: n, Period: caddy.Duration(per)}
	if len(args) == 3 {
		if rl.Burst, err = strconv.Atoi(args[2]); err != nil || rl.Burst <= 0 {
			return nil, d.Errf("rate_limit: bad burst %q", args[2])
		}
	}
	return rl, nil
}

// quotaArgs parses `<n>/<window>`, or `off` where allowOff.
func quotaArgs(d *caddyfile.Dispenser, allowOff bool) (*Quota, error) {
	args := d.RemainingArgs()
	if allowOff && len(args) == 1 && args[0] == "off" {
		return &Quota{Off: true}, nil
	}
	if len(args) != 1 {
		return nil, d.Errf("quota: want <n>/<window>%s", offHint(allowOff))
	}
	n, window, err := perArg(args[0])
	if err != nil {
		return nil, d.Errf("quota: %v", err)
	}
	if window < time.Second {
		return nil, d.Errf("quota: window must be at least 1s, got %s", window)
	}
	return &Quota{Requests: n, Window: caddy.Duration(window)}, nil
}

func offHint(allowOff bool) string {
	if allowOff {
		return " or off"
	}
	return ""
}

// perArg parses `<n>/<duration>`, a positive count per a Caddy duration.
func perArg(s string) (int, time.Duration, error) {
	count, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("want <n>/<duration>, got %q", s)
	}
	n, err := strconv.Atoi(count)
	if err != nil || n <= 0 {
		return 0, 0, fmt.Errorf("bad count %q", count)
	}
	dur, err := caddy.ParseDuration(per)
	if err != nil || dur <= 0 {
		return 0, 0, fmt.Errorf("bad duration %q", per)
	}
	return n, dur, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)

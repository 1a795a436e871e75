package outergate

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the store from Caddyfile tokens:
//
//	store redis [<url>] [{
//	    address      <host:port> [<host:port>...]
//	    master_name  <name>
//	    username     <user>
//	    password     <password>
//	    db           <n>
//	    tls
//	    key_prefix   <prefix>
//	    dial_timeout <duration>
//	    timeout      <duration>
//	    cache_ttl    <duration>
//	    replicas     <n>|off
//	}]
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // store module name
	if d.NextArg() {
		s.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			s.Addresses = append(s.Addresses, args...)
		case "master_name", "username", "password", "key_prefix":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch sub {
			case "master_name":
				s.MasterName = v
			case "username":
				s.Username = v
			case "password":
				s.Password = v
			case "key_prefix":
				s.KeyPrefix = v
			}
		case "db":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("db: bad number %q", v)
			}
			s.DB = n
		case "replicas":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			if v == "off" || v == "0" {
				s.Replicas = -1
				break
			}
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return d.Errf("replicas: want a number or off, got %q", v)
			}
			s.Replicas = n
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.TLS = true
		case "dial_timeout", "timeout", "cache_ttl":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", sub, err)
			}
			switch sub {
			case "dial_timeout":
				s.DialTimeout = caddy.Duration(dur)
			case "timeout":
				s.Timeout = caddy.Duration(dur)
			case "cache_ttl":
				s.CacheTTL = caddy.Duration(dur)
			}
		default:
			return d.Errf("unrecognized redis store subdirective %q", sub)
		}
	}
	return nil
}

// Command outergate is a Caddy binary with the standard modules plus the
// outergate plugin. It behaves exactly like the caddy command; plugin users
// get the same binary from ./xcaddy.sh.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Plug in Caddy's standard modules and outergate.
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/outergate/outergate/module"
)

func main() {
	caddycmd.Main()
}

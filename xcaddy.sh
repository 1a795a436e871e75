#!/usr/bin/env bash
# Builds ./caddy with the outergate plugin the way plugin users do (xcaddy),
# or runs the demo: the reference legacy backend behind Caddy + outergate.
#
#   ./xcaddy.sh [build]   build ./caddy
#   ./xcaddy.sh run       build ./caddy if needed, then run the demo on http://localhost:8080
set -euo pipefail

CADDY_VERSION=v2.11.9
XCADDY_VERSION=v0.4.5
MODULE=github.com/outergate/outergate
LEGACY_PKG=./cmd/legacybackend
LEGACY_LISTEN=127.0.0.1:9080
DEMO_CONFIG=caddyfile/Caddyfile

cd "$(dirname "${BASH_SOURCE[0]}")"

# xcaddy_bin prints the path of xcaddy, installing it first if it is neither
# on PATH nor in Go's bin directory.
xcaddy_bin() {
	if command -v xcaddy >/dev/null 2>&1; then
		command -v xcaddy
		return
	fi
	local gobin
	gobin="$(go env GOBIN)"
	if [ -z "$gobin" ]; then
		gobin="$(go env GOPATH)"
		gobin="${gobin%%:*}/bin"
	fi
	if [ ! -x "$gobin/xcaddy" ]; then
		echo "installing xcaddy $XCADDY_VERSION" >&2
		go install "github.com/caddyserver/xcaddy/cmd/xcaddy@$XCADDY_VERSION" >&2
	fi
	echo "$gobin/xcaddy"
}

# module_proxy prints GOPROXY with "direct" dropped and every entry ending in
# "|off". xcaddy's last step, a bare `go get`, asks the module proxy about
# github.com/outergate/outergate/module, which is a package, not a module.
# proxy.golang.org answers 404 (not found, fine), but a proxy or mirror that
# answers 403 stops the build, and so does "direct" where only the proxy is
# reachable; "|off" turns those answers into "not found" and the local
# replacement is used. With no proxy configured, GOPROXY is left as it is.
module_proxy() {
	local entry out="" entries
	IFS=',|' read -ra entries <<<"$(go env GOPROXY)"
	for entry in "${entries[@]}"; do
		case "$entry" in
		direct | off | "") ;;
		*) out+="$entry|" ;;
		esac
	done
	if [ -n "$out" ]; then
		echo "${out}off"
	else
		go env GOPROXY
	fi
}

build() {
	local xcaddy
	xcaddy="$(xcaddy_bin)"
	GOPROXY="$(module_proxy)" "$xcaddy" build "$CADDY_VERSION" \
		--with "$MODULE/module" \
		--replace "$MODULE=./" \
		--output ./caddy
}

# stale succeeds when ./caddy is missing or older than the plugin's sources.
stale() {
	[ ! -x ./caddy ] || [ -n "$(find module go.mod go.sum -newer ./caddy -print -quit)" ]
}

run() {
	if stale; then
		build
	fi
	go build -o ./legacybackend "$LEGACY_PKG"

	./legacybackend -listen "$LEGACY_LISTEN" &
	local legacy_pid=$!
	# shellcheck disable=SC2064 # expand the pid now
	trap "kill $legacy_pid 2>/dev/null || true; wait $legacy_pid 2>/dev/null || true" EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	# Give the backend a moment to listen, and stop early if it died.
	local i
	for i in $(seq 50); do
		if ! kill -0 "$legacy_pid" 2>/dev/null; then
			echo "legacy backend exited; is $LEGACY_LISTEN already in use?" >&2
			exit 1
		fi
		if (exec 3<>"/dev/tcp/${LEGACY_LISTEN%:*}/${LEGACY_LISTEN##*:}") 2>/dev/null; then
			break
		fi
		sleep 0.1
	done

	echo "outergate demo listening on http://localhost:8080 (legacy backend on $LEGACY_LISTEN); press Ctrl-C to stop."
	./caddy run --config "$DEMO_CONFIG" --adapter caddyfile
}

case "${1:-build}" in
build) build ;;
run) run ;;
*)
	echo "usage: $0 [build|run]" >&2
	exit 2
	;;
esac

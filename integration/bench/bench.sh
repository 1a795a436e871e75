#!/usr/bin/env bash
# Side-by-side benchmark: stock reverse_proxy, outergate (memory store),
# outergate with an active rate_limit + quota (memory and Redis),
# outergate (Redis store) and forward_auth, then the token endpoint's rate.
# Everything listens on 127.0.0.1 and every wrk run is bounded in time
# (defaults: 5 rounds x 10 s per variant at 64 connections, about 5 minutes
# in all). Extra arguments go to the driver, e.g.
#   integration/bench/bench.sh -rounds 3 -duration 5s -pprof /tmp/outergate-pprof
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. integration/bench/lib.sh
need_tools
exec go run ./integration/bench/run bench "$@"

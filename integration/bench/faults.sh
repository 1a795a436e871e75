#!/usr/bin/env bash
# The upstream, then Redis, killed a quarter into a 20 s load run and
# restarted at half-time: only 502/23090 (upstream) or 503/23090 (Redis)
# envelopes while down, no lost connection, and recovery after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. integration/bench/lib.sh
need_tools
exec go run ./integration/bench/run faults "$@"

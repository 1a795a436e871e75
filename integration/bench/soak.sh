#!/usr/bin/env bash
# 60 s soak at 256 connections against outergate (memory store), RSS and Go
# heap sampled every 5 s, 20 token requests per second beside the load.
# Extra arguments go to the driver (e.g. -soak-variant redis).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. integration/bench/lib.sh
need_tools
exec go run ./integration/bench/run soak "$@"

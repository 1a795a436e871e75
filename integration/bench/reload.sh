#!/usr/bin/env bash
# A config reload every second under load (128 connections), outergate and
# stock Caddy in alternating rows: every outergate answer must be a 200 with
# the token issued before, and no more connections lost than stock Caddy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. integration/bench/lib.sh
need_tools
exec go run ./integration/bench/run reload "$@"

#!/usr/bin/env bash
# Runs each fuzz target of the module for a given time, one after the other.
#
#   integration/fuzz.sh [duration] [extra go test flags...]
#
# duration defaults to 5m (issue 4: each target runs 5 minutes without a
# failure). Extra flags go to `go test`, e.g. `-parallel 1`. Exits non-zero
# as soon as a target fails; go test then writes the failing input under
# module/testdata/fuzz/<FuzzName>/, where it becomes a regression seed.
set -euo pipefail

duration="${1:-5m}"
shift || true
cd "$(dirname "$0")/.."

targets=(FuzzParseTokenRequest FuzzParseBearer FuzzBearerToken FuzzNormalize)
for target in "${targets[@]}"; do
	echo "== ${target} for ${duration}"
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "${duration}" "$@" ./module/; then
		echo "FAIL: ${target}" >&2
		exit 1
	fi
done
echo "all ${#targets[@]} fuzz targets ran ${duration} without a failure"

#!/usr/bin/env bash
# Refreshes the embedded Swagger UI from the npm registry: the few built
# files the portal serves, with their licence. Usage: update.sh <version>
# (then set swaggerUIVersion in module/portal.go to the same version).
set -euo pipefail
version="${1:?usage: update.sh <swagger-ui-dist version>}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "swagger-ui-dist@${version}" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
p="$tmp/package"
cp "$p/swagger-ui-bundle.js" "$p/swagger-ui-bundle.js.LICENSE.txt" "$p/swagger-ui.css" "$p/favicon-32x32.png" "$here/"
cp "$p/LICENSE" "$here/LICENSE.swagger-ui"
cp "$p/NOTICE" "$here/NOTICE.swagger-ui"
echo "swagger-ui-dist ${version} copied into $here"

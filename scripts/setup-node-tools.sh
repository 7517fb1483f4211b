#!/usr/bin/env bash
# Installs the npm tools the tests run (Azurite, the Azure Blob emulator) into
# .cache/node.  Node and npm come from scripts/setup-system.sh when missing.
# Does no network work when the pinned versions are already there.
set -euo pipefail

AZURITE_VERSION=3.35.0
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="$root/.cache/node"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    bash "$root/scripts/setup-system.sh"
fi

installed=""
if [[ -x "$prefix/node_modules/.bin/azurite-blob" ]]; then
    installed="$(node -p "require('$prefix/node_modules/azurite/package.json').version" \
                 2>/dev/null || true)"
fi
if [[ "$installed" != "$AZURITE_VERSION" ]]; then
    echo "installing azurite@$AZURITE_VERSION into $prefix"
    mkdir -p "$prefix"
    npm install --no-audit --no-fund --prefix "$prefix" "azurite@$AZURITE_VERSION"
fi

#!/usr/bin/env bash
# Installs dynalite (npm), the DynamoDB reference peer of `shoal-bench compare`, into
# bench/peers/ (git-ignored), with Debian's nodejs and npm when they are missing. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
if ! command -v npm >/dev/null; then
    apt-get install -y --no-install-recommends nodejs npm
fi
mkdir -p "$here/peers"
cd "$here/peers"
if [ ! -x node_modules/.bin/dynalite ]; then
    # Pinned: the comparison must name what it ran against.
    npm install --no-audit --no-fund --no-save dynalite@4.0.0
fi
node_modules/.bin/dynalite --help >/dev/null
echo "dynalite: $here/peers/node_modules/.bin/dynalite"

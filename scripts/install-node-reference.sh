#!/usr/bin/env bash
# Install the JavaScript reference implementation of W3C Data Integrity (eddsa-rdfc-2022, rdf-canonize) that
# tests/test_trust_interop.py runs under node: `npm ci` from the committed tests/interop/package-lock.json.
# Idempotent and quick when already installed: skipped while node_modules matches the lock file's digest.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
command -v node >/dev/null || { echo "install-node-reference: node is not installed (node 20 or later is needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install-node-reference: npm is not installed" >&2; exit 1; }
stamp=node_modules/.pht-package-lock.sha256
digest=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$digest" > "$stamp"

#!/usr/bin/env bash
# Install the JavaScript reference implementation of W3C Data Integrity (eddsa-rdfc-2022, rdf-canonize) that
# tests/test_trust_interop.py runs under node: `npm ci` from the committed tests/interop/package-lock.json.
# Idempotent and quick when already installed: skipped while node_modules matches the lock file's digest.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
command -v node >/dev/null || { echo "install-node-reference: node is not installed (node 20 or later is needed)" >&2; exit 1; }
if ! command -v npm >/dev/null; then  # Debian's nodejs comes without npm (NodeSource's includes it)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null
  else
    echo "install-node-reference: npm is not installed (apt-get install npm as root)" >&2; exit 1
  fi
fi
stamp=node_modules/.pht-package-lock.sha256
digest=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$digest" ]]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$digest" > "$stamp"

#!/usr/bin/env bash
# Reproduce the vendored YASGUI (npm @zazuko/yasgui, MIT) served by the web view's SPARQL page at /ui/sparql:
# `npm pack` of the pinned version, the package's SHA-256 checked, its built JS and CSS copied into
# orchestrator/web/static/yasgui/ and their SHA-256 checked again, plus the upstream MIT licence (the npm
# package ships none). The service serves these files itself: no CDN, no request leaves the browser's origin.
#
#   scripts/vendor-yasgui.sh           # rewrite the files; fails if npm's package is not the pinned one
#   scripts/vendor-yasgui.sh --check   # only verify the committed files against the pinned digests
#
# To update: change VERSION, run with PIN_NEW=1 to print the new digests, review, paste them below.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=4.6.2
PACKAGE_SHA256=6520cdd256a4003e8d45865e0d631b6456b88a0e6b65f4f3e56d78a25d74c9a7
declare -A FILES=(
  [yasgui.min.js]=55034eaac74c55f55fbd1eeed008ae38a79053651cbed2b453f1fcfd895a4b75
  [yasgui.min.css]=085b94556b97f9928981bdedb6848fd11ad4d8d950e821f0d698c58ca538fc55
)
DEST=orchestrator/web/static/yasgui

check_files() {
  local dir=$1 ok=0
  for name in "${!FILES[@]}"; do
    actual=$(sha256sum "$dir/$name" | cut -d' ' -f1)
    if [[ "$actual" != "${FILES[$name]}" ]]; then
      echo "vendor-yasgui: $dir/$name has SHA-256 $actual, pinned ${FILES[$name]}" >&2
      ok=1
    fi
  done
  return $ok
}

if [[ "${1:-}" == "--check" ]]; then
  check_files "$DEST" && echo "vendor-yasgui: $DEST matches @zazuko/yasgui@$VERSION"
  exit
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@zazuko/yasgui@$VERSION" >/dev/null)
tarball="$work/zazuko-yasgui-$VERSION.tgz"
actual=$(sha256sum "$tarball" | cut -d' ' -f1)
if [[ "${PIN_NEW:-}" == 1 ]]; then
  echo "PACKAGE_SHA256=$actual"
  tar -xzf "$tarball" -C "$work"
  for name in "${!FILES[@]}"; do echo "  [$name]=$(sha256sum "$work/package/build/$name" | cut -d' ' -f1)"; done
  exit
fi
if [[ "$actual" != "$PACKAGE_SHA256" ]]; then
  echo "vendor-yasgui: npm's @zazuko/yasgui@$VERSION has SHA-256 $actual, pinned $PACKAGE_SHA256" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
check_files "$work/package/build"
mkdir -p "$DEST"
for name in "${!FILES[@]}"; do cp "$work/package/build/$name" "$DEST/$name"; done
cat > "$DEST/LICENSE" <<'LICENSE'
YASGUI (npm @zazuko/yasgui), https://github.com/rdfjs/Yasgui — Triply and Zazuko GmbH

The MIT License (MIT)

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
THE SOFTWARE.
LICENSE
check_files "$DEST"
echo "vendor-yasgui: @zazuko/yasgui@$VERSION written to $DEST"

#!/usr/bin/env bash
# Reproduce the vendored JavaScript of the web view's SPARQL page at /ui/sparql: YASGUI (npm @zazuko/yasgui, MIT)
# and Chart.js (npm chart.js, MIT; drawn by our YASR chart plugin, static/yasr-chart.js). For each package:
# `npm pack` of the pinned version, the package's SHA-256 checked, the files we serve copied into
# orchestrator/web/static/<dir>/ and their SHA-256 checked again, with the package's licence (YASGUI's npm
# package ships none: its upstream MIT licence is written below). The service serves these files itself: no
# CDN, no request leaves the browser's origin.
#
#   scripts/vendor-yasgui.sh           # rewrite the files; fails if npm's package is not the pinned one
#   scripts/vendor-yasgui.sh --check   # only verify the committed files against the pinned digests
#
# To update a package: change its version, run with PIN_NEW=1 to print the new digests, review, paste them below.
set -euo pipefail
cd "$(dirname "$0")/.."

YASGUI=(@zazuko/yasgui 4.6.2 6520cdd256a4003e8d45865e0d631b6456b88a0e6b65f4f3e56d78a25d74c9a7
        orchestrator/web/static/yasgui)
declare -A YASGUI_FILES=(  # path in the package = SHA-256; served under its base name
  [build/yasgui.min.js]=55034eaac74c55f55fbd1eeed008ae38a79053651cbed2b453f1fcfd895a4b75
  [build/yasgui.min.css]=085b94556b97f9928981bdedb6848fd11ad4d8d950e821f0d698c58ca538fc55
)
CHARTJS=(chart.js 4.6.1 9345dacdf4bb4c5d40321f4b9aafab6fe676d37a534fc0bc2d17c4c4e29c4f00
         orchestrator/web/static/chartjs)
declare -A CHARTJS_FILES=(
  [dist/chart.umd.min.js]=87364cc2b2a76a6684929e7d6b80b18a897794db38400caff1fcf1791c6925d2
  [LICENSE.md]=41a84aa2caba645f966a18d9c2056b73e6d3a81d80bc0046bc0011a2634d4cce
)

# check_files DIR FILES flat: DIR holds each file of FILES under its base name (flat=1) or its package path.
check_files() {
  local dir=$1 flat=$2 ok=0 path file actual
  local -n pinned=$3
  for path in "${!pinned[@]}"; do
    file=$dir/$path
    [[ $flat == 1 ]] && file=$dir/$(basename "$path")
    actual=$(sha256sum "$file" | cut -d' ' -f1)
    if [[ "$actual" != "${pinned[$path]}" ]]; then
      echo "vendor-yasgui: $file has SHA-256 $actual, pinned ${pinned[$path]}" >&2
      ok=1
    fi
  done
  return $ok
}

# vendor PACKAGE FILES: check (--check) or rewrite one package's files.
vendor() {
  local -n package=$1
  local files=$2 name=${package[0]} version=${package[1]} sha256=${package[2]} dest=${package[3]}
  local -n pinned=$2
  if [[ "${MODE}" == check ]]; then
    check_files "$dest" 1 "$files" && echo "vendor-yasgui: $dest matches $name@$version"
    return
  fi
  local work tarball actual path
  work=$(mktemp -d)
  tarball="$work/$(cd "$work" && npm pack --silent "$name@$version")"
  actual=$(sha256sum "$tarball" | cut -d' ' -f1)
  tar -xzf "$tarball" -C "$work"
  if [[ "${PIN_NEW:-}" == 1 ]]; then
    echo "$name $version $actual"
    for path in "${!pinned[@]}"; do echo "  [$path]=$(sha256sum "$work/package/$path" | cut -d' ' -f1)"; done
    rm -rf "$work"
    return
  fi
  if [[ "$actual" != "$sha256" ]]; then
    echo "vendor-yasgui: npm's $name@$version has SHA-256 $actual, pinned $sha256" >&2
    rm -rf "$work"
    return 1
  fi
  check_files "$work/package" 0 "$files" || { rm -rf "$work"; return 1; }
  mkdir -p "$dest"
  for path in "${!pinned[@]}"; do cp "$work/package/$path" "$dest/$(basename "$path")"; done
  rm -rf "$work"
  check_files "$dest" 1 "$files"
  echo "vendor-yasgui: $name@$version written to $dest"
}

MODE=write
[[ "${1:-}" == "--check" ]] && MODE=check
vendor YASGUI YASGUI_FILES
vendor CHARTJS CHARTJS_FILES
[[ "$MODE" == check || "${PIN_NEW:-}" == 1 ]] && exit
cat > "${YASGUI[3]}/LICENSE" <<'LICENSE'
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

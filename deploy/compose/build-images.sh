#!/usr/bin/env bash
# Build every image docker-compose.yml runs, offline (no registry): the three service images
# (scripts/build-service-images.sh) and pht/oxigraph-server + pht/s3-server (infra.Dockerfile, from PyPI wheels
# fetched here with pip at the versions of .venv, then `docker build --network none`).
#
#   deploy/compose/build-images.sh      prints "IMAGE:TAG IMAGE-ID SIZE" per image
#
# Idempotent: the infra images are rebuilt only when infra.Dockerfile, this script or the pinned versions change.
set -euo pipefail
cd "$(dirname "$0")/../.."

die() { echo "compose/build-images: ERROR: $*" >&2; exit 1; }
bash scripts/build-service-images.sh
python=${PHT_PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
version() { "$python" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true; }
oxigraph=$(version oxigraph); moto=$(version moto)
oxigraph=${oxigraph:-0.5.13}; moto=${moto:-5.2.5}
recipe=$({ cat "$0" deploy/compose/infra.Dockerfile; echo "$oxigraph $moto"; } | sha256sum | cut -c1-16)
targets=(oxigraph-server s3-server)

current() {
  local t
  for t in "${targets[@]}"; do
    [[ $(docker image inspect -f '{{index .Config.Labels "pht.recipe"}}' "pht/$t:compose" 2>/dev/null) == "$recipe" ]] \
      || return 1
  done
}

if [[ -n ${PHT_REBUILD_IMAGES:-} ]] || ! current; then
  ctx=$(mktemp -d /var/tmp/pht-infra.XXXXXX)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/wheels" "$ctx/tools"
  constraints=()
  if [[ $python == .venv/bin/python || -n ${VIRTUAL_ENV:-} ]]; then
    "$python" -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' >"$ctx/constraints.txt" || true
    constraints=(--constraint "$ctx/constraints.txt")
  fi
  echo "compose/build-images: wheels of oxigraph $oxigraph and moto[server] $moto"
  "$python" -m pip wheel --quiet --disable-pip-version-check "${constraints[@]}" --wheel-dir "$ctx/wheels" \
    "oxigraph==$oxigraph" "moto[server]==$moto" >"$ctx/pip.log" 2>&1 \
    || { tail -20 "$ctx/pip.log" >&2; die "pip could not fetch the wheels (log above)"; }
  pip_version=$("$python" -m pip --version | cut -d' ' -f2)
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$ctx/tools" "pip==$pip_version" \
    >"$ctx/pip.log" 2>&1 || { tail -20 "$ctx/pip.log" >&2; die "pip could not download pip $pip_version"; }
  mv "$ctx"/tools/pip-*.whl "$ctx/tools/pip.whl"
  cp deploy/compose/infra.Dockerfile "$ctx/Dockerfile"
  for t in "${targets[@]}"; do
    echo "compose/build-images: building pht/$t:compose"
    docker build --network none --target "$t" --tag "pht/$t:compose" --label pht.recipe="$recipe" "$ctx" \
      >"$ctx/build.log" 2>&1 || { tail -30 "$ctx/build.log" >&2; die "building pht/$t failed (log above)"; }
  done
fi
for t in "${targets[@]}"; do
  docker image inspect -f "pht/$t:compose {{.Id}} {{.Size}}" "pht/$t:compose" \
    | awk '{printf "%s %s %.0f MB\n", $1, $2, $3 / 1e6}'
done

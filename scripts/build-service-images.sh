#!/usr/bin/env bash
# Build the service images pht/central-service, pht/station-agent and pht/mpu without any container registry.
#
#   scripts/build-service-images.sh        prints "IMAGE:TAG IMAGE-ID SIZE" per image
#
# From the debootstrap base (scripts/build-base-image.sh, built here if missing) and deploy/images/Dockerfile.
# The code is the checkout's last commit (HEAD, `git archive`: not the uncommitted edits of a shared working tree),
# turned into wheels here with its dependencies from PyPI -- at the versions of .venv when it exists, so the images
# run what the tests ran -- and the Docker build itself runs with no network. The tag is the project's version
# (pyproject.toml); the image ID printed is the image's digest here (a registry gives the pushed manifest its own).
# Idempotent: does nothing when the three images exist for this code (HEAD's) and this deploy/images/ (set
# PHT_REBUILD_IMAGES=1 to rebuild, e.g. after .venv changed; Docker's layer cache keeps a rebuild short).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "build-service-images: ERROR: $*" >&2; exit 1; }
targets=(central-service station-agent mpu)
# scikit-learn and what only it needs: the demo's data set and its pooled comparison (pht demo, pht setup), no
# service; about 150 MB.
demo_only='scikit_learn-*.whl scipy-*.whl joblib-*.whl threadpoolctl-*.whl'

command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (scripts/start-services.sh starts one)"
git rev-parse --verify -q HEAD >/dev/null || die "not a git checkout with a commit (the images are built from HEAD)"
python=${PHT_PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
"$python" -m pip --version >/dev/null 2>&1 || die "$python has no pip (set PHT_PYTHON to a Python 3.11 with pip)"
# the wheels are made here for the base image's Python (bookworm: 3.11)
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$python is not Python 3.11, the base image's (set PHT_PYTHON to one)"

version=$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
revision=$(git rev-parse HEAD)
# What goes into the images: this script, deploy/images/ and the committed code (not the commit itself: a commit of
# docs or tests alone rebuilds nothing).
code=(pyproject.toml graph_store trust orchestrator station station_mpu client dataspace local_platform pht_cli ontology shapes
      sparql_queries)
recipe=$({ cat "$0" deploy/images/*; git ls-tree -r HEAD -- "${code[@]}"; } | sha256sum | cut -c1-16)

current() {  # true if every image exists, built from this code with this recipe
  local t
  for t in "${targets[@]}"; do
    [[ $(docker image inspect -f '{{index .Config.Labels "pht.recipe"}}' "pht/$t:$version" 2>/dev/null) == "$recipe" ]] \
      || return 1
  done
}

if [[ -n ${PHT_REBUILD_IMAGES:-} ]] || ! current; then
  bash scripts/build-base-image.sh
  ctx=$(mktemp -d /var/tmp/pht-images.XXXXXX)
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/src" "$ctx/wheels" "$ctx/project" "$ctx/tools"
  git archive HEAD | tar -x -C "$ctx/src"
  # What the code reads beside its packages and the wheel does not hold (deploy/images/Dockerfile says where it goes).
  mkdir -p "$ctx/data/station_mpu"
  cp -r "$ctx/src/ontology" "$ctx/src/shapes" "$ctx/src/sparql_queries" "$ctx/data/"
  cp "$ctx/src/station_mpu/default-policy.ttl" "$ctx/data/station_mpu/"
  cp deploy/images/Dockerfile deploy/images/healthcheck.py deploy/images/only_needed_by.py "$ctx/"
  # The dependency versions the project's environment has (the tests ran on them), when there is one.
  constraints=()
  if [[ $python == .venv/bin/python || -n ${VIRTUAL_ENV:-} ]]; then
    "$python" -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' >"$ctx/constraints.txt" || true
    constraints=(--constraint "$ctx/constraints.txt")
  fi
  echo "build-service-images: wheels of the project at ${revision:0:12} and its dependencies"
  "$python" -m pip wheel --quiet --disable-pip-version-check "${constraints[@]}" --wheel-dir "$ctx/wheels" "$ctx/src" \
    >"$ctx/pip.log" 2>&1 || { tail -20 "$ctx/pip.log" >&2; die "pip could not build the wheels (log above)"; }
  pip_version=$("$python" -m pip --version | cut -d' ' -f2)
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$ctx/tools" "pip==$pip_version" \
    >"$ctx/pip.log" 2>&1 || { tail -20 "$ctx/pip.log" >&2; die "pip could not download pip $pip_version"; }
  mv "$ctx"/tools/pip-*.whl "$ctx/tools/pip.whl"
  mv "$ctx"/wheels/pht_kg-*.whl "$ctx/project/"
  (cd "$ctx/wheels" && rm -f $demo_only)

  for t in "${targets[@]}"; do
    echo "build-service-images: building pht/$t:$version"
    docker build --network none --target "$t" --tag "pht/$t:$version" --label pht.recipe="$recipe" \
      --label org.opencontainers.image.title="pht/$t" --label org.opencontainers.image.version="$version" \
      --label org.opencontainers.image.revision="$revision" "$ctx" >"$ctx/build.log" 2>&1 \
      || { tail -30 "$ctx/build.log" >&2; die "building pht/$t failed (log above)"; }
  done
fi
for t in "${targets[@]}"; do
  docker image inspect -f "pht/$t:$version {{.Id}} {{.Size}}" "pht/$t:$version" \
    | awk '{printf "%s %s %.0f MB\n", $1, $2, $3 / 1e6}'
done

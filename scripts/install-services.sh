#!/usr/bin/env bash
# Install the external components that the test suite runs for real.
#
# Idempotent; run as root on a Debian bookworm machine (CI runs it from .ci/run).
# It only installs packages; scripts/start-services.sh starts the Docker engine. The tests start their own
# throw-away servers on 127.0.0.1 (see tests/servers.py).
#
#   virtuoso-opensource  -> /usr/bin/virtuoso-t, /usr/bin/isql-vt (Virtuoso 7)
#   docker.io            -> /usr/sbin/dockerd (the Docker Engine; started by scripts/start-services.sh)
#   debootstrap          -> builds the Python base image without a registry (scripts/build-base-image.sh)
#   bubblewrap           -> /usr/bin/bwrap, the sandbox of the local process runtime
#   podman               -> Docker-compatible API, a second container engine for the runtime tests
#   runc                 -> the OCI runtime Podman needs on cgroup-hybrid hosts, where crun refuses to run
#                           (station/runtimes/podman.py); docker.io uses it too
#   golang-github-containers-common -> /etc/containers/policy.json, without which Podman loads no image
#   prometheus           -> scrapes our metrics for real in the dashboard tests
#   chromium             -> headless browser for the web view tests
#   chromium-driver      -> /usr/bin/chromedriver, through which selenium drives that browser
#   python3-numpy        -> numpy for trains run by the process runtime (the no-Docker demo)
#   age                  -> /usr/bin/age, the reference age tool: what we seal opens with it and vice versa
#   nodejs               -> node for the JavaScript reference implementations of Data Integrity and RDFC-1.0
#                           (scripts/install-node-reference.sh installs them from npm; tests/test_trust_interop.py).
#                           npm comes with NodeSource's nodejs; with Debian's nodejs, install-node-reference.sh
#                           installs Debian's npm when it is missing
#   docker-registry      -> /usr/bin/docker-registry, the CNCF Distribution registry: train images are pushed to it
#                           and pulled by digest in the registry tests (tests/servers.py::registry_server)
#   apache2-utils        -> /usr/bin/htpasswd, writes the registry's bcrypt htpasswd file in those tests
#   docker-compose       -> /usr/bin/docker-compose (1.29, Python), brings up deploy/compose/ (the multi-host
#                           deployment on one machine; tests/test_compose_deployment.py)
#   oxigraph server      -> comes from PyPI (`oxigraph` in the `test` extra), not apt
#
# Quiet when there is nothing to do; errors are fatal and loud.
set -euo pipefail

# Debian package name -> file that proves it is installed and usable.
declare -A PACKAGES=(
  [virtuoso-opensource]=/usr/bin/virtuoso-t
  [docker.io]=/usr/sbin/dockerd
  [debootstrap]=/usr/sbin/debootstrap
  [bubblewrap]=/usr/bin/bwrap
  [podman]=/usr/bin/podman
  [runc]=/usr/sbin/runc
  [golang-github-containers-common]=/etc/containers/policy.json
  [prometheus]=/usr/bin/prometheus
  [chromium]=/usr/bin/chromium
  [chromium-driver]=/usr/bin/chromedriver
  [python3-numpy]=/usr/lib/python3/dist-packages/numpy/__init__.py
  [age]=/usr/bin/age
  [nodejs]=/usr/bin/node
  [docker-registry]=/usr/bin/docker-registry
  [apache2-utils]=/usr/bin/htpasswd
  [docker-compose]=/usr/bin/docker-compose
)

die() { echo "install-services: ERROR: $*" >&2; exit 1; }

missing=()
for pkg in "${!PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
     || [[ ! -e "${PACKAGES[$pkg]}" ]]; then
    missing+=("$pkg")
  fi
done

if (( ${#missing[@]} == 0 )); then
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "need root to install: ${missing[*]}"
command -v apt-get >/dev/null || die "apt-get not found (not a Debian machine?); install by hand: ${missing[*]}"

export DEBIAN_FRONTEND=noninteractive

# virtuoso-opensource-7's postinst runs `invoke-rc.d virtuoso-opensource-7 start`.
# Forbid service starts for the duration of the install unless a policy already exists.
policy=/usr/sbin/policy-rc.d
created_policy=0
cleanup() { if (( created_policy )); then rm -f "$policy"; fi; }
trap cleanup EXIT
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# temporary, written by scripts/install-services.sh\nexit 101\n' >"$policy"
  chmod 0755 "$policy"
  created_policy=1
fi

log=$(mktemp)
run() {
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    die "command failed: $*"
  fi
}

echo "install-services: installing ${missing[*]}"
run apt-get update -qq
# --reinstall with --force-confmiss also repairs a package whose proving file was deleted (a conffile such as
# policy.json is otherwise never restored once an admin removed it)
run apt-get install -y -qq --no-install-recommends --reinstall -o Dpkg::Options::=--force-confmiss \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
rm -f "$log"

for pkg in "${missing[@]}"; do
  [[ -e "${PACKAGES[$pkg]}" ]] || die "$pkg installed but ${PACKAGES[$pkg]} is missing"
done

#!/usr/bin/env bash
# Start what the tests need that is a long-running system service rather than a per-test server:
# the Docker engine (if no engine answers), then the offline Python base image for train images.
# Idempotent; run as root after scripts/install-services.sh. Errors are fatal and loud.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "start-services: ERROR: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || die "dockerd is not installed (scripts/install-services.sh)"
  log=/var/log/pht-dockerd.log
  echo "start-services: starting dockerd (log $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -20 "$log" >&2; die "dockerd did not answer within 30 s"; }
fi
bash scripts/build-base-image.sh

#!/usr/bin/env bash
# Build the Python base image that train images start FROM, without any registry.
#
#   scripts/build-base-image.sh [IMAGE_NAME]      (default: pht/python-base:bookworm)
#
# debootstrap fetches Debian packages (python3, python3-numpy) from Debian's mirror -- the one
# package source an air-gapped station usually mirrors -- into a folder, and `docker import` turns
# that folder into an image. Nothing is pulled from a container registry. Takes about 90 s.
# Idempotent: does nothing when the image exists (set PHT_REBUILD_BASE=1 to rebuild).
set -euo pipefail
name=${1:-pht/python-base:bookworm}
mirror=${PHT_DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "build-base-image: ERROR: $*" >&2; exit 1; }
command -v docker >/dev/null || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"
if [[ -z ${PHT_REBUILD_BASE:-} ]] && docker image inspect "$name" >/dev/null 2>&1; then
  exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root"

root=$(mktemp -d /var/tmp/pht-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "build-base-image: debootstrap bookworm into $root (about 90 s)"
debootstrap --variant=minbase --include=python3,python3-numpy bookworm "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; die "debootstrap failed (log above)"; }
rm -f "$root.log"
# Smaller image: no apt lists, docs or caches.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
# An unprivileged user for trains (uid 10001); runtimes also force this uid.
chroot "$root" /usr/sbin/useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin train
tar -C "$root" -c . | docker import --change 'USER 10001:10001' --change 'ENV PYTHONDONTWRITEBYTECODE=1' - "$name" >/dev/null
echo "build-base-image: built $name ($(docker image inspect -f '{{.Id}}' "$name"))"

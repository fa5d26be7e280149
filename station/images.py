"""Build a train image from a train folder, offline.

A train folder holds a ``Dockerfile`` that starts ``FROM pht/python-base:bookworm`` (built without any registry
by ``scripts/build-base-image.sh``) and the train's files. The build never pulls (``pull=False``) and its
``RUN`` steps get no network, so a build works the same on an air-gapped station as on a laptop.
"""

from __future__ import annotations

import re
from pathlib import Path

import docker
import docker.errors

from station.runtimes.base import RuntimeFailure

BASE_IMAGE = "pht/python-base:bookworm"
BASE_IMAGE_HINT = "run scripts/build-base-image.sh"

_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", re.IGNORECASE | re.MULTILINE)


def base_images(dockerfile: Path) -> list[str]:
    """The images a Dockerfile builds FROM (stage names excluded)."""
    text = dockerfile.read_text()
    stages = {m.lower() for m in re.findall(r"^\s*FROM\s+.*?\s+AS\s+(\S+)", text, re.IGNORECASE | re.MULTILINE)}
    return [name for name in _FROM.findall(text) if name.lower() not in stages and name != "scratch"]


def build_train_image(folder: Path, tag: str, client: docker.DockerClient | None = None) -> str:
    """Build ``folder`` (with a Dockerfile) as ``tag``; return the image ID ``sha256:...`` (what gets approved)."""
    if client is None:  # a client of our own, closed when done (an unclosed one leaks its socket)
        own = docker.from_env()
        try:
            return build_train_image(folder, tag, own)
        finally:
            own.close()
    dockerfile = folder / "Dockerfile"
    if not dockerfile.is_file():
        raise RuntimeFailure(f"{folder} has no Dockerfile")
    for base in base_images(dockerfile):
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound:
            hint = f"; {BASE_IMAGE_HINT}" if base == BASE_IMAGE else ""
            raise RuntimeFailure(f"base image {base} is missing and is never pulled{hint}") from None
    try:
        image, _ = client.images.build(path=str(folder), tag=tag, pull=False, rm=True, forcerm=True,
                                       network_mode="none")
    except docker.errors.BuildError as exc:
        tail = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in exc.build_log)[-2000:]
        raise RuntimeFailure(f"building {folder} failed: {exc.msg}\n{tail}") from exc
    except docker.errors.APIError as exc:
        raise RuntimeFailure(f"building {folder} failed: {exc}") from exc
    return str(image.id)

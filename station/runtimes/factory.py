"""Pick the station's runtime by name (``PHT_STATION_RUNTIME``); imports only the one asked for."""

import os

from .base import Runtime, RuntimeFailure

NAMES = ("docker", "podman", "process", "kubernetes")


def make_runtime(name: str) -> Runtime:
    """``docker`` (default engine socket), ``podman`` (its Docker-compatible API at ``PHT_PODMAN_URL``),
    ``process`` (local processes, bubblewrap when present) or ``kubernetes`` (Jobs)."""
    if name == "docker":
        from .docker import DockerRuntime
        return DockerRuntime()
    if name == "podman":
        from .docker import DockerRuntime
        url = os.environ.get("PHT_PODMAN_URL", "unix:///run/podman/podman.sock")
        return DockerRuntime(base_url=url)
    if name == "process":
        from .process import ProcessRuntime
        return ProcessRuntime()
    if name == "kubernetes":
        from .kubernetes import KubernetesRuntime
        return KubernetesRuntime()  # type: ignore[call-arg]
    raise RuntimeFailure(f"unknown runtime {name!r}; use one of {', '.join(NAMES)}")

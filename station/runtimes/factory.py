"""Pick the station's runtime by name (``PHT_STATION_RUNTIME``); imports only the one asked for."""

import json
from pathlib import Path

from .base import Runtime, RuntimeFailure

NAMES = ("docker", "podman", "process", "kubernetes")
#: runtimes whose trains are containers on this host's engine, so the MPU can sample their stats
CONTAINER_ENGINES = ("docker", "podman")
DEFAULT_PODMAN_URL = "unix:///run/podman/podman.sock"


def make_runtime(name: str, *, podman_url: str | None = None, kubernetes_namespace: str | None = None,
                 kubernetes_image_refs: Path | None = None, kubeconfig: Path | None = None) -> Runtime:
    """``docker`` (default engine socket), ``podman`` (its Docker-compatible API at ``podman_url``),
    ``process`` (local processes, bubblewrap when present) or ``kubernetes`` (Jobs in ``kubernetes_namespace``,
    images by the registry references that the JSON file ``kubernetes_image_refs`` maps approved image IDs to;
    the cluster's configuration in-cluster, else from the file ``kubeconfig``).

    Raises :class:`RuntimeFailure` with one sentence when the runtime cannot be built here."""
    if name == "docker":
        from .docker import DockerRuntime
        return DockerRuntime()
    if name == "podman":
        from .docker import DockerRuntime
        return DockerRuntime(base_url=podman_url or DEFAULT_PODMAN_URL)
    if name == "process":
        from .process import ProcessRuntime
        return ProcessRuntime()
    if name == "kubernetes":
        if not kubernetes_namespace:
            raise RuntimeFailure("the kubernetes runtime needs a namespace (PHT_K8S_NAMESPACE)")
        if kubernetes_image_refs is None:
            raise RuntimeFailure("the kubernetes runtime needs the image reference file (PHT_K8S_IMAGE_REFS)")
        refs = _image_refs(kubernetes_image_refs)
        from kubernetes.config import ConfigException

        from .kubernetes import KubernetesRuntime
        try:
            return KubernetesRuntime(namespace=kubernetes_namespace, image_refs=refs, kubeconfig=kubeconfig)
        except ConfigException as e:
            raise RuntimeFailure(f"no Kubernetes cluster configuration (in-cluster or KUBECONFIG): {e}") from None
    raise RuntimeFailure(f"unknown runtime {name!r}; use one of {', '.join(NAMES)}")


def _image_refs(path: Path) -> dict[str, str]:
    """The JSON object ``{"sha256:<image ID>": "registry/repo@sha256:<manifest digest>", ...}`` in ``path``."""
    try:
        refs = json.loads(path.read_text())
    except OSError as e:
        raise RuntimeFailure(f"cannot read the image reference file {path}: {e.strerror}") from None
    except ValueError as e:
        raise RuntimeFailure(f"the image reference file {path} is not JSON: {e}") from None
    if not isinstance(refs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in refs.items()):
        raise RuntimeFailure(f"the image reference file {path} must be a JSON object of image ID to reference")
    return refs

"""The Kubernetes Job a station on a cluster would create for one run, and a runtime that would submit it.

**No cluster runs in this project's test environment**: the manifests are checked (deserialised into the
kubernetes client's models, every security setting asserted) but :class:`KubernetesRuntime` has never
talked to an API server. It is written against the client API and documented as untested.

Kubernetes differs from Docker in three ways that matter here:

* a pod references its image by **registry reference**, ``repository@sha256:<manifest digest>``; the image
  ID (config digest) that the admin approves is not an image reference a kubelet can pull. The station
  therefore keeps, per approved image ID, the reference it pushed to its own registry (``image_refs``); that
  the manifest behind the reference has the approved config is checked when pushing, not here;
* the output ``emptyDir`` has a ``sizeLimit``: exceeding it gets the pod *evicted* (not ENOSPC);
* there is no per-pod process limit in the pod spec (the node's ``podPidsLimit`` applies).

As in the Docker runtime a *keeper* container (``sleep infinity``, output mounted read-only) keeps the pod,
and with it the output ``emptyDir``, alive after the train exits, so the output can be copied out.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from station import contract
from station.runtimes.base import ImageRefused, Limits, RunResult, RunSpec, RuntimeFailure
from station.runtimes.output import OutputRejected, empty_folder, extract_tar, too_big

if TYPE_CHECKING:  # the client is imported where a runtime is made: only this runtime needs it
    from kubernetes.client import V1ContainerStateTerminated, V1PodStatus

LABEL = "pht.execution"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pht-station"}
PARAMS_KEY = "params.json"
KEEPER_COMMAND = ["sleep", "infinity"]
TTL_AFTER_FINISHED_S = 3600      #: a Job the station forgot (crash) is garbage-collected after this
STARTUP_GRACE_S = 120.0          #: image pull and scheduling, on top of the train's time limit

_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?")
_IMAGE_REF = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")


def kubernetes_name(name: str) -> str:
    """Execution name as a DNS-1123 label (Job, ConfigMap and label value), or RuntimeFailure."""
    candidate = name.lower().replace("_", "-").replace(".", "-")
    if not _K8S_NAME.fullmatch(candidate):
        raise RuntimeFailure(f"execution name {name!r} cannot be a Kubernetes name (DNS-1123 label, <= 52 chars)")
    return candidate


def pvc_source(claim_name: str) -> dict[str, Any]:
    """A dataset or input volume from a PersistentVolumeClaim (mounted read-only)."""
    return {"persistentVolumeClaim": {"claimName": claim_name, "readOnly": True}}


def host_path_source(path: Path | str) -> dict[str, Any]:
    """A dataset or input volume from a folder on the node (single-node clusters, or the same path on all)."""
    return {"hostPath": {"path": str(path), "type": "Directory"}}


def _read_only(source: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of a volume source with every read-only switch it has turned on."""
    result: dict[str, Any] = json.loads(json.dumps(dict(source)))  # a deep copy: a dict again
    if "persistentVolumeClaim" in result:
        result["persistentVolumeClaim"]["readOnly"] = True
    return result


def _labels(name: str) -> dict[str, str]:
    return {LABEL: name, **MANAGED_BY}


def _quantity_cpu(cpus: float) -> str:
    return f"{max(1, round(cpus * 1000))}m"


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": contract.TRAIN_UID,
        "runAsGroup": contract.TRAIN_UID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def params_config_map(spec: RunSpec, *, namespace: str) -> dict[str, Any]:
    """The ConfigMap holding ``params.json`` (mounted read-only at ``contract.PARAMS_FILE``)."""
    name = kubernetes_name(spec.name)
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{name}-params", "namespace": namespace, "labels": _labels(name)},
        "data": {PARAMS_KEY: Path(spec.params_file).read_text()},
        "immutable": True,
    }


def network_policy(spec: RunSpec, *, namespace: str) -> dict[str, Any]:
    """Deny all ingress and egress for the run's pod (needs a CNI that enforces NetworkPolicy)."""
    name = kubernetes_name(spec.name)
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": f"{name}-deny-all", "namespace": namespace, "labels": _labels(name)},
        "spec": {"podSelector": {"matchLabels": {LABEL: name}}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": [], "egress": []},
    }


def job_manifest(
    spec: RunSpec,
    *,
    namespace: str,
    image_ref: str,
    dataset_source: Mapping[str, Any],
    input_source: Mapping[str, Any] | None = None,
    params_config_map_name: str | None = None,
) -> dict[str, Any]:
    """The Job for one run. ``image_ref`` is ``repository@sha256:<manifest digest>`` (see the module doc);
    ``dataset_source``/``input_source`` are volume sources (:func:`pvc_source`, :func:`host_path_source`)."""
    if not _IMAGE_REF.fullmatch(image_ref):
        raise ImageRefused(f"Image reference {image_ref!r} is not pinned by digest (repository@sha256:...).")
    name = kubernetes_name(spec.name)
    limits: Limits = spec.limits
    memory = str(limits.memory_bytes)
    mounts = [
        {"name": "data", "mountPath": contract.DATA_DIR, "readOnly": True},
        {"name": "input", "mountPath": contract.INPUT_DIR, "readOnly": True},
        {"name": "params", "mountPath": contract.PARAMS_FILE, "subPath": PARAMS_KEY, "readOnly": True},
        {"name": "output", "mountPath": contract.OUTPUT_DIR},
        {"name": "tmp", "mountPath": contract.WORK_DIR},
    ]
    train: dict[str, Any] = {
        "name": "train",
        "image": image_ref,
        "imagePullPolicy": "IfNotPresent",  # a digest reference is immutable
        "env": [{"name": k, "value": v} for k, v in sorted(spec.environment.items())],
        "securityContext": _container_security(),
        "resources": {"limits": {"memory": memory, "cpu": _quantity_cpu(limits.cpus)},
                      "requests": {"memory": memory, "cpu": _quantity_cpu(limits.cpus)}},
        "volumeMounts": mounts,
    }
    if spec.entrypoint:
        train["command"] = list(spec.entrypoint)
    keeper = {
        "name": "keeper",
        "image": image_ref,
        "imagePullPolicy": "IfNotPresent",
        "command": KEEPER_COMMAND,
        "securityContext": _container_security(),
        "resources": {"limits": {"memory": str(16 * 1024**2), "cpu": "50m"},
                      "requests": {"memory": str(16 * 1024**2), "cpu": "10m"}},
        "volumeMounts": [{"name": "output", "mountPath": contract.OUTPUT_DIR, "readOnly": True}],
    }
    volumes = [
        {"name": "data", **_read_only(dataset_source)},
        {"name": "input", **(_read_only(input_source) if input_source is not None else {"emptyDir": {}})},
        {"name": "params", "configMap": {"name": params_config_map_name or f"{name}-params",
                                         "items": [{"key": PARAMS_KEY, "path": PARAMS_KEY}],
                                         "defaultMode": 0o444}},
        {"name": "output", "emptyDir": {"sizeLimit": str(limits.output_bytes)}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.tmp_bytes)}},
    ]
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": _labels(name)},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(limits.timeout_s),
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED_S,
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,  # no environment variables naming the cluster's services
                    "hostNetwork": False, "hostPID": False, "hostIPC": False,
                    "shareProcessNamespace": False,
                    "terminationGracePeriodSeconds": 5,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": contract.TRAIN_UID,
                        "runAsGroup": contract.TRAIN_UID,
                        "fsGroup": contract.TRAIN_UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [train, keeper],
                    "volumes": volumes,
                },
            },
        },
    }


def _train_terminated(status: V1PodStatus) -> V1ContainerStateTerminated | None:
    """How the pod's ``train`` container ended; None while it has not."""
    for s in status.container_statuses or []:
        if s.name == "train" and s.state is not None:
            return s.state.terminated
    return None


class KubernetesRuntime:
    """Submits the Job through the kubernetes client. UNTESTED: no cluster is available to the test suite.

    ``image_refs`` maps approved image IDs to the digest-pinned references in the station's registry;
    ``dataset_source``/``input_source`` default to hostPath volumes of the spec's folders.
    """

    name = "kubernetes"

    def __init__(self, *, namespace: str, image_refs: Mapping[str, str], api_client: Any = None,
                 dataset_source: Mapping[str, Any] | None = None, poll_s: float = 2.0,
                 kubeconfig: Path | None = None) -> None:
        """Without ``api_client``: the in-cluster configuration, else the file ``kubeconfig`` (the client's own
        default location when ``None``); raises ``kubernetes.config.ConfigException`` when there is neither."""
        from kubernetes import client as k8s  # imported here: only this runtime needs a cluster configuration

        owns_api_client = api_client is None
        if api_client is None:
            from kubernetes import config
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None)
            api_client = k8s.ApiClient()
        self.namespace = namespace
        self.image_refs = dict(image_refs)
        self.dataset_source = dataset_source
        self.poll_s = poll_s
        self._api_client, self._owns_api_client = api_client, owns_api_client
        self.core = k8s.CoreV1Api(api_client)
        self.batch = k8s.BatchV1Api(api_client)
        self.networking = k8s.NetworkingV1Api(api_client)

    def pull(self, reference: str, auth: Mapping[str, str] | None) -> None:
        """Nothing to fetch here: the cluster's nodes pull, by the reference the image reference file maps the
        approved image ID to, with the namespace's image pull secret."""

    def check_image(self, image: str, digest: str) -> None:
        if digest not in self.image_refs:
            raise ImageRefused(f"No registry reference is configured for image {image} with ID {digest}.")

    def run(self, spec: RunSpec) -> RunResult:
        self.check_image(spec.image, spec.image_digest)
        name = kubernetes_name(spec.name)
        dataset = self.dataset_source or host_path_source(Path(spec.dataset_dir).resolve())
        inputs = host_path_source(Path(spec.input_dir).resolve()) if spec.input_dir else None
        job = job_manifest(spec, namespace=self.namespace, image_ref=self.image_refs[spec.image_digest],
                           dataset_source=dataset, input_source=inputs)
        self.discard(spec.name)
        started = time.monotonic()
        try:
            # The client's annotations ask for its model objects; it sends a dict body as it is
            # (ApiClient.sanitize_for_serialization), and tests/test_runtime_kubernetes.py checks each manifest
            # against those models.
            config_map = params_config_map(spec, namespace=self.namespace)
            policy = network_policy(spec, namespace=self.namespace)
            self.core.create_namespaced_config_map(self.namespace, config_map)  # type: ignore[arg-type]  # a dict
            self.networking.create_namespaced_network_policy(self.namespace, policy)  # type: ignore[arg-type]  # a dict
            self.batch.create_namespaced_job(self.namespace, job)  # type: ignore[arg-type]  # a dict, see above
            return self._follow(spec, name, started)
        finally:
            self.discard(spec.name)

    def _follow(self, spec: RunSpec, name: str, started: float) -> RunResult:
        limits = spec.limits
        deadline = started + limits.timeout_s + STARTUP_GRACE_S
        pod = None
        while time.monotonic() < deadline:
            pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL}={name}").items
            pod = pods[0] if pods else None
            if pod is not None and pod.status is not None:
                if pod.status.phase == "Failed" and pod.status.reason in ("DeadlineExceeded", "Evicted"):
                    break
                if _train_terminated(pod.status) is not None:
                    break
            time.sleep(self.poll_s)
        logs = self._logs(pod, limits.log_bytes)
        duration = time.monotonic() - started
        status = pod.status if pod is not None else None
        if status is None or time.monotonic() >= deadline or status.reason == "DeadlineExceeded":
            return RunResult(None, f"The train exceeded the time limit of {limits.timeout_s:g} s.", logs, duration)
        if status.reason == "Evicted":
            return RunResult(None, f"The train was evicted: {status.message}", logs, duration)
        terminated = _train_terminated(status)
        pod_name = pod.metadata.name if pod is not None and pod.metadata is not None else None
        if terminated is None or pod_name is None:  # the loop above ends only once the train container ended
            raise RuntimeFailure(f"Kubernetes reported no end of the train container of job {name}.")
        code = terminated.exit_code
        if terminated.reason == "OOMKilled":
            memory = f"{limits.memory_bytes / 1024**2:g} MiB"
            return RunResult(code, f"The train ran out of memory (limit {memory}).", logs, duration)
        if code != contract.EXIT_OK:
            return RunResult(code, f"The train exited with code {code}.", logs, duration)
        failure = self._collect(spec, pod_name)
        return RunResult(0, failure, logs, time.monotonic() - started)

    def _logs(self, pod: Any, limit: int) -> bytes:
        if pod is None:
            return b""
        try:
            text = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, container="train")
        except Exception:  # noqa: BLE001 - logs are best effort
            return b""
        return str(text).encode()[-limit:]

    def _collect(self, spec: RunSpec, pod_name: str) -> str | None:
        """tar the output in the keeper, base64 (the exec stream is text), check and extract it."""
        from kubernetes.stream import stream

        response = stream(self.core.connect_get_namespaced_pod_exec, pod_name, self.namespace, container="keeper",
                          command=["sh", "-c", "tar -cf - -C /pht output | base64"], stderr=True, stdin=False,
                          stdout=True, tty=False, _preload_content=False)
        cap = (spec.limits.output_bytes + 1024**2) * 4 // 3 + 4096
        encoded = io.StringIO()
        size = 0
        while response.is_open():
            response.update(timeout=5)
            chunk = response.read_stdout() if response.peek_stdout() else ""
            size += len(chunk)
            if size > cap:
                response.close()
                return f"The output was refused: {too_big(spec.limits.output_bytes)}."
            encoded.write(chunk)
        try:
            extract_tar(io.BytesIO(base64.b64decode(encoded.getvalue())), spec.output_dir,
                        max_bytes=spec.limits.output_bytes, strip="output")
        except OutputRejected as exc:
            empty_folder(spec.output_dir)
            return f"The output was refused: {exc}."
        return None

    def close(self) -> None:
        """Close the API client's connection pool if this runtime made the client."""
        if self._owns_api_client:
            self._api_client.close()

    def discard(self, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        kname = kubernetes_name(name)
        deletions = (
            (self.batch.delete_namespaced_job, kname),
            (self.core.delete_namespaced_config_map, f"{kname}-params"),
            (self.networking.delete_namespaced_network_policy, f"{kname}-deny-all"),
        )
        for delete, object_name in deletions:
            try:
                delete(object_name, self.namespace, propagation_policy="Background")
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def leftovers(self) -> list[str]:
        jobs = self.batch.list_namespaced_job(self.namespace, label_selector=LABEL).items
        return sorted({job.metadata.labels[LABEL] for job in jobs if job.metadata is not None and job.metadata.labels})

"""Kubernetes manifests (no cluster here): they are valid client models and carry every security setting.

Validity: each manifest is deserialised into the kubernetes client's models and serialised back; the round
trip must give the same document, so a misspelt or unknown field (which deserialisation would silently
drop) fails the test.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiClient, V1ConfigMap, V1Job, V1NetworkPolicy
from kubernetes.utils import parse_quantity
from runtime_helpers import make_spec

from station import contract
from station.runtimes.base import ImageRefused, Limits, RunSpec, RuntimeFailure
from station.runtimes.kubernetes import (
    LABEL,
    KubernetesRuntime,
    host_path_source,
    job_manifest,
    kubernetes_name,
    network_policy,
    params_config_map,
    pvc_source,
)

DIGEST = "sha256:" + "ab" * 32
IMAGE_REF = "registry.station.local/trains/probe@sha256:" + "cd" * 32


class _Response:
    """What older ``ApiClient.deserialize`` versions take (newer ones take the text and a content type)."""

    def __init__(self, text: str) -> None:
        self.data = text


def as_model(document: dict[str, Any], kind: str) -> Any:
    """Deserialise like the client does for API answers; require a lossless round trip."""
    client = ApiClient()
    text = json.dumps(document)
    if "content_type" in inspect.signature(client.deserialize).parameters:
        model = client.deserialize(text, kind, "application/json")
    else:
        model = client.deserialize(_Response(text), kind)
    assert client.sanitize_for_serialization(model) == document, "unknown or misspelt fields were dropped"
    return model


@pytest.fixture
def spec(tmp_path: Path) -> RunSpec:
    return make_spec(tmp_path, name="exec_42.r1", image="probe", digest=DIGEST, params={"alpha": "0.5"},
                     limits=Limits(memory_bytes=256 * 1024**2, cpus=0.5, timeout_s=90.5, output_bytes=8 * 1024**2,
                                   tmp_bytes=32 * 1024**2))


def job(spec: RunSpec, **overrides: Any) -> V1Job:
    arguments: dict[str, Any] = {"namespace": "station", "image_ref": IMAGE_REF, "dataset_source": pvc_source("ds")}
    arguments.update(overrides)
    return as_model(job_manifest(spec, **arguments), "V1Job")


def test_job_runs_once_within_the_deadline(spec: RunSpec) -> None:
    model = job(spec)
    name = kubernetes_name(spec.name)
    assert model.metadata.name == name and model.metadata.namespace == "station"
    assert model.spec.backoff_limit == 0
    assert model.spec.active_deadline_seconds == 91
    pod = model.spec.template
    assert pod.metadata.labels[LABEL] == name
    assert pod.spec.restart_policy == "Never"


def test_pod_security(spec: RunSpec) -> None:
    pod = job(spec).spec.template.spec
    assert pod.automount_service_account_token is False
    assert pod.enable_service_links is False
    assert not pod.host_network and not pod.host_pid and not pod.host_ipc
    context = pod.security_context
    assert context.run_as_non_root is True
    assert (context.run_as_user, context.run_as_group, context.fs_group) == (contract.TRAIN_UID,) * 3
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert [c.name for c in pod.containers] == ["train", "keeper"]
    for container in pod.containers:
        assert container.image == IMAGE_REF  # pinned by digest, never by tag
        security = container.security_context
        assert security.read_only_root_filesystem is True
        assert security.allow_privilege_escalation is False
        assert security.privileged is False
        assert security.capabilities.drop == ["ALL"] and not security.capabilities.add
        assert security.run_as_non_root is True and security.run_as_user == contract.TRAIN_UID
        assert container.resources.limits["memory"] and container.resources.limits["cpu"]
        assert not any(m.mount_path.startswith("/var/run") for m in container.volume_mounts)


def test_resources_and_environment(spec: RunSpec) -> None:
    train = job(spec).spec.template.spec.containers[0]
    assert parse_quantity(train.resources.limits["memory"]) == 256 * 1024**2
    assert parse_quantity(train.resources.limits["cpu"]) == parse_quantity("0.5")
    assert train.resources.requests == train.resources.limits
    assert {e.name: e.value for e in train.env} == dict(spec.environment)
    assert train.command is None  # the image's entrypoint
    with_entrypoint = RunSpec(**{**spec.__dict__, "entrypoint": ["python3", "other.py"]})
    assert job(with_entrypoint).spec.template.spec.containers[0].command == ["python3", "other.py"]


def test_volumes(spec: RunSpec) -> None:
    pod = job(spec, dataset_source={"persistentVolumeClaim": {"claimName": "ds", "readOnly": False}}).spec.template.spec
    volumes = {v.name: v for v in pod.volumes}
    mounts = {m.name: m for m in pod.containers[0].volume_mounts}
    assert volumes["data"].persistent_volume_claim.claim_name == "ds"
    assert volumes["data"].persistent_volume_claim.read_only is True  # forced, whatever the config said
    assert mounts["data"].mount_path == contract.DATA_DIR and mounts["data"].read_only is True
    assert mounts["input"].mount_path == contract.INPUT_DIR and mounts["input"].read_only is True
    assert mounts["params"].mount_path == contract.PARAMS_FILE and mounts["params"].read_only is True
    assert mounts["params"].sub_path == "params.json"
    assert volumes["params"].config_map.default_mode == 0o444
    assert mounts["output"].mount_path == contract.OUTPUT_DIR and not mounts["output"].read_only
    assert parse_quantity(volumes["output"].empty_dir.size_limit) == 8 * 1024**2
    assert volumes["output"].empty_dir.medium is None  # node disk, limited by sizeLimit
    assert mounts["tmp"].mount_path == contract.WORK_DIR
    assert volumes["tmp"].empty_dir.medium == "Memory"
    assert parse_quantity(volumes["tmp"].empty_dir.size_limit) == 32 * 1024**2
    keeper_mounts = pod.containers[1].volume_mounts
    assert [(m.name, m.read_only) for m in keeper_mounts] == [("output", True)]


def test_host_path_sources(spec: RunSpec) -> None:
    pod = job(spec, dataset_source=host_path_source("/srv/data/ds1"),
              input_source=host_path_source("/srv/inputs/x")).spec.template.spec
    volumes = {v.name: v for v in pod.volumes}
    assert volumes["data"].host_path.path == "/srv/data/ds1" and volumes["data"].host_path.type == "Directory"
    assert volumes["input"].host_path.path == "/srv/inputs/x"


def test_network_policy_denies_everything(spec: RunSpec) -> None:
    policy: V1NetworkPolicy = as_model(network_policy(spec, namespace="station"), "V1NetworkPolicy")
    assert policy.spec.pod_selector.match_labels == {LABEL: kubernetes_name(spec.name)}
    assert sorted(policy.spec.policy_types) == ["Egress", "Ingress"]
    assert policy.spec.ingress == [] and policy.spec.egress == []
    pod_labels = job(spec).spec.template.metadata.labels
    assert all(pod_labels.get(k) == v for k, v in policy.spec.pod_selector.match_labels.items())


def test_params_config_map(spec: RunSpec) -> None:
    config_map: V1ConfigMap = as_model(params_config_map(spec, namespace="station"), "V1ConfigMap")
    assert json.loads(config_map.data["params.json"]) == {"alpha": "0.5"}
    assert config_map.immutable is True
    volumes = {v.name: v for v in job(spec).spec.template.spec.volumes}
    assert volumes["params"].config_map.name == config_map.metadata.name


def test_image_must_be_pinned_by_digest(spec: RunSpec) -> None:
    for reference in ("registry.station.local/trains/probe:latest", "probe", DIGEST):
        with pytest.raises(ImageRefused, match="pinned by digest"):
            job_manifest(spec, namespace="station", image_ref=reference, dataset_source=pvc_source("ds"))


def test_names_must_be_kubernetes_names() -> None:
    assert kubernetes_name("Exec_1.r2") == "exec-1-r2"
    for bad in ("-x", "x" * 60, "a/b", ""):
        with pytest.raises(RuntimeFailure):
            kubernetes_name(bad)


def test_runtime_refuses_unmapped_images() -> None:
    """Construction and check_image need no cluster (run() would; it is untested here, see docs/runtimes.md)."""
    runtime = KubernetesRuntime(namespace="station", image_refs={DIGEST: IMAGE_REF}, api_client=ApiClient())
    runtime.check_image("probe", DIGEST)
    with pytest.raises(ImageRefused, match="No registry reference"):
        runtime.check_image("probe", "sha256:" + "0" * 64)


# ---------------------------------------------------------------------------- the station's factory

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: pht}}]
current-context: x
"""


def test_the_station_factory_builds_the_kubernetes_runtime_from_its_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PHT_STATION_RUNTIME=kubernetes`` used to raise TypeError (the factory called ``KubernetesRuntime()``
    without its required arguments); now the settings carry the namespace and image references."""
    from station.runtimes.factory import make_runtime
    from station.settings import StationSettings
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    refs = {"sha256:" + "a" * 64: "registry.hospital.example/trains/count@sha256:" + "b" * 64}
    (tmp_path / "refs.json").write_text(json.dumps(refs))
    (tmp_path / "data").mkdir()
    settings = StationSettings.from_env({
        "PHT_STATION_ID": "aachen", "PHT_CENTRAL_URL": "http://127.0.0.1:9", "PHT_STATION_TOKEN": "t",
        "PHT_STATION_DATASETS": f"d={tmp_path / 'data'}", "PHT_STATION_STATE_DIR": str(tmp_path / "state"),
        "PHT_OBJECTS_URL": f"file://{tmp_path / 'objects'}", "PHT_STATION_RUNTIME": "kubernetes",
        "PHT_K8S_NAMESPACE": "pht-trains", "PHT_K8S_IMAGE_REFS": str(tmp_path / "refs.json"),
        "KUBECONFIG": str(tmp_path / "kubeconfig")})
    runtime = make_runtime(settings.runtime, kubernetes_namespace=settings.kubernetes_namespace,
                           kubernetes_image_refs=settings.kubernetes_image_refs, kubeconfig=settings.kubeconfig)
    assert isinstance(runtime, KubernetesRuntime)
    assert runtime.namespace == "pht-trains" and runtime.image_refs == refs
    runtime.check_image("count", "sha256:" + "a" * 64)  # known ID: accepted without asking the cluster
    with pytest.raises(ImageRefused):
        runtime.check_image("count", "sha256:" + "c" * 64)


@pytest.mark.parametrize("namespace,refs,message", [
    (None, '{}', "needs a namespace (PHT_K8S_NAMESPACE)"),
    ("pht", None, "needs the image reference file (PHT_K8S_IMAGE_REFS)"),
    ("pht", "[1, 2]", "must be a JSON object of image ID to reference"),
    ("pht", "{not json", "is not JSON"),
])
def test_the_kubernetes_runtime_refuses_incomplete_settings_with_one_sentence(
        tmp_path: Path, namespace: str | None, refs: str | None, message: str) -> None:
    from station.runtimes.factory import make_runtime
    path = None
    if refs is not None:
        path = tmp_path / "refs.json"
        path.write_text(refs)
    with pytest.raises(RuntimeFailure, match=re.escape(message)):
        make_runtime("kubernetes", kubernetes_namespace=namespace, kubernetes_image_refs=path)


def test_without_a_cluster_configuration_the_runtime_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from station.runtimes.factory import make_runtime
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    (tmp_path / "refs.json").write_text("{}")
    (tmp_path / "empty").write_text("")
    with pytest.raises(RuntimeFailure, match="no Kubernetes cluster configuration"):
        make_runtime("kubernetes", kubernetes_namespace="pht", kubernetes_image_refs=tmp_path / "refs.json",
                     kubeconfig=tmp_path / "empty")

"""The service images (deploy/images/, built by scripts/build-service-images.sh): each runs locked down as the
Kubernetes manifests run it, answers its health check, and holds no compiler, package manager or pip.

The images are built once per session by the script (a no-op when they exist for this code). Every container
runs with a read-only root file system, all capabilities dropped, ``no-new-privileges``, the image's own user, its
declared state folder on a fresh named volume (the PersistentVolumeClaim of the manifests) and ``/tmp`` on a tmpfs
(their ``emptyDir``), with the commands and settings of ``deploy/kubernetes/base/`` where Docker can give them: a
central service on its embedded store, a station agent whose token the manifests' init container seeded, in the
Kubernetes runtime with an in-cluster configuration (no API server: it never needs one without work), and an MPU
pushing to that central service.
"""

from __future__ import annotations

import io
import re
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from docker.models.containers import Container
from docker.types import Mount
from polling import wait_for

from orchestrator.auth import issue_token
from orchestrator.principal import Role
from orchestrator.settings import DEMO_SECRET

pytestmark = pytest.mark.real_component("docker")

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "deploy" / "kubernetes" / "base"
#: the manifests' image names (the overlays map them to the registry) -> the images the script builds
IMAGES = {"pht-central-service": "central-service", "pht-station-agent": "station-agent", "pht-mpu": "mpu"}
UID = 10002
STATION = "station-a"  # the station id of base/station's settings
#: what no layer of a service image may hold (paths inside a layer, no leading slash)
FORBIDDEN = re.compile(r"^(usr/(local/)?s?bin/(apt|apt-get|dpkg|gcc[-0-9.]*|cc|c\+\+|g\+\+|make|pip[0-9.]*)"
                       r"|.*/site-packages/(pip|sklearn|scipy)/__init__\.py)$")
HEALTH_TIMEOUT_S = 90


def bearer(subject: str, role: Role, station: str | None = None) -> str:
    return issue_token(DEMO_SECRET, subject=subject, roles=[role], station=station, ttl_s=3600)


OPS = {"Authorization": "Bearer " + bearer("ops", Role.OPERATOR)}


# --------------------------------------------------------------------------- the images and the manifests


@pytest.fixture(scope="session")
def images(docker_client: docker.DockerClient) -> dict[str, docker.models.images.Image]:
    """name (central-service, station-agent, mpu) -> image, built by the script once per session."""
    done = subprocess.run(["bash", "scripts/build-service-images.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        pytest.fail(f"scripts/build-service-images.sh failed:\n{done.stderr[-3000:]}", pytrace=False)
    printed = dict(re.findall(r"^pht/([a-z-]+):\S+ (sha256:[0-9a-f]{64}) \d+ MB$", done.stdout, re.M))
    assert set(printed) == set(IMAGES.values()), done.stdout
    found = {name: docker_client.images.get(image_id) for name, image_id in printed.items()}
    for name, image in found.items():
        assert f"pht/{name}:" in " ".join(image.tags), f"{image.id} is not tagged pht/{name}"
    return found


def containers_of(manifest: str) -> dict[str, dict[str, Any]]:
    """image name -> its container spec, init containers included, with the pod's securityContext under "pod"."""
    found: dict[str, dict[str, Any]] = {}
    for obj in yaml.safe_load_all((BASE / manifest).read_text()):
        if obj and obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            for c in pod.get("initContainers", []) + pod["containers"]:
                found[c["name"]] = dict(c, pod=pod["securityContext"])
    return found


CENTRAL = containers_of("central/central-service.yaml")["central-service"]
AGENT_PODS = containers_of("station/agent.yaml")
AGENT, SEED_TOKEN = AGENT_PODS["agent"], AGENT_PODS["seed-station-token"]
MPU = containers_of("station/mpu.yaml")["mpu"]


def literals(kustomization: str, config_map: str) -> dict[str, str]:
    """The literals of one configMapGenerator entry."""
    spec = yaml.safe_load((BASE / kustomization).read_text())
    entry = next(g for g in spec["configMapGenerator"] if g["name"] == config_map)
    return dict(literal.split("=", 1) for literal in entry["literals"])


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize("container", [CENTRAL, AGENT, SEED_TOKEN, MPU], ids=lambda c: c["name"])
def test_each_image_fits_the_container_the_manifests_run_it_in(
        images: dict[str, Any], container: dict[str, Any]) -> None:
    image = images[IMAGES[container["image"]]]
    config = image.attrs["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert container["pod"]["runAsUser"] == container["pod"]["runAsGroup"] == UID
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    declared = set(config["Volumes"] or {})
    # every writable path of the pod is one the image declares; a service container mounts all of them
    assert writable <= declared
    if container["name"] != "seed-station-token":
        assert writable == declared
    ports = {f"{p['containerPort']}/tcp" for p in container.get("ports", [])}
    assert ports == set(config.get("ExposedPorts") or {})
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            assert container[probe]["httpGet"]["path"] == "/health"
            assert config["Healthcheck"]["Test"][-1] == IMAGES[container["image"]]


def test_the_central_image_leaves_out_the_kubernetes_client_and_the_station_images_share_every_layer(
        images: dict[str, Any]) -> None:
    layers = {name: image.attrs["RootFS"]["Layers"] for name, image in images.items()}
    assert layers["station-agent"] == layers["mpu"]
    assert layers["central-service"][:2] == layers["mpu"][:2]  # the system below the venv is the same
    sizes = {name: image.attrs["Size"] / 1e6 for name, image in images.items()}
    assert sizes["central-service"] < sizes["mpu"] - 100  # no Kubernetes client (about 140 MB)
    assert sizes["central-service"] < 420 and sizes["mpu"] < 540, sizes  # scikit-learn and scipy would add 150 MB


def forbidden_paths(image: docker.models.images.Image) -> set[str]:
    """Every path matching FORBIDDEN in any layer of the image (`docker save`, read as a stream)."""
    found: set[str] = set()
    stream = io.BufferedReader(_ChunkReader(image.save(named=False)), buffer_size=1 << 20)
    with tarfile.open(fileobj=stream, mode="r|") as saved:
        for member in saved:
            if member.name.endswith(".tar") or member.name.startswith("blobs/"):
                blob = saved.extractfile(member)
                if blob is None:
                    continue
                try:
                    with tarfile.open(fileobj=blob, mode="r|") as layer:
                        found |= {m.name.removeprefix("./") for m in layer if FORBIDDEN.match(m.name.removeprefix("./"))}
                except tarfile.ReadError:  # a blob that is not a layer (config, manifest)
                    continue
    return found


class _ChunkReader(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._rest = iter(chunks), b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        n = min(len(target), len(self._rest))
        target[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def test_no_layer_holds_a_compiler_a_package_manager_pip_or_the_demo_libraries(
        docker_client: docker.DockerClient, images: dict[str, Any]) -> None:
    # the scan finds them where they are: the base image has apt and dpkg
    assert {"usr/bin/apt-get", "usr/bin/dpkg"} <= forbidden_paths(docker_client.images.get("pht/python-base:bookworm"))
    for name in ("central-service", "mpu"):  # the agent's layers are the MPU's (test above)
        assert forbidden_paths(images[name]) == set(), name


# --------------------------------------------------------------------------- running them locked down


@dataclass
class Site:
    """What one test module started, removed at its end."""

    client: docker.DockerClient
    prefix: str = field(default_factory=lambda: f"pht-img-{secrets.token_hex(3)}")
    containers: list[Container] = field(default_factory=list)
    volumes: list[Any] = field(default_factory=list)
    network: Any = None

    def run(self, image: Any, command: list[str], name: str, *, state: str, env: dict[str, str],
            binds: dict[str, str] | None = None, detach: bool = True, **options: Any) -> Container:
        """``image`` locked down: read-only root, no capability, no new privileges, the image's user, ``state``
        on this site's named volume for ``name`` and /tmp on a tmpfs; ``binds`` host folder -> read-only path."""
        volume_name = f"{self.prefix}-{name}"
        if volume_name not in {v.name for v in self.volumes}:
            self.volumes.append(self.client.volumes.create(volume_name))
        mounts = [Mount(state, volume_name, type="volume")]
        mounts += [Mount(target, source, type="bind", read_only=True) for source, target in (binds or {}).items()]
        container = self.client.containers.create(
            image.id, command, name=f"{self.prefix}-{name}-{secrets.token_hex(2)}", environment=env,
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"], tmpfs={"/tmp": "size=64m"},
            mounts=mounts, network=self.network.name, **options)
        self.containers.append(container)
        container.start()
        return container

    def close(self) -> None:
        for c in self.containers:
            try:
                c.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        for v in self.volumes:
            v.remove(force=True)
        if self.network is not None:
            self.network.remove()


def logs(container: Container) -> str:
    return container.logs().decode(errors="replace")


def wait_healthy(container: Container) -> None:
    """Until Docker's own health check of the image says healthy (its first probe runs after its interval)."""
    def status() -> str | None:
        container.reload()
        if container.status != "running":
            raise AssertionError(f"{container.name} stopped: {logs(container)[-2000:]}")
        health = container.attrs["State"]["Health"]["Status"]
        if health == "unhealthy":
            raise AssertionError(f"{container.name} is unhealthy: {container.attrs['State']['Health']['Log'][-1]}")
        return health if health == "healthy" else None
    wait_for(f"{container.name} healthy", status, timeout_s=HEALTH_TIMEOUT_S, interval_s=0.5)


def sh(container: Container, script: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", script], demux=False)
    return code, out.decode(errors="replace")


@dataclass
class Running:
    site: Site
    central: Container
    central_url: str  # from this host
    agent: Container
    mpu: Container
    mpu_url: str  # from this host


@pytest.fixture(scope="module")
def running(docker_client: docker.DockerClient, images: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Running]:
    site = Site(docker_client)
    try:
        site.network = docker_client.networks.create(site.prefix)
        central = site.run(images["central-service"], CENTRAL["command"], "central",
                           state=plain_mount(CENTRAL, "store"),
                           env={**literals("central/kustomization.yaml", "pht-central-settings"),
                                "PHT_DEMO": "1", "PHT_JWT_SECRET": DEMO_SECRET},
                           ports={"8080/tcp": ("127.0.0.1", None)})
        wait_healthy(central)
        central_url = f"http://127.0.0.1:{published(central, '8080/tcp')}"
        key = Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        r = httpx.post(f"{central_url}/api/stations", headers=OPS, timeout=30,
                       json={"id": STATION, "title": STATION, "owner": "hospital", "public_keys": [public]})
        assert r.status_code == 201, r.text
        in_network = f"http://{central.name}:8080"

        files = tmp_path_factory.mktemp("service-images")
        files.chmod(0o755)

        def folder(name: str, content: dict[str, str | bytes]) -> str:
            d = files / name
            d.mkdir(mode=0o755)
            for f, data in content.items():
                (d / f).write_bytes(data.encode() if isinstance(data, str) else data)
                (d / f).chmod(0o644)
            return str(d)

        station_token = bearer(f"station-{STATION}", Role.STATION, STATION)
        ingest, metrics = secrets.token_hex(16), secrets.token_hex(16)
        mpu = site.run(images["mpu"], MPU["command"], "mpu", state=plain_mount(MPU, "outbox"),
                       env={**plain_env(MPU), "PHT_MPU_STATION": STATION, "PHT_MPU_CENTRAL_URL": in_network,
                            "PHT_MPU_INGEST_TOKEN": ingest, "PHT_MPU_METRICS_TOKEN": metrics},
                       binds={folder("mpu-key", {"station.pem": key.private_bytes(
                                  serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())}): "/etc/pht/mpu-key",
                              folder("mpu-token", {"token": station_token}): "/etc/pht/mpu-token"},
                       ports={"8181/tcp": ("127.0.0.1", None)})

        # the manifests' init container seeds the agent's token file on the state volume, then the agent runs
        token_folder = folder("station-token", {"token": station_token})
        seed = site.run(images["station-agent"], SEED_TOKEN["command"], "agent", state=plain_mount(AGENT, "state"),
                        env={}, binds={token_folder: "/etc/pht/station-token"})
        assert seed.wait(timeout=60)["StatusCode"] == 0, logs(seed)
        # in-cluster configuration as kubelet mounts it (a token and a CA file); no API server answers here
        service_account = folder("serviceaccount", {"token": "not-a-real-token", "ca.crt": self_signed(key),
                                                    "namespace": "pht-station"})
        image_refs = folder("k8s", {"image-refs.json": (BASE / "station" / "image-refs.json").read_text()})
        agent = site.run(images["station-agent"], AGENT["command"], "agent", state=plain_mount(AGENT, "state"),
                         env={**literals("station/kustomization.yaml", "pht-station-settings"), **plain_env(AGENT),
                              "PHT_CENTRAL_URL": in_network, "PHT_K8S_NAMESPACE": "pht-station",
                              "PHT_MPU_URL": f"http://{mpu.name}:8181", "PHT_MPU_INGEST_TOKEN": ingest,
                              "PHT_OBJECTS_URL": "file:///tmp/objects",
                              "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"},
                         binds={image_refs: "/etc/pht/k8s", folder("dataset", {}): "/var/lib/pht/dataset",
                                service_account: "/var/run/secrets/kubernetes.io/serviceaccount"})
        wait_healthy(mpu)
        wait_healthy(agent)
        yield Running(site, central, central_url, agent, mpu, f"http://127.0.0.1:{published(mpu, '8181/tcp')}")
    finally:
        site.close()


def self_signed(key: Ed25519PrivateKey) -> bytes:
    """A CA certificate (PEM) for the in-cluster configuration, which refuses an empty file."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.now(timezone.utc)
    cert = x509.CertificateBuilder(name, name, key.public_key(), x509.random_serial_number(), now,
                                   now + timedelta(days=1)).sign(key, None)
    return cert.public_bytes(serialization.Encoding.PEM)


def plain_mount(container: dict[str, Any], volume: str) -> str:
    """The mount path of the container's volume ``volume``."""
    return next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == volume)


def published(container: Container, port: str) -> str:
    container.reload()
    return str(container.ports[port][0]["HostPort"])


def test_the_central_service_answers_health_and_its_api_with_a_token(running: Running) -> None:
    assert httpx.get(f"{running.central_url}/health", timeout=10).json() == {"status": "ok"}
    assert httpx.get(f"{running.central_url}/api/stations", timeout=10).status_code == 401
    r = httpx.get(f"{running.central_url}/api/stations", headers=OPS, timeout=10)
    assert r.status_code == 200
    assert STATION in r.text


def test_the_mpu_answers_health_and_keeps_its_secret_on_its_volume(running: Running) -> None:
    assert httpx.get(f"{running.mpu_url}/health", timeout=10).json() == {"status": "ok"}
    code, out = sh(running.mpu, "stat -c '%a %u %n' /var/lib/pht/mpu/station-secret.key /var/lib/pht/mpu/outbox.sqlite3")
    assert code == 0, out
    assert out.splitlines()[0] == f"600 {UID} /var/lib/pht/mpu/station-secret.key"


def test_the_agent_holds_its_stations_lease_from_its_container(running: Running) -> None:
    # the lease names the agent's process and host: pid 1 in this container
    r = httpx.get(f"{running.central_url}/api/stations/{STATION}/lease", headers=OPS, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["holder"].startswith(f"pid 1 on {running.agent.id[:12]} "), r.json()
    assert f"station {STATION} polling http://" in logs(running.agent)


@pytest.mark.parametrize("which", ["central", "agent", "mpu"])
def test_each_runs_as_uid_10002_without_capabilities_on_a_read_only_root(running: Running, which: str) -> None:
    container: Container = getattr(running, which)
    status = dict(line.split(":\t", 1) for line in sh(container, "cat /proc/1/status")[1].splitlines() if ":\t" in line)
    assert status["Uid"].split() == [str(UID)] * 4 and status["Gid"].split() == [str(UID)] * 4
    assert int(status["CapEff"], 16) == 0 and status["NoNewPrivs"] == "1"
    state = next(m["Destination"] for m in container.attrs["Mounts"] if m["Type"] == "volume")
    for path in ("/opt/pht/x", "/etc/x", "/var/lib/pht/x", "/x"):
        code, out = sh(container, f"touch {path}")
        assert code != 0 and "Read-only file system" in out, (path, out)
    for path in (f"{state}/probe", "/tmp/probe"):
        code, out = sh(container, f"touch {path} && rm {path}")
        assert code == 0, (path, out)


@pytest.mark.parametrize("which", ["central", "agent", "mpu"])
def test_no_compiler_package_manager_or_pip_runs_in_them(running: Running, which: str) -> None:
    check = ("import importlib.util, shutil; "
             "print([t for t in ('gcc', 'cc', 'c++', 'make', 'pip', 'pip3', 'apt-get', 'apt', 'dpkg') if shutil.which(t)],"
             " [m for m in ('pip', 'sklearn', 'scipy') if importlib.util.find_spec(m)])")
    code, out = getattr(running, which).exec_run(["python", "-c", check])
    assert (code, out.decode().strip()) == (0, "[] []")


def test_an_agent_whose_central_service_is_unreachable_keeps_retrying_and_its_health_check_says_why(
        running: Running, images: dict[str, Any], tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    env = {"PHT_STATION_ID": STATION, "PHT_CENTRAL_URL": "http://127.0.0.1:9", "PHT_STATION_TOKEN": "x.y.z",
           "PHT_STATION_DATASETS": f"{STATION}-data=/var/lib/pht/dataset", "PHT_OBJECTS_URL": "file:///tmp/objects",
           "PHT_STATION_RUNTIME": "process"}
    agent = running.site.run(images["station-agent"], AGENT["command"], "lonely", state="/var/lib/pht/station",
                             env=env, binds={str(tmp_path): "/var/lib/pht/dataset"})
    wait_for("the agent's retries", lambda: "poll failed, retrying: cannot reach the central service at "
             "http://127.0.0.1:9" in logs(agent), timeout_s=30)
    agent.reload()
    assert agent.status == "running"
    code, out = agent.exec_run(images["station-agent"].attrs["Config"]["Healthcheck"]["Test"][1:])
    assert code == 1
    assert out.decode().startswith("unhealthy: the central service http://127.0.0.1:9 does not answer"), out
    # polled once (`--once`, for cron), it exits 1 with one sentence instead
    once = running.site.run(images["station-agent"], [*AGENT["command"], "--once"], "lonely",
                            state="/var/lib/pht/station", env=env, binds={str(tmp_path): "/var/lib/pht/dataset"})
    assert once.wait(timeout=60)["StatusCode"] == 1
    last = logs(once).strip().splitlines()[-1]
    assert "cannot reach the central service at http://127.0.0.1:9" in last, logs(once)


def test_the_image_labels_name_the_version_and_a_commit_of_this_checkout(images: dict[str, Any]) -> None:
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version is not None
    for name, image in images.items():
        labels = image.attrs["Config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == version.group(1)
        assert f"pht/{name}:{version.group(1)}" in image.tags
        # the commit the code came from (others may have committed since the session built the images)
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", labels["org.opencontainers.image.revision"],
                                   "HEAD"], cwd=ROOT, capture_output=True, check=False)
        assert ancestor.returncode == 0, labels

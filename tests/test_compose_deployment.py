"""The multi-host deployment (deploy/compose/docker-compose.yml) brought up for real with Debian's docker-compose.

An Oxigraph server container is the central store, the central service runs on it (PHT_STORE_QUERY_URL), an S3
server holds released outputs, and three stations (agent + MPU each, on their own network) hold the breast cancer
data split as ``pht setup`` splits it, plus an aggregator station without patients. The demo's three trains run
through it (cohort count, mean/variance, federated logistic regression): the researcher pushes their images to a
real registry (Debian's docker-registry, htpasswd), the station agents have them pulled by digest with their own
read-only accounts and run them as containers on the host's engine, and the results must match the pooled
computation;
the central site's containers must never see a data file (their mounts, and every file they can read). Everything
is torn down at the end (``docker-compose down -v``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import numpy as np
import pytest
from conftest import require_component
from rich.console import Console
from servers import RegistryServer, free_port, registry_server
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from client import CentralClient
from client.key_claims import keys_in
from local_platform import read_pooled, setup_stations
from orchestrator import STATION_TOKEN_TTL_S, Role, issue_token
from pht_cli.train_commands import fetch_result, watch_trains
from station import build_train_image
from station.image_registry import DigestReference, push_image
from trust import PartyKeys

pytestmark = pytest.mark.real_component("docker")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
HOSPITALS = ("aachen", "leipzig", "cologne")
STATIONS = (*HOSPITALS, "aggregator")  # the aggregator combines a federated round; it holds no patients
CENTRAL_SITE = ("store", "s3", "central")
UID = 10002  # the service images' user: it must read the station folders pht setup wrote
HEALTH_TIMEOUT_S = 180
COUNT = {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"}
COLUMNS = ("mean_radius", "mean_texture", "worst_area")
FEDAVG = {"TARGET": "benign", "LOCAL_EPOCHS": "20", "LEARNING_RATE": "0.5"}
FEDAVG_ROUNDS = 6
#: walks every file a container can read (volumes and tmpfs included, /proc and /sys not) for any of the needles
SEARCH = """
import os, sys
needles = [n.encode() for n in sys.argv[1:]]
hits = []
for top in os.listdir("/"):
    if top in ("proc", "sys", "dev"):
        continue
    for d, _, files in os.walk("/" + top):
        for f in files:
            p = os.path.join(d, f)
            try:
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                data = open(p, "rb").read()
            except OSError:
                continue
            if any(n in data for n in needles):
                hits.append(p)
print("\\n".join(hits))
"""


@dataclass
class Deployment:
    project: str
    env: dict[str, str]
    url: str               # the central service, from this host
    secret: str            # its token secret
    stations_dir: Path     # what pht setup wrote, mounted into the stations
    docker: docker.DockerClient

    def compose(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run(["docker-compose", "-p", self.project, "-f", str(COMPOSE), *args], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return str(r.stdout)

    def container(self, service: str) -> Any:
        found = self.docker.containers.list(all=True, filters={"label": [
            f"com.docker.compose.project={self.project}", f"com.docker.compose.service={service}"]})
        assert len(found) == 1, f"{service}: {len(found)} containers"
        return found[0]

    def wait_healthy(self, services: tuple[str, ...]) -> None:
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        waiting = list(services)
        while waiting and time.monotonic() < deadline:
            c = self.container(waiting[0])
            c.reload()
            status = c.attrs["State"].get("Health", {}).get("Status")
            assert c.status == "running", f"{waiting[0]} is {c.status}:\n{c.logs(tail=40).decode()}"
            if status == "healthy":
                waiting.pop(0)
            else:
                time.sleep(1)
        assert not waiting, f"{waiting[0]} not healthy:\n{self.container(waiting[0]).logs(tail=40).decode()}"

    def token(self, subject: str, role: Role) -> str:
        ttl = STATION_TOKEN_TTL_S if role is Role.STATION else 3600
        return issue_token(self.secret, subject=subject, roles=[role], ttl_s=ttl)


def build_images() -> None:
    env = {**os.environ, "PHT_PYTHON": sys.executable, "VIRTUAL_ENV": sys.prefix}
    r = subprocess.run(["bash", str(ROOT / "deploy" / "compose" / "build-images.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def registry() -> Iterator[RegistryServer]:
    """A registry of our own: one read-only account per station of this deployment."""
    require_component("registry")
    with registry_server(stations={s: secrets.token_urlsafe(12) for s in STATIONS}) as server:
        yield server


@pytest.fixture(scope="module")
def deployment(docker_client: docker.DockerClient, registry: RegistryServer,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (scripts/install-services.sh installs it)")
    build_images()
    work = tmp_path_factory.mktemp("compose")
    work.chmod(0o755)
    stations_dir = work / "stations"
    secret = secrets.token_hex(32)
    central_port = free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PHT_JWT_SECRET": secret,
           "PHT_STATIONS_DIR": str(stations_dir), "PHT_CENTRAL_PORT": str(central_port),
           "PHT_S3_PORT": str(free_port()), "PHT_STATION_POLL_INTERVAL": "0.3",
           "PHT_DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
           **{f"PHT_{s.upper()}_INGEST_TOKEN": "not-yet" for s in STATIONS}}
    d = Deployment(f"pht-compose-{secrets.token_hex(3)}", env, f"http://127.0.0.1:{central_port}", secret,
                   stations_dir, docker_client)
    try:
        d.compose("up", "-d", *CENTRAL_SITE)
        d.wait_healthy(CENTRAL_SITE)
        # the operator registers the stations at the central service, as `pht setup` does; then each station's
        # admin gets its folder (here: the same machine) readable by the services' user
        with CentralClient(d.url, d.token("ops", Role.OPERATOR)) as ops:
            tokens = {s: issue_token(secret, subject=f"station-{s}", roles=[Role.STATION], station=s,
                                     ttl_s=STATION_TOKEN_TTL_S) for s in STATIONS}
            homes = setup_stations(ops, stations_dir, HOSPITALS, objects_url="file:///unused", automatic=True,
                                   station_tokens=tokens)
            # the aggregator is set up the same way, then its share of the patients is taken away again
            homes |= setup_stations(ops, stations_dir, ["aggregator"], objects_url="file:///unused", automatic=True,
                                    station_tokens=tokens)
            for f in (stations_dir / "aggregator" / "data").iterdir():
                f.unlink()
        for sid, home in homes.items():
            (home / "token").mkdir()
            (home / "state").mkdir()
            (home / "registry").mkdir()
            (home / "registry" / "config.json").write_text(json.dumps({"auths": {registry.pull_host: {
                "username": sid, "password": registry.stations[sid]}}}))
            (home / "station.token").rename(home / "token" / "station.token")
            for line in (home / "station.env").read_text().splitlines():
                if line.startswith("export PHT_MPU_INGEST_TOKEN="):
                    env[f"PHT_{sid.upper()}_INGEST_TOKEN"] = line.split("=", 1)[1].strip("'")
            for p in [home, *home.rglob("*")]:
                os.chown(p, UID, UID)
        stations = tuple(f"{s}-{part}" for s in STATIONS for part in ("mpu", "agent"))
        d.compose("up", "-d")
        d.wait_healthy(stations)
        yield d
    finally:
        try:
            d.compose("down", "-v", "--remove-orphans", "--timeout", "5")
        finally:
            shutil.rmtree(work, ignore_errors=True)


def push(deployment: Deployment, registry: RegistryServer, name: str, work: Path) -> tuple[str, str]:
    """Build trains/<name>, push it as the researcher, remove it from the engine (so a station must pull it);
    returns the digest reference stations pull from the read-only endpoint and the image ID they approve.
    A label of this run makes the image ID unique to it: no other image (other tests' builds) keeps it present."""
    folder = work / name
    shutil.copytree(ROOT / "trains" / name, folder)
    with (folder / "Dockerfile").open("a") as f:
        f.write(f"\nLABEL org.pht-kg.test-run={deployment.project}\n")
    tag = f"pht-compose-test/{name}:{deployment.project}"
    build_train_image(folder, tag, deployment.docker)
    pushed = push_image(deployment.docker, tag, f"{registry.push_host}/{deployment.project}/{name}:demo",
                        registry.researcher_auth())
    for t in (tag, f"{registry.push_host}/{deployment.project}/{name}:demo"):
        deployment.docker.images.remove(t)
    with pytest.raises(docker.errors.ImageNotFound):
        deployment.docker.images.get(pushed.image_id)
    pull = DigestReference(registry.pull_host, pushed.reference.repository, pushed.reference.digest)
    return str(pull), pushed.image_id


def test_the_demos_trains_run_through_it_from_the_registry_and_match_the_pooled_results(
        deployment: Deployment, registry: RegistryServer, tmp_path: Path) -> None:
    token = deployment.token("alice", Role.RESEARCHER)
    keys, _ = keys_in(tmp_path / "alice-keys")
    with CentralClient(deployment.url, token) as c:
        c.register_keys(keys)
    images = {name: push(deployment, registry, name, tmp_path)
              for name in ("cohort-count", "mean-variance", "fedavg-logreg")}
    try:
        run_the_demo_trains(deployment, images, token, keys, tmp_path)
    finally:  # what the stations pulled (unique to this run, see push)
        for _, image_id in images.values():
            with contextlib.suppress(docker.errors.ImageNotFound):
                deployment.docker.images.remove(image_id, force=True)


def run_the_demo_trains(deployment: Deployment, images: dict[str, tuple[str, str]], token: str, keys: PartyKeys,
                        tmp_path: Path) -> None:
    with CentralClient(deployment.url, token, keys=keys) as alice:
        for did, name, params in (("cohort-count", "cohort-count", list(COUNT)),
                                  ("mean-variance", "mean-variance", ["COLUMNS"])):
            alice.register_definition({"id": did, "title": did, "image_name": images[name][0],
                                       "image_digest": images[name][1],
                                       "route": list(HOSPITALS), "parameters": [{"name": p} for p in params],
                                       "mode": "incremental"})
        alice.register_definition({"id": "fedavg", "title": "fedavg", "image_name": images["fedavg-logreg"][0],
                                   "image_digest": images["fedavg-logreg"][1],
                                   "route": list(HOSPITALS), "parameters": [{"name": p} for p in FEDAVG],
                                   "mode": "federated", "rounds": FEDAVG_ROUNDS, "aggregator": "aggregator"})
        trains = {"count": alice.submit("cohort-count", COUNT),
                  "mean": alice.submit("mean-variance", {"COLUMNS": ",".join(COLUMNS)}),
                  "fedavg": alice.submit("fedavg", FEDAVG)}
        final = watch_trains(alice, trains, Console(file=io.StringIO()), timeout_s=360, interval_s=0.5)
        for name, tid in trains.items():
            assert final[tid]["state"] == "finished", (name, final[tid], [
                e for e in alice.events(tid) if e["reason"]])
        x, y, names = read_pooled([deployment.stations_dir / s / "data" for s in HOSPITALS])
        fetch_result(alice, trains["count"], tmp_path / "count")
        got = json.loads((tmp_path / "count" / "result.json").read_text())
        assert got["count"] == int((x[:, names.index(COUNT["COLUMN"])] > float(COUNT["VALUE"])).sum())
        fetch_result(alice, trains["mean"], tmp_path / "mean")
        columns = json.loads((tmp_path / "mean" / "result.json").read_text())["columns"]
        for column in COLUMNS:
            pooled = x[:, names.index(column)]
            assert columns[column]["mean"] == pytest.approx(pooled.mean(), rel=1e-9)
            assert columns[column]["variance"] == pytest.approx(pooled.var(), rel=1e-9)
        fetch_result(alice, trains["fedavg"], tmp_path / "fedavg")
        model = json.loads((tmp_path / "fedavg" / "model.json").read_text())
        assert model["round"] == FEDAVG_ROUNDS
        z = (x - np.array(model["mean"])) / np.array(model["std"])
        accuracy = float((((z @ np.array(model["weights"]) + model["bias"]) > 0).astype(int) == y).mean())
        # the pooled computation: scikit-learn's logistic regression on all patients together, as pht demo shows
        zc = StandardScaler().fit_transform(x)
        pooled_accuracy = float(LogisticRegression(max_iter=5000).fit(zc, y).score(zc, y))
        assert accuracy >= pooled_accuracy - 0.03, (accuracy, pooled_accuracy)
    # the stations had the engine pull exactly the approved digests from the read-only endpoint
    for reference, image_id in images.values():
        assert reference in deployment.docker.images.get(image_id).attrs["RepoDigests"]


def data_needles(deployment: Deployment) -> list[str]:
    """A patient row of each station (a whole CSV line: nothing else holds those bytes)."""
    return [(deployment.stations_dir / s / "data" / "patients.csv").read_text().splitlines()[3] for s in HOSPITALS]


def search(container: Any, needles: list[str]) -> list[str]:
    r = container.exec_run(["python3", "-c", SEARCH, *needles])  # as the container's own user
    assert r.exit_code == 0, r.output.decode()
    return [line for line in r.output.decode().splitlines() if line]


def test_the_central_sites_containers_never_see_a_data_file(deployment: Deployment) -> None:
    needles = data_needles(deployment)
    for service in CENTRAL_SITE:
        mounts = deployment.container(service).attrs["Mounts"]
        assert not [m for m in mounts if m["Type"] == "bind"], (service, mounts)
        assert search(deployment.container(service), needles) == [], service
    # the search finds a data file where there is one: each agent sees its own station's rows and no other's
    for i, sid in enumerate(HOSPITALS):
        hits = search(deployment.container(f"{sid}-agent"), needles)
        assert f"{deployment.stations_dir}/{sid}/data/patients.csv" in hits, (sid, hits)
        others = [n for j, n in enumerate(needles) if j != i]
        assert search(deployment.container(f"{sid}-agent"), others) == [], sid
        assert search(deployment.container(f"{sid}-mpu"), needles) == [], sid
    # the aggregator combined the federated rounds (when the trains ran first) and holds no patient row
    for part in ("agent", "mpu"):
        assert search(deployment.container(f"aggregator-{part}"), needles) == []


def test_each_station_is_on_its_own_network_and_the_store_on_none_of_theirs(deployment: Deployment) -> None:
    def networks(service: str) -> set[str]:
        found = deployment.container(service).attrs["NetworkSettings"]["Networks"]
        return {name.removeprefix(deployment.project + "_") for name in found}

    assert networks("store") == {"central-store"}
    assert networks("central") == {"central-store", "wan"}
    for sid in STATIONS:
        assert networks(f"{sid}-agent") == {"wan", f"station-{sid}"}
        assert networks(f"{sid}-mpu") == {"wan", f"station-{sid}"}
    internal = {n.name.removeprefix(deployment.project + "_"): n.attrs["Internal"]
                for n in deployment.docker.networks.list(filters={"label": f"com.docker.compose.project="
                                                                          f"{deployment.project}"})}
    # the data-space provider's network (profile "dataspace", not started here) may be created with the others
    assert internal.pop("dataspace-provider", True) is True
    assert internal == {"central-store": True, "wan": False, **{f"station-{s}": True for s in STATIONS}}


def test_every_container_runs_locked_down(deployment: Deployment) -> None:
    for service in (*CENTRAL_SITE, *(f"{s}-{p}" for s in STATIONS for p in ("agent", "mpu"))):
        host = deployment.container(service).attrs["HostConfig"]
        config = deployment.container(service).attrs["Config"]
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert config["User"] in ("10002:10002", "10003:10003"), service
        assert config.get("Healthcheck", {}).get("Test"), service

"""``LocalPlatform``: start the central service and one agent per station, talk to them, stop them."""

import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from client import CentralClient
from client.central import RELEASE_GRACE_S
from client.key_claims import keys_in
from dataspace import ConsumerSettings
from graph_store import EmbeddedStore
from orchestrator import DEMO_SECRET, STATION_TOKEN_TTL_S, Role, Settings, create_app, issue_token
from station import (
    CONTAINER_ENGINES,
    Limits,
    LocalObjectStore,
    Runtime,
    StationAgent,
    StationPolicy,
    StationSettings,
    build_train_image,
    fetch_opened,
    folder_digest,
    make_runtime,
)
from station_mpu import DEFAULT_POLICY, MpuSettings, create_mpu_app
from trust import SIGNING_KEY_FILE, PartyKeys, load_keys

from .setup import enroll_station

log = logging.getLogger("pht.local")

BASE_IMAGE = "pht/python-base:bookworm"
#: the demo's stations decide by themselves: approve every train, release outputs that pass the checks
AUTOMATIC = StationPolicy(requires_approval=False, requires_output_review=False, max_output_bytes=1_000_000,
                          allowed_file_types=frozenset({"json", "csv", "txt"}), min_cell_count=3,
                          source="demo policy: automatic approval and release after the checks")


@dataclass(frozen=True)
class StationSpec:
    id: str
    dataset: Path
    policy: StationPolicy = AUTOMATIC
    dataspace: ConsumerSettings | None = None  #: the station's data-space identity (data-space trains)
    description: Path | None = None  #: the admin's description file (``PHT_STATION_DESCRIPTION``); None: from the CSV


@dataclass(frozen=True)
class TrainImage:
    """What a definition names: the image (a tag for Docker, a folder for the process runtime) and its digest."""

    name: str
    digest: str


def detect_runtime() -> tuple[str, str | None]:
    """``("docker", None)`` when a Docker engine answers and the base image exists, else ``("process", why)``."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        # checked first: docker-py leaks the socket of a failed unix connect
        return "process", f"no Docker engine socket at {host}; trains run as local processes instead"
    try:
        import docker
        client = docker.from_env(timeout=5, version="1.41")  # a fixed version: no request in the constructor
        try:
            client.ping()
            try:
                client.images.get(BASE_IMAGE)
            except docker.errors.ImageNotFound:
                return "process", (f"the base image {BASE_IMAGE} is missing (scripts/build-base-image.sh builds it "
                                   "in about 90 s); trains run as local processes instead")
        finally:
            client.close()
    except Exception as e:  # docker missing, engine down: both mean "use the process runtime"
        reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        return "process", f"no Docker engine answers here ({reason}); trains run as local processes instead"
    return "docker", None


@dataclass(frozen=True)
class Served:
    """An ASGI app served by uvicorn in a thread (see :func:`serve_in_thread`)."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout_s: float = 15) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=timeout_s)


def serve_in_thread(app: Any, name: str, *, startup_timeout_s: float = 30) -> Served:
    """Serve an ASGI app with uvicorn in a daemon thread on a free loopback port, once it answers ``/health``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if server.started and server.servers:
            url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
            try:
                httpx.get(url + "/health", timeout=2)
                return Served(url, server, thread)
            except httpx.HTTPError:
                pass
        time.sleep(0.05)
    server.should_exit = True
    raise RuntimeError(f"{name} did not start within {startup_timeout_s:g} s")


@dataclass
class LocalPlatform:
    """The central service (uvicorn on 127.0.0.1, embedded store under ``workdir``) plus, per station, an
    agent polling it from a thread and a metadata processing unit (its own uvicorn, pushing signed batches
    to the central graph); the stations share one local object store. Use as a context manager."""

    workdir: Path
    stations: Sequence[StationSpec]
    runtime: str = "docker"
    poll_interval_s: float = 0.2
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=120))
    with_mpu: bool = True          #: a metadata processing unit per station, pushing to the central graph
    sample_interval_s: float = 1.0  #: how often the MPUs sample running train containers
    mpu_policy: Path = DEFAULT_POLICY  #: the MPUs' filter policy (what leaves the stations, their metrics too)
    #: what a scraper sends to the MPUs' /metrics (Authorization: Bearer ...)
    mpu_metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    url: str = ""
    mpu_urls: dict[str, str] = field(default_factory=dict)
    store: EmbeddedStore | None = None
    _servers: list[Served] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)
    _agents: list[StationAgent] = field(default_factory=list)
    _clients: list[CentralClient] = field(default_factory=list)

    def __enter__(self) -> "LocalPlatform":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def objects(self) -> LocalObjectStore:
        return LocalObjectStore(self.workdir / "objects")

    # -- start / stop ---------------------------------------------------------------------------------------

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.store = EmbeddedStore(self.workdir / "store")
        settings = Settings(jwt_secret=DEMO_SECRET, demo=True,  # the service reads results from the shared folder
                            results_store_url=f"file://{self.workdir.resolve() / 'objects'}")
        self.url = self._serve(create_app(settings, store=self.store), "central")
        ops = self.client("operator", Role.OPERATOR)
        for spec in self.stations:
            enroll_station(ops, spec.id, self.workdir / "keys" / spec.id, runtime=self.runtime)
        for spec in self.stations:
            if self.with_mpu:
                self.mpu_urls[spec.id] = self._serve(create_mpu_app(MpuSettings(
                    station_id=spec.id, data_dir=self.workdir / "mpu" / spec.id, central_url=self.url,
                    private_key_path=self.workdir / "keys" / spec.id / SIGNING_KEY_FILE,
                    token=self.token(f"station-{spec.id}", Role.STATION, spec.id),
                    policy_path=self.mpu_policy, metrics_token=self.mpu_metrics_token,
                    # only containers have stats to sample; the process runtime's trains have none
                    sample_interval_s=self.sample_interval_s if self.runtime in CONTAINER_ENGINES else 0)),
                    f"mpu-{spec.id}")
            self._start_agent(spec, make_runtime(self.runtime))

    def _serve(self, app: Any, name: str) -> str:
        served = serve_in_thread(app, name)
        self._servers.append(served)
        return served.url

    def _start_agent(self, spec: StationSpec, runtime: Runtime) -> None:
        settings = StationSettings(station_id=spec.id, central_url=self.url,
                                   token=self.token(f"station-{spec.id}", Role.STATION, spec.id),
                                   datasets={f"{spec.id}-data": spec.dataset},
                                   state_dir=self.workdir / "stations" / spec.id,
                                   objects_url=f"file://{self.workdir / 'objects'}",
                                   runtime=self.runtime, poll_interval_s=self.poll_interval_s, limits=self.limits,
                                   mpu_url=self.mpu_urls.get(spec.id), keys_dir=self.workdir / "keys" / spec.id,
                                   dataspace=spec.dataspace, description_file=spec.description)
        agent = StationAgent(settings, runtime=runtime, objects=self.objects, policy_loader=lambda: spec.policy)
        thread = threading.Thread(target=agent.run, name=f"station-{spec.id}", daemon=True)
        thread.start()
        self._agents.append(agent)
        self._threads.append(thread)

    def stop_station(self, sid: str) -> None:
        """Stop one station's agent (it "goes away"); its executions stay where they are."""
        for agent in self._agents:
            if agent.settings.station_id == sid:
                agent.stop()

    def stop(self) -> None:
        for agent in self._agents:
            agent.stop()
        for thread in self._threads:
            thread.join(timeout=30)
        for agent in self._agents:
            agent.close()
        for client in self._clients:
            client.close()
        for served in reversed(self._servers):  # MPUs first (they flush to the central service), then it
            served.stop()
        if self.store is not None:
            self.store.close()
        self._agents, self._threads, self._clients, self._servers = [], [], [], []

    # -- acting on it ---------------------------------------------------------------------------------------

    def token(self, subject: str, role: Role, station: str | None = None) -> str:
        # station tokens are short-lived (the verifier refuses longer ones); others last the day
        ttl = STATION_TOKEN_TTL_S if role is Role.STATION else 24 * 3600
        return issue_token(DEMO_SECRET, subject=subject, roles=[role], station=station, ttl_s=ttl)

    def client(self, subject: str = "alice", role: Role = Role.RESEARCHER, station: str | None = None) -> CentralClient:
        """A client acting as ``subject``. A researcher's holds that researcher's keys (created and registered on
        first use, as ``pht keys init`` does, under ``workdir/keys/researchers/``), so the trains it submits are
        signed and the results encrypted to it open."""
        token = self.token(subject, role, station)
        keys = self.researcher_keys(subject, token) if role is Role.RESEARCHER else None
        client = CentralClient(self.url, token, keys=keys)
        self._clients.append(client)
        return client

    def researcher_keys(self, subject: str, token: str | None = None) -> PartyKeys:
        """``subject``'s keys, created and registered at the central service the first time they are asked for."""
        keys, new = keys_in(self.workdir / "keys" / "researchers" / subject)
        if new:
            with CentralClient(self.url, token or self.token(subject, Role.RESEARCHER)) as client:
                client.register_keys(keys)
        return keys

    def build_image(self, folder: Path, tag: str) -> TrainImage:
        """Build a train folder into an image (Docker), or take the folder itself (process runtime)."""
        if self.runtime == "process":
            return TrainImage(str(folder.resolve()), folder_digest(folder))
        return TrainImage(tag, build_train_image(folder, tag))

    def fetch(self, sha256: str, target: Path, *, reader: str = "alice") -> Path:
        """Download an output by digest (verified), open it with its reader's key and unpack it safely into ``target``
        (replaced). ``reader``: a station of this platform (its keys under ``workdir/keys/{station}``: an
        intermediate output is encrypted to the next station) or a researcher (``workdir/keys/researchers/...``:
        the final result is encrypted to its requester)."""
        shutil.rmtree(target, ignore_errors=True)
        deadline = time.monotonic() + RELEASE_GRACE_S
        while not self.objects.exists(sha256) and time.monotonic() < deadline:
            time.sleep(0.05)  # released, not yet promoted: see RELEASE_GRACE_S
        stations = {spec.id for spec in self.stations}
        folder = self.workdir / "keys" / (reader if reader in stations else f"researchers/{reader}")
        return fetch_opened(self.objects, sha256, target, load_keys(folder).encryption, max_bytes=100 * 1024**2,
                            max_files=10_000)

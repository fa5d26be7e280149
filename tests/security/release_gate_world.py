"""A central service (HTTP, in a thread) and station agents with a scripted runtime, for the release gate and
approval binding tests: no container engine, so each test plays exactly the train it needs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from api_helpers import OPS, admin, signed, token
from central_thread import Central, central_service

from client import CentralClient
from client.key_claims import keys_in
from graph_store import ONTOLOGY_GRAPH, SHAPES_GRAPH
from orchestrator.principal import Role
from station.agent import StationAgent
from station.events import EventSink
from station.objects import LocalObjectStore
from station.policy import StationPolicy
from station.runtimes.base import RunResult, RunSpec
from station.settings import StationSettings
from trust import encode_multikey

DIGEST = "sha256:" + "5e" * 32
OTHER_DIGEST = "sha256:" + "0d" * 32
SECRET_FILE = "cohort-of-mrs-x.json"  #: a train-chosen file name: it must not reach the central service


def writes(files: dict[str, str], exit_code: int = 0) -> Callable[[Path], int]:
    """A train that writes ``files`` into its output folder and exits with ``exit_code``."""
    def train(output: Path) -> int:
        for name, text in files.items():
            (output / name).write_text(text)
        return exit_code
    return train


class ScriptedRuntime:
    """A runtime that runs nothing: it plays the train given, and records every run it was asked for."""

    name = "scripted"

    def __init__(self, train: Callable[[Path], int]) -> None:
        self.train = train
        self.runs: list[tuple[str, list[str] | None]] = []

    def check_image(self, image: str, digest: str) -> None:
        pass

    def discard(self, name: str) -> None:
        pass

    def close(self) -> None:
        pass

    def run(self, spec: RunSpec) -> RunResult:
        self.runs.append((spec.image_digest, spec.entrypoint))
        code = self.train(spec.output_dir)
        if code != 0:
            return RunResult(exit_code=code, failure=f"The train exited with code {code}.",
                             logs=b"Traceback: the count was 3", duration_s=0.1)
        return RunResult(exit_code=0, failure=None, logs=b"done", duration_s=0.1)


class RecordingEvents(EventSink):
    """The events the agent would post to its MPU, kept."""

    def __init__(self, station_id: str) -> None:
        super().__init__(None, station_id)
        self.posted: list[dict[str, Any]] = []

    def _post(self, event: dict[str, Any]) -> None:
        self.posted.append(event)


@dataclass
class World:
    central: Central
    tmp: Path
    objects: LocalObjectStore
    http: httpx.Client
    clients: list[Any] = field(default_factory=list)

    def agent(self, sid: str, policy: StationPolicy, runtime: ScriptedRuntime) -> StationAgent:
        """A new agent of station ``sid`` (its earlier one closed first, releasing the station's lease)."""
        for earlier in self.clients:
            if isinstance(earlier, StationAgent) and earlier.settings.station_id == sid:
                earlier.close()
        settings = station_settings(self.tmp, self.central.url, sid)
        agent = StationAgent(settings, runtime=runtime, objects=self.objects, events=RecordingEvents(sid),
                             policy_loader=lambda: policy)
        self.clients.append(agent)
        return agent

    def admin(self, sid: str) -> CentralClient:
        client = CentralClient(self.central.url, admin(sid)["Authorization"][7:])
        self.clients.append(client)
        return client

    def define(self, did: str, *, route: tuple[str, ...] = ("aachen",), entrypoint: str | None = None,
               digest: str = DIGEST) -> None:
        body: dict[str, Any] = {"id": did, "title": "count", "image_name": "pht/count", "image_digest": digest,
                                "mode": "incremental", "route": list(route),
                                "parameters": [{"name": "MIN", "datatype": "integer", "required": True}]}
        if entrypoint is not None:
            body["entrypoint"] = entrypoint
        r = self.http.post("/api/definitions", headers=token("alice", Role.RESEARCHER), json=body)
        assert r.status_code == 201, r.text

    def submit(self, did: str, **parameters: str) -> str:
        alice = token("alice", Role.RESEARCHER)
        r = self.http.post("/api/trains", headers=alice,
                           json=signed(self.http, alice, {"definition": did, "parameters": parameters or {"MIN": "5"}}))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def train(self, tid: str) -> dict[str, Any]:
        r = self.http.get(f"/api/trains/{tid}", headers=token("alice", Role.RESEARCHER))
        assert r.status_code == 200, r.text
        return dict(r.json())

    def reasons(self, tid: str) -> list[str]:
        r = self.http.get(f"/api/trains/{tid}/events", headers=OPS, params={"limit": 500})
        assert r.status_code == 200, r.text
        return [e.get("reason") or "" for e in r.json()["items"]]

    def update(self, sparql: str) -> None:
        """An operator's SPARQL Update through the SPARQL Protocol."""
        r = self.http.post("/sparql", headers=OPS, data={"update": sparql})
        assert r.status_code in (200, 204), r.text

    def everything_central(self) -> str:
        """Every quad of every graph of the central store but the vocabulary's two (ontology and shapes)."""
        vocabulary = {ONTOLOGY_GRAPH, SHAPES_GRAPH}
        return "\n".join(str(q) for q in self.central.store.oxigraph.quads_for_pattern(None, None, None, None)
                         if q.graph_name not in vocabulary)

    def answers(self, tid: str, sid: str = "aachen") -> str:
        """What the central service answers about a train to its requester, an operator and the station."""
        texts = [json.dumps(self.train(tid)), "\n".join(self.reasons(tid))]
        for path, headers in ((f"/api/trains/{tid}", OPS), (f"/api/trains/{tid}/events", OPS),
                              (f"/api/stations/{sid}/work", admin(sid)), (f"/ui/station/{sid}/pending", admin(sid))):
            r = self.http.get(path, headers=headers)
            assert r.status_code == 200, (path, r.text)
            texts.append(r.text)
        return "\n".join(texts)


def central_log(records: list[logging.LogRecord]) -> str:
    """What the central service (and the HTTP server) logged; the station's own log is its own."""
    return "\n".join(r.getMessage() for r in records if not r.name.startswith(("pht.station", "station", "httpx")))


def station_settings(tmp: Path, central_url: str, sid: str) -> StationSettings:
    """Station ``sid``'s agent settings in the test world under ``tmp``: its dataset folder (created), state folder,
    the shared object store, its keys in ``tmp/keys/<sid>`` and a station token."""
    data = tmp / "data" / sid
    data.mkdir(parents=True, exist_ok=True)
    return StationSettings(station_id=sid, central_url=central_url,
                           token=token(f"station-{sid}", Role.STATION, station=sid)["Authorization"][7:],
                           datasets={f"{sid}-data": data}, state_dir=tmp / "state" / sid,
                           objects_url=f"file://{tmp / 'objects'}", keys_dir=tmp / "keys" / sid)


def register(central: Central, keys: Path) -> httpx.Client:
    """Stations aachen and leipzig, each with its own keys (the private halves in ``keys/<station>``: outputs are
    sealed to their next station, and each signs its record of what it did), and their datasets."""
    http = httpx.Client(base_url=central.url, timeout=30)
    for sid in ("aachen", "leipzig"):
        own = keys_in(keys / sid)[0]
        public = [encode_multikey(own.signing.public_key()), encode_multikey(own.encryption.public_key())]
        r = http.post("/api/stations", headers=OPS, json={"id": sid, "title": f"{sid} station",
                                                          "owner": f"{sid} hospital", "public_keys": public})
        assert r.status_code == 201, r.text
        r = http.post("/api/datasets", headers=OPS, json={"id": f"{sid}-data", "title": "data", "station": sid})
        assert r.status_code == 201, r.text
    return http


@contextmanager
def open_world(tmp_path: Path) -> Iterator[World]:
    """A central service with the registered world, the stations' object store in ``tmp_path``; closed after."""
    with central_service() as central:
        w = World(central, tmp_path, LocalObjectStore(tmp_path / "objects"), register(central, tmp_path / "keys"))
        try:
            yield w
        finally:
            for c in w.clients:
                c.close()
            w.http.close()

"""Helpers of the MPU tests: station key pairs, a central service whose stations know those keys, and events."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from api_helpers import ALICE, OPS, SETTINGS, signed, station
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pyoxigraph import NamedNode, Quad

from graph_store import EmbeddedStore, station_graph
from orchestrator.app import create_app
from station_mpu import Mpu, MpuSettings

BASE = "https://pht.example.org/id/"
PHT = "https://w3id.org/pht-kg/vocab#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
DIGEST = "sha256:" + "cd" * 32
STATIONS = ("aachen", "leipzig")
METRICS_TOKEN = "metrics-token-of-the-tests"
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
"""What a scraper sends to an MPU's ``/metrics`` (``MpuSettings.metrics_token``; without it: 401)."""


@dataclass
class StationKeys:
    """An Ed25519 key pair per station, the private halves as PEM files in ``directory``."""

    directory: Path
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for sid in STATIONS:
            self.keys[sid] = Ed25519PrivateKey.generate()
            self.path(sid).write_bytes(self.keys[sid].private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def path(self, sid: str) -> Path:
        return self.directory / f"{sid}.pem"

    def public_pem(self, sid: str) -> str:
        return self.keys[sid].public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def register(client: Any, keys: StationKeys) -> dict[str, str]:
    """Register the stations (with their keys), a dataset each and a definition visiting aachen then leipzig;
    submit one train. Returns ids: ``train``, ``aachen`` and ``leipzig`` (their executions; leipzig's exists only
    after aachen released, so it is the id it will have)."""
    for sid in STATIONS:
        r = client.post("/api/stations", headers=OPS, json={"id": sid, "title": f"{sid} station", "owner": "hospital",
                                                            "public_keys": [keys.public_pem(sid)]})
        assert r.status_code == 201, r.text
        r = client.post("/api/datasets", headers=OPS, json={"id": f"{sid}-data", "title": "data", "station": sid})
        assert r.status_code == 201, r.text
    r = client.post("/api/definitions", headers=ALICE, json={
        "id": "count", "title": "Cohort count", "image_name": "pht/count", "image_digest": DIGEST,
        "mode": "incremental", "route": list(STATIONS)})
    assert r.status_code == 201, r.text
    return new_train(client)


def new_train(client: Any) -> dict[str, str]:
    r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {}}))
    assert r.status_code == 201, r.text
    train = r.json()["id"]
    return {"train": train, "aachen": f"{train}.r1-s0", "leipzig": f"{train}.r1-s1"}


def token_of(sid: str) -> str:
    return station(sid)["Authorization"].removeprefix("Bearer ")


def mpu_settings(directory: Path, keys: StationKeys, *, sid: str = "aachen", central: str | None = "http://testserver",
                 **extra: Any) -> MpuSettings:
    return MpuSettings(station_id=sid, data_dir=directory / f"mpu-{sid}", central_url=central,
                       private_key_path=keys.path(sid) if central else None, token=token_of(sid) if central else None,
                       sample_interval_s=0, **{"metrics_token": METRICS_TOKEN, **extra})


@contextmanager
def central(store: EmbeddedStore | None = None) -> Iterator[TestClient]:
    """The central service in-process (its lifespan run), on an in-memory store by default."""
    with TestClient(create_app(SETTINGS, store=store if store is not None else EmbeddedStore())) as client:
        yield client


class CountingClient(httpx.Client):
    """An httpx client that forwards to ``target`` (a TestClient) and records every request and its status.

    ``lose_next_ack``: for that many successful requests, the central service's answer is lost on the way back
    (the batch IS written, the MPU sees a network error): the MPU must send it again, and nothing may double.
    """

    def __init__(self, target: TestClient) -> None:
        super().__init__(base_url="http://testserver")
        self.target = target
        self.requests: list[tuple[bytes, int | None]] = []
        self.lose_next_ack = 0
        self.down = False

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        if self.down:
            self.requests.append((kwargs.get("content") or b"", None))
            raise httpx.ConnectError("connection refused (central service stopped)")
        response = self.target.post(url, **kwargs)
        if self.lose_next_ack and response.status_code < 300:
            self.lose_next_ack -= 1
            self.requests.append((kwargs.get("content") or b"", None))
            raise httpx.ReadError("connection reset before the answer arrived")
        self.requests.append((kwargs.get("content") or b"", response.status_code))
        return response


def events(train: str, execution: str, n: int, *, start: int = 0) -> list[dict[str, Any]]:
    """``n`` distinct state-change / transmission / rejection events of one execution."""
    out: list[dict[str, Any]] = []
    for i in range(start, start + n):
        base = {"id": f"ev-{i}", "time": f"2026-11-27T10:{(i // 60) % 60:02d}:{i % 60:02d}Z", "train": train,
                "execution": execution}
        kind = i % 3
        if kind == 0:
            out.append({**base, "kind": "state-change", "from_state": "queued", "to_state": "waiting-for-approval"})
        elif kind == 1:
            out.append({**base, "kind": "started-transmission"})
        else:
            out.append({**base, "kind": "rejection", "reason": f"reason {i}"})
    return out


def mpu(directory: Path, keys: StationKeys, http: httpx.Client | None, **extra: Any) -> Mpu:
    return Mpu(mpu_settings(directory, keys, central="http://testserver" if http is not None else None, **extra),
               http=http)


def event_quads(store: EmbeddedStore, sid: str = "aachen") -> list[Quad]:
    """The quads about the station's events in its graph (not the central service's batch receipts there)."""
    return sorted((q for q in store.quads(g=station_graph(sid))
                   if q.subject.value.startswith(f"{BASE}stations/{sid}/events/")), key=str)


def event_subjects(store: EmbeddedStore, sid: str = "aachen") -> list[str]:
    """Every event subject in the station's graph, once per rdf:type triple (a duplicate would show twice)."""
    return [q.subject.value for q in store.quads(None, NamedNode(RDF_TYPE), None, station_graph(sid))
            if q.subject.value.startswith(f"{BASE}stations/{sid}/events/")]

"""A central service in-process (FastAPI TestClient) with real tokens, for the API tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from central_store import new_central_store
from fastapi.testclient import TestClient

from client import CentralClient
from graph_store import GraphStore
from orchestrator.app import create_app
from orchestrator.auth import issue_token
from orchestrator.principal import Role
from orchestrator.settings import DEMO_SECRET, Settings
from trust import PartyKeys, encode_multikey, generate_keys

KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADw+5Be8pE6f1TCQ5ILUvhMbG4vSCtzKjLvFYye8Qd6M=\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "ab" * 32
SETTINGS = Settings(jwt_secret=DEMO_SECRET, demo=True, max_body_bytes=200_000, store_in_memory=True)


def token(subject: str, *roles: Role, station: str | None = None) -> dict[str, str]:
    """Authorization header of a local token."""
    return {"Authorization": "Bearer " + issue_token(DEMO_SECRET, subject=subject, roles=roles, station=station)}


OPS = token("ops", Role.OPERATOR)
ALICE = token("alice", Role.RESEARCHER)
BOB = token("bob", Role.RESEARCHER)


def station(sid: str) -> dict[str, str]:
    return token(f"station-{sid}", Role.STATION, station=sid)


def admin(sid: str) -> dict[str, str]:
    return token(f"admin-{sid}", Role.STATION_ADMIN, station=sid)


def register_world(client: Any, *, count_rounds: int = 1) -> None:
    """Register three stations with a dataset each, the incremental ``count`` definition (route aachen ->
    leipzig -> cologne, required integer parameter MIN) and the federated ``fedavg`` one (aachen and leipzig,
    2 rounds, aggregated at cologne). ``client`` is a TestClient or an httpx.Client of a running service."""
    for sid in ("aachen", "leipzig", "cologne"):
        r = client.post("/api/stations", headers=OPS, json={"id": sid, "title": f"{sid} station",
                                                             "owner": f"{sid} hospital", "public_keys": [KEY]})
        assert r.status_code == 201, r.text
        r = client.post("/api/datasets", headers=OPS, json={"id": f"{sid}-data", "title": "data", "station": sid})
        assert r.status_code == 201, r.text
    for body in ({"id": "count", "title": "Cohort count", "image_name": "pht/count", "image_digest": DIGEST,
                  "mode": "incremental", "route": ["aachen", "leipzig", "cologne"], "rounds": count_rounds,
                  "parameters": [{"name": "MIN", "datatype": "integer", "required": True}]},
                 {"id": "fedavg", "title": "FedAvg", "image_name": "pht/fedavg", "image_digest": DIGEST,
                  "mode": "federated", "route": ["aachen", "leipzig"], "rounds": 2, "aggregator": "cologne"}):
        r = client.post("/api/definitions", headers=ALICE, json=body)
        assert r.status_code == 201, r.text


@contextmanager
def service(store: GraphStore | None = None, settings: Settings = SETTINGS) -> Iterator[TestClient]:
    """A started service with the world of :func:`register_world` (``settings``: e.g. with a results store), on
    ``store`` or else on a new store of the kind the test runs on (:func:`central_store.new_central_store`)."""
    app = create_app(settings, store=store if store is not None else new_central_store())
    with TestClient(app) as client:
        register_world(client)
        yield client


_RESEARCHER_KEYS: dict[str, PartyKeys] = {}
_KEYS_LOCK = threading.Lock()  # clients of several threads (test_durability) share a researcher's keys


def holding_keys(central: CentralClient) -> CentralClient:
    """``central`` (a researcher's client) holding that researcher's keys, registered at its service as ``pht keys
    init`` does (reused while the service still lists them, else new ones registered or rotated in), so every
    train it submits is signed. Returns ``central``."""
    with _KEYS_LOCK:
        return _holding_keys(central)


def _holding_keys(central: CentralClient) -> CentralClient:
    mine = central.keys()
    party, registered = str(mine["party"]), {k["multibase"] for k in mine.get("keys") or ()
                                            if not k.get("expires") and not k.get("revoked")}
    keys = _RESEARCHER_KEYS.get(party)
    if keys is None or encode_multikey(keys.signing.public_key()) not in registered:
        keys = _RESEARCHER_KEYS[party] = generate_keys()
        if mine.get("keys"):
            central.rotate_keys(keys)
        else:
            central.register_keys(keys, party)
    central.party_keys = keys
    return central


def researcher(client: httpx.Client, headers: Mapping[str, str]) -> CentralClient:
    """A :class:`CentralClient` for the caller of ``headers`` at the service ``client`` talks to (a TestClient or
    an httpx.Client of a running service), holding that researcher's keys (:func:`holding_keys`). Close it."""
    bearer = headers["Authorization"].removeprefix("Bearer ")
    if isinstance(client, TestClient):
        return holding_keys(CentralClient("http://testserver", bearer, transport=client._transport))
    return holding_keys(CentralClient(str(client.base_url), bearer))


def signed(client: httpx.Client, headers: Mapping[str, str], document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` (a train file's content: definition and parameters) with the signature the researcher of
    ``headers`` adds (:func:`researcher`), to post as is to ``/api/trains``."""
    with researcher(client, headers) as central:
        assert central.party_keys is not None
        return {**document, "signature": central._sign(document, central.party_keys).model_dump()}

"""Who may call what: the role x endpoint matrix of the central service, walked call by call.

``MATRIX`` below is the access policy written out as a table, one row per route (and per variant of a route
whose policy depends on what the call is about), one column per kind of caller:

* ``anon``   no ``Authorization`` header;            ``bad``    a well-formed token with a wrong signature;
* ``r-own``  researcher alice, who owns the train;   ``r-oth``  researcher bob, who does not;
* ``s-own``  station aachen, where the train is;     ``s-oth``  station cologne, which the train has not reached;
* ``a-own``  aachen's station admin;                  ``a-oth``  cologne's station admin;
* ``op``     an operator.

``Y`` = allowed: the call must get one of the row's success statuses (so, in particular, not 401/403).
``.`` = refused: 401 (with ``WWW-Authenticate``) for ``anon`` and ``bad``, 403 for everyone else.

The table follows the routes' ``Depends(require(...))`` plus the ownership rules of ``train_routes``
(``visible_train``: requester, operators, stations the train visits), ``station_routes`` (a station reads its
own work, steps and hands over outputs of executions at its station), ``registry.dataset`` (a station admin
registers datasets of its own station; only the station's own token takes, renews and releases its lease,
its admin and operators read it), and the protocol endpoints (``/sparql``: queries for every role, a
station confined to its own graph, updates for operators; ``/rdf-graphs``: operators write data graphs, a
station reads its own graph and writes none (its metadata arrives only as signed MPU batches), researchers and
station admins only read, and only their part: tests/security/test_read_confidentiality.py), the MPU push
(``/api/stations/{id}/metadata``: the station itself only, with a batch signed by its key), ``/metrics``
(operators, or Prometheus with the metrics token) and the tokens (operators revoke, a station renews its own),
and results (a link to a released output for the train's requester and operators only; the link itself is the
credential of ``/api/results/{sha256}``, as a presigned URL would be, so every caller holding one reads), and
keys (``key_registry``: a researcher registers and rotates their own, a station's admin its station's, operators
any party's; the holder or an operator revokes a key; public keys are read by every authenticated caller; an
operator issues a station's enrollment token, and the token itself is the credential of ``/enroll``).

``test_the_matrix_covers_every_route`` fails when a route is added without a row (or a row outlives its route).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from api_helpers import ALICE, BOB, KEY, OPS, SETTINGS, admin, service, station
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from client.key_claims import prove_possession
from graph_store import DEFAULT_BASE_IRI as BASE
from graph_store import batch_headers, station_graph
from orchestrator.app import create_app
from orchestrator.auth import issue_token
from orchestrator.principal import Role
from station.objects import LocalObjectStore
from trust import generate_keys

pytestmark = pytest.mark.central_stores("embedded", "oxigraph")  # see tests/central_store.py: CI time

CALLERS = ("anon", "bad", "r-own", "r-oth", "s-own", "s-oth", "a-own", "a-oth", "op")
UNAUTHENTICATED = frozenset({"anon", "bad"})

OWN, OTHER = "aachen", "cologne"
OWN_GRAPH = station_graph(OWN).value
WRONG_SECRET = "not-the-service-secret-0123456789abcdef"

HEADERS: dict[str, dict[str, str]] = {
    "anon": {},
    "bad": {"Authorization": "Bearer " + issue_token(WRONG_SECRET, subject="ops", roles=[Role.OPERATOR])},
    "r-own": ALICE,
    "r-oth": BOB,
    "s-own": station(OWN),
    "s-oth": station(OTHER),
    "a-own": admin(OWN),
    "a-oth": admin(OTHER),
    "op": OPS,
}

DOC_ROUTES = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
"""FastAPI's documentation routes: public on purpose, not part of the matrix."""

WEB_VIEW = "/ui"
"""The built-in web view's pages (cookie login, HTML refusals): their matrix is ``WEB_MATRIX`` in test_web.py."""

# fmt: off
#                                                             anon bad r-own r-oth s-own s-oth a-own a-oth op
MATRIX: dict[tuple[str, str, str], str] = {
    ("GET",    "/health",                             ""):        " Y   Y   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/stations",                       ""):        " .   .   .     .     .     .     .     .    Y",
    ("GET",    "/api/stations",                       ""):        " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/datasets",                       "aachen"):  " .   .   .     .     .     .     Y     .    Y",
    ("GET",    "/api/datasets",                       ""):        " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/definitions",                    ""):        " .   .   Y     Y     .     .     .     .    Y",
    ("GET",    "/api/definitions",                    ""):        " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/trains",                         ""):        " .   .   Y     Y     .     .     .     .    Y",
    ("GET",    "/api/trains",                         ""):        " .   .   Y     Y     .     .     .     .    Y",
    ("GET",    "/api/trains/{train_id}",              ""):        " .   .   Y     .     Y     .     Y     .    Y",
    ("GET",    "/api/trains/{train_id}/events",       ""):        " .   .   Y     .     Y     .     Y     .    Y",
    ("POST",   "/api/trains/{train_id}/cancel",       ""):        " .   .   Y     .     .     .     .     .    Y",
    ("GET",    "/api/stations/{station_id}/work",     "aachen"):  " .   .   .     .     Y     .     Y     .    Y",
    ("PUT",    "/api/stations/{station_id}/lease",    "aachen"):  " .   .   .     .     Y     .     .     .    .",
    ("DELETE", "/api/stations/{station_id}/lease",    "aachen"):  " .   .   .     .     Y     .     .     .    .",
    ("GET",    "/api/stations/{station_id}/lease",    "aachen"):  " .   .   .     .     Y     .     Y     .    Y",
    ("POST",   "/api/executions/{execution_id}/steps",   ""):     " .   .   .     .     Y     .     Y     .    Y",
    ("POST",   "/api/executions/{execution_id}/outputs", ""):     " .   .   .     .     Y     .     .     .    Y",
    ("GET",    "/sparql",                             "describe"): " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",    "/sparql",                             "union"):   " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",    "/sparql",                             "aachen"):  " .   .   Y     Y     Y     .     Y     Y    Y",
    ("POST",   "/sparql",                             "aachen"):  " .   .   Y     Y     Y     .     Y     Y    Y",
    ("POST",   "/sparql",                             "update"):  " .   .   .     .     .     .     .     .    Y",
    ("GET",    "/rdf-graphs",                         "aachen"):  " .   .   Y     Y     Y     .     Y     Y    Y",
    ("HEAD",   "/rdf-graphs",                         "aachen"):  " .   .   Y     Y     Y     .     Y     Y    Y",
    ("PUT",    "/rdf-graphs",                         "aachen"):  " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/rdf-graphs",                         "aachen"):  " .   .   .     .     .     .     .     .    Y",
    ("DELETE", "/rdf-graphs",                         "aachen"):  " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/rdf-graphs",                         "new"):     " .   .   .     .     .     .     .     .    Y",
    ("GET",    "/rdf-graphs/{path:path}",             "direct"):  " .   .   Y     Y     .     .     Y     Y    Y",
    ("HEAD",   "/rdf-graphs/{path:path}",             "direct"):  " .   .   Y     Y     .     .     Y     Y    Y",
    ("PUT",    "/rdf-graphs/{path:path}",             "direct"):  " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/rdf-graphs/{path:path}",             "direct"):  " .   .   .     .     .     .     .     .    Y",
    ("DELETE", "/rdf-graphs/{path:path}",             "direct"):  " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/api/stations/{station_id}/metadata", "aachen"):  " .   .   .     .     Y     .     .     .    .",
    ("GET",    "/metrics",                            ""):        " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/api/tokens/revocations",             ""):        " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/api/tokens/renew",                   ""):        " .   .   .     .     Y     Y     .     .    .",
    ("GET",    "/api/schemas/{name}",                 ""):        " Y   Y   Y     Y     Y     Y     Y     Y    Y",
    ("GET",    "/api/settings",                       ""):        " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",    "/api/trains/{train_id}/result",       ""):        " .   .   Y     .     .     .     .     .    Y",
    ("GET",    "/api/results/{sha256}",               "link"):    " Y   Y   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/keys",                           ""):        " .   .   Y     Y     .     .     .     .    .",
    ("GET",    "/api/keys",                           "aachen"):  " .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST",   "/api/keys/rotate",                    "alice"):   " .   .   Y     .     .     .     .     .    Y",
    ("POST",   "/api/keys/rotate",                    "aachen"):  " .   .   .     .     .     .     Y     .    Y",
    ("POST",   "/api/keys/revoke",                    "alice"):   " .   .   Y     .     .     .     .     .    Y",
    ("POST",   "/api/keys/revoke",                    "aachen"):  " .   .   .     .     .     .     Y     .    Y",
    ("POST",   "/api/stations/{station_id}/enrollments", "aachen"): " .   .   .     .     .     .     .     .    Y",
    ("POST",   "/api/stations/{station_id}/enroll",   "aachen"):  " Y   Y   Y     Y     Y     Y     Y     Y    Y",
}
# fmt: on
"""(method, route path, variant) -> one Y/. per caller, in the order of ``CALLERS``."""


def allowed(key: tuple[str, str, str]) -> frozenset[str]:
    marks = MATRIX[key].split()
    assert len(marks) == len(CALLERS) and set(marks) <= {"Y", "."}, f"malformed matrix row {key}"
    return frozenset(caller for caller, mark in zip(CALLERS, marks) if mark == "Y")


# --- the calls ------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One HTTP request (the caller's headers are added when it is sent)."""

    method: str
    url: str
    params: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class World:
    """Builds, on the running service, what a call is about: a fresh train of alice's at aachen, an execution
    there in a given state, a non-empty aachen station graph."""

    WALK = (("waiting-for-approval", station), ("approved", admin), ("pulling", station), ("running", station))

    def __init__(self, client: TestClient, results: Path | None = None) -> None:
        self.client = client
        self.results = results  # the folder the service reads results from
        self.signing_key: Ed25519PrivateKey | None = None
        self.sequence = 0  #: of the last metadata batch signed
        self.claims: dict[str, dict[str, Any]] = {}  #: researcher -> the keys POST /api/keys registers

    def ok(self, response: httpx.Response, *statuses: int) -> httpx.Response:
        assert response.status_code in statuses, f"set-up call failed: {response.status_code} {response.text}"
        return response

    def train(self) -> str:
        """A new incremental train of alice's; its first (and only) execution is queued at aachen."""
        r = self.client.post("/api/trains", headers=ALICE, json={"definition": "count", "parameters": {"MIN": "5"}})
        return str(self.ok(r, 201).json()["id"])

    def execution(self, state: str) -> str:
        """The first execution of a new train, stepped (by aachen's station and admin) up to ``state``."""
        eid = f"{self.train()}.r1-s0"
        for to, who in self.WALK:
            if state == "queued":
                break
            self.ok(self.client.post(f"/api/executions/{eid}/steps", headers=who(OWN), json={"to": to}), 200)
            if to == state:
                break
        return eid

    def released(self) -> tuple[str, str]:
        """(train, execution): a new train's first execution released by aachen, its output in the results folder."""
        assert self.results is not None
        packed = self.results.parent / f"{uuid.uuid4().hex}.tar.gz"
        packed.write_bytes(uuid.uuid4().bytes)
        sha = LocalObjectStore(self.results).put_file(packed)
        eid = self.execution("running")
        for to, output in (("output-under-review", None), ("released", {"sha256": sha, "byte_size": 16})):
            self.ok(self.client.post(f"/api/executions/{eid}/steps", headers=station(OWN),
                                     json={"to": to, "output": output}), 200)
        return eid.split(".")[0], eid

    def result_link(self) -> Call:
        """A link to a released output, as alice (the requester) got it."""
        tid, eid = self.released()
        url = httpx.URL(self.ok(self.client.get(f"/api/trains/{tid}/result", params={"execution": eid},
                                                headers=ALICE), 200).json()["url"])
        return Call("GET", url.path, params=dict(url.params))

    def signed_batch(self) -> Call:
        """A metadata batch of aachen's (one event about a new train there), signed with a key an operator
        registered for aachen just before (the world's stations were registered with a key whose private half is
        unknown, and other calls rotate aachen's keys)."""
        keys = generate_keys()
        body = {**prove_possession(keys, f"{BASE}stations/{OWN}").model_dump(), "station": OWN}
        self.ok(self.client.post("/api/keys/rotate", headers=OPS, json=body), 200)
        self.signing_key = keys.signing
        event = f"https://pht.example.org/id/stations/{OWN}/events/{uuid.uuid4().hex}"
        body = (f'<{event}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <https://w3id.org/pht-kg/vocab#StartedTransmissionEvent> .\n'
                f'<{event}> <https://w3id.org/pht-kg/vocab#eventTime> "2026-11-27T10:00:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime> .\n'
                f'<{event}> <https://w3id.org/pht-kg/vocab#aboutTrain> <https://pht.example.org/id/trains/{self.train()}> .\n'
                f'<{event}> <https://w3id.org/pht-kg/vocab#emittedBy> <https://pht.example.org/id/stations/{OWN}> .\n').encode()
        self.sequence += 1  # every call a new batch: a replayed one is refused (409)
        return Call("POST", f"/api/stations/{OWN}/metadata", content=body, headers=batch_headers(
            self.signing_key, OWN, f"matrix-{self.sequence}", body, sequence=self.sequence))

    def claim(self, party: str) -> dict[str, Any]:
        """Fresh keys' claim for ``party`` (its IRI), with their proof of possession."""
        return prove_possession(generate_keys(), party).model_dump()

    def registered_key(self, party: str, researcher: str | None = None) -> str:
        """The IRI of a fresh signing key of ``party`` (alice's or aachen's), registered by an operator's rotation."""
        body = {**self.claim(party), "researcher": researcher, "station": None if researcher else OWN}
        keys = self.ok(self.client.post("/api/keys/rotate", headers=OPS, json=body), 200).json()["keys"]
        return next(k["iri"] for k in keys if k["use"] == "signing" and k["multibase"] == body["signing_key"])

    def own_claim(self, caller: str) -> dict[str, Any]:
        """The keys a researcher registers with POST /api/keys: the same each time (so 201, then 200)."""
        subject = {"r-own": "alice", "r-oth": "bob"}.get(caller, "someone")
        if subject not in self.claims:
            self.claims[subject] = self.claim(f"{BASE}agents/{subject}")
        return self.claims[subject]

    def enrollment(self) -> dict[str, Any]:
        """An enroll call of aachen with a fresh operator's token and fresh keys."""
        token = self.ok(self.client.post(f"/api/stations/{OWN}/enrollments", headers=OPS), 201).json()["token"]
        return {**self.claim(f"{BASE}stations/{OWN}"), "token": token}

    def lease(self) -> str:
        """aachen's lease, taken (or renewed) by one agent for every call about it; returns that holder."""
        holder = "pid 1 on matrix-host (instance 00000001)"
        self.ok(self.client.put(f"/api/stations/{OWN}/lease", headers=station(OWN),
                                json={"holder": holder, "period_s": 60}), 200)
        return holder

    def fill_own_graph(self) -> None:
        r = self.client.post("/rdf-graphs", params={"graph": OWN_GRAPH}, headers={**OPS, "Content-Type": "text/turtle"},
                             content=f'<urn:pht-test:{uuid.uuid4().hex}> <http://purl.org/dc/terms/title> "x" .'.encode())
        self.ok(r, 201, 204)

    def fill_direct_graph(self) -> None:
        r = self.client.post(DIRECT, headers={**OPS, "Content-Type": "text/turtle"},
                             content=f'<urn:pht-test:{uuid.uuid4().hex}> <http://purl.org/dc/terms/title> "x" .'.encode())
        self.ok(r, 201, 204)


DIRECT = "/rdf-graphs/matrix/direct.ttl"
"""A graph named by its path (Graph Store Protocol direct identification)."""
TURTLE = {"Content-Type": "text/turtle"}
STEP_BY = {"s-own": "rejected", "a-own": "approved", "op": "failed"}
"""A step each allowed caller may fire from waiting-for-approval (per the chart's pht:firedBy)."""


def _triple() -> bytes:
    return f'<urn:pht-test:{uuid.uuid4().hex}> <http://purl.org/dc/terms/title> "t" .'.encode()


BUILDERS: dict[tuple[str, str, str], Callable[[World, str], Call]] = {
    ("GET", "/health", ""): lambda w, c: Call("GET", "/health"),
    ("POST", "/api/stations", ""): lambda w, c: Call("POST", "/api/stations", json={
        "id": unique("st"), "title": "a station", "owner": "a hospital", "public_keys": [KEY]}),
    ("GET", "/api/stations", ""): lambda w, c: Call("GET", "/api/stations"),
    ("GET", "/api/settings", ""): lambda w, c: Call("GET", "/api/settings"),
    ("POST", "/api/datasets", "aachen"): lambda w, c: Call("POST", "/api/datasets", json={
        "id": unique("ds"), "title": "data", "station": OWN}),
    ("GET", "/api/datasets", ""): lambda w, c: Call("GET", "/api/datasets"),
    ("POST", "/api/definitions", ""): lambda w, c: Call("POST", "/api/definitions", json={
        "id": unique("def"), "title": "t", "image_name": "pht/x", "image_digest": "sha256:" + "cd" * 32,
        "mode": "incremental", "route": [OWN]}),
    ("GET", "/api/definitions", ""): lambda w, c: Call("GET", "/api/definitions"),
    ("POST", "/api/trains", ""): lambda w, c: Call("POST", "/api/trains", json={"definition": "count",
                                                                             "parameters": {"MIN": "1"}}),
    ("GET", "/api/trains", ""): lambda w, c: Call("GET", "/api/trains"),
    ("GET", "/api/trains/{train_id}", ""): lambda w, c: Call("GET", f"/api/trains/{w.train()}"),
    ("GET", "/api/trains/{train_id}/events", ""): lambda w, c: Call("GET", f"/api/trains/{w.train()}/events"),
    ("POST", "/api/trains/{train_id}/cancel", ""): lambda w, c: Call("POST", f"/api/trains/{w.train()}/cancel",
                                                                     json={"reason": "matrix"}),
    ("GET", "/api/stations/{station_id}/work", "aachen"): lambda w, c: Call("GET", f"/api/stations/{OWN}/work"),
    ("PUT", "/api/stations/{station_id}/lease", "aachen"): lambda w, c: Call(
        "PUT", f"/api/stations/{OWN}/lease", json={"holder": w.lease(), "period_s": 60}),
    ("DELETE", "/api/stations/{station_id}/lease", "aachen"): lambda w, c: Call(
        "DELETE", f"/api/stations/{OWN}/lease", params={"holder": w.lease()}),
    ("GET", "/api/stations/{station_id}/lease", "aachen"): lambda w, c: (w.lease(), Call(
        "GET", f"/api/stations/{OWN}/lease"))[1],
    ("POST", "/api/executions/{execution_id}/steps", ""): lambda w, c: Call(
        "POST", f"/api/executions/{w.execution('waiting-for-approval')}/steps",
        json={"to": STEP_BY.get(c, "rejected")}),
    ("POST", "/api/executions/{execution_id}/outputs", ""): lambda w, c: Call(
        "POST", f"/api/executions/{w.execution('running')}/outputs", json={"sha256": "0" * 64, "byte_size": 1}),
    ("GET", "/sparql", "describe"): lambda w, c: Call("GET", "/sparql"),
    ("GET", "/sparql", "union"): lambda w, c: Call("GET", "/sparql", params={"query": "ASK { ?s ?p ?o }"}),
    ("GET", "/sparql", "aachen"): lambda w, c: Call("GET", "/sparql", params={
        "query": "SELECT * WHERE { ?s ?p ?o } LIMIT 1", "default-graph-uri": OWN_GRAPH}),
    ("POST", "/sparql", "aachen"): lambda w, c: Call("POST", "/sparql", params={"default-graph-uri": OWN_GRAPH},
                                                     content=b"ASK { ?s ?p ?o }",
                                                     headers={"Content-Type": "application/sparql-query"}),
    ("POST", "/sparql", "update"): lambda w, c: Call("POST", "/sparql", headers={
        "Content-Type": "application/sparql-update"}, content=b"INSERT DATA { GRAPH <" + OWN_GRAPH.encode()
        + b"> { " + _triple() + b" } }"),
    ("GET", "/rdf-graphs", "aachen"): lambda w, c: (w.fill_own_graph(), Call("GET", "/rdf-graphs", params={
        "graph": OWN_GRAPH}))[1],
    ("HEAD", "/rdf-graphs", "aachen"): lambda w, c: (w.fill_own_graph(), Call("HEAD", "/rdf-graphs", params={
        "graph": OWN_GRAPH}))[1],
    ("PUT", "/rdf-graphs", "aachen"): lambda w, c: Call("PUT", "/rdf-graphs", params={"graph": OWN_GRAPH},
                                                        content=_triple(), headers=TURTLE),
    ("POST", "/rdf-graphs", "aachen"): lambda w, c: Call("POST", "/rdf-graphs", params={"graph": OWN_GRAPH},
                                                         content=_triple(), headers=TURTLE),
    ("DELETE", "/rdf-graphs", "aachen"): lambda w, c: (w.fill_own_graph(), Call("DELETE", "/rdf-graphs", params={
        "graph": OWN_GRAPH}))[1],
    ("POST", "/rdf-graphs", "new"): lambda w, c: Call("POST", "/rdf-graphs", content=_triple(), headers=TURTLE),
    ("GET", "/rdf-graphs/{path:path}", "direct"): lambda w, c: (w.fill_direct_graph(), Call("GET", DIRECT))[1],
    ("HEAD", "/rdf-graphs/{path:path}", "direct"): lambda w, c: (w.fill_direct_graph(), Call("HEAD", DIRECT))[1],
    ("PUT", "/rdf-graphs/{path:path}", "direct"): lambda w, c: Call("PUT", DIRECT, content=_triple(), headers=TURTLE),
    ("POST", "/rdf-graphs/{path:path}", "direct"): lambda w, c: Call("POST", DIRECT, content=_triple(),
                                                                     headers=TURTLE),
    ("DELETE", "/rdf-graphs/{path:path}", "direct"): lambda w, c: (w.fill_direct_graph(), Call("DELETE", DIRECT))[1],
    ("POST", "/api/stations/{station_id}/metadata", "aachen"): lambda w, c: w.signed_batch(),
    ("GET", "/metrics", ""): lambda w, c: Call("GET", "/metrics"),
    ("POST", "/api/tokens/revocations", ""): lambda w, c: Call("POST", "/api/tokens/revocations",
                                                               json={"token_id": uuid.uuid4().hex}),
    ("POST", "/api/tokens/renew", ""): lambda w, c: Call("POST", "/api/tokens/renew"),
    ("GET", "/api/schemas/{name}", ""): lambda w, c: Call("GET", "/api/schemas/train-definition"),
    ("GET", "/api/trains/{train_id}/result", ""): lambda w, c: (lambda te: Call(
        "GET", f"/api/trains/{te[0]}/result", params={"execution": te[1]}))(w.released()),
    ("GET", "/api/results/{sha256}", "link"): lambda w, c: w.result_link(),
    ("POST", "/api/keys", ""): lambda w, c: Call("POST", "/api/keys", json=w.own_claim(c)),
    ("GET", "/api/keys", "aachen"): lambda w, c: Call("GET", "/api/keys", params={"station": OWN}),
    ("POST", "/api/keys/rotate", "alice"): lambda w, c: Call("POST", "/api/keys/rotate", json={
        **w.claim(f"{BASE}agents/alice"), "researcher": "alice"}),
    ("POST", "/api/keys/rotate", "aachen"): lambda w, c: Call("POST", "/api/keys/rotate", json={
        **w.claim(f"{BASE}stations/{OWN}"), "station": OWN}),
    ("POST", "/api/keys/revoke", "alice"): lambda w, c: Call("POST", "/api/keys/revoke", json={
        "key": w.registered_key(f"{BASE}agents/alice", researcher="alice")}),
    ("POST", "/api/keys/revoke", "aachen"): lambda w, c: Call("POST", "/api/keys/revoke", json={
        "key": w.registered_key(f"{BASE}stations/{OWN}")}),
    ("POST", "/api/stations/{station_id}/enrollments", "aachen"): lambda w, c: Call(
        "POST", f"/api/stations/{OWN}/enrollments"),
    ("POST", "/api/stations/{station_id}/enroll", "aachen"): lambda w, c: Call(
        "POST", f"/api/stations/{OWN}/enroll", json=w.enrollment()),
}

SUCCESS: dict[tuple[str, str], frozenset[int]] = {
    ("POST", "/api/stations"): frozenset({201}),
    ("POST", "/api/datasets"): frozenset({201}),
    ("POST", "/api/definitions"): frozenset({201}),
    ("POST", "/api/trains"): frozenset({201}),
    ("POST", "/api/executions/{execution_id}/outputs"): frozenset({201}),
    ("POST", "/api/tokens/revocations"): frozenset({201}),
    ("POST", "/api/keys"): frozenset({200, 201}),  # the same keys again: 200
    ("POST", "/api/stations/{station_id}/enrollments"): frozenset({201}),
    ("PUT", "/rdf-graphs"): frozenset({201, 204}),
    ("POST", "/rdf-graphs"): frozenset({201, 204}),
    ("DELETE", "/rdf-graphs"): frozenset({204}),
    ("GET", "/rdf-graphs"): frozenset({200, 404}),  # the caller's part of the graph, 404 if none of it is theirs
    ("HEAD", "/rdf-graphs"): frozenset({200, 404}),  # (what that part holds: tests/security/test_read_confidentiality.py)
    ("PUT", "/rdf-graphs/{path:path}"): frozenset({201, 204}),
    ("POST", "/rdf-graphs/{path:path}"): frozenset({201, 204}),
    ("DELETE", "/rdf-graphs/{path:path}"): frozenset({204}),
    ("GET", "/rdf-graphs/{path:path}"): frozenset({200, 404}),
    ("HEAD", "/rdf-graphs/{path:path}"): frozenset({200, 404}),
    ("DELETE", "/api/stations/{station_id}/lease"): frozenset({204}),
}
"""Statuses of an allowed call (200 where not listed)."""


# --- the tests ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, central_store_kind: str) -> Iterator[World]:
    results = tmp_path_factory.mktemp("matrix") / "objects"
    # who may call what, not what a signature proves: the matrix posts unsigned trains (signing:
    # tests/security/test_signed_submissions.py), so this service does not require them
    with service(settings=replace(SETTINGS, results_store_url=f"file://{results}",
                                  require_signed_trains=False)) as client:
        yield World(client, results)


def _cells() -> Iterator[Any]:
    for key in MATRIX:
        for caller in CALLERS:
            method, path, variant = key
            yield pytest.param(key, caller, id=f"{method} {path}{f' [{variant}]' if variant else ''} as {caller}")


@pytest.mark.parametrize(("key", "caller"), list(_cells()))
def test_role_matrix(world: World, key: tuple[str, str, str], caller: str) -> None:
    call = BUILDERS[key](world, caller)
    response = world.client.request(call.method, call.url, params=call.params, json=call.json, content=call.content,
                                    headers={**call.headers, **HEADERS[caller]})
    method, path, _ = key
    if caller in allowed(key):
        expected = SUCCESS.get((method, path), frozenset({200}))
        assert response.status_code not in (401, 403), f"allowed call refused: {response.status_code} {response.text}"
        assert response.status_code in expected, f"allowed call failed: {response.status_code} {response.text}"
    elif caller in UNAUTHENTICATED:
        assert response.status_code == 401, f"expected 401, got {response.status_code} {response.text}"
        assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    else:
        assert response.status_code == 403, f"expected 403, got {response.status_code} {response.text}"


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (through included routers too)."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.16x nests included routers
    routes = list(iterate(app.routes)) if iterate is not None else list(app.routes)
    found = set()
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        assert path is not None, f"a route without a path: {route!r}"
        found |= {(method, path) for method in methods or {"WEBSOCKET"}}
    return found


def test_the_matrix_covers_every_route() -> None:
    served = {(m, p) for m, p in app_routes(create_app(SETTINGS)) if p not in DOC_ROUTES and not is_web(p)}
    in_matrix = {(m, p) for m, p, _ in MATRIX}
    assert not served - in_matrix, f"routes without a row in MATRIX: {sorted(served - in_matrix)}"
    assert not in_matrix - served, f"MATRIX rows of routes the app does not serve: {sorted(in_matrix - served)}"
    assert set(BUILDERS) == set(MATRIX)
    for key in MATRIX:
        allowed(key)


def test_the_protocol_endpoints_are_served() -> None:
    """The SPARQL and Graph Store Protocol routers are optional in ``create_app`` (an ImportError drops them
    silently); here they must be there."""
    served = {p for _, p in app_routes(create_app(SETTINGS))}
    assert {"/sparql", "/rdf-graphs"} <= served


def is_web(path: str) -> bool:
    return path == WEB_VIEW or path.startswith(WEB_VIEW + "/")


def test_doc_routes_are_the_only_other_routes() -> None:
    others = {p for _, p in app_routes(create_app(SETTINGS))} - {p for _, p, _ in MATRIX}
    assert {p for p in others if not is_web(p)} <= DOC_ROUTES

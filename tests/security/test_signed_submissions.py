"""Signed train submissions played by an attacker: each refusal is a 4xx with one sentence and writes nothing.

Another researcher's key, a revoked, unknown or rotated-out key, a document altered after signing (a parameter, a
definition field, the result recipient), a replayed request, a request naming another requester, and -- with
``PHT_REQUIRE_SIGNED_TRAINS=1`` -- an unsigned submission. The readable graph gives a train's request and proof to
whoever may read the train, and to no one else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from central_store import new_central_store
import pytest
from api_helpers import ALICE, BOB, DIGEST, OPS, SETTINGS, admin, service
from fastapi.testclient import TestClient
from pyoxigraph import NamedNode

from client import CentralClient
from client.key_claims import key_iri
from client.train_request import (
    DefinitionSpec,
    TrainRequest,
    definition_triples,
    new_request_id,
    now_created,
    sign_request,
)
from graph_store import CENTRAL_GRAPH, PHT, GraphStore, ResourceIris
from orchestrator.naming import Iris
from orchestrator.principal import Principal, Role
from orchestrator.readable_graph import ReadableGraphs
from orchestrator.settings import DEMO_SECRET, Settings
from trust import PartyKeys, encode_multikey, generate_keys

BASE = "https://pht.example.org/id/"
IRIS = ResourceIris(BASE)
WHOLE: dict[str, Any] = {"id": "count-signed", "title": "Count", "image_name": "pht/count", "image_digest": DIGEST,
         "mode": "incremental", "route": ["aachen", "leipzig"],
         "parameters": [{"name": "MIN", "datatype": "integer", "required": True}]}


@pytest.fixture()
def world() -> Iterator[tuple[TestClient, GraphStore]]:
    store = new_central_store()
    with service(store) as client:
        yield client, store


def register(client: TestClient, headers: dict[str, str]) -> PartyKeys:
    keys = generate_keys()
    with CentralClient("http://testserver", headers["Authorization"].removeprefix("Bearer "),
                       transport=client._transport) as c:
        c.register_keys(keys)
    return keys


def party(who: str) -> str:
    return f"{BASE}agents/{who}"


def signed_body(keys: PartyKeys, *, who: str = "alice", definition: dict[str, Any] | None = None,
                parameters: dict[str, str] | None = None, signer: str | None = None,
                recipient_keys: PartyKeys | None = None, created: str | None = None,
                request_id: str | None = None) -> dict[str, Any]:
    """A submission of ``definition`` (default: WHOLE) signed with ``keys`` as ``signer``'s signing key (default:
    ``who``'s), requested by ``who``, the result going to ``recipient_keys``' encryption key (default: ``keys``)."""
    definition = definition or WHOLE
    parameters = {"MIN": "3"} if parameters is None else parameters
    recipient = key_iri(party(who), encode_multikey((recipient_keys or keys).encryption.public_key()))
    request = TrainRequest(request_id or new_request_id(), definition["id"], requester=party(who),
                           created=created or now_created(), parameters=parameters, recipient=recipient)
    method = key_iri(party(signer or who), encode_multikey(keys.signing.public_key()))
    signature = sign_request(IRIS, definition_triples(IRIS, DefinitionSpec.from_wire(definition)), request,
                             keys.signing, verification_method=method)
    return {"definition": definition, "parameters": parameters, "signature": signature.model_dump()}


def refused(client: TestClient, store: GraphStore, body: dict[str, Any], status: int, sentence: str,
            headers: dict[str, str] = ALICE) -> None:
    """``body`` is refused with ``status`` and one sentence containing ``sentence``; the central graph unchanged."""
    before = set(store.quads(None, None, None, CENTRAL_GRAPH))
    r = client.post("/api/trains", headers=headers, json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and sentence in detail and "\n" not in detail and detail.count(". ") == 0
    assert set(store.quads(None, None, None, CENTRAL_GRAPH)) == before


def test_a_signed_submission_is_accepted(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    r = client.post("/api/trains", headers=ALICE, json=signed_body(keys))
    assert r.status_code == 201, r.text
    assert client.get(f"/api/trains/{r.json()['id']}", headers=ALICE).json()["signed"] is True


def test_a_request_signed_with_another_researchers_key_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    register(client, ALICE)
    bobs = register(client, BOB)
    # alice sends a request signed with bob's (registered, valid) key
    refused(client, store, signed_body(bobs, signer="bob", recipient_keys=None), 403,
            "which is not one of your signing keys")


def test_a_researcher_cannot_submit_a_request_another_researcher_signed(
        world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    register(client, ALICE)
    bobs = register(client, BOB)
    # bob's own signed request, replayed by alice as hers: it names bob
    refused(client, store, signed_body(bobs, who="bob"), 403, "names the requester")


def test_an_unknown_key_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    stranger = generate_keys()
    body = signed_body(stranger, recipient_keys=keys)
    refused(client, store, body, 403, "which is not a registered key")


def test_a_revoked_key_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    body = signed_body(keys)
    r = client.post("/api/keys/revoke", headers=ALICE, json={"key": body["signature"]["verification_method"]})
    assert r.status_code == 200, r.text
    refused(client, store, body, 403, "which was revoked at")


def test_a_key_rotated_out_before_the_request_was_signed_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    old = register(client, ALICE)
    new = generate_keys()
    with CentralClient("http://testserver", ALICE["Authorization"].removeprefix("Bearer "),
                       transport=client._transport) as c:
        c.rotate_keys(new)
    later = (datetime.now(timezone.utc) + timedelta(seconds=2)).replace(microsecond=0)
    body = signed_body(old, recipient_keys=new, created=later.isoformat().replace("+00:00", "Z"))
    refused(client, store, body, 403, "which was rotated out at")


@pytest.mark.parametrize("alter", ["parameter", "image_digest", "route", "created", "request"])
def test_a_document_altered_after_signing_is_refused(world: tuple[TestClient, GraphStore], alter: str) -> None:
    client, store = world
    keys = register(client, ALICE)
    body = signed_body(keys)
    if alter == "parameter":
        body["parameters"] = {"MIN": "4"}
    elif alter == "image_digest":
        body["definition"] = {**WHOLE, "image_digest": "sha256:" + "cd" * 32}
    elif alter == "route":
        body["definition"] = {**WHOLE, "route": ["leipzig", "aachen"]}
    elif alter == "created":
        body["signature"]["created"] = "2026-01-01T00:00:00Z"
    else:
        body["signature"]["request"] = new_request_id()
    refused(client, store, body, 400, "signature was refused")


def test_an_altered_registered_definition_breaks_the_signature(world: tuple[TestClient, GraphStore]) -> None:
    """An operator who edits a definition after a researcher signed a request for it: the request no longer
    verifies (the service rebuilds the document from what it holds)."""
    client, store = world
    keys = register(client, ALICE)
    body = signed_body(keys, definition={**WHOLE, "id": "count"}, parameters={"MIN": "1"})
    # the registered "count" has a third stop and another title than the definition the researcher signed
    body["definition"] = "count"
    refused(client, store, body, 400, "signature was refused")


def test_a_replayed_request_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    body = signed_body(keys)
    first = client.post("/api/trains", headers=ALICE, json=body)
    assert first.status_code == 201, first.text
    refused(client, store, body, 409, f"was used already by train {first.json()['id']}")


def test_a_result_recipient_that_is_not_the_requesters_key_is_refused(
        world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    bobs = register(client, BOB)
    body = signed_body(keys)
    body["signature"]["result_recipient"] = key_iri(party("bob"), encode_multikey(bobs.encryption.public_key()))
    refused(client, store, body, 403, "is not your current encryption key")


def test_unsigned_submissions_are_refused_by_default(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    assert SETTINGS.require_signed_trains and Settings.from_env({"PHT_JWT_SECRET": DEMO_SECRET, "PHT_DEMO": "1"}).require_signed_trains
    refused(client, store, {"definition": "count", "parameters": {"MIN": "1"}}, 403, "accepts signed trains only")
    keys = register(client, ALICE)
    r = client.post("/api/trains", headers=ALICE, json=signed_body(keys))
    assert r.status_code == 201, r.text


def test_unsigned_submissions_are_accepted_when_signed_trains_are_not_required() -> None:
    """PHT_REQUIRE_SIGNED_TRAINS=0 lets an unsigned train in (stations still refuse it: test_signed_trains.py)."""
    assert not Settings.from_env({"PHT_JWT_SECRET": DEMO_SECRET, "PHT_DEMO": "1", "PHT_REQUIRE_SIGNED_TRAINS": "0"}
                                 ).require_signed_trains
    with service(new_central_store(), replace(SETTINGS, require_signed_trains=False)) as client:
        r = client.post("/api/trains", headers=ALICE, json={"definition": "count", "parameters": {"MIN": "1"}})
        assert r.status_code == 201, r.text


def test_the_request_and_proof_are_readable_by_the_trains_readers_only(
        world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = register(client, ALICE)
    r = client.post("/api/trains", headers=ALICE, json=signed_body(keys))
    assert r.status_code == 201, r.text
    train = Iris(BASE).train(r.json()["id"])
    (link,) = store.quads(train, PHT.signedRequest, None, CENTRAL_GRAPH)
    request = link.object
    assert isinstance(request, NamedNode)
    bindings = [q.object for q in store.quads(request, PHT.parameterBinding, None, CENTRAL_GRAPH)]
    proof = NamedNode(train.value + "/request-proof")
    signed = {q for node in (request, proof, *bindings) if isinstance(node, NamedNode)
              for q in store.quads(node, None, None, CENTRAL_GRAPH)}
    assert len(signed) > 10
    graphs = ReadableGraphs(store, Iris(BASE))
    readers = [Principal("alice", frozenset({Role.RESEARCHER})),
               Principal("admin-aachen", frozenset({Role.STATION_ADMIN}), station="aachen")]
    others = [Principal("bob", frozenset({Role.RESEARCHER})),
              Principal("admin-cologne", frozenset({Role.STATION_ADMIN}), station="cologne")]
    for who in readers:
        assert signed <= set(graphs.quads_for(who)), who
    for who in others:
        assert not signed & set(graphs.quads_for(who)), who
    # and over SPARQL, as the train's requester and as another researcher
    ask = f"ASK {{ GRAPH ?g {{ <{train.value}/request-proof> ?p ?o }} }}"
    assert client.post("/sparql", headers=ALICE, data={"query": ask}).json()["boolean"] is True
    assert client.post("/sparql", headers=BOB, data={"query": ask}).json()["boolean"] is False
    assert client.post("/sparql", headers=admin("cologne"), data={"query": ask}).json()["boolean"] is False
    assert client.post("/sparql", headers=OPS, data={"query": ask}).json()["boolean"] is True
    # and through the Graph Store Protocol
    for headers, sees in ((ALICE, True), (BOB, False), (admin("cologne"), False)):
        r = client.get("/rdf-graphs", headers={**headers, "Accept": "application/n-triples"},
                       params={"graph": CENTRAL_GRAPH.value})
        assert r.status_code == 200, r.text
        assert (f"<{train.value}/request-proof>" in r.text) is sees and (f"<{request.value}>" in r.text) is sees

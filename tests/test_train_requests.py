"""The signed train request (client/train_request.py): the builder's triples, the client and the central service
building the same document (for a whole definition and one given by id), what a signed submission stores and shows,
and the reference JavaScript implementation verifying a request signed here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyoxigraph as ox
from central_store import new_central_store
import pytest
from api_helpers import ALICE, DIGEST, SETTINGS, register_world, service
from central_thread import central_service
from conftest import require_component
from fastapi.testclient import TestClient
from pyld import jsonld
from test_trust_interop import METHOD, js_verify

from client import CentralClient, ClientError
from client.train_request import (
    DefinitionSpec,
    ParameterSpec,
    RequestSignature,
    TrainRequest,
    definition_triples,
    new_request_id,
    request_triples,
    sign_request,
    train_request_triples,
)
from graph_store import CENTRAL_GRAPH, PHT, XSD, GraphStore, ResourceIris, named_query
from orchestrator.naming import Iris
from orchestrator.principal import Principal, Role
from orchestrator.registry import Registry, StationSpec
from orchestrator.signed_requests import definition_content
from trust import PartyKeys, Proof, ProofError, encode_multikey, generate_keys, verify_jsonld, verify_proof
from trust.keys import decode_signing_key

pytestmark = pytest.mark.central_stores

REPO = Path(__file__).resolve().parent.parent
BASE = "https://pht.example.org/id/"
IRIS = ResourceIris(BASE)
ALICE_IRI = BASE + "agents/alice"
SPEC = DefinitionSpec("count2", "Count", "pht/count", DIGEST, "incremental", ["aachen", "leipzig"], rounds=2,
                      entrypoint="python run.py",
                      parameters=[ParameterSpec("MIN", "integer", required=True), ParameterSpec("LABEL", default="x")])
REQUEST = TrainRequest("urn:uuid:6f0c4d8e-1b2a-4c3d-9e8f-0123456789ab", "count2", requester=ALICE_IRI,
                       created="2026-12-03T10:00:00Z", parameters={"MIN": "007", "LABEL": "a b"},
                       recipient=ALICE_IRI + "/keys/enc")


def test_the_request_is_iris_only_with_each_binding_typed_as_its_parameter() -> None:
    triples = train_request_triples(IRIS, SPEC, REQUEST)
    terms = [term for t in triples for term in (t.subject, t.object)]
    assert not any(isinstance(term, ox.BlankNode) for term in terms)
    node = ox.NamedNode(REQUEST.id)
    about = {(t.predicate, t.object) for t in triples if t.subject == node}
    assert (PHT.ofDefinition, IRIS.definition("count2")) in about
    assert (PHT.requestedBy, ox.NamedNode(ALICE_IRI)) in about
    assert (PHT.resultRecipient, ox.NamedNode(ALICE_IRI + "/keys/enc")) in about
    bindings = {t.object for t in triples if t.subject == node and t.predicate == PHT.parameterBinding}
    assert bindings == {ox.NamedNode(REQUEST.id + "/parameters/MIN"), ox.NamedNode(REQUEST.id + "/parameters/LABEL")}
    values = {t.subject.value.rsplit("/", 1)[-1]: t.object for t in triples if t.predicate == PHT.bindingValue
              and isinstance(t.subject, ox.NamedNode)}
    # typed as the parameter's datatype, in the form the store keeps (so the stored request is the signed one)
    assert values == {"MIN": ox.Literal("7", datatype=XSD.integer), "LABEL": ox.Literal("a b")}
    # the definition part is the builder's definition triples; the rest is about the request and its bindings
    rest = set(triples) - set(definition_triples(IRIS, SPEC))
    assert {t.subject for t in rest} == {node} | bindings
    assert len(triples) == len(definition_triples(IRIS, SPEC)) + len(request_triples(IRIS, REQUEST, {"MIN": "integer"}))


def test_the_definition_part_is_what_the_registry_stores_without_what_it_adds() -> None:
    store = new_central_store()
    registry = Registry(store, Iris(BASE))
    alice = Principal("alice", frozenset({Role.RESEARCHER}))
    ops = Principal("ops", frozenset({Role.OPERATOR}))
    for sid in ("aachen", "leipzig"):
        registry.station(ops, StationSpec(sid, sid, sid))
    registry.definition(alice, SPEC)
    d = IRIS.definition("count2")
    stored = {ox.Triple(q.subject, q.predicate, q.object) for q in definition_content(store, d, with_server_added=False)}
    assert stored == set(definition_triples(IRIS, SPEC))
    everything = definition_content(store, d)
    assert {q.predicate for q in everything} - {t.predicate for t in stored} == {
        ox.NamedNode("http://purl.org/dc/terms/created"), ox.NamedNode("http://www.w3.org/ns/prov#wasAttributedTo"),
        ox.NamedNode("https://w3id.org/pht-kg/vocab#definitionListPosition")}  # its place in the definitions list
    # the named query the client signs a definition given by id with reads the same triples
    rows = store.run_query("definition_content", definition=d)
    assert {ox.Triple(r["s"], r["p"], r["o"]) for r in rows} == stored
    assert named_query("definition_content").description


def test_another_parameter_value_or_definition_field_changes_the_signed_document() -> None:
    keys = generate_keys()
    signature = sign_request(IRIS, definition_triples(IRIS, SPEC), REQUEST, keys.signing, verification_method=METHOD)
    proof = Proof(verification_method=METHOD, created=signature.created, proof_value=signature.proof_value)
    resolve = lambda method: keys.signing.public_key()  # noqa: E731
    verify_proof(train_request_triples(IRIS, SPEC, REQUEST), proof, resolve)
    # "007" and "7" are the same integer: the document is the same
    verify_proof(train_request_triples(IRIS, SPEC, TrainRequest(**{**REQUEST.__dict__, "parameters": {
        "MIN": "7", "LABEL": "a b"}})), proof, resolve)
    for altered_spec, altered_request in (
            (SPEC, TrainRequest(**{**REQUEST.__dict__, "parameters": {"MIN": "8", "LABEL": "a b"}})),
            (DefinitionSpec(**{**SPEC.__dict__, "image_digest": "sha256:" + "cd" * 32}), REQUEST),
            (DefinitionSpec(**{**SPEC.__dict__, "route": ("leipzig", "aachen")}), REQUEST),
            (SPEC, TrainRequest(**{**REQUEST.__dict__, "recipient": ALICE_IRI + "/keys/other"}))):
        with pytest.raises(ProofError, match="does not verify"):
            verify_proof(train_request_triples(IRIS, altered_spec, altered_request), proof, resolve)


# ---- through the service ----------------------------------------------------------------------------------


@pytest.fixture()
def world() -> Iterator[tuple[TestClient, GraphStore]]:
    store = new_central_store()
    with service(store) as client:
        yield client, store


def central(client: TestClient, headers: dict[str, str] = ALICE) -> CentralClient:
    return CentralClient("http://testserver", headers["Authorization"].removeprefix("Bearer "),
                         transport=client._transport)


def registered_keys(client: TestClient) -> PartyKeys:
    keys = generate_keys()
    with central(client) as c:
        c.register_keys(keys)
    return keys


WHOLE: dict[str, Any] = {"id": "count-signed", "title": "Count", "image_name": "pht/count", "image_digest": DIGEST,
         "mode": "incremental", "route": ["aachen", "leipzig"],
         "parameters": [{"name": "MIN", "datatype": "integer", "required": True}]}


@pytest.mark.parametrize("definition", [WHOLE, "count"], ids=["whole-definition", "definition-by-id"])
def test_the_client_signs_and_the_service_verifies_stores_and_shows_it(
        world: tuple[TestClient, GraphStore], definition: Any) -> None:
    client, store = world
    keys = registered_keys(client)
    with central(client) as c:
        train_id = c.submit_train({"definition": definition, "parameters": {"MIN": "05"}}, keys)
        shown = c.train(train_id)
        listed = {t["id"]: t["signed_by"] for t in c.trains()}
    signing_iri = next(k["iri"] for k in client.get("/api/keys", headers=ALICE).json()["keys"] if k["use"] == "signing")
    assert shown["signed"] is True and shown["signed_by"] == signing_iri
    assert listed[train_id] == signing_iri and set(listed.values()) == {signing_iri}
    train = Iris(BASE).train(train_id)
    (link,) = store.quads(train, PHT.signedRequest, None, CENTRAL_GRAPH)
    request = link.object
    assert isinstance(request, ox.NamedNode) and request.value.startswith("urn:uuid:")
    proof_node = ox.NamedNode(train.value + "/request-proof")
    assert store.quads(train, PHT.requestProof, proof_node, CENTRAL_GRAPH)
    proof = Proof.from_quads(store.quads(proof_node, None, None, CENTRAL_GRAPH), proof_node)
    # the stored request and the stored definition verify with the stored proof: what is stored is what was signed
    definition_iri = store.quads(request, PHT.ofDefinition, None, CENTRAL_GRAPH)[0].object
    assert isinstance(definition_iri, ox.NamedNode)
    bindings = [q.object for q in store.quads(request, PHT.parameterBinding, None, CENTRAL_GRAPH)]
    stored = (definition_content(store, definition_iri, with_server_added=False)
              + store.quads(request, None, None, CENTRAL_GRAPH)
              + [q for b in bindings if isinstance(b, ox.NamedNode) for q in store.quads(b, None, None, CENTRAL_GRAPH)])
    verify_proof([ox.Triple(q.subject, q.predicate, q.object) for q in stored], proof,
                 lambda method: keys.signing.public_key() if method == signing_iri else None)


def test_an_unsigned_train_shows_unsigned() -> None:
    """Where unsigned trains are accepted (PHT_REQUIRE_SIGNED_TRAINS=0), one is shown unsigned."""
    with service(new_central_store(), replace(SETTINGS, require_signed_trains=False)) as client:
        r = client.post("/api/trains", headers=ALICE, json={"definition": "count", "parameters": {"MIN": "1"}})
        assert r.status_code == 201, r.text
        shown = client.get(f"/api/trains/{r.json()['id']}", headers=ALICE).json()
        assert shown["signed"] is False and shown["signed_by"] is None
        listed = client.get("/api/trains", headers=ALICE).json()["items"]
        assert [t["signed"] for t in listed] == [False]


def test_the_client_refuses_to_sign_with_keys_it_has_not_registered(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    size = len(store.quads(None, None, None, CENTRAL_GRAPH))
    with central(client) as c, pytest.raises(ClientError, match="is not a current key of yours.*pht keys init"):
        c.submit_train({"definition": "count", "parameters": {"MIN": "1"}}, generate_keys())
    assert len(store.quads(None, None, None, CENTRAL_GRAPH)) == size


# ---- the reference JavaScript implementation -----------------------------------------------------------------


def as_jsonld(triples: list[ox.Triple], root: str, proof: Proof) -> dict[str, Any]:
    """The signed document as JSON-LD (the request node, every other node ``@included``) with its proof: the same
    RDF, so the same canonical form, in the shape jsonld-signatures verifies."""
    nquads = "".join(f"{t} .\n" for t in triples)
    nodes = jsonld.from_rdf(nquads, {"format": "application/n-quads"})
    (top,) = [n for n in nodes if n["@id"] == root]
    return {"@context": "https://w3id.org/security/data-integrity/v2", **top,
            "@included": [n for n in nodes if n["@id"] != root],
            "proof": {"type": "DataIntegrityProof", "cryptosuite": proof.cryptosuite, "created": proof.created,
                      "verificationMethod": proof.verification_method, "proofPurpose": proof.proof_purpose,
                      "proofValue": proof.proof_value}}


@pytest.mark.real_component("node-reference")
def test_a_request_signed_here_verifies_with_the_reference_implementation() -> None:
    require_component("node-reference")
    keys = generate_keys()
    request = TrainRequest(**{**REQUEST.__dict__, "id": new_request_id()})
    signature: RequestSignature = sign_request(IRIS, definition_triples(IRIS, SPEC), request, keys.signing,
                                               verification_method=METHOD)
    proof = Proof(verification_method=METHOD, created=signature.created, proof_value=signature.proof_value)
    document = as_jsonld(train_request_triples(IRIS, SPEC, request), request.id, proof)
    public = encode_multikey(keys.signing.public_key())
    assert js_verify(document, public) == {"verified": True, "error": None}
    verify_jsonld(document, lambda method: decode_signing_key(public))  # the JSON-LD is the same RDF here too
    altered = json.loads(json.dumps(document).replace('"7"', '"8"'))
    assert altered != document and js_verify(altered, public)["verified"] is False


# ---- the command line --------------------------------------------------------------------------------------


def pht(*args: str, token: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    env.update(PHT_TOKEN=token, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "pht_cli.main", *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=REPO, check=False)


def test_pht_train_submit_signs_with_the_keys_pht_keys_init_wrote_and_says_when_it_cannot(tmp_path: Path) -> None:
    token = ALICE["Authorization"].removeprefix("Bearer ")
    with central_service() as served:
        with httpx.Client(base_url=served.url) as http:
            register_world(http)
        train_file = tmp_path / "train.json"
        train_file.write_text(json.dumps({"definition": "count", "parameters": {"MIN": "2"}}))
        keys = tmp_path / "keys"
        unsigned = pht("train", "submit", str(train_file), "--central", served.url, "--keys", str(keys), token=token)
        # without keys: unsigned, which the service refuses by default (one sentence, exit 1)
        assert unsigned.returncode == 1 and "Traceback" not in unsigned.stderr, unsigned.stderr
        assert "accepts signed trains only" in unsigned.stderr, unsigned.stderr
        init = pht("keys", "init", "--central", served.url, "--dir", str(keys), token=token)
        assert init.returncode == 0, init.stderr
        signed = pht("train", "submit", str(train_file), "--central", served.url, "--keys", str(keys), token=token)
        assert signed.returncode == 0 and signed.stderr == "", signed.stderr
        with httpx.Client(base_url=served.url, headers=ALICE) as http:
            assert http.get(f"/api/trains/{signed.stdout.strip()}").json()["signed"] is True
        # keys it cannot read: one sentence, exit 1, nothing submitted
        (keys / "signing.pem").write_text("not a key")
        broken = pht("train", "submit", str(train_file), "--central", served.url, "--keys", str(keys), token=token)
        assert broken.returncode == 1 and "Traceback" not in broken.stderr
        assert broken.stderr.startswith(f"error: cannot read your keys in {keys}: ")
        with httpx.Client(base_url=served.url, headers=ALICE) as http:
            assert http.get("/api/trains").json()["total"] == 1


def test_the_client_follows_the_trains_list_keyset_pages_to_the_end(world: tuple[TestClient, GraphStore]) -> None:
    client, _ = world
    keys = registered_keys(client)
    with central(client) as c:
        ids = [c.submit_train({"definition": "count", "parameters": {"MIN": "5"}}, keys) for _ in range(3)]
        one_by_one = [t["id"] for t in c._pages("/api/trains", page=1)]  # noqa: SLF001  (a page per train)
        at_once = [t["id"] for t in c.trains()]
    assert one_by_one == at_once and sorted(one_by_one) == sorted(ids)  # each once, none lost, same order

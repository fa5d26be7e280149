"""Keys played by an attacker: enrollment tokens reused, stale or stolen for another station; claims without
possession of the key; researchers acting on others' keys; signatures after rotation and revocation."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
from central_store import new_central_store
import pytest
from api_helpers import ALICE, BOB, OPS, admin, service, station
from fastapi.testclient import TestClient
from pyoxigraph import Literal, Quad, Triple

from client.key_claims import KeyClaim, claim_triples, key_iri, prove_possession
from graph_store import CENTRAL_GRAPH, PHT, XSD, ChangeSet, GraphStore, batch_headers, station_graph
from orchestrator.errors import Forbidden
from orchestrator.key_registry import KeyRegistry
from orchestrator.keys import KeyDirectory
from orchestrator.naming import Iris
from trust import PartyKeys, Proof, ProofError, create_proof, encode_multikey, generate_keys, verify_proof

pytestmark = pytest.mark.central_stores

BASE = "https://pht.example.org/id/"
ALICE_IRI = BASE + "agents/alice"


@pytest.fixture()
def world() -> Iterator[tuple[TestClient, GraphStore]]:
    store = new_central_store()
    with service(store) as client:
        yield client, store


def central_size(store: GraphStore) -> int:
    return len(store.quads(None, None, None, CENTRAL_GRAPH))


def enrollment_token(client: TestClient, sid: str = "aachen") -> str:
    r = client.post(f"/api/stations/{sid}/enrollments", headers=OPS)
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def enroll(client: TestClient, token: str, keys: PartyKeys, sid: str = "aachen", **extra: object) -> httpx.Response:
    body = {**prove_possession(keys, f"{BASE}stations/{sid}").model_dump(), "token": token, **extra}
    return client.post(f"/api/stations/{sid}/enroll", json=body)


def test_an_enrollment_token_works_once(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = enrollment_token(client)
    first = enroll(client, token, generate_keys())
    assert first.status_code == 200, first.text
    size = central_size(store)
    again = enroll(client, token, generate_keys())
    assert again.status_code == 403
    assert again.json()["detail"] == "the enrollment token was used already; ask an operator for a new one"
    assert central_size(store) == size


def test_an_expired_enrollment_token_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = enrollment_token(client)
    enrollment = store.quads(None, PHT.tokenSha256, None, CENTRAL_GRAPH)[0].subject
    expiry = store.quads(enrollment, PHT.enrollmentExpires, None, CENTRAL_GRAPH)
    past = Literal((datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat(), datatype=XSD.dateTime)
    store.apply(ChangeSet(delete=expiry, insert=[Quad(enrollment, PHT.enrollmentExpires, past, CENTRAL_GRAPH)]))
    size = central_size(store)
    r = enroll(client, token, generate_keys())
    assert r.status_code == 403 and "expired" in r.json()["detail"]
    assert central_size(store) == size


def test_an_enrollment_token_for_another_station_is_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = enrollment_token(client, "aachen")
    size = central_size(store)
    r = enroll(client, token, generate_keys(), sid="leipzig")
    assert r.status_code == 403
    assert r.json()["detail"] == "the enrollment token was not issued for station leipzig"
    assert central_size(store) == size
    assert enroll(client, token, generate_keys()).status_code == 200  # still unused


def test_enrollment_needs_a_proof_by_the_enrolled_key(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = enrollment_token(client)
    keys, thief = generate_keys(), generate_keys()
    size = central_size(store)
    honest = prove_possession(keys, f"{BASE}stations/aachen").model_dump()
    without = {k: v for k, v in honest.items() if k != "proof"}
    r = client.post("/api/stations/aachen/enroll", json={**without, "token": token})
    assert r.status_code == 422 and "proof" in r.json()["detail"]
    # someone else's public key, with a proof made by the attacker's own key
    forged = prove_possession(thief, f"{BASE}stations/aachen").model_dump()
    r = client.post("/api/stations/aachen/enroll", json={**forged, "signing_key": honest["signing_key"],
                                                          "encryption_key": honest["encryption_key"], "token": token})
    assert r.status_code == 422 and r.json()["detail"].startswith("the proof of possession does not verify")
    # a proof made for another party (a captured claim replayed for this station)
    r = client.post("/api/stations/aachen/enroll", json={**prove_possession(keys, ALICE_IRI).model_dump(),
                                                          "token": token})
    assert r.status_code == 422 and r.json()["detail"].startswith("the proof of possession does not verify")
    assert central_size(store) == size
    assert enroll(client, token, keys).status_code == 200  # the token was not spent


def test_of_two_racing_uses_of_a_token_exactly_one_enrolls(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = enrollment_token(client)
    claims = [prove_possession(generate_keys(), f"{BASE}stations/aachen") for _ in range(2)]
    services = [KeyRegistry(store, Iris(BASE)) for _ in claims]  # two services: no shared lock
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def use(registry: KeyRegistry, claim: KeyClaim) -> None:
        barrier.wait()
        try:
            registry.enroll("aachen", token, claim)
            outcomes.append("enrolled")
        except Forbidden as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=use, args=pair) for pair in zip(services, claims)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["enrolled", "the enrollment token was used already; ask an operator for a new one"]
    current = [k for k in KeyDirectory(store).party_keys(f"{BASE}stations/aachen") if k.current]
    assert len(current) == 2  # one signing and one encryption key: the winner's


def test_a_researcher_cannot_register_or_revoke_anothers_key(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    alice = generate_keys()
    assert client.post("/api/keys", headers=ALICE, json=prove_possession(alice, ALICE_IRI).model_dump()
                       ).status_code == 201
    size = central_size(store)
    # alice's captured claim sent by bob: made for alice's IRI, it proves nothing for bob's
    r = client.post("/api/keys", headers=BOB, json=prove_possession(alice, ALICE_IRI).model_dump())
    assert r.status_code == 422 and r.json()["detail"].startswith("the proof of possession does not verify")
    # bob rotating alice's keys to his own
    r = client.post("/api/keys/rotate", headers=BOB, json={
        **prove_possession(generate_keys(), ALICE_IRI).model_dump(), "researcher": "alice"})
    assert r.status_code == 403 and r.json()["detail"] == "a researcher manages only their own keys"
    # bob, a station and another station's admin revoking alice's key
    alice_key = key_iri(ALICE_IRI, encode_multikey(alice.signing.public_key()))
    for caller in (BOB, admin("aachen")):
        r = client.post("/api/keys/revoke", headers=caller, json={"key": alice_key})
        assert r.status_code == 403 and r.json()["detail"] == "only the key's holder or an operator revokes it"
    assert client.post("/api/keys/revoke", headers=station("aachen"), json={"key": alice_key}).status_code == 403
    assert central_size(store) == size
    assert KeyDirectory(store).signing_key(alice_key, created=datetime.now(timezone.utc)) is not None


def _signed(keys: PartyKeys, method: str, created: datetime) -> tuple[list[Triple], Proof]:
    document = claim_triples("https://example.org/train-definition", signing_key="z1", encryption_key="z2")
    return document, create_proof(document, keys.signing, verification_method=method, created=created)


def test_after_rotation_old_proofs_verify_and_new_ones_need_the_new_key(world: tuple[TestClient, GraphStore]
                                                                        ) -> None:
    client, store = world
    old, new = generate_keys(), generate_keys()
    client.post("/api/keys", headers=ALICE, json=prove_possession(old, ALICE_IRI).model_dump())
    old_key = key_iri(ALICE_IRI, encode_multikey(old.signing.public_key()))
    before = datetime.now(timezone.utc)
    document, early = _signed(old, old_key, before)
    assert client.post("/api/keys/rotate", headers=ALICE, json=prove_possession(new, ALICE_IRI).model_dump()
                       ).status_code == 200
    directory = KeyDirectory(store)
    verify_proof(document, early, directory.resolver(created=before))
    later = datetime.now(timezone.utc)
    document, late = _signed(old, old_key, later)
    with pytest.raises(ProofError, match="not a known key"):
        verify_proof(document, late, directory.resolver(created=later))
    document, fresh = _signed(new, key_iri(ALICE_IRI, encode_multikey(new.signing.public_key())), later)
    verify_proof(document, fresh, directory.resolver(created=later))
    # a rotated-out key never comes back
    r = client.post("/api/keys/rotate", headers=ALICE, json=prove_possession(old, ALICE_IRI).model_dump())
    assert r.status_code == 409 and "never comes back" in r.json()["detail"]


def test_after_revocation_nothing_verifies(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = generate_keys()
    client.post("/api/keys", headers=ALICE, json=prove_possession(keys, ALICE_IRI).model_dump())
    key = key_iri(ALICE_IRI, encode_multikey(keys.signing.public_key()))
    made = datetime.now(timezone.utc) - timedelta(seconds=5)
    document, proof = _signed(keys, key, made)
    verify_proof(document, proof, KeyDirectory(store).resolver(created=made))
    r = client.post("/api/keys/revoke", headers=ALICE, json={"key": key})
    assert r.status_code == 200 and r.json()["revoked"]
    with pytest.raises(ProofError, match="not a known key"):  # made before the revocation: refused all the same
        verify_proof(document, proof, KeyDirectory(store).resolver(created=made))
    assert KeyDirectory(store).signing_key(key, created=made, now=made) is not None  # as checked before it
    r = client.post("/api/keys", headers=ALICE, json=prove_possession(keys, ALICE_IRI).model_dump())
    assert r.status_code == 409 and "revoked" in r.json()["detail"]


def _description_batch(client: TestClient, keys: PartyKeys, sequence: int) -> httpx.Response:
    body = f'<{BASE}stations/aachen> <http://purl.org/dc/terms/description> "batch {sequence}" .\n'.encode()
    headers = batch_headers(keys.signing, "aachen", f"b{sequence}", body, sequence=sequence)
    return client.post("/api/stations/aachen/metadata", content=body, headers={**station("aachen"), **headers})


def test_a_revoked_mpu_keys_batches_are_refused(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    keys = generate_keys()
    assert enroll(client, enrollment_token(client), keys).status_code == 200
    assert _description_batch(client, keys, 1).status_code == 200
    key = key_iri(f"{BASE}stations/aachen", encode_multikey(keys.signing.public_key()))
    assert client.post("/api/keys/revoke", headers=admin("aachen"), json={"key": key}).status_code == 200
    station_graph_before = len(store.quads(None, None, None, station_graph("aachen")))
    r = _description_batch(client, keys, 2)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert len(store.quads(None, None, None, station_graph("aachen"))
               ) == station_graph_before


def test_a_rotated_out_mpu_key_signs_no_new_batch(world: tuple[TestClient, GraphStore]) -> None:
    client, _ = world
    old, new = generate_keys(), generate_keys()
    assert enroll(client, enrollment_token(client), old).status_code == 200
    assert enroll(client, enrollment_token(client), new).status_code == 200
    assert _description_batch(client, old, 1).status_code == 401
    assert _description_batch(client, new, 1).status_code == 200

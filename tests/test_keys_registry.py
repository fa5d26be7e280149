"""Public keys in the registry, through the real app: researchers register theirs, stations enroll with a one-time
token, keys are rotated and revoked, and every write is the W3C Multikey RDF the named queries read back."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from central_store import new_central_store
import pytest
from api_helpers import ALICE, BOB, KEY, OPS, admin, service, station
from central_thread import central_service
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from pyoxigraph import Literal, NamedNode

from client import CentralClient, ClientError
from client.key_claims import claim_triples, key_iri, prove_possession
from graph_store import CENTRAL_GRAPH, GraphStore
from orchestrator.keys import KeyDirectory, multikey_of
from trust import (
    PartyKeys,
    create_proof,
    decode_encryption_key,
    encode_multikey,
    generate_keys,
    load_keys,
    verify_proof,
)

BASE = "https://pht.example.org/id/"
ALICE_IRI = BASE + "agents/alice"
AACHEN = BASE + "stations/aachen"
SEC = "https://w3id.org/security#"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def world() -> Iterator[tuple[TestClient, GraphStore]]:
    store = new_central_store()
    with service(store) as client:
        yield client, store


def claim_body(keys: PartyKeys, party: str, **extra: object) -> dict[str, object]:
    return {**prove_possession(keys, party).model_dump(), **extra}


def test_a_researcher_registers_keys_as_multikeys_in_the_central_graph(world: tuple[TestClient, GraphStore]
                                                                       ) -> None:
    client, store = world
    keys = generate_keys()
    r = client.post("/api/keys", headers=ALICE, json=claim_body(keys, ALICE_IRI))
    assert r.status_code == 201, r.text
    signing = encode_multikey(keys.signing.public_key())
    encryption = encode_multikey(keys.encryption.public_key())
    assert r.json()["party"] == ALICE_IRI
    assert {(k["use"], k["multibase"]) for k in r.json()["keys"]} == {("signing", signing), ("encryption", encryption)}
    key = NamedNode(key_iri(ALICE_IRI, signing))
    assert key.value == f"{ALICE_IRI}/keys/{hashlib.sha256(signing.encode()).hexdigest()[:24]}"
    # the RDF is the W3C one: party -> key by use, the key a Multikey with its controller and multibase
    assert store.quads(NamedNode(ALICE_IRI), NamedNode(SEC + "assertionMethod"), key, CENTRAL_GRAPH)
    assert store.quads(key, NamedNode(SEC + "publicKeyMultibase"),
                       Literal(signing, datatype=NamedNode(SEC + "multibase")), CENTRAL_GRAPH)
    enc = NamedNode(key_iri(ALICE_IRI, encryption))
    assert store.quads(NamedNode(ALICE_IRI), NamedNode(SEC + "keyAgreement"), enc, CENTRAL_GRAPH)
    # the same keys again: 200, nothing new
    before = len(store.quads(None, None, None, CENTRAL_GRAPH))
    again = client.post("/api/keys", headers=ALICE, json=claim_body(keys, ALICE_IRI))
    assert again.status_code == 200 and len(store.quads(None, None, None, CENTRAL_GRAPH)) == before
    # other keys while these are current: rotate instead
    other = client.post("/api/keys", headers=ALICE, json=claim_body(generate_keys(), ALICE_IRI))
    assert other.status_code == 409 and "rotate" in other.json()["detail"]
    # anyone authenticated reads them; what they read decodes to the key
    # without a party, a caller reads their own: a station token its station's
    assert client.get("/api/keys", headers=station("aachen")).json()["party"] == AACHEN
    listed = client.get("/api/keys", params={"researcher": "alice"}, headers=station("leipzig")).json()
    by_use = {k["use"]: k for k in listed["keys"]}
    assert decode_encryption_key(by_use["encryption"]["multibase"]) is not None
    assert by_use["signing"]["expires"] is None and by_use["signing"]["revoked"] is None


def test_the_client_and_the_cli_flow_register_and_rotate(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    token = ALICE["Authorization"].removeprefix("Bearer ")
    with CentralClient("http://testserver", token, transport=client._transport) as central:
        first, second = generate_keys(), generate_keys()
        central.register_keys(first)
        rotated = central.rotate_keys(second)
        keys = {k["multibase"]: k for k in rotated["keys"]}
        assert keys[encode_multikey(first.signing.public_key())]["expires"] is not None
        assert keys[encode_multikey(second.signing.public_key())]["expires"] is None
        revoked = central.revoke_key(key_iri(ALICE_IRI, encode_multikey(second.signing.public_key())))
        assert revoked["revoked"] is not None
        with pytest.raises(ClientError, match="revoked already") as refused:
            central.revoke_key(revoked["iri"])
        assert refused.value.status == 409


def test_a_station_enrolls_with_a_one_time_token(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    r = client.post("/api/stations/aachen/enrollments", headers=OPS)
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    assert len(token) >= 43  # 256 bits, URL-safe base64
    # the graph holds the token's SHA-256, never the token
    digests = [q.object.value for q in store.quads(None, NamedNode("https://w3id.org/pht-kg/vocab#tokenSha256"),
                                                    None, CENTRAL_GRAPH)]
    assert digests == [hashlib.sha256(token.encode()).hexdigest()]
    assert not [q for q in store.quads(None, None, None, None) if token in str(q.object)]
    keys = generate_keys()
    # no bearer token: the enrollment token is the credential
    done = client.post("/api/stations/aachen/enroll", json=claim_body(keys, AACHEN, token=token))
    assert done.status_code == 200, done.text
    current = {k["multibase"]: k for k in done.json()["keys"]}
    assert current[encode_multikey(keys.signing.public_key())]["expires"] is None
    # the key the operator registered with the station (PEM) was rotated out by the enrollment
    assert current[multikey_of(KEY)[0]]["expires"] is not None


def test_the_station_admin_and_operators_rotate_a_stations_keys(world: tuple[TestClient, GraphStore]) -> None:
    client, _ = world
    keys = generate_keys()
    r = client.post("/api/keys/rotate", headers=admin("aachen"), json=claim_body(keys, AACHEN))
    assert r.status_code == 200, r.text
    assert r.json()["party"] == AACHEN
    r = client.post("/api/keys/rotate", headers=OPS, json=claim_body(generate_keys(), AACHEN, station="aachen"))
    assert r.status_code == 200, r.text
    signing = [k for k in r.json()["keys"] if k["use"] == "signing"]
    assert [k["expires"] is None for k in signing] == [False, False, True]
    # another station's admin may not
    r = client.post("/api/keys/rotate", headers=admin("leipzig"), json=claim_body(generate_keys(), AACHEN,
                                                                                   station="aachen"))
    assert r.status_code == 403 and r.json()["detail"].endswith("manages its keys")


def test_a_station_registered_with_multikeys_or_pem_gets_both_uses(world: tuple[TestClient, GraphStore]) -> None:
    client, _ = world
    keys = generate_keys()
    x25519_pem = keys.encryption.public_key().public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    signing = encode_multikey(keys.signing.public_key())
    r = client.post("/api/stations", headers=OPS, json={"id": "bonn", "title": "Bonn", "owner": "Bonn hospital",
                                                         "public_keys": [signing, x25519_pem]})
    assert r.status_code == 201, r.text
    listed = client.get("/api/keys", params={"station": "bonn"}, headers=BOB).json()["keys"]
    assert {(k["use"], k["multibase"]) for k in listed} == {
        ("signing", signing), ("encryption", encode_multikey(keys.encryption.public_key()))}
    # no keys at all is fine (they come by enrollment); an RSA key or a stray string is refused in one sentence
    assert client.post("/api/stations", headers=OPS, json={"id": "koeln", "title": "K", "owner": "K"}).status_code == 201
    bad = client.post("/api/stations", headers=OPS, json={"id": "essen", "title": "E", "owner": "E",
                                                           "public_keys": ["ssh-ed25519 AAAA"]})
    assert bad.status_code == 422 and "neither a Multikey" in bad.json()["detail"]
    assert client.get("/api/keys", params={"station": "essen"}, headers=BOB).json()["keys"] == []


def test_key_directory_follows_rotation_and_revocation(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    old, new = generate_keys(), generate_keys()
    assert client.post("/api/keys", headers=ALICE, json=claim_body(old, ALICE_IRI)).status_code == 201
    old_iri = key_iri(ALICE_IRI, encode_multikey(old.signing.public_key()))
    directory = KeyDirectory(store)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert directory.signing_key(old_iri, created=before) == old.signing.public_key()
    assert client.post("/api/keys/rotate", headers=ALICE, json=claim_body(new, ALICE_IRI)).status_code == 200
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert directory.signing_key(old_iri, created=before) == old.signing.public_key()
    assert directory.signing_key(old_iri, created=after) is None
    new_iri = key_iri(ALICE_IRI, encode_multikey(new.signing.public_key()))
    assert directory.signing_key(new_iri, created=after) == new.signing.public_key()
    # an encryption key is never a signing key; an unknown IRI or a non-IRI resolves to nothing
    enc_iri = key_iri(ALICE_IRI, encode_multikey(new.encryption.public_key()))
    assert directory.signing_key(enc_iri, created=after) is None
    assert directory.signing_key(ALICE_IRI + "/keys/nope", created=after) is None
    assert directory.signing_key("not an iri", created=after) is None
    # the named query behind GET /api/keys gives the same picture
    rows = list(store.run_query("party_keys", party=NamedNode(ALICE_IRI)))
    assert sorted((r["use"].value, r["expires"] is not None) for r in rows) == [
        ("encryption", False), ("encryption", True), ("signing", False), ("signing", True)]


def test_a_proof_made_with_a_registered_key_verifies_through_the_directory(world: tuple[TestClient, GraphStore]
                                                                          ) -> None:
    client, store = world
    keys = generate_keys()
    client.post("/api/keys", headers=ALICE, json=claim_body(keys, ALICE_IRI))
    document = claim_triples("https://example.org/doc", signing_key="z", encryption_key="z")
    created = datetime.now(timezone.utc)
    method = key_iri(ALICE_IRI, encode_multikey(keys.signing.public_key()))
    proof = create_proof(document, keys.signing, verification_method=method, created=created)
    verify_proof(document, proof, KeyDirectory(store).resolver(created=created))


def test_refusals_are_one_sentence_and_write_nothing(world: tuple[TestClient, GraphStore]) -> None:
    client, store = world
    before = len(store.quads(None, None, None, CENTRAL_GRAPH))
    keys = generate_keys()
    stale = prove_possession(keys, ALICE_IRI, created=datetime.now(timezone.utc) - timedelta(hours=1)).model_dump()
    cases = [
        (client.post("/api/keys", headers=ALICE, json=stale), 422, "more than 10 minutes"),
        (client.post("/api/keys", headers=ALICE, json={**claim_body(keys, ALICE_IRI), "signing_key": "z6Mk"}),
         422, "signing_key"),
        (client.post("/api/keys", headers=OPS, json=claim_body(keys, ALICE_IRI)), 403, "researcher"),
        (client.post("/api/keys/revoke", headers=ALICE, json={"key": ALICE_IRI + "/keys/none"}), 404, "no registered"),
        (client.post("/api/keys/rotate", headers=OPS, json=claim_body(keys, ALICE_IRI)), 422, "name the station"),
        (client.post("/api/keys/rotate", headers=OPS, json=claim_body(keys, AACHEN, station="nowhere")), 404,
         "not registered"),
        (client.get("/api/keys", params={"station": "aachen", "researcher": "alice"}, headers=BOB), 422, "not both"),
        (client.get("/api/keys", headers=OPS), 422, "name the station or the researcher"),
        (client.post("/api/stations/nowhere/enrollments", headers=OPS), 404, "not registered"),
        (client.post("/api/stations/aachen/enroll", json=claim_body(keys, AACHEN, token="x" * 43)), 403,
         "not valid"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert words in detail and "\n" not in detail and "Traceback" not in detail, detail
    assert len(store.quads(None, None, None, CENTRAL_GRAPH)) == before


# -- the command line ------------------------------------------------------------------------------------------


def cli(*args: str, token: str | None = None, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PHT_TOKEN", "PHT_KEYS_DIR", "PHT_ENROLLMENT_TOKEN")}
    env.update({"COLUMNS": "200", **({"PHT_TOKEN": token} if token else {}), **({"HOME": str(home)} if home else {})})
    return subprocess.run([sys.executable, "-m", "pht_cli.main", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)


def test_pht_keys_init_rotate_and_revoke(tmp_path: Path) -> None:
    alice = ALICE["Authorization"].removeprefix("Bearer ")
    with central_service() as central:
        done = cli("keys", "init", "--central", central.url, token=alice, home=tmp_path)
        assert done.returncode == 0, done.stderr
        directory = tmp_path / ".config" / "pht" / "keys"  # the default, under HOME
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert {stat.S_IMODE(f.stat().st_mode) for f in directory.iterdir()} == {0o600}
        first = load_keys(directory)
        assert encode_multikey(first.signing.public_key()) in {
            k.multibase for k in KeyDirectory(central.store).party_keys(ALICE_IRI) if k.current}
        again = cli("keys", "init", "--central", central.url, "--dir", str(directory), token=alice)
        assert again.returncode == 0 and "kept keys" in again.stdout, again.stderr
        rotated = cli("keys", "rotate", "--central", central.url, "--dir", str(directory), token=alice)
        assert rotated.returncode == 0, rotated.stderr
        retired = [p for p in tmp_path.joinpath(".config", "pht").iterdir() if p.name.startswith("keys-retired-")]
        assert len(retired) == 1 and load_keys(retired[0]).signing.public_key() == first.signing.public_key()
        current = {k.multibase for k in KeyDirectory(central.store).party_keys(ALICE_IRI) if k.current}
        assert current == {encode_multikey(load_keys(directory).signing.public_key()),
                           encode_multikey(load_keys(directory).encryption.public_key())}
        old_key = key_iri(ALICE_IRI, encode_multikey(first.signing.public_key()))
        revoked = cli("keys", "revoke", old_key, "--central", central.url, token=alice)
        assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
        twice = cli("keys", "revoke", old_key, "--central", central.url, token=alice)
        assert twice.returncode == 1 and "was revoked already" in twice.stderr and "Traceback" not in twice.stderr
        # a refused rotation (a researcher rotating a station's keys) leaves the key directory as it was
        kept = load_keys(directory).signing.public_key()
        refused = cli("keys", "rotate", "--central", central.url, "--dir", str(directory), "--station", "aachen",
                      token=alice)
        assert refused.returncode == 1, refused.stdout
        assert refused.stderr.strip() == "error: only station aachen's admin or an operator manages its keys"
        assert not directory.with_name("keys.new").exists() and load_keys(directory).signing.public_key() == kept


def test_pht_station_enrollment_token_and_enroll(tmp_path: Path) -> None:
    ops = OPS["Authorization"].removeprefix("Bearer ")
    with central_service() as central:
        with CentralClient(central.url, ops) as client:
            client.register_station({"id": "bonn", "title": "Bonn", "owner": "Bonn hospital"})
        issued = cli("station", "enrollment-token", "bonn", "--central", central.url, "--hours", "1", token=ops)
        assert issued.returncode == 0, issued.stderr
        token = issued.stdout.strip()
        assert len(token) >= 43 and "pht station enroll bonn" in issued.stderr
        keys = tmp_path / "bonn-keys"
        done = cli("station", "enroll", "bonn", "--central", central.url, "--token", token, "--keys", str(keys))
        assert done.returncode == 0, done.stderr
        signing = encode_multikey(load_keys(keys).signing.public_key())
        assert [k.multibase for k in KeyDirectory(central.store).party_keys(BASE + "stations/bonn")
                if k.current and k.use == "signing"] == [signing]
        reused = cli("station", "enroll", "bonn", "--central", central.url, "--token", token, "--keys", str(keys))
        assert reused.returncode == 1 and "used already" in reused.stderr and "Traceback" not in reused.stderr
        wrong = cli("station", "enrollment-token", "nowhere", "--central", central.url, token=ops)
        assert wrong.returncode == 1 and "not registered" in wrong.stderr

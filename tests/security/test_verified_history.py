"""Station-signed execution records, chained, and ``pht verify`` (issue 14, item 4), played by the attacker.

A real platform (central service over HTTP, three station agents with their MPUs, trains as local processes) runs
incremental trains whose stations approve and release by policy. Every released hop carries a record its station
signed; ``pht verify`` checks the chain from the graph alone. Then an operator (or anyone who can write the central
store) edits the history in each way the issue names -- deletes an approval, edits a digest, drops a hop -- and in a
few more, each on a train of its own; ``pht verify`` names the break and exits 1, and the web page says what broke.
Bad records at the release step (another station's key, another output, garbage, a revoked key) are refused with
one sentence and nothing is written.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from self_releasing_platform import self_releasing_platform

from client import ClientError, OutputIn
from client.execution_records import ExecutionRecord, proof_node, record_node, sign_record, verify_chain
from local_platform import LocalPlatform
from orchestrator.principal import Role
from station.records import RecordSigner
from station.runtimes.process import folder_digest

REPO = Path(__file__).resolve().parents[2]
PHT = [sys.executable, "-m", "pht_cli.main"]
ROUTE = ("aachen", "bonn", "cologne")
TRAIN = """import json, os, pathlib
total = 1
for path in sorted(pathlib.Path(os.environ["PHT_INPUT_DIR"]).rglob("result.json")):
    total += json.loads(path.read_text())["hops"]
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps({"hops": total}))
"""
PREFIXES = ("PREFIX pht: <https://w3id.org/pht-kg/vocab#>\nPREFIX prov: <http://www.w3.org/ns/prov#>\n"
            "PREFIX sec: <https://w3id.org/security#>\n")


@dataclass
class World:
    platform: LocalPlatform
    tmp: Path

    def iri(self, tid: str) -> str:
        return str(self.platform.client("alice").train(tid)["iri"])

    def run_train(self) -> str:
        alice = self.platform.client("alice")
        tid = alice.submit("hops")
        assert alice.wait(tid, timeout_s=120)["state"] == "finished", alice.events(tid)
        return tid

    def executions(self, tid: str) -> list[dict]:
        """The train's executions in route order, each with its IRI (``iri``)."""
        train = self.platform.client("alice").train(tid)
        base = train["iri"][:train["iri"].rindex("trains/")]
        return sorted(({**e, "iri": f"{base}executions/{e['id']}"} for e in train["executions"]),
                      key=lambda e: e["stop"])

    def operator_update(self, sparql: str) -> None:
        token = self.platform.token("ops", Role.OPERATOR)
        r = httpx.post(self.platform.url + "/sparql", data={"update": PREFIXES + sparql},
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code in (200, 204), r.text

    def verify(self, tid: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
        env.update(PHT_TOKEN=self.platform.token("alice", Role.RESEARCHER), PHT_CENTRAL_URL=self.platform.url,
                   COLUMNS="200")
        return subprocess.run([*PHT, "verify", tid], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("verified")
    with self_releasing_platform(tmp, ROUTE, TRAIN, "hops-train") as (platform, train):
        platform.client("alice").register_definition({
            "id": "hops", "title": "hops", "image_name": str(train), "image_digest": folder_digest(train),
            "mode": "incremental", "route": list(ROUTE)})
        yield World(platform, tmp)


# -- an untouched history verifies ----------------------------------------------------------------------------------

def test_a_finished_train_verifies_from_the_graph_alone(world: World) -> None:
    tid = world.run_train()
    statements = world.platform.client("alice").provenance(world.iri(tid))
    verdict = verify_chain(statements, world.iri(tid), now=datetime.now(timezone.utc))
    assert verdict.verified, verdict.breaks
    assert verdict.verified_hops == 3
    records = {s.subject for s in statements if str(s.predicate).endswith("#recordOf>")}
    assert len(records) == 3  # one signed record per hop, each naming the hop before
    result = world.verify(tid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verified" in result.stdout and "3 of 3 hops" in result.stdout


def test_the_web_page_says_verified(world: World) -> None:
    tid = world.run_train()
    page = httpx.get(f"{world.platform.url}/ui/trains/{tid}", timeout=30,
                     headers={"Authorization": f"Bearer {world.platform.token('alice', Role.RESEARCHER)}"})
    assert page.status_code == 200
    assert 'class="verified">verified</span>' in page.text


# -- the operator edits the history: each edit is named ---------------------------------------------------------

def _breaks(world: World, tid: str) -> str:
    result = world.verify(tid)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT verified" in result.stdout
    return result.stdout


def test_a_deleted_approval_is_named(world: World) -> None:
    tid = world.run_train()
    second = world.executions(tid)[1]["iri"]
    world.operator_update(f"DELETE {{ GRAPH ?g {{ ?e ?p ?o }} }} WHERE {{ GRAPH ?g {{ ?e pht:aboutExecution <{second}> . "
                          f"?e pht:toState pht:Approved . ?e ?p ?o }} }}")
    out = _breaks(world, tid)
    assert "holds no approval of stop 1 of round 1 at bonn" in out
    page = httpx.get(f"{world.platform.url}/ui/trains/{tid}", timeout=30,
                     headers={"Authorization": f"Bearer {world.platform.token('alice', Role.RESEARCHER)}"})
    assert "not verified" in page.text and "holds no approval of stop 1" in page.text


def test_an_edited_output_digest_is_named(world: World) -> None:
    tid = world.run_train()
    first = world.executions(tid)[0]["iri"]
    world.operator_update(f"DELETE {{ GRAPH ?g {{ ?o pht:sha256 ?d }} }} INSERT {{ GRAPH ?g {{ ?o pht:sha256 "
                          f"\"{'0' * 64}\" }} }} WHERE {{ GRAPH ?g {{ ?o prov:wasGeneratedBy <{first}> ; "
                          f"pht:sha256 ?d }} }}")
    out = _breaks(world, tid)
    assert "the output digest of stop 0 of round 1 at aachen" in out


def test_a_deleted_hop_is_named(world: World) -> None:
    tid = world.run_train()
    middle = world.executions(tid)[1]["iri"]
    world.operator_update(f"DELETE {{ GRAPH ?g {{ ?s ?p ?o }} }} WHERE {{ GRAPH ?g {{ "
                          f"{{ BIND(<{middle}> AS ?s) }} UNION {{ ?s prov:wasGeneratedBy <{middle}> }} UNION "
                          f"{{ <{middle}> pht:executionRecord|pht:recordProof ?s }} ?s ?p ?o }} }}")
    out = _breaks(world, tid)
    assert "a hop is missing" in out


def test_an_edited_record_no_longer_verifies(world: World) -> None:
    tid = world.run_train()
    last = world.executions(tid)[2]["iri"]
    world.operator_update(f"DELETE {{ GRAPH ?g {{ <{last}/record> pht:releasedHow ?h }} }} INSERT {{ GRAPH ?g {{ "
                          f"<{last}/record> pht:releasedHow \"admin\" }} }} WHERE {{ GRAPH ?g {{ <{last}/record> "
                          f"pht:releasedHow ?h }} }}")
    out = _breaks(world, tid)
    assert "the record of stop 2 of round 1 at cologne" in out and "does not verify" in out


def test_a_deleted_record_is_named(world: World) -> None:
    tid = world.run_train()
    first = world.executions(tid)[0]["iri"]
    world.operator_update(f"DELETE {{ GRAPH ?g {{ ?s ?p ?o }} }} WHERE {{ GRAPH ?g {{ <{first}> "
                          f"pht:executionRecord|pht:recordProof ?s . ?s ?p ?o }} }}")
    out = _breaks(world, tid)
    assert "stop 0 of round 1 at aachen" in out and "has no signed record of its station" in out


def test_an_edited_signed_request_is_named(world: World) -> None:
    tid = world.run_train()
    iri = world.iri(tid)
    world.operator_update(f"DELETE {{ GRAPH ?g {{ ?r pht:requestedBy ?who }} }} INSERT {{ GRAPH ?g {{ ?r "
                          f"pht:requestedBy <{iri}/someone-else> }} }} WHERE {{ GRAPH ?g {{ <{iri}> "
                          f"pht:signedRequest ?r . ?r pht:requestedBy ?who }} }}")
    out = _breaks(world, tid)
    assert "the train's signed request does not verify" in out


def test_a_proof_pointed_at_another_stations_key_is_named(world: World) -> None:
    """``train_provenance.rq`` reads only the keys the train's proofs name (not the whole registry): a proof an
    operator points at another station's registered signing key still brings that key, and the check names it."""
    tid = world.run_train()
    first = world.executions(tid)[0]["iri"]
    bonn = world.platform.client("station-bonn", Role.STATION, "bonn")
    key = next(k["iri"] for k in bonn.keys(station="bonn")["keys"] if k["use"] == "signing" and not k["revoked"])
    world.operator_update(f"DELETE {{ GRAPH ?g {{ <{first}/record-proof> sec:verificationMethod ?k }} }} INSERT {{ "
                          f"GRAPH ?g {{ <{first}/record-proof> sec:verificationMethod <{key}> }} }} WHERE {{ GRAPH ?g "
                          f"{{ <{first}/record-proof> sec:verificationMethod ?k }} }}")
    statements = world.platform.client("alice").provenance(world.iri(tid))
    assert any(s.subject.value == key for s in statements)  # the named key is in the answer
    out = _breaks(world, tid)
    assert "stop 0 of round 1 at aachen" in out and "not a signing key of its station" in out


# -- bad records at the release step: refused, nothing written ---------------------------------------------------

@contextlib.contextmanager
def _held(world: World) -> Iterator[tuple[str, str]]:
    """A train held for review at its first station, aachen, whose admin decides meanwhile: (train id, first
    execution id); the train is cancelled and aachen releases by policy again afterwards."""
    alice = world.platform.client("alice")
    aachen = next(s for s in world.platform.stations if s.id == "aachen")
    object.__setattr__(aachen, "policy", replace(aachen.policy, requires_output_review=True))
    tid = alice.submit("hops")
    try:
        for final in alice.watch([tid], timeout_s=60):
            first = next((e for e in final[tid]["executions"] if e["stop"] == 0), None)
            if first is not None and first["state"] == "output-under-review":
                yield tid, first["id"]
                return
        raise AssertionError("the train was never held for review")
    finally:
        alice.cancel(tid, "test over")
        object.__setattr__(aachen, "policy", replace(aachen.policy, requires_output_review=False))


def _record_for(world: World, execution: str, signer_station: str, *, output: str,
                created: datetime | None = None) -> str:
    alice = world.platform.client("alice")
    train = alice.train(execution.split(".")[0])
    iri = next(e["iri"] for e in world.executions(train["id"]) if e["id"] == execution)
    client = world.platform.client(f"station-{signer_station}", Role.STATION, signer_station)
    signer = RecordSigner(client, signer_station, world.platform.workdir / "keys" / signer_station)
    aachen = world.platform.client("station-aachen", Role.STATION, "aachen").keys(station="aachen")["party"]
    record = ExecutionRecord(execution=iri, train=str(train["iri"]), station=aachen, round=1, stop=0,
                             signed_request_hash="a" * 64, image_digest="sha256:" + "b" * 64, input_digests=(),
                             previous_record_hashes=(), output_digest=output, approved_how="auto",
                             released_how="admin", started="2026-12-03T10:00:00Z", ended="2026-12-03T10:00:01Z")
    if created is None:
        return signer.sign(record, released_how="admin")
    proof = sign_record(record, signer.keys().signing, verification_method=signer.identity()[1], created=created)
    return "".join(f"{t} .\n" for t in record.triples() + proof.to_triples(proof_node(record.execution)))


@pytest.mark.parametrize("case", ["another station's key", "another output", "garbage", "stranger subject",
                                  "replayed record of another execution", "time not as the store keeps it"])
def test_a_bad_record_at_release_is_refused_and_nothing_is_written(world: World, case: str) -> None:
    other = world.executions(world.run_train())[0]["id"]  # a finished train's first hop, for the replay
    with _held(world) as (tid, execution):
        _refused_at_release(world, tid, execution, case, other)


def _refused_at_release(world: World, tid: str, execution: str, case: str, other: str) -> None:
    station = world.platform.client("station-aachen", Role.STATION, "aachen")
    digest = "c" * 64
    if case == "another station's key":
        text = _record_for(world, execution, "bonn", output=digest)
    elif case == "another output":
        text = _record_for(world, execution, "aachen", output="d" * 64)
    elif case == "garbage":
        text = "<a> <b> this is not N-Triples"
    elif case == "time not as the store keeps it":  # signed with ".120000": stored as ".12", it would not verify
        text = _record_for(world, execution, "aachen", output=digest,
                           created=datetime(2026, 12, 3, 10, 0, 0, 120000, tzinfo=timezone.utc))
    elif case == "replayed record of another execution":
        text = _record_for(world, other, "aachen", output=digest)
    else:
        text = _record_for(world, execution, "aachen", output=digest) + "<urn:x> <urn:y> <urn:z> .\n"
    with pytest.raises(ClientError) as refused:
        station.step(execution, "released", reason="test", output=OutputIn(sha256=digest, byte_size=1, record=text))
    assert refused.value.status in (403, 422)
    assert "\n" not in str(refused.value) and "record" in str(refused.value)
    alice = world.platform.client("alice")
    first = world.executions(tid)[0]
    assert first["state"] == "output-under-review"  # nothing written: not released, no record
    statements = alice.provenance(world.iri(tid))
    assert not any(s.subject == record_node(first["iri"]) or s.subject == proof_node(first["iri"])
                   for s in statements)


def test_a_record_signed_with_a_revoked_key_is_refused(world: World) -> None:
    """Last in this module: aachen's signing key stays revoked."""
    with _held(world) as (_, execution):
        text = _record_for(world, execution, "aachen", output="c" * 64)
        ops = world.platform.client("ops", Role.OPERATOR)
        station = world.platform.client("station-aachen", Role.STATION, "aachen")
        key = next(k["iri"] for k in station.keys(station="aachen")["keys"]
                   if k["use"] == "signing" and not k["revoked"])
        ops.revoke_key(key)
        with pytest.raises(ClientError) as refused:
            station.step(execution, "released", reason="test",
                         output=OutputIn(sha256="c" * 64, byte_size=1, record=text))
        assert refused.value.status == 403 and "revoked" in str(refused.value)


def test_verify_names_an_unknown_train_in_one_sentence(world: World) -> None:
    result = world.verify("no-such-train")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0

"""End-to-end encrypted results (issue 14 item 3): every output leaves its station sealed to exactly its next readers,
and every bad ciphertext or reader key is refused with one sentence, leaving nothing partial or decrypted.

A real central service (HTTP, in a thread), stations enrolled with their own keys (as ``pht station enroll`` does),
a researcher with registered keys who signs her trains, and agents with a scripted runtime (no container engine:
each test plays the train it needs). The attacker is the central side: it may replace objects in the store and
edit the graph (an operator's SPARQL Update).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from api_helpers import OPS, SETTINGS, token
from central_thread import Central, central_service
from release_gate_world import RecordingEvents, ScriptedRuntime, station_settings, writes

from client import CentralClient, ClientError
from client.key_claims import keys_in
from local_platform.setup import enroll_station
from orchestrator.principal import Role
from station.agent import StationAgent
from station.encryption import UNSIGNED, EncryptionRefused, readers_for
from station.objects import LocalObjectStore
from station.policy import StationPolicy
from trust import PartyKeys, SealError, generate_keys, load_keys, open_sealed, seal

REPO = Path(__file__).resolve().parents[2]
AUTO = StationPolicy(requires_approval=False, requires_output_review=False)
CENTRAL = "https://w3id.org/pht-kg/graph/central"
PHT_NS = "https://w3id.org/pht-kg/vocab#"
FIRST = '{"partial_sum": 4711.0815}'
FINAL = '{"count": 2718.2818}'


@dataclass
class World:
    central: Central
    tmp: Path
    ops: CentralClient
    alice: CentralClient
    objects: LocalObjectStore
    agents: dict[str, StationAgent] = field(default_factory=dict)
    closing: list[Any] = field(default_factory=list)

    def keys(self, sid: str) -> PartyKeys:
        return load_keys(self.tmp / "keys" / sid)

    def agent(self, sid: str, train: Any) -> StationAgent:
        settings = station_settings(self.tmp, self.central.url, sid)
        agent = StationAgent(settings, runtime=ScriptedRuntime(train), objects=self.objects,
                             events=RecordingEvents(sid), policy_loader=lambda: AUTO)
        self.agents[sid] = agent
        self.closing.append(agent)
        return agent

    def define(self, did: str, route: tuple[str, ...]) -> None:
        self.alice.register_definition({"id": did, "title": did, "image_name": "pht/count",
                                        "image_digest": "sha256:" + "5e" * 32, "mode": "incremental",
                                        "route": list(route), "parameters": []})

    def poll(self, *sids: str) -> None:
        for sid in sids:
            self.agents[sid].poll_once()

    def execution(self, tid: str, index: int) -> dict[str, Any]:
        return dict(self.alice.train(tid)["executions"][index])

    def reasons(self, tid: str) -> list[str]:
        return [e.get("reason") or "" for e in self.ops.events(tid)]


def _update(url: str, sparql: str) -> None:
    import httpx
    r = httpx.post(url + "/sparql", headers=OPS, data={"update": sparql}, timeout=30)
    assert r.status_code in (200, 204), r.text


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with central_service(settings=replace(SETTINGS, results_store_url=f"file://{tmp_path / 'objects'}")) as central:
        ops = CentralClient(central.url, OPS["Authorization"][7:])
        for sid in ("aachen", "leipzig"):
            enroll_station(ops, sid, tmp_path / "keys" / sid)
        keys, _ = keys_in(tmp_path / "keys" / "alice")
        alice_token = token("alice", Role.RESEARCHER)["Authorization"][7:]
        alice = CentralClient(central.url, alice_token, keys=keys)
        alice.register_keys(keys)
        w = World(central, tmp_path, ops, alice, LocalObjectStore(tmp_path / "objects"), closing=[ops, alice])
        try:
            yield w
        finally:
            for c in w.closing:
                c.close()


def two_stops(world: World) -> str:
    """A signed train over aachen then leipzig; aachen runs and releases (its output sealed to leipzig)."""
    world.define("two", ("aachen", "leipzig"))
    world.agent("aachen", writes({"partial.json": FIRST}))
    world.agent("leipzig", writes({"result.json": FINAL}))
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    first = world.execution(tid, 0)
    assert first["state"] == "released", world.reasons(tid)
    return tid


def nothing_decrypted(world: World, sid: str) -> None:
    """The station's state folder holds no input, plain or sealed, and no partial file: only its approvals and the
    researchers' keys it pinned."""
    left = sorted(p.relative_to(world.tmp) for p in (world.tmp / "state" / sid).rglob("*") if p.is_file())
    assert left == [Path("state", sid, "approvals.jsonl"), Path("state", sid, "pinned-keys.json")], left


# -- what is sealed to whom --------------------------------------------------------------------------------------


def test_each_output_is_sealed_to_exactly_its_next_reader(world: World) -> None:
    tid = two_stops(world)
    world.poll("leipzig")
    train = world.alice.train(tid)
    assert train["state"] == "finished", world.reasons(tid)
    first, last = (Path(world.objects.path_for(e["output_sha256"])).read_bytes() for e in train["executions"])
    for ciphertext in (first, last):
        assert ciphertext.startswith(b"age-encryption.org/v1\n")
    assert open_sealed(first, world.keys("leipzig").encryption) == _packed(world, FIRST, "partial.json")
    assert open_sealed(last, world.alice.party_keys.encryption) == _packed(world, FINAL, "result.json")
    for other in (world.keys("aachen").encryption, world.alice.party_keys.encryption):
        with pytest.raises(SealError, match="not encrypted to this key"):
            open_sealed(first, other)
    for other in (world.keys("aachen").encryption, world.keys("leipzig").encryption):
        with pytest.raises(SealError, match="not encrypted to this key"):
            open_sealed(last, other)
    out = world.tmp / "result.tar.gz"
    assert world.alice.open_result(tid, out) == train["executions"][-1]["output_sha256"]
    assert out.read_bytes() == _packed(world, FINAL, "result.json")


def _packed(world: World, text: str, name: str) -> bytes:
    from station.archive import pack
    folder = world.tmp / "expected" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return pack(folder)


# -- bad ciphertext ----------------------------------------------------------------------------------------------


def _attack(world: World, tid: str, ciphertext: bytes) -> str:
    """The central side replaces aachen's released output by ``ciphertext`` and records its digest; leipzig
    polls. Returns leipzig's execution id."""
    bad = world.tmp / "bad.age"
    bad.write_bytes(ciphertext)
    digest = world.objects.put_file(bad)
    first = world.execution(tid, 0)
    _update(world.central.url, _digest_update(first["id"], digest))
    world.poll("leipzig")
    return str(world.execution(tid, 1)["id"])


def _digest_update(execution: str, sha256: str) -> str:
    return (f"PREFIX pht: <{PHT_NS}> DELETE {{ GRAPH <{CENTRAL}> {{ ?o pht:sha256 ?d }} }} "
            f"INSERT {{ GRAPH <{CENTRAL}> {{ ?o pht:sha256 \"{sha256}\" }} }} "
            f"WHERE {{ GRAPH <{CENTRAL}> {{ ?o a pht:Output ; pht:sha256 ?d . "
            f"FILTER(STRENDS(STR(?o), \"/outputs/{execution}\")) }} }}")


def _failed_with(world: World, tid: str, execution: str, *fragments: str) -> str:
    state = world.alice.train(tid)
    assert state["state"] == "failed" and state["executions"][1]["state"] == "failed", state
    reason = next(r for r in world.reasons(tid) if "input 0" in r or all(f in r for f in fragments))
    for fragment in fragments:
        assert fragment in reason, reason
    assert "\n" not in reason and "Traceback" not in reason
    nothing_decrypted(world, "leipzig")
    return reason


def test_a_ciphertext_for_another_recipient_is_refused(world: World) -> None:
    tid = two_stops(world)
    forged = seal(_packed(world, '{"count": 1}', "result.json"), [generate_keys().encryption.public_key()])
    execution = _attack(world, tid, forged)
    _failed_with(world, tid, execution, "input 0", "not encrypted to this key")


@pytest.mark.parametrize(("keep", "says"), [(60, "truncated"), (-20, "cut short")], ids=["in-header", "in-payload"])
def test_a_truncated_ciphertext_is_refused(world: World, keep: int, says: str) -> None:
    tid = two_stops(world)
    genuine = world.objects.path_for(world.execution(tid, 0)["output_sha256"]).read_bytes()
    execution = _attack(world, tid, genuine[:keep])
    _failed_with(world, tid, execution, "input 0", says)


def test_an_altered_ciphertext_fails_the_digest_check_first(world: World) -> None:
    tid = two_stops(world)
    path = world.objects.path_for(world.execution(tid, 0)["output_sha256"])
    altered = bytearray(path.read_bytes())
    altered[-5] ^= 0x01
    path.write_bytes(bytes(altered))  # the object replaced, the recorded digest left as it was
    world.poll("leipzig")
    execution = str(world.execution(tid, 1)["id"])
    _failed_with(world, tid, execution, "input 0", "different content")


def test_an_altered_ciphertext_with_its_digest_replaced_too_is_refused_by_decryption(world: World) -> None:
    tid = two_stops(world)
    genuine = bytearray(world.objects.path_for(world.execution(tid, 0)["output_sha256"]).read_bytes())
    genuine[-5] ^= 0x01
    execution = _attack(world, tid, bytes(genuine))
    _failed_with(world, tid, execution, "input 0", "altered")


# -- bad reader keys ---------------------------------------------------------------------------------------------


def test_a_revoked_reader_key_is_refused_and_nothing_leaves(world: World) -> None:
    world.define("two", ("aachen", "leipzig"))
    leipzig = world.ops.keys(station="leipzig")
    key = next(k for k in leipzig["keys"] if k["use"] == "encryption")
    world.ops.revoke_key(key["iri"])
    world.agent("aachen", writes({"partial.json": FIRST}))
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    train = world.alice.train(tid)
    assert train["state"] == "failed", train
    reason = next(r for r in world.reasons(tid) if "revoked" in r)
    assert key["iri"] in reason and leipzig["party"] in reason and "\n" not in reason
    assert not any(p.is_file() for p in (world.tmp / "objects").rglob("*")), "nothing left the station"


def test_an_output_whose_requester_has_no_key_is_not_sealed_to_anyone(world: World) -> None:
    """Stations refuse unsigned trains before anything else (tests/security/test_signed_trains.py); should a work
    item ever name the requester as a reader without a key (the request names no result recipient), the output is
    not encrypted to anyone else instead: the station refuses to seal it, before the run."""
    world.define("one", ("aachen",))
    world.agent("aachen", writes({"result.json": FINAL}))
    tid = world.alice.submit("one", {})
    work = world.agents["aachen"].client.work("aachen")
    assert len(work) == 1 and [r.party for r in work[0].readers] == [work[0].requester]
    keyless = work[0].model_copy(update={"readers": [work[0].readers[0].model_copy(
        update={"key": None, "multibase": None})]})
    with pytest.raises(EncryptionRefused) as refused:
        readers_for(keyless, state_dir=world.tmp / "state" / "aachen", registry=world.ops)
    assert str(refused.value) == UNSIGNED == ("the train names no result recipient, so its result cannot be "
                                              "encrypted to anyone: submit it signed")
    world.alice.cancel(tid, "test over")


# -- the researcher's side ---------------------------------------------------------------------------------------


def _finished(world: World) -> str:
    tid = two_stops(world)
    world.poll("leipzig")
    assert world.alice.train(tid)["state"] == "finished", world.reasons(tid)
    return tid


def test_the_researcher_opening_with_the_wrong_key_is_refused(world: World) -> None:
    tid = _finished(world)
    with CentralClient(world.central.url, token("alice", Role.RESEARCHER)["Authorization"][7:],
                       keys=generate_keys()) as wrong:
        with pytest.raises(ClientError, match="cannot be opened with your key: the ciphertext is not encrypted"):
            wrong.open_result(tid, world.tmp / "out.tar.gz")
        with CentralClient(world.central.url, token("alice", Role.RESEARCHER)["Authorization"][7:]) as keyless:
            with pytest.raises(ClientError, match="holds no keys"):
                keyless.open_result(tid, world.tmp / "out.tar.gz")
    assert sorted(p.name for p in world.tmp.iterdir() if p.name.startswith((".out", "out"))) == []
    # an intermediate output is sealed to the next station, not to the requester, though she may fetch it
    with pytest.raises(ClientError, match="not encrypted to this key"):
        world.alice.open_result(tid, world.tmp / "out.tar.gz", execution=world.execution(tid, 0)["id"])


def test_pht_train_results_with_the_wrong_key_exits_with_one_sentence(world: World) -> None:
    tid = _finished(world)
    wrong = world.tmp / "wrong-keys"
    keys_in(wrong)
    env = {**os.environ, "PHT_TOKEN": token("alice", Role.RESEARCHER)["Authorization"][7:], "COLUMNS": "200"}
    out = world.tmp / "result"

    def results(keys: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pht_cli.main", "train", "results", tid, "--out", str(out),
                               "--keys", str(keys), "--central", world.central.url], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=120)

    refused = results(wrong)
    assert refused.returncode == 1, refused
    assert "cannot be opened with your key" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not out.exists() and not list(world.tmp.glob("result.*")) and not list(world.tmp.glob(".result*"))
    ok = results(world.tmp / "keys" / "alice")
    assert ok.returncode == 0, ok.stderr
    assert (out / "result.json").read_text() == FINAL

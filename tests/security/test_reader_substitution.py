"""A compromised central service names the readers of an output (issue 14 item 3): the station encrypts only to the
readers the researcher's signed request allows, with keys it pinned.

A real central service (HTTP, in a thread), stations enrolled with their own keys, a researcher who signs her
trains, and agents with a scripted runtime that records every run. The central service lies the way a compromised
one would: its operator registers a key of its own (an extra "station" ``mallory``), and the work items the agents
receive (``LyingClient.work``) name altered readers. Each lie fails the execution with one sentence naming the
reader, before the train runs: nothing ran, and nothing left the station.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
from api_helpers import OPS, SETTINGS, token
from central_thread import Central, central_service
from release_gate_world import RecordingEvents, ScriptedRuntime, station_settings, writes

from client import CentralClient, Reader, WorkItem, reader_parties
from client.key_claims import keys_in
from client.train_request import DefinitionSpec, TrainRequest, train_request_triples
from graph_store import ResourceIris
from local_platform.setup import enroll_station
from orchestrator.principal import Role
from station.agent import StationAgent
from station.encryption import READER_KEYS_FILE, EncryptionRefused, signed_readers
from station.objects import LocalObjectStore
from station.policy import StationPolicy
from trust import encode_multikey, generate_keys, open_sealed

AUTO = StationPolicy(requires_approval=False, requires_output_review=False)
Alter = Callable[[WorkItem], WorkItem]


class LyingClient(CentralClient):
    """The agent's view of a compromised central service: every work item it serves goes through ``alter``."""

    alter: Alter | None = None

    def work(self, station_id: str) -> list[WorkItem]:
        items = super().work(station_id)
        return [self.alter(w) for w in items] if self.alter is not None else items


@dataclass
class World:
    central: Central
    tmp: Path
    ops: CentralClient
    alice: CentralClient
    objects: LocalObjectStore
    runtimes: dict[str, ScriptedRuntime] = field(default_factory=dict)
    agents: dict[str, StationAgent] = field(default_factory=dict)
    closing: list[Any] = field(default_factory=list)

    def agent(self, sid: str, alter: Alter | None = None) -> StationAgent:
        settings = station_settings(self.tmp, self.central.url, sid)
        client = LyingClient(self.central.url, settings.token)
        client.alter = alter
        runtime = ScriptedRuntime(writes({"result.json": '{"count": 42}'}))
        agent = StationAgent(settings, runtime=runtime, client=client, objects=self.objects,
                             events=RecordingEvents(sid), policy_loader=lambda: AUTO)
        self.runtimes[sid], self.agents[sid] = runtime, agent
        self.closing.append(agent)
        return agent

    def lie(self, sid: str, alter: Alter | None) -> None:
        client = self.agents[sid].client
        assert isinstance(client, LyingClient)
        client.alter = alter

    def define(self, did: str, route: tuple[str, ...], **federated: Any) -> None:
        self.alice.register_definition({"id": did, "title": did, "image_name": "pht/count",
                                        "image_digest": "sha256:" + "5e" * 32, "mode": "incremental",
                                        "route": list(route), "parameters": [], **federated})

    def poll(self, *sids: str) -> None:
        for sid in sids:
            self.agents[sid].poll_once()

    def state(self, tid: str) -> str:
        return str(self.alice.train(tid)["state"])

    def reasons(self, tid: str) -> list[str]:
        return [e.get("reason") or "" for e in self.ops.events(tid)]

    def party(self, sid: str) -> str:
        return str(self.ops.keys(station=sid)["party"])

    def reader(self, sid: str) -> Reader:
        """Station ``sid`` as a reader with its current encryption key, as the registry lists it."""
        body = self.ops.keys(station=sid)
        key = next(k for k in body["keys"] if k["use"] == "encryption" and not k.get("expires"))
        return Reader(party=body["party"], key=key["iri"], multibase=key["multibase"])

    def stored(self) -> list[Path]:
        return sorted(p for p in (self.tmp / "objects").rglob("*") if p.is_file())

    def pins(self, sid: str) -> dict[str, str]:
        return dict(json.loads((self.tmp / "state" / sid / READER_KEYS_FILE).read_text()))


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with central_service(settings=replace(SETTINGS, results_store_url=f"file://{tmp_path / 'objects'}")) as central:
        ops = CentralClient(central.url, OPS["Authorization"][7:])
        for sid in ("aachen", "leipzig", "bonn"):
            enroll_station(ops, sid, tmp_path / "keys" / sid)
        enroll_station(ops, "mallory", tmp_path / "operator-keys")  # the operator's own key, as a "station"
        keys, _ = keys_in(tmp_path / "keys" / "alice")
        alice = CentralClient(central.url, token("alice", Role.RESEARCHER)["Authorization"][7:], keys=keys)
        alice.register_keys(keys)
        w = World(central, tmp_path, ops, alice, LocalObjectStore(tmp_path / "objects"), closing=[ops, alice])
        try:
            yield w
        finally:
            for c in w.closing:
                c.close()


def refused(world: World, tid: str, sid: str, *fragments: str, stored_before: int = 0) -> str:
    """The train failed at ``sid`` with one sentence holding every fragment; nothing ran there and nothing more
    left the station (the object store holds ``stored_before`` objects, as before)."""
    assert world.state(tid) == "failed", world.reasons(tid)
    reason = next((r for r in world.reasons(tid) if all(f in r for f in fragments)), None)
    assert reason is not None, world.reasons(tid)
    assert "\n" not in reason and "Traceback" not in reason, reason
    assert world.runtimes[sid].runs == [], "nothing ran"
    assert len(world.stored()) == stored_before, "nothing left the station"
    return reason


def plus(reader: Reader) -> Alter:
    return lambda w: w.model_copy(update={"readers": [*w.readers, reader]})


def requester_key(reader: Reader) -> Alter:
    """The requester's reader given ``reader``'s key instead of the signed result recipient."""
    return lambda w: w.model_copy(update={"readers": [
        r.model_copy(update={"key": reader.key, "multibase": reader.multibase}) if r.party == w.requester else r
        for r in w.readers]})


# -- (a) an extra reader -----------------------------------------------------------------------------------------


def test_a_key_the_operator_registered_as_an_extra_reader_is_refused(world: World) -> None:
    world.define("two", ("aachen", "leipzig"))
    mallory = world.reader("mallory")
    world.agent("aachen", plus(mallory))
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    reason = refused(world, tid, "aachen", f"the central service names the station {mallory.party} as a reader")
    assert "the signed request does not let it read it" in reason


def test_the_operators_key_as_an_extra_reader_of_the_final_result_is_refused(world: World) -> None:
    world.define("one", ("aachen",))
    mallory = world.reader("mallory")
    world.agent("aachen", plus(mallory))
    tid = world.alice.submit("one", {})
    world.poll("aachen")
    refused(world, tid, "aachen", mallory.party, "does not let it read it")


# -- (b) the requester's key substituted -------------------------------------------------------------------------


def test_the_requesters_reader_with_another_key_is_refused_naming_the_requester(world: World) -> None:
    world.define("one", ("aachen",))
    mallory = world.reader("mallory")
    world.agent("aachen", requester_key(mallory))
    tid = world.alice.submit("one", {})
    world.poll("aachen")
    requester = world.alice.keys()["party"]
    reason = refused(world, tid, "aachen", f"the central service names the key {mallory.key} for the requester "
                                           f"{requester}, but the signed request names")
    assert "as the result recipient" in reason


# -- (c) a reader missing ----------------------------------------------------------------------------------------


def test_a_missing_next_station_is_refused(world: World) -> None:
    world.define("two", ("aachen", "leipzig"))
    world.agent("aachen", lambda w: w.model_copy(update={"readers": []}))
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    refused(world, tid, "aachen", "the central service names no reader for the output of execution")


def test_a_station_missing_from_an_aggregations_readers_is_refused(world: World) -> None:
    """The aggregation of round 1 of 2 is read by every station of the route; the service drops leipzig (and so
    that the output is not unreadable, it names only aachen)."""
    world.define("fed", ("aachen", "leipzig"), mode="federated", rounds=2, aggregator="bonn")
    for sid in ("aachen", "leipzig"):
        world.agent(sid)
    leipzig = world.party("leipzig")
    world.agent("bonn", lambda w: w.model_copy(update={"readers": [r for r in w.readers if r.party != leipzig]}))
    tid = world.alice.submit("fed", {})
    world.poll("aachen", "leipzig")
    stored = len(world.stored())
    world.poll("bonn")
    reason = refused(world, tid, "bonn", f"the signed request lets the station {leipzig} read the output",
                     stored_before=stored)
    assert "does not name it as a reader" in reason


# -- (d), (e) the readers' keys are pinned -----------------------------------------------------------------------


def two_stops_finished(world: World) -> str:
    world.define("two", ("aachen", "leipzig"))
    world.agent("aachen")
    world.agent("leipzig")
    tid = world.alice.submit("two", {})
    world.poll("aachen", "leipzig")
    assert world.state(tid) == "finished", world.reasons(tid)
    return tid


def test_a_different_key_for_a_pinned_station_is_refused_with_the_pinning_reason(world: World) -> None:
    two_stops_finished(world)
    leipzig = world.reader("leipzig")
    assert world.pins("aachen") == {leipzig.party: leipzig.multibase}
    forged = encode_multikey(generate_keys().encryption.public_key())  # the operator's, under leipzig's key IRI
    world.lie("aachen", lambda w: w.model_copy(update={"readers": [
        r.model_copy(update={"multibase": forged}) for r in w.readers]}))
    world.agents["aachen"].runtime = world.runtimes["aachen"] = ScriptedRuntime(writes({"x.json": "{}"}))
    stored = len(world.stored())
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    reason = refused(world, tid, "aachen", f"the encryption key of the station {leipzig.party} is now {forged}, "
                                           f"but this station pinned {leipzig.multibase} for it",
                     stored_before=stored)
    assert "which the registry does not show as rotated out or revoked" in reason
    assert f"delete its entry from {world.tmp / 'state' / 'aachen' / READER_KEYS_FILE}" in reason
    assert world.pins("aachen") == {leipzig.party: leipzig.multibase}, "the pin stays"
    # the admin accepts the new key (docs/station.md): deletes leipzig's entry; the next train pins the new key
    (world.tmp / "state" / "aachen" / READER_KEYS_FILE).write_text("{}")
    accepted = world.alice.submit("two", {})
    world.poll("aachen")
    assert world.alice.train(accepted)["executions"][0]["state"] == "released", world.reasons(accepted)
    assert world.pins("aachen") == {leipzig.party: forged}


def test_a_registered_rotation_of_a_pinned_stations_keys_is_accepted(world: World) -> None:
    two_stops_finished(world)
    before = world.reader("leipzig")
    rotated = generate_keys()
    world.ops.rotate_keys(rotated, station="leipzig")  # pht keys rotate: the pinned key is rotated out
    after = world.reader("leipzig")
    assert after.multibase == encode_multikey(rotated.encryption.public_key()) != before.multibase
    tid = world.alice.submit("two", {})
    world.poll("aachen")
    first = world.alice.train(tid)["executions"][0]
    assert first["state"] == "released", world.reasons(tid)
    assert world.pins("aachen")[after.party] == after.multibase
    sealed = world.objects.path_for(first["output_sha256"]).read_bytes()
    assert open_sealed(sealed, rotated.encryption).startswith(b"\x1f\x8b"), "sealed to the rotated key"


# -- (f) honest trains run end to end ----------------------------------------------------------------------------


def test_an_honest_train_runs_end_to_end_and_pins_its_readers_keys(world: World) -> None:
    tid = two_stops_finished(world)
    assert world.pins("aachen") == {world.party("leipzig"): world.reader("leipzig").multibase}
    keys = world.alice.party_keys
    assert keys is not None
    assert world.pins("leipzig") == {world.alice.keys()["party"]: encode_multikey(keys.encryption.public_key())}
    assert world.alice.open_result(tid, world.tmp / "result.tar.gz")


def test_an_honest_federated_train_runs_end_to_end(world: World) -> None:
    world.define("fed", ("aachen", "leipzig"), mode="federated", rounds=2, aggregator="bonn")
    for sid in ("aachen", "leipzig", "bonn"):
        world.agent(sid)
    tid = world.alice.submit("fed", {})
    for _ in range(2):  # each round: the stations, then the aggregator
        world.poll("aachen", "leipzig", "bonn")
    assert world.state(tid) == "finished", world.reasons(tid)
    requester = world.alice.keys()["party"]
    assert set(world.pins("bonn")) == {world.party("aachen"), world.party("leipzig"), requester}
    assert set(world.pins("aachen")) == set(world.pins("leipzig")) == {world.party("bonn")}
    assert world.alice.open_result(tid, world.tmp / "result.tar.gz")


# -- the station's derivation of the readers from the signed request ---------------------------------------------

IRIS = ResourceIris("https://pht.example.org/id/")
ALICE = "https://pht.example.org/id/agents/alice"
RECIPIENT = f"{ALICE}/keys/z6LSrecipient"


def signed_text(mode: str, route: tuple[str, ...], rounds: int, aggregator: str | None = None) -> str:
    spec = DefinitionSpec("count", "Count", "pht/count", "sha256:" + "0" * 64, mode, route, rounds=rounds,
                          aggregator=aggregator)
    request = TrainRequest("urn:uuid:6f0c4d8e-1b2a-4c3d-9e8f-0123456789ab", "count", requester=ALICE,
                           created="2026-12-03T10:00:00Z", parameters={}, recipient=RECIPIENT)
    triples = train_request_triples(IRIS, spec, request)
    return ox.serialize(reversed(triples), format=ox.RdfFormat.N_TRIPLES).decode()  # in no particular order


ROUTE = ("aachen", "leipzig", "bonn")
STATIONS = [IRIS.station(s).value for s in ROUTE]


@pytest.mark.parametrize(("mode", "rounds", "aggregator"), [("incremental", 1, None), ("incremental", 3, None),
                                                            ("federated", 1, "cologne"), ("federated", 3, "cologne")])
def test_the_station_derives_the_same_readers_as_the_shared_rule(mode: str, rounds: int,
                                                                 aggregator: str | None) -> None:
    signed = signed_readers(signed_text(mode, ROUTE, rounds, aggregator))
    assert (signed.route, signed.federated, signed.rounds, signed.requester, signed.recipient) == (
        tuple(STATIONS), mode == "federated", rounds, ALICE, RECIPIENT)
    stops: list[int | None] = [*range(len(ROUTE)), *([None] if mode == "federated" else [])]
    for round_ in range(1, rounds + 1):
        for stop in stops:
            assert signed.parties(round_, stop) == reader_parties(
                federated=mode == "federated", rounds=rounds, round_=round_, stop=stop, route=STATIONS,
                aggregator=IRIS.station(aggregator).value if aggregator else None, requester=ALICE)


def test_the_derived_readers_of_each_kind_of_hop() -> None:
    incremental = signed_readers(signed_text("incremental", ROUTE, 2))
    assert [incremental.parties(1, i) for i in range(3)] == [[STATIONS[1]], [STATIONS[2]], [STATIONS[0]]]
    assert incremental.parties(2, 2) == [ALICE]
    federated = signed_readers(signed_text("federated", ROUTE, 2, "cologne"))
    cologne = IRIS.station("cologne").value
    assert federated.aggregator == cologne
    assert [federated.parties(r, s) for r in (1, 2) for s in (0, 2)] == [[cologne]] * 4
    assert federated.parties(1, None) == STATIONS
    assert federated.parties(2, None) == [ALICE]


def test_an_unsigned_work_item_is_refused() -> None:
    with pytest.raises(EncryptionRefused, match="names no result recipient"):
        signed_readers("")


def test_a_signed_request_without_a_result_recipient_is_refused() -> None:
    text = "\n".join(line for line in signed_text("incremental", ROUTE, 1).splitlines()
                     if "resultRecipient" not in line)
    with pytest.raises(EncryptionRefused, match="^the train's signed request has 0 values for its result recipient"):
        signed_readers(text)

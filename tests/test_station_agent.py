"""Station agents driving real trains (real Docker engine) through a real central service over HTTP.

Three stations, each with its own agent, dataset folder, policy and state folder, sharing one local
object store; the researcher and the station admins act through the same client the CLI uses.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_helpers import OPS
from central_thread import Central, central_service
from conftest import require_component
from sealed_outputs import open_output

from client import CentralClient, ClientError
from client.key_claims import keys_in
from orchestrator.auth import issue_token
from orchestrator.principal import Role
from orchestrator.settings import DEMO_SECRET
from station.agent import Holding, StationAgent, release
from station.approvals import ApprovalLedger
from station.objects import LocalObjectStore
from station.policy import FAILURE_EXIT_CODE, StationPolicy
from station.runtimes.base import Limits
from station.settings import StationSettings
from trust import encode_multikey, seal

pytestmark = pytest.mark.real_component("docker")
REPO = Path(__file__).resolve().parent.parent
STATIONS = ("aachen", "leipzig", "cologne")
ROWS = {"aachen": [1.0, 5.0, 7.0, 9.0, 11.0, 12.0, 13.0], "leipzig": [2.0, 6.0, 8.0, 10.0, 14.0, 15.0, 16.0, 17.0],
        "cologne": [3.0, 4.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0, 24.0]}


def bearer(subject: str, role: Role, station: str | None = None) -> str:
    return issue_token(DEMO_SECRET, subject=subject, roles=[role], station=station)


@pytest.fixture(scope="module")
def count_image() -> str:
    require_component("docker")
    from station.images import build_train_image
    return build_train_image(REPO / "trains" / "cohort-count", "pht-test/cohort-count:latest")


@dataclass
class World:
    central: Central
    researcher: CentralClient
    objects: LocalObjectStore
    tmp: Path
    image: str
    clients: list[CentralClient | StationAgent]

    def agent(self, sid: str, policy: StationPolicy, *, limits: Limits | None = None,
              objects_url: str | None = None) -> StationAgent:
        """A new agent of station ``sid``; the station's earlier agent is stopped first (one agent per station:
        closing it releases the station's lease)."""
        from station.runtimes.docker import DockerRuntime
        for earlier in self.clients:
            if isinstance(earlier, StationAgent) and earlier.settings.station_id == sid:
                earlier.close()
        settings = StationSettings(station_id=sid, central_url=self.central.url,
                                   token=bearer(f"station-{sid}", Role.STATION, sid),
                                   datasets={f"{sid}-data": self.tmp / "data" / sid},
                                   state_dir=self.tmp / "state" / sid,
                                   objects_url=objects_url or f"file://{self.tmp / 'objects'}",
                                   limits=limits or Limits(timeout_s=60), keys_dir=self.tmp / "keys" / sid)
        objects = None if objects_url else self.objects  # None: the agent opens the store the URL names
        agent = StationAgent(settings, runtime=DockerRuntime(), objects=objects, policy_loader=lambda: policy)
        self.clients.append(agent)
        return agent

    def client(self, token: str) -> CentralClient:
        client = CentralClient(self.central.url, token)
        self.clients.append(client)
        return client

    def admin(self, sid: str) -> CentralClient:
        return self.client(bearer(f"admin-{sid}", Role.STATION_ADMIN, sid))

    def define(self, did: str, *, digest: str | None = None, route: tuple[str, ...] = STATIONS) -> None:
        """Register a cohort count definition ``did`` (this image unless ``digest``) over ``route``."""
        self.researcher.register_definition({
            "id": did, "title": "Cohort count", "image_name": "pht-test/cohort-count:latest",
            "image_digest": digest or self.image, "mode": "incremental", "route": list(route),
            "parameters": [{"name": n, "required": True} for n in ("COLUMN", "OP", "VALUE", "MIN_CELL")]})


@pytest.fixture()
def world(tmp_path: Path, count_image: str) -> Iterator[World]:
    for sid, values in ROWS.items():
        folder = tmp_path / "data" / sid
        folder.mkdir(parents=True)
        with (folder / "patients.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "radius"])
            writer.writerows([i, v] for i, v in enumerate(values))
    with central_service() as central:
        ops = CentralClient(central.url, OPS["Authorization"].removeprefix("Bearer "))
        alice_keys, _ = keys_in(tmp_path / "keys" / "alice")  # she signs her trains; her results are sealed to her
        researcher = CentralClient(central.url, bearer("alice", Role.RESEARCHER), keys=alice_keys)
        researcher.register_keys(alice_keys)
        world = World(central, researcher, LocalObjectStore(tmp_path / "objects"), tmp_path, count_image, [ops, researcher])
        for sid in STATIONS:
            keys, _ = keys_in(tmp_path / "keys" / sid)  # each station opens the inputs sealed to it
            ops.register_station({"id": sid, "title": f"{sid} station", "owner": f"{sid} hospital",
                                  "public_keys": [encode_multikey(keys.signing.public_key()),
                                                  encode_multikey(keys.encryption.public_key())]})
            ops.register_dataset({"id": f"{sid}-data", "title": "patients", "station": sid})
        try:
            yield world
        finally:
            for c in world.clients:
                c.close()


AUTO = StationPolicy(requires_approval=False, requires_output_review=False, max_output_bytes=10_000)
PARAMS = {"COLUMN": "radius", "OP": "gt", "VALUE": "4.5", "MIN_CELL": "3"}


def run_all(world: World, agents: dict[str, StationAgent], rounds: int = 12) -> None:
    for _ in range(rounds):
        for agent in agents.values():
            agent.poll_once()


def result_of(world: World, tid: str) -> dict[str, int]:
    """The train's final output, fetched from the object store by the digest the graph records, verified, opened with
    the requester's key."""
    last = world.researcher.train(tid)["executions"][-1]
    assert last["state"] == "released" and last["output_sha256"], last
    out = open_output(world.objects, last["output_sha256"], world.tmp / f"result-{tid}", world.tmp / "keys" / "alice")
    return json.loads((out / "result.json").read_text())


def pooled_count(threshold: float) -> int:
    return sum(v > threshold for values in ROWS.values() for v in values)


def test_an_incremental_train_travels_three_stations_and_its_result_is_the_pooled_count(world: World) -> None:
    world.define("count")
    agents = {sid: world.agent(sid, AUTO) for sid in STATIONS}
    tid = world.researcher.submit("count", PARAMS)
    run_all(world, agents)
    train = world.researcher.train(tid)
    assert train["state"] == "finished", train
    assert [e["state"] for e in train["executions"]] == ["released"] * 3
    assert result_of(world, tid) == {"count": pooled_count(4.5), "stations": 3, "suppressed": 0}
    assert not any(any((world.tmp / "state" / sid / "executions").glob("*")) for sid in STATIONS), \
        "finished work is cleaned up"


def test_manual_approval_waits_and_a_rejection_reason_reaches_the_requester(world: World) -> None:
    world.define("count")
    strict = StationPolicy(requires_approval=True, requires_output_review=False)
    agent = world.agent("aachen", strict)
    tid = world.researcher.submit("count", PARAMS)
    agent.poll_once()
    assert world.researcher.train(tid)["executions"][0]["state"] == "waiting-for-approval"
    agent.poll_once()
    assert world.researcher.train(tid)["executions"][0]["state"] == "waiting-for-approval", "it must wait"
    with world.admin("aachen") as admin:
        admin.step(f"{tid}.r1-s0", "rejected", reason="the cohort definition needs ethics approval first")
    assert world.researcher.train(tid)["state"] == "rejected"
    reasons = [e["reason"] for e in world.researcher.events(tid) if e["to_state"] == "rejected"]
    assert "the cohort definition needs ethics approval first" in reasons


def test_policy_lists_auto_approve_only_matching_trains(world: World) -> None:
    world.define("count")
    by_requester = StationPolicy(requires_approval=True, requires_output_review=False,
                                 approve_requesters=frozenset({"https://pht.example.org/id/agents/bob"}))
    agent = world.agent("aachen", by_requester)
    tid = world.researcher.submit("count", PARAMS)  # alice's train: not in the list
    agent.poll_once()
    assert world.researcher.train(tid)["executions"][0]["state"] == "waiting-for-approval"
    by_image = StationPolicy(requires_approval=True, requires_output_review=False,
                             approve_images=frozenset({world.image}))
    agent = world.agent("aachen", by_image)
    tid2 = world.researcher.submit("count", PARAMS)
    agent.poll_once()
    assert world.researcher.train(tid2)["executions"][0]["state"] == "released"


def test_a_wrong_image_digest_fails_the_execution_with_the_reason_and_the_station_keeps_working(world: World) -> None:
    world.define("count")
    world.define("forged", digest="sha256:" + "0" * 64, route=("aachen",))
    agent = world.agent("aachen", AUTO)
    bad = world.researcher.submit("forged", PARAMS)
    good = world.researcher.submit("count", PARAMS)
    agent.poll_once()
    train = world.researcher.train(bad)
    assert train["state"] == "failed"
    reasons = " ".join(e["reason"] or "" for e in world.researcher.events(bad))
    assert "sha256:000000" in reasons or "digest" in reasons, reasons
    assert world.researcher.train(good)["executions"][0]["state"] == "released"


def test_a_crashing_train_fails_with_the_station_and_the_exit_code_only_if_the_policy_shares_it(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.define("count", route=("aachen", "leipzig"))
    agents = {sid: world.agent(sid, AUTO) for sid in ("aachen", "leipzig")}
    tid = world.researcher.submit("count", {**PARAMS, "COLUMN": "no-such-column"})  # KeyError in the train
    with caplog.at_level(logging.WARNING, logger="pht.station"):
        run_all(world, agents, rounds=2)
    train = world.researcher.train(tid)
    assert train["state"] == "failed"
    failure = [e for e in world.researcher.events(tid) if e["to_state"] == "failed" and e["execution"]]
    assert failure and failure[0]["reason"] == "the train failed at station aachen", failure  # by default: no code
    # the station's own log says why, with the train's last output lines (its traceback): they stay there
    logged = [r.getMessage() for r in caplog.records if "the train failed" in r.getMessage()]
    assert logged and "last output lines" in logged[0] and "no-such-column" in logged[0], logged
    assert not any("no-such-column" in (e["reason"] or "") for e in world.researcher.events(tid))
    sharing = StationPolicy(requires_approval=False, requires_output_review=False, failure_detail=FAILURE_EXIT_CODE)
    agents["aachen"] = world.agent("aachen", sharing)
    tid = world.researcher.submit("count", {**PARAMS, "COLUMN": "no-such-column"})
    run_all(world, agents, rounds=2)
    failure = [e for e in world.researcher.events(tid) if e["to_state"] == "failed" and e["execution"]]
    assert failure and failure[0]["reason"] == "the train failed at station aachen (exit code 1)", failure


def test_output_review_holds_the_output_until_the_admin_releases_it(world: World) -> None:
    world.define("count", route=("aachen", "leipzig"))
    reviewing = StationPolicy(requires_approval=False, requires_output_review=True, min_cell_count=3)
    agents = {"aachen": world.agent("aachen", reviewing), "leipzig": world.agent("leipzig", AUTO)}
    tid = world.researcher.submit("count", PARAMS)
    run_all(world, agents, rounds=3)
    execution = world.researcher.train(tid)["executions"][0]
    assert execution["state"] == "output-under-review" and not execution["output_sha256"]
    hold = Holding(world.tmp / "state" / "aachen", execution["id"])
    held = hold.held()
    assert held is not None
    assert not world.objects.exists(held[0]), "nothing leaves before the release"
    with world.admin("aachen") as admin:
        release(admin, world.objects, hold, execution["id"], reason="looked at it")
    assert world.objects.exists(held[0])
    assert world.researcher.train(tid)["executions"][0]["output_sha256"] == held[0], "the digest comes with it"
    run_all(world, agents, rounds=3)
    assert world.researcher.train(tid)["state"] == "finished"
    assert result_of(world, tid)["stations"] == 2


def test_a_withheld_output_never_leaves(world: World) -> None:
    world.define("count", route=("aachen",))
    agent = world.agent("aachen", StationPolicy(requires_approval=False, requires_output_review=True))
    tid = world.researcher.submit("count", PARAMS)
    agent.poll_once()
    execution = world.researcher.train(tid)["executions"][0]
    held = Holding(world.tmp / "state" / "aachen", execution["id"]).held()
    assert held is not None and not execution["output_sha256"]
    with world.admin("aachen") as admin:
        admin.step(execution["id"], "withheld", reason="small cells")
    agent.poll_once()
    assert world.researcher.train(tid)["state"] == "withheld"
    assert not world.objects.exists(held[0])
    assert not any(held[0] in str(q) for q in world.central.store.oxigraph.quads_for_pattern(None, None, None)), \
        "the digest of a withheld output never reaches the central graph (tests/security/ checks the rest)"
    assert not (world.tmp / "state" / "aachen" / "executions" / execution["id"]).exists()


def test_an_execution_interrupted_by_a_crash_is_resumed_then_failed_explicitly(world: World) -> None:
    world.define("count", route=("aachen",))
    station_client = world.client(bearer("station-aachen", Role.STATION, "aachen"))
    # an agent approved (recording the approved code), fired "running" and died before the run ended: the graph
    # says running, nothing else exists
    ledger = ApprovalLedger(world.tmp / "state" / "aachen" / "approvals.jsonl")
    first = world.researcher.submit("count", PARAMS)
    ledger.record(station_client.work("aachen")[0], how="auto")
    for to in ("approved", "pulling", "running"):
        station_client.step(f"{first}.r1-s0", to)
    world.agent("aachen", AUTO).poll_once()
    assert world.researcher.train(first)["state"] == "finished", "a restarted agent re-runs the interrupted run"
    # an execution whose run was already interrupted max_attempts times is failed, not retried forever
    second = world.researcher.submit("count", PARAMS)
    ledger.record(station_client.work("aachen")[0], how="auto")
    for to in ("approved", "pulling", "running"):
        station_client.step(f"{second}.r1-s0", to)
    agent = world.agent("aachen", AUTO)
    hold = Holding(agent.settings.state_dir, f"{second}.r1-s0")
    for _ in range(agent.settings.max_attempts):
        hold.count_attempt()
    agent.poll_once()
    assert world.researcher.train(second)["state"] == "failed"
    assert any("interrupted" in (e["reason"] or "") for e in world.researcher.events(second))


def test_a_station_cannot_act_for_another_station(world: World) -> None:
    world.define("count")
    tid = world.researcher.submit("count", PARAMS)
    leipzig = world.client(bearer("station-leipzig", Role.STATION, "leipzig"))
    with pytest.raises(ClientError) as e:
        leipzig.step(f"{tid}.r1-s0", "approved")
    assert e.value.status == 403


@pytest.mark.real_component("s3")
def test_results_travel_through_a_real_s3_server(world: World, s3_endpoint) -> None:  # type: ignore[no-untyped-def]
    from station.objects import object_store_from_url
    url = f"s3+http://{s3_endpoint.access_key}:{s3_endpoint.secret_key}@{s3_endpoint.endpoint}/pht-results"
    world.define("count", route=("aachen", "leipzig"))
    agents = {sid: world.agent(sid, AUTO, objects_url=url) for sid in ("aachen", "leipzig")}
    tid = world.researcher.submit("count", PARAMS)
    run_all(world, agents, rounds=3)
    train = world.researcher.train(tid)
    assert train["state"] == "finished", train
    s3 = object_store_from_url(url)
    assert all(s3.exists(e["output_sha256"]) for e in train["executions"])
    assert not any(world.objects.exists(e["output_sha256"]) for e in train["executions"]), "nothing went to disk"


def test_a_malicious_input_archive_fails_the_execution_and_touches_nothing_outside(world: World) -> None:
    import hashlib
    import io
    import tarfile
    world.define("count", route=("aachen", "leipzig"))
    evil = world.tmp / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        payload = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    sealed = world.tmp / "evil.tar.gz.age"  # sealed to leipzig, so that its unpacking is what must refuse it
    sealed.write_bytes(seal(evil.read_bytes(), [keys_in(world.tmp / "keys" / "leipzig")[0].encryption.public_key()]))
    digest = world.objects.put_file(sealed)
    assert digest == hashlib.sha256(sealed.read_bytes()).hexdigest()
    # a compromised first station hands over the malicious archive as its released output
    aachen = world.client(bearer("station-aachen", Role.STATION, "aachen"))
    tid = world.researcher.submit("count", PARAMS)
    for to in ("approved", "pulling", "running"):
        aachen.step(f"{tid}.r1-s0", to)
    aachen.add_output(f"{tid}.r1-s0", sha256=digest, byte_size=sealed.stat().st_size)
    for to in ("output-under-review", "released"):
        aachen.step(f"{tid}.r1-s0", to)
    leipzig = world.agent("leipzig", AUTO)
    leipzig.poll_once()
    train = world.researcher.train(tid)
    assert train["state"] == "failed"
    reason = next(e["reason"] for e in world.researcher.events(tid) if e["to_state"] == "failed" and e["execution"])
    assert "input 0" in reason and "cannot be used" in reason, reason
    assert not list(world.tmp.rglob("escaped.txt")) and not (world.tmp.parent / "escaped.txt").exists()
    world.define("count2", route=("leipzig",))
    ok = world.researcher.submit("count2", PARAMS)
    leipzig.poll_once()
    assert world.researcher.train(ok)["state"] == "finished", "the station keeps working"

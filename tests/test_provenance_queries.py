"""Provenance queries for researchers, run against a store built by driving real trains through the lifecycle.

The fixture store is written only by :class:`orchestrator.lifecycle.Lifecycle` (with a clock the test controls)
and by station MPUs pushing usage samples and station-side events to their station graphs. Every expected value
below is derived from what the scenario wrote (the recorded step times, the samples' values), never typed in.
The last tests run every ``.rq`` file in ``sparql_queries/`` so that no named query can rot unnoticed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count
from typing import Any

import pytest
from principals import ALICE, BOB, DIGEST, KEY, OPERATOR, STATIONS, admin, station
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    CENTRAL_GRAPH,
    ONTOLOGY_GRAPH,
    PHT,
    RDF_TYPE,
    ChangeSet,
    EmbeddedStore,
    ValidationFailed,
    list_named_queries,
    station_graph,
)
from graph_store._sparql_text import parameters_of
from graph_store._updates import compile_update
from orchestrator.lifecycle import Lifecycle
from orchestrator.page_tokens import REJECTIONS_FIRST
from orchestrator.principal import Principal
from orchestrator.registry import DatasetSpec, DefinitionSpec, ParameterSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings

XSD = "http://www.w3.org/2001/XMLSchema#"
UNIT = "http://qudt.org/vocab/unit/"
START = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
APPROVAL_REASON = "aggregate counts only"


class Clock:
    """The lifecycle's clock: returns ``now`` until the test moves it (every write of one step shares a time)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@dataclass
class Sample:
    """A usage sample a station MPU pushed, as the test wrote it."""

    graph_station: str
    execution: str
    kind: str  # local name of the sample class
    value: Decimal
    unit: str  # local name of the QUDT unit
    time: datetime
    direction: str | None = None


@dataclass
class World:
    """The fixture store and a record of everything the scenario did."""

    life: Lifecycle
    clock: Clock
    trains: dict[str, str] = field(default_factory=dict)  # scenario name -> train id
    requesters: dict[str, Principal] = field(default_factory=dict)  # train id -> requester
    submitted: dict[str, datetime] = field(default_factory=dict)  # train id -> submission time
    at: dict[tuple[str, str], datetime] = field(default_factory=dict)  # (execution id, state token) -> time
    used: dict[str, list[str]] = field(default_factory=dict)  # execution id -> dataset ids
    final_state: dict[str, str] = field(default_factory=dict)  # train id -> state token
    samples: list[Sample] = field(default_factory=list)
    station_events: list[dict[str, Any]] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=count)

    @property
    def store(self) -> EmbeddedStore:
        return self.life.store  # type: ignore[return-value]

    # -- driving the lifecycle -------------------------------------------------------------------------

    def submit(self, name: str, who: Principal, definition: str, parameters: dict[str, str]) -> str:
        self.clock.advance(timedelta(minutes=1))
        tid = self.life.submit(who, definition_id=definition, parameters=parameters)
        self.trains[name] = tid
        self.requesters[tid] = who
        self.submitted[tid] = self.clock.now
        return tid

    def step(self, who: Principal, eid: str, to: str, after: timedelta, *, reason: str = "",
             used: Sequence[str] = ()) -> None:
        self.clock.advance(after)
        self.life.step(who, execution_id=eid, to=to, reason=reason, used=used)
        self.at[(eid, to)] = self.clock.now
        if used:
            self.used[eid] = list(used)

    def run_through(self, eid: str, sid: str, *, datasets: Sequence[str], scale: int = 1) -> None:
        """waiting-for-approval -> approved -> pulling -> running -> output -> review -> released, with gaps
        (multiplied by ``scale``) that exercise days, hours, minutes and fractional seconds."""
        self.step(station(sid), eid, "waiting-for-approval", timedelta(minutes=4 * scale))
        self.step(admin(sid), eid, "approved", timedelta(days=1, hours=2, minutes=3, seconds=4.5) * scale,
                  reason=APPROVAL_REASON)
        self.step(station(sid), eid, "pulling", timedelta(seconds=30 * scale))
        self.step(station(sid), eid, "running", timedelta(seconds=10), used=datasets)
        self.clock.advance(timedelta(minutes=17, microseconds=250_000 * scale))
        self.life.add_output(station(sid), execution_id=eid, sha256=f"{next(self._ids):064x}", byte_size=10)
        self.step(station(sid), eid, "output-under-review", timedelta(hours=1, seconds=2.25 * scale))
        self.step(admin(sid), eid, "released", timedelta(minutes=20 * scale))

    # -- what station MPUs push ------------------------------------------------------------------------

    def push_sample(self, graph_station: str, eid: str, kind: str, value: str, unit: str, time: datetime,
                    direction: str | None = None) -> None:
        iris = self.life.iris
        execution = iris.execution(eid)
        (train,) = [q.object for q in self.store.quads(execution, PHT.ofTrain, None, CENTRAL_GRAPH)]
        s = NamedNode(f"{iris.base}stations/{graph_station}/samples/{next(self._ids)}")
        g = station_graph(graph_station)
        quads = [Quad(s, RDF_TYPE, PHT[kind], g), Quad(s, PHT.eventTime, _time(time), g),
                 Quad(s, PHT.aboutTrain, train, g), Quad(s, PHT.aboutExecution, execution, g),
                 Quad(s, PHT.emittedBy, iris.station(graph_station), g),
                 Quad(s, PHT.value, Literal(value, datatype=NamedNode(XSD + "decimal")), g),
                 Quad(s, PHT.unit, NamedNode(UNIT + unit), g)]
        if direction:
            quads.append(Quad(s, PHT.direction, PHT[direction], g))
        self.store.apply(ChangeSet(insert=quads))
        self.samples.append(Sample(graph_station, eid, kind, Decimal(value), unit, time, direction))

    def push_event(self, graph_station: str, eid: str, kind: str, time: Literal, **extra: Literal) -> None:
        iris = self.life.iris
        execution = iris.execution(eid)
        (train,) = [q.object for q in self.store.quads(execution, PHT.ofTrain, None, CENTRAL_GRAPH)]
        e = NamedNode(f"{iris.base}stations/{graph_station}/events/{next(self._ids)}")
        g = station_graph(graph_station)
        quads = [Quad(e, RDF_TYPE, PHT[kind], g), Quad(e, PHT.eventTime, time, g), Quad(e, PHT.aboutTrain, train, g),
                 Quad(e, PHT.aboutExecution, execution, g), Quad(e, PHT.emittedBy, iris.station(graph_station), g)]
        quads += [Quad(e, PHT[p], v, g) for p, v in extra.items()]
        self.store.apply(ChangeSet(insert=quads))
        self.station_events.append({"graph": graph_station, "execution": eid, "type": kind,
                                    "time": _parse(time.value), **{p: v.value for p, v in extra.items()}})


def _time(t: datetime) -> Literal:
    return Literal(t.isoformat().replace("+00:00", "Z"), datatype=NamedNode(XSD + "dateTime"))


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds(delta: timedelta) -> Decimal:
    return Decimal(delta.days * 86400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


@pytest.fixture(scope="module")
def world() -> World:
    store = EmbeddedStore()
    store.load_vocabulary()
    clock = Clock(START)
    # queries over the lifecycle engine's trains, no stations: unsigned (signing: test_signed_submissions.py)
    life = Lifecycle(store, Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False), clock=clock)
    reg = Registry(store, life.iris)
    for sid in STATIONS:
        reg.station(OPERATOR, StationSpec(sid, f"{sid} station", f"{sid} hospital", [KEY]))
        reg.dataset(OPERATOR, DatasetSpec(f"{sid}-data", f"{sid} data", sid))
    reg.dataset(OPERATOR, DatasetSpec("aachen-icu", "aachen intensive care", "aachen"))
    reg.definition(ALICE, DefinitionSpec("count", "Cohort count", "pht/count", DIGEST, "incremental",
                                         list(STATIONS), parameters=[ParameterSpec("MIN", "integer", True)]))
    reg.definition(ALICE, DefinitionSpec("fedavg", "FedAvg", "pht/fedavg", DIGEST, "federated",
                                         ["aachen", "leipzig"], rounds=2, aggregator="cologne"))
    w = World(life, clock)
    hour = timedelta(hours=1)

    # A: incremental, finished; aachen uses two datasets; the stations push samples and events.
    a = w.submit("incremental", ALICE, "count", {"MIN": "5"})
    w.run_through(f"{a}.r1-s0", "aachen", datasets=["aachen-data", "aachen-icu"], scale=1)
    started = w.at[(f"{a}.r1-s0", "running")]
    for minute, cpu in ((1, "50.0"), (2, "137.5"), (3, "90.25")):
        w.push_sample("aachen", f"{a}.r1-s0", "CPUUsageSample", cpu, "PERCENT", started + timedelta(minutes=minute))
    for minute, mem in ((1, "268435456.0"), (3, "536870912.0")):
        w.push_sample("aachen", f"{a}.r1-s0", "MemoryUsageSample", mem, "BYTE", started + timedelta(minutes=minute))
    for minute, rate, direction in ((1, "1000.0", "Inbound"), (2, "3000.0", "Inbound"), (2, "10.5", "Outbound")):
        w.push_sample("aachen", f"{a}.r1-s0", "NetworkUsageSample", rate, "BYTE-PER-SEC",
                      started + timedelta(minutes=minute), direction)
    # Leipzig claims a sample of Aachen's execution: history shows it, resource usage must not count it.
    w.push_sample("leipzig", f"{a}.r1-s0", "CPUUsageSample", "999.0", "PERCENT", started + timedelta(minutes=2))
    # A station event stamped in the station's local time zone (+01:00), one second after the run started.
    local_time = (started + timedelta(seconds=1)).astimezone(timezone(hour))
    w.push_event("aachen", f"{a}.r1-s0", "StartedRunningEvent",
                 Literal(local_time.isoformat(), datatype=NamedNode(XSD + "dateTime")))
    w.push_event("aachen", f"{a}.r1-s0", "LogEvent", _time(started + timedelta(minutes=5)),
                 logDigest=Literal("c4" * 32), logMessage=Literal("counted 1342 admissions"))
    w.run_through(f"{a}.r1-s1", "leipzig", datasets=["leipzig-data"], scale=2)
    s1 = w.at[(f"{a}.r1-s1", "running")]
    w.push_event("leipzig", f"{a}.r1-s1", "ErrorEvent", _time(s1 - timedelta(seconds=20)),
                 errorMessage=Literal("image pull timed out after 60 s; retrying (1/3)"))
    w.push_sample("leipzig", f"{a}.r1-s1", "CPUUsageSample", "12.0", "PERCENT", s1 + timedelta(seconds=30))
    w.push_sample("leipzig", f"{a}.r1-s1", "NetworkUsageSample", "0.0", "BYTE-PER-SEC", s1 + timedelta(seconds=30))
    w.run_through(f"{a}.r1-s2", "cologne", datasets=["cologne-data"], scale=3)
    w.final_state[a] = "finished"

    # B: federated, two rounds, aggregated at cologne (which uses no dataset).
    b = w.submit("federated", ALICE, "fedavg", {})
    for round_ in (1, 2):
        w.run_through(f"{b}.r{round_}-s0", "aachen", datasets=["aachen-data"])
        w.run_through(f"{b}.r{round_}-s1", "leipzig", datasets=["leipzig-data"])
        w.run_through(f"{b}.r{round_}-agg", "cologne", datasets=[])
    w.final_state[b] = "finished"

    # C: rejected at aachen by its admin.
    c = w.submit("rejected", ALICE, "count", {"MIN": "1"})
    w.step(station("aachen"), f"{c}.r1-s0", "waiting-for-approval", timedelta(minutes=2))
    w.step(admin("aachen"), f"{c}.r1-s0", "rejected", timedelta(hours=3), reason="No anonymity: fewer than 10 patients")
    w.final_state[c] = "rejected"

    # D: released at aachen, then fails while running at leipzig.
    d = w.submit("failed", BOB, "count", {"MIN": "5"})
    w.run_through(f"{d}.r1-s0", "aachen", datasets=["aachen-data"])
    w.step(station("leipzig"), f"{d}.r1-s1", "waiting-for-approval", timedelta(minutes=1))
    w.step(admin("leipzig"), f"{d}.r1-s1", "approved", timedelta(minutes=2))
    w.step(station("leipzig"), f"{d}.r1-s1", "pulling", timedelta(minutes=3))
    w.step(station("leipzig"), f"{d}.r1-s1", "running", timedelta(minutes=4), used=["leipzig-data"])
    w.step(station("leipzig"), f"{d}.r1-s1", "failed", timedelta(minutes=5), reason="container exited 1")
    w.final_state[d] = "failed"

    # E: output withheld at aachen.
    e = w.submit("withheld", BOB, "count", {"MIN": "5"})
    for to, who in (("waiting-for-approval", station), ("approved", admin), ("pulling", station),
                    ("running", station), ("output-under-review", station)):
        w.step(who("aachen"), f"{e}.r1-s0", to, timedelta(minutes=6), used=["aachen-data"] if to == "running" else ())
    w.step(admin("aachen"), f"{e}.r1-s0", "withheld", timedelta(minutes=7), reason="disclosure risk: cells below 5")
    w.final_state[e] = "withheld"

    # F: cancelled by its requester (not a rejection); G: just submitted, still queued.
    f = w.submit("cancelled", BOB, "fedavg", {})
    w.clock.advance(timedelta(minutes=8))
    w.life.cancel(BOB, train_id=f, reason="wrong cohort")
    w.final_state[f] = "cancelled"
    g = w.submit("queued", ALICE, "count", {"MIN": "2"})
    w.final_state[g] = "queued"

    report = store.validate_everything()
    assert report.conforms, report
    return w


def v(term: Any) -> Any:
    """A result term as plain Python: IRIs and strings as str, decimals as Decimal, times as datetime."""
    if term is None:
        return None
    if isinstance(term, Literal):
        dt = term.datatype.value
        if dt == XSD + "dateTime":
            return _parse(term.value)
        if dt in (XSD + "decimal", XSD + "integer"):
            return Decimal(term.value)
        return term.value
    return term.value


def by_time(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sort key: the instant, then the other columns (None first)."""
    return (row[0], *(("", "") if x is None else ("~", str(x)) for x in row[1:]))


def token(world: World, term: Any) -> str | None:
    return None if term is None else world.life.chart.token(term)


def local(world: World, term: Any, kind: str) -> str | None:
    return None if term is None else world.life.iris.local(term, kind)


# -- 1. train history ---------------------------------------------------------------------------------


def test_train_history_merges_central_and_station_graph_events_in_time_order(world: World) -> None:
    tid = world.trains["incremental"]
    iris = world.life.iris
    rows = list(world.store.run_query("train_history", train=iris.train(tid)))
    times = [v(r["time"]) for r in rows]
    assert times == sorted(times), "not ordered by instant"

    def agent(term: Any) -> str:
        return term.value.rsplit("/", 1)[-1]

    actual = sorted([
        (v(r["time"]), r["type"].value.rsplit("#", 1)[-1], r["graph"].value.rsplit("/", 1)[-1],
         local(world, r["execution"], "executions"), v(r["stationId"]), token(world, r["from"]),
         token(world, r["to"]), None if r["agent"] is None else agent(r["agent"]),
         None if r["role"] is None else r["role"].value.rsplit("#", 1)[-1], v(r["reason"]), v(r["message"]),
         v(r["value"]))
        for r in rows], key=by_time)

    # What the lifecycle recorded: the train's own steps and each execution's, at the recorded times.
    submitted = world.submitted[tid]
    expected = [(submitted, "StateChangeEvent", "central", None, None, None, "submitted", "alice", "Researcher",
                 None, None, None),
                (submitted, "StateChangeEvent", "central", None, None, "submitted", "queued", "central-service",
                 "Operator", None, None, None)]
    chain = ["queued", "waiting-for-approval", "approved", "pulling", "running", "output-under-review", "released"]
    for i, sid in enumerate(STATIONS):
        eid = f"{tid}.r1-s{i}"
        for frm, to in zip(chain, chain[1:]):
            by_admin = to in ("approved", "released")
            expected.append((world.at[(eid, to)], "StateChangeEvent", "central", eid, sid, frm, to,
                             f"admin-{sid}" if by_admin else sid,  # an admin is recorded as the person who decided
                             "StationAdmin" if by_admin else "StationRole",
                             APPROVAL_REASON if to == "approved" else None, None, None))
        picked_up = world.at[(eid, "waiting-for-approval")]
        expected.append((picked_up, "StateChangeEvent", "central", None, sid, "queued", "running", sid,
                         "StationRole", None, None, None))
        last = i == len(STATIONS) - 1
        expected.append((world.at[(eid, "released")], "StateChangeEvent", "central", None, None, "running",
                         "finished" if last else "queued", "central-service", "Operator", None, None, None))
    # What the stations pushed: every sample (the one leipzig wrongly claims included) and event.
    for s in world.samples:
        if s.execution.startswith(tid):
            expected.append((s.time, s.kind, s.graph_station, s.execution, STATIONS[int(s.execution[-1])], None,
                             None, None, None, None, None, s.value))
    for e in (e for e in world.station_events if e["execution"].startswith(tid)):
        expected.append((e["time"], e["type"], e["graph"], e["execution"], STATIONS[int(e["execution"][-1])], None,
                         None, None, None, None, e.get("logMessage") or e.get("errorMessage"), None))
    assert actual == sorted(expected, key=by_time)


def test_train_history_of_an_unknown_train_is_empty(world: World) -> None:
    assert list(world.store.run_query("train_history", train=world.life.iris.train("nope"))) == []


# -- 2. result contributors ---------------------------------------------------------------------------


def contributors(world: World, eid: str) -> list[tuple[Any, ...]]:
    output = world.life.iris.output(eid)
    rows = list(world.store.run_query("result_contributors", output=output))
    return [(local(world, r["execution"], "executions"), v(r["stationId"]), v(r["datasetId"]),
             v(r["datasetHolderId"]), local(world, r["generated"], "outputs"), token(world, r["state"]),
             v(r["started"]))
            for r in rows]


def expected_contributors(world: World, executions: Sequence[tuple[str, str]]) -> list[tuple[Any, ...]]:
    """Rows for (execution id, station id) pairs, oldest first, one per dataset the execution used."""
    rows = []
    for eid, sid in executions:
        started = world.at[(eid, "running")]
        datasets = sorted(world.used.get(eid, [])) or [None]
        for ds in datasets:
            holder = None if ds is None else ds.split("-")[0]
            rows.append((eid, sid, ds, holder, eid, "released", started))
    return sorted(rows, key=lambda r: (r[6], r[0], r[2] or ""))


def test_contributors_of_an_incremental_result_are_every_stop_and_dataset(world: World) -> None:
    tid = world.trains["incremental"]
    stops = [(f"{tid}.r1-s{i}", sid) for i, sid in enumerate(STATIONS)]
    assert contributors(world, f"{tid}.r1-s2") == expected_contributors(world, stops)
    # an intermediate result only has what came before it
    assert contributors(world, f"{tid}.r1-s1") == expected_contributors(world, stops[:2])


def test_contributors_of_a_federated_result_reach_back_through_every_round(world: World) -> None:
    tid = world.trains["federated"]
    round1 = [(f"{tid}.r1-s0", "aachen"), (f"{tid}.r1-s1", "leipzig"), (f"{tid}.r1-agg", "cologne")]
    round2 = [(f"{tid}.r2-s0", "aachen"), (f"{tid}.r2-s1", "leipzig"), (f"{tid}.r2-agg", "cologne")]
    assert contributors(world, f"{tid}.r2-agg") == expected_contributors(world, round1 + round2)
    assert contributors(world, f"{tid}.r1-agg") == expected_contributors(world, round1)
    datasets = {r[2] for r in contributors(world, f"{tid}.r2-agg")}
    assert datasets == {"aachen-data", "leipzig-data", None}  # None: the aggregations used no dataset


def test_contributors_of_the_surviving_output_of_a_failed_train(world: World) -> None:
    tid = world.trains["failed"]
    assert contributors(world, f"{tid}.r1-s0") == expected_contributors(world, [(f"{tid}.r1-s0", "aachen")])
    assert list(world.store.run_query("result_contributors", output=world.life.iris.output(f"{tid}.r1-s1"))) == []


# -- 3. station durations -----------------------------------------------------------------------------


def durations(world: World, name: str) -> dict[str, dict[str, Any]]:
    tid = world.trains[name]
    rows = list(world.store.run_query("station_durations", train=world.life.iris.train(tid)))
    return {local(world, r["execution"], "executions"): {k: v(r[k]) for k in (
        "stationId", "round", "stopIndex", "queuedAt", "waitingAt", "decidedAt", "approvedAt", "startedAt",
        "runEndedAt", "reviewAt", "reviewEndedAt", "endedAt", "waitingSeconds", "decisionSeconds",
        "runningSeconds", "reviewSeconds", "totalSeconds")} | {"state": token(world, r["state"])}
        for r in rows}


def expected_released(world: World, eid: str, sid: str, queued: datetime) -> dict[str, Any]:
    at = {to: world.at[(eid, to)] for to in ("waiting-for-approval", "approved", "running", "output-under-review",
                                             "released")}
    round_ = int(eid.rsplit(".r", 1)[1].split("-")[0])
    stop = None if eid.endswith("agg") else int(eid[-1])
    return {"stationId": sid, "round": round_, "stopIndex": stop, "state": "released",
            "queuedAt": queued, "waitingAt": at["waiting-for-approval"], "decidedAt": at["approved"],
            "approvedAt": at["approved"], "startedAt": at["running"], "runEndedAt": at["output-under-review"],
            "reviewAt": at["output-under-review"], "reviewEndedAt": at["released"], "endedAt": at["released"],
            "waitingSeconds": seconds(at["approved"] - queued),
            "decisionSeconds": seconds(at["approved"] - at["waiting-for-approval"]),
            "runningSeconds": seconds(at["output-under-review"] - at["running"]),
            "reviewSeconds": seconds(at["released"] - at["output-under-review"]),
            "totalSeconds": seconds(at["released"] - queued)}


def test_station_durations_of_an_incremental_train(world: World) -> None:
    tid = world.trains["incremental"]
    got = durations(world, "incremental")
    assert list(got) == [f"{tid}.r1-s{i}" for i in range(3)]  # route order
    queued = world.submitted[tid]  # each stop is queued when the previous one is released
    for i, sid in enumerate(STATIONS):
        eid = f"{tid}.r1-s{i}"
        assert got[eid] == expected_released(world, eid, sid, queued)
        queued = world.at[(eid, "released")]
    # the gaps of run_through span days, hours, minutes and fractions of a second
    assert got[f"{tid}.r1-s1"]["decisionSeconds"] == seconds(timedelta(days=2, hours=4, minutes=6, seconds=9))
    assert got[f"{tid}.r1-s2"]["runningSeconds"] == Decimal("4627.5")  # 17 min 0.75 s + 1 h 6.75 s


def test_station_durations_of_a_federated_train_infer_when_each_execution_was_created(world: World) -> None:
    tid = world.trains["federated"]
    got = durations(world, "federated")
    order = [f"{tid}.r{r}-{s}" for r in (1, 2) for s in ("s0", "s1", "agg")]
    assert list(got) == order  # aggregations last within their round
    r1_created = world.submitted[tid]
    agg1_created = world.at[(f"{tid}.r1-s1", "released")]  # the round's last release starts the aggregation
    r2_created = world.at[(f"{tid}.r1-agg", "released")]
    agg2_created = world.at[(f"{tid}.r2-s1", "released")]
    created = [r1_created, r1_created, agg1_created, r2_created, r2_created, agg2_created]
    for eid, sid, queued in zip(order, ("aachen", "leipzig", "cologne") * 2, created):
        assert got[eid] == expected_released(world, eid, sid, queued)


def test_station_durations_of_rejected_failed_and_waiting_executions(world: World) -> None:
    tid = world.trains["rejected"]
    eid = f"{tid}.r1-s0"
    (row,) = durations(world, "rejected").values()
    waiting, rejected = world.at[(eid, "waiting-for-approval")], world.at[(eid, "rejected")]
    assert row["state"] == "rejected"
    assert (row["queuedAt"], row["waitingAt"], row["decidedAt"], row["endedAt"]) == (
        world.submitted[tid], waiting, rejected, rejected)
    assert row["decisionSeconds"] == seconds(rejected - waiting)
    assert row["totalSeconds"] == seconds(rejected - world.submitted[tid])
    for never in ("approvedAt", "startedAt", "waitingSeconds", "runningSeconds", "reviewSeconds"):
        assert row[never] is None, never

    tid = world.trains["failed"]
    eid = f"{tid}.r1-s1"
    row = durations(world, "failed")[eid]
    failed = world.at[(eid, "failed")]
    assert (row["state"], row["runEndedAt"], row["endedAt"]) == ("failed", failed, failed)
    assert row["runningSeconds"] == seconds(failed - world.at[(eid, "running")])
    assert row["queuedAt"] == world.at[(f"{tid}.r1-s0", "released")]
    assert row["reviewSeconds"] is None

    tid = world.trains["queued"]
    (row,) = durations(world, "queued").values()
    assert row["state"] == "queued" and row["queuedAt"] == world.submitted[tid]
    assert all(row[k] is None for k in ("waitingAt", "endedAt", "waitingSeconds", "totalSeconds"))


# -- 4. resource usage --------------------------------------------------------------------------------


def test_execution_resource_usage_summarises_each_stations_own_samples(world: World) -> None:
    tid = world.trains["incremental"]
    rows = list(world.store.run_query("execution_resource_usage", train=world.life.iris.train(tid)))
    actual = [(local(world, r["execution"], "executions"), v(r["stationId"]),
               None if r["kind"] is None else r["kind"].value.rsplit("#", 1)[-1],
               None if r["direction"] is None else r["direction"].value.rsplit("#", 1)[-1],
               None if r["unit"] is None else r["unit"].value, v(r["samples"]), v(r["max"]), v(r["avg"]),
               v(r["min"]), v(r["firstSample"]), v(r["lastSample"])) for r in rows]

    expected = []
    for i, sid in enumerate(STATIONS):
        eid = f"{tid}.r1-s{i}"
        own = [s for s in world.samples if s.execution == eid and s.graph_station == sid]
        groups: dict[tuple[str, str | None], list[Sample]] = {}
        for s in own:
            groups.setdefault((s.kind, s.direction), []).append(s)
        if not groups:
            expected.append((eid, sid, None, None, None, Decimal(0), None, None, None, None, None))
        for (kind, direction), ss in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
            values = [s.value for s in ss]
            expected.append((eid, sid, kind, direction, UNIT + ss[0].unit, Decimal(len(ss)), max(values),
                             sum(values) / len(values), min(values), min(s.time for s in ss),
                             max(s.time for s in ss)))
    # SPARQL sorts the unbound direction first
    expected.sort(key=lambda r: (int(r[0][-1]), r[2] or "", r[3] is not None, r[3] or ""))
    # exact, except the average: SPARQL divides decimals to its own precision
    assert [r[:7] + r[8:] for r in actual] == [r[:7] + r[8:] for r in expected]
    for got, want in zip(actual, expected):
        assert (got[7] is None and want[7] is None) or abs(got[7] - want[7]) < Decimal("1e-15"), (got, want)
    aachen_cpu = next(r for r in actual if r[0].endswith("s0") and r[2] == "CPUUsageSample")
    assert aachen_cpu[6] == Decimal("137.5") and aachen_cpu[5] == 3  # leipzig's claimed 999 % is not counted


# -- 5. rejections ------------------------------------------------------------------------------------


def rejection_rows(world: World, requester: NamedNode, **after: Literal) -> list[tuple[Any, ...]]:
    rows = world.store.run_query("rejections", onlyRequester=requester, **(after or REJECTIONS_FIRST))
    return [(v(r["time"]), v(r["trainId"]), local(world, r["execution"], "executions"), v(r["stationId"]),
             token(world, r["from"]), token(world, r["state"]), v(r["reason"]),
             r["agent"].value.rsplit("/", 1)[-1], r["role"].value.rsplit("#", 1)[-1]) for r in rows]


def test_rejections_list_why_trains_did_not_finish_newest_first(world: World) -> None:
    expected = []
    cases = (("rejected", "r1-s0", "aachen", "waiting-for-approval", "rejected", "admin-aachen", "StationAdmin",
              "No anonymity: fewer than 10 patients"),
             ("failed", "r1-s1", "leipzig", "running", "failed", "leipzig", "StationRole", "container exited 1"),
             ("withheld", "r1-s0", "aachen", "output-under-review", "withheld", "admin-aachen", "StationAdmin",
              "disclosure risk: cells below 5"))
    for name, label, sid, frm, to, agent, role, reason in cases:
        tid = world.trains[name]
        eid = f"{tid}.{label}"
        time = world.at[(eid, to)]
        assert world.final_state[tid] == to
        expected.append((time, tid, None, None, "running", to, reason, "central-service", "Operator"))
        expected.append((time, tid, eid, sid, frm, to, reason, agent, role))
    # newest first; at one time the train's row (no execution: unbound sorts first) before the execution's
    expected.sort(key=lambda r: (-r[0].timestamp(), r[1], r[2] is not None, r[2] or ""))
    assert rejection_rows(world, NamedNode("urn:pht:any")) == expected
    bob = world.life.iris.agent("bob")
    assert rejection_rows(world, bob) == [r for r in expected if world.requesters[r[1]] == BOB]
    assert rejection_rows(world, world.life.iris.agent("carol")) == []
    # a keyset page starts after the given row: after a train's row (execution unbound) comes its execution's
    raw = list(world.store.run_query("rejections", onlyRequester=NamedNode("urn:pht:any"), **REJECTIONS_FIRST))
    for k, r in enumerate(raw):
        after = {"afterTime": r["time"], "afterTrainId": r["trainId"],
                 "afterExecution": Literal(r["execution"].value if r["execution"] is not None else "")}
        assert rejection_rows(world, NamedNode("urn:pht:any"), **after) == expected[k + 1:], k


# -- trains by state ----------------------------------------------------------------------------------


def test_trains_by_state_counts_the_scenarios_trains(world: World) -> None:
    rows = list(world.store.run_query("trains_by_state"))
    counts = Counter(world.final_state.values())
    assert {token(world, r["state"]): int(r["trains"].value) for r in rows} == counts
    assert [int(r["trains"].value) for r in rows] == sorted(counts.values(), reverse=True)
    ties = [r["state"].value for r in rows if int(r["trains"].value) == 1]
    assert ties == sorted(ties)  # equal counts ordered by state IRI
    labels = {q.subject: q.object.value for q in world.store.quads(None, NamedNode(
        "http://www.w3.org/2000/01/rdf-schema#label"), None, ONTOLOGY_GRAPH)}
    assert all(r["stateLabel"].value == labels[r["state"]] for r in rows)


def test_executions_by_state_counts_the_scenarios_executions(world: World) -> None:
    """The query counts the state holders that are not trains; it equals a count of the pht:Execution resources
    by state (the scenario has executions in several states, and trains in some of the same states)."""
    types = {q.subject: q.object for q in world.store.quads(None, RDF_TYPE, None, CENTRAL_GRAPH)}
    expected = Counter(q.object for q in world.store.quads(None, PHT.state, None, CENTRAL_GRAPH)
                       if types.get(q.subject) == PHT.Execution)
    assert len(expected) >= 3 and sum(expected.values()) > 3
    rows = list(world.store.run_query("executions_by_state"))
    assert {r["state"]: int(r["executions"].value) for r in rows} == expected
    assert [r["state"].value for r in rows] == sorted(r["state"].value for r in rows)


@pytest.mark.parametrize("holder", ["a data set", "an untyped node", "an execution also typed as a train"])
def test_only_a_train_or_an_execution_may_hold_a_state(world: World, holder: str) -> None:
    """What executions_by_state relies on (it counts the state holders that are not trains): a state on anything
    else, or on an execution with a second type, is refused whole, so no writer can skew the counts."""
    execution = next(q.subject for q in world.store.quads(None, RDF_TYPE, PHT.Execution, CENTRAL_GRAPH))
    dataset = next(q.subject for q in world.store.quads(None, RDF_TYPE, NamedNode("http://www.w3.org/ns/dcat#Dataset"),
                                                  CENTRAL_GRAPH))
    change = {
        "a data set": ChangeSet(insert=[Quad(dataset, PHT.state, PHT.Running, CENTRAL_GRAPH)]),
        "an untyped node": ChangeSet(insert=[Quad(NamedNode("urn:pht:test:loose"), PHT.state, PHT.Running,
                                                  CENTRAL_GRAPH)]),
        "an execution also typed as a train": ChangeSet(insert=[Quad(execution, RDF_TYPE, PHT.Train, CENTRAL_GRAPH)]),
    }[holder]
    before = list(world.store.run_query("executions_by_state"))
    with pytest.raises(ValidationFailed) as refused:
        world.store.apply(change)
    assert ("Only a train or an execution has a lifecycle state (pht:state), and it has exactly one type: pht:Train "
            "or pht:Execution.") in [r.message for r in refused.value.report.results]
    assert list(world.store.run_query("executions_by_state")) == before


# -- every named query --------------------------------------------------------------------------------


@pytest.mark.parametrize("query", list_named_queries(), ids=lambda q: q.name)
def test_every_named_query_parses_and_runs(world: World, query: Any) -> None:
    for name in query.parameters:
        assert f"${name}" in query.description, f"{query.name}.rq does not document its parameter ${name}"
    dummies = {name: NamedNode(f"urn:pht:dummy:{name}") for name in query.parameters}
    if query.is_update:
        compiled = compile_update(query.text)  # never executed here: only compiled
        assert compiled.parameters == query.parameters == parameters_of(query.text)
    else:
        list(world.store.query(query.text, bindings=dummies))

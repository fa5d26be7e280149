"""``train_events.rq``, the read model of a train's events (REST ``/events``, the web timeline, ``pht train watch``):
one row per state transition although the central lifecycle and the station's MPU both record each step; the
transitions are the central lifecycle's (a station's claim of a step the lifecycle never recorded is left out),
and each row carries the graph that says who emitted it.

The fixture store is written by :class:`orchestrator.lifecycle.Lifecycle` and, for the station side, by the very
triples a station MPU makes of the agent's events (``station_mpu.event_triples``), written into the station graph.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from principals import ALICE, DIGEST, KEY, OPERATOR, station

from graph_store import CENTRAL_GRAPH, PHT, ChangeSet, EmbeddedStore, station_graph
from orchestrator.chart import load_chart
from orchestrator.lifecycle import Lifecycle
from orchestrator.registry import DatasetSpec, DefinitionSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings
from station_mpu import EventAdapter, Naming, event_triples

ROUTE = ("aachen", "leipzig")
CHAIN = ("queued", "approved", "pulling", "running", "output-under-review", "released")


@dataclass
class World:
    life: Lifecycle
    train: str

    @property
    def store(self) -> EmbeddedStore:
        return self.life.store  # type: ignore[return-value]

    def rows(self) -> list[dict[str, str | None]]:
        chart, iris = self.life.chart, self.life.iris
        return [{"event": r["event"].value, "type": r["type"].value.rsplit("#", 1)[-1],
                 "execution": None if r["execution"] is None else iris.local(r["execution"], "executions"),
                 "to": None if r["to"] is None else chart.token(r["to"]),
                 "reason": None if r["reason"] is None else r["reason"].value, "graph": r["graph"].value}
                for r in self.store.run_query("train_events", train=iris.train(self.train))]


def mpu_says(world: World, sid: str, event: dict[str, object]) -> None:
    """Write what station ``sid``'s MPU makes of one agent event into its station graph (validated)."""
    (parsed,) = EventAdapter.validate_python([{"time": datetime.now(UTC).isoformat(), "train": world.train, **event}])
    triples = event_triples(parsed, Naming(world.life.iris.base, sid))
    world.store.apply(ChangeSet(insert=list(triples.quads)))


def step(world: World, sid: str, eid: str, frm: str, to: str, reason: str = "") -> None:
    """One step as a station agent with an MPU takes it: at the central service, then told to the MPU."""
    world.life.step(station(sid), execution_id=eid, to=to, reason=reason,
                    used=[f"{sid}-data"] if to == "running" else ())
    mpu_says(world, sid, {"kind": "state-change", "execution": eid, "from_state": frm, "to_state": to,
                          "role": "station", "reason": reason or None})


@pytest.fixture(scope="module")
def world() -> World:
    store = EmbeddedStore()
    store.load_vocabulary()
    # a query over the lifecycle engine's train, no stations: unsigned (signing: test_signed_submissions.py)
    life = Lifecycle(store, Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False))
    reg = Registry(store, life.iris)
    for sid in ROUTE:
        reg.station(OPERATOR, StationSpec(sid, f"{sid} station", f"{sid} hospital", [KEY]))
        reg.dataset(OPERATOR, DatasetSpec(f"{sid}-data", f"{sid} data", sid))
    reg.definition(ALICE, DefinitionSpec("count", "Cohort count", "pht/count", DIGEST, "incremental", list(ROUTE)))
    w = World(life, life.submit(ALICE, definition_id="count", parameters={}))
    first, second = f"{w.train}.r1-s0", f"{w.train}.r1-s1"
    for frm, to in zip(CHAIN, CHAIN[1:]):
        if to == "output-under-review":
            life.add_output(station("aachen"), execution_id=first, sha256="ab" * 32, byte_size=10)
        step(w, "aachen", first, frm, to, "checked" if to == "released" else "")
    for frm, to in zip(CHAIN, CHAIN[1:5]):
        step(w, "leipzig", second, frm, to)
    mpu_says(w, "leipzig", {"kind": "error", "execution": second, "message": "exited with code 3"})
    step(w, "leipzig", second, "running", "failed", "The train exited with code 3.")
    # A step the station claims but the central service never recorded: a claim, not lifecycle history.
    mpu_says(w, "leipzig", {"kind": "state-change", "execution": second, "from_state": "failed",
                            "to_state": "cancelled", "role": "station"})
    return w


def test_the_execution_chart_has_no_cycles_so_execution_and_state_name_one_transition() -> None:
    """What the query relies on: an execution enters each state at most once."""
    chart = load_chart()
    edges = {(frm, to) for (kind, frm, to) in chart.transitions if kind == "execution"}
    reachable = {frm: {to for f, to in edges if f == frm} for frm, _ in edges}
    changed = True
    while changed:
        changed = False
        for frm, targets in reachable.items():
            more = set().union(*(reachable.get(t, set()) for t in targets)) - targets
            if more:
                targets |= more
                changed = True
    assert all(frm not in targets for frm, targets in reachable.items())


def test_each_execution_transition_is_one_row_although_the_mpu_recorded_it_too(world: World) -> None:
    failed = world.life.chart.state("failed")
    accounts = [q.graph_name for q in world.store.quads(None, PHT.toState, failed, None)]
    assert CENTRAL_GRAPH in accounts and station_graph("leipzig") in accounts, "both recorded the failure"
    rows = world.rows()
    transitions = Counter((r["execution"], r["to"]) for r in rows if r["execution"] and r["to"])
    assert transitions, rows
    assert {k: n for k, n in transitions.items() if n > 1} == {}, "a transition listed twice"
    first, second = f"{world.train}.r1-s0", f"{world.train}.r1-s1"
    assert [to for e, to in transitions if e == first] == list(CHAIN[1:])
    assert [to for e, to in transitions if e == second] == [*CHAIN[1:5], "failed"], "the claimed cancel is left out"


def test_the_central_record_is_the_row_kept_and_station_only_events_stay(world: World) -> None:
    rows = world.rows()
    train = world.life.iris.train(world.train)
    central = {q.subject.value for q in world.store.quads(None, PHT.aboutTrain, train, CENTRAL_GRAPH)}
    kept = {r["event"] for r in rows}
    assert central <= kept, "every central lifecycle event is listed"
    failed = [r for r in rows if r["to"] == "failed" and r["execution"]]
    assert len(failed) == 1 and failed[0]["event"] in central and failed[0]["reason"] == "The train exited with code 3."
    assert [r["type"] for r in rows if r["event"] not in central] == ["ErrorEvent"]
    assert [r["graph"] for r in rows if r["event"] not in central] == [station_graph("leipzig").value]
    assert {r["graph"] for r in rows if r["event"] in central} == {CENTRAL_GRAPH.value}


def test_a_station_claim_the_lifecycle_never_recorded_stays_in_the_provenance_history(world: World) -> None:
    """``train_history.rq`` keeps every graph's account, the leipzig MPU's claimed cancel included."""
    cancelled = world.life.chart.state("cancelled")
    history = list(world.store.run_query("train_history", train=world.life.iris.train(world.train)))
    claims = [r for r in history if r["to"] == cancelled and r["execution"] is not None]
    assert [r["graph"] for r in claims] == [station_graph("leipzig")]


def test_train_level_transitions_that_repeat_are_all_listed(world: World) -> None:
    """The train goes queued -> running once per station: those are different transitions, all kept."""
    train_rows = [r["to"] for r in world.rows() if r["execution"] is None]
    assert train_rows.count("running") == 2 and train_rows.count("queued") == 2, train_rows

"""The lifecycle engine: incremental and federated routes, consequences, illegal steps, roles, races."""

from __future__ import annotations

import threading
from typing import Any

from central_store import new_central_store
import pytest
from principals import ALICE, BOB, DIGEST, KEY, OPERATOR, STATIONS, admin, station
from pyoxigraph import NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, ChangeSet, EmbeddedStore, GraphStore
from orchestrator.errors import Forbidden, IllegalTransition, LifecycleError, NotFound
from orchestrator.lifecycle import Lifecycle, StepRequest
from orchestrator.registry import DatasetSpec, DefinitionSpec, ParameterSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings

pytestmark = pytest.mark.central_stores


@pytest.fixture()
def engine() -> Lifecycle:
    store = new_central_store()
    store.load_vocabulary()
    # the lifecycle engine itself, without stations: its trains are unsigned (signing: test_signed_submissions.py)
    settings = Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False)
    life = Lifecycle(store, settings)
    reg = Registry(store, life.iris)
    for sid in STATIONS:
        reg.station(OPERATOR, StationSpec(sid, f"{sid} station", f"{sid} hospital", [KEY]))
        reg.dataset(OPERATOR, DatasetSpec(f"{sid}-data", f"{sid} data", sid))
    reg.definition(ALICE, DefinitionSpec("count", "Cohort count", "pht/count", DIGEST, "incremental",
                                         list(STATIONS), parameters=[ParameterSpec("MIN", "integer", True)]))
    reg.definition(ALICE, DefinitionSpec("fedavg", "FedAvg", "pht/fedavg", DIGEST, "federated",
                                         ["aachen", "leipzig"], rounds=2, aggregator="cologne"))
    return life


def assert_everything_conforms(store: GraphStore) -> None:
    """The whole store conforms (on the embedded store: ``validate_everything`` cannot follow the ontology's blank
    nodes on a server, which does not let a later request name a blank node it answered; reported in
    tests/central_store.py)."""
    if isinstance(store, EmbeddedStore):
        assert store.validate_everything().conforms


def state_of(life: Lifecycle, train_id: str) -> str:
    (row,) = life._train_row(life.iris.train(train_id))
    return life.chart.token(row["state"])


def executions(life: Lifecycle, train_id: str) -> dict[str, str]:
    rows = life.store.run_query("train_executions", train=life.iris.train(train_id))
    return {life.iris.local(r["execution"], "executions"): life.chart.token(r["state"]) for r in rows}


def run_through(life: Lifecycle, eid: str, sid: str, *, output: bool = True) -> None:
    life.step(station(sid), execution_id=eid, to="waiting-for-approval")
    life.step(admin(sid), execution_id=eid, to="approved", reason="aggregate counts only")
    life.step(station(sid), execution_id=eid, to="pulling")
    life.step(station(sid), execution_id=eid, to="running", used=[f"{sid}-data"])
    if output:
        life.add_output(station(sid), execution_id=eid, sha256="0" * 64, byte_size=10)
    life.step(station(sid), execution_id=eid, to="output-under-review")
    life.step(admin(sid), execution_id=eid, to="released")


def test_incremental_train_visits_the_route_in_order_and_finishes(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    assert state_of(engine, tid) == "queued"
    assert executions(engine, tid) == {f"{tid}.r1-s0": "queued"}
    run_through(engine, f"{tid}.r1-s0", "aachen")
    assert state_of(engine, tid) == "queued"
    assert executions(engine, tid)[f"{tid}.r1-s1"] == "queued"
    used = {q.object for q in engine.store.quads(engine.iris.execution(f"{tid}.r1-s1"),
                                                 NamedNode("http://www.w3.org/ns/prov#used"))}
    assert engine.iris.output(f"{tid}.r1-s0") in used  # the released output is the next stop's input
    run_through(engine, f"{tid}.r1-s1", "leipzig")
    run_through(engine, f"{tid}.r1-s2", "cologne")
    assert state_of(engine, tid) == "finished"
    assert set(executions(engine, tid).values()) == {"released"}
    assert_everything_conforms(engine.store)


def test_federated_train_runs_rounds_in_parallel_then_aggregates(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="fedavg", parameters={})
    for round_ in (1, 2):
        assert set(executions(engine, tid)) >= {f"{tid}.r{round_}-s0", f"{tid}.r{round_}-s1"}
        run_through(engine, f"{tid}.r{round_}-s0", "aachen")
        assert state_of(engine, tid) == "running"  # leipzig still working
        run_through(engine, f"{tid}.r{round_}-s1", "leipzig")
        assert state_of(engine, tid) == "aggregating"
        run_through(engine, f"{tid}.r{round_}-agg", "cologne")
    assert state_of(engine, tid) == "finished"
    assert len(executions(engine, tid)) == 6
    assert_everything_conforms(engine.store)


def test_rejection_ends_the_train_with_the_reason(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    eid = f"{tid}.r1-s0"
    engine.step(station("aachen"), execution_id=eid, to="waiting-for-approval")
    engine.step(admin("aachen"), execution_id=eid, to="rejected", reason="No anonymity")
    assert state_of(engine, tid) == "rejected"
    reasons = [r["reason"].value for r in engine.store.run_query("train_events", train=engine.iris.train(tid))
               if r["reason"] is not None]
    assert "No anonymity" in reasons


def test_failure_at_second_station_keeps_first_output_and_fails_train(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    run_through(engine, f"{tid}.r1-s0", "aachen")
    engine.step(station("leipzig"), execution_id=f"{tid}.r1-s1", to="failed", reason="container exited 1")
    assert state_of(engine, tid) == "failed"
    assert engine.store.quads(engine.iris.output(f"{tid}.r1-s0"))


def test_cancel_by_requester_cancels_active_executions(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="fedavg", parameters={})
    with pytest.raises(Forbidden):
        engine.cancel(BOB, train_id=tid)
    engine.cancel(ALICE, train_id=tid, reason="wrong cohort")
    assert state_of(engine, tid) == "cancelled"
    assert set(executions(engine, tid).values()) == {"cancelled"}
    with pytest.raises(IllegalTransition, match="is cancelled"):
        engine.cancel(ALICE, train_id=tid)


def test_illegal_steps_say_which_state_the_execution_is_in(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    with pytest.raises(IllegalTransition, match=r"is queued; it cannot become released \(allowed next:"):
        engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="released")
    with pytest.raises(Forbidden, match="runs at station 'aachen'"):
        engine.step(station("leipzig"), execution_id=f"{tid}.r1-s0", to="waiting-for-approval")
    engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="waiting-for-approval")
    with pytest.raises(Forbidden, match="may only be fired by: StationAdmin"):
        engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="approved")
    with pytest.raises(NotFound):
        engine.step(station("aachen"), execution_id="nope", to="approved")
    with pytest.raises(LifecycleError, match="unknown state 'flying'"):
        engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="flying")


def test_bad_submissions(engine: Lifecycle) -> None:
    with pytest.raises(NotFound):
        engine.submit(ALICE, definition_id="nope", parameters={})
    with pytest.raises(LifecycleError, match="missing required parameter"):
        engine.submit(ALICE, definition_id="count", parameters={})
    with pytest.raises(LifecycleError, match="unknown parameter"):
        engine.submit(ALICE, definition_id="count", parameters={"MIN": "1", "X": "2"})
    with pytest.raises(Forbidden):
        engine.submit(station("aachen"), definition_id="count", parameters={"MIN": "1"})


def test_racing_stations_exactly_one_step_wins(engine: Lifecycle) -> None:
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        try:
            engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="waiting-for-approval")
            outcomes.append("won")
        except IllegalTransition:
            outcomes.append("409")

    threads = [threading.Thread(target=worker) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(outcomes) == ["409"] * 5 + ["won"]
    assert state_of(engine, tid) == "running"
    moved = [q for q in engine.store.quads(None, PHT.toState, PHT.WaitingForApproval)]
    assert len(moved) == 1


def test_an_operators_edit_of_an_execution_is_seen_by_the_next_step(engine: Lifecycle) -> None:
    """The engine caches each execution's context (it never changes through the engine); an edit by other
    means, here moving the execution to another station, must not leave the old station in charge."""
    tid = engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    eid = f"{tid}.r1-s0"
    engine.step(station("aachen"), execution_id=eid, to="waiting-for-approval")  # context cached
    execution = engine.iris.execution(eid)
    engine.store.apply(ChangeSet(delete=[Quad(execution, PHT.atStation, engine.iris.station("aachen"), CENTRAL_GRAPH)],
                                 insert=[Quad(execution, PHT.atStation, engine.iris.station("leipzig"), CENTRAL_GRAPH)]))
    with pytest.raises(Forbidden):
        engine.step(admin("aachen"), execution_id=eid, to="approved")
    engine.step(admin("leipzig"), execution_id=eid, to="approved")
    assert executions(engine, tid)[eid] == "approved"


def test_steps_of_clients_at_once_are_answered_as_steps_taken_one_by_one(engine: Lifecycle) -> None:
    """``step_many`` (the service's steps of concurrent clients): each request gets what ``step`` called alone
    would give it, and the state is what stepping them one by one leaves; the steps decided are written as one
    group (``apply_writes``; on a remote store one commit). A step decided on a state an earlier one of the group
    changes is decided again after the group, on the store's."""
    t1, t2, t3 = (engine.submit(ALICE, definition_id="count", parameters={"MIN": "5"}) for _ in range(3))
    groups: list[int] = []
    apply_writes = engine.store.apply_writes

    def recorded(writes: Any) -> Any:
        groups.append(len(writes))
        return apply_writes(writes)
    engine.store.apply_writes = recorded  # type: ignore[method-assign]
    results = engine.step_many([
        StepRequest(station("aachen"), f"{t1}.r1-s0", "waiting-for-approval"),
        StepRequest(station("aachen"), f"{t2}.r1-s0", "waiting-for-approval"),
        StepRequest(station("aachen"), f"{t1}.r1-s0", "waiting-for-approval"),  # again: it is waiting already
        StepRequest(admin("aachen"), f"{t1}.r1-s0", "approved", reason="counts only"),  # after the first
        StepRequest(admin("aachen"), f"{t3}.r1-s0", "waiting-for-approval"),  # the station's step, not its admin's
        StepRequest(station("aachen"), "no-such-execution", "pulling"),
        StepRequest(station("leipzig"), f"{t2}.r1-s0", "approved"),  # not leipzig's execution
    ])
    kinds = [type(r).__name__ if isinstance(r, Exception) else r for r in results]
    assert kinds == ["waiting-for-approval", "waiting-for-approval", "IllegalTransition", "approved", "Forbidden",
                     "NotFound", "Forbidden"]
    assert "cannot become waiting-for-approval" in str(results[2])
    assert groups == [3], "the two steps decided on the store's states and the one decided on the first's, grouped"
    assert executions(engine, t1) == {f"{t1}.r1-s0": "approved"}
    assert executions(engine, t2) == {f"{t2}.r1-s0": "waiting-for-approval"}
    assert executions(engine, t3) == {f"{t3}.r1-s0": "queued"}
    assert state_of(engine, t1) == state_of(engine, t2) == "running"
    reasons = [r["reason"].value for r in engine.store.run_query("train_events", train=engine.iris.train(t1))
               if r["reason"] is not None]
    assert reasons.count("counts only") == 1
    assert_everything_conforms(engine.store)

"""The state tallies (``orchestrator/state_tallies.py``): after any history of the lifecycle they equal a count of
the trains and executions in each state, concurrent steps lose no increment, and a store written without them
gets them at start-up. On the embedded store and on an Oxigraph server (``tests/central_store.py``)."""

from __future__ import annotations

import threading

from central_store import current, new_central_store, server_store
from fastapi.testclient import TestClient
import pytest
from lifecycle_helpers import UNSIGNED, registered_lifecycle
from principals import ALICE, BOB, OPERATOR, STATIONS, admin, station
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, XSD, ChangeSet, EmbeddedStore, GraphStore
from orchestrator.app import create_app
from orchestrator.errors import IllegalTransition
from orchestrator.lifecycle import Lifecycle
from orchestrator.state_tallies import ensure_state_tallies

pytestmark = pytest.mark.central_stores("embedded", "oxigraph")


# The queries trains_by_state.rq and executions_by_state.rq were before the tallies: the truth they must equal.
DIRECT_COUNT = """PREFIX pht: <https://w3id.org/pht-kg/vocab#>
SELECT ?class ?state (COUNT(?resource) AS ?n) WHERE {
  VALUES ?class { pht:Train pht:Execution }
  GRAPH <https://w3id.org/pht-kg/graph/central> { ?resource a ?class ; pht:state ?state . }
}
GROUP BY ?class ?state"""


def direct_counts(store: GraphStore) -> dict[tuple[str, str], int]:
    return {("train" if r["class"] == PHT.Train else "execution", r["state"].value): int(r["n"].value)
            for r in store.select(DIRECT_COUNT)}


def tallies(store: GraphStore) -> dict[tuple[str, str], int]:
    """What the named queries answer (states with no resource are left out)."""
    found = {("train", r["state"].value): int(r["trains"].value) for r in store.run_query("trains_by_state")}
    found |= {("execution", r["state"].value): int(r["executions"].value)
              for r in store.run_query("executions_by_state")}
    return found


@pytest.fixture()
def life() -> Lifecycle:
    store = new_central_store()
    store.load_vocabulary()
    return registered_lifecycle(store)


def release(life: Lifecycle, eid: str, sid: str) -> None:
    for principal, to in ((station(sid), "waiting-for-approval"), (admin(sid), "approved"), (station(sid), "pulling"),
                          (station(sid), "running"), (station(sid), "output-under-review"), (admin(sid), "released")):
        life.step(principal, execution_id=eid, to=to)


def test_after_a_mixed_history_the_tallies_equal_a_count(life: Lifecycle) -> None:
    store = life.store
    checked = 0

    def check() -> None:
        nonlocal checked
        counts = direct_counts(store)
        assert tallies(store) == counts
        checked += 1

    finished = life.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    check()
    for i, sid in enumerate(STATIONS):
        release(life, f"{finished}.r1-s{i}", sid)
        check()
    cancelled = life.submit(BOB, definition_id="count", parameters={"MIN": "1"})
    life.step(station("aachen"), execution_id=f"{cancelled}.r1-s0", to="waiting-for-approval")
    life.cancel(BOB, train_id=cancelled, reason="wrong cohort")
    check()
    rejected = life.submit(ALICE, definition_id="count", parameters={"MIN": "2"})
    life.step(station("aachen"), execution_id=f"{rejected}.r1-s0", to="waiting-for-approval")
    life.step(admin("aachen"), execution_id=f"{rejected}.r1-s0", to="rejected", reason="not with our data")
    check()
    failed = life.submit(ALICE, definition_id="count", parameters={"MIN": "3"})
    life.step(station("aachen"), execution_id=f"{failed}.r1-s0", to="failed", reason="image not found")
    check()
    # federated: round 1 at both stations, aggregated, round 2 cancelled with both of its executions in flight
    fed = life.submit(ALICE, definition_id="fedavg", parameters={})
    check()
    for i, sid in enumerate(("aachen", "leipzig")):
        release(life, f"{fed}.r1-s{i}", sid)
    check()
    release(life, f"{fed}.r1-agg", "cologne")
    check()
    life.cancel(OPERATOR, train_id=fed, reason="enough")
    check()
    with pytest.raises(IllegalTransition):  # a refused step changes no tally
        life.step(station("aachen"), execution_id=f"{finished}.r1-s0", to="running")
    check()
    counts = direct_counts(store)
    assert counts[("execution", PHT.Cancelled.value)] == 3 and counts[("train", PHT.Finished.value)] == 1
    assert counts[("train", PHT.Rejected.value)] == counts[("train", PHT.Failed.value)] == 1
    assert checked == 12
    # a state left by every resource keeps a tally of 0, which the named queries leave out
    assert store.contains(Quad(NamedNode(f"{life.iris.base}state-tallies/train/Submitted"), PHT.tally,
                               Literal("0", datatype=XSD.integer), CENTRAL_GRAPH))
    if isinstance(store, EmbeddedStore):
        assert store.validate_everything().conforms


def test_concurrent_steps_of_two_services_lose_no_increment(life: Lifecycle) -> None:
    """Two lifecycles (on the Oxigraph server: two store objects, as two service replicas) step different trains
    at once; every step moves four tallies, and each must count every step."""
    other = Lifecycle(server_store("oxigraph") if current() == "oxigraph" else life.store, UNSIGNED)
    trains = [life.submit(ALICE, definition_id="count", parameters={"MIN": str(i)}) for i in range(8)]
    errors: list[BaseException] = []

    def steps(engine: Lifecycle, mine: list[str]) -> None:
        try:
            for tid in mine:
                for _ in range(20):  # a conflict (409) is retried, as a station does
                    try:
                        engine.step(station("aachen"), execution_id=f"{tid}.r1-s0", to="waiting-for-approval")
                        break
                    except IllegalTransition:
                        continue
                else:
                    raise AssertionError(f"the step of {tid} kept conflicting")
        except BaseException as e:  # reported below, with the thread's traceback
            errors.append(e)

    threads = [threading.Thread(target=steps, args=(engine, trains[k::2])) for k, engine in enumerate((life, other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    counts = tallies(life.store)
    assert counts == direct_counts(life.store)
    assert counts[("train", PHT.Running.value)] == 8 and counts[("execution", PHT.WaitingForApproval.value)] == 8
    assert ("train", PHT.Queued.value) not in counts


def test_a_store_without_tallies_gets_them_at_start_up(life: Lifecycle) -> None:
    store = life.store
    tid = life.submit(ALICE, definition_id="count", parameters={"MIN": "5"})
    release(life, f"{tid}.r1-s0", "aachen")
    life.submit(BOB, definition_id="fedavg", parameters={})
    truth = direct_counts(store)
    # as a store written before the tallies existed: none at all
    old = [q for q in store.quads(None, None, None, CENTRAL_GRAPH)
           if q.predicate in (PHT.tally, PHT.tallyOf, PHT.tallyState) or q.object == PHT.StateTally]
    assert old
    store.apply(ChangeSet(delete=old))
    assert tallies(store) == {}
    with TestClient(create_app(UNSIGNED, store=store)):
        assert tallies(store) == truth
        assert ensure_state_tallies(store, life.iris.base) == 0  # written once: a second start counts nothing
    # and the lifecycle keeps them from there on
    life.step(station("leipzig"), execution_id=f"{tid}.r1-s1", to="waiting-for-approval")
    assert tallies(store) == direct_counts(store) != truth

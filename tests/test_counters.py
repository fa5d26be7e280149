"""Counts a write keeps (``GraphStore.apply_updates(counts=...)``, ``graph_store/_counters.py``): created with
their description, added to by net deltas in the same atomic write as the rest of the change, never losing an
increment when writers race. On the embedded store, an Oxigraph server and Virtuoso (``tests/central_store.py``)."""

from __future__ import annotations

import threading

import pytest
from central_store import current, new_central_store, server_store
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    CENTRAL_GRAPH,
    PHT,
    RDF_TYPE,
    XSD,
    ChangeSet,
    ConflictError,
    CountDelta,
    GraphStore,
    ValidationFailed,
)

pytestmark = pytest.mark.central_stores

TALLY = NamedNode("https://pht.example.org/id/state-tallies/train/Running")
DESCRIBED = (Quad(TALLY, RDF_TYPE, PHT.StateTally, CENTRAL_GRAPH), Quad(TALLY, PHT.tallyOf, PHT.Train, CENTRAL_GRAPH),
             Quad(TALLY, PHT.tallyState, PHT.Running, CENTRAL_GRAPH))


def delta(n: int) -> CountDelta:
    return CountDelta(TALLY, PHT.tally, CENTRAL_GRAPH, n, created=DESCRIBED)


def count(store: GraphStore) -> list[int]:
    return [int(q.object.value) for q in store.quads(TALLY, PHT.tally, None, CENTRAL_GRAPH)]


@pytest.fixture()
def store() -> GraphStore:
    s = new_central_store()
    s.load_vocabulary()
    return s


def test_a_count_is_created_described_then_added_to_in_the_write(store: GraphStore) -> None:
    marker = Quad(NamedNode("https://pht.example.org/id/marker"), PHT.reason, Literal("x"), CENTRAL_GRAPH)
    store.apply_updates([], extra=ChangeSet(insert=[marker]), counts=[delta(3)])
    assert count(store) == [3] and store.contains(marker)
    assert all(store.contains(q) for q in DESCRIBED)
    store.apply_updates([], counts=[delta(-2)])
    store.apply_updates([], counts=[delta(0)])  # nothing to add: nothing written
    assert count(store) == [1]
    assert store.quads(TALLY, PHT.tally, None, CENTRAL_GRAPH)[0].object == Literal("1", datatype=XSD.integer)


def test_a_count_the_shapes_refuse_writes_nothing(store: GraphStore) -> None:
    """A tally may not go below 0 (``phts:StateTallyShape``): the write fails whole, its other quads too."""
    store.apply_updates([], counts=[delta(1)])
    marker = Quad(NamedNode("https://pht.example.org/id/marker"), PHT.reason, Literal("x"), CENTRAL_GRAPH)
    with pytest.raises(ValidationFailed):
        store.apply_updates([], extra=ChangeSet(insert=[marker]), counts=[delta(-2)])
    assert count(store) == [1] and not store.contains(marker)


def test_racing_writers_lose_no_increment(store: GraphStore) -> None:
    """8 threads, each with its own store object on a server (as replicas), add 1 to one count 5 times each."""
    stores = [server_store(current()) if current() != "embedded" else store for _ in range(8)]
    errors: list[BaseException] = []

    def add(s: GraphStore) -> None:
        try:
            for _ in range(5):
                s.apply_updates([], counts=[delta(1)])
        except ConflictError as e:  # the guard on the old value: never reached under the write lock
            errors.append(e)

    threads = [threading.Thread(target=add, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert count(store) == [40]

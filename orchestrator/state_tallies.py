"""How many trains and executions are in each lifecycle state, kept by the writes (``pht:StateTally``).

Counting them when asked costs every train or execution of the store (1.0–1.2 s at 10 million triples,
``benchmarks/README.md``); the metrics and ``trains_by_state`` / ``executions_by_state`` read one tally per state
instead. Every change set of the lifecycle that moves, creates or removes a ``pht:state`` keeps the tallies in the
same write: one count per (class, state) with its net delta (``GraphStore.apply_updates(counts=...)``, see
``graph_store/_counters.py``), read and rewritten under the store's write lock with the old value's deletion
guarded, so concurrent steps (also of service replicas on one server) never lose an increment. A store written
before tallies existed gets them once at start-up (:func:`ensure_state_tallies`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, CountDelta, GraphStore, named_query

__all__ = ["Move", "ensure_state_tallies", "tally_counts", "tally_iri"]

Move = tuple[NamedNode, NamedNode | None, NamedNode | None]
"""A state change of one resource: its class (pht:Train or pht:Execution), the state it leaves (None: it is
created) and the state it enters (None: it is removed)."""

_KINDS = {PHT.Train: "train", PHT.Execution: "execution"}


def tally_iri(base: str, cls: NamedNode, state: NamedNode) -> NamedNode:
    """The tally of ``cls`` resources in ``state``: ``{base}state-tallies/{train|execution}/{StateName}``, the IRI
    ``write_state_tallies.rq`` builds too."""
    return NamedNode(f"{base}state-tallies/{_KINDS[cls]}/{state.value.rsplit('#', 1)[-1]}")


def tally_counts(base: str, moves: Iterable[Move]) -> list[CountDelta]:
    """The counts (for ``GraphStore.apply_updates(counts=...)``) of one change set's ``moves``: one per (class,
    state) whose net delta is not 0, a new tally described when it is created."""
    deltas: Counter[tuple[NamedNode, NamedNode]] = Counter()
    for cls, frm, to in moves:
        if frm is not None:
            deltas[cls, frm] -= 1
        if to is not None:
            deltas[cls, to] += 1
    counts = []
    for (cls, state), delta in sorted(deltas.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value)):
        if delta != 0:
            tally = tally_iri(base, cls, state)
            counts.append(CountDelta(tally, PHT.tally, CENTRAL_GRAPH, delta, created=(
                Quad(tally, RDF_TYPE, PHT.StateTally, CENTRAL_GRAPH), Quad(tally, PHT.tallyOf, cls, CENTRAL_GRAPH),
                Quad(tally, PHT.tallyState, state, CENTRAL_GRAPH))))
    return counts


def ensure_state_tallies(store: GraphStore, base: str) -> int:
    """Count the states once and write the tallies if the central graph has none (a store written before they
    existed); returns how many tallies were written (0 if there were some already, or nothing to count). A store
    that has them is recognised by ``trains_by_state`` (a read of the tallies) first: the update's count of every
    train and execution runs only when it has none (seconds at 10 million triples)."""
    if next(iter(store.run_query("trains_by_state")), None) is not None:
        return 0
    (outcome,) = store.apply_updates([(named_query("write_state_tallies").text, {"base": Literal(base)})])
    return outcome.solutions

"""How many trains and executions are in each lifecycle state, kept by the writes (``pht:StateTally``).

Counting them when asked costs every train or execution of the store (1.3–1.7 s at 10 million triples,
``benchmarks/README.md``); the metrics and ``trains_by_state`` / ``executions_by_state`` read one tally per state
instead. Every change set of the lifecycle that moves, creates or removes a ``pht:state`` adds, per (class, state),
ONE ``adjust_state_tally.rq`` with its net delta to the same write: the updates of one change set all read the
store as it was before it (``GraphStore.apply_updates``), so two adjustments of one tally would lose one. The
WHEREs run under the store's write lock and the old count's deletion is guarded, so concurrent steps (also of
service replicas on one server) never lose an increment. A store written before tallies existed gets them once at
start-up (:func:`ensure_state_tallies`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pyoxigraph import Literal, NamedNode

from graph_store import CENTRAL_GRAPH, PHT, XSD, GraphStore, named_query

__all__ = ["Move", "ensure_state_tallies", "tally_iri", "tally_updates"]

Move = tuple[NamedNode, NamedNode | None, NamedNode | None]
"""A state change of one resource: its class (pht:Train or pht:Execution), the state it leaves (None: it is
created) and the state it enters (None: it is removed)."""

_KINDS = {PHT.Train: "train", PHT.Execution: "execution"}


def tally_iri(base: str, cls: NamedNode, state: NamedNode) -> NamedNode:
    """The tally of ``cls`` resources in ``state``: ``{base}state-tallies/{train|execution}/{StateName}``, the IRI
    ``write_state_tallies.rq`` builds too."""
    return NamedNode(f"{base}state-tallies/{_KINDS[cls]}/{state.value.rsplit('#', 1)[-1]}")


def tally_updates(base: str, moves: Iterable[Move]) -> list[tuple[str, dict[str, Any]]]:
    """The ``adjust_state_tally`` updates (for ``GraphStore.apply_updates``) of one change set's ``moves``: one
    per (class, state) whose net delta is not 0."""
    deltas: Counter[tuple[NamedNode, NamedNode]] = Counter()
    for cls, frm, to in moves:
        if frm is not None:
            deltas[cls, frm] -= 1
        if to is not None:
            deltas[cls, to] += 1
    text = named_query("adjust_state_tally").text
    return [(text, {"graph": CENTRAL_GRAPH, "tally": tally_iri(base, cls, state), "class": cls, "state": state,
                    "delta": Literal(str(delta), datatype=XSD.integer)})
            for (cls, state), delta in sorted(deltas.items(), key=lambda kv: (kv[0][0].value, kv[0][1].value))
            if delta != 0]


def ensure_state_tallies(store: GraphStore, base: str) -> int:
    """Count the states once and write the tallies if the central graph has none (a store written before they
    existed); returns how many tallies were written (0 if there were some already, or nothing to count). A store
    that has them is recognised by ``trains_by_state`` (a read of the tallies) first: the update's count of every
    train and execution runs only when it has none (seconds at 10 million triples)."""
    if next(iter(store.run_query("trains_by_state")), None) is not None:
        return 0
    (outcome,) = store.apply_updates([(named_query("write_state_tallies").text, {"base": Literal(base)})])
    return outcome.solutions

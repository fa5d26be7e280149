"""The DSP state machines as the ontology states them (ontology/dataspace.ttl), read once.

The connector advances a process only along a transition this chart has for the message that arrived: an
out-of-order or replayed message finds no transition from the process's current state and is refused (400).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from pyoxigraph import BlankNode, Literal, NamedNode, RdfFormat, Store, Triple

from graph_store import DCTERMS, ONTOLOGY_DIR, PHT

__all__ = ["Chart", "chart"]


@dataclass(frozen=True)
class Chart:
    """States (by DSP name) and transitions ((chart, from, message) -> to) of both DSP processes."""

    transitions: dict[tuple[NamedNode, NamedNode, str], NamedNode]
    names: dict[NamedNode, str]
    states: dict[tuple[NamedNode, str], NamedNode]
    initial: dict[NamedNode, NamedNode]

    def next_state(self, process_class: NamedNode, current: NamedNode, message: str) -> NamedNode | None:
        """The state ``message`` moves a process of ``process_class`` to from ``current``; None if it may not."""
        return self.transitions.get((process_class, current, message))

    def state(self, process_class: NamedNode, name: str) -> NamedNode:
        """The state of ``process_class``'s chart with DSP name ``name`` (e.g. ``"FINALIZED"``)."""
        return self.states[(process_class, name)]


@lru_cache(maxsize=1)
def chart() -> Chart:
    """The chart from ``ontology/dataspace.ttl``."""
    store = Store()
    store.load(path=str(ONTOLOGY_DIR / "dataspace.ttl"), format=RdfFormat.TURTLE)
    transitions: dict[tuple[NamedNode, NamedNode, str], NamedNode] = {}

    def value(subject: NamedNode | BlankNode | Triple, predicate: NamedNode) -> NamedNode:
        found = next(store.quads_for_pattern(subject, predicate, None)).object
        assert isinstance(found, NamedNode), f"{subject} {predicate}: an IRI is expected"
        return found

    for t in store.quads_for_pattern(None, PHT.firedByMessage, None):
        msg = t.object
        assert isinstance(msg, Literal)
        transitions[(value(t.subject, PHT.chartOf), value(t.subject, PHT.protocolFrom), msg.value)] = \
            value(t.subject, PHT.protocolTo)
    names = {q.subject: q.object.value for q in store.quads_for_pattern(None, DCTERMS.identifier, None)
             if isinstance(q.subject, NamedNode) and isinstance(q.object, Literal)}
    states = {(q.object, names[q.subject]): q.subject for q in store.quads_for_pattern(None, PHT.chartOf, None)
              if isinstance(q.subject, NamedNode) and isinstance(q.object, NamedNode) and q.subject in names}
    initial = {q.object: q.subject for q in store.quads_for_pattern(None, PHT.initialProtocolStateOf, None)
               if isinstance(q.object, NamedNode) and isinstance(q.subject, NamedNode)}
    return Chart(transitions=transitions, names=names, states=states, initial=initial)

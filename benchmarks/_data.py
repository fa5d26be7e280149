"""Synthetic, valid platform data of any size, and realistic lifecycle-step change sets, for benchmarks.

The data is the valid SHACL fixture scenario (tests/fixtures/shapes/valid) copied N times with every
example IRI renamed per copy, so it stays valid whatever the size and uses every shape.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pyoxigraph import Literal, NamedNode, Quad, RdfFormat, parse

from graph_store import CENTRAL_GRAPH, PHT, PROV, RDF_TYPE, XSD, ChangeSet, EmbeddedStore

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shapes" / "valid"
EX = "https://pht.example.org/id/"
PROV_ASSOC = PROV.wasAssociatedWith
XSD_DATETIME = XSD.dateTime


def scenario() -> list[Quad]:
    """The valid fixture scenario as quads of the central graph."""
    quads: list[Quad] = []
    for f in sorted(FIXTURES.glob("*.ttl")):
        quads += [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in parse(path=f, format=RdfFormat.TURTLE)]
    return quads


POSITIONS = (PHT.listPosition, PHT.definitionListPosition)
"""The list-position properties (``orchestrator/list_positions.py``): a copy's members are listed after the copy
before's."""


def _rename(term: object, copy: int) -> object:
    if isinstance(term, NamedNode) and term.value.startswith(EX):
        return NamedNode(f"{term.value}-c{copy}")
    return term


def copies(base: list[Quad], n: int) -> Iterator[Quad]:
    """``n`` renamed copies of ``base``; copy c's trains and definitions listed after copy c - 1's (their list
    positions shifted by the base's number of positions of that list)."""
    listed = {p: sum(1 for q in base if q.predicate == p) for p in POSITIONS}
    for c in range(n):
        for q in base:
            o = q.object
            if q.predicate in listed and isinstance(o, Literal):
                o = Literal(str(int(o.value) + listed[q.predicate] * c), datatype=XSD.integer)
            yield Quad(_rename(q.subject, c), q.predicate, _rename(o, c), q.graph_name)  # type: ignore[arg-type]


class LifecycleSteps:
    """Change sets that move executions between two states and record a PROV state-change event each time,
    guarded by the current state, as the orchestrator's lifecycle steps do (about 12 triples each)."""

    STATES = (PHT.Running, PHT.OutputUnderReview)

    def __init__(self, copies_in_store: int, execution: str = "exec-0001-aachen", train: str = "train-0001", *,
                 first_copy: int = 0) -> None:
        """Steps cycle through one execution of each copy from ``first_copy`` on (e.g. only the newest copies,
        whose trains are still in flight)."""
        self._targets = [(NamedNode(f"{EX}{execution}-c{c}"), NamedNode(f"{EX}{train}-c{c}"))
                         for c in range(first_copy, copies_in_store)]
        self._events = f"{EX}bench-event-{execution}-"  # steps of another execution name their events apart
        self._current: dict[NamedNode, NamedNode] = {}
        self._counter = itertools.count()
        self._t0 = datetime(2026, 11, 27, tzinfo=timezone.utc)

    def initial_state(self, execution: NamedNode, stored: NamedNode) -> None:
        self._current[execution] = stored

    def next(self) -> ChangeSet:
        i = next(self._counter)
        execution, train = self._targets[i % len(self._targets)]
        old = self._current[execution]
        new = self.STATES[0] if old != self.STATES[0] else self.STATES[1]
        self._current[execution] = new
        event = NamedNode(f"{self._events}{i}")
        g = CENTRAL_GRAPH
        when = Literal((self._t0 + timedelta(milliseconds=i)).isoformat().replace("+00:00", "Z"), datatype=XSD_DATETIME)
        return ChangeSet(
            guard=[Quad(execution, PHT.state, old, g)],
            delete=[Quad(execution, PHT.state, old, g)],
            insert=[
                Quad(execution, PHT.state, new, g),
                Quad(event, RDF_TYPE, PHT.StateChangeEvent, g),
                Quad(event, PHT.eventTime, when, g),
                Quad(event, PHT.aboutTrain, train, g),
                Quad(event, PHT.aboutExecution, execution, g),
                Quad(event, PHT.emittedBy, NamedNode(f"{EX}station-aachen-c0"), g),
                Quad(event, PHT.fromState, old, g),
                Quad(event, PHT.toState, new, g),
                Quad(event, PROV_ASSOC, NamedNode(f"{EX}station-aachen-c0"), g),
                Quad(event, PHT.actingRole, PHT.StationRole, g),
                Quad(event, PHT.reason, Literal(f"benchmark step {i}"), g),
            ],
        )

    @property
    def executions(self) -> list[NamedNode]:
        return [e for e, _ in self._targets]


def rate(store: EmbeddedStore, steps: LifecycleSteps, count: int) -> float:
    """Validated change sets per second, one ``apply()`` each (as the service's lifecycle steps commit them)."""
    changes = [steps.next() for _ in range(count)]
    t0 = time.perf_counter()
    for change in changes:
        store.apply(change)
    return count / (time.perf_counter() - t0)

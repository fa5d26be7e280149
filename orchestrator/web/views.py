"""What the pages show, read from the graph with named queries and shaped for the templates.

Kept apart from the routes so that the live stream (``stream.py``) and the pages compute a train's state,
progress and events the same way. Visibility follows the API: a researcher sees their own trains, a station
(or its admin) the trains that visit it, an operator everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyoxigraph import NamedNode

from client.purposes import data_use_terms
from client.train_request import RequestTerms
from graph_store import NO_FILTER, PHT

from ..api.deps import Services
from ..page_tokens import ListKey
from ..principal import Principal
from ..reads import Event, Execution, PendingDecision, Train, local_name, planned_executions
from ..verification import train_verdict
from .session import PageError

__all__ = ["ANY", "ID_PATTERN", "EventRow", "ExecutionRow", "PendingItem", "Snapshot", "TrainFacts", "TrainPage",
           "TrainRow", "check_id", "executions", "pending_work", "planned_executions", "train_events", "train_facts",
           "train_page", "train_rows", "train_snapshot", "when"]

PendingItem = PendingDecision
"""A station's pending decision as the page shows it (the read model's record as is)."""

ANY = NO_FILTER
ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""Identifiers of stations, datasets, definitions and trains (the API's ``Identifier``; UUIDs fit)."""


def check_id(value: str, what: str) -> str:
    """``value`` if it can be an identifier, else a 400 page (never a store lookup with garbage)."""
    if not ID_PATTERN.match(value):
        raise PageError(400, f"Not a {what} identifier",
                        f"{value[:80]!r} is not a {what} identifier: 1 to 64 letters, digits, '.', '_' or '-'.")
    return value


def when(value: str | None) -> str:
    """An xsd:dateTime as people read it: ``2026-11-27 10:01:02`` (UTC, as stored), '' for none."""
    if not value:
        return ""
    return value[:19].replace("T", " ")


# -- the trains list ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRow:
    id: str
    state: str
    requester: str
    definition: str
    created: str
    released: int
    planned: int
    active_stations: str


def train_rows(s: Services, principal: Principal, state: str | None, after: ListKey,
               limit: int) -> tuple[list[TrainRow], int, ListKey | None]:
    """One page of the trains the caller may list, newest first, with progress (see ``Reads.trains``): its
    rows, the list's total and the key of the next page (None on the last)."""
    state_iri = s.lifecycle.chart.state_by_token[state] if state else None
    found = s.reads.trains(principal, state_iri, after=after, limit=limit)
    return ([TrainRow(id=t.id, state=t.state, requester=t.requester, definition=t.definition,
                      created=when(t.created), released=t.released, planned=t.planned,
                      active_stations=", ".join(t.active_stations)) for t in found.items],
            found.total, found.next)


# -- one train ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutionRow:
    id: str
    state: str
    station: str
    round: int
    slot: str
    """``s<stop index>`` or ``agg`` for the aggregation: where it sits in the route."""
    started: str
    ended: str
    terminal: bool


@dataclass(frozen=True)
class EventRow:
    event: str
    type: str
    time: str
    execution: str
    from_state: str
    to_state: str
    agent: str
    role: str
    reason: str
    source: str
    """Who emitted it, from the graph it was recorded in: ``central`` or ``station:<id>`` (see ``Reads.events``)."""


@dataclass(frozen=True)
class Snapshot:
    """What the live stream sends whenever it changes: the train's state, progress and executions."""

    state: str
    terminal: bool
    released: int
    planned: int
    current: list[str]
    executions: list[dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RouteCell:
    slot: str
    station: str
    execution: ExecutionRow | None = None


@dataclass
class TrainPage:
    id: str
    state: str
    requester: str
    created: str
    definition: str
    definition_title: str
    mode: str
    rounds: int
    aggregator: str
    snapshot: Snapshot
    route: list[tuple[int, list[RouteCell]]] = field(default_factory=list)
    timelines: list[tuple[str, str, list[tuple[str, str]]]] = field(default_factory=list)
    """(label, execution id or '' for the train itself, [(state, time), ...])."""
    events: list[EventRow] = field(default_factory=list)
    verified: bool = False
    """Whether the train's history verifies (``verification.py``: the researcher's signature, every station's)."""
    breaks: list[str] = field(default_factory=list)
    """What does not verify, one sentence each (empty when verified or when nothing is signed yet)."""
    signed_hops: int = 0
    declared: list[tuple[str, str]] = field(default_factory=list)
    """What the signed request declares the train is for: (what, value) for its purpose (DUO label), project and
    differential-privacy terms, those it declares."""


@dataclass(frozen=True)
class TrainFacts:
    """What does not change while a train runs: its identity, definition, route and planned size."""

    train: NamedNode
    read: Train
    stops: list[tuple[int, str]]
    planned: int


def train_facts(s: Services, principal: Principal, train_id: str) -> TrainFacts:
    """The train if the caller may see it (404 if there is none, 403 if it is someone else's)."""
    read = s.reads.train(principal, train_id)
    stops = s.reads.route(read.definition)
    return TrainFacts(read.iri, read, stops, planned_executions(read.mode, read.rounds, len(stops)))


def _execution_row(e: Execution) -> ExecutionRow:
    return ExecutionRow(id=e.id, state=e.state, station=e.station, round=e.round,
                        slot="agg" if e.stop is None else f"s{e.stop}", started=when(e.started), ended=when(e.ended),
                        terminal=e.terminal)


def executions(s: Services, train: NamedNode) -> list[ExecutionRow]:
    return [_execution_row(e) for e in s.reads.executions(train)]


def _event_row(e: Event) -> EventRow:
    return EventRow(event=e.iri, type=e.type, time=when(e.time), execution=e.execution or "",
                    from_state=e.from_state or "", to_state=e.to_state or "", agent=local_name(e.agent),
                    role=e.role or "", reason=e.reason or "", source=e.source)


def train_events(s: Services, train: NamedNode) -> list[EventRow]:
    """The train's events, oldest first (the API's ``/events``, shaped for people)."""
    return [_event_row(e) for e in s.reads.events(train)]


def train_snapshot(s: Services, facts: TrainFacts, execs: Sequence[ExecutionRow]) -> Snapshot:
    """The train's current state and progress (re-read: the state changes while it runs)."""
    chart = s.lifecycle.chart
    state = s.reads.train_state(facts.train) or facts.read.state
    return Snapshot(state=chart.token(state), terminal=state in chart.terminal,
                    released=sum(e.state == "released" for e in execs), planned=facts.planned,
                    current=sorted({e.station for e in execs if not e.terminal}),
                    executions=[asdict(e) for e in execs])


def _timelines(events: Iterable[EventRow], execs: Sequence[ExecutionRow],
               train_state: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    by_execution: dict[str, list[tuple[str, str]]] = {"": []}
    for e in execs:
        by_execution[e.id] = []
    for ev in events:
        if ev.to_state:
            steps = by_execution.setdefault(ev.execution, [])
            if not steps and ev.from_state:
                steps.append((ev.from_state, ""))  # the state it was created in (no event records that)
            steps.append((ev.to_state, ev.time))
    lines = [("train", "", by_execution.pop("") or [(train_state, "")])]
    for e in execs:
        lines.append((f"round {e.round}, {e.station}", e.id, by_execution.get(e.id) or [(e.state, "")]))
    return lines


def train_page(s: Services, principal: Principal, train_id: str) -> TrainPage:
    """Everything the train page shows: header, progress, route, timelines, events."""
    facts = train_facts(s, principal, train_id)
    read = facts.read
    execs = [_execution_row(e) for e in read.executions]
    snapshot = train_snapshot(s, facts, execs)
    events = train_events(s, facts.train)
    verdict = train_verdict(s.store, facts.train)
    by_slot = {(e.round, e.slot): e for e in execs}
    route = []
    for n in range(1, read.rounds + 1):
        cells = [RouteCell(f"s{i}", station, by_slot.get((n, f"s{i}"))) for i, station in facts.stops]
        if read.mode == PHT.Federated:
            cells.append(RouteCell("agg", read.aggregator, by_slot.get((n, "agg"))))
        route.append((n, cells))
    return TrainPage(id=train_id, state=snapshot.state, requester=read.requester, created=when(read.created),
                     definition=read.definition_id, definition_title=read.definition_title,
                     mode=local_name(read.mode.value).lower(), rounds=read.rounds, aggregator=read.aggregator,
                     snapshot=snapshot, route=route, timelines=_timelines(events, execs, snapshot.state),
                     events=events, verified=verdict.verified, breaks=verdict.breaks,
                     signed_hops=verdict.verified_hops, declared=_declared(s.reads.declared_terms(facts.train)))


def _declared(terms: RequestTerms) -> list[tuple[str, str]]:
    """The train page's lines for a request's declared terms (stations decide on these: docs/station.md)."""
    rows = [("purpose", f"{data_use_terms().label(terms.purpose)} ({terms.purpose})" if terms.purpose else None),
            ("project", terms.project),
            ("privacy", f"{terms.dp_mechanism or 'a differentially private mechanism'}, ε {terms.epsilon} per release"
             if terms.epsilon else None)]
    return [(what, value) for what, value in rows if value]


# -- a station's pending decisions -------------------------------------------------------------------------


def pending_work(s: Services, principal: Principal, station_id: str) -> list[PendingItem]:
    """The station's executions waiting for its admin: approvals, and outputs under review (held at the station)."""
    return s.reads.pending_decisions(principal, station_id)

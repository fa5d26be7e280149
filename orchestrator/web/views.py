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

from graph_store import NO_FILTER, PHT

from ..api.deps import Services, text
from ..lifecycle import Forbidden, NotFound
from ..principal import Principal, Role
from .session import PageError

__all__ = ["ANY", "ID_PATTERN", "EventRow", "ExecutionRow", "PendingItem", "Snapshot", "TrainFacts", "TrainPage",
           "TrainRow", "check_id", "executions", "pending_work", "planned_executions", "train_events", "train_facts",
           "train_page", "train_rows", "train_snapshot", "when"]

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


def _local(value: str | None) -> str:
    """The last segment of an IRI (an agent's or station's name), '' for none."""
    return "" if not value else value.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def planned_executions(mode: NamedNode | None, rounds: int, stops: int) -> int:
    """Executions a train will have when it finishes: every stop each round, plus the aggregation in
    federated mode."""
    return rounds * (stops + (1 if mode == PHT.Federated else 0))


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


def train_rows(s: Services, principal: Principal, state: str | None) -> list[TrainRow]:
    """Trains the caller may list, newest first, with progress: three queries, whatever the number of trains
    (the trains with their executions' states; the few definitions and stations they refer to)."""
    iris, chart = s.lifecycle.iris, s.lifecycle.chart
    requester = ANY if principal.has(Role.OPERATOR) else iris.agent(principal.subject)
    state_iri = chart.state_by_token[state] if state else ANY
    definitions = {r["definition"]: (r["id"].value, r["mode"], int(r["rounds"].value), int(r["stops"].value))
                   for r in s.store.run_query("list_definitions")}
    stations = {r["station"].value: r["id"].value for r in s.store.run_query("list_stations")}
    released_iri, terminal, token = PHT.Released.value, {t.value for t in chart.terminal}, chart.token
    agents = f"{iris.base}agents/"
    rows = []
    for r in s.store.run_query("trains_overview", onlyRequester=requester, onlyState=state_iri):
        released, active = 0, set()
        lines = r["executionStates"]
        for line in (lines.value if lines is not None else "").split("\n"):
            if line:
                execution_state, _, station = line.partition(" ")
                if execution_state == released_iri:
                    released += 1
                elif execution_state not in terminal:
                    active.add(stations.get(station, station))
        definition, mode, rounds, stops = definitions.get(r["definition"], (r["definition"].value, None, 0, 0))
        requester_iri = r["requester"].value
        rows.append(TrainRow(
            id=r["id"].value, state=token(r["state"]),
            requester=requester_iri[len(agents):] if requester_iri.startswith(agents) else requester_iri,
            definition=definition, created=when(r["created"].value), released=released,
            planned=planned_executions(mode, rounds, stops), active_stations=", ".join(sorted(active))))
    return rows


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


@dataclass(frozen=True)
class TrainFacts:
    """What does not change while a train runs: its identity, definition, route and planned size."""

    train: NamedNode
    row: Any
    stops: list[tuple[int, str]]
    planned: int


def train_facts(s: Services, principal: Principal, train_id: str) -> TrainFacts:
    """The train if the caller may see it (404 if there is none, 403 if it is someone else's)."""
    iris = s.lifecycle.iris
    train = iris.train(train_id)
    rows = list(s.store.run_query("train_summary", train=train))
    if not rows:
        raise NotFound(f"there is no train {train_id}")
    row = rows[0]
    if not principal.has(Role.OPERATOR):
        mine = principal.has(Role.RESEARCHER) and row["requester"] == iris.agent(principal.subject)
        visits = principal.station is not None and any(
            e.station == principal.station for e in executions(s, train))
        if not (mine or visits):
            raise Forbidden(f"train {train_id} belongs to another requester")
    stops = [(int(r["stopIndex"].value), r["stationId"].value)
             for r in s.store.run_query("route", definition=row["definition"])]
    return TrainFacts(train, row, stops, planned_executions(row["mode"], int(row["rounds"].value), len(stops)))


def executions(s: Services, train: NamedNode) -> list[ExecutionRow]:
    iris, chart = s.lifecycle.iris, s.lifecycle.chart
    seen: dict[str, ExecutionRow] = {}
    for r in s.store.run_query("train_executions", train=train):
        eid = iris.local(r["execution"], "executions")
        if eid in seen:  # one row per output; an execution has at most one
            continue
        seen[eid] = ExecutionRow(id=eid, state=chart.token(r["state"]), station=r["stationId"].value,
                                 round=int(r["round"].value),
                                 slot="agg" if r["stopIndex"] is None else f"s{int(r['stopIndex'].value)}",
                                 started=when(text(r["started"])), ended=when(text(r["ended"])),
                                 terminal=r["state"] in chart.terminal)
    return list(seen.values())


def train_events(s: Services, train: NamedNode) -> list[EventRow]:
    """The train's events, oldest first (the API's ``/events``, shaped for people)."""
    iris, chart = s.lifecycle.iris, s.lifecycle.chart
    return [EventRow(event=r["event"].value, type=_local(text(r["type"])), time=when(text(r["time"])),
                     execution="" if r["execution"] is None else iris.local(r["execution"], "executions"),
                     from_state="" if r["from"] is None else chart.token(r["from"]),
                     to_state="" if r["to"] is None else chart.token(r["to"]),
                     agent=_local(text(r["agent"])), role=_local(text(r["role"])), reason=text(r["reason"]) or "")
            for r in s.store.run_query("train_events", train=train)]


def train_snapshot(s: Services, facts: TrainFacts, execs: Sequence[ExecutionRow]) -> Snapshot:
    """The train's current state and progress (re-read: the state changes while it runs)."""
    chart = s.lifecycle.chart
    rows = list(s.store.run_query("train_context", train=facts.train))
    state = rows[0]["state"] if rows else facts.row["state"]
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
    row, iris = facts.row, s.lifecycle.iris
    execs = executions(s, facts.train)
    snapshot = train_snapshot(s, facts, execs)
    events = train_events(s, facts.train)
    rounds = int(row["rounds"].value)
    aggregator = text(row["aggregatorId"]) or ""
    federated = row["mode"] == PHT.Federated
    by_slot = {(e.round, e.slot): e for e in execs}
    route = []
    for n in range(1, rounds + 1):
        cells = [RouteCell(f"s{i}", station, by_slot.get((n, f"s{i}"))) for i, station in facts.stops]
        if federated:
            cells.append(RouteCell("agg", aggregator, by_slot.get((n, "agg"))))
        route.append((n, cells))
    return TrainPage(id=train_id, state=snapshot.state, requester=iris.local(row["requester"], "agents"),
                     created=when(row["created"].value), definition=row["definitionId"].value,
                     definition_title=text(row["definitionTitle"]) or "", mode=_local(row["mode"].value).lower(),
                     rounds=rounds, aggregator=aggregator, snapshot=snapshot, route=route,
                     timelines=_timelines(events, execs, snapshot.state), events=events)


# -- a station's pending decisions -------------------------------------------------------------------------


@dataclass
class PendingItem:
    execution: str
    state: str
    train: str
    definition: str
    requester: str
    image: str
    round: int
    output_sha256: str = ""
    output_bytes: str = ""
    output_title: str = ""
    checks: list[tuple[str, bool, str]] = field(default_factory=list)


def pending_work(s: Services, station_id: str) -> list[PendingItem]:
    """The station's executions waiting for its admin: approvals, and outputs under review with their checks."""
    iris, chart = s.lifecycle.iris, s.lifecycle.chart
    station = iris.station(station_id)
    items: dict[str, PendingItem] = {}
    for r in s.store.run_query("station_work", station=station):
        if r["state"] not in (PHT.WaitingForApproval, PHT.OutputUnderReview):
            continue
        eid = iris.local(r["execution"], "executions")
        items[eid] = PendingItem(execution=eid, state=chart.token(r["state"]), train=r["trainId"].value,
                                 definition=r["definitionId"].value, requester=_local(r["requester"].value),
                                 image=f"{r['imageName'].value}@{r['imageDigest'].value}", round=int(r["round"].value))
    for r in s.store.run_query("station_reviews", station=station):
        item = items.get(iris.local(r["execution"], "executions"))
        if item is None:
            continue
        item.output_sha256 = text(r["sha256"]) or ""
        item.output_bytes = text(r["byteSize"]) or ""
        item.output_title = text(r["title"]) or ""
        if r["checkName"] is not None:
            item.checks.append((r["checkName"].value, r["passed"].value == "true", text(r["detail"]) or ""))
    return list(items.values())

"""The read side: every question the REST API and the web view ask of the graph, answered once.

Routers and pages only shape these records for their medium (JSON models, HTML rows); who may see what is
decided here, by one rule per role, so that a change to a rule changes every path that shows the data:

- a **train** (with its executions and events): its requester (a researcher), the stations it visits (their
  tokens and admins), and operators (:func:`may_see_train`);
- the **list of trains**: a researcher's own, an operator's all (:meth:`Reads.trains`);
- a **station's** work, pending decisions and lease: that station's tokens and operators
  (:func:`check_station_scope`);
- a train's **released outputs** as results (links to the object store): its requester and operators only
  (:func:`may_fetch_results`); the stations it visits see the train, not the results;
- the registry (stations, datasets, definitions): every authenticated caller.

The raw graph paths (``/sparql``, the Graph Store Protocol, the web view's SPARQL form) apply the same train
rule to quads: a caller who is not an operator queries a store of what they may read, built by
``readable_graph.py`` with :func:`may_see_train`. Records carry lexical values (IRIs, ``xsd:dateTime`` text,
state tokens): callers never touch query rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pyoxigraph import Literal, NamedNode, QuerySolution, Triple

from client import WorkItem
from client.key_claims import SEC_NS
from client.train_request import RequestTerms
from graph_store import CENTRAL_GRAPH, NO_FILTER, PHT, GraphStore, station_of_graph

from .chart import Chart
from .errors import Forbidden, IllegalTransition, NotFound
from .execution_records import input_record_hash
from .naming import Iris
from .list_positions import DEFINITIONS, TRAINS, next_key, position_literal, window
from .page_tokens import FIRST, ListKey
from .principal import Principal, Role
from .readers import ReaderDirectory

__all__ = ["PAGE_MAX", "Dataset", "Definition", "DefinitionsPage", "Event", "Execution", "KeysetPage",
           "PendingDecision", "Reads", "ReleasedOutput", "Station", "Train", "TrainSummary", "TrainsPage",
           "check_station_scope", "local_name", "may_fetch_results", "may_see_train", "planned_executions", "text"]

VERIFICATION_METHOD = NamedNode(SEC_NS + "verificationMethod")
T = TypeVar("T")
K = TypeVar("K")

PAGE_MAX = 500
"""The largest page of the trains list (``trains_overview.rq`` answers one more, to tell whether a page follows)."""

FILTERED_WINDOW = 1000
"""How many list positions an operator's page with a state filter scans (``trains_overview_all.rq``): twice the
largest page, so a common state's page is full, while a rare state's pages are short rather than slow (at 10
million triples a window of 1,000 trains costs about 100 ms, one of 6,000 over 200)."""


def text(term: object) -> str | None:
    """The lexical value of a term (None stays None)."""
    return None if term is None else str(getattr(term, "value", term))


def _source(graph: object) -> str:
    """Who emitted an event, from the graph it was recorded in: ``central`` or ``station:<id>``."""
    station = station_of_graph(graph)
    return "central" if station is None else f"station:{station}"


def local_name(iri: str | None) -> str:
    """The last segment of an IRI (``…/agents/alice`` → ``alice``, ``…#Federated`` → ``Federated``)."""
    return "" if not iri else iri.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]


# -- the rules ---------------------------------------------------------------------------------------------


def may_see_train(principal: Principal, *, requester: NamedNode, stations: Sequence[str], iris: Iris) -> bool:
    """The one rule for a train and everything about it: operators; its requester (a researcher token whose
    subject attributed it); a station it visits (``stations``: the ids of its executions' stations)."""
    if principal.has(Role.OPERATOR):
        return True
    mine = principal.has(Role.RESEARCHER) and requester == iris.agent(principal.subject)
    return mine or (principal.station is not None and principal.station in stations)


def may_fetch_results(principal: Principal, *, requester: str, iris: Iris) -> bool:
    """Who may take a train's released outputs out of the platform: operators and its requester (``requester``:
    the agent id). Not the stations it visits: each gets its input from the object store with its own
    credentials, and a result link would hand it what the other stations released."""
    if principal.has(Role.OPERATOR):
        return True
    return principal.has(Role.RESEARCHER) and iris.agent(principal.subject) == iris.agent(requester)


def _signed_request(store: GraphStore, train: object) -> tuple[str, str]:
    """A train's signed request and its proof as N-Triples (``train_request.rq``), each sorted; empty when the
    train is unsigned. The station verifies them itself: this only copies what the graph holds."""
    parts: dict[str, list[str]] = {"request": [], "proof": []}
    for row in store.run_query("train_request", train=train):
        parts[str(row["part"].value)].append(f"{Triple(row['s'], row['p'], row['o'])} .\n")
    return "".join(sorted(parts["request"])), "".join(sorted(parts["proof"]))


def check_station_scope(principal: Principal, station_id: str, what: str) -> None:
    """Refuse (403) a station-side read by anyone but that station's tokens and operators; ``what`` completes
    the sentence "a token of station X cannot ``what`` Y" (e.g. "read the work of")."""
    if not principal.has(Role.OPERATOR) and principal.station != station_id:
        raise Forbidden(f"a token of station {principal.station!r} cannot {what} {station_id!r}")


def planned_executions(mode: NamedNode | None, rounds: int, stops: int) -> int:
    """Executions a train will have when it finishes: every stop each round, plus the aggregation in
    federated mode."""
    return rounds * (stops + (1 if mode == PHT.Federated else 0))


# -- records -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Execution:
    id: str
    state: str
    """The state's token (``running``, ``released``...)."""
    station: str
    round: int
    stop: int | None
    """The route stop's index; None for a federated round's aggregation."""
    started: str | None
    ended: str | None
    output: str | None
    output_sha256: str | None
    terminal: bool


@dataclass(frozen=True)
class ReleasedOutput:
    """A released output its requester may fetch: the execution that released it and the digest it is stored by."""

    train: str
    execution: str
    sha256: str


@dataclass(frozen=True)
class Event:
    iri: str
    type: str
    """The event class's local name (``StateChangeEvent``...)."""
    time: str
    execution: str | None
    from_state: str | None
    to_state: str | None
    agent: str | None
    """The agent's IRI."""
    role: str | None
    """The role's local name (``Researcher``...)."""
    reason: str | None
    source: str
    """Who emitted it, as the graph it was recorded in says (never the event's own claim): ``central`` (the central
    lifecycle) or ``station:<id>`` (that station's MPU)."""


@dataclass(frozen=True)
class Train:
    """A train the caller may see, with what does not change while it runs and its executions as read."""

    iri: NamedNode
    id: str
    state: NamedNode
    requester: str
    """The requester's agent id."""
    created: str
    definition: NamedNode
    definition_id: str
    definition_title: str
    mode: NamedNode
    rounds: int
    aggregator: str
    executions: list[Execution]
    signed_by: str | None = None
    """The signing key (verification method) of the train's signed request, verified at submission; None: the
    train was submitted unsigned."""


@dataclass(frozen=True)
class TrainSummary:
    """A line of the trains list: the train and its progress."""

    id: str
    iri: str
    state: str
    requester: str
    definition: str
    created: str
    released: int
    planned: int
    active_stations: list[str]
    position: int
    """The train's ``pht:listPosition`` (the list's order; with ``id``, the key of the page after it)."""


@dataclass(frozen=True)
class KeysetPage(Generic[T, K]):
    """A page of a keyset-paged list: its items, how many the list has in all, and the key after which the next
    page starts (None on the last page)."""

    items: list[T]
    total: int
    next: K | None


TrainsPage = KeysetPage[TrainSummary, ListKey]
"""The trains list, newest first (the key: list position and identifier)."""


@dataclass(frozen=True)
class Station:
    id: str
    title: str | None
    owner: str | None
    runtimes: list[str]


@dataclass(frozen=True)
class Dataset:
    id: str
    title: str | None
    station: str


@dataclass(frozen=True)
class Definition:
    id: str
    title: str | None
    mode: NamedNode | None
    rounds: int
    image_digest: str
    stops: int


DefinitionsPage = KeysetPage[Definition, ListKey]
"""The definitions list, newest first (the key: list position and identifier)."""


@dataclass
class PendingDecision:
    """An execution waiting for its station admin: an approval, or an output under review. Nothing about the output
    itself: until its release, its digest, size and checks stay at the station (docs/station.md)."""

    execution: str
    state: str
    train: str
    definition: str
    requester: str
    image: str
    round: int


# -- the reads ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reads:
    """Named queries over ``store``, mapped to records; every method that reads something not public takes
    the caller and applies the rule above."""

    store: GraphStore
    iris: Iris
    chart: Chart
    _record_hashes: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    # -- trains

    def train(self, principal: Principal, train_id: str) -> Train:
        """The train if the caller may see it (404 if there is none, 403 if it is someone else's)."""
        iri = self.iris.train(train_id)
        rows = list(self.store.run_query("train_summary", train=iri))
        if not rows:
            raise NotFound(f"there is no train {train_id}")
        row = rows[0]
        executions = self.executions(iri)
        requester = row["requester"]
        assert isinstance(requester, NamedNode)  # the shapes make it an IRI
        if not may_see_train(principal, requester=requester, stations=[e.station for e in executions],
                             iris=self.iris):
            raise Forbidden(f"train {train_id} belongs to another requester")
        definition, mode = row["definition"], row["mode"]
        assert isinstance(definition, NamedNode) and isinstance(mode, NamedNode)
        state = row["state"]
        assert isinstance(state, NamedNode)
        return Train(iri=iri, id=train_id, state=state, requester=self.iris.local(requester, "agents"),
                     created=text(row["created"]) or "", definition=definition,
                     definition_id=text(row["definitionId"]) or "", definition_title=text(row["definitionTitle"]) or "",
                     mode=mode, rounds=int(row["rounds"].value), aggregator=text(row["aggregatorId"]) or "",
                     executions=executions, signed_by=self.signed_by(iri))

    def signed_by(self, train: NamedNode) -> str | None:
        """The verification method of ``train``'s request proof (see ``orchestrator.signed_requests``), if any: the
        key whose signature the service verified at submission; None for an unsigned train."""
        for link in self.store.quads(train, PHT.requestProof, None, CENTRAL_GRAPH):
            for method in self.store.quads(link.object, VERIFICATION_METHOD, None, CENTRAL_GRAPH):
                return text(method.object)
        return None

    def declared_terms(self, train: NamedNode) -> RequestTerms:
        """The purpose, project and differential-privacy terms ``train``'s signed request declares (none declared:
        all None), as verified and stored at submission."""
        found: dict[NamedNode, str] = {}
        for link in self.store.quads(train, PHT.signedRequest, None, CENTRAL_GRAPH):
            for predicate in (PHT.purpose, PHT.project, PHT.dpMechanism, PHT.epsilon):
                for q in self.store.quads(link.object, predicate, None, CENTRAL_GRAPH):
                    found[predicate] = q.object.value if isinstance(q.object, NamedNode | Literal) else ""
        return RequestTerms(purpose=found.get(PHT.purpose), project=found.get(PHT.project),
                            dp_mechanism=found.get(PHT.dpMechanism), epsilon=found.get(PHT.epsilon))

    def released_output(self, principal: Principal, train_id: str, execution_id: str | None = None) -> ReleasedOutput:
        """The released output of one execution of the train, or without ``execution_id`` the train's result (the
        output of its last execution, once it finished); for its requester and operators only (403 for
        everyone else, 404 if there is no such train or execution, 409 if there is no released output yet)."""
        train = self.train(principal, train_id)
        if not may_fetch_results(principal, requester=train.requester, iris=self.iris):
            raise Forbidden(f"only the requester of train {train_id} and operators may fetch its results")
        if execution_id is None:
            if train.state != PHT.Finished or not train.executions:
                raise IllegalTransition(f"train {train_id} is {self.chart.token(train.state)}, not finished: "
                                        "it has no result")
            execution = train.executions[-1]
        else:
            found = [e for e in train.executions if e.id == execution_id]
            if not found:
                raise NotFound(f"train {train_id} has no execution {execution_id}")
            execution = found[0]
        if execution.state != "released" or not execution.output_sha256:
            raise IllegalTransition(f"execution {execution.id} is {execution.state}: it has no released output")
        return ReleasedOutput(train_id, execution.id, execution.output_sha256)

    def route(self, definition: NamedNode) -> list[tuple[int, str]]:
        """A definition's route: (stop index, station id) in order."""
        return [(int(r["stopIndex"].value), r["stationId"].value)
                for r in self.store.run_query("route", definition=definition)]

    def train_state(self, train: NamedNode) -> NamedNode | None:
        """The train's current state (it changes while it runs); None if it is gone."""
        for r in self.store.run_query("train_context", train=train):
            state = r["state"]
            return state if isinstance(state, NamedNode) else None
        return None

    def executions(self, train: NamedNode) -> list[Execution]:
        """The train's executions by round and stop (the aggregation last in its round)."""
        seen: dict[str, Execution] = {}
        for r in self.store.run_query("train_executions", train=train):
            eid = self.iris.local(r["execution"], "executions")
            if eid in seen:  # one row per output; an execution has at most one
                continue
            seen[eid] = Execution(id=eid, state=self.chart.token(r["state"]), station=text(r["stationId"]) or "",
                                  round=int(r["round"].value),
                                  stop=None if r["stopIndex"] is None else int(r["stopIndex"].value),
                                  started=text(r["started"]), ended=text(r["ended"]), output=text(r["output"]),
                                  output_sha256=text(r["outputSha256"]), terminal=r["state"] in self.chart.terminal)
        return list(seen.values())

    def events(self, train: NamedNode) -> list[Event]:
        """The train's events, oldest first: every state change of the central lifecycle with who, when, from,
        to and why, and the stations' own events that claim no transition (``train_events.rq``), each with who
        emitted it."""
        chart, iris = self.chart, self.iris
        return [Event(iri=r["event"].value, type=local_name(text(r["type"])), time=text(r["time"]) or "",
                      execution=None if r["execution"] is None else iris.local(r["execution"], "executions"),
                      from_state=None if r["from"] is None else chart.token(r["from"]),
                      to_state=None if r["to"] is None else chart.token(r["to"]),
                      agent=text(r["agent"]), role=None if r["role"] is None else local_name(r["role"].value),
                      reason=text(r["reason"]), source=_source(r["graph"]))
                for r in self.store.run_query("train_events", train=train)]

    def trains(self, principal: Principal, state: NamedNode | None = None, *, after: ListKey = FIRST,
               limit: int = PAGE_MAX) -> TrainsPage:
        """One page of the trains the caller may list, newest first, with progress: a researcher's own, an
        operator's all; the page after ``after`` (keyset pages, ``page_tokens.py``), at most ``limit`` (up to
        ``PAGE_MAX``) trains; a researcher's found from the researcher, not among all. Three queries whatever the
        number of trains (the page's trains with their executions' states, their number, the stations), one per
        definition the page names (found from the definition: the list of all would cost what the registry
        holds), and for an operator's first page the newest list position.

        An operator's page scans a window of list positions below ``after`` (``limit`` and one, or
        ``FILTERED_WINDOW`` with a state filter), so a page may be short, even empty, with trains below it: its
        ``next`` then starts below the window, and only the last page has none."""
        requester = NO_FILTER if principal.has(Role.OPERATOR) else self.iris.agent(principal.subject)
        only_state = state or NO_FILTER
        definitions: dict[object, _DefinitionRow | None] = {}
        stations = {r["station"].value: r["id"].value for r in self.store.run_query("list_stations")}
        released_iri, terminal, token = PHT.Released.value, {t.value for t in self.chart.terminal}, self.chart.token
        rows: list[TrainSummary] = []
        size, more, lowest = _page_size(limit), False, 0
        if requester == NO_FILTER:
            after, lowest = window(self.store, TRAINS, after, size + 1 if state is None else FILTERED_WINDOW)
            page = self.store.run_query(
                "trains_overview_all", onlyState=only_state, afterPosition=position_literal(after.position),
                afterId=Literal(after.id), lowestPosition=position_literal(lowest))
        else:
            page = self.store.run_query("trains_overview", researcher=requester, onlyState=only_state,
                                        afterPosition=position_literal(after.position), afterId=Literal(after.id))
        for r in page:
            if len(rows) == size:
                more = True  # a row after the page: a page follows (the rest is not read)
                break
            released, active = 0, set()
            lines = r["executionStates"]
            for line in (lines.value if lines is not None else "").split("\n"):
                if line:
                    execution_state, _, station = line.partition(" ")
                    if execution_state == released_iri:
                        released += 1
                    elif execution_state not in terminal:
                        active.add(stations.get(station, station))
            if r["definition"] not in definitions:  # the few definitions the page names, each read once
                definitions[r["definition"]] = self._definition(r["definition"])
            definition = definitions[r["definition"]]
            rows.append(TrainSummary(
                id=r["id"].value, iri=r["train"].value, state=token(r["state"]),
                requester=self.iris.local(r["requester"], "agents"),
                definition=definition.record.id if definition else r["definition"].value,
                created=r["created"].value, released=released,
                planned=0 if definition is None else planned_executions(
                    definition.record.mode, definition.record.rounds, definition.record.stops),
                active_stations=sorted(active), position=int(r["position"].value)))
        items = rows
        total = next((int(r["trains"].value) for r in self.store.run_query(
            "trains_count", onlyRequester=requester, onlyState=only_state)), 0)
        # a row after the page: the next starts after its last train; else below the window scanned, if any is
        return TrainsPage(items=items, total=total,
                          next=next_key(ListKey(items[-1].position, items[-1].id) if more else None, lowest))

    # -- a station's side

    def station_work(self, principal: Principal, station_id: str) -> list[WorkItem]:
        """The station's executions that are not finished, oldest train first, as the wire's work items
        (that station's tokens and operators), each naming the readers its output is encrypted to
        (``readers.py``)."""
        check_station_scope(principal, station_id, "read the work of")
        rows = list(self.store.run_query("station_work", station=self.iris.station(station_id)))
        parameters = {train: {text(p["name"]) or "": text(p["value"]) or ""
                              for p in self.store.run_query("train_parameters", train=train)}
                      for train in {r["train"] for r in rows}}  # once per train, not per execution
        requests = {train: _signed_request(self.store, train) for train in {r["train"] for r in rows}}
        readers = ReaderDirectory(self.store)
        items = []
        for r in rows:
            # "input=sha256" pairs; Virtuoso answers "=" for no input (its CONCAT takes an unbound as ""): skipped
            digests = {i: d for i, _, d in (p.partition("=") for p in (text(r["inputDigests"]) or "").split()) if i}
            inputs = sorted(digests)
            stop = None if r["stopIndex"] is None else int(r["stopIndex"].value)
            items.append(WorkItem(
                execution=self.iris.local(r["execution"], "executions"), state=self.chart.token(r["state"]),
                train=text(r["trainId"]) or "", round=int(r["round"].value), stop=stop,
                image_name=text(r["imageName"]) or "", image_digest=text(r["imageDigest"]) or "",
                entrypoint=text(r["entrypoint"]), inputs=inputs, input_digests=[digests[i] for i in inputs],
                requester=r["requester"].value, definition=text(r["definitionId"]) or "",
                parameters=parameters[r["train"]], request=requests[r["train"]][0],
                request_proof=requests[r["train"]][1],
                readers=readers.readers(r["train"], round_=int(r["round"].value), stop=stop),
                input_record_hashes=[self._record_hash(i) for i in inputs]
                if r["state"] not in (PHT.OutputUnderReview, PHT.Released) else []))
        return items

    def _record_hash(self, output: str) -> str:
        """:func:`input_record_hash`, remembered: a record, once written, is not rewritten by the service (an
        operator's edit would show in ``pht verify`` either way: the edited record no longer verifies)."""
        found = self._record_hashes.get(output)
        if not found:
            if len(self._record_hashes) > 10_000:
                self._record_hashes.clear()
            found = self._record_hashes[output] = input_record_hash(self.store, output)
        return found

    def pending_decisions(self, principal: Principal, station_id: str) -> list[PendingDecision]:
        """The station's executions waiting for its admin: approvals, and outputs under review (that station's
        tokens and operators). What an output under review holds is known only at the station."""
        check_station_scope(principal, station_id, "see the pending decisions of")
        station = self.iris.station(station_id)
        items: dict[str, PendingDecision] = {}
        for r in self.store.run_query("station_work", station=station):
            if r["state"] not in (PHT.WaitingForApproval, PHT.OutputUnderReview):
                continue
            eid = self.iris.local(r["execution"], "executions")
            items[eid] = PendingDecision(
                execution=eid, state=self.chart.token(r["state"]), train=r["trainId"].value,
                definition=r["definitionId"].value, requester=local_name(r["requester"].value),
                image=f"{r['imageName'].value}@{r['imageDigest'].value}", round=int(r["round"].value))
        return list(items.values())

    # -- the registry (public to every authenticated caller)

    def stations(self) -> list[Station]:
        return [Station(id=text(r["id"]) or "", title=text(r["title"]), owner=text(r["owner"]),
                        runtimes=sorted((text(r["runtimes"]) or "").split()))
                for r in self.store.run_query("list_stations")]

    def datasets(self) -> list[Dataset]:
        return [Dataset(id=text(r["id"]) or "", title=text(r["title"]), station=text(r["stationId"]) or "")
                for r in self.store.run_query("list_datasets")]

    def definitions(self, *, after: ListKey = FIRST, limit: int = PAGE_MAX) -> DefinitionsPage:
        """One keyset page of the registered definitions, newest first (by list position, then identifier): those
        after ``after`` (``page_tokens.py``), at most ``limit`` (up to ``PAGE_MAX``), the number of all and the
        next key. The page scans a window of ``limit`` and one positions below ``after``, so it may be short (a
        definition without an identifier) with definitions below it: its ``next`` then starts below the window,
        and only the last page has none."""
        size = _page_size(limit)
        after, lowest = window(self.store, DEFINITIONS, after, size + 1)
        rows = list(self.store.run_query("list_definitions", afterPosition=position_literal(after.position),
                                         afterId=Literal(after.id), lowestPosition=position_literal(lowest)))
        items = [_definition_record(r) for r in rows[:size]]
        total = next((int(r["definitions"].value) for r in self.store.run_query("definitions_count")), 0)
        last = ListKey(int(rows[size - 1]["position"].value), items[-1].id) if len(rows) > size else None
        return DefinitionsPage(items=items, total=total, next=next_key(last, lowest))

    def _definition(self, iri: NamedNode) -> _DefinitionRow | None:
        """The definition with ``iri`` as the lists show it (None if there is none)."""
        row = next(iter(self.store.run_query("definition_summary", definition=iri)), None)
        return None if row is None else _DefinitionRow(iri, _definition_record(row))


def _page_size(limit: int) -> int:
    """A page's size for a caller's ``limit``: at least 1, at most PAGE_MAX."""
    return max(1, min(limit, PAGE_MAX))


def _definition_record(r: QuerySolution) -> Definition:
    """A row of ``list_definitions`` or ``definition_summary`` as a :class:`Definition`."""
    mode = r["mode"]
    return Definition(id=text(r["id"]) or "", title=text(r["title"]), mode=mode if isinstance(mode, NamedNode)
                      else None, rounds=int(text(r["rounds"]) or 0), image_digest=text(r["imageDigest"]) or "",
                      stops=int(text(r["stops"]) or 0))


@dataclass(frozen=True)
class _DefinitionRow:
    iri: object
    record: Definition

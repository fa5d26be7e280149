"""The part of the graph a caller who is not an operator may read, as a store of its own.

``/sparql``, the Graph Store Protocol's reads and the web view's SPARQL form evaluate a researcher's or a station
admin's request over this store, never over the central store: whatever ``FROM``, ``GRAPH`` or dataset the
request names, it can only find what is in here (pyoxigraph evaluates over the store it is given; there is
nothing else to escape to). What goes in applies the read model's rule (``reads.may_see_train``), so the REST
API, the web view and SPARQL show a caller the same trains:

- the vocabulary and the shapes;
- the registry as published: stations, their owners, datasets, train definitions with their routes and
  parameters (in the central graph), and the stations' own descriptions (stations and datasets in the station
  graphs); every party's public keys (``sec:Multikey`` nodes and the ``sec:assertionMethod``/``sec:keyAgreement``
  links naming their party, as ``GET /api/keys`` shows them to every caller), so anyone can verify a signature;
- for each train the caller may see: the train and its parameter values, its signed request (the request node,
  its parameter bindings and the proof ``{train}/request-proof``), its executions, their stations' signed
  records with their proofs (and their disclosure-control parts), their outputs and the outputs' reviews with their checks, and every event about
  the train or its executions, in whichever graph it was recorded (the central lifecycle's, a station MPU's);
- for a station admin: the whole graph of their station.

Everything else (other researchers' trains, leases, other stations' events about trains the caller cannot see)
is absent. The store is built from the central store with index lookups (a few per visible train; on a remote
store, in a local copy of its graphs read with one request per graph) and cached per caller until the next
commit of this process, and at most ``max_age_s`` after it was built (another process may write a remote store;
a train never becomes invisible to someone who could see it, so a cached view can only lag).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pyoxigraph import BlankNode, Literal, NamedNode, Quad

from client.key_claims import ASSERTION_METHOD, KEY_AGREEMENT, MULTIKEY
from graph_store import (
    CENTRAL_GRAPH,
    DCAT,
    DCTERMS,
    ONTOLOGY_GRAPH,
    ORG,
    PHT,
    PROV,
    RDF_TYPE,
    SHAPES_GRAPH,
    EmbeddedStore,
    GraphStore,
    station_graph,
)

from .naming import Iris
from .principal import Principal, Role
from .reads import may_see_train

__all__ = ["READABLE_MAX_AGE_S", "ReadableGraphs", "reads_everything"]

READABLE_MAX_AGE_S = 2.0
"""How long a view of a store other processes may write (a remote store) is kept after its build."""

PUBLIC_CLASSES = (PHT.Station, ORG.Organization, DCAT.Dataset, PHT.TrainDefinition, PHT.RouteStop, PHT.Parameter,
                  PHT.DataspaceInput)
"""What the registry publishes: every authenticated caller may read resources of these classes."""

CACHED_VIEWS = 256
"""Callers whose store is kept (each holds the public part plus their trains); the cache restarts when full."""


def reads_everything(who: Principal) -> bool:
    """Operators read the whole store; everyone else reads their :class:`ReadableGraphs` view."""
    return who.has(Role.OPERATOR)


@dataclass
class _View:
    store: GraphStore
    generation: int
    built: float


class ReadableGraphs:
    """Builds and caches, per caller, the store of what they may read (see the module's docstring)."""

    def __init__(self, store: GraphStore, iris: Iris, *, max_age_s: float | None = None) -> None:
        """``max_age_s`` by default: until the next change for an embedded store (it tells the views of every
        commit and bypass), READABLE_MAX_AGE_S for a remote one (another process may write it)."""
        if max_age_s is None:
            max_age_s = math.inf if isinstance(store, EmbeddedStore) else READABLE_MAX_AGE_S
        self.store, self.iris, self.max_age_s = store, iris, max_age_s
        self._views: dict[tuple[str, frozenset[str], str | None], _View] = {}
        self._generation = 0
        self._lock = threading.Lock()
        self._copy: _View | None = None  # a remote store's copy the views are built from (see _source)
        store.on_commit(lambda _change: self.changed())
        store.on_bypass(self.changed)

    def changed(self) -> None:
        """Forget the cached views: the store changed (called on every commit; a query worker calls it after
        applying changes to its replica, which bypass ``apply()``)."""
        with self._lock:
            self._generation += 1

    @staticmethod
    def key(who: Principal) -> tuple[str, frozenset[str], str | None]:
        """What a view is cached by: two principals with the same key may read the same."""
        return who.subject, frozenset(r.value for r in who.roles), who.station

    def cached(self, who: Principal) -> GraphStore | None:
        """``who``'s view if one is built and current, without building it (``query_fast_lane.py`` never waits
        for a build)."""
        with self._lock:
            view = self._views.get(self.key(who))
            if view is not None and view.generation == self._generation and \
                    time.monotonic() - view.built < self.max_age_s:
                return view.store
        return None

    @property
    def generation(self) -> int:
        """The number of changes seen: a view built from the store as it was at this number is current until
        the next change."""
        with self._lock:
            return self._generation

    def install(self, who: Principal, view: GraphStore, generation: int) -> None:
        """Keep ``view``, built elsewhere (a query worker) from the store as it was at ``generation``, as
        ``who``'s view: current until the next change (stale at once if one came meanwhile)."""
        with self._lock:
            if len(self._views) >= CACHED_VIEWS:
                self._views.clear()
            self._views[self.key(who)] = _View(view, generation, time.monotonic())

    def for_principal(self, who: Principal) -> GraphStore:
        """The store ``who`` may read (never call it for an operator: they read the store itself)."""
        view = self.cached(who)
        if view is not None:
            return view
        generation = self.generation  # read before the build: a change during it leaves the view stale
        readable = EmbeddedStore()
        # a list, not the generator: consumed inside Store.extend on a background thread (an earlier form of the
        # fast lane built views on one), the generator's query iterators (pyoxigraph QuerySolutions, bound to the
        # thread that made them) were seen dropped on another thread, which pyo3 refuses ("unsendable")
        readable.oxigraph.extend(list(self.quads_for(who, source=self._source(generation))))
        # its age counts from when it was complete: a build slower than max_age_s (a remote store, read with one
        # request per lookup) would otherwise be stale on arrival and rebuilt for every query
        self.install(who, readable, generation)
        return readable

    def _source(self, generation: int) -> GraphStore:
        """What views are built from: the store itself if it is embedded (index lookups are cheap); for a remote
        store, a copy of the graphs views are made of, read in one request per graph and shared by every view
        built while it is current (a view's lookups, a few per visible train and per event, were one request
        each: 6.4 s for 200 trains)."""
        if isinstance(self.store, EmbeddedStore):
            return self.store
        with self._lock:
            copy = self._copy
            if copy is not None and copy.generation == generation and time.monotonic() - copy.built < self.max_age_s:
                return copy.store
        store = EmbeddedStore()
        stations = [station_graph(r["id"].value) for r in self.store.run_query("list_stations")]
        for graph in (ONTOLOGY_GRAPH, SHAPES_GRAPH, CENTRAL_GRAPH, *stations):  # what a view is made of
            store.oxigraph.extend(self.store.quads(g=graph))
        with self._lock:
            self._copy = _View(store, generation, time.monotonic())
        return store

    def quads_for(self, who: Principal, *, source: GraphStore | None = None) -> Iterator[Quad]:
        """Every quad ``who`` may read in ``source`` (default: the store), built anew; :meth:`for_principal`
        caches it as a store."""
        store = self.store if source is None else source
        match = store.quads
        yield from match(None, None, None, ONTOLOGY_GRAPH)
        yield from match(None, None, None, SHAPES_GRAPH)
        graphs = [station_graph(r["id"].value) for r in store.run_query("list_stations")]
        for graph in (CENTRAL_GRAPH, *graphs):
            for cls in PUBLIC_CLASSES:
                for typed in match(None, RDF_TYPE, cls, graph):
                    yield from match(typed.subject, None, None, graph)
        keys = [q.subject for q in match(None, RDF_TYPE, MULTIKEY, CENTRAL_GRAPH)]
        yield from _whole(match, keys, CENTRAL_GRAPH)
        for use in (ASSERTION_METHOD, KEY_AGREEMENT):
            yield from match(None, use, None, CENTRAL_GRAPH)
        own = None
        if who.has(Role.STATION_ADMIN) and who.station:
            try:
                own = station_graph(who.station)
            except ValueError:
                own = None
            if own is not None:
                yield from (q for q in match(None, None, None, own) if not _public_subject(store, q, own))
        for train in _visible_trains(store, who, self.iris):
            yield from _train_quads(store, train, graphs, skip=own)


def _public_subject(store: GraphStore, quad: Quad, graph: NamedNode) -> bool:
    """True if ``quad``'s subject is a published resource (already in the view)."""
    return any(store.contains(Quad(quad.subject, RDF_TYPE, cls, graph)) for cls in PUBLIC_CLASSES)


NOTHING = NamedNode("urn:pht:nothing")
"""Bound for the part of a caller they do not have (no researcher role, no station): it names no resource."""


def _visible_trains(store: GraphStore, who: Principal, iris: Iris) -> Iterator[NamedNode]:
    """The trains ``who`` may see: the candidates found from them (``train_visibility_candidates.rq``), each
    decided by the one rule from its requester and its executions' stations (index lookups)."""
    researcher = iris.agent(who.subject) if who.has(Role.RESEARCHER) else NOTHING
    station = Literal(who.station) if who.station else NOTHING
    match, g = store.quads, CENTRAL_GRAPH
    for r in store.run_query("train_visibility_candidates", researcher=researcher, stationId=station):
        train = r["train"]
        if not isinstance(train, NamedNode) or not store.contains(Quad(train, RDF_TYPE, PHT.Train, g)):
            continue
        stations = sorted({i.object.value for e in match(None, PHT.ofTrain, train, g)
                           for s in match(e.subject, PHT.atStation, None, g)
                           for i in match(s.object, DCTERMS.identifier, None, g) if isinstance(i.object, Literal)})
        if any(isinstance(q.object, NamedNode) and may_see_train(who, requester=q.object, stations=stations,
                                                                 iris=iris)
               for q in match(train, PROV.wasAttributedTo, None, g)):
            yield train


def _train_quads(store: GraphStore, train: NamedNode, graphs: list[NamedNode], *,
                 skip: NamedNode | None) -> Iterator[Quad]:
    match, g = store.quads, CENTRAL_GRAPH
    yield from match(train, None, None, g)
    yield from _whole(match, _objects(match(train, PHT.parameterValue, None, g)), g)
    requests = _objects(match(train, PHT.signedRequest, None, g))
    yield from _whole(match, requests, g)
    yield from _whole(match, [q.object for r in requests if isinstance(r, NamedNode)
                              for q in match(r, PHT.parameterBinding, None, g)], g)
    yield from _whole(match, _objects(match(train, PHT.requestProof, None, g)), g)
    executions = [q.subject for q in match(None, PHT.ofTrain, train, g)]
    yield from _whole(match, executions, g)
    records = [q.object for e in executions for link in (PHT.executionRecord, PHT.recordProof)
               for q in match(e, link, None, g)]
    yield from _whole(match, records, g)
    controls = [q.object for r in records if isinstance(r, NamedNode)  # a record's disclosure-control part
                for q in match(r, PHT.disclosureControl, None, g)]
    yield from _whole(match, controls, g)
    yield from _whole(match, [q.object for c in controls if isinstance(c, NamedNode)
                              for q in match(c, PHT.ruleApplied, None, g)], g)
    outputs = [q.subject for e in executions for q in match(None, PROV.wasGeneratedBy, e, g)]
    yield from _whole(match, outputs, g)
    reviews = [q.subject for o in outputs for q in match(None, PHT.reviewOf, o, g)]
    yield from _whole(match, reviews, g)
    yield from _whole(match, [q.object for r in reviews for q in match(r, PHT.checkResult, None, g)], g)
    for graph in (g, *graphs):
        if graph == skip:
            continue  # a station admin's own graph is in the view whole already
        events = {q.subject for q in match(None, PHT.aboutTrain, train, graph)}
        events.update(q.subject for e in executions for q in match(None, PHT.aboutExecution, e, graph))
        yield from _whole(match, events, graph)


def _objects(quads: Iterable[Quad]) -> list[object]:
    return [q.object for q in quads]


def _whole(match: Callable[..., list[Quad]], subjects: Iterable[object], graph: NamedNode) -> Iterator[Quad]:
    """Every quad of ``graph`` about each of ``subjects`` (terms that cannot be subjects are skipped)."""
    for s in subjects:
        if isinstance(s, (NamedNode, BlankNode)):
            yield from match(s, None, None, graph)

"""The remote back-end: any SPARQL 1.1 Query/Update endpoint, spoken to over kept-alive HTTP (:mod:`._sparql_http`).

For users who outgrow one machine and keep the graph on an existing server (Oxigraph server, Virtuoso,
...). Tested against a real Oxigraph server and a real Virtuoso 7 (``tests/test_store_contract.py``; the named
queries and the service itself on both: ``tests/test_remote_queries.py``).

A caller's query (:meth:`GraphStore.query_untrusted`, ``plan_update(untrusted=True)``) reaches the server only
as :mod:`._untrusted_query` re-serialises it; the platform's own queries are sent as written. Each request
states its operation: queries as ``query=``, updates as ``update=`` (never guessed from the text: SPARQLWrapper,
used before, sent a query whose comment said "created" as an update).

Compatibility choices, each forced by a real server:

* queries are sent as form-encoded POST with an explicit Accept header (Virtuoso never answers a POST
  with ``Content-Type: application/sparql-query`` and answers text/html without Accept), except to a server
  that said it is Oxigraph (``_sparql_http.py``);
* updates may need HTTP digest authentication (Virtuoso's ``/sparql-auth``);
* results are parsed by pyoxigraph, so both back-ends return the same term and result types, and typed
  literals are read back in their canonical form (Virtuoso answers ``"1"^^xsd:boolean`` for true; an Oxigraph
  server's answers are canonical already and are not rewritten);
* an ``xsd:decimal`` is written with a decimal point (Virtuoso stores ``"5"^^xsd:decimal`` as an integer);
* blank nodes are never sent in INSERT DATA and no operation exceeds 500 quads (see ``_store.py``):
  Virtuoso refuses both. Virtuoso also refuses a whole request of more than about 3,000 quads, so a larger
  change set cannot be committed there; a guarded change set's DELETE/INSERT template is not split and is
  limited to about 1,000 quads.

Atomicity: the change set is sent as ONE update request (all or nothing), whose WHERE clause is the guard.
A server does not say whether the WHERE matched (Oxigraph answers 204 either way), so the request says it
itself where the server allows (:meth:`RemoteStore._commit`): ``INSERT`` a marker graph ``WHERE`` the guard
holds; the guarded change; ``DROP GRAPH`` the marker. SPARQL 1.1 Update makes a DROP of a graph that does not
exist fail (without SILENT), and a failed request applies none of its operations, so the request succeeds if
and only if the guard held and the change applied: no second request. Whether a server does both is probed
once per store (:meth:`RemoteStore._commit_checks_itself`): Oxigraph server does; Virtuoso 7 neither fails
that DROP for a graph it made implicitly nor rolls back the operations before a failed one. Elsewhere
:meth:`RemoteStore._confirm_commit` asks afterwards whether the change's insertions are there and raises
ConflictError if not: the guard no longer held and this client wrote nothing (or, rarely, its write applied
and another client's next write already replaced part of it before the check: reported as a conflict too).

Concurrency: writers sharing one RemoteStore instance are serialised by its lock, so exactly one of them
wins a guarded write. Writers in separate instances or processes are safe only if the server serialises
concurrent updates that read and delete the same triples, which the tests measured (8 concurrent guarded
transitions of one resource, each with its own event):

* Virtuoso 7 does, with ``DefaultIsolation = 4`` (REPEATABLE READ) or 8 in ``virtuoso.ini`` (SPARQL
  cannot set the isolation per request). Under its default READ COMMITTED, all the guarded updates may
  match and apply (2 to 8 winners in 8 of 20 races): every client then finds its own insertions and
  reports success.
* Oxigraph server 0.5 does not: it evaluates an update's WHERE on a snapshot without detecting conflicting
  writes, so several guarded updates can apply (several winners in 27 of 100 races of raw updates), and no
  setting changes that. Through this client the window is smaller (the validation reads come first) but
  real: several winners in 2 of 40 races.

So writers sharing the server (replicas of the central service, or any two RemoteStore objects) also hold
the server-side write lock of :mod:`._write_lock` around each write (guard check, validation, commit): one
writer at a time across processes, whatever the server's isolation (``write_lock_ttl_s=None`` turns it off for a
deployment with one writing process). Proved with real processes racing on a real Oxigraph server:
``tests/test_replicas.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    Quad,
    QueryResultsFormat,
    QuerySolutions,
    RdfFormat,
    Triple,
    Variable,
    parse,
    parse_query_results,
)
from ._changeset import ChangeSet
from ._convert import canonical, canonical_all
from ._errors import ConflictError, InvalidInputError, StoreUnavailable
from ._schema import Schema
from ._sizes import adjusting_update, replacement, unchanged_condition
from ._sparql_http import SparqlHttp
from ._sparql_text import bind, quad_block, tokens
from ._store import GraphStore, QueryResult, server_graph_refusal
from ._untrusted_query import dataset_iris, reserialise_query
from ._updates import CompiledUpdate
from ._vocab import GRAPH_NS, ONTOLOGY_GRAPH, RDF_TYPE
from ._write_lock import LOCK_GRAPH, ServerWriteLock

_NO_GRAPH = NamedNode("urn:pht:no-graph")
"""A graph that holds nothing: the dataset of a union-default-graph query over a store without data graphs (no
graph named would mean the server's own default graph)."""

_CHECK_GRAPHS = GRAPH_NS + "commit-check/"
"""Prefix of the marker graphs a commit request makes and drops to say whether its guard held (see the module's
docstring); the store's own, never data."""
_SERVER_GRAPH_PREFIXES = ("http://www.openlinksw.com/schemas/virtrdf#", "http://www.w3.org/ns/ldp#", _CHECK_GRAPHS)
"""Graphs a Virtuoso server keeps for itself (see :meth:`RemoteStore.server_graph`)."""

__all__ = ["RemoteStore"]

_VARS = ("s", "p", "o", "g")
_LOST = "another client changed the guarded data first; nothing was written"
"""What a guarded commit that did not apply says, found by the commit request itself or by its confirmation."""
_NODES_PER_REQUEST = 200
"""Nodes whose quads :meth:`RemoteStore._prefetched` reads in one request."""
_ASKED_PER_REQUEST = 500
"""Patterns of one ASK confirming a commit: Oxigraph server 0.5 overflows its stack (and aborts) on an ASK of
3,300 patterns (measured; 1,000 pass), the size of an MPU batch of 500 events."""
_FRESH_ASKED = 20
"""Fresh insertions :meth:`RemoteStore._confirm_commit` asks for (one would do: the update is atomic)."""
_INCOMING_READ = 1_000
"""Most quads pointing at the nodes of one request that :meth:`RemoteStore._quads_of` reads (a retyped node that
many point at is left to the validator's own lookups)."""
_ZERO = Literal(0)
_AT_ONCE = 4
"""Most queries :meth:`RemoteStore._selects` has the server answer side by side (a read-ahead of thousands of
nodes is many requests)."""
_EXISTING_PER_REQUEST = 100
"""Quads asked about in one request by :meth:`RemoteStore.existing` (100 patterns: well within Virtuoso's
limit on a query's size)."""
_BNODE_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(?<!\.)")


class RemoteStore(GraphStore):
    """A graph store behind SPARQL 1.1 Protocol endpoints.

    :param query_url: the query endpoint, e.g. ``http://127.0.0.1:7878/query``.
    :param update_url: the update endpoint (defaults to ``query_url``).
    :param user: user for HTTP digest authentication of updates (Virtuoso ``/sparql-auth``), or None.
    :param timeout: seconds before a request counts as failed (raises StoreUnavailable).
    :param write_lock_ttl_s: how long a writer's claim on the server-side write lock counts (see
        :mod:`._write_lock`; a writer killed mid-write delays the others' writes by at most this), or None for no
        lock: only for a deployment with a single writing process.
    """

    def __init__(self, query_url: str, update_url: str | None = None, *, user: str | None = None,
                 password: str | None = None, timeout: float = 30.0, schema: Schema | None = None,
                 write_lock_ttl_s: float | None = 10.0) -> None:
        super().__init__(schema)
        self.query_url = query_url
        self.update_url = update_url or query_url
        self._auth = (user, password or "") if user else None
        self._http = SparqlHttp(timeout=timeout, auth_url=self.update_url, auth=self._auth)
        self._fresh = threading.local()  # insertions of this thread's write seen absent by _prefetched
        self._hold = threading.local()  # this thread's hold: its depth, and the nodes read under it (_Seen)
        self._lock = None if write_lock_ttl_s is None else \
            ServerWriteLock(self._select_text, self._update, ttl_s=write_lock_ttl_s)
        self._checks_itself: bool | None = None  # see _commit_checks_itself; probed at the first guarded commit
        self._ontology: _OntologyIndex | None = None

    # -- primitives -------------------------------------------------------------------------------------

    def _query(self, text: str, *, default_graph: list[NamedNode] | None, named_graphs: list[NamedNode] | None,
               union_default_graph: bool) -> QueryResult:
        if union_default_graph and default_graph is None:
            # The protocol has no "union default graph" switch, and servers differ without one (Oxigraph's default
            # graph is its own, empty one; Virtuoso's is every graph, its system graphs included): the data
            # graphs are named as the default graph and, unless restricted, as the named graphs.
            graphs = self._data_graphs() or [_NO_GRAPH]
            default_graph, named_graphs = graphs, graphs if named_graphs is None else named_graphs
        graph_query = _is_graph_query(text)
        body, content_type = self._http.post(
            self.query_url, "query", text,
            accept="application/n-triples, text/turtle;q=0.9" if graph_query else "application/sparql-results+json",
            default_graphs=[g.value for g in default_graph or ()], named_graphs=[g.value for g in named_graphs or ()])
        if graph_query:
            fmt = RdfFormat.N_TRIPLES if "n-triples" in content_type or "text/plain" in content_type \
                else RdfFormat.TURTLE
            # parse() yields quads in the default graph; a CONSTRUCT result is triples, as in pyoxigraph.
            try:
                return iter([_canonical_triple(q.triple) for q in parse(body, format=fmt)])
            except SyntaxError as e:
                raise StoreUnavailable(f"SPARQL server at {self.query_url} sent unreadable RDF: {e}") from None
        return self._solutions(body)

    def _solutions(self, body: bytes) -> QueryResult:
        """A query's answer (SPARQL JSON results) as pyoxigraph's results."""
        try:
            if not self._http.oxigraph(self.query_url):  # Oxigraph's answers read as they are
                body = _portable_results(body)
            return parse_query_results(body, format=QueryResultsFormat.JSON)
        except (SyntaxError, ValueError) as e:
            raise StoreUnavailable(f"SPARQL server at {self.query_url} sent unreadable results: {e}") from None

    def _selects(self, texts: list[str]) -> list[QuerySolutions]:
        """The solutions of several SELECTs over the server's own dataset, asked for at once: one round trip
        (:meth:`SparqlHttp.post_queries`)."""
        answers = [answer for start in range(0, len(texts), _AT_ONCE) for answer in self._http.post_queries(
            self.query_url, texts[start:start + _AT_ONCE], accept="application/sparql-results+json")]
        results = [self._solutions(body) for body, _ in answers]
        if not all(isinstance(result, QuerySolutions) for result in results):  # a SELECT's answer is solutions
            raise StoreUnavailable(f"SPARQL server at {self.query_url} answered a SELECT without solutions")
        return results  # type: ignore[return-value]  # checked just above

    def _data_graphs(self) -> list[NamedNode]:
        """Every graph holding data, but the server's own (:meth:`server_graph`)."""
        rows = self._select_text("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
        graphs = [row["g"] for row in rows]
        return sorted((g for g in graphs if isinstance(g, NamedNode) and not self.server_graph(g)), key=str)

    def _untrusted_text(self, text: str, *, default_graph: list[NamedNode] | None,
                        named_graphs: list[NamedNode] | None) -> str:
        """A caller's query as the platform re-serialises it (:mod:`._untrusted_query`): the server never sees
        the caller's own text, so its vendor extensions cannot be reached."""
        text = reserialise_query(text, drop_dataset=default_graph is not None or named_graphs is not None,
                                 confined=named_graphs is not None)
        for graph in (*(default_graph or ()), *(named_graphs or ()), *map(NamedNode, dataset_iris(text))):
            if self.server_graph(graph):  # the store's bookkeeping and the server's own graphs are nobody's data
                raise InvalidInputError(f"{server_graph_refusal(graph)}: no query reads it")
        return text

    def _update(self, text: str) -> None:
        self._http.post(self.update_url, "update", text, accept="*/*")

    def _select_text(self, text: str) -> QuerySolutions:
        (solutions,) = self._selects([text])
        return solutions

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        depth = getattr(self._hold, "depth", 0)
        if depth == 0:  # what a write saw absent, and the nodes it read, count for that write only
            self._fresh.quads, self._hold.seen = set(), _Seen()
        self._hold.depth = depth + 1
        try:
            with contextlib.nullcontext() if self._lock is None else self._lock.hold():
                yield
        finally:
            self._hold.depth = depth
            if depth == 0:
                self._hold.seen = _Seen()

    def _seen(self) -> _Seen | None:
        """The nodes read under this thread's hold since its last commit (None outside a hold)."""
        return getattr(self._hold, "seen", None) if getattr(self._hold, "depth", 0) else None

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        """The change and its graphs' size changes (``_sizes.py``) in one request.

        On a server whose commit request says itself whether its condition held (Oxigraph), the request replaces
        the count quads this store last knew, on the condition that they are still those: point lookups. If
        another writer changed them since, the request fails whole; the counts are read again and, if they
        differ, the commit is sent again (under the same hold: no other writer in between). Elsewhere (Virtuoso),
        and while no counts are known, the server adds the change to the counts itself (a scan of the graph's
        replaced count quads), conditioned on what the change is conditioned on."""
        self._hold.seen = _Seen()  # read before this write: stale once it is sent
        self._fresh.checked = False
        fence = ""
        if self._lock is not None:
            self._lock.check()  # a claim that may have expired by now no longer excludes anyone: write nothing
            # fenced: should this process stall past the check until another writer has removed its expired
            # claim, a guarded update matches nothing (and the commit's check or _confirm_commit reports it)
            fence = self._lock.fence()
        text = self._commit_text(change, fence=fence)  # without counts: the server adds to them, if it must
        guard = f"{quad_block(change.guard)} {fence}" if change.guard else ""
        checks = (bool(change.guard) or bool(sizes)) and self._commit_checks_itself()
        counts = self._known_sizes() if sizes and checks else None
        if not checks or (counts is None and not change.guard):
            self._update(" ; ".join(op for op in (adjusting_update(sizes, condition=guard), text) if op))
            return
        for attempt in (1, 2):
            marker = NamedNode(f"{_CHECK_GRAPHS}{uuid.uuid4()}")
            condition, operations = guard, [text]
            if counts is None:  # not known to be kept: the server adds, if the counts are complete
                adjust = adjusting_update(sizes, condition=f"GRAPH {marker} {{ {marker} {marker} {marker} }}")
                operations = [adjust, text] if adjust else operations
            elif sizes:
                old, new, after = replacement(counts, sizes)
                condition = f"{guard} {unchanged_condition(counts, sizes)}"
                operations = [self._commit_text(change, fence=fence, counts=(old, new))]
            body = " ; ".join(op for op in operations if op)
            try:
                self._update(f"INSERT {{ GRAPH {marker} {{ {marker} {marker} {marker} }} }} "
                             f"WHERE {{ {condition} }} ; {body} ; DROP GRAPH {marker}")
            except (StoreUnavailable, InvalidInputError) as e:
                if marker.value not in str(e):
                    self._forget_sizes()
                    raise
                # the server's "graph <marker> does not exist": the guard, or the counts known, did not hold
                stale = counts
                self._forget_sizes()
                if stale is None or attempt == 2 or self._known_sizes() == stale:
                    raise ConflictError(_LOST) from None
                counts = self._known_sizes()
                continue
            if counts is not None and sizes:
                self._sizes = after
            self._fresh.checked = bool(change.guard)
            return

    def _keeps_sizes(self) -> bool:
        """Always: while this store knows no counts, its commits let the server add to them if they are complete
        (another process may have counted since this one read; it reads them again after its own recount)."""
        return True

    def _commit_checks_itself(self) -> bool:
        """Whether a commit request can say itself that its guard held (see the module's docstring): the server
        drops a graph an INSERT made, fails a DROP of a graph that does not exist, and then applies none of the
        request's operations. Probed once, with marker graphs of the store's own (two or three requests)."""
        if self._checks_itself is None:
            made, missing = (NamedNode(f"{_CHECK_GRAPHS}{uuid.uuid4()}") for _ in range(2))
            probe = f"INSERT DATA {{ GRAPH {made} {{ {made} {made} {made} }} }}"
            checks = False
            try:
                self._update(f"{probe} ; DROP GRAPH {made}")
                self._update(f"{probe} ; DROP GRAPH {missing}")
            except (StoreUnavailable, InvalidInputError) as e:
                checks = missing.value in str(e) and not self._query(
                    f"ASK {{ GRAPH {made} {{ ?s ?p ?o }} }}", default_graph=None, named_graphs=None,
                    union_default_graph=False)
            if not checks:  # what the probe may have left (Virtuoso keeps the insertion before a failed DROP)
                self._update(f"CLEAR SILENT GRAPH {made}")
            self._checks_itself = checks
        return self._checks_itself

    def _match(self, s: Any, p: Any, o: Any, g: Any = None) -> Iterable[Quad]:
        terms = (s, p, o, g)
        free = [v for v, term in zip(_VARS, terms) if term is None]
        if not free:
            quad = Quad(s, p, o, g)
            return [quad] if self.contains(quad) else []
        # Only the free positions are projected: a bound term is not a variable (``SELECT <iri>`` is not SPARQL).
        pattern = [("?" if term is None else "$") + v for v, term in zip(_VARS, terms)]
        text = f"SELECT {' '.join('?' + v for v in free)} WHERE {{ GRAPH {pattern[3]} {{ {' '.join(pattern[:3])} }} }}"
        bindings = {v: term for v, term in zip(_VARS, terms) if term is not None}
        result = self._select_text(bind(text, bindings))
        quads = []
        for row in result:
            quads.append(Quad(*(row[Variable(v)] if term is None else term for v, term in zip(_VARS, terms))))
        return quads

    def _confirm_commit(self, change: ChangeSet) -> None:
        if not change.guard or getattr(self._fresh, "checked", False):  # the commit request said so itself
            self._fresh.quads = set()
            return
        won = True
        fresh: set[Quad] = getattr(self._fresh, "quads", set()) & change.insert
        self._fresh.quads = set()
        if fresh:
            # Quads this write inserts that were not in the store before it (seen under this same hold): present
            # if and only if the atomic update applied. One small ASK instead of one pattern per insertion
            # (Oxigraph server: about 65 us per pattern, 210 ms for an MPU batch).
            won = bool(self._query(f"ASK {{ {quad_block(sorted(fresh, key=str)[:_FRESH_ASKED])} }}",
                                   default_graph=None, named_graphs=None, union_default_graph=False))
        elif change.insert:
            listed = list(change.insert)
            won = all(bool(self._query(f"ASK {{ {quad_block(listed[i:i + _ASKED_PER_REQUEST])} }}",
                                       default_graph=None, named_graphs=None, union_default_graph=False))
                      for i in range(0, len(listed), _ASKED_PER_REQUEST))
        elif change.delete:
            won = not self.existing(change.delete)
        if not won:
            raise ConflictError(_LOST)

    def __len__(self) -> int:
        """The number of quads in the data and vocabulary graphs (not the server's own, see :meth:`server_graph`),
        as ``len`` of an embedded store counts them: what the tests' "nothing was written" checks compare."""
        return sum(self._counts().values())

    def contains(self, quad: Quad) -> bool:
        return bool(self._query(f"ASK {{ {quad_block([quad])} }}", default_graph=None, named_graphs=None,
                                union_default_graph=False))

    def _read_ahead(self, change: ChangeSet) -> None:
        """The stored quads of the change's nodes (:meth:`_nodes_of`) in the validation scopes of the graphs it
        writes, read under this hold: they answer :meth:`existing` and :meth:`_prefetched` until its commit."""
        seen = self._seen()
        if seen is None or change.is_empty():
            return
        graphs: set[NamedNode] = set()
        for graph in self._check_writable(change):  # a write the store refuses costs no request
            graphs |= self._scope(graph)
        if graphs:
            seen.read(_nodes_of(change), _typed_of(change), frozenset(graphs), self._quads_of)

    def _answer_wheres(self, updates: Sequence[tuple[CompiledUpdate, dict[str, Any]]], extra: ChangeSet | None
                       ) -> dict[int, QuerySolutions]:
        """Every WHERE of the updates over the store's own dataset, and the read-ahead of the nodes the write
        names before its WHEREs are evaluated (:func:`_nodes_named`), asked for at once: the server answers them
        side by side, in one round trip instead of one each (a lifecycle step's 2.3 reads). The nodes only the
        WHEREs' solutions name are read after them, as for any write (:meth:`_read_ahead`)."""
        seen = self._seen()
        wheres = [i for i, (c, _) in enumerate(updates) if c.select_text is not None and c.dataset is None]
        if seen is None or not wheres:
            return {}
        texts = [bind(c.select_text, c.where_bindings(values))  # type: ignore[arg-type]  # has a WHERE
                 for c, values in (updates[i] for i in wheres)]
        nodes, typed, graphs = _nodes_named(updates, extra)
        scope = frozenset().union(*map(self._scope, graphs))
        missing, unread = seen.unread(nodes, typed, scope)
        read = self._node_read(missing, unread, scope) if missing or unread else None
        answers = self._selects(texts + (read.texts if read is not None else []))
        if read is not None:
            seen.add(scope, read.result(answers[len(texts):]))
        return dict(zip(wheres, answers))

    @property
    def groups_writes(self) -> bool:
        """Always: a group of writes costs the round trips of one (:meth:`GraphStore.apply_writes`)."""
        return True

    def _quads_of(self, nodes: list[Any], typed: list[Any], graphs: frozenset[NamedNode]) -> _Read:
        """The stored quads of ``nodes`` in ``graphs``, and of those pointing at ``typed`` (None for a chunk with
        more than _INCOMING_READ): :class:`_NodeRead`'s requests, sent at once."""
        read = self._node_read(nodes, typed, graphs)
        return read.result(self._selects(read.texts))

    def _node_read(self, nodes: list[Any], typed: list[Any], graphs: frozenset[NamedNode]) -> _NodeRead:
        """The read of :meth:`_quads_of`, its ontology quads answered from the vocabulary's files where they can
        be (:meth:`_ontology_index`)."""
        answers = ONTOLOGY_GRAPH in graphs and self._ontology_answers(nodes, typed)
        return _NodeRead(nodes, typed, graphs, self._ontology_index() if answers else None)

    def _ontology_index(self) -> _OntologyIndex:
        """The ontology graph's ground quads by subject and by object, from the vocabulary's files (``Schema``):
        what :meth:`load_vocabulary` writes, and no write may change (``GraphStore._check_writable``), so a
        read-ahead answers a node's ontology quads without the server (half the quads a lifecycle step reads,
        measured). As the shapes, they are this process's files: replicas must run one version of the
        vocabulary. Third: the nodes next to a blank node there (``owl:oneOf`` lists), whose quads are asked
        for (the server names blank nodes its own way)."""
        if self._ontology is None:
            quads = self.schema.ontology_quads
            forms = canonical_all(q.object for q in quads)  # as the server hands them back
            out_of: dict[Any, set[Quad]] = {}
            into_of: dict[Any, set[Quad]] = {}
            entangled: set[Any] = set()
            for q in quads:
                if isinstance(q.subject, BlankNode) or isinstance(q.object, BlankNode):
                    entangled.update((q.subject, q.object))
                    continue
                stored = Quad(q.subject, q.predicate, forms[q.object], ONTOLOGY_GRAPH)
                out_of.setdefault(q.subject, set()).add(stored)
                into_of.setdefault(stored.object, set()).add(stored)
            self._ontology = ({n: frozenset(v) for n, v in out_of.items()},
                              {n: frozenset(v) for n, v in into_of.items()}, frozenset(entangled))
        return self._ontology

    def _ontology_answers(self, nodes: list[Any], typed: list[Any]) -> bool:
        """Whether :meth:`_ontology_index` answers the ontology quads of ``nodes`` and of those pointing at
        ``typed``: none of them is next to a blank node there."""
        entangled = self._ontology_index()[2]
        return entangled.isdisjoint(nodes) and entangled.isdisjoint(typed)

    def _prefetched(self, change: ChangeSet, graphs: frozenset[NamedNode]
                    ) -> tuple[dict[Any, frozenset[Quad]], dict[Any, frozenset[Quad]]]:
        """The stored quads of the change's subjects and IRI objects in ``graphs``, and of those pointing at the
        nodes it types: those read ahead under this hold, the others in one request per _NODES_PER_REQUEST nodes
        (the validator would otherwise ask for each node in turn)."""
        nodes, typed = _nodes_of(change), _typed_of(change)
        seen = self._seen()
        if seen is None:
            seen = _Seen()
        seen.read(nodes, typed, graphs, self._quads_of)
        known = {node: seen.quads(node, graphs) or frozenset() for node in nodes}
        incoming = {node: quads for node in typed if (quads := seen.pointing(node, graphs)) is not None}
        # insertions about nodes with no quads in their graph's scope were not in the store before this write
        new = [q for q in change.insert if q.graph_name in graphs and not known[q.subject]]
        self._fresh.quads = getattr(self._fresh, "quads", set()) | set(new[:_ASKED_PER_REQUEST])
        return known, incoming

    def existing(self, quads: Collection[Quad]) -> frozenset[Quad]:
        """Answered from the nodes read ahead under this hold where they cover a quad; the others asked for in
        one SELECT per _EXISTING_PER_REQUEST quads: a UNION of each quad's own ASK pattern, which names the
        quads found by their position (so a server's lexical form of a literal never matters)."""
        seen = self._seen()
        found: set[Quad] = set()
        listed: list[Quad] = []
        for q in quads:
            graph = q.graph_name
            stored = seen.quads(q.subject, frozenset((graph,))) \
                if seen is not None and isinstance(graph, NamedNode) else None
            if stored is None:
                listed.append(q)
            elif q in stored:
                found.add(q)
        for start in range(0, len(listed), _EXISTING_PER_REQUEST):
            chunk = listed[start:start + _EXISTING_PER_REQUEST]
            branches = " UNION ".join(f"{{ {quad_block([q])} BIND({i} AS ?i) }}" for i, q in enumerate(chunk))
            for row in self._select_text(f"SELECT DISTINCT ?i WHERE {{ {branches} }}"):
                index = row["i"]
                if isinstance(index, Literal):
                    found.add(chunk[int(index.value)])
        return frozenset(found)

    def server_graph(self, graph: NamedNode) -> bool:
        """Virtuoso keeps its quad maps (``virtrdf#``, which it cannot run without), LDP and WebDAV descriptions
        and its service description in named graphs of the same dataset; they are the server's, not data."""
        origin = "{0.scheme}://{0.netloc}/".format(urlsplit(self.query_url))
        if graph == LOCK_GRAPH or super().server_graph(graph):  # the writers' claims (_write_lock.py), the sizes
            return True
        return graph.value.startswith((*_SERVER_GRAPH_PREFIXES, origin))

    def close(self) -> None:
        """Withdraw a write-lock claim kept for the next write and close the kept-alive connections."""
        if self._lock is not None:
            self._lock.close()
        self._http.close()


_OntologyIndex = tuple[dict[Any, frozenset[Quad]], dict[Any, frozenset[Quad]], frozenset[Any]]
"""See :meth:`RemoteStore._ontology_index`."""
_Read = tuple[dict[Any, frozenset[Quad]], dict[Any, "frozenset[Quad] | None"]]
"""What :meth:`RemoteStore._quads_of` read: nodes' own quads, and the quads pointing at nodes (None: too many)."""


class _Seen:
    """The stored quads of nodes (and pointing at nodes) read under one hold before its commit, with the graphs
    each read covered: no other writer can change them meanwhile (the write lock; without it, the commit's guard
    still decides)."""

    def __init__(self) -> None:
        self._out: dict[Any, tuple[frozenset[NamedNode], frozenset[Quad]]] = {}
        self._in: dict[Any, tuple[frozenset[NamedNode], frozenset[Quad] | None]] = {}

    @staticmethod
    def _within(entry: tuple[frozenset[NamedNode], frozenset[Quad] | None] | None,
                graphs: frozenset[NamedNode]) -> frozenset[Quad] | None:
        if entry is None:
            return None
        covered, quads = entry
        if quads is None or not graphs <= covered:
            return None
        return quads if covered == graphs else frozenset(q for q in quads if q.graph_name in graphs)

    def quads(self, node: Any, graphs: frozenset[NamedNode]) -> frozenset[Quad] | None:
        """The node's stored quads in ``graphs``, or None if they were not all read."""
        return self._within(self._out.get(node), graphs)

    def pointing(self, node: Any, graphs: frozenset[NamedNode]) -> frozenset[Quad] | None:
        """The stored quads in ``graphs`` whose object is ``node``, or None if they were not all read."""
        return self._within(self._in.get(node), graphs)

    def unread(self, nodes: Iterable[Any], typed: Iterable[Any], graphs: frozenset[NamedNode]
               ) -> tuple[list[Any], list[Any]]:
        """Those of ``nodes`` whose quads in ``graphs``, and those of ``typed`` whose referrers there, were not
        all read."""
        return ([node for node in nodes if self.quads(node, graphs) is None],
                [node for node in typed if node not in self._in or not graphs <= self._in[node][0]])

    def add(self, graphs: frozenset[NamedNode], read: _Read) -> None:
        """What a read of ``graphs`` found."""
        outgoing, incoming = read
        self._out.update((node, (graphs, quads)) for node, quads in outgoing.items())
        self._in.update((node, (graphs, quads)) for node, quads in incoming.items())

    def read(self, nodes: list[Any], typed: list[Any], graphs: frozenset[NamedNode],
             quads_of: Callable[[list[Any], list[Any], frozenset[NamedNode]], _Read]) -> None:
        """Read what is not yet read in ``graphs`` of ``nodes`` and of the quads pointing at ``typed`` with
        ``quads_of`` (no request if nothing)."""
        missing, unread = self.unread(nodes, typed, graphs)
        if missing or unread:
            self.add(graphs, quads_of(missing, unread, graphs))


class _NodeRead:
    """One read of nodes' stored quads, and of the quads pointing at typed nodes, in some graphs: the SELECTs
    it takes (:attr:`texts`, one per _NODES_PER_REQUEST nodes of each) and what their solutions say
    (:meth:`result`). ``ontology``: the ontology graph's quads from the vocabulary's files, which then answer that
    graph (``RemoteStore._ontology_index``)."""

    def __init__(self, nodes: list[Any], typed: list[Any], graphs: frozenset[NamedNode],
                 ontology: _OntologyIndex | None) -> None:
        self._outgoing: dict[Any, set[Quad]] = {node: set() for node in nodes}
        self._incoming: dict[Any, set[Quad] | None] = {node: set() for node in typed}
        if ontology is not None and ONTOLOGY_GRAPH in graphs:  # not asked for
            out_of, into_of, _ = ontology
            for node, quads in self._outgoing.items():
                quads.update(out_of.get(node, ()))
            for node, found in self._incoming.items():
                found.update(into_of.get(node, ()))  # type: ignore[union-attr]  # a set until cut short
            graphs = graphs - {ONTOLOGY_GRAPH}
        scope = ", ".join(str(g) for g in sorted(graphs, key=str))
        self.texts: list[str] = []
        self._typed_by_text: list[list[Any]] = []
        for start in range(0, max(len(nodes), len(typed)) if graphs else 0, _NODES_PER_REQUEST):
            out, into = nodes[start:start + _NODES_PER_REQUEST], typed[start:start + _NODES_PER_REQUEST]
            # FILTER, not VALUES ?g: Oxigraph then looks each node up (33 ms for 200 nodes, 270 ms with VALUES ?g)
            # each branch a subquery: Virtuoso 7 fails to compile the first one bare with one graph in scope
            branches = [f"{{ SELECT ?s ?p ?o ?g (0 AS ?in) WHERE {{ VALUES ?s {{ {' '.join(map(str, out))} }} "
                        f"GRAPH ?g {{ ?s ?p ?o }} FILTER(?g IN ({scope})) }} }}"] if out else []
            if into:
                branches.append(f"{{ SELECT ?s ?p ?o ?g (1 AS ?in) WHERE {{ VALUES ?o {{ {' '.join(map(str, into))} }} "
                                f"GRAPH ?g {{ ?s ?p ?o }} FILTER(?g IN ({scope})) }} LIMIT {_INCOMING_READ + 1} }}")
            self.texts.append(f"SELECT ?s ?p ?o ?g ?in WHERE {{ {' UNION '.join(branches)} }}")
            self._typed_by_text.append(into)

    def result(self, answers: Sequence[QuerySolutions]) -> _Read:
        """The quads found, from the solutions of :attr:`texts` (in their order)."""
        outgoing, incoming = self._outgoing, self._incoming
        for solutions, into in zip(answers, self._typed_by_text, strict=True):
            pointing = 0
            for row in solutions:
                quad = Quad(row["s"], row["p"], row["o"], row["g"])
                if row["in"] == _ZERO:
                    outgoing[row["s"]].add(quad)
                else:
                    pointing += 1
                    incoming[row["o"]].add(quad)  # type: ignore[union-attr]  # None only below
            if pointing > _INCOMING_READ:  # cut short: these nodes' referrers are asked for one by one
                incoming.update(dict.fromkeys(into))
        return ({node: frozenset(quads) for node, quads in outgoing.items()},
                {node: None if quads is None else frozenset(quads) for node, quads in incoming.items()})


def _nodes_named(updates: Sequence[tuple[CompiledUpdate, Mapping[str, Any]]], extra: ChangeSet | None
                 ) -> tuple[list[Any], list[Any], set[NamedNode]]:
    """What a write of ``updates`` (and ``extra``) names before its WHEREs are evaluated: the nodes, sorted
    (every IRI given as a parameter; the IRIs its templates' subjects and objects are, as written or as
    parameters; ``extra``'s nodes and the subjects of its guard, what the write was decided on), the nodes its
    templates type, and the graphs the templates write (as written or as parameters)."""
    nodes: set[Any] = set()
    typed: set[Any] = set()
    graphs: set[NamedNode] = set()
    for compiled, values in updates:
        nodes.update(v for v in values.values() if isinstance(v, NamedNode))
        for template in compiled.delete + compiled.insert:
            s, p, o, g = (values.get(t.value) if isinstance(t, Variable) else t for t in template)
            nodes.update(term for term in (s, o) if isinstance(term, NamedNode))
            if p == RDF_TYPE and isinstance(s, NamedNode):
                typed.add(s)
            if isinstance(g, NamedNode):
                graphs.add(g)
    if extra is not None:
        nodes.update(_nodes_of(extra))
        nodes.update(q.subject for q in extra.guard)
        typed.update(_typed_of(extra))
        graphs.update(q.graph_name for q in extra.delete | extra.insert if isinstance(q.graph_name, NamedNode))
    return sorted(nodes, key=str), sorted(typed, key=str), graphs


def _nodes_of(change: ChangeSet) -> list[Any]:
    """The subjects and IRI objects of a change's quads, sorted: the nodes its validation reads."""
    nodes: set[Any] = set()
    for q in change.delete | change.insert:
        nodes.add(q.subject)
        if isinstance(q.object, NamedNode):
            nodes.add(q.object)
    return sorted(nodes, key=str)


def _typed_of(change: ChangeSet) -> list[Any]:
    """The nodes a change types or untypes, sorted: the validator asks which nodes point at them."""
    return sorted({q.subject for q in change.delete | change.insert if q.predicate == RDF_TYPE}, key=str)


def _is_graph_query(text: str) -> bool:
    for kind, s, e in tokens(text):
        if kind == "word":
            word = text[s:e].upper()
            if word in ("CONSTRUCT", "DESCRIBE"):
                return True
            if word in ("SELECT", "ASK"):
                return False
    return False


def _portable_results(body: bytes) -> bytes:
    """SPARQL JSON results rewritten so that every server's answer reads like Oxigraph's.

    * Virtuoso labels blank nodes ``nodeID://b10006``, which pyoxigraph refuses; each invalid label is
      replaced by a valid one derived from it, so one blank node keeps one label within and across results.
    * Virtuoso hands typed literals back in its own lexical form (``"1"^^xsd:boolean`` for true,
      ``"1.0"^^xsd:double``, ``xsd:int`` kept): each is replaced by its canonical form (``_convert.canonical``),
      the form the change sets, the validator and the embedded store use, so that a value read back equals the
      value written and a deletion of it is recognised by the validator.
    """
    if b'"bnode"' not in body and b'"datatype"' not in body:
        return body
    results = json.loads(body)
    changed = False
    for row in results.get("results", {}).get("bindings", ()):
        for term in row.values():
            kind = term.get("type")
            if kind == "bnode" and not _BNODE_LABEL.fullmatch(term["value"]):
                label = term["value"].removeprefix("nodeID://")
                term["value"] = label if _BNODE_LABEL.fullmatch(label) else "x" + label.encode().hex()
                changed = True
            elif kind in ("literal", "typed-literal") and "datatype" in term and "xml:lang" not in term:
                lit = canonical(Literal(term["value"], datatype=NamedNode(term["datatype"])))
                if isinstance(lit, Literal) and (lit.value, lit.datatype.value) != (term["value"], term["datatype"]):
                    term["value"], term["datatype"] = lit.value, lit.datatype.value
                    changed = True
    return json.dumps(results).encode() if changed else body  # Oxigraph's answers are canonical already


def _canonical_triple(t: Triple) -> Triple:
    obj = canonical(t.object)
    return t if obj is t.object else Triple(t.subject, t.predicate, obj)

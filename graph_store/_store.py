"""The store interface every component uses, with the validated, atomic write path shared by both back-ends.

A back-end supplies four primitives (pattern match, query, update, and an optional post-commit check);
everything that makes a write safe lives here once:

1. the guard (compare-and-set) is checked,
2. the change set is validated incrementally against the store *as it would be after* the change,
3. the change is committed as ONE SPARQL Update request (atomic in pyoxigraph, Oxigraph server and
   Virtuoso), whose WHERE clause repeats the guard so that the update does nothing if a writer in another
   process changed the guarded data first -- on a server that serialises concurrent updates (Virtuoso with
   REPEATABLE READ; not Oxigraph server 0.5: see :mod:`._remote`, whose store therefore holds a cross-process
   write lock around steps 1-3, :meth:`GraphStore._exclusive`). The embedded store, its directory's only
   writer, does not repeat the guard: step 1 checked it under the write lock (see EmbeddedStore._commit).

A refused write raises before step 3: nothing is written. Writes of clients acting at once can be given together
(:meth:`GraphStore.apply_writes`): each is checked as if alone after those before it, and a remote store commits
them in one request.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    Quad,
    QueryBoolean,
    QuerySolutions,
    QueryTriples,
    Triple,
)

from ._changeset import ChangeSet
from ._errors import ConflictError, InvalidInputError, ValidationFailed
from ._queries import named_query
from ._report import ValidationReport
from ._schema import Schema, load_schema
from ._sizes import READ_COUNTS, COUNTED, adjusting_update, counted_quads, setting_update, size_changes
from ._sparql_text import bind, quad_block
from ._update_sequence import plan_sequence
from ._updates import SEQUENCE, CompiledUpdate, WhereDataset, compile_update, solution_lookup
from ._validator import PostChangeView
from ._vocab import ONTOLOGY_GRAPH, RDF_TYPE, RDFS_SUBCLASSOF, SHAPES_GRAPH, SIZES_GRAPH, validation_scope

__all__ = ["GraphStore", "QueryResult", "UpdateOutcome", "UpdatePlan", "UpdateWrite", "server_graph_refusal"]

QueryResult = QuerySolutions | QueryBoolean | QueryTriples | Iterator[Triple]
"""SELECT: iterable of solutions (``solution["var"]``); ASK: ``bool(result)``; CONSTRUCT: iterable of triples.
:meth:`GraphStore.select`, :meth:`GraphStore.ask` and :meth:`GraphStore.run_query` return one of them, typed."""

_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpdateOutcome:
    """What a validated SPARQL update did: its validation report, how many WHERE solutions it had, and the
    change set it committed."""

    report: ValidationReport
    solutions: int
    change: ChangeSet


@dataclass(frozen=True)
class UpdateWrite:
    """One write of :meth:`GraphStore.apply_writes`: what :meth:`GraphStore.apply_updates` takes."""

    updates: Sequence[tuple[str | CompiledUpdate, Mapping[str, Any]]]
    extra: ChangeSet | None = None
    require_match: bool = False


@dataclass(frozen=True)
class UpdatePlan:
    """What a SPARQL update would do, computed without writing (:meth:`GraphStore.plan_update`): the change
    set to give to :meth:`GraphStore.apply`, and how many WHERE solutions it had."""

    change: ChangeSet
    solutions: int


class GraphStore(ABC):
    """One RDF dataset in the named-graph layout of :mod:`._vocab`, whose every write is validated.

    Writers using one store instance are serialised by a lock; writers in other processes by the back-end's
    :meth:`_exclusive` (a remote store's write lock in the graph, see :mod:`._remote`).
    """

    def __init__(self, schema: Schema | None = None) -> None:
        self.schema = schema or load_schema()
        self._write_lock = threading.RLock()  # re-entrant: apply_update() holds it around apply()
        self._types_cache: dict[NamedNode, dict[Any, frozenset[Any]]] | None = None
        self._quads_cache: dict[NamedNode, dict[Any, frozenset[Quad]]] | None = None
        """Both set to dicts by back-ends whose process is the store's only writer; see PostChangeView. One
        cache per graph written (what a node looks like depends on the graphs its validation sees)."""
        self._commit_listeners: list[Callable[[ChangeSet], None]] = []
        self._bypass_listeners: list[Callable[[], None]] = []
        self._scopes: dict[NamedNode, frozenset[NamedNode]] = {}  # validation_scope of each graph written
        self._sizes: dict[NamedNode, int] | None = None  # see _known_sizes
        self._sizes_read = False

    # -- back-end primitives ----------------------------------------------------------------------------

    @abstractmethod
    def _match(self, s: Any, p: Any, o: Any, g: Any = None) -> Iterable[Quad]:
        """Quads matching the pattern (None = any), in every graph."""

    @abstractmethod
    def _query(self, text: str, *, default_graph: list[NamedNode] | None, named_graphs: list[NamedNode] | None,
               union_default_graph: bool) -> QueryResult:
        """Run a SPARQL query (text already bound)."""

    @abstractmethod
    def _update(self, text: str) -> None:
        """Run one SPARQL Update request atomically (text already bound)."""

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        """Write a validated change atomically, with the change of each graph's size (``_sizes.py``): ONE SPARQL
        update (a back-end may have a faster atomic way). The sizes change under the change's guard, before the
        change may delete what the guard names."""
        adjust = adjusting_update(sizes, condition=quad_block(change.guard))
        self._update(" ; ".join(op for op in (adjust, self._commit_text(change)) if op))

    def _confirm_commit(self, change: ChangeSet) -> None:
        """Hook for back-ends that cannot tell whether a guarded update matched (remote): raise ConflictError."""

    def _prefetched(self, change: ChangeSet, graphs: frozenset[NamedNode]
                    ) -> tuple[dict[Any, frozenset[Quad]], dict[Any, frozenset[Quad]]] | None:
        """For a back-end without a cache of its own: the stored quads (in ``graphs``) of the nodes ``change``
        names, read at once before validating it, and the stored quads pointing at those of them it types (whose
        referrers the validator asks for), or None to read each node when the validator asks for it (the
        embedded store: an index lookup costs less than a request)."""
        return None

    def _read_ahead(self, change: ChangeSet) -> None:
        """Under the write lock, before a write's guard check and validation: a remote store reads the stored
        quads of every node ``change`` names in one request, which then answers both (one round trip, not two)."""

    def _exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held around each write, inside the thread lock: excludes writers in other processes where the back-end
        does not (a remote store on a server that does not serialise guarded updates, see ``_write_lock.py``)."""
        return contextlib.nullcontext()

    @abstractmethod
    def close(self) -> None:
        """Release the store (files, connections)."""

    def server_graph(self, graph: NamedNode) -> bool:
        """True if ``graph`` belongs to the store or the server behind it (bookkeeping or configuration, not the
        platform's data): SPARQL Update's ``ALL`` and ``NAMED`` leave it alone and naming it is refused. Here the
        graphs' sizes (``_sizes.py``)."""
        return graph == SIZES_GRAPH

    def _known_sizes(self) -> dict[NamedNode, int] | None:
        """Every graph's count as this object last read or wrote it (None: the counts are not kept), read once
        and then kept with each commit. Kept, not looked up per write: each write replaces a graph's count quad,
        and a lookup by graph and predicate scans every replaced version RocksDB has not compacted yet
        (measured: 0.13 ms a write at first, 0.44 ms after 3,000 writes, on an Oxigraph server as embedded).
        The embedded store is its only writer; a remote store checks them in its commit request."""
        if not self._sizes_read:
            self._sizes = self._graph_counts(READ_COUNTS) or None
            self._sizes_read = True
        return self._sizes

    def _forget_sizes(self) -> None:
        """Read the counts again at the next write (the sizes graph was rewritten, or a commit failed)."""
        self._sizes, self._sizes_read = None, False

    def _keeps_sizes(self) -> bool:
        """Whether writes must keep the graphs' sizes."""
        return self._known_sizes() is not None

    # -- reading ------------------------------------------------------------------------------------------

    def quads(self, s: Any = None, p: Any = None, o: Any = None, g: Any = None) -> list[Quad]:
        """The quads matching a pattern (None = any)."""
        return list(self._match(s, p, o, g))

    def contains(self, quad: Quad) -> bool:
        """True if ``quad`` is in the store."""
        return any(True for _ in self._match(quad.subject, quad.predicate, quad.object, quad.graph_name))

    def existing(self, quads: Collection[Quad]) -> frozenset[Quad]:
        """The quads of ``quads`` that are in the store (a remote store asks in one request, not one each)."""
        return frozenset(q for q in quads if self.contains(q))

    def query(self, sparql: str, *, bindings: Mapping[str, Any] | None = None,
              default_graph: list[NamedNode] | None = None, named_graphs: list[NamedNode] | None = None,
              union_default_graph: bool = False) -> QueryResult:
        """Run a SPARQL query; ``$name`` parameters are bound as RDF terms from ``bindings``.

        Raises InvalidInputError for a malformed query (with the parser's message).
        """
        return self._query(bind(sparql, bindings or {}), default_graph=default_graph, named_graphs=named_graphs,
                           union_default_graph=union_default_graph)

    def query_untrusted(self, sparql: str, *, default_graph: list[NamedNode] | None = None,
                        named_graphs: list[NamedNode] | None = None, union_default_graph: bool = False) -> QueryResult:
        """Run a caller's query (``/sparql``, the web view): the text as the caller wrote it, with no parameters.

        On a remote store the server sees only the platform's re-serialisation of it (:mod:`._untrusted_query`:
        vendor pragmas, ``bif:`` functions and the server's own prefixes refused; the query's FROM dropped when
        a dataset is given; GRAPH refused when ``named_graphs`` restricts the named graphs, which Virtuoso does
        not honour); the embedded store parses it itself. Raises InvalidInputError for a query refused.
        """
        text = self._untrusted_text(sparql, default_graph=default_graph, named_graphs=named_graphs)
        return self._query(text, default_graph=default_graph, named_graphs=named_graphs,
                           union_default_graph=union_default_graph)

    def _untrusted_text(self, text: str, *, default_graph: list[NamedNode] | None,
                        named_graphs: list[NamedNode] | None) -> str:
        """The text of a caller's query as this back-end runs it over that dataset (a remote store rewrites it)."""
        return text

    def select(self, sparql: str, *, bindings: Mapping[str, Any] | None = None,
               default_graph: list[NamedNode] | None = None, named_graphs: list[NamedNode] | None = None,
               union_default_graph: bool = False) -> QuerySolutions:
        """Run a SPARQL SELECT as :meth:`query` does: its solutions (``solution["var"]`` is the bound term or
        None, ``.variables`` the projected variables). Raises InvalidInputError for any other query form."""
        result = self.query(sparql, bindings=bindings, default_graph=default_graph, named_graphs=named_graphs,
                            union_default_graph=union_default_graph)
        if not isinstance(result, QuerySolutions):
            raise InvalidInputError("expected a SPARQL SELECT query")
        return result

    def ask(self, sparql: str, *, bindings: Mapping[str, Any] | None = None) -> bool:
        """Run a SPARQL ASK as :meth:`query` does: its answer. Raises InvalidInputError for any other form."""
        result = self.query(sparql, bindings=bindings)
        if not isinstance(result, QueryBoolean):
            raise InvalidInputError("expected a SPARQL ASK query")
        return bool(result)

    def run_query(self, name: str, **bindings: Any) -> QuerySolutions:
        """Run the named read-only query ``sparql_queries/<name>.rq`` (a SELECT, as every named query is) with
        its parameters bound: its solutions, as :meth:`select`."""
        q = named_query(name)
        if q.is_update:
            raise InvalidInputError(f"{name}.rq is an update; updates go through apply()")
        return self.select(q.text, bindings=bindings)

    # -- writing ------------------------------------------------------------------------------------------

    def validate(self, change: ChangeSet) -> ValidationReport:
        """Validate ``change`` against the store as it would be after it, without writing anything."""
        return self._validate(change, cached=False)[0]

    def _validate(self, change: ChangeSet, *, cached: bool, pending: ChangeSet | None = None
                  ) -> tuple[ValidationReport, list[tuple[NamedNode, PostChangeView]]]:
        """Validate each graph the change writes on its own, as :func:`validation_scope` says: what a change
        to one graph is checked against is that graph, the ontology and, for a station graph, the central graph;
        so facts in a station's graph never make a write to the central graph fail. ``cached`` (only under
        the write lock) reads through the caches of the sole writer. ``pending``: changes to apply before this
        one, not committed yet (:meth:`apply_writes`), which the views show. Returns the report and each graph's
        view."""
        graphs = self._check_writable(change)
        around = change if pending is None or pending.is_empty() else ChangeSet.merged([pending, change])
        validator = self.schema.validator
        results: list[Any] = []
        checked = 0
        views: list[tuple[NamedNode, PostChangeView]] = []
        for graph in graphs:
            scope = self._scope(graph)
            part = change if len(graphs) == 1 else change.restricted((graph,))
            seen = around if around.graphs() <= scope else around.restricted(scope)
            types = quads = incoming = None
            if cached and self._types_cache is not None and self._quads_cache is not None:
                types, quads = self._types_cache.setdefault(graph, {}), self._quads_cache.setdefault(graph, {})
            elif self._quads_cache is None:
                quads, incoming = self._prefetched(seen, scope) or (None, None)
            view = PostChangeView(self._match, delete=seen.delete, insert=seen.insert, graphs=scope,
                                  types_cache=types, quads_cache=quads, incoming=incoming)
            report = validator.validate_change(view, part)
            if len(graphs) == 1:
                return report, [(graph, view)]
            results += report.results
            checked += report.focus_nodes_checked
            views.append((graph, view))
        return ValidationReport(tuple(results), focus_nodes_checked=checked), views

    def validate_everything(self) -> ValidationReport:
        """Validate every node of the store (cost grows with the store: for audits and after a vocabulary
        change, never on the write path)."""
        nodes: dict[Any, set[Any]] = {}
        for q in self._match(None, None, None):  # one pass over the store
            graph = q.graph_name
            if graph != SHAPES_GRAPH and isinstance(graph, NamedNode) and not self.server_graph(graph):
                in_graph = nodes.setdefault(graph, set())
                in_graph.add(q.subject)
                if not isinstance(q.object, Literal):
                    in_graph.add(q.object)
        results: dict[Any, None] = {}  # each graph's nodes as a write to that graph sees them (validation_scope)
        for graph, in_graph in nodes.items():
            scope = frozenset((graph,)) if graph == ONTOLOGY_GRAPH else validation_scope(graph)
            view = PostChangeView(self._match, graphs=scope)
            results.update(dict.fromkeys(self.schema.validator.validate_nodes(view, in_graph)))
        return ValidationReport(tuple(results), focus_nodes_checked=sum(len(n) for n in nodes.values()))

    def apply(self, change: ChangeSet) -> ValidationReport:
        """Validate ``change`` and, if it conforms and its guard holds, commit it atomically.

        Raises ValidationFailed (with the report) if it violates the shapes, ConflictError if a guard quad is
        missing, InvalidInputError if it writes the ontology or shapes graphs. Nothing is written then.
        """
        return self._apply(change, known=frozenset())

    def _apply(self, change: ChangeSet, *, known: frozenset[Quad]) -> ValidationReport:
        """:meth:`apply`, where the guard quads in ``known`` were found in the store under this same write lock
        and exclusive hold (so no writer can have removed them: they are not asked for again)."""
        with self._write_lock, self._exclusive():
            self._read_ahead(change)
            report, views = self._checked(change, known=known)
            self._committed([(change, views)])
            return report

    def _checked(self, change: ChangeSet, *, known: frozenset[Quad], pending: ChangeSet | None = None
                 ) -> tuple[ValidationReport, list[tuple[NamedNode, PostChangeView]]]:
        """Under the write's hold: ConflictError if a guard quad not in ``known`` is missing, ValidationFailed if
        the store after ``pending`` (writes of the same group before it, not yet committed) and ``change``
        violates the shapes; else the report and each graph's view."""
        unknown = change.guard - known
        missing = unknown - self.existing(unknown) if unknown else frozenset()
        if missing:
            raise ConflictError("precondition failed: " + "; ".join(str(q) for q in sorted(missing, key=str)))
        report, views = self._validate(change, cached=True, pending=pending)
        if not report.conforms:
            raise ValidationFailed(report)
        return report, views

    def _committed(self, writes: Sequence[tuple[ChangeSet, Sequence[tuple[NamedNode, PostChangeView]]]]) -> None:
        """Commit checked changes (:meth:`_checked`, under the same hold) as ONE request, then tell the listeners
        of each in turn. Several only if no two of them write quads of one subject (:meth:`_grouped`): their union
        is then what applying them in order would write."""
        writes = [(change, views) for change, views in writes if not change.is_empty()]
        if not writes:
            return
        sizes: dict[NamedNode, int] = {}
        for change, views in writes:
            for graph, gain in self._size_changes(change, views).items():
                sizes[graph] = sizes.get(graph, 0) + gain
        change = writes[0][0] if len(writes) == 1 else ChangeSet.merged(c for c, _ in writes)
        self._forget(change)
        self._commit(change, sizes)
        self._confirm_commit(change)
        for _, views in writes:
            self._remember(views)
        for change, _ in writes:
            for listener in self._commit_listeners:
                try:
                    listener(change)
                except Exception:  # the change is committed: a listener's bug must not report it as failed
                    log.exception("a commit listener failed after a committed change")

    def _size_changes(self, change: ChangeSet, views: Sequence[tuple[NamedNode, PostChangeView]]
                      ) -> dict[NamedNode, int]:
        """Each written graph's gain in quads (``_sizes.py``), from which of the change's quads are stored (under
        the write lock: no writer changes that until the commit): what validation read of their subjects, and
        :meth:`existing` for the others (a remote store answers from its read-ahead)."""
        if not self._keeps_sizes():
            return {}
        read: dict[object, PostChangeView] = dict(views)
        stored: set[Quad] = set()
        unknown: list[Quad] = []
        for q in change.insert | change.delete:
            view = read.get(q.graph_name)
            before = view.stored_quads.get(q.subject) if view is not None else None
            if before is None:
                unknown.append(q)
            elif q in before:
                stored.add(q)
        if unknown:
            stored.update(self.existing(unknown))
        return size_changes(change, stored)

    def recount(self) -> dict[NamedNode, int]:
        """Count the quads of every graph and write the counts (``_sizes.py``): after a bulk load, or where the
        counts are missing. A full scan of the store, under the write lock; returns the counts."""
        with self._write_lock, self._exclusive():
            counts = self._counts()
            self._forget_sizes()
            self._update(" ; ".join([f"DROP SILENT GRAPH {SIZES_GRAPH}",
                                     *_data_operations("INSERT DATA", counted_quads(counts))]))
            return counts

    def _counts(self, graphs: Sequence[NamedNode] = ()) -> dict[NamedNode, int]:
        """The number of quads of ``graphs`` (default: every graph but the store's and its server's own)."""
        values = f"VALUES ?g {{ {' '.join(str(g) for g in graphs)} }} " if graphs else ""
        text = f"SELECT ?g (COUNT(*) AS ?n) WHERE {{ {values}GRAPH ?g {{ ?s ?p ?o }} }} GROUP BY ?g"
        return {g: n for g, n in self._graph_counts(text).items() if not self.server_graph(g)}

    def _graph_counts(self, text: str) -> dict[NamedNode, int]:
        """A SELECT's ``?g ?n`` rows as counts by named graph."""
        rows = self._query(text, default_graph=None, named_graphs=None, union_default_graph=False)
        assert isinstance(rows, QuerySolutions)  # a SELECT
        return {row["g"]: int(row["n"].value) for row in rows if isinstance(row["g"], NamedNode)}

    def on_commit(self, listener: Callable[[ChangeSet], None]) -> None:
        """Call ``listener(change)`` after every change this store object commits (under its write lock), e.g.
        to drop what a cache derived from the changed data."""
        self._commit_listeners.append(listener)

    def on_bypass(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` when the store may change without :meth:`apply` (the vocabulary's reload, a bulk
        load through ``EmbeddedStore.oxigraph``): a copy kept current from :meth:`on_commit` must be rebuilt."""
        self._bypass_listeners.append(listener)

    def _bypassed(self) -> None:
        for listener in self._bypass_listeners:
            listener()

    def plan_update(self, update: str | CompiledUpdate, *, bindings: Mapping[str, Any] | None = None,
                    using: Sequence[NamedNode] = (), using_named: Sequence[NamedNode] = (),
                    max_solutions: int | None = None, skolem: str | None = None,
                    untrusted: bool = False) -> UpdatePlan:
        """What a SPARQL update (text, or compiled with :func:`compile_update`) would change, without writing.

        Its WHERE is evaluated as a SELECT over the graphs its WITH / USING / USING NAMED name or, for an update
        naming none, ``using`` / ``using_named`` (the SPARQL Protocol's ``using-graph-uri`` /
        ``using-named-graph-uri``); its templates are instantiated with the solutions (see :mod:`._updates`), blank
        nodes becoming IRIs ``{skolem}{uuid}`` (refused without ``skolem``). A request of several operations, or of
        graph management operations, is planned step by step (:mod:`._update_sequence`) into one change set.
        The change set deletes only quads that exist, and is guarded by them (for a sequence, by those its DATA
        and WHERE operations delete): :meth:`apply` commits it only if none was removed meanwhile. Takes no
        lock: a caller may bound the evaluation's time, then apply.

        Raises InvalidInputError: malformed or unsupported update, bad parameters, WITH / USING together with
        ``using`` / ``using_named``, or a WHERE with more than ``max_solutions`` solutions.

        ``untrusted``: the update is a caller's (an operator's ``/sparql`` update): its WHERE is run as
        :meth:`query_untrusted` runs a query.
        """
        compiled, values = self._compiled(update, bindings or {})
        if compiled.operation == SEQUENCE:  # guarded by its DATA and WHERE deletions (_update_sequence.py)
            change, solutions = plan_sequence(self, compiled, values, using, using_named, max_solutions, skolem,
                                              untrusted=untrusted)
            return UpdatePlan(ChangeSet.merged([change], keep_delete=self.existing), solutions)
        change, solutions = self.evaluate_update(compiled, values, compiled.where_dataset(using, using_named),
                                                 max_solutions, skolem, untrusted=untrusted)
        return UpdatePlan(ChangeSet.merged([change], keep_delete=self.existing, guard_deletions=True), solutions)

    def apply_update(self, update: str | CompiledUpdate, *, bindings: Mapping[str, Any] | None = None,
                     using: Sequence[NamedNode] = (), using_named: Sequence[NamedNode] = (),
                     max_solutions: int | None = None) -> UpdateOutcome:
        """Run a SPARQL update as a validated change set: :meth:`plan_update` then :meth:`apply`, under the write
        lock. ``solutions`` = 0 means the WHERE matched nothing (nothing written).

        Raises InvalidInputError (see plan_update), ValidationFailed, ConflictError (another writer changed the
        matched data first).
        """
        with self._write_lock, self._exclusive():  # planned and applied with no other process's write between
            plan = self.plan_update(update, bindings=bindings, using=using, using_named=using_named,
                                    max_solutions=max_solutions)
            # its guard is what plan_update just found in the store, under this hold
            report = self._apply(plan.change, known=plan.change.guard)
            return UpdateOutcome(report=report, solutions=plan.solutions, change=plan.change)

    def apply_updates(self, updates: Sequence[tuple[str | CompiledUpdate, Mapping[str, Any]]], *,
                      extra: ChangeSet | None = None, require_match: bool = False) -> list[UpdateOutcome]:
        """Several updates (and an ``extra`` change set) as ONE validated, atomic write: all or nothing.

        Each WHERE is evaluated against the store as it is before the write, so the updates must be
        independent (none reads what another writes) — e.g. a lifecycle step of an execution together with
        the step it causes for its train. With ``require_match``, an update whose WHERE matches nothing
        raises ConflictError and nothing at all is written.
        """
        compiled = [self._compiled(text, values) for text, values in updates]
        # Evaluated and applied with no other process's write between: a deletion another process made after the
        # WHERE found it would otherwise be dropped from the change (it no longer exists) and so from its guard,
        # and the step would apply twice (measured with two service replicas on one Oxigraph server).
        with self._write_lock, self._exclusive():
            answered = self._answer_wheres(compiled, extra)  # a remote store's: all at once, with its read-ahead
            parts = self._evaluated(compiled, answered, require_match=require_match)
            changes = [ch for ch, _ in parts] + ([extra] if extra is not None else [])
            self._read_ahead(ChangeSet.merged(changes))  # the nodes of every deletion, asked for below, and more
            merged, found = self._guarded(changes, extra)
            report = self._apply(merged, known=found)
        return [UpdateOutcome(report=report, solutions=n, change=ch) for ch, n in parts]

    def apply_writes(self, writes: Sequence[UpdateWrite]) -> list[list[UpdateOutcome] | Exception]:
        """Several writes of clients acting at once (each what :meth:`apply_updates` takes), each applied as if on
        its own, in order: for each, its outcomes or the error that refused it (nothing of it written).

        A store that pays a round trip per request (:attr:`groups_writes`) applies them as one group under one
        hold: their WHEREs and read-ahead asked for at once, each checked and validated against the store after
        the writes before it, and all committed in ONE request (:meth:`_grouped`). Every WHERE is then evaluated
        against the store before the group: as with :meth:`apply_updates`, the writes must not read what
        another writes, and a write naming a node that an earlier one writes is applied after the group, alone.
        Elsewhere each write is applied in turn."""
        if len(writes) > 1 and self.groups_writes:
            return self._grouped(writes)
        return [self._one_write(write) for write in writes]

    def _one_write(self, write: UpdateWrite) -> list[UpdateOutcome] | Exception:
        """:meth:`apply_updates` of one write of :meth:`apply_writes`, or the error it raised."""
        try:
            return self.apply_updates(write.updates, extra=write.extra, require_match=write.require_match)
        except Exception as e:  # this write's own error, for its own caller (the others are not refused by it)
            return e

    @property
    def groups_writes(self) -> bool:
        """Whether :meth:`apply_writes` writes a group in the round trips of one write (a back-end whose requests
        cost round trips); elsewhere a caller gains nothing by queueing writes for it."""
        return False

    def _grouped(self, writes: Sequence[UpdateWrite]) -> list[list[UpdateOutcome] | Exception]:
        """:meth:`apply_writes` as one group (see there). A write whose WHERE, check or validation fails gets its
        error and is left out; one that names a subject an earlier write of the group writes is applied after
        the group, on its own, as is every write of a group whose commit found the store changed (nothing of it
        was written)."""
        results: list[list[UpdateOutcome] | Exception | None] = [None] * len(writes)
        compiled: dict[int, list[tuple[CompiledUpdate, dict[str, Any]]]] = {}
        for i, write in enumerate(writes):
            try:
                compiled[i] = [self._compiled(text, values) for text, values in write.updates]
            except Exception as e:
                results[i] = e
        after: list[int] = []  # applied after the group, alone
        with self._write_lock, self._exclusive():
            flat = [update for i in compiled for update in compiled[i]]
            extras = ChangeSet.merged(w.extra for i, w in enumerate(writes) if i in compiled and w.extra is not None)
            answered = self._answer_wheres(flat, extras)  # every write's at once
            evaluated: dict[int, list[tuple[ChangeSet, int]]] = {}
            offset = 0
            for i, updates in compiled.items():
                mine = {k - offset: answered.pop(k) for k in range(offset, offset + len(updates)) if k in answered}
                offset += len(updates)
                try:
                    evaluated[i] = self._evaluated(updates, mine, require_match=writes[i].require_match)
                except Exception as e:
                    results[i] = e
            changes: dict[int, list[ChangeSet]] = {}
            for i, parts in evaluated.items():
                changes[i] = [ch for ch, _ in parts] + [extra for extra in (writes[i].extra,) if extra is not None]
                try:  # a write the store refuses (a vocabulary graph) is refused alone, before the read-ahead
                    self._check_writable(ChangeSet.merged(changes[i]))
                except InvalidInputError as e:
                    results[i] = e
                    del changes[i]
            self._read_ahead(ChangeSet.merged(ch for group in changes.values() for ch in group))
            checked: list[tuple[int, ChangeSet, ValidationReport, list[tuple[NamedNode, PostChangeView]]]] = []
            written: set[Any] = set()  # the subjects the checked writes write
            pending = ChangeSet()
            for i, group in changes.items():
                try:
                    merged, found = self._guarded(group, writes[i].extra)
                    if not written.isdisjoint(_touched(merged, compiled[i])):
                        after.append(i)
                        continue
                    report, views = self._checked(merged, known=found, pending=pending)
                except Exception as e:
                    results[i] = e
                    continue
                checked.append((i, merged, report, views))
                written.update(q.subject for q in merged.delete | merged.insert)
                pending = ChangeSet.merged([pending, merged])
            try:
                self._committed([(merged, views) for _, merged, _, views in checked])
            except ConflictError:  # the store changed under the group (a writer without the lock): none written
                after += [i for i, *_ in checked]
                checked = []
            except Exception as e:  # e.g. the server is gone: each write's caller is told, as if alone
                for i, *_ in checked:
                    results[i] = e
                checked = []
            for i, _, report, _ in checked:
                results[i] = [UpdateOutcome(report=report, solutions=n, change=ch) for ch, n in evaluated[i]]
        for i in sorted(after):
            results[i] = self._one_write(writes[i])
        return cast(list[list[UpdateOutcome] | Exception], results)  # each write has one now

    def _evaluated(self, compiled: Sequence[tuple[CompiledUpdate, dict[str, Any]]],
                   answered: dict[int, QuerySolutions], *, require_match: bool) -> list[tuple[ChangeSet, int]]:
        """Each update's change set and solution count (its WHERE answered already where ``answered`` has it, which
        is emptied); with ``require_match``, ConflictError if a WHERE matched nothing."""
        try:
            parts = [self.evaluate_update(c, values, c.where_dataset(), None,
                                          select=_answered(answered[i]) if i in answered else None)
                     for i, (c, values) in enumerate(compiled)]
        finally:  # pyoxigraph's solutions are dropped by this thread, not with a refusal's traceback in another's
            answered.clear()
        if require_match and any(n == 0 for _, n in parts):
            raise ConflictError("the data changed concurrently: a guarded step no longer applies")
        return parts

    def _guarded(self, changes: Sequence[ChangeSet], extra: ChangeSet | None) -> tuple[ChangeSet, frozenset[Quad]]:
        """The changes of one write merged into a compare-and-set on what they delete (the deletions that exist,
        read ahead under the hold), and the guard quads found in the store meanwhile (not asked for again)."""
        required = extra.guard if extra is not None else frozenset()
        found: set[Quad] = set()

        def kept(deletions: frozenset[Quad]) -> frozenset[Quad]:
            found.update(self.existing(deletions - required))
            return required & deletions | found

        merged = ChangeSet.merged(changes, keep_delete=kept, guard_deletions=True)
        # its guard: ``required`` (checked by _checked) and the deletions just found (not asked for again)
        return merged, frozenset(found)

    def _answer_wheres(self, updates: Sequence[tuple[CompiledUpdate, dict[str, Any]]], extra: ChangeSet | None
                       ) -> dict[int, QuerySolutions]:
        """Under a write's hold, before :meth:`apply_updates` evaluates its updates' WHEREs: the solutions of those
        the store has asked for already, by position. None here: the embedded store evaluates each where it is; a
        remote store asks for them all at once (``RemoteStore._answer_wheres``)."""
        return {}

    @staticmethod
    def _compiled(update: str | CompiledUpdate, values: Mapping[str, Any]) -> tuple[CompiledUpdate, dict[str, Any]]:
        """The compiled update, its parameters checked against ``values``."""
        compiled = update if isinstance(update, CompiledUpdate) else compile_update(update)
        if compiled.parameters != values.keys():
            bind(compiled.text, values)  # raises the standard message naming missing / unknown parameters
        return compiled, dict(values)

    def evaluate_update(self, compiled: CompiledUpdate, values: dict[str, Any], dataset: WhereDataset,
                        max_solutions: int | None, skolem: str | None = None,
                        select: Callable[..., Any] | None = None, *, untrusted: bool = False) -> tuple[ChangeSet, int]:
        """One operation's templates instantiated with its WHERE's solutions over ``dataset`` (unguarded); the
        WHERE runs through ``select`` (default :meth:`select`, or :meth:`query_untrusted` for a caller's update;
        an overlay of pending changes for a sequence)."""
        if compiled.operation == SEQUENCE:
            raise InvalidInputError("an update of several operations is planned with plan_update, one at a time")
        text = compiled.select_text
        if text is None:
            return compiled.change_set([lambda name: None], values, skolem), 1
        given = compiled.where_bindings(values)
        default, named = _listed(dataset.default_graph), _listed(dataset.named_graphs)
        if select is None and untrusted:
            result: Any = self.query_untrusted(bind(text, given), default_graph=default, named_graphs=named)
            if not isinstance(result, QuerySolutions):  # always: select_text is a SELECT
                raise InvalidInputError("the update's WHERE did not run as a SELECT")
        else:
            result = (select or self.select)(text, bindings=given, default_graph=default, named_graphs=named)
        rows = []
        try:
            for row in result:
                rows.append(solution_lookup(row))
                if max_solutions is not None and len(rows) > max_solutions:
                    break
        finally:  # pyoxigraph's QuerySolutions must be dropped by the thread that made it, not with a traceback
            del result
        if max_solutions is not None and len(rows) > max_solutions:
            raise InvalidInputError(f"the update's WHERE matched more than {max_solutions} solutions; split it "
                                    "into smaller updates")
        return compiled.change_set(rows, values, skolem), len(rows)

    def run_update(self, name: str, **bindings: Any) -> UpdateOutcome:
        """Run the named update ``sparql_queries/<name>.rq`` with its parameters bound (see apply_update)."""
        q = named_query(name)
        if not q.is_update:
            raise InvalidInputError(f"{name}.rq is a query; run it with run_query()")
        return self.apply_update(q.text, bindings=bindings)

    def _forget(self, change: ChangeSet) -> None:
        """Before a commit: drop the cached types and quads of every node the change writes (so a failed commit
        leaves no stale entry)."""
        if self._types_cache is None or self._quads_cache is None:
            return
        quads_caches, types_caches = list(self._quads_cache.values()), list(self._types_cache.values())
        for cache in quads_caches:
            if len(cache) > 50_000:
                cache.clear()
        for cache in types_caches:
            if len(cache) > 200_000:
                cache.clear()
        for q in change.delete | change.insert:
            node = q.subject  # read once: each read of a quad's term makes a new Python object
            for cache in quads_caches:
                cache.pop(node, None)
            if q.predicate == RDF_TYPE:
                for cache in types_caches:
                    cache.pop(node, None)

    def _remember(self, views: Sequence[tuple[NamedNode, PostChangeView]]) -> None:
        """After a commit: the quads each graph's view computed for the nodes it read are now the stored ones.

        Only for small changes (a lifecycle step reads the same execution and train again soon); a large batch,
        such as a station's metadata, describes new events nobody writes again, and caching them would only
        grow the heap that Python's garbage collector walks."""
        if self._quads_cache is None:
            return
        for graph, view in views:
            if len(view.post_quads) <= _REMEMBERED_NODES:
                self._quads_cache.setdefault(graph, {}).update(view.post_quads)

    def _clear_caches(self) -> None:
        for caches in (self._types_cache, self._quads_cache):
            if caches is not None:
                caches.clear()

    def load_vocabulary(self) -> None:
        """(Re)write the ontology and shapes graphs from the repository's files, in one atomic update."""
        text = " ; ".join([f"DROP SILENT GRAPH {ONTOLOGY_GRAPH}", f"DROP SILENT GRAPH {SHAPES_GRAPH}",
                           *_insert_operations(self.schema.ontology_quads + self.schema.shapes_quads)])
        with self._write_lock, self._exclusive():  # two replicas starting at once: one reload after the other
            self._clear_caches()
            self._update(text)
            if self.contains(COUNTED):  # the two graphs' new sizes; the first start-up counts every graph
                counts = self._counts((ONTOLOGY_GRAPH, SHAPES_GRAPH))
                update = setting_update({g: counts.get(g, 0) for g in (ONTOLOGY_GRAPH, SHAPES_GRAPH)})
                self._forget_sizes()
                if update:
                    self._update(update)
            else:
                self.recount()
            self._bypassed()

    # -- helpers ------------------------------------------------------------------------------------------

    def _scope(self, graph: NamedNode) -> frozenset[NamedNode]:
        """``validation_scope(graph)``, kept per graph (each write asks for its graphs')."""
        scope = self._scopes.get(graph)
        if scope is None:
            scope = self._scopes[graph] = validation_scope(graph)
        return scope

    @staticmethod
    def _check_writable(change: ChangeSet) -> set[NamedNode]:
        """The graphs the change writes, after refusing writes to the vocabulary graphs and the class hierarchy."""
        graphs: set[NamedNode] = set()
        last = None
        for q in change.delete | change.insert:
            graph = q.graph_name  # read once: each read of a quad's term makes a new Python object
            if graph != last:  # most quads of a change share its graph: compare, hash only a new one
                if graph in _PROTECTED or not isinstance(graph, NamedNode):  # ChangeSet refuses blank-node graphs
                    raise InvalidInputError(f"{q}: the ontology and shapes graphs are loaded from files, not written")
                if graph == SIZES_GRAPH:
                    raise InvalidInputError(f"{q}: the graphs' sizes are the store's own, kept by every write")
                graphs.add(graph)
                last = graph
            if q.predicate == RDFS_SUBCLASSOF:
                raise InvalidInputError(f"{q}: the class hierarchy lives in ontology/, data may not change it")
        return graphs

    @staticmethod
    def _commit_text(change: ChangeSet, *, guarded: bool = True, fence: str = "",
                     counts: tuple[Sequence[Quad], Sequence[Quad]] = ((), ())) -> str:
        """One update request: a guarded DELETE/INSERT ... WHERE, or DELETE DATA + INSERT DATA without a guard
        (or with ``guarded=False``, for a writer that has just checked the guard and is the store's only one).
        ``fence``: a further pattern the guarded WHERE requires (a remote store's write-lock claim). ``counts``:
        count quads to delete and insert with the change (``_sizes.py``), in the same operations."""
        deleted, inserted = [*change.delete, *counts[0]], [*change.insert, *counts[1]]
        if change.guard and guarded:
            delete = f"DELETE {{ {quad_block(deleted)} }} " if deleted else ""
            insert = f"INSERT {{ {quad_block(inserted)} }} " if inserted else ""
            return f"{delete}{insert}WHERE {{ {quad_block(change.guard)} {fence} }}"
        return " ; ".join([*_data_operations("DELETE DATA", deleted), *_data_operations("INSERT DATA", inserted)])

    def __enter__(self) -> GraphStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_REMEMBERED_NODES = 64
"""Largest number of nodes of one change whose quads the write path caches (see GraphStore._remember)."""

_QUADS_PER_OPERATION = 500
"""Largest DELETE DATA / INSERT DATA operation we send. Virtuoso 7 compiles each operation of an update
request to SQL and refuses one of more than 10,000 SQL lines (SP031), about 1,000 quads; several operations in
one request are still one request (all or nothing). Virtuoso also refuses a whole request of more than about
3,000 quads (SQ199, code vector size): no SPARQL request can make a larger change atomically there."""


def server_graph_refusal(graph: NamedNode) -> str:
    """The one sentence refusing a read or write of a graph :meth:`GraphStore.server_graph` names."""
    return f"the graph {graph} belongs to the store (its bookkeeping, or its server's), not to the platform's data"


def _touched(change: ChangeSet, updates: Sequence[tuple[CompiledUpdate, Mapping[str, Any]]]) -> set[Any]:
    """What a write of a group reads or writes by name: the subjects of its change and guard, and the IRIs its
    updates are given (its WHEREs' starting points)."""
    nodes: set[Any] = {q.subject for q in change.delete | change.insert | change.guard}
    nodes.update(v for _, values in updates for v in values.values() if isinstance(v, NamedNode))
    return nodes


def _answered(solutions: QuerySolutions) -> Callable[..., QuerySolutions]:
    """A ``select`` for :meth:`GraphStore.evaluate_update` that hands back a WHERE's solutions received already
    (:meth:`GraphStore._answer_wheres`)."""
    return lambda text, **_: solutions


def _listed(graphs: tuple[NamedNode, ...] | None) -> list[NamedNode] | None:
    return None if graphs is None else list(graphs)


def _data_operations(keyword: str, quads: Sequence[Quad]) -> list[str]:
    """``INSERT DATA`` / ``DELETE DATA`` operations for ``quads``, at most _QUADS_PER_OPERATION each."""
    return [f"{keyword} {{ {quad_block(quads[i:i + _QUADS_PER_OPERATION])} }}"
            for i in range(0, len(quads), _QUADS_PER_OPERATION)]


def _insert_operations(quads: Iterable[Quad]) -> list[str]:
    """Update operations that insert ``quads``, which may contain blank nodes (the shapes do).

    Ground quads go into INSERT DATA operations (see _QUADS_PER_OPERATION). Virtuoso refuses blank nodes in
    INSERT DATA ("not allowed in a constant clause", SP031), so the quads with blank nodes are split into
    their connected components (quads linked by a shared blank node), each inserted by its own
    ``INSERT {...} WHERE {}``: a blank node label is scoped to one operation, and no label is shared between
    components, so the graph's structure is kept (with fresh blank nodes).
    """
    parent: dict[BlankNode, BlankNode] = {}

    def root(b: BlankNode) -> BlankNode:
        while parent.setdefault(b, b) != b:
            parent[b] = parent[parent[b]]
            b = parent[b]
        return b

    ground: list[Quad] = []
    with_blanks: list[tuple[BlankNode, Quad]] = []
    for q in quads:
        blanks = [t for t in (q.subject, q.object) if isinstance(t, BlankNode)]
        if not blanks:
            ground.append(q)
            continue
        for other in blanks[1:]:
            parent[root(other)] = root(blanks[0])
        with_blanks.append((blanks[0], q))
    components: dict[BlankNode, list[Quad]] = {}
    for b, q in with_blanks:
        components.setdefault(root(b), []).append(q)
    ops = _data_operations("INSERT DATA", ground)
    ops += [f"INSERT {{ {quad_block(c)} }} WHERE {{}}" for c in components.values()]
    return ops

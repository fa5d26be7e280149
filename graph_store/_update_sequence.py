"""Plan an update request of several operations (``;``) or of graph management operations as ONE change set.

SPARQL 1.1 Update runs a request's operations in order, each seeing the effects of the ones before, and the
platform writes only validated, atomic change sets. So the operations are applied here to a *pending* state (the
store plus the quads removed and added so far, nothing written) and the net difference becomes one
:class:`ChangeSet`, validated and committed as a whole by :meth:`GraphStore.apply`: a request whose last operation
violates a shape writes nothing.

A WHERE after an operation that changed something is evaluated over an in-memory copy of the graphs it may read
(the store's as changed so far); that copy is bounded by ``OVERLAY_QUADS`` quads — past it, the request is refused
with the advice to send the WHERE operation as a request of its own.

Graph management (``CLEAR``, ``DROP``, ``CREATE``, ``ADD``, ``MOVE``, ``COPY``): graphs exist here by their quads,
so CLEAR and DROP are the same, CREATE only fails (unless SILENT) for a graph that has quads, and a graph that
has none is empty rather than missing. ``DEFAULT`` is the named graph ``DEFAULT_GRAPH``; ``NAMED`` is every other
named graph and ``ALL`` both — except the graphs no update writes (ontology, shapes, audit) and those of the
server behind a remote store (:meth:`GraphStore.server_graph`: Virtuoso's quad maps), which ``NAMED`` and ``ALL``
leave alone; naming one of them explicitly still puts it in the change set, for the caller to refuse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyoxigraph import NamedNode, Quad, QuerySolutions, Store

from ._changeset import ChangeSet
from ._errors import InvalidInputError
from ._sparql_text import bind
from ._updates import CompiledUpdate, GraphOperation, GraphRef, WhereDataset
from ._vocab import AUDIT_GRAPH, DEFAULT_GRAPH, ONTOLOGY_GRAPH, SHAPES_GRAPH

if TYPE_CHECKING:
    from ._store import GraphStore

__all__ = ["OVERLAY_QUADS", "UNTOUCHED_BY_ALL", "plan_sequence"]

OVERLAY_QUADS = 200_000
"""Most quads copied to evaluate a WHERE that must see the earlier operations of its request."""

UNTOUCHED_BY_ALL = frozenset((ONTOLOGY_GRAPH, SHAPES_GRAPH, AUDIT_GRAPH))
"""Graphs ``NAMED`` and ``ALL`` do not include: loaded from the repository's files, or the record of edits."""


class _Pending:
    """The store as a request's operations have changed it so far (nothing written)."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store
        self.removed: set[Quad] = set()
        self.added: set[Quad] = set()
        self.guarded: set[Quad] = set()
        """Deletions of DATA and WHERE operations: the commit happens only if they are all still there (a
        compare-and-set, as for a single operation). Graph management deletes whatever the graph holds, unguarded:
        the guard of a whole graph would be one pattern per quad, which Virtuoso cannot evaluate past a few
        hundred."""

    def delete(self, quads: Sequence[Quad] | frozenset[Quad] | set[Quad]) -> None:
        for q in quads:
            if q in self.added:
                self.added.discard(q)
            else:
                self.removed.add(q)

    def insert(self, quads: Sequence[Quad] | frozenset[Quad] | set[Quad]) -> None:
        for q in quads:
            self.removed.discard(q)
            self.added.add(q)

    def quads(self, graph: NamedNode) -> set[Quad]:
        return {q for q in self.store.quads(g=graph) if q not in self.removed} | \
            {q for q in self.added if q.graph_name == graph}

    def graphs(self) -> list[NamedNode]:
        """Every named graph with quads, as changed so far."""
        stored = {row["g"] for row in self.store.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")}
        candidates = stored | {q.graph_name for q in self.added}
        return sorted((g for g in candidates if isinstance(g, NamedNode) and self.quads(g)), key=lambda g: g.value)

    def resolve(self, ref: GraphRef) -> list[NamedNode]:
        if isinstance(ref, NamedNode):
            return [ref]
        if ref == "DEFAULT":
            return [DEFAULT_GRAPH]
        named = [g for g in self.graphs()
                 if g not in UNTOUCHED_BY_ALL and g != DEFAULT_GRAPH and not self.store.server_graph(g)]
        return named if ref == "NAMED" else [DEFAULT_GRAPH, *named]

    def run(self, op: GraphOperation) -> None:
        if op.kind in ("CLEAR", "DROP"):
            for graph in self.resolve(op.target):
                self.delete(self.quads(graph))
            return
        (target,) = self.resolve(op.target)
        if op.kind == "CREATE":
            if self.quads(target) and not op.silent:
                raise InvalidInputError(f"CREATE GRAPH {target}: the graph already exists (use CREATE SILENT)")
            return
        assert op.source is not None
        (source,) = self.resolve(op.source)
        if source == target:
            return  # ADD, COPY and MOVE of a graph to itself change nothing (SPARQL 1.1 Update §3.2.3-5)
        moved = [Quad(q.subject, q.predicate, q.object, target) for q in self.quads(source)]
        if op.kind in ("COPY", "MOVE"):
            self.delete(self.quads(target))
        self.insert(moved)
        if op.kind == "MOVE":
            self.delete(self.quads(source))

    def overlay(self, dataset: WhereDataset) -> Store:
        """An in-memory store holding the graphs ``dataset`` reads, as changed so far."""
        if dataset.named_graphs is None:
            graphs = self.graphs()
        else:
            graphs = sorted({*dataset.named_graphs, *(dataset.default_graph or ())}, key=lambda g: g.value)
        copy = Store()
        size = 0
        for graph in graphs:
            quads = self.quads(graph)
            size += len(quads)
            if size > OVERLAY_QUADS:
                raise InvalidInputError(f"a WHERE after other operations of the same request would read more than "
                                        f"{OVERLAY_QUADS} quads as changed so far; send it as a request of its own")
            copy.extend(quads)
        return copy


def plan_sequence(store: GraphStore, compiled: CompiledUpdate, values: Mapping[str, Any],
                  using: Sequence[NamedNode], using_named: Sequence[NamedNode], max_solutions: int | None,
                  skolem: str | None, *, untrusted: bool = False) -> tuple[ChangeSet, int]:
    """The net change of the steps of ``compiled`` (a ``SEQUENCE``), applied in order, and how many WHERE
    solutions they had in all; guarded by what its DATA and WHERE operations delete (not by what CLEAR, DROP,
    COPY or MOVE delete: those delete what is there). ``untrusted``: a caller's update, whose WHERE over the store
    itself runs as :meth:`GraphStore.query_untrusted` runs a query (over the in-memory overlay it runs as it is)."""
    pending = _Pending(store)
    solutions = 0
    for step in compiled.steps:
        if isinstance(step, GraphOperation):
            pending.run(step)
            continue
        dataset = step.where_dataset(using, using_named)
        if step.select_text is None or (not pending.added and not pending.removed):
            change, n = store.evaluate_update(step, dict(values), dataset, max_solutions, skolem, untrusted=untrusted)
        else:
            copy = pending.overlay(dataset)

            def select(text: str, *, bindings: Mapping[str, Any], default_graph: list[Any] | None,
                       named_graphs: list[Any] | None, _copy: Store = copy) -> QuerySolutions:
                result = _copy.query(bind(text, bindings), default_graph=default_graph, named_graphs=named_graphs)
                assert isinstance(result, QuerySolutions)
                return result
            change, n = store.evaluate_update(step, dict(values), dataset, max_solutions, skolem, select)
        solutions += n
        pending.guarded |= change.delete - pending.added
        pending.delete(change.delete)
        pending.insert(change.insert)
    guard = store.existing(pending.guarded & pending.removed)
    return ChangeSet(delete=pending.removed, insert=pending.added, guard=guard), solutions

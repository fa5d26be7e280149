"""The size of every named graph, kept by every write: ``<graph> void:triples n`` in :data:`SIZES_GRAPH`.

Why: neither Oxigraph nor the SPARQL protocol keeps counts. Counting the quads of each graph is a scan of the
whole store (1.2 s for 10 million quads even in Oxigraph's own Rust ``len``), which the metric
``pht_store_triples`` (``graph_sizes.rq``) paid on every refresh. So each write states, in the same atomic update
request as its change, how much each graph it writes grew or shrank, and reading the sizes is a lookup.

The rules:

* The counts are complete or not kept at all. The marker :data:`COUNTED` (``<sizes> a void:Dataset``) says they are
  complete; without it no write keeps them and ``graph_sizes.rq`` answers nothing. ``GraphStore.recount`` (a full
  count, under the write lock) writes every count and the marker; ``GraphStore.load_vocabulary`` runs it when the
  marker is missing, so a service's store has its counts from start-up on.
* A write changes a graph's count by its effective change: its insertions that were not stored and its
  deletions that were (``GraphStore._size_changes``: read under the write lock, before the commit). A graph
  without a count while the marker is there holds no quads (``COALESCE(?n, 0)``).
* A store replaces the counts it knows (``GraphStore._known_sizes``: read once, kept with each commit), because
  any lookup of a count quad by graph and predicate scans its replaced versions until RocksDB compacts them. The
  embedded store is its only writer; a remote store on Oxigraph replaces them on the condition that they still
  hold (:func:`unchanged_condition`, in its commit request's marker ``WHERE``) and resends with the counts read
  again if another client changed them. On Virtuoso, and while a store knows no counts, the server adds to them
  (:func:`adjusting_update`), conditioned on what the change itself is conditioned on (``_remote.py``).
* A write that bypasses validation (``EmbeddedStore.oxigraph``: bulk loads, replicas) drops the counts; a bulk
  loader calls ``recount()`` afterwards.
* The graph is the store's own (``GraphStore.server_graph``): no change set, SPARQL Update or Graph Store
  Protocol request may write it, ``ALL`` and ``NAMED`` leave it alone, and callers' views never contain it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pyoxigraph import Literal, NamedNode, Quad

from ._changeset import ChangeSet
from ._sparql_text import term_text
from ._vocab import RDF_TYPE, SIZES_GRAPH, VOID

__all__ = ["COUNTED", "TRIPLES", "READ_COUNTS", "size_changes", "adjusting_update", "setting_update",
           "counted_quads", "count_quad", "replacement", "unchanged_condition"]

COUNTED = Quad(SIZES_GRAPH, RDF_TYPE, VOID.Dataset, SIZES_GRAPH)
"""The marker: the counts in :data:`SIZES_GRAPH` are complete (see the module's docstring)."""

TRIPLES = VOID.triples


def size_changes(change: ChangeSet, stored: Collection[Quad]) -> dict[NamedNode, int]:
    """How many quads each graph ``change`` writes gains (or loses, negative), given which of its quads were
    ``stored`` before it: only the graphs whose size changes."""
    sizes: dict[NamedNode, int] = {}
    for quads, step in ((change.insert, 1), (change.delete, -1)):
        for q in quads:
            graph = q.graph_name
            if (q in stored) != (step == 1) and isinstance(graph, NamedNode):  # ChangeSet: named graphs only
                sizes[graph] = sizes.get(graph, 0) + step  # an insertion not stored yet, a deletion stored
    return {graph: n for graph, n in sizes.items() if n}


def _update(values: Mapping[NamedNode, int], new: str, condition: str) -> str | None:
    if not values:
        return None
    rows = " ".join(f"({term_text(graph)} {int(n)})" for graph, n in sorted(values.items(), key=lambda i: i[0].value))
    sizes, triples, marker = term_text(SIZES_GRAPH), term_text(TRIPLES), term_text(COUNTED.object)
    return (f"DELETE {{ GRAPH {sizes} {{ ?g {triples} ?n }} }} INSERT {{ GRAPH {sizes} {{ ?g {triples} ?m }} }} "
            f"WHERE {{ {condition} GRAPH {sizes} {{ {sizes} a {marker} }} VALUES (?g ?v) {{ {rows} }} "
            f"OPTIONAL {{ GRAPH {sizes} {{ ?g {triples} ?n }} }} BIND({new} AS ?m) }}")


def adjusting_update(changes: Mapping[NamedNode, int], condition: str = "") -> str | None:
    """One update operation adding each graph's change to its count, if the counts are complete and the
    ``condition`` (SPARQL group patterns: the change's guard) holds; None for no change. The server does the
    sum, so no request reads the counts first."""
    return _update(changes, "COALESCE(?n, 0) + ?v", condition)


def setting_update(counts: Mapping[NamedNode, int]) -> str | None:
    """One update operation setting the counts of some graphs (after a rewrite of the vocabulary's graphs), if
    the counts are complete."""
    return _update(counts, "?v", "")


def counted_quads(counts: Mapping[NamedNode, int]) -> list[Quad]:
    """The whole sizes graph for ``counts``: every count and the marker."""
    return [COUNTED, *(count_quad(graph, n) for graph, n in counts.items())]


def count_quad(graph: NamedNode, n: int) -> Quad:
    return Quad(graph, TRIPLES, Literal(n), SIZES_GRAPH)


READ_COUNTS = (f"SELECT ?g ?n WHERE {{ GRAPH {term_text(SIZES_GRAPH)} {{ {term_text(SIZES_GRAPH)} a "
               f"{term_text(COUNTED.object)} . ?g {term_text(TRIPLES)} ?n }} }}")
"""Every graph's count, if the counts are complete (no rows if not: the ontology always has a count)."""


def replacement(counts: Mapping[NamedNode, int], changes: Mapping[NamedNode, int]
                ) -> tuple[list[Quad], list[Quad], dict[NamedNode, int]]:
    """For a writer that knows the current ``counts`` (the embedded store, its only writer; a remote store
    checking them in its commit request): the count quads to delete and to insert, and the counts after."""
    after = dict(counts)
    delete, insert = [], []
    for graph, n in changes.items():
        old = counts.get(graph)
        if old is not None:
            delete.append(count_quad(graph, old))
        after[graph] = (old or 0) + n
        insert.append(count_quad(graph, after[graph]))
    return delete, insert, after


def unchanged_condition(counts: Mapping[NamedNode, int], graphs: Collection[NamedNode]) -> str:
    """SPARQL group patterns that hold if and only if the counts are complete and those of ``graphs`` are still
    ``counts`` (a graph without one has none): point lookups, no scan of a graph's replaced counts."""
    sizes, triples = term_text(SIZES_GRAPH), term_text(TRIPLES)
    known = " ".join(f"{term_text(g)} {triples} {term_text(Literal(counts[g]))} ." for g in graphs if g in counts)
    absent = " ".join(f"FILTER NOT EXISTS {{ GRAPH {sizes} {{ {term_text(g)} {triples} ?n }} }}"
                      for g in graphs if g not in counts)
    return f"GRAPH {sizes} {{ {sizes} a {term_text(COUNTED.object)} . {known} }} {absent}"

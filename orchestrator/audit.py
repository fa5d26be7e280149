"""The audit record of operators' edits: every SPARQL Update (``/sparql``) and Graph Store Protocol write
(``/rdf-graphs``) is written together with a ``pht:GraphEdit`` in the audit graph, in ONE atomic change set.

Why: the lifecycle records each step it takes, but an operator can change any data graph directly (correct a
title, or erase an approval event). Such an edit must never be silent: the record says who, when, the SHA-256
of the request (the update text, or the graph's body) and how many quads it inserted and deleted in each
graph. It is committed with the edit or not at all, and no edit may write the audit graph
(:func:`check_not_audit`), so an operator cannot erase the record of an edit either. Operators read it with
the named query ``graph_edits``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timezone

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import AUDIT_GRAPH, PHT, PROV, RDF_TYPE, XSD, ChangeSet

from .naming import Iris
from .principal import Principal

__all__ = ["EDIT_KINDS", "audited", "check_not_audit"]

EDIT_KINDS = ("sparql-update", "graph-put", "graph-post", "graph-delete")
"""How an operator edits the graph (``pht:editKind``; the shapes allow exactly these)."""


def check_not_audit(change: ChangeSet) -> str | None:
    """One sentence refusing ``change`` if it writes the audit graph, else None."""
    if AUDIT_GRAPH in change.graphs():
        return (f"the graph {AUDIT_GRAPH.value} records operators' edits; no edit may change it (it matched "
                "quads there: name the graphs your update changes)")
    return None


def audited(change: ChangeSet, *, iris: Iris, who: Principal, kind: str, request: bytes,
            at: datetime | None = None) -> ChangeSet:
    """``change`` together with its audit record (the same guard: both are committed, or neither)."""
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}")
    inserted = Counter(q.graph_name for q in change.insert)
    deleted = Counter(q.graph_name for q in change.delete)
    edit = iris.graph_edit()
    when = (at or datetime.now(timezone.utc)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    g = AUDIT_GRAPH
    quads = [Quad(edit, RDF_TYPE, PHT.GraphEdit, g),
             Quad(edit, PROV.wasAssociatedWith, iris.agent(who.subject), g),
             Quad(edit, PROV.endedAtTime, Literal(when, datatype=XSD.dateTime), g),
             Quad(edit, PHT.requestSha256, Literal(hashlib.sha256(request).hexdigest()), g),
             Quad(edit, PHT.editKind, Literal(kind), g)]
    graphs = sorted({*inserted, *deleted}, key=str)
    for i, graph in enumerate(graphs):
        if not isinstance(graph, NamedNode):  # a change set never writes the default graph
            continue
        part = NamedNode(f"{edit.value}/graphs/{i}")
        quads += [Quad(edit, PHT.graphChange, part, g), Quad(part, RDF_TYPE, PHT.GraphChange, g),
                  Quad(part, PHT.inGraph, graph, g),
                  Quad(part, PHT.quadsInserted, Literal(str(inserted[graph]), datatype=XSD.integer), g),
                  Quad(part, PHT.quadsDeleted, Literal(str(deleted[graph]), datatype=XSD.integer), g)]
    return ChangeSet.merged([change, ChangeSet(insert=quads)])

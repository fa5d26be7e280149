"""The vocabulary and shapes, read from the repository's files (never downloaded), and the validator built
from them. Read once per process and shared by every store."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import rdflib
from pyoxigraph import NamedNode, Quad, RdfFormat, parse
from rdflib.namespace import RDFS

from ._changeset import ChangeSet
from ._paths import ONTOLOGY_DIR, SHAPES_DIR
from ._report import ValidationReport
from ._shapes import compile_shapes
from ._validator import IncrementalValidator, PostChangeView
from ._vocab import ONTOLOGY_GRAPH, PHT_NS, SHAPES_GRAPH

__all__ = ["Schema", "load_schema", "validate_unstored"]


@dataclass(frozen=True)
class Schema:
    """Ontology and shapes as rdflib graphs and as quads for the store, plus the compiled validator."""

    ontology: rdflib.Graph
    shapes: rdflib.Graph
    ontology_quads: tuple[Quad, ...]
    shapes_quads: tuple[Quad, ...]
    validator: IncrementalValidator


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.ttl"))


def _quads(files: list[Path], graph: NamedNode) -> tuple[Quad, ...]:
    quads: list[Quad] = []
    for f in files:
        quads += [Quad(t.subject, t.predicate, t.object, graph) for t in parse(path=f, format=RdfFormat.TURTLE)]
    return tuple(quads)


def _graph(files: list[Path]) -> rdflib.Graph:
    g = rdflib.Graph()
    for f in files:
        g.parse(f, format="turtle")
    return g


@lru_cache(maxsize=4)
def load_schema(ontology_dir: Path = ONTOLOGY_DIR, shapes_dir: Path = SHAPES_DIR) -> Schema:
    """Read ``ontology/*.ttl`` and ``shapes/*.ttl`` and compile the validator (cached per directory pair)."""
    onto_files, shape_files = _files(ontology_dir), _files(shapes_dir)
    ontology, shapes = _graph(onto_files), _graph(shape_files)
    superclasses: dict[NamedNode, frozenset[NamedNode]] = {}
    classes = set(ontology.subjects(RDFS.subClassOf, None)) | set(ontology.objects(None, RDFS.subClassOf))
    for cls in classes:
        if isinstance(cls, rdflib.URIRef):
            closure = set(ontology.transitive_objects(cls, RDFS.subClassOf))
            superclasses[NamedNode(str(cls))] = frozenset(NamedNode(str(c)) for c in closure
                                                          if isinstance(c, rdflib.URIRef))
    declared = frozenset(NamedNode(str(s)) for s in ontology.subjects()
                         if isinstance(s, rdflib.URIRef) and str(s).startswith(PHT_NS))
    validator = IncrementalValidator(compile_shapes(shapes), superclasses=superclasses, declared_terms=declared)
    return Schema(ontology, shapes, _quads(onto_files, ONTOLOGY_GRAPH), _quads(shape_files, SHAPES_GRAPH), validator)


def validate_unstored(change: ChangeSet, *, context: Iterable[Quad] = (), schema: Schema | None = None
                      ) -> ValidationReport:
    """Validate ``change`` as if it were written into a store holding only ``context``, with no store at all.

    For data checked here but stored elsewhere or nowhere (the events an MPU pushes, a filter policy), at the
    cost of the change alone. Shapes only: the rules of a write itself (no ontology or shapes graph, no
    ``rdfs:subClassOf``) are :meth:`GraphStore.apply`'s, which an empty :class:`EmbeddedStore` also checks.
    ``context`` stands for what the store would already hold (e.g. ``?s a pht:Station`` for a station named).
    """
    known = tuple(context)

    def match(s: object, p: object, o: object, g: object = None) -> Iterator[Quad]:
        return (q for q in known if (s is None or q.subject == s) and (p is None or q.predicate == p)
                and (o is None or q.object == o))

    view = PostChangeView(match, delete=change.delete, insert=change.insert)
    return (schema or load_schema()).validator.validate_change(view, change)

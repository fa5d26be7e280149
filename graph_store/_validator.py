"""Incremental SHACL validation of a change set against the store *as it would be after* the change.

Why hand-written: pySHACL costs about 3 ms per call even on a tiny graph, and re-validating the whole
store costs seconds at a million triples. The platform needs thousands of validated writes per second
whatever the store size, so this module validates only the focus nodes a change can affect, reading the
store through index lookups, and implements exactly the SHACL Core subset the shapes use
(:mod:`._shapes` refuses anything else). ``tests/test_validator_differential.py`` proves the results
equal pySHACL's on the project's shapes.

Affected focus nodes of a change (deleted and inserted quads alike):

* the subject of every changed triple, and its object when some shape has an inverse path on the predicate;
* nodes whose ``sh:class`` constraint reads the changed node's ``rdf:type`` (walked back along the path);
* nodes whose ``sh:node`` constraint reads the changed node, transitively through nested shapes.

A shape that targets the subjects of a predicate (``sh:targetSubjectsOf``) is checked whole on a node whose value
of that predicate the change writes: the change may have made the node one of its focus nodes.

Each affected node is checked only on the paths the change can affect (the changed predicate, the inverse
path, the path of the sh:class or sh:node constraint), plus its node-level constraints; a change of its
``rdf:type`` re-checks it whole, since that changes which shapes target it. Every constraint component the
shapes may use (see :mod:`._shapes`) reads only the values of its own path, those values' types and their
conformance to nested shapes, so a path the change leaves alone gives the same result as before the change.
That is why the write path relies on the store conforming before each write (every write is validated;
:meth:`GraphStore.validate_everything` audits a store loaded or changed some other way).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from datetime import date, datetime, time
from decimal import Decimal
from functools import lru_cache
from typing import Any

import rdflib
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Triple
from pyshacl.rdfutil.compare import compare_literal
from rdflib.term import XSDToPython

from ._changeset import ChangeSet
from ._convert import RDF_LANGSTRING, XSD_STRING, to_rdflib
from ._report import PathTerm, ValidationReport, ValidationResult
from ._shapes import Constraint, NodeShape, PropertyShape, ShapesModel
from ._vocab import PHT_NS, RDF_TYPE, RDFS_NS, SH_NS, XSD_NS

__all__ = ["QuadMatcher", "PostChangeView", "IncrementalValidator", "is_well_typed"]

Node = NamedNode | BlankNode | Triple
"""A focus node read from a quad's subject (pyoxigraph also holds RDF 1.2 triple terms)."""
ShapeId = NamedNode | BlankNode
Term = NamedNode | BlankNode | Literal | Triple
QuadMatcher = Callable[[Node | None, NamedNode | None, Term | None], Iterable[Quad]]
"""Reads the stored data graphs: ``match(s, p, o)`` yields the quads matching the pattern (None = any)."""

_VIOLATION = NamedNode(SH_NS + "Violation")
_EMPTY: frozenset[Term] = frozenset()
_UNKNOWN_TERM = NamedNode(PHT_NS + "UnknownTermConstraintComponent")
_VOCABULARY_CHECK = NamedNode(PHT_NS + "VocabularyCheck")

# Python types rdflib gives well-formed literals of these datatypes (pySHACL's DatatypeConstraintComponent).
_PY_TYPES: dict[str, type | tuple[type, ...]] = {
    XSD_STRING: (str, bytes),
    RDF_LANGSTRING: (str, bytes),
    XSD_NS + "integer": int,
    XSD_NS + "float": float,
    XSD_NS + "decimal": Decimal,
    XSD_NS + "boolean": bool,
    XSD_NS + "date": date,
    XSD_NS + "time": time,
    XSD_NS + "dateTime": datetime,
}
_RDFS_LITERAL = RDFS_NS + "Literal"
_XSD_DATETIME = XSD_NS + "dateTime"
_RDFLIB_PARSES_DATETIME_BY_FROMISOFORMAT = XSDToPython.get(rdflib.URIRef(_XSD_DATETIME)) == datetime.fromisoformat
_RDFS_DATATYPE = RDFS_NS + "Datatype"


class PostChangeView:
    """The data graphs as they will be once ``change`` is applied, read lazily from the store.

    ``graphs``: the graphs that are data here (the validation scope of the graph a change writes, see
    ``graph_store.validation_scope``); their union is the data graph, as in pySHACL's view of a merged data
    graph, and every other graph is invisible. None: every graph but ``exclude_graph`` (the shapes graph).
    ``delete`` and ``insert`` hold only quads of those graphs.
    """

    def __init__(self, match: QuadMatcher, *, delete: Collection[Quad] = (), insert: Collection[Quad] = (),
                 exclude_graph: NamedNode | None = None, graphs: frozenset[NamedNode] | None = None,
                 types_cache: dict[Term, frozenset[Term]] | None = None,
                 quads_cache: dict[Term, frozenset[Quad]] | None = None,
                 incoming: Mapping[Term, frozenset[Quad]] | None = None) -> None:
        self._match = match
        self._excluded = exclude_graph
        self._graphs = graphs
        self._deleted = delete
        # rdf:type of nodes the change does not retype, shared across changes by a store that is the only
        # writer and forgets a node's entry whenever a committed change retypes it (EmbeddedStore.apply).
        self._types = types_cache
        self._retyped = {q.subject for q in delete if q.predicate == RDF_TYPE}
        # Stored quads by subject, shared across changes like the types (see GraphStore.apply), and the
        # post-change quads of the subjects this view read, which become the cache's entries once committed.
        self._quads = quads_cache
        # Stored quads by object, of the nodes a remote store read them for (in a validation scope: graphs given)
        self._incoming = incoming if graphs is not None else None
        self.post_quads: dict[Term, frozenset[Quad]] = {}
        self.stored_quads: dict[Term, frozenset[Quad]] = {}
        """The stored quads (before the change) of the same subjects: what a write needs to know which of its
        quads are stored already (``GraphStore._size_changes``), without asking again."""
        self._inserted = insert
        self._ins_s: dict[Term, list[Quad]] = {}
        for q in insert:
            self._ins_s.setdefault(q.subject, []).append(q)
        self._ins_po_index: dict[tuple[Term, Term], set[Node]] | None = None
        self._cache_sp: dict[tuple[Term, Term], frozenset[Term]] = {}
        self._cache_po: dict[tuple[Term, Term], frozenset[Term]] = {}
        self._cache_s: dict[Term, dict[NamedNode, frozenset[Term]]] = {}

    def _stored(self, s: Node | None, p: NamedNode | None, o: Term | None) -> Iterator[Quad]:
        """The stored quads matching the pattern in the graphs that are data here."""
        graphs = self._graphs
        if graphs is None:
            excluded = self._excluded
            return (q for q in self._match(s, p, o) if q.graph_name != excluded)
        return (q for q in self._match(s, p, o) if q.graph_name in graphs)

    def outgoing(self, s: Node) -> dict[NamedNode, frozenset[Term]]:
        """All values of all predicates of ``s``, read with one index lookup (used for focus nodes, whose
        shapes read most of their predicates)."""
        found = self._cache_s.get(s)
        if found is None:
            stored = self._quads.get(s) if self._quads is not None else None
            if stored is None:
                stored = frozenset(self._stored(s, None, None))
            inserted = self._ins_s.get(s, ())
            self.stored_quads[s] = stored
            if not stored:  # a new node, as every event of a station's batch is
                post = frozenset(inserted)
            else:
                post = stored.difference(self._deleted) if self._deleted else stored
                post = post.union(inserted) if inserted else post
            self.post_quads[s] = post
            grouped: dict[NamedNode, set[Term]] = defaultdict(set)
            for q in post:
                grouped[q.predicate].add(q.object)
            found = self._cache_s[s] = {p: frozenset(v) for p, v in grouped.items()}
        return found

    def objects(self, s: Node, p: NamedNode) -> frozenset[Term]:
        cached = self._cache_s.get(s)
        if cached is not None:
            return cached.get(p, _EMPTY)
        if self._quads is not None and s in self._quads:  # its stored quads are known: no lookup
            return self.outgoing(s).get(p, _EMPTY)
        key = (s, p)
        inserted = self._ins_s.get(s, ())
        if p == RDF_TYPE and self._types is not None and not inserted and s not in self._retyped:
            types = self._types.get(s)
            if types is None:
                types = self._types[s] = frozenset(q.object for q in self._stored(s, p, None))
            return types
        found = self._cache_sp.get(key)
        if found is None:
            values = {q.object for q in self._stored(s, p, None) if q not in self._deleted}
            values.update(q.object for q in inserted if q.predicate == p)
            found = self._cache_sp[key] = frozenset(values)
        return found

    @property
    def _ins_po(self) -> dict[tuple[Term, Term], set[Node]]:
        if self._ins_po_index is None:
            self._ins_po_index = {}
            for q in self._inserted:
                self._ins_po_index.setdefault((q.predicate, q.object), set()).add(q.subject)
        return self._ins_po_index

    def subjects(self, p: NamedNode, o: Term) -> frozenset[Term]:
        key = (p, o)
        found = self._cache_po.get(key)
        if found is None:
            stored = self._incoming.get(o) if self._incoming is not None else None
            if stored is None:
                values = {q.subject for q in self._stored(None, p, o) if q not in self._deleted}
            else:  # read with the node's own quads (a new event's referrers: none, but asked all the same)
                graphs = self._graphs or frozenset()
                values = {q.subject for q in stored
                          if q.predicate == p and q.graph_name in graphs and q not in self._deleted}
            values |= self._ins_po.get(key, set())  # built on first use: most changes never need it
            found = self._cache_po[key] = frozenset(values)
        return found

    def values(self, focus: Term, path: PathTerm) -> frozenset[Term]:
        """The value nodes of ``focus`` for ``path`` (a predicate or an inverse predicate)."""
        if isinstance(path, tuple):
            return self.subjects(path[1], focus)
        assert path is not None
        if isinstance(focus, Literal):  # a literal a nested shape (sh:node) checks is never a subject
            return _EMPTY
        return self.outgoing(focus).get(path, _EMPTY)

    def back(self, path: PathTerm, value: Term) -> frozenset[Term]:
        """The focus nodes that have ``value`` as a value of ``path``."""
        if isinstance(path, tuple):
            return self.objects(value, path[1]) if not isinstance(value, Literal) else frozenset()
        assert path is not None
        return self.subjects(path, value)


Paths = frozenset[PathTerm] | None
"""The paths of a focus node that a change can affect; None: all of them (its types changed)."""


class IncrementalValidator:
    """Validates change sets against a compiled shapes model and the ontology's class hierarchy."""

    def __init__(self, model: ShapesModel, *, superclasses: dict[NamedNode, frozenset[NamedNode]],
                 declared_terms: frozenset[NamedNode]) -> None:
        self.model = model
        self._superclasses = superclasses
        self._declared = declared_terms
        self._known_terms: set[Term] = set()  # terms that passed the vocabulary check (a bounded cache)
        # Which property shapes read their values' rdf:type (sh:class), and which read a nested shape.
        # sh:class C on path P, indexed by C: a type change of v to/from a subclass of C affects P^-1(v).
        self._class_paths: dict[NamedNode, list[PathTerm]] = defaultdict(list)
        self._node_users: dict[ShapeId, list[tuple[NodeShape, PropertyShape]]] = defaultdict(list)
        self._inverse_predicates: set[NamedNode] = set()
        self._inverse_paths: dict[NamedNode, PathTerm] = {}
        self._shape_out: dict[ShapeId, set[NamedNode]] = {}
        self._shape_in: dict[ShapeId, set[NamedNode]] = {}
        self._shape_class_paths: dict[ShapeId, dict[NamedNode, list[PathTerm]]] = defaultdict(lambda: defaultdict(list))
        for shape in model.node_shapes.values():
            self._shape_out[shape.id] = {RDF_TYPE}
            self._shape_in[shape.id] = set()
            for ps in shape.properties:
                if isinstance(ps.path, tuple):
                    self._inverse_predicates.add(ps.path[1])
                    self._inverse_paths[ps.path[1]] = ps.path
                    self._shape_in[shape.id].add(ps.path[1])
                elif ps.path is not None:
                    self._shape_out[shape.id].add(ps.path)
                for c in ps.constraints:
                    if c.kind == "class":
                        self._class_paths[c.param].append(ps.path)
                        self._shape_class_paths[shape.id][c.param].append(ps.path)
                    elif c.kind == "node":
                        self._node_users[c.param].append((shape, ps))

    # -- which nodes a change touches -------------------------------------------------------------

    def affected_focus_nodes(self, view: PostChangeView, change: ChangeSet) -> dict[Node, Paths]:
        """Every node whose validation result may differ after ``change``, with the paths that may differ."""
        affected: dict[Node, set[PathTerm] | None] = {}

        def mark(node: Node, path: PathTerm) -> None:
            if path is None:
                affected[node] = None
            else:
                paths = affected.setdefault(node, set())
                if paths is not None:
                    paths.add(path)

        nested_dirty: list[tuple[Term, ShapeId]] = []
        for q in change.delete | change.insert:
            s, p, o = q.subject, q.predicate, q.object
            mark(s, None if p == RDF_TYPE else p)
            if p in self._inverse_predicates and not isinstance(o, Literal):
                mark(o, self._inverse_paths[p])
            # (a type that is no IRI has no superclasses, and no shape's sh:class names it)
            classes = self._superclasses.get(o, (o,)) if p == RDF_TYPE and isinstance(o, NamedNode) else ()
            for cls in classes:
                for path in self._class_paths.get(cls, ()):
                    for node in self._nodes(view.back(path, s)):
                        mark(node, path)
            for nested in self.model.nested:
                if p in self._shape_out.get(nested, ()):
                    nested_dirty.append((s, nested))
                if p in self._shape_in.get(nested, ()) and not isinstance(o, Literal):
                    nested_dirty.append((o, nested))
                class_paths = self._shape_class_paths.get(nested, {})
                for cls in classes:
                    for path in class_paths.get(cls, ()):
                        nested_dirty.extend((v, nested) for v in view.back(path, s))
        seen: set[tuple[Term, ShapeId]] = set()
        while nested_dirty:
            item = nested_dirty.pop()
            if item in seen:
                continue
            seen.add(item)
            value, nested = item
            for parent_shape, ps in self._node_users.get(nested, ()):
                for parent in self._nodes(view.back(ps.path, value)):
                    mark(parent, ps.path)
                    if parent_shape.id in self.model.nested:
                        nested_dirty.append((parent, parent_shape.id))
        return {node: None if paths is None else frozenset(paths) for node, paths in affected.items()}

    @staticmethod
    def _nodes(terms: Iterable[Term]) -> Iterator[Node]:
        return (t for t in terms if not isinstance(t, Literal))

    # -- validation ----------------------------------------------------------------------------------

    def validate_change(self, view: PostChangeView, change: ChangeSet) -> ValidationReport:
        """Validate the affected focus nodes of ``change`` (plus the vocabulary check of its inserts)."""
        results = list(self._vocabulary_results(change.insert))
        focus = self.affected_focus_nodes(view, change)
        results += self._validate_paths(view, focus.items())
        return ValidationReport(tuple(results), focus_nodes_checked=len(focus))

    def validate_nodes(self, view: PostChangeView, focus_nodes: Iterable[Node]) -> list[ValidationResult]:
        """Validate each node, on every path, against every shape that targets it."""
        return self._validate_paths(view, ((node, None) for node in focus_nodes))

    def _validate_paths(self, view: PostChangeView, focus: Iterable[tuple[Node, Paths]]) -> list[ValidationResult]:
        """Validate each node on its paths against every shape that targets it."""
        results: list[ValidationResult] = []
        run = _Run(self, view)
        for node, paths in focus:
            for shape in self._targeting_shapes(view, node):
                # a change of a sh:targetSubjectsOf predicate may have made the node a focus node of the shape:
                # then every path of the shape is checked, not only the changed ones
                whole = paths is not None and not paths.isdisjoint(shape.target_subjects_of)
                results.extend(run.validate(node, shape, None if whole else paths))
        return results

    def _targeting_shapes(self, view: PostChangeView, focus: Node) -> list[NodeShape]:
        shapes: dict[ShapeId, NodeShape] = {}
        # the shapes will read most of the focus node's predicates: fetch them at once
        predicates = view.outgoing(focus)
        for cls in self.classes_of(view, focus):
            for shape in self.model.by_target_class.get(cls, ()):
                shapes[shape.id] = shape
        for predicate, by_predicate in self.model.by_target_predicate.items():
            if predicates.get(predicate):
                for shape in by_predicate:
                    shapes[shape.id] = shape
        return list(shapes.values())

    def classes_of(self, view: PostChangeView, node: Term) -> set[NamedNode]:
        """The node's classes, closed under ``rdfs:subClassOf`` from the ontology."""
        if isinstance(node, Literal):
            return set()
        classes: set[NamedNode] = set()
        for t in view.objects(node, RDF_TYPE):
            if isinstance(t, NamedNode):
                classes |= self._superclasses.get(t, frozenset((t,)))
        return classes

    def _vocabulary_results(self, quads: Iterable[Quad]) -> Iterator[ValidationResult]:
        """Project terms that the ontology does not declare: almost always a typo in a class or property."""
        known = self._known_terms
        for q in quads:
            checks = ((q.predicate, "property"), (q.object, "class")) if q.predicate == RDF_TYPE \
                else ((q.predicate, "property"),)
            for term, what in checks:
                if term in known:
                    continue
                if isinstance(term, NamedNode) and term.value.startswith(PHT_NS) and term not in self._declared:
                    yield ValidationResult(
                        focus_node=q.subject, path=q.predicate, value=term, source_shape=_VOCABULARY_CHECK,
                        component=_UNKNOWN_TERM, severity=_VIOLATION,
                        message=f"unknown {what} {term.value}: the ontology (ontology/*.ttl) does not declare it",
                    )
                elif len(known) < 10_000:
                    known.add(term)


class _Run:
    """One validation pass: caches nested-shape conformance so each (node, shape) is evaluated once."""

    def __init__(self, validator: IncrementalValidator, view: PostChangeView) -> None:
        self.v = validator
        self.view = view
        self._conforms: dict[tuple[Term, ShapeId], bool] = {}

    def validate(self, focus: Term, shape: NodeShape, paths: Paths = None) -> list[ValidationResult]:
        """``focus`` against ``shape``: its node-level constraints and its property shapes on ``paths``
        (None: all)."""
        results: list[ValidationResult] = []
        if shape.constraints:
            self._check(focus, None, frozenset((focus,)), shape, results)
        values_of = self.view.values
        for ps in shape.properties:
            if paths is None or ps.path in paths:
                self._check(focus, ps.path, values_of(focus, ps.path), ps, results)
        return results

    def conforms(self, node: Term, shape_id: ShapeId) -> bool:
        key = (node, shape_id)
        if key not in self._conforms:
            self._conforms[key] = True  # recursion guard: a cycle counts as conforming
            shape = self.v.model.node_shapes[shape_id]
            # SHACL: a node conforms to a shape if validating it produces no result at all.
            self._conforms[key] = not self.validate(node, shape)
        return self._conforms[key]

    def _check(self, focus: Term, path: PathTerm, values: frozenset[Term], shape: NodeShape | PropertyShape,
               out: list[ValidationResult]) -> None:
        """Append to ``out`` one result per failed constraint (and value) of ``shape``."""
        for c in shape.constraints:
            kind, param = c.kind, c.param
            if kind == "minCount":
                if len(values) < param:
                    self._fail(out, focus, path, None, shape, c, f"Less than {param} values")
            elif kind == "maxCount":
                if len(values) > param:
                    self._fail(out, focus, path, None, shape, c, f"More than {param} values")
            elif kind == "hasValue":
                if param not in values:
                    self._fail(out, focus, path, None, shape, c, f"Missing expected value {param}")
            elif values:
                test = _VALUE_TESTS[kind]
                for value in values:
                    if not test(self, value, param):
                        self._fail(out, focus, path, value, shape, c,
                                   f"Value {value} does not satisfy sh:{kind} {param}")

    @staticmethod
    def _fail(out: list[ValidationResult], focus: Term, path: PathTerm, value: Term | None,
              shape: NodeShape | PropertyShape, c: Constraint, generic: str) -> None:
        out.append(ValidationResult(
            focus_node=focus, path=path, value=value, source_shape=shape.id,
            component=c.component, severity=shape.severity,
            message=shape.messages[0] if shape.messages else generic,
        ))


def _datatype_ok(run: _Run, v: Term, dt: NamedNode) -> bool:
    return _datatype_matches(v, dt)


def is_well_typed(value: Literal) -> bool:
    """True if the literal's lexical form is valid for its datatype (``"five"^^xsd:integer`` is not), by the
    same test sh:datatype uses."""
    return _datatype_matches(value, value.datatype) if not value.language else True


@lru_cache(maxsize=65536)
def _datatype_matches(v: Term, dt: NamedNode) -> bool:
    """pySHACL's sh:datatype test (cached: the same literals recur in every lifecycle step)."""
    if not isinstance(v, Literal):
        return False
    rule = dt.value
    if rule == _RDFS_LITERAL:
        return True
    if v.language:
        if rule == RDF_LANGSTRING:
            return True
        return False
    if v.datatype.value != rule:
        return rule == _RDFS_DATATYPE
    if rule == XSD_STRING:
        return True  # every string is a well-formed xsd:string
    if rule == _XSD_DATETIME and _RDFLIB_PARSES_DATETIME_BY_FROMISOFORMAT:
        # rdflib's own parser for xsd:dateTime, called without building an rdflib Literal (timestamps are the
        # one literal that is new in every write, so the cache above rarely helps them)
        try:
            return isinstance(datetime.fromisoformat(v.value), datetime)
        except ValueError:
            return False
    lit = to_rdflib(v)
    if getattr(lit, "ill_typed", None) is True:
        return False
    expected = _PY_TYPES.get(rule)
    if expected is None:
        return True  # as pySHACL: datatypes it cannot check pass when the IRI matches
    return isinstance(lit.value, expected)


def _class_ok(run: _Run, v: Term, cls: NamedNode) -> bool:
    return not isinstance(v, Literal) and cls in run.v.classes_of(run.view, v)


_NODE_KINDS = {
    "IRI": (NamedNode,), "BlankNode": (BlankNode,), "Literal": (Literal,),
    "BlankNodeOrIRI": (BlankNode, NamedNode), "BlankNodeOrLiteral": (BlankNode, Literal),
    "IRIOrLiteral": (NamedNode, Literal),
}


def _node_kind_ok(run: _Run, v: Term, kind: NamedNode) -> bool:
    return isinstance(v, _NODE_KINDS[kind.value.removeprefix(SH_NS)])


def _string_of(v: Term) -> str | None:
    """The string SHACL string constraints look at (None for blank nodes and triple terms, which always fail): for
    a literal its lexical form (what pySHACL's ``str(value)`` gives for every datatype), for an IRI the IRI."""
    if isinstance(v, (BlankNode, Triple)):
        return None
    return v.value


def _pattern_ok(run: _Run, v: Term, pattern: re.Pattern[str]) -> bool:
    text = _string_of(v)
    return text is not None and pattern.search(text) is not None


def _length_test(op: Callable[[int, int], bool]) -> Callable[[_Run, Term, int], bool]:
    def test(run: _Run, v: Term, bound: int) -> bool:
        text = _string_of(v)
        return text is not None and op(len(text), bound)
    return test


def _range_test(ok: Callable[[int], bool]) -> Callable[[_Run, Term, rdflib.Literal], bool]:
    """``ok(cmp)`` where cmp compares the value with the bound the way pySHACL does."""
    def test(run: _Run, v: Term, bound: rdflib.Literal) -> bool:
        cmp = _compare(v, bound)
        return cmp is not None and ok(cmp)
    return test


@lru_cache(maxsize=65536)
def _compare(v: Term, bound: rdflib.Literal) -> int | None:
    """pySHACL's comparison of a value with a range bound; None if they are not comparable (cached: round
    numbers, sizes and percentages recur)."""
    if not isinstance(v, Literal):
        return None
    lit = to_rdflib(v)
    if isinstance(lit.value, str) != isinstance(bound.value, str):
        return None
    try:
        return int(compare_literal(lit, bound))
    except (TypeError, NotImplementedError):
        return None


def _in_ok(run: _Run, v: Term, allowed: frozenset[Term]) -> bool:
    return v in allowed


def _node_ok(run: _Run, v: Term, shape_id: ShapeId) -> bool:
    return run.conforms(v, shape_id)


# Each test's third argument is its constraint's compiled parameter, whose type depends on the component.
_VALUE_TESTS: dict[str, Callable[[_Run, Term, Any], bool]] = {
    "datatype": _datatype_ok,
    "class": _class_ok,
    "nodeKind": _node_kind_ok,
    "in": _in_ok,
    "pattern": _pattern_ok,
    "minLength": _length_test(lambda n, b: n >= b),
    "maxLength": _length_test(lambda n, b: n <= b),
    # pySHACL: minExclusive passes if v > bound, i.e. compare_literal(v, bound) > 0
    "minInclusive": _range_test(lambda cmp: cmp >= 0),
    "maxInclusive": _range_test(lambda cmp: cmp <= 0),
    "minExclusive": _range_test(lambda cmp: cmp > 0),
    "maxExclusive": _range_test(lambda cmp: cmp < 0),
    "node": _node_ok,
}

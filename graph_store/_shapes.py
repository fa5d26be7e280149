"""Compile the SHACL shapes graph into plain Python objects the incremental validator walks quickly.

Only a subset of SHACL Core is supported, the one the project's shapes use; compiling a shape that uses
anything else fails loudly (:class:`UnsupportedShape`) instead of silently validating less than pySHACL would.
The differential test (``tests/test_validator_differential.py``) proves the results equal pySHACL's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import rdflib
from pyoxigraph import BlankNode, Literal, NamedNode
from rdflib.collection import Collection
from rdflib.namespace import RDF, SH

from ._convert import to_oxi
from ._report import PathTerm
from ._vocab import SH_NS

__all__ = ["Constraint", "PropertyShape", "NodeShape", "ShapesModel", "UnsupportedShape", "compile_shapes"]

# sh:parameter -> (constraint component, kind of parameter)
_COMPONENTS: dict[rdflib.URIRef, str] = {
    SH.minCount: "MinCountConstraintComponent",
    SH.maxCount: "MaxCountConstraintComponent",
    SH.datatype: "DatatypeConstraintComponent",
    SH["class"]: "ClassConstraintComponent",
    SH.nodeKind: "NodeKindConstraintComponent",
    SH["in"]: "InConstraintComponent",
    SH.hasValue: "HasValueConstraintComponent",
    SH.pattern: "PatternConstraintComponent",
    SH.minInclusive: "MinInclusiveConstraintComponent",
    SH.maxInclusive: "MaxInclusiveConstraintComponent",
    SH.minExclusive: "MinExclusiveConstraintComponent",
    SH.maxExclusive: "MaxExclusiveConstraintComponent",
    SH.minLength: "MinLengthConstraintComponent",
    SH.maxLength: "MaxLengthConstraintComponent",
    SH.node: "NodeConstraintComponent",
}
# Predicates allowed on shapes that carry no constraint.
_ANNOTATIONS = {
    RDF.type, SH.path, SH.property, SH.targetClass, SH.targetSubjectsOf, SH.message, SH.severity, SH.name,
    SH.description, SH.order, SH.group, SH.flags, SH.deactivated, rdflib.RDFS.label, rdflib.RDFS.comment,
    rdflib.URIRef("http://www.w3.org/2004/02/skos/core#note"),
}


class UnsupportedShape(ValueError):
    """A shape uses SHACL the incremental validator does not implement."""


@dataclass(frozen=True)
class Constraint:
    """One constraint parameter of a shape, e.g. ``sh:minCount 1``."""

    component: NamedNode
    kind: str
    param: Any


@dataclass
class PropertyShape:
    id: NamedNode | BlankNode
    path: PathTerm
    constraints: tuple[Constraint, ...]
    messages: tuple[str, ...]
    severity: NamedNode


@dataclass
class NodeShape:
    id: NamedNode | BlankNode
    target_classes: tuple[NamedNode, ...]
    target_subjects_of: tuple[NamedNode, ...]
    """``sh:targetSubjectsOf``: every subject of these predicates is a focus node of the shape."""
    constraints: tuple[Constraint, ...]
    properties: tuple[PropertyShape, ...]
    messages: tuple[str, ...]
    severity: NamedNode


@dataclass
class ShapesModel:
    """Every active node shape, plus indexes the validator needs to find affected focus nodes."""

    node_shapes: dict[NamedNode | BlankNode, NodeShape]
    by_target_class: dict[NamedNode, list[NodeShape]] = field(default_factory=dict)
    by_target_predicate: dict[NamedNode, list[NodeShape]] = field(default_factory=dict)
    """Shapes by the predicate of their ``sh:targetSubjectsOf``."""
    nested: set[NamedNode | BlankNode] = field(default_factory=set)
    """Shapes referenced through ``sh:node`` (their conformance is part of another shape's)."""

    def __post_init__(self) -> None:
        for shape in self.node_shapes.values():
            for cls in shape.target_classes:
                self.by_target_class.setdefault(cls, []).append(shape)
            for predicate in shape.target_subjects_of:
                self.by_target_predicate.setdefault(predicate, []).append(shape)
            for ps in shape.properties:
                for c in ps.constraints:
                    if c.kind == "node":
                        self.nested.add(c.param)


def _check_supported(g: rdflib.Graph, shape: rdflib.term.Node, allowed: set[rdflib.URIRef]) -> None:
    for p in g.predicates(shape, None):
        if p not in allowed and p not in _COMPONENTS and p not in _ANNOTATIONS:
            raise UnsupportedShape(f"shape {shape} uses {p}, which the incremental validator does not support")


def _messages(g: rdflib.Graph, shape: rdflib.term.Node) -> tuple[str, ...]:
    return tuple(sorted(str(m) for m in g.objects(shape, SH.message)))


def _severity(g: rdflib.Graph, shape: rdflib.term.Node) -> NamedNode:
    sev = g.value(shape, SH.severity)
    return NamedNode(str(sev)) if sev is not None else NamedNode(SH_NS + "Violation")


def _shape_id(shape: rdflib.term.Node) -> NamedNode | BlankNode:
    """A shape's node as a pyoxigraph term (a shape is an IRI or a blank node, never a literal)."""
    term = to_oxi(shape)
    if isinstance(term, Literal):
        raise UnsupportedShape(f"a literal ({shape}) is used as a shape")
    return term


def _constraints(g: rdflib.Graph, shape: rdflib.term.Node) -> tuple[Constraint, ...]:
    result: list[Constraint] = []
    for param, component in _COMPONENTS.items():
        for value in g.objects(shape, param):
            kind = str(param).removeprefix(SH_NS)
            arg: Any
            if kind in ("minCount", "maxCount", "minLength", "maxLength"):
                arg = int(str(value))  # a literal's lexical form (rdflib terms are strings)
            elif kind == "in":
                arg = frozenset(to_oxi(v) for v in Collection(g, value))
            elif kind == "pattern":
                flags_lit = g.value(shape, SH.flags)
                flags = 0
                if flags_lit is not None:
                    text = str(flags_lit).lower()
                    flags |= re.I if "i" in text else 0
                    flags |= re.M if "m" in text else 0
                arg = re.compile(str(value), flags)
            elif kind in ("minInclusive", "maxInclusive", "minExclusive", "maxExclusive"):
                arg = value  # kept as rdflib Literal: compared with pySHACL's literal comparison
            else:
                arg = to_oxi(value)
            result.append(Constraint(NamedNode(SH_NS + component), kind, arg))
    return tuple(result)


def _path(g: rdflib.Graph, ps: rdflib.term.Node) -> PathTerm:
    path = g.value(ps, SH.path)
    if isinstance(path, rdflib.URIRef):
        return NamedNode(str(path))
    if isinstance(path, rdflib.BNode):
        inverse = g.value(path, SH.inversePath)
        if isinstance(inverse, rdflib.URIRef) and len(list(g.predicate_objects(path))) == 1:
            return ("inverse", NamedNode(str(inverse)))
    raise UnsupportedShape(f"property shape {ps} has path {path}: only a predicate or [sh:inversePath p] is supported")


def compile_shapes(shapes: rdflib.Graph) -> ShapesModel:
    """Compile every node shape of ``shapes`` (deactivated shapes are skipped, as SHACL says)."""
    node_ids: set[rdflib.term.Node] = set(shapes.subjects(RDF.type, SH.NodeShape))
    node_ids |= set(shapes.subjects(SH.targetClass, None)) | set(shapes.subjects(SH.targetSubjectsOf, None))
    node_ids |= {o for o in shapes.objects(None, SH.node)}
    for unsupported in (SH.targetNode, SH.targetObjectsOf, SH.target):
        for s in shapes.subjects(unsupported, None):
            raise UnsupportedShape(f"shape {s} uses {unsupported}; only sh:targetClass and sh:targetSubjectsOf are "
                                   "supported")
    for s, predicate in shapes.subject_objects(SH.targetSubjectsOf):
        if not isinstance(predicate, rdflib.URIRef):
            raise UnsupportedShape(f"shape {s} has sh:targetSubjectsOf {predicate}, which is not a predicate IRI")
    property_cache: dict[rdflib.term.Node, PropertyShape] = {}

    def property_shape(ps: rdflib.term.Node) -> PropertyShape:
        if ps not in property_cache:
            _check_supported(shapes, ps, {SH.path})
            property_cache[ps] = PropertyShape(
                id=_shape_id(ps),
                path=_path(shapes, ps),
                constraints=_constraints(shapes, ps),
                messages=_messages(shapes, ps),
                severity=_severity(shapes, ps),
            )
        return property_cache[ps]

    def active(s: rdflib.term.Node) -> bool:
        flag = shapes.value(s, SH.deactivated, default=rdflib.Literal(False))
        return not (isinstance(flag, (rdflib.Literal, rdflib.term.IdentifiedNode)) and bool(flag.toPython()))

    model: dict[NamedNode | BlankNode, NodeShape] = {}
    for ns in node_ids:
        if not active(ns):
            continue
        _check_supported(shapes, ns, set())
        if shapes.value(ns, SH.path) is not None:
            continue  # a property shape used through sh:node is not a node shape
        for c in _constraints(shapes, ns):
            if c.kind in ("minCount", "maxCount"):
                raise UnsupportedShape(f"node shape {ns} uses sh:{c.kind}, which only property shapes may use")
        oxi_id = _shape_id(ns)
        model[oxi_id] = NodeShape(
            id=oxi_id,
            target_classes=tuple(NamedNode(str(c)) for c in shapes.objects(ns, SH.targetClass)),
            target_subjects_of=tuple(NamedNode(str(p)) for p in shapes.objects(ns, SH.targetSubjectsOf)),
            constraints=_constraints(shapes, ns),
            properties=tuple(property_shape(p) for p in shapes.objects(ns, SH.property) if active(p)),
            messages=_messages(shapes, ns),
            severity=_severity(shapes, ns),
        )
    return ShapesModel(model)


def iter_paths(model: ShapesModel) -> Iterable[tuple[NodeShape, PropertyShape]]:
    """Every (node shape, property shape) pair of the model."""
    for shape in model.node_shapes.values():
        for ps in shape.properties:
            yield shape, ps

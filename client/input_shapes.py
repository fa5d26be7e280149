"""A train definition's input shapes: the variables a train reads, declared as SHACL over a dataset description.

Read by the registry (refuse a bad shapes graph before anything is written), by the central service's check before
dispatch (``orchestrator/dispatch_check.py``: does each route station's published description conform?) and by the
station's re-check against its real data (``station/input_check.py``); one reading of the shapes for all three.

A shapes graph is accepted if it is SHACL (it conforms to SHACL-for-SHACL, checked with pySHACL) and each node shape
has the one form this module evaluates: ``sh:targetClass dcat:Dataset`` and property shapes, each requiring a
variable::

    [] a sh:NodeShape ; sh:targetClass dcat:Dataset ;
       sh:property [ sh:path pht:variable ; sh:qualifiedMinCount 1 ;
                     sh:qualifiedValueShape [ sh:property [ sh:path pht:variableName ; sh:hasValue "age" ] ,
                                                          [ sh:path pht:variableDatatype ; sh:hasValue xsd:integer ] ] ] .

(``pht:variableUnit`` and ``pht:codeSystem`` may be required the same way). Why one form and not all of SHACL: the
station must know which columns to check and how to parse them, which only this form says, and evaluating it is a set
lookup (50 stations in well under a millisecond; pySHACL needs milliseconds per station). ``tests/test_input_shapes.py``
shows the results equal pySHACL's. A station conforms if one of its described datasets conforms to every node shape.

>>> shapes = parse_input_shapes(EXAMPLE)
>>> [(v.name, v.datatype_name) for v in shapes.variables]
[('age', 'integer')]
>>> shapes.missing({"https://example.org/d": [DescribedVariable("age", XSD_NS + "string")]})
RequiredVariable(name='age', datatype='http://www.w3.org/2001/XMLSchema#integer', unit=None, code_system=None)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyshacl
import rdflib
from rdflib.namespace import RDF, RDFS, SH

__all__ = ["DescribedVariable", "EXAMPLE", "InputShapes", "InputShapesRefused", "MAX_INPUT_SHAPES_CHARS",
           "RequiredVariable", "XSD_NS", "parse_input_shapes"]

MAX_INPUT_SHAPES_CHARS = 64_000
XSD_NS = "http://www.w3.org/2001/XMLSchema#"
_PHT = rdflib.Namespace("https://w3id.org/pht-kg/vocab#")
_DATASET = rdflib.URIRef("http://www.w3.org/ns/dcat#Dataset")
_FIELDS = {_PHT.variableName: "name", _PHT.variableDatatype: "datatype", _PHT.variableUnit: "unit",
           _PHT.codeSystem: "code_system"}
_ANNOTATIONS = {SH.message, SH.name, SH.description, RDFS.label, RDFS.comment}
_SHACL_SHACL = Path(pyshacl.__file__).parent / "assets" / "shacl-shacl.ttl"

EXAMPLE = """@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix dcat: <http://www.w3.org/ns/dcat#> .
@prefix pht: <https://w3id.org/pht-kg/vocab#> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
<urn:inputs:age> a sh:NodeShape ; sh:targetClass dcat:Dataset ;
  sh:property [ sh:path pht:variable ; sh:qualifiedMinCount 1 ;
    sh:qualifiedValueShape [ sh:property [ sh:path pht:variableName ; sh:hasValue "age" ] ,
                                         [ sh:path pht:variableDatatype ; sh:hasValue xsd:integer ] ] ] .
"""
"""Input shapes requiring an integer variable ``age`` (docs/train-definition.md has more)."""


class InputShapesRefused(ValueError):
    """The input shapes are not SHACL, or not of the form this platform evaluates; the message is one sentence."""


@dataclass(frozen=True)
class RequiredVariable:
    """A variable the train reads: its name and, if the shape says, its datatype (XSD IRI), unit and code system."""

    name: str
    datatype: str | None = None
    unit: str | None = None
    code_system: str | None = None

    @property
    def datatype_name(self) -> str | None:
        """The datatype's XSD local name (``integer``), or None."""
        return self.datatype.removeprefix(XSD_NS) if self.datatype else None

    def text(self) -> str:
        """``age`` with what else the shape requires, e.g. ``age (xsd:integer, unit a)``."""
        more = [f"xsd:{self.datatype_name}" if self.datatype and self.datatype.startswith(XSD_NS) else self.datatype,
                f"unit {self.unit}" if self.unit else None,
                f"code system {self.code_system}" if self.code_system else None]
        details = ", ".join(m for m in more if m)
        return f"{self.name} ({details})" if details else self.name

    def met_by(self, variable: DescribedVariable) -> bool:
        """Whether ``variable`` is this one (name, and datatype, unit and code system where required)."""
        return (variable.name == self.name and self.datatype in (None, variable.datatype)
                and self.unit in (None, variable.unit) and self.code_system in (None, variable.code_system))


@dataclass(frozen=True)
class DescribedVariable:
    """A variable as a station describes it (``pht:Variable``): name, datatype IRI, unit, code system."""

    name: str
    datatype: str
    unit: str | None = None
    code_system: str | None = None


@dataclass(frozen=True)
class _Requirement:
    variable: RequiredVariable
    min_count: int


@dataclass(frozen=True)
class InputShapes:
    """The input shapes of a definition: per node shape, the variables it requires (each at least n times)."""

    shapes: tuple[tuple[_Requirement, ...], ...]

    @property
    def variables(self) -> list[RequiredVariable]:
        """Every variable some shape requires, once, by name."""
        found = {r.variable: None for shape in self.shapes for r in shape}
        return sorted(found, key=lambda v: (v.name, v.datatype or ""))

    def missing(self, datasets: Mapping[str, Sequence[DescribedVariable]]) -> RequiredVariable | None:
        """None if one of ``datasets`` (dataset IRI -> its described variables) conforms to every shape; else the
        first variable the best of them lacks (the one of the first dataset in IRI order, if they all lack one)."""
        first: RequiredVariable | None = None
        for dataset in sorted(datasets):
            lacking = self._lacking(datasets[dataset])
            if lacking is None:
                return None
            first = first or lacking
        return first or (self.variables[0] if self.variables else None)

    def _lacking(self, variables: Sequence[DescribedVariable]) -> RequiredVariable | None:
        for shape in self.shapes:
            for requirement in shape:
                if sum(1 for v in variables if requirement.variable.met_by(v)) < requirement.min_count:
                    return requirement.variable
        return None


def parse_input_shapes(text: str, *, check_shacl: bool = True) -> InputShapes:
    """The input shapes ``text`` (Turtle) declares. ``check_shacl=False`` skips SHACL-for-SHACL (about 50 ms), for
    shapes the registry checked when it stored them; the form is checked either way.

    :raises InputShapesRefused: too long, not Turtle, not SHACL (SHACL-for-SHACL), or not of the supported form.
    """
    if len(text) > MAX_INPUT_SHAPES_CHARS:
        raise InputShapesRefused(f"the input shapes are {len(text)} characters long; at most "
                                 f"{MAX_INPUT_SHAPES_CHARS} are accepted")
    graph = rdflib.Graph()
    try:
        graph.parse(data=text, format="turtle")
    except Exception as e:  # rdflib raises several unrelated types for bad Turtle
        raise InputShapesRefused(f"the input shapes are not Turtle: {' '.join(str(e).split())[:200]}") from None
    if check_shacl:
        _check_shacl(graph)
    node_shapes = sorted({*graph.subjects(RDF.type, SH.NodeShape), *graph.subjects(SH.targetClass, None)}, key=str)
    if not node_shapes:
        raise InputShapesRefused("the input shapes declare no node shape (sh:targetClass dcat:Dataset)")
    nested = set(graph.objects(None, SH.qualifiedValueShape))
    return InputShapes(tuple(_node_shape(graph, s) for s in node_shapes if s not in nested))


def _check_shacl(graph: rdflib.Graph) -> None:
    conforms, _, report = pyshacl.validate(graph, shacl_graph=_shacl_shacl(), inference="none", advanced=False)
    if not conforms:
        raise InputShapesRefused(f"the input shapes are not valid SHACL: {_first_message(str(report))}")


@functools.cache
def _shacl_shacl() -> rdflib.Graph:
    """SHACL-for-SHACL (shipped with pySHACL), read once."""
    return rdflib.Graph().parse(_SHACL_SHACL, format="turtle")


def _first_message(report: str) -> str:
    lines = [line.strip() for line in report.splitlines() if line.strip().startswith("Message:")]
    return lines[0].removeprefix("Message:").strip()[:300] if lines else "it does not conform to SHACL-for-SHACL"


def _label(node: rdflib.term.Node) -> str:
    return str(node) if isinstance(node, rdflib.URIRef) else "a blank node shape"


def _only(graph: rdflib.Graph, node: rdflib.term.Node, allowed: set[rdflib.URIRef], where: str) -> None:
    extra = sorted(str(p) for p in graph.predicates(node, None) if p not in allowed | _ANNOTATIONS | {RDF.type})
    if extra:
        raise InputShapesRefused(f"{where} uses {extra[0]}, which input shapes do not support; see "
                                 "docs/train-definition.md for the supported form")


def _node_shape(graph: rdflib.Graph, shape: rdflib.term.Node) -> tuple[_Requirement, ...]:
    where = f"the input shape {_label(shape)}"
    _only(graph, shape, {SH.targetClass, SH.property}, where)
    if set(graph.objects(shape, SH.targetClass)) != {_DATASET}:
        raise InputShapesRefused(f"{where} must target dcat:Dataset (sh:targetClass), the station's dataset")
    properties = list(graph.objects(shape, SH.property))
    if not properties:
        raise InputShapesRefused(f"{where} requires no variable (no sh:property)")
    return tuple(_requirement(graph, p, where) for p in properties)


def _requirement(graph: rdflib.Graph, ps: rdflib.term.Node, where: str) -> _Requirement:
    _only(graph, ps, {SH.path, SH.qualifiedMinCount, SH.qualifiedValueShape}, f"a property shape of {where}")
    qualified = graph.value(ps, SH.qualifiedValueShape)
    minimum = graph.value(ps, SH.qualifiedMinCount)
    if graph.value(ps, SH.path) != _PHT.variable or qualified is None or minimum is None:
        raise InputShapesRefused(f"each property shape of {where} needs sh:path pht:variable, sh:qualifiedMinCount "
                                 "and sh:qualifiedValueShape naming the variable")
    _only(graph, qualified, {SH.property}, f"the qualified value shape of {where}")
    values: dict[str, str] = {}
    for field_shape in graph.objects(qualified, SH.property):
        _only(graph, field_shape, {SH.path, SH.hasValue}, f"the qualified value shape of {where}")
        path, value = graph.value(field_shape, SH.path), graph.value(field_shape, SH.hasValue)
        if not isinstance(path, rdflib.URIRef) or path not in _FIELDS or value is None:
            raise InputShapesRefused(f"a variable in {where} is described by sh:hasValue on pht:variableName, "
                                     "pht:variableDatatype, pht:variableUnit or pht:codeSystem only")
        iri_expected = path in (_PHT.variableDatatype, _PHT.codeSystem)
        if iri_expected != isinstance(value, rdflib.URIRef):
            raise InputShapesRefused(f"a variable in {where} gives {path.n3()} a {'literal' if iri_expected else 'IRI'}"
                                     f"; it takes {'an IRI' if iri_expected else 'a literal'}")
        values[_FIELDS[path]] = str(value)
    if "name" not in values:
        raise InputShapesRefused(f"a variable in {where} has no name (sh:hasValue on pht:variableName)")
    count = minimum.toPython() if isinstance(minimum, rdflib.Literal) else None
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise InputShapesRefused(f"sh:qualifiedMinCount in {where} is a whole number of at least 1")
    return _Requirement(RequiredVariable(values["name"], values.get("datatype"), values.get("unit"),
                                         values.get("code_system")), count)

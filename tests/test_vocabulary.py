"""Checks of the vocabulary (ontology/*.ttl), the SHACL shapes (shapes/pht-shapes.ttl) and their fixtures.

Only rdflib and pySHACL are used, so these tests pin down what the shapes *mean* independently of the
project's own incremental validator (graph_store/), which must agree with pySHACL on the same fixtures.

What is checked
  * the ontology files parse, have their header, and every pht: class/property has a label and a comment;
  * every pht: term used anywhere (ontology, shapes, fixtures) is declared in the ontology;
  * the shapes graph conforms to SHACL-for-SHACL and uses only the SHACL subset the incremental
    validator implements; every property shape has an sh:name and an sh:message;
  * all valid fixtures together conform (ontology as ont_graph, no inference);
  * each invalid fixture, loaded with all valid fixtures, gives exactly one result, and it is the one named
    in its "# expect:" line; every node shape has at least one invalid fixture;
  * the lifecycle chart is consistent, and the closed value lists in the shapes match the ontology;
  * every PADME event class is mapped (skos:closeMatch) to one of ours.
See tests/fixtures/shapes/README.md for the fixture conventions.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import pyshacl
import pytest
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.collection import Collection
from rdflib.namespace import DCTERMS, OWL, RDF, RDFS, SH, SKOS, XSD

REPO = Path(__file__).resolve().parent.parent
ONTOLOGY_FILES = [REPO / "ontology" / "pht.ttl", REPO / "ontology" / "lifecycle.ttl"]
SHAPES_FILE = REPO / "shapes" / "pht-shapes.ttl"
FIXTURES = REPO / "tests" / "fixtures" / "shapes"
VALID_FILES = sorted((FIXTURES / "valid").glob("*.ttl"))
INVALID_FILES = sorted((FIXTURES / "invalid").glob("*.ttl"))

PHT = Namespace("https://w3id.org/pht-kg/vocab#")
PHTS = Namespace("https://w3id.org/pht-kg/shapes#")
PADME = Namespace("http://schema.padme-analytics.de#")
PADME1 = Namespace("https://github.com/LaurenzNeumann/PHTMetadata#")
SHACL_SHACL = Path(pyshacl.__file__).parent / "assets" / "shacl-shacl.ttl"

CHARTS = (PHT.Train, PHT.Execution)

# ---- graphs (parsed once per test session) -------------------------------------------------------------


def parse_all(files: Iterable[Path]) -> Graph:
    g = Graph()
    for f in files:
        g.parse(f, format="turtle")
    return g


@cache
def ontology() -> Graph:
    return parse_all(ONTOLOGY_FILES)


@cache
def lifecycle() -> Graph:
    return Graph().parse(ONTOLOGY_FILES[1], format="turtle")


@cache
def shapes() -> Graph:
    return Graph().parse(SHAPES_FILE, format="turtle")


@cache
def valid_data() -> Graph:
    return parse_all(VALID_FILES)


def validate(data: Graph) -> tuple[bool, Graph, str]:
    conforms, report, text = pyshacl.validate(
        data, shacl_graph=shapes(), ont_graph=ontology(), inference="none", advanced=False, allow_warnings=False
    )
    return conforms, report, text


def node_shapes() -> set[URIRef]:
    g = shapes()
    return (set(g.subjects(RDF.type, SH.NodeShape)) | set(g.subjects(SH.targetClass, None))
            | set(g.subjects(SH.targetSubjectsOf, None)))


def parent_shape(property_shape) -> object:
    """The node shape a property shape belongs to (or the shape itself if it is a node shape)."""
    return shapes().value(None, SH.property, property_shape) or property_shape


def results(report: Graph) -> list[tuple[str, str]]:
    """(node shape IRI, constraint component local name) of every result in a pySHACL report."""
    out = []
    for r in report.subjects(RDF.type, SH.ValidationResult):
        source = parent_shape(report.value(r, SH.sourceShape))
        component = str(report.value(r, SH.sourceConstraintComponent)).removeprefix(str(SH))
        out.append((str(source), component))
    return sorted(out)


def pht_terms(g: Graph) -> set[URIRef]:
    return {t for triple in g for t in triple if isinstance(t, URIRef) and t.startswith(str(PHT))}


def sh_in_values(shape: URIRef, path: URIRef) -> set:
    """The sh:in list of the property shape of ``shape`` whose sh:path is ``path``."""
    g = shapes()
    for ps in g.objects(shape, SH.property):
        if g.value(ps, SH.path) == path and g.value(ps, SH["in"]) is not None:
            return set(Collection(g, g.value(ps, SH["in"])))
    raise AssertionError(f"{shape} has no sh:in on {path}")


# ---- ontology --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ONTOLOGY_FILES, ids=lambda p: p.name)
def test_ontology_file_parses(path: Path) -> None:
    assert len(Graph().parse(path, format="turtle")) > 0


def test_ontology_header() -> None:
    g = ontology()
    header = URIRef("https://w3id.org/pht-kg/vocab")
    assert (header, RDF.type, OWL.Ontology) in g
    assert g.value(header, DCTERMS.title) is not None
    assert g.value(header, DCTERMS.description) is not None
    assert str(g.value(header, OWL.versionInfo)) == "0.1.0"


def declared_terms() -> set[URIRef]:
    return {s for s in ontology().subjects(RDF.type, None) if isinstance(s, URIRef) and s.startswith(str(PHT))}


def test_every_class_and_property_is_documented() -> None:
    g = ontology()
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty, OWL.AnnotationProperty, RDF.Property, RDFS.Class)
    terms = {s for k in kinds for s in g.subjects(RDF.type, k) if isinstance(s, URIRef) and s.startswith(str(PHT))}
    assert len(terms) > 50
    undocumented = sorted(t for t in terms if g.value(t, RDFS.label) is None or g.value(t, RDFS.comment) is None)
    assert not undocumented, f"classes/properties without rdfs:label or rdfs:comment: {undocumented}"


def test_every_individual_has_a_label() -> None:
    g = ontology()
    unlabelled = sorted(s for s in g.subjects(RDF.type, OWL.NamedIndividual) if g.value(s, RDFS.label) is None)
    assert not unlabelled


@pytest.mark.parametrize(
    "name", ["ontology", "shapes", "valid fixtures", "invalid fixtures"],
)
def test_every_pht_term_is_declared(name: str) -> None:
    if name == "ontology":
        used = pht_terms(ontology())
    elif name == "shapes":
        used = pht_terms(shapes())
    elif name == "valid fixtures":
        used = pht_terms(valid_data())
    else:
        used = set()
        for f in INVALID_FILES:
            used |= pht_terms(Graph().parse(f, format="turtle"))
    undeclared = sorted(used - declared_terms())
    assert not undeclared, f"pht: terms used in {name} but not declared in ontology/*.ttl: {undeclared}"


def test_padme_event_types_are_all_mapped() -> None:
    """Nothing PADME records is lost: each PADME event class/property has a counterpart (skos:closeMatch)."""
    padme_terms = [
        PADME.StartedTransmissionEvent, PADME.FinishedTransmissionEvent, PADME.StartedRunningEvent,
        PADME.FinishedRunningEvent, PADME.EntityRejectedExecutionEvent, PADME.MemoryUsageReportEvent,
        PADME.CPUUsageReportEvent, PADME.NetworkUsageReportEvent, PADME.StationLogEvent,
        PADME.TrainIstantiatedEvent, PADME.eventTimestamp, PADME.eventEmittedByInformationalAuthority,
        PADME.eventAssociatedWithTrain, PADME.success, PADME.value, PADME.rejectMessageHumanReadable,
        PADME.logMessage,
        PADME1.ExecutionEvent, PADME1.StartedTransmissionEvent, PADME1.FinishedTransmissionEvent,
        PADME1.StartedRunningEvent, PADME1.FinishedRunningAtStationEvent, PADME1.CPUUsageReportEvent,
        PADME1.MemoryUsageReportEvent, PADME1.StationErrorEvent, PADME1.StationLogEvent,
        PADME1.StationRejectedEvent, PADME1.TrainIstantiatedExecutionEvent,
    ]
    unmapped = [t for t in padme_terms if not set(ontology().subjects(SKOS.closeMatch, t))]
    assert not unmapped, f"PADME terms without a pht: counterpart: {unmapped}"


def test_every_event_class_has_a_valid_example() -> None:
    g = ontology()
    abstract = {PHT.Event, PHT.UsageSample}
    event_classes = set(g.transitive_subjects(RDFS.subClassOf, PHT.Event)) - abstract
    instantiated = set(valid_data().objects(None, RDF.type))
    assert len(event_classes) == 12
    missing = sorted(c for c in event_classes if c not in instantiated)
    assert not missing, f"event classes without an instance in the valid fixtures: {missing}"


# ---- shapes graph ---------------------------------------------------------------------------------------


def test_shapes_conform_to_shacl_shacl() -> None:
    conforms, _, text = pyshacl.validate(shapes(), shacl_graph=Graph().parse(SHACL_SHACL, format="turtle"))
    assert conforms, text


_CONSTRAINTS = {SH.minCount, SH.maxCount, SH.datatype, SH["class"], SH.nodeKind, SH["in"], SH.hasValue,
                SH.pattern, SH.flags, SH.minInclusive, SH.maxInclusive, SH.minExclusive, SH.maxExclusive,
                SH.minLength, SH.maxLength, SH.node}
_ANNOTATIONS = {SH.message, SH.severity, SH.name, SH.description, SH.order, SH.group, RDFS.label, RDFS.comment}


def test_shapes_use_only_the_supported_subset() -> None:
    g = shapes()
    problems: list[str] = []
    for ns in node_shapes():
        if not isinstance(ns, URIRef) or not ns.startswith(str(PHTS)):
            problems.append(f"node shape {ns!r} is not an IRI in the phts: namespace")
        if not list(g.objects(ns, SH.targetClass)) and not list(g.objects(ns, SH.targetSubjectsOf)):
            problems.append(f"{ns} has neither sh:targetClass nor sh:targetSubjectsOf")
        allowed = {RDF.type, SH.targetClass, SH.targetSubjectsOf, SH.property} | _ANNOTATIONS
        problems += [f"{ns} uses {p}" for p in set(g.predicates(ns, None)) - allowed]
    for ps in set(g.objects(None, SH.property)):
        allowed = {SH.path} | _CONSTRAINTS | _ANNOTATIONS
        problems += [f"property shape of {parent_shape(ps)} uses {p}" for p in set(g.predicates(ps, None)) - allowed]
        path = g.value(ps, SH.path)
        if isinstance(path, BNode):
            inverse = g.value(path, SH.inversePath)
            if not isinstance(inverse, URIRef) or set(g.predicates(path, None)) != {SH.inversePath}:
                problems.append(f"property shape of {parent_shape(ps)} has a path other than [ sh:inversePath <p> ]")
        elif not isinstance(path, URIRef):
            problems.append(f"property shape of {parent_shape(ps)} has no predicate path")
        for target in g.objects(ps, SH.node):
            if target not in node_shapes() or not isinstance(target, URIRef):
                problems.append(f"sh:node {target} of {parent_shape(ps)} is not a named node shape")
    # shapes-graph-wide: nothing outside the subset anywhere
    forbidden = {SH.closed, SH.ignoredProperties, SH.sparql, SH["or"], SH["and"], SH["not"], SH.xone,
                 SH.targetNode, SH.targetObjectsOf, SH.target, SH.qualifiedValueShape,
                 SH.alternativePath, SH.zeroOrMorePath, SH.oneOrMorePath, SH.zeroOrOnePath, SH.equals,
                 SH.disjoint, SH.lessThan, SH.lessThanOrEquals, SH.uniqueLang, SH.languageIn}
    problems += [f"{s} uses {p}" for s, p, _ in g if p in forbidden]
    assert not problems, "\n".join(problems)


def test_every_property_shape_has_a_name_and_a_message() -> None:
    g = shapes()
    missing = []
    for ns in sorted(node_shapes()):
        props = list(g.objects(ns, SH.property))
        assert props, f"{ns} has no property shapes"
        for ps in props:
            if g.value(ps, SH.message) is None or g.value(ps, SH.name) is None:
                missing.append(f"{ns} / {g.value(ps, SH.path)}")
    assert not missing, f"property shapes without sh:message or sh:name: {missing}"


def test_closed_value_lists_match_the_ontology() -> None:
    """Every sh:in list of enumeration members equals the owl:oneOf of the enumeration class."""
    g = ontology()

    def one_of(cls: URIRef) -> set:
        return set(Collection(g, g.value(cls, OWL.oneOf)))

    assert sh_in_values(PHTS.TrainDefinitionShape, PHT.mode) == one_of(PHT.ExecutionMode)
    assert sh_in_values(PHTS.StationShape, PHT.runtime) == one_of(PHT.Runtime)
    assert sh_in_values(PHTS.FilterRuleShape, PHT.effect) == one_of(PHT.FilterEffect)
    assert sh_in_values(PHTS.FilterPolicyShape, PHT.defaultEffect) == one_of(PHT.FilterEffect)
    assert sh_in_values(PHTS.FilterRuleShape, PHT.coarsen) == one_of(PHT.Coarsening)
    assert sh_in_values(PHTS.NetworkUsageSampleShape, PHT.direction) == one_of(PHT.NetworkDirection)
    assert sh_in_values(PHTS.StationPolicyShape, PHT.sharesFailureDetail) == one_of(PHT.FailureDetail)
    for cls in (PHT.ExecutionMode, PHT.Runtime, PHT.FilterEffect, PHT.Coarsening, PHT.NetworkDirection,
                PHT.FailureDetail):
        assert set(g.subjects(RDF.type, cls)) == one_of(cls), f"owl:oneOf of {cls} differs from its individuals"


def test_state_lists_in_shapes_match_the_lifecycle_chart() -> None:
    g = lifecycle()
    all_states = set(g.subjects(RDF.type, PHT.State))
    assert sh_in_values(PHTS.TrainShape, PHT.state) == set(g.subjects(PHT.appliesTo, PHT.Train)) & all_states
    assert sh_in_values(PHTS.ExecutionShape, PHT.state) == set(g.subjects(PHT.appliesTo, PHT.Execution)) & all_states
    assert sh_in_values(PHTS.StateChangeEventShape, PHT.fromState) == all_states
    assert sh_in_values(PHTS.StateChangeEventShape, PHT.toState) == all_states
    assert sh_in_values(PHTS.StateChangeEventShape, PHT.actingRole) == set(g.subjects(RDF.type, PHT.Role))


# ---- fixtures -------------------------------------------------------------------------------------------


def test_valid_fixtures_conform() -> None:
    assert VALID_FILES, "no valid fixtures found"
    conforms, _, text = validate(valid_data())
    assert conforms, text


def test_valid_fixtures_conform_with_meta_shacl() -> None:
    """Same as above, with pySHACL first checking the shapes graph against SHACL-for-SHACL."""
    conforms, _, text = pyshacl.validate(valid_data(), shacl_graph=shapes(), ont_graph=ontology(),
                                         inference="none", meta_shacl=True)
    assert conforms, text


def test_every_target_class_has_a_valid_instance() -> None:
    """At least one conforming example per shape (lifecycle shapes are exercised by lifecycle.ttl itself)."""
    data = valid_data() + ontology()
    subclasses_of = {c: {c} | set(data.transitive_subjects(RDFS.subClassOf, c)) for c in set(shapes().objects(None, SH.targetClass))}
    missing = []
    for ns in node_shapes():
        classes = set(shapes().objects(ns, SH.targetClass))
        predicates = set(shapes().objects(ns, SH.targetSubjectsOf))
        if not any(data.value(None, RDF.type, sub) for c in classes for sub in subclasses_of[c]) \
                and not any(True for p in predicates for _ in data.triples((None, URIRef(p), None))):
            missing.append(ns)
    assert not missing, f"node shapes without any valid example: {missing}"


_EXPECT = re.compile(r"^# expect: <?(\S+?)>? (\w+ConstraintComponent)\s*$")


def expectation(path: Path) -> tuple[str, str]:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    m = _EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# expect: <shape IRI> <Component>', got {first!r}"
    shape = m.group(1)
    if shape.startswith("phts:"):
        shape = str(PHTS) + shape.removeprefix("phts:")
    return shape, m.group(2)


def test_invalid_fixtures_cover_every_shape() -> None:
    expected_shapes = {expectation(f)[0] for f in INVALID_FILES}
    uncovered = sorted(str(s) for s in node_shapes() if str(s) not in expected_shapes)
    assert not uncovered, f"node shapes without an invalid fixture: {uncovered}"
    unknown = sorted(expected_shapes - {str(s) for s in node_shapes()})
    assert not unknown, f"invalid fixtures expecting shapes that do not exist: {unknown}"


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.stem)
def test_invalid_fixture_fails_exactly_as_expected(path: Path) -> None:
    expected = expectation(path)
    data = Graph()
    data += valid_data()
    data.parse(path, format="turtle")
    conforms, report, text = validate(data)
    assert not conforms, f"{path.name} unexpectedly conforms"
    assert results(report) == [expected], f"{path.name}: expected only {expected}, got:\n{text}"


# ---- lifecycle chart -------------------------------------------------------------------------------------


def chart(cls: URIRef) -> tuple[set, list[tuple]]:
    """States and (transition, from, to) of the chart of ``cls`` (pht:Train or pht:Execution)."""
    g = lifecycle()
    states = {s for s in g.subjects(PHT.appliesTo, cls) if (s, RDF.type, PHT.State) in g}
    transitions = [(t, g.value(t, PHT["from"]), g.value(t, PHT.to))
                   for t in g.subjects(RDF.type, PHT.Transition) if (t, PHT.appliesTo, cls) in g]
    return states, transitions


def test_lifecycle_transitions_are_well_formed() -> None:
    g = lifecycle()
    states = set(g.subjects(RDF.type, PHT.State))
    roles = set(g.subjects(RDF.type, PHT.Role))
    assert roles == {PHT.Researcher, PHT.StationRole, PHT.StationAdmin, PHT.Operator}
    problems = []
    for t in g.subjects(RDF.type, PHT.Transition):
        charts = set(g.objects(t, PHT.appliesTo))
        if len(charts) != 1 or not charts <= set(CHARTS):
            problems.append(f"{t} must apply to exactly one of pht:Train / pht:Execution, has {charts}")
            continue
        (cls,) = charts
        for p in (PHT["from"], PHT.to):
            values = set(g.objects(t, p))
            if len(values) != 1 or not values <= states:
                problems.append(f"{t} {p} must be one declared pht:State, is {values}")
            elif (next(iter(values)), PHT.appliesTo, cls) not in g:
                problems.append(f"{t} {p} {values} is not a state of the {cls} chart")
        fired = set(g.objects(t, PHT.firedBy))
        if not fired or not fired <= roles:
            problems.append(f"{t} must be fired by declared roles, is {fired}")
        if g.value(t, RDFS.label) is None:
            problems.append(f"{t} has no rdfs:label")
    for s in states:
        if len(set(g.objects(s, PHT.isTerminal))) != 1:
            problems.append(f"{s} needs exactly one pht:isTerminal")
    assert not problems, "\n".join(problems)


def test_lifecycle_has_the_required_states() -> None:
    g = lifecycle()
    tokens = {str(g.value(s, DCTERMS.identifier)) for s in g.subjects(RDF.type, PHT.State)}
    assert tokens == {"submitted", "queued", "waiting-for-approval", "approved", "rejected", "pulling", "running",
                      "output-under-review", "released", "withheld", "finished", "failed", "cancelled", "aggregating"}


@pytest.mark.parametrize("cls", CHARTS, ids=lambda c: c.fragment)
def test_lifecycle_every_state_is_reachable(cls: URIRef) -> None:
    states, transitions = chart(cls)
    initial = {s for s in lifecycle().subjects(PHT.initialStateOf, cls)}
    assert len(initial) == 1 and initial <= states, f"{cls} chart needs exactly one initial state, has {initial}"
    seen, todo = set(initial), deque(initial)
    while todo:
        s = todo.popleft()
        for _, frm, to in transitions:
            if frm == s and to not in seen:
                seen.add(to)
                todo.append(to)
    assert seen == states, f"unreachable states in the {cls} chart: {sorted(states - seen)}"


@pytest.mark.parametrize("cls", CHARTS, ids=lambda c: c.fragment)
def test_lifecycle_terminal_states_have_no_exit(cls: URIRef) -> None:
    g = lifecycle()
    states, transitions = chart(cls)
    terminal = {s for s in states if g.value(s, PHT.isTerminal) == Literal(True)}
    assert {PHT.Failed, PHT.Cancelled} <= terminal
    leaving = sorted((t, frm) for t, frm, _ in transitions if frm in terminal)
    assert not leaving, f"transitions leaving terminal states: {leaving}"
    # and every non-terminal state has a way out (no dead ends)
    dead = sorted(s for s in states - terminal if not any(frm == s for _, frm, _ in transitions))
    assert not dead


@pytest.mark.parametrize("cls", CHARTS, ids=lambda c: c.fragment)
def test_lifecycle_every_active_state_can_fail_and_be_cancelled(cls: URIRef) -> None:
    g = lifecycle()
    states, transitions = chart(cls)
    active = {s for s in states if g.value(s, PHT.isTerminal) == Literal(False)}
    no_fail = sorted(s for s in active if not any(frm == s and to == PHT.Failed for _, frm, to in transitions))
    assert not no_fail, f"active states of the {cls} chart without a transition to pht:Failed: {no_fail}"
    no_cancel = sorted(
        s for s in active
        if not any(frm == s and to == PHT.Cancelled and (t, PHT.firedBy, PHT.Researcher) in g
                   for t, frm, to in transitions)
    )
    assert not no_cancel, f"active states of the {cls} chart the requester cannot cancel: {no_cancel}"


def test_datatype_constant_is_xsd() -> None:
    """Parameter datatypes are XSD IRIs (guards against typos such as xsd:int in the shapes)."""
    values = sh_in_values(PHTS.ParameterShape, PHT.datatype)
    assert values == {XSD.string, XSD.integer, XSD.decimal, XSD.boolean, XSD.anyURI, XSD.dateTime}

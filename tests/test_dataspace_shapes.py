"""The dataspace shapes (shapes/dataspace-shapes.ttl) on their fixtures: the valid connector graph conforms,
each invalid file adds one defect and gets exactly the one result it announces, from pySHACL and from the
store's own validator alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pyoxigraph import Quad, RdfFormat, parse
from pyshacl import validate
from rdflib import OWL, RDFS, Graph, URIRef
from rdflib.collection import Collection
from rdflib.namespace import RDF, SH

from dataspace import DATASPACE_GRAPH
from dataspace._chart import chart
from graph_store import PHT, ChangeSet, EmbeddedStore, ValidationFailed

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "dataspace"
INVALID = sorted((FIXTURES / "invalid").glob("*.ttl"))
PHTS = "https://w3id.org/pht-kg/shapes#"
SHAPES = Graph().parse(REPO / "shapes" / "dataspace-shapes.ttl")
ONTOLOGY = Graph()
for name in ("pht.ttl", "lifecycle.ttl", "dataspace.ttl"):
    ONTOLOGY.parse(REPO / "ontology" / name)


def expectation(path: Path) -> tuple[str, str]:
    m = re.match(r"# expect: phts:(\w+) (\w+)", path.read_text().splitlines()[0])
    assert m, path.name
    return PHTS + m.group(1), m.group(2)


def pyshacl_results(data: Graph) -> list[tuple[str, str]]:
    conforms, report, _ = validate(data, shacl_graph=SHAPES, ont_graph=ONTOLOGY, inference="none")
    out = []
    for r in report.subjects(RDF.type, SH.ValidationResult):
        shape = report.value(r, SH.sourceShape)
        owner = next(iter(SHAPES.subjects(SH.property, shape)), shape)
        out.append((str(owner), str(report.value(r, SH.sourceConstraintComponent)).removeprefix(str(SH))))
    return out


def quads(path: Path) -> list[Quad]:
    return [Quad(t.subject, t.predicate, t.object, DATASPACE_GRAPH)
            for t in parse(path=str(path), format=RdfFormat.TURTLE)]


@pytest.fixture(scope="module")
def store() -> EmbeddedStore:
    s = EmbeddedStore(None)
    s.load_vocabulary()
    s.apply(ChangeSet(insert=quads(FIXTURES / "valid.ttl")))  # the store's validator accepts the valid graph
    return s


def test_the_valid_graph_conforms_and_has_every_class() -> None:
    data = Graph().parse(FIXTURES / "valid.ttl")
    assert pyshacl_results(data) == []
    classes = set(SHAPES.objects(None, SH.targetClass))
    assert classes <= set(data.objects(None, RDF.type))


def test_every_shape_has_an_invalid_fixture() -> None:
    assert {expectation(p)[0] for p in INVALID} == {str(s) for s in SHAPES.subjects(RDF.type, SH.NodeShape)}


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_fails_exactly_as_expected(path: Path, store: EmbeddedStore) -> None:
    expected = expectation(path)
    data = Graph().parse(FIXTURES / "valid.ttl")
    data.parse(path)
    assert pyshacl_results(data) == [expected]
    with pytest.raises(ValidationFailed) as refused:
        store.apply(ChangeSet(insert=quads(path)))
    components = [str(r.component).strip("<>").removeprefix(str(SH)) for r in refused.value.report.results]
    assert components == [expected[1]]



# -- the vocabulary and the charts (ontology/dataspace.ttl) -------------------------------------------------------

DATASPACE = Graph().parse(REPO / "ontology" / "dataspace.ttl")
PHT_NS = "https://w3id.org/pht-kg/vocab#"


def test_every_dataspace_term_is_documented_and_every_used_term_declared() -> None:
    kinds = (OWL.Class, OWL.ObjectProperty, OWL.DatatypeProperty)
    terms = {s for k in kinds for s in DATASPACE.subjects(RDF.type, k)}
    assert all(DATASPACE.value(t, RDFS.label) and DATASPACE.value(t, RDFS.comment) for t in terms)
    assert all(DATASPACE.value(s, RDFS.label) for s in DATASPACE.subjects(RDF.type, OWL.NamedIndividual))
    used = {t for triple in SHAPES for t in triple if isinstance(t, URIRef) and t.startswith(PHT_NS)}
    used |= {t for triple in Graph().parse(FIXTURES / "valid.ttl") for t in triple
             if isinstance(t, URIRef) and t.startswith(PHT_NS)}
    declared = {s for s in ONTOLOGY.subjects(RDF.type, None) if isinstance(s, URIRef)}
    assert used - declared == set()


@pytest.mark.parametrize(("process", "finals"), [
    (PHT.ContractNegotiation, {"FINALIZED", "TERMINATED"}), (PHT.TransferProcess, {"COMPLETED", "TERMINATED"})])
def test_each_chart_is_well_formed(process, finals: set[str]) -> None:
    c = chart()
    states = {s for (cls, _), s in c.states.items() if cls == process}
    edges = {(frm, to) for (cls, frm, _), to in c.transitions.items() if cls == process}
    assert all(frm in states and to in states for frm, to in edges)
    reached, frontier = {c.initial[process]}, [c.initial[process]]
    while frontier:
        state = frontier.pop()
        for frm, to in edges:
            if frm == state and to not in reached:
                reached.add(to)
                frontier.append(to)
    assert reached == states  # every state reachable from the first
    for state in states:
        name = c.names[state]
        outgoing = {to for frm, to in edges if frm == state}
        assert (not outgoing) == (name in finals), name  # only the final states have no way out
        if name not in finals:
            assert c.state(process, "TERMINATED") in outgoing, name  # every other state can be terminated
    # the shapes' state lists are exactly the chart's states
    shape = {PHT.ContractNegotiation: "ContractNegotiationShape", PHT.TransferProcess: "TransferProcessShape"}
    node = URIRef(PHTS + shape[process])
    listed = next(set(Collection(SHAPES, SHAPES.value(ps, SH["in"]))) for ps in SHAPES.objects(node, SH.property)
                  if SHAPES.value(ps, SH.path) == URIRef(PHT_NS + "protocolState"))
    assert {str(s) for s in listed} == {s.value for s in states}

"""Input shapes (client/input_shapes.py) and the check before dispatch (orchestrator/dispatch_check.py).

Fast tests on the embedded store; the end-to-end path through real stations is tests/test_will_it_run.py."""

from __future__ import annotations

from pathlib import Path

import pyshacl
import pytest
import rdflib
from principals import ALICE, DIGEST, KEY, OPERATOR
from pyoxigraph import Literal, NamedNode, Quad, Triple

from client import WorkItem

from client.input_shapes import (
    EXAMPLE,
    DescribedVariable,
    InputShapesRefused,
    RequiredVariable,
    parse_input_shapes,
)
from graph_store import (
    CENTRAL_GRAPH,
    PHT,
    RDF_TYPE,
    XSD,
    ChangeSet,
    EmbeddedStore,
    GraphStore,
    station_graph,
    validate_unstored,
)
from orchestrator.errors import LifecycleError
from orchestrator.lifecycle import InputsLacking, Lifecycle
from orchestrator.registry import DatasetSpec, DefinitionSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings
from station.input_check import describe_dataset, input_problem

X = "http://www.w3.org/2001/XMLSchema#"


def shapes_for(*variables: tuple[str, str]) -> str:
    """Input shapes requiring each (name, xsd local name), one node shape per variable."""
    head = ("@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix dcat: <http://www.w3.org/ns/dcat#> .\n"
            "@prefix pht: <https://w3id.org/pht-kg/vocab#> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n")
    return head + "".join(
        f"<urn:inputs:{name}> a sh:NodeShape ; sh:targetClass dcat:Dataset ; sh:property [ sh:path pht:variable ; "
        f"sh:qualifiedMinCount 1 ; sh:qualifiedValueShape [ sh:property [ sh:path pht:variableName ; "
        f'sh:hasValue "{name}" ] , [ sh:path pht:variableDatatype ; sh:hasValue xsd:{dt} ] ] ] .\n'
        for name, dt in variables)


def test_the_example_requires_an_integer_age() -> None:
    shapes = parse_input_shapes(EXAMPLE)
    assert shapes.variables == [RequiredVariable("age", X + "integer")]
    assert shapes.missing({"d": [DescribedVariable("age", X + "integer")]}) is None
    assert shapes.missing({"d": [DescribedVariable("age", X + "string")]}) == RequiredVariable("age", X + "integer")
    assert shapes.missing({}) == RequiredVariable("age", X + "integer")
    # one conforming dataset of the station's is enough
    assert shapes.missing({"a": [], "b": [DescribedVariable("age", X + "integer")]}) is None


@pytest.mark.parametrize("text, says", [
    ("this is not turtle", "not Turtle"),
    ("@prefix sh: <http://www.w3.org/ns/shacl#> . <urn:s> a sh:NodeShape ; sh:minCount \"x\" .", "not valid SHACL"),
    (EXAMPLE.replace("sh:qualifiedMinCount 1", 'sh:qualifiedMinCount "one"'), "not valid SHACL"),
    (EXAMPLE.replace("dcat:Dataset", "dcat:Catalog"), "must target dcat:Dataset"),
    (EXAMPLE.replace('sh:hasValue "age"', 'sh:in ( "age" )'), "do not support"),
    (EXAMPLE.replace("sh:hasValue xsd:integer", 'sh:hasValue "integer"'), "takes an IRI"),
    ("@prefix sh: <http://www.w3.org/ns/shacl#> .", "no node shape"),
    (EXAMPLE.replace("sh:qualifiedMinCount 1", "sh:qualifiedMinCount 0"), "at least 1"),
    ("#" * 64_001, "at most 64000"),
])
def test_bad_input_shapes_are_refused_with_one_sentence(text: str, says: str) -> None:
    with pytest.raises(InputShapesRefused, match=says) as refused:
        parse_input_shapes(text)
    assert "\n" not in str(refused.value)
    if "SHACL" not in says:  # the stored shapes are read again without SHACL-for-SHACL: the form check still holds
        with pytest.raises(InputShapesRefused, match=says):
            parse_input_shapes(text, check_shacl=False)


def description(dataset: str, variables: list[tuple[str, str]]) -> rdflib.Graph:
    g = rdflib.Graph()
    d = rdflib.URIRef(dataset)
    g.add((d, rdflib.RDF.type, rdflib.URIRef("http://www.w3.org/ns/dcat#Dataset")))
    for name, dt in variables:
        v = rdflib.URIRef(f"{dataset}/variables/{name}")
        g.add((d, rdflib.URIRef(str(PHT.variable.value)), v))
        g.add((v, rdflib.URIRef(PHT.variableName.value), rdflib.Literal(name)))
        g.add((v, rdflib.URIRef(PHT.variableDatatype.value), rdflib.URIRef(X + dt)))
    return g


@pytest.mark.parametrize("variables", [
    [("age", "integer"), ("sex", "string")], [("age", "string"), ("sex", "string")], [("sex", "string")], [],
    [("age", "integer")], [("Age", "integer"), ("sex", "string")]])
def test_the_evaluation_equals_pyshacls(variables: list[tuple[str, str]]) -> None:
    """The set lookup gives pySHACL's answer on the supported form (a dataset conforms or not)."""
    text = shapes_for(("age", "integer"), ("sex", "string"))
    conforms, _, _ = pyshacl.validate(description("https://example.org/d", variables),
                                      shacl_graph=rdflib.Graph().parse(data=text, format="turtle"), inference="none")
    ours = parse_input_shapes(text).missing(
        {"https://example.org/d": [DescribedVariable(n, X + dt) for n, dt in variables]}) is None
    assert ours == conforms


def publish(store: GraphStore, station: str, dataset: NamedNode, variables: list[tuple[str, str]]) -> None:
    """What a station's signed MPU batch writes into its own graph (test_will_it_run.py pushes it for real)."""
    g = station_graph(station)
    quads = []
    for name, dt in variables:
        v = NamedNode(f"{dataset.value}/variables/{name}")
        quads += [Quad(dataset, PHT.variable, v, g), Quad(v, RDF_TYPE, PHT.Variable, g),
                  Quad(v, PHT.variableName, Literal(name), g), Quad(v, PHT.variableDatatype, XSD[dt], g)]
    store.apply(ChangeSet(insert=quads))


@pytest.fixture()
def world() -> tuple[Lifecycle, Registry]:
    store = EmbeddedStore()
    store.load_vocabulary()
    life = Lifecycle(store, Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False))
    reg = Registry(store, life.iris)
    for sid in ("aachen", "leipzig"):
        reg.station(OPERATOR, StationSpec(sid, sid, sid, [KEY]))
        reg.dataset(OPERATOR, DatasetSpec(f"{sid}-data", f"{sid} data", sid))
    publish(store, "aachen", life.iris.dataset("aachen-data"), [("age", "integer"), ("sex", "string")])
    publish(store, "leipzig", life.iris.dataset("leipzig-data"), [("sex", "string")])
    return life, reg


def definition(ident: str, route: list[str], inputs: str | None) -> DefinitionSpec:
    return DefinitionSpec(ident, "count", "pht/count", DIGEST, "incremental", route, inputs=inputs)


def test_a_route_station_lacking_a_variable_fails_the_train_before_dispatch(world: tuple[Lifecycle, Registry]) -> None:
    life, reg = world
    reg.definition(ALICE, definition("ages", ["aachen", "leipzig"], shapes_for(("age", "integer"))))
    with pytest.raises(InputsLacking, match=r"station leipzig lacks variable age \(xsd:integer\) \(required by the "
                                            r"train's input shape\)") as refused:
        life.submit(ALICE, definition_id="ages", parameters={})
    train_id = str(refused.value).split()[1]
    (row,) = life._train_row(life.iris.train(train_id))
    assert row["state"] == PHT.Failed  # recorded: the state and the event with the reason
    assert not list(life.store.run_query("train_executions", train=life.iris.train(train_id)))  # nothing dispatched
    reasons = [q.object.value for q in life.store.quads(None, PHT.reason, None, CENTRAL_GRAPH)]
    assert any("station leipzig lacks variable age" in r for r in reasons)


def test_a_route_whose_stations_have_the_variables_is_dispatched(world: tuple[Lifecycle, Registry]) -> None:
    life, reg = world
    reg.definition(ALICE, definition("sexes", ["aachen", "leipzig"], shapes_for(("sex", "string"))))
    train_id = life.submit(ALICE, definition_id="sexes", parameters={})
    assert len(list(life.store.run_query("train_executions", train=life.iris.train(train_id)))) == 1


def test_a_variable_in_another_stations_graph_does_not_count(world: tuple[Lifecycle, Registry]) -> None:
    """Only the station's own graph describes its data: aachen's graph naming leipzig's dataset is not read."""
    life, reg = world
    publish(life.store, "aachen", life.iris.dataset("leipzig-data"), [("age", "integer")])
    reg.definition(ALICE, definition("ages", ["leipzig"], shapes_for(("age", "integer"))))
    with pytest.raises(InputsLacking, match="station leipzig lacks variable age"):
        life.submit(ALICE, definition_id="ages", parameters={})


def test_invalid_input_shapes_are_refused_at_registration_and_nothing_is_written(
        world: tuple[Lifecycle, Registry]) -> None:
    life, reg = world
    before = len(life.store.quads(None, None, None, CENTRAL_GRAPH))
    with pytest.raises(LifecycleError, match="the input shapes are not valid SHACL.*nothing was registered"):
        reg.definition(ALICE, definition("bad", ["aachen"], EXAMPLE.replace("sh:qualifiedMinCount 1",
                                                                            'sh:qualifiedMinCount "x"')))
    assert len(life.store.quads(None, None, None, CENTRAL_GRAPH)) == before


def test_a_station_describes_its_columns_with_the_narrowest_datatype(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("age,weight,smoker,seen,sex\n41,70.5,true,2026-01-02,F\n52,81,false,2025-12-31,M\n")
    (tmp_path / "b.csv").write_text("code\nC50.9\n")
    assert describe_dataset(tmp_path) == [
        {"name": "age", "datatype": "integer"}, {"name": "weight", "datatype": "decimal"},
        {"name": "smoker", "datatype": "boolean"}, {"name": "seen", "datatype": "date"},
        {"name": "sex", "datatype": "string"}, {"name": "code", "datatype": "string"}]


def test_a_once_station_publishes_its_description_at_first_and_after_a_change_only(tmp_path: Path) -> None:
    """``pht station run --once`` (cron) publishes like ``run()`` does at its start, but not again at every tick."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from station.agent import StationAgent
    from station.objects import LocalObjectStore
    from station.settings import StationSettings

    posted: list[bytes] = []

    class Mpu(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            posted.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    class NoRuntime:
        name = "none"

        def close(self) -> None:
            pass

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("age\n41\n")
    mpu = ThreadingHTTPServer(("127.0.0.1", 0), Mpu)
    threading.Thread(target=mpu.serve_forever, daemon=True).start()
    settings = StationSettings(station_id="aachen", central_url="http://127.0.0.1:9", token="t",
                               datasets={"d": tmp_path / "data"}, state_dir=tmp_path / "state",
                               objects_url=f"file://{tmp_path / 'objects'}",
                               mpu_url=f"http://127.0.0.1:{mpu.server_address[1]}")
    agent = StationAgent(settings, runtime=NoRuntime(), objects=LocalObjectStore(tmp_path / "objects"))  # type: ignore[arg-type]
    try:
        assert agent.publish_description(unless_unchanged=True) and len(posted) == 1  # the first tick publishes
        assert agent.publish_description(unless_unchanged=True) and len(posted) == 1  # an unchanged one is not sent
        (tmp_path / "data" / "t.csv").write_text("age,sex\n41,F\n")
        assert agent.publish_description(unless_unchanged=True) and len(posted) == 2  # a new column is
        assert b'"sex"' in posted[-1]
        assert agent.publish_description() and len(posted) == 3  # run() always publishes at its start
    finally:
        agent.close()
        mpu.shutdown()
        mpu.server_close()


def work_with(shapes: str) -> WorkItem:
    """A work item as far as the re-check reads it: a station stop and the signed request's definition."""
    triple = Triple(NamedNode("https://pht.example.org/id/definitions/d"), PHT.inputShapes, Literal(shapes))
    return WorkItem.model_construct(stop=0, request=f"{triple} .\n")


@pytest.mark.parametrize("table, says", [
    ("age,sex\n41,F\n52,M\n", None),
    ("sex\nF\n", "station s's data lacks variable age (xsd:integer) (required by the train's input shape); the "
                 "train did not run"),
    ("age,sex\n41,F\nforty,M\n", "station s's variable age in t.csv has values that are not xsd:integer "
                                  "(required by the train's input shape); the train did not run"),
])
def test_the_station_re_checks_its_real_data(tmp_path: Path, table: str, says: str | None) -> None:
    (tmp_path / "t.csv").write_text(table)
    assert input_problem(work_with(EXAMPLE), tmp_path, "s") == says
    assert "forty" not in (input_problem(work_with(EXAMPLE), tmp_path, "s") or "")  # no value in the reason


def _variable(**change: list[NamedNode | Literal]) -> list[Quad]:
    v, g = NamedNode("https://pht.example.org/id/datasets/d/variables/age"), station_graph("s")
    values: dict[NamedNode, list[NamedNode | Literal]] = {RDF_TYPE: [PHT.Variable], PHT.variableName: [Literal("age")],
                                             PHT.variableDatatype: [XSD.integer], PHT.variableUnit: [Literal("a")],
                                             PHT.codeSystem: [NamedNode("http://loinc.org")]}
    values.update({PHT[k]: v_ for k, v_ in change.items()})
    return [Quad(v, p, o, g) for p, objects in values.items() for o in objects]


@pytest.mark.parametrize("change, component", [
    ({}, None),
    ({"variableDatatype": [XSD.double]}, "InConstraintComponent"),
    ({"variableName": [Literal("age"), Literal("Age")]}, "MaxCountConstraintComponent"),
    ({"variableName": [Literal("2 words")]}, "PatternConstraintComponent"),
    ({"variableUnit": [Literal("")]}, "MinLengthConstraintComponent"),
    ({"codeSystem": [Literal("http://loinc.org")]}, "NodeKindConstraintComponent"),
])
def test_variable_shapes(change: dict[str, list[NamedNode | Literal]], component: str | None) -> None:
    """shapes/variables-shapes.ttl: one name, one datatype of six, at most one UCUM unit and one code system (IRI)."""
    report = validate_unstored(ChangeSet(insert=_variable(**change)))
    assert [r.component.value.rsplit("#", 1)[-1] for r in report.results] == ([component] if component else [])


def test_a_definition_has_one_text_of_input_shapes() -> None:
    d, g = NamedNode("https://pht.example.org/id/definitions/d"), CENTRAL_GRAPH
    two = [Quad(d, RDF_TYPE, PHT.TrainDefinition, g), Quad(d, PHT.inputShapes, Literal(EXAMPLE), g),
           Quad(d, PHT.inputShapes, Literal(EXAMPLE + " "), g)]
    results = validate_unstored(ChangeSet(insert=two)).results
    assert "MaxCountConstraintComponent" in {r.component.value.rsplit("#", 1)[-1] for r in results}
    assert any("pht:inputShapes" in r.message for r in results)

"""SPARQL updates run as validated change sets, and the generic lifecycle transition (fire_transition.rq)."""

from __future__ import annotations

import threading
import uuid

import pytest
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    CENTRAL_GRAPH,
    PHT,
    ChangeSet,
    ConflictError,
    EmbeddedStore,
    InvalidInputError,
    ValidationFailed,
    compile_update,
    parse_rdf,
    station_graph,
)
from graph_store._paths import REPO_ROOT

DEMO = "https://pht.example.org/demo/"
TRAIN = NamedNode(DEMO + "train-1")
XSD_DT = NamedNode("http://www.w3.org/2001/XMLSchema#dateTime")


@pytest.fixture()
def store() -> EmbeddedStore:
    s = EmbeddedStore()
    s.load_vocabulary()
    s.apply(ChangeSet(insert=parse_rdf((REPO_ROOT / "examples" / "registry.ttl").read_bytes(), "text/turtle",
                                       CENTRAL_GRAPH)))
    return s


def fire(store: EmbeddedStore, frm: NamedNode, to: NamedNode, role: NamedNode, reason: str = "") -> int:
    outcome = store.run_update(
        "fire_transition", graph=CENTRAL_GRAPH, resource=TRAIN, to=to, role=role,
        agent=NamedNode(DEMO + "central"), event=NamedNode(f"{DEMO}event-{uuid.uuid4()}"),
        time=Literal("2026-11-27T10:00:00Z", datatype=XSD_DT), reason=Literal(reason), **{"from": frm})
    return outcome.solutions


def state(store: EmbeddedStore) -> NamedNode:
    (q,) = store.quads(TRAIN, PHT.state)
    return q.object  # type: ignore[return-value]


def test_transition_moves_state_and_records_a_prov_event(store: EmbeddedStore) -> None:
    assert fire(store, PHT.Submitted, PHT.Queued, PHT.Operator) == 1
    assert state(store) == PHT.Queued
    rows = list(store.query(
        "PREFIX pht: <https://w3id.org/pht-kg/vocab#> PREFIX prov: <http://www.w3.org/ns/prov#> "
        "SELECT ?from ?to ?who ?role WHERE { GRAPH ?g { ?e a pht:StateChangeEvent ; pht:aboutTrain $t ; "
        "pht:fromState ?from ; pht:toState ?to ; prov:wasAssociatedWith ?who ; pht:actingRole ?role } }",
        bindings={"t": TRAIN}))
    assert [(r["from"], r["to"], r["role"]) for r in rows] == [(PHT.Submitted, PHT.Queued, PHT.Operator)]


def test_reason_is_recorded_only_when_given(store: EmbeddedStore) -> None:
    fire(store, PHT.Submitted, PHT.Queued, PHT.Operator)
    fire(store, PHT.Queued, PHT.Cancelled, PHT.Researcher, reason="wrong cohort")
    reasons = [q.object for q in store.quads(None, PHT.reason)]
    assert reasons == [Literal("wrong cohort")]


@pytest.mark.parametrize("frm,to,role", [
    (PHT.Queued, PHT.Running, PHT.StationRole),      # not in that state
    (PHT.Submitted, PHT.Finished, PHT.Operator),     # no such transition in the chart
    (PHT.Submitted, PHT.Queued, PHT.Researcher),     # transition exists, role may not fire it
])
def test_illegal_transitions_write_nothing(store: EmbeddedStore, frm: NamedNode, to: NamedNode,
                                           role: NamedNode) -> None:
    before = len(store)
    assert fire(store, frm, to, role) == 0
    assert len(store) == before and state(store) == PHT.Submitted


def test_racing_threads_exactly_one_wins(store: EmbeddedStore) -> None:
    results: list[int] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.append(fire(store, PHT.Submitted, PHT.Queued, PHT.Operator))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0] * 7 + [1]
    assert len(store.quads(None, PHT.toState, PHT.Queued)) == 1


def test_data_updates_and_delete_where(store: EmbeddedStore) -> None:
    g = CENTRAL_GRAPH
    store.apply_update(f"INSERT DATA {{ GRAPH {g} {{ {TRAIN} <http://purl.org/dc/terms/title> \"T\" }} }}")
    assert store.contains(Quad(TRAIN, NamedNode("http://purl.org/dc/terms/title"), Literal("T"), g))
    out = store.apply_update(f"DELETE WHERE {{ GRAPH {g} {{ {TRAIN} <http://purl.org/dc/terms/title> ?t }} }}")
    assert out.solutions == 1 and not store.quads(TRAIN, NamedNode("http://purl.org/dc/terms/title"))


def test_an_update_that_violates_the_shapes_is_refused_whole(store: EmbeddedStore) -> None:
    before = len(store)
    with pytest.raises(ValidationFailed) as refused:
        store.apply_update(f"DELETE WHERE {{ GRAPH {CENTRAL_GRAPH} {{ {TRAIN} <https://w3id.org/pht-kg/vocab#state> ?s }} }}")
    assert refused.value.report.results[0].component_name == "MinCountConstraintComponent"
    assert len(store) == before


@pytest.mark.parametrize("update,message", [
    ("INSERT DATA { <urn:a> <urn:b> <urn:c> }", "writes the default graph"),
    ("INSERT DATA { GRAPH <urn:g> { _:b <urn:b> <urn:c> } }", "blank node"),
    ("DELETE { ?s ?p ?o } WHERE { GRAPH <urn:g> { ?s ?p ?o } }", "default graph.*or name the graph with WITH"),
    ("WITH <relative> INSERT { <urn:s> <urn:p> ?o } WHERE { BIND(1 AS ?o) }", "not a valid RDF term"),
    ("LOAD <https://example.org/data.ttl> INTO GRAPH <urn:g>", "unsupported update operation LOAD"),
    ("CREATE GRAPH <urn:g> ; LOAD <https://example.org/data.ttl>", "unsupported update operation LOAD"),
    ("DELETE { GRAPH <urn:g> { ?s ?p ?o } } WHERE { ?s ?p ", "malformed SPARQL update"),
])
def test_unsupported_or_malformed_updates_are_refused(store: EmbeddedStore, update: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        store.apply_update(update)


def test_update_parameters_are_checked(store: EmbeddedStore) -> None:
    with pytest.raises(InvalidInputError, match="missing value for parameter"):
        store.run_update("fire_transition", graph=CENTRAL_GRAPH)
    with pytest.raises(InvalidInputError, match="is a query"):
        store.run_update("trains_by_state")


# -- WITH, USING and the protocol's USING graphs, the solution limit, plans ------------------------------

TITLE = NamedNode("http://purl.org/dc/terms/title")
AACHEN, LEIPZIG = station_graph("aachen"), station_graph("leipzig")


def titles(store: EmbeddedStore, graph: NamedNode) -> list[str]:
    return sorted(q.object.value for q in store.quads(None, TITLE, None, graph))


@pytest.fixture()
def titled(store: EmbeddedStore) -> EmbeddedStore:
    store.apply_update(f"INSERT DATA {{ GRAPH {AACHEN} {{ {TRAIN} {TITLE} \"A\" }} "
                       f"GRAPH {LEIPZIG} {{ {TRAIN} {TITLE} \"L\" }} }}")
    return store


def test_with_names_the_templates_graph_and_the_where_default_graph(titled: EmbeddedStore) -> None:
    out = titled.apply_update(f"WITH {AACHEN} DELETE {{ ?s {TITLE} ?t }} INSERT {{ ?s {TITLE} ?new }} "
                              f"WHERE {{ ?s {TITLE} ?t BIND(CONCAT(\"new \", ?t) AS ?new) }}")
    assert out.solutions == 1
    assert titles(titled, AACHEN) == ["new A"] and titles(titled, LEIPZIG) == ["L"]


def test_using_and_using_named_set_the_where_dataset(titled: EmbeddedStore) -> None:
    copy = f"INSERT {{ GRAPH {AACHEN} {{ ?s {TITLE} ?t }} }} USING {LEIPZIG} WHERE {{ ?s {TITLE} ?t }}"
    assert titled.apply_update(copy).solutions == 1
    assert titles(titled, AACHEN) == ["A", "L"]
    named = (f"DELETE {{ GRAPH ?g {{ ?s {TITLE} ?t }} }} USING NAMED {LEIPZIG} "
             f"WHERE {{ GRAPH ?g {{ ?s {TITLE} ?t }} }}")
    assert titled.apply_update(named).solutions == 1
    assert titles(titled, LEIPZIG) == [] and titles(titled, AACHEN) == ["A", "L"]


def test_using_arguments_stand_for_the_protocols_using_graph_uri(titled: EmbeddedStore) -> None:
    text = f"DELETE {{ GRAPH {AACHEN} {{ ?s {TITLE} ?t }} }} WHERE {{ ?s {TITLE} ?t }}"
    assert titled.apply_update(text).solutions == 0  # the default graph holds nothing
    assert titled.apply_update(text, using=[AACHEN]).solutions == 1
    assert titles(titled, AACHEN) == []
    for refused, message in [(f"WITH {AACHEN} DELETE {{ ?s ?p ?o }} WHERE {{ ?s ?p ?o }}", "WITH or USING"),
                             (f"DELETE WHERE {{ GRAPH {AACHEN} {{ ?s ?p ?o }} }}", "DELETE WHERE")]:
        with pytest.raises(InvalidInputError, match=message):
            titled.apply_update(refused, using=[LEIPZIG])


def test_an_update_matching_more_than_max_solutions_is_refused(titled: EmbeddedStore) -> None:
    text = (f"DELETE {{ GRAPH ?g {{ ?s {TITLE} ?t }} }} WHERE {{ GRAPH ?g {{ ?s {TITLE} ?t }} "
            f"FILTER(?g IN ({AACHEN}, {LEIPZIG})) }}")
    before = len(titled)
    with pytest.raises(InvalidInputError, match="more than 1 solutions"):
        titled.apply_update(text, max_solutions=1)
    assert len(titled) == before
    assert titled.apply_update(text, max_solutions=2).solutions == 2


def test_a_plan_writes_nothing_and_is_guarded_by_what_it_deletes(titled: EmbeddedStore) -> None:
    update = compile_update(f"DELETE WHERE {{ GRAPH {AACHEN} {{ ?s {TITLE} ?t }} }} ")
    plan = titled.plan_update(update)
    assert plan.solutions == 1 and titles(titled, AACHEN) == ["A"]
    assert plan.change.guard == plan.change.delete == {Quad(TRAIN, TITLE, Literal("A"), AACHEN)}
    titled.apply(plan.change)
    with pytest.raises(ConflictError):
        titled.apply(ChangeSet(insert=[Quad(TRAIN, TITLE, Literal("B"), AACHEN)], guard=plan.change.guard))
    assert titled.plan_update(update).change.is_empty()


def test_data_operations_fold_and_delete_only_what_exists(titled: EmbeddedStore) -> None:
    a, b = Quad(TRAIN, TITLE, Literal("A"), AACHEN), Quad(TRAIN, TITLE, Literal("B"), AACHEN)
    plan = titled.plan_update(f"INSERT DATA {{ GRAPH {AACHEN} {{ {TRAIN} {TITLE} \"B\" }} }} ; "
                              f"DELETE DATA {{ GRAPH {AACHEN} {{ {TRAIN} {TITLE} \"B\", \"A\", \"gone\" }} }}")
    assert plan.change.delete == {a, b} - {b} and not plan.change.insert


def test_iris_with_escapes_do_not_confuse_the_where_clause(titled: EmbeddedStore) -> None:
    out = titled.apply_update(f"DELETE {{ GRAPH {AACHEN} {{ ?s {TITLE} ?t }} }} "
                              f"WHERE {{ GRAPH {AACHEN} {{ ?s {TITLE} ?t FILTER(?s != <urn:x\\u0041#>) }} }}")
    assert out.solutions == 1 and titles(titled, AACHEN) == []


DATA_SAMPLE = """PREFIX ex: <https://example.org/>
PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>
INSERT DATA { GRAPH ex:g { ex:a ex:p "x"@en , 5 , "2026-01-01T00:00:00Z"^^xsd:dateTime ; ex:q ex:b . } } ;
DELETE DATA { GRAPH <https://example.org/g> { ex:a ex:p 5 } } ;
INSERT DATA { GRAPH ex:h { ex:c ex:p "y" } }"""


def test_data_updates_parse_the_same_on_the_fast_path_as_with_rdflib() -> None:
    from graph_store._updates import _compile, _data_fast

    fast = _data_fast(DATA_SAMPLE, None)
    assert fast is not None
    general = _compile(DATA_SAMPLE + " ")  # same text, cache bypassed
    assert set(fast.insert) == set(general.insert) and set(fast.delete) == set(general.delete)
    # in sequence: the DELETE DATA of 5 undoes its INSERT DATA and deletes it (it may have been stored before)
    assert len(fast.insert) == 4 and [t[2].value for t in fast.delete] == ["5"]


def test_a_large_insert_data_compiles_quickly() -> None:
    import time

    from graph_store import compile_update

    body = " ".join(f'<https://example.org/s{i}> <https://example.org/p> "value {i}" .' for i in range(20_000))
    text = f"INSERT DATA {{ GRAPH <https://example.org/g> {{ {body} }} }}"
    assert len(text) > 1_000_000
    t0 = time.perf_counter()
    compiled = compile_update(text)
    assert len(compiled.insert) == 20_000
    assert time.perf_counter() - t0 < 5  # rdflib's parser needs minutes for this


@pytest.mark.parametrize("update,message", [
    ("INSERT DATA { <urn:a> <urn:b> <urn:c> . }", "writes the default graph"),
    ("DELETE DATA { GRAPH <urn:g> { _:b <urn:b> <urn:c> } }", "blank node"),
])
def test_fast_data_path_refusals(update: str, message: str) -> None:
    from graph_store._updates import _data_fast

    with pytest.raises(InvalidInputError, match=message):
        _data_fast(update, None)


def test_what_trig_cannot_read_goes_to_the_general_parser() -> None:
    from graph_store import compile_update
    from graph_store._updates import _data_fast

    assert _data_fast("INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:b> } }", None) is None
    with pytest.raises(InvalidInputError, match="malformed SPARQL update"):
        compile_update("INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:b> } }")


# -- several operations, graph management (graph_store/_update_sequence.py) ---------------------------------

G, H = NamedNode("urn:g"), NamedNode("urn:h")
P = NamedNode("urn:p")


def _graph(store: EmbeddedStore, graph: NamedNode) -> set[tuple[object, object, object]]:
    return {(q.subject, q.predicate, q.object) for q in store.quads(g=graph)}


def test_semicolons_in_strings_iris_and_comments_do_not_split_operations(store: EmbeddedStore) -> None:
    text = ('PREFIX ex: <urn:ex;1#> # a comment; with a semicolon\n'
            'INSERT DATA { GRAPH <urn:g> { ex:a <urn:p> "x ; y" , <urn:o;1> } } ;\n'
            'BASE <urn:base/>\n'
            'INSERT { GRAPH <urn:h> { ?s <urn:p> "seen;" } } WHERE { GRAPH <urn:g> { ?s <urn:p> "x ; y" } } ;\n'
            'COPY <urn:h> TO <urn:k>')
    compiled = compile_update(text)
    assert compiled.operation == "SEQUENCE" and len(compiled.steps) == 3
    store.apply_update(compiled)
    a = NamedNode("urn:ex;1#a")
    assert _graph(store, G) == {(a, P, Literal("x ; y")), (a, P, NamedNode("urn:o;1"))}
    assert _graph(store, H) == _graph(store, NamedNode("urn:k")) == {(a, P, Literal("seen;"))}


@pytest.mark.parametrize("text,g,h", [
    ("ADD <urn:g> TO <urn:h>", {"g"}, {"g", "h"}),
    ("COPY <urn:g> TO <urn:h>", {"g"}, {"g"}),
    ("MOVE <urn:g> TO <urn:h>", set(), {"g"}),
    ("MOVE <urn:g> TO <urn:g>", {"g"}, {"h"}),  # to itself: nothing (SPARQL 1.1 Update §3.2.5)
    ("COPY SILENT <urn:g> TO <urn:g>", {"g"}, {"h"}),
    ("CLEAR GRAPH <urn:g>", set(), {"h"}),
    ("DROP SILENT GRAPH <urn:nothing> ; CREATE GRAPH <urn:new>", {"g"}, {"h"}),
    ("DROP NAMED", set(), set()),
])
def test_graph_management_operations(store: EmbeddedStore, text: str, g: set[str], h: set[str]) -> None:
    store.apply(ChangeSet(insert=[Quad(NamedNode("urn:s"), P, Literal("g"), G),
                                  Quad(NamedNode("urn:s"), P, Literal("h"), H)]))
    ontology = len(store.quads(g=NamedNode("https://w3id.org/pht-kg/graph/ontology")))
    store.apply_update(text)
    assert {str(o.value) for _, _, o in _graph(store, G)} == g
    assert {str(o.value) for _, _, o in _graph(store, H)} == h
    assert len(store.quads(g=NamedNode("https://w3id.org/pht-kg/graph/ontology"))) == ontology


def test_create_of_a_graph_with_quads_fails_unless_silent(store: EmbeddedStore) -> None:
    store.apply(ChangeSet(insert=[Quad(NamedNode("urn:s"), P, Literal("g"), G)]))
    with pytest.raises(InvalidInputError, match="already exists"):
        store.apply_update("CREATE GRAPH <urn:g>")
    store.apply_update("CREATE SILENT GRAPH <urn:g>")


def test_a_where_after_changes_reads_a_bounded_copy(store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from graph_store import _update_sequence

    text = ("INSERT DATA { GRAPH <urn:g> { <urn:s> <urn:p> 1 } } ; "
            "INSERT { GRAPH <urn:h> { ?s <urn:p> 2 } } WHERE { GRAPH ?x { ?s <urn:p> 1 } }")
    monkeypatch.setattr(_update_sequence, "OVERLAY_QUADS", 10)  # the vocabulary alone is more
    with pytest.raises(InvalidInputError, match="request of its own"):
        store.plan_update(text)
    monkeypatch.undo()
    store.apply_update(text)
    assert _graph(store, H) == {(NamedNode("urn:s"), P, Literal(2))}


def test_blank_nodes_need_a_skolem_prefix_and_get_fresh_iris(store: EmbeddedStore) -> None:
    text = "INSERT DATA { GRAPH <urn:g> { _:a <urn:p> _:b . _:a <urn:p> 1 } }"
    with pytest.raises(InvalidInputError, match="blank node"):
        store.plan_update(text)
    first = store.plan_update(text, skolem="urn:genid:").change.insert
    second = store.plan_update(text, skolem="urn:genid:").change.insert
    subjects = {q.subject for q in first}
    assert len(subjects) == 1 and next(iter(subjects)).value.startswith("urn:genid:")
    assert len({q.object for q in first if isinstance(q.object, NamedNode)}) == 1
    assert subjects.isdisjoint({q.subject for q in second})  # a request's blank nodes are its own


def test_relative_iris_resolve_against_the_base_given() -> None:
    compiled = compile_update("INSERT DATA { GRAPH <g> { <s> <p> <o> } }", "https://example.org/sparql")
    assert [t.value for t in compiled.insert[0]] == [f"https://example.org/{x}" for x in "spog"]
    with pytest.raises(InvalidInputError, match="base IRI"):
        compile_update("INSERT DATA { GRAPH <g> { <s> <p> <o> } }", "not an iri")


def test_a_sequence_is_guarded_by_what_its_where_deletes_not_by_what_clear_deletes(store: EmbeddedStore) -> None:
    a, b = Quad(NamedNode("urn:s"), P, Literal("a"), G), Quad(NamedNode("urn:s"), P, Literal("b"), H)
    store.apply(ChangeSet(insert=[a, b]))
    clear = store.plan_update("CLEAR GRAPH <urn:h> ; CREATE SILENT GRAPH <urn:k>")
    where = store.plan_update('INSERT DATA { GRAPH <urn:k> { <urn:s> <urn:p> "k" } } ; '
                              'DELETE WHERE { GRAPH <urn:g> { ?s <urn:p> "a" } }')
    store.apply(ChangeSet(delete=[a, b]))  # another writer, between planning and applying
    store.apply(clear.change)  # CLEAR deletes what is there: nothing left to delete is no conflict
    with pytest.raises(ConflictError):
        store.apply(where.change)  # the WHERE matched a quad that is gone: the compare-and-set fails
    assert not store.quads(g=NamedNode("urn:k"))

"""The graph store contract, run against every back-end: the embedded store (pyoxigraph, in memory), a
RemoteStore on a real Oxigraph server and a RemoteStore on a real Virtuoso 7.

Every test starts from a clean state: the embedded store is new; on a session-wide server the vocabulary
is loaded if it is not there as the files say, and every data graph under ``https://w3id.org/pht-kg/graph/``
(all but the ontology and shapes graphs) is dropped before the test. Virtuoso's system graphs are never
assumed absent.

What the back-ends guarantee, as these tests check it:

* a write is validated first and committed as one SPARQL update request, so a refused or failed write
  leaves the store exactly as it was (also when the server dies before the commit);
* a guarded write (compare-and-set) has exactly one winner among threads sharing one store instance, on
  every back-end;
* among separate clients (separate RemoteStore instances, as separate processes would be) it has exactly
  one winner on the embedded store and on Virtuoso -- but only because the test Virtuoso runs with
  ``DefaultIsolation = 4`` (REPEATABLE READ, set in ``servers.py``); under Virtuoso's default READ
  COMMITTED several clients win. **Oxigraph server 0.5 does not serialise concurrent updates: several
  separate clients can win there** (measured: 2 of 40 races through RemoteStore, 27 of 100 with raw
  updates), which no client can prevent. What still holds there, and is asserted: every racer either wins
  or gets ConflictError, a loser wrote nothing, a winner wrote all of its change. See graph_store/_remote.py;
* values read back are the values written, in the canonical form the change sets use (``"01"`` reads
  back as ``"1"``), whatever lexical form the server keeps (Virtuoso keeps ``"1"^^xsd:boolean``), and a
  value can be deleted with the literal it was written with.

Other server limitations found on Virtuoso 7.2 (handled in ``graph_store``, documented there): blank nodes
are refused in INSERT DATA; one operation may not exceed about 1,000 quads and one request about 3,000
quads (so a larger change cannot be atomic there); an ``xsd:decimal`` written without a decimal point is
stored as an ``xsd:integer``; blank nodes come back labelled ``nodeID://...``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import servers
from conftest import require_component
from hypothesis import given
from hypothesis import strategies as st
from pyoxigraph import BlankNode, DefaultGraph, Literal, NamedNode, Quad, RdfFormat, Store, Triple, Variable, parse

from graph_store import (
    CENTRAL_GRAPH,
    DEFAULT_GRAPH,
    ONTOLOGY_GRAPH,
    PHT,
    PROV,
    RDF_TYPE,
    SHAPES_GRAPH,
    ChangeSet,
    ConflictError,
    EmbeddedStore,
    GraphStore,
    InvalidInputError,
    RemoteStore,
    StoreUnavailable,
    UpdateWrite,
    ValidationFailed,
    named_query,
    parse_rdf,
    station_graph,
)
from graph_store._convert import canonical
from graph_store._vocab import GRAPH_NS
from graph_store._write_lock import LOCK_GRAPH

FIXTURES = Path(__file__).parent / "fixtures" / "shapes"
VALID = sorted((FIXTURES / "valid").glob("*.ttl"))
EX = "https://pht.example.org/id/"
XSD = "http://www.w3.org/2001/XMLSchema#"
SHAPES_NS = "https://w3id.org/pht-kg/shapes#"
DCT_TITLE = NamedNode("http://purl.org/dc/terms/title")
PROV_ASSOCIATED = PROV.wasAssociatedWith
PREFIXES = """PREFIX pht: <https://w3id.org/pht-kg/vocab#>
PREFIX dcterms: <http://purl.org/dc/terms/>
PREFIX owl: <http://www.w3.org/2002/07/owl#>
PREFIX sh: <http://www.w3.org/ns/shacl#>
"""


def ex(name: str) -> NamedNode:
    return NamedNode(EX + name)


def read(path: Path) -> list[Quad]:
    return [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in parse(path=path, format=RdfFormat.TURTLE)]


SCENARIO = [q for f in VALID for q in read(f)]


def stored_form(quads: list[Quad]) -> set[Quad]:
    """The quads as a store keeps them (typed literals canonicalised, as ChangeSet does)."""
    return set(ChangeSet(insert=quads).insert)


def central(store: GraphStore) -> set[Quad]:
    return set(store.quads(g=CENTRAL_GRAPH))


def has_blank(q: Quad) -> bool:
    return isinstance(q.subject, BlankNode) or isinstance(q.object, BlankNode)


def blank_nodes(quads: list[Quad]) -> set[BlankNode]:
    return {t for q in quads for t in (q.subject, q.object) if isinstance(t, BlankNode)}


# -- back-ends ------------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    store: GraphStore
    connect: Callable[[], GraphStore]
    """Another client of the same data: a new RemoteStore (own lock, own connections) for a server, the
    same instance for the embedded store (one process owns an embedded store)."""


def _clean_data_graphs(store: GraphStore) -> None:
    """Drop every graph of the layout except the vocabulary and the writers' claims (a claim kept from the
    vocabulary's load is used by the next write: dropping it would make that write's fence fail), whatever an
    earlier test left behind."""
    rows = store.query(
        "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } FILTER(STRSTARTS(STR(?g), $ns)) }",
        bindings={"ns": Literal(GRAPH_NS)},
    )
    graphs = {row["g"] for row in rows} - {ONTOLOGY_GRAPH, SHAPES_GRAPH, LOCK_GRAPH}  # type: ignore[union-attr]
    if graphs:
        # Raw update on purpose: apply() never drops graphs, and the test needs a clean slate.
        store._update(" ; ".join(f"DROP SILENT GRAPH {g}" for g in sorted(graphs, key=str)))  # noqa: SLF001
    assert not central(store)


def _vocabulary_size(store: GraphStore) -> tuple[int, int]:
    count = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH $g { ?s ?p ?o } }"
    return tuple(int(next(iter(store.query(count, bindings={"g": g})))["n"].value)  # type: ignore[return-value]
                 for g in (ONTOLOGY_GRAPH, SHAPES_GRAPH))


@pytest.fixture(scope="module")
def own_virtuoso() -> Iterator[servers.VirtuosoServer]:
    """A Virtuoso of this module's own, fresh: in two full CI runs (2026-12-04), after the earlier test files had
    written to the session's shared server, ``DROP ALL`` there left the scenario's record-proof quads behind; it
    never did on a fresh server (see the session note). The contract is checked from a known server state."""
    require_component("virtuoso")
    with servers.virtuoso_server() as server:
        yield server


def _remote(request: pytest.FixtureRequest, name: str) -> Backend:
    """A remote back-end whose every client (``connect()``) is closed when the test ends: a client left to the
    garbage collector warns of its unclosed sockets in whichever test runs then (an error there)."""
    server: servers.OxigraphServer | servers.VirtuosoServer = \
        request.getfixturevalue("oxigraph_endpoint" if name == "oxigraph" else "own_virtuoso")
    user, password = (server.user, server.password) if isinstance(server, servers.VirtuosoServer) else (None, None)
    closing = request.getfixturevalue("closing")

    def connect() -> GraphStore:
        return closing(RemoteStore(server.query_url, server.update_url, user=user, password=password, timeout=20))
    store = connect()
    if _vocabulary_size(store) != (len(set(store.schema.ontology_quads)), len(set(store.schema.shapes_quads))):
        store.load_vocabulary()  # once per session-wide server, or again if a test elsewhere changed it
    _clean_data_graphs(store)  # the sizes graph too: the raw drops are not counted
    store.recount()  # so every test here writes with the sizes kept, as a service's store does
    return Backend(name, store, connect)


@pytest.fixture(
    params=[
        pytest.param("embedded", id="embedded"),
        pytest.param("oxigraph", id="oxigraph", marks=pytest.mark.real_component("oxigraph")),
        pytest.param("virtuoso", id="virtuoso", marks=pytest.mark.real_component("virtuoso")),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "embedded":
        store = EmbeddedStore()
        store.load_vocabulary()
        yield Backend("embedded", store, lambda: store)
        store.close()
        return
    b = _remote(request, request.param)
    yield b
    b.store.close()


@pytest.fixture()
def scenario(backend: Backend) -> Backend:
    """The back-end holding the valid scenario, written through apply()."""
    backend.store.apply(ChangeSet(insert=SCENARIO))
    return backend


# -- 1. vocabulary --------------------------------------------------------------------------------------


def test_load_vocabulary_writes_ontology_and_shapes_and_is_repeatable(backend: Backend) -> None:
    store = backend.store
    schema = store.schema
    for _ in range(2):  # the second load replaces the first: nothing is duplicated
        store.load_vocabulary()
        ontology, shapes = store.quads(g=ONTOLOGY_GRAPH), store.quads(g=SHAPES_GRAPH)
        assert len(ontology) == len(set(schema.ontology_quads)) > 0
        assert len(shapes) == len(set(schema.shapes_quads)) > 0
        # ground quads are exactly the files' (canonical literals); blank nodes are kept, one for one
        for stored, files in ((ontology, schema.ontology_quads), (shapes, schema.shapes_quads)):
            ground = {Quad(q.subject, q.predicate, canonical(q.object), q.graph_name)
                      for q in files if not has_blank(q)}
            assert {q for q in stored if not has_blank(q)} == ground
            assert len(blank_nodes(stored)) == len(blank_nodes(files))
        assert blank_nodes(shapes)  # property shapes and lists
    ask = PREFIXES + "ASK { GRAPH $g { $thing a $class } }"
    assert bool(store.query(ask, bindings={"g": ONTOLOGY_GRAPH, "thing": PHT.Train,
                                           "class": NamedNode("http://www.w3.org/2002/07/owl#Class")}))
    assert bool(store.query(ask, bindings={"g": SHAPES_GRAPH, "thing": NamedNode(SHAPES_NS + "TrainShape"),
                                           "class": NamedNode("http://www.w3.org/ns/shacl#NodeShape")}))
    assert not bool(store.query(ask, bindings={"g": SHAPES_GRAPH, "thing": PHT.Train,
                                               "class": NamedNode("http://www.w3.org/2002/07/owl#Class")}))


# -- 2. valid scenario round trip -----------------------------------------------------------------------


def test_valid_scenario_conforms_and_reads_back(backend: Backend) -> None:
    store = backend.store
    report = store.apply(ChangeSet(insert=SCENARIO))
    assert report.conforms and report.results == ()
    assert report.focus_nodes_checked > 0
    assert central(store) == stored_form(SCENARIO)

    # SELECT with $parameters bound as RDF terms; rows by name and by Variable
    rows = list(store.query(PREFIXES + "SELECT ?title WHERE { GRAPH $g { $station dcterms:title ?title } }",
                            bindings={"g": CENTRAL_GRAPH, "station": ex("station-aachen")}))
    assert len(rows) == 1
    title = store.quads(ex("station-aachen"), DCT_TITLE, None, CENTRAL_GRAPH)[0].object
    assert rows[0]["title"] == rows[0][Variable("title")] == title
    # typed literals come back as the store keeps them, whatever the server's own lexical form
    rows = list(store.query(PREFIXES + "SELECT ?v ?b WHERE { GRAPH $g { $sample pht:value ?v . $policy "
                            "pht:requiresApproval ?b } }",
                            bindings={"g": CENTRAL_GRAPH, "sample": ex("ev-0001-aachen-mem"),
                                      "policy": ex("policy-leipzig-approval")}))
    assert [(r["v"], r["b"]) for r in rows] == [
        (Literal("268435456", datatype=NamedNode(XSD + "decimal")), Literal(False))]
    # the same value as a parameter finds the resource
    rows = list(store.query(PREFIXES + "SELECT ?s WHERE { GRAPH $g { ?s pht:value $v } }",
                            bindings={"g": CENTRAL_GRAPH,
                                      "v": Literal("268435456.000", datatype=NamedNode(XSD + "decimal"))}))
    assert [r["s"] for r in rows] == [ex("ev-0001-aachen-mem")]

    # CONSTRUCT gives triples
    triples = list(store.query(PREFIXES + "CONSTRUCT { $t pht:state ?s } WHERE { GRAPH $g { $t pht:state ?s } }",
                               bindings={"g": CENTRAL_GRAPH, "t": ex("train-0002")}))
    assert triples == [Triple(ex("train-0002"), PHT.state, PHT.Running)]

    # ASK
    ask = PREFIXES + "ASK { GRAPH $g { $t pht:state $s } }"
    assert bool(store.query(ask, bindings={"g": CENTRAL_GRAPH, "t": ex("train-0002"), "s": PHT.Running})) is True
    assert bool(store.query(ask, bindings={"g": CENTRAL_GRAPH, "t": ex("train-0002"), "s": PHT.Finished})) is False

    # the default graph of a query can be chosen
    rows = list(store.query(PREFIXES + "SELECT ?t WHERE { ?t pht:state pht:Rejected ; a pht:Train }",
                            default_graph=[CENTRAL_GRAPH]))
    assert [r["t"] for r in rows] == [ex("train-0003")]

    # named queries
    counts = {r["state"]: r["trains"] for r in store.run_query("trains_by_state")}  # type: ignore[union-attr]
    assert counts == {s: Literal(1) for s in (PHT.Finished, PHT.Running, PHT.Rejected)}
    rows = list(store.run_query("resources_by_identifier", identifier=Literal("train-0001")))
    assert {(r["resource"], r["class"], r["graph"]) for r in rows} == {(ex("train-0001"), PHT.Train, CENTRAL_GRAPH)}

    assert store.contains(Quad(ex("train-0001"), PHT.state, PHT.Finished, CENTRAL_GRAPH))
    assert not store.contains(Quad(ex("train-0001"), PHT.state, PHT.Running, CENTRAL_GRAPH))


# -- 3. invalid changes are refused and change nothing ---------------------------------------------------

INVALID = [
    # fixture, component, focus node, path
    ("train-definition-missing-title", "MinCountConstraintComponent", ex("def-bad"), DCT_TITLE),
    ("filter-rule-decimal-priority", "DatatypeConstraintComponent", ex("rule-bad"), PHT.priority),
    ("dataset-held-by-organisation", "ClassConstraintComponent", ex("dataset-bad"), PHT.heldBy),
    ("event-time-without-timezone", "PatternConstraintComponent", ex("ev-bad"), PHT.eventTime),
]


@pytest.mark.parametrize("fixture,component,focus,path", INVALID, ids=[i[0] for i in INVALID])
def test_invalid_change_is_refused_with_a_report_and_writes_nothing(
        scenario: Backend, fixture: str, component: str, focus: NamedNode, path: NamedNode) -> None:
    store = scenario.store
    before = central(store)
    with pytest.raises(ValidationFailed) as refused:
        store.apply(ChangeSet(insert=read(FIXTURES / "invalid" / f"{fixture}.ttl")))
    report = refused.value.report
    assert not report.conforms
    assert [(r.component_name, r.focus_node, r.path) for r in report.results] == [(component, focus, path)]
    result = report.results[0]
    assert result.message.strip()
    assert focus.value in str(refused.value) and path.value in str(refused.value)
    assert result.message in str(refused.value)
    assert result.to_dict()["focusNode"] == focus.value
    assert central(store) == before


# -- 4. guarded compare-and-set --------------------------------------------------------------------------


def transition(resource: NamedNode, old: NamedNode, new: NamedNode, event: NamedNode) -> ChangeSet:
    """A lifecycle step: guarded on the current state, replaced by the new one, with its event."""
    g = CENTRAL_GRAPH
    state = PHT.state
    return ChangeSet(
        guard=[Quad(resource, state, old, g)],
        delete=[Quad(resource, state, old, g)],
        insert=[
            Quad(resource, state, new, g),
            Quad(event, RDF_TYPE, PHT.StateChangeEvent, g),
            Quad(event, PHT.eventTime, Literal("2026-11-27T13:00:00Z", datatype=NamedNode(XSD + "dateTime")), g),
            Quad(event, PHT.aboutTrain, resource, g),
            Quad(event, PHT.emittedBy, ex("central"), g),
            Quad(event, PHT.fromState, old, g),
            Quad(event, PHT.toState, new, g),
            Quad(event, PROV_ASSOCIATED, ex("central"), g),
            Quad(event, PHT.actingRole, PHT.Operator, g),
        ],
    )


def test_guarded_change_succeeds_once_and_its_replay_conflicts(scenario: Backend) -> None:
    store, train = scenario.store, ex("train-0002")
    step = transition(train, PHT.Running, PHT.Finished, ex("ev-cas-1"))
    assert store.apply(step).conforms
    assert store.quads(train, PHT.state) == [Quad(train, PHT.state, PHT.Finished, CENTRAL_GRAPH)]
    assert central(store) == stored_form(SCENARIO) - step.delete | step.insert
    after = central(store)
    with pytest.raises(ConflictError, match="pht-kg/vocab#Running"):
        store.apply(step)
    assert central(store) == after
    # a replay with a new event IRI is refused the same way: the guard, not the event, decides
    with pytest.raises(ConflictError):
        store.apply(transition(train, PHT.Running, PHT.Finished, ex("ev-cas-2")))
    assert central(store) == after


# -- 5. race ---------------------------------------------------------------------------------------------

RACERS = 8


def _race(clients: list[GraphStore], store: GraphStore) -> list[int]:
    """RACERS threads try the same guarded transition of train-0002 at once, each with its own event and
    its own client; return the indices of the winners, after checking what holds for every back-end:
    each racer either won or got ConflictError, a loser wrote nothing, a winner wrote all of its change,
    and nothing else changed."""
    train = ex("train-0002")
    steps = [transition(train, PHT.Running, PHT.Finished, ex(f"ev-race-{i}")) for i in range(RACERS)]
    start = threading.Barrier(RACERS)
    outcomes: list[object] = [None] * RACERS

    def race(i: int) -> None:
        start.wait()
        try:
            clients[i].apply(steps[i])
            outcomes[i] = "won"
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            outcomes[i] = e

    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    unexpected = [o for o in outcomes if o != "won" and not isinstance(o, ConflictError)]
    assert not unexpected, unexpected
    winners = [i for i, o in enumerate(outcomes) if o == "won"]
    assert winners, outcomes

    assert store.quads(train, PHT.state) == [Quad(train, PHT.state, PHT.Finished, CENTRAL_GRAPH)]
    events = {q.subject for q in store.quads(None, RDF_TYPE, PHT.StateChangeEvent, CENTRAL_GRAPH)}
    assert events & {ex(f"ev-race-{i}") for i in range(RACERS)} == {ex(f"ev-race-{i}") for i in winners}
    expected = stored_form(SCENARIO) - {Quad(train, PHT.state, PHT.Running, CENTRAL_GRAPH)}
    for i in winners:
        expected |= steps[i].insert
    assert central(store) == expected
    assert_sizes_kept(store)  # a loser's size change did not apply either
    return winners


def test_concurrent_guarded_transitions_of_separate_clients(scenario: Backend) -> None:
    """Separate clients (separate RemoteStore instances: no shared lock), as separate processes would be.

    Exactly one winner on the embedded store (one instance per process) and on Virtuoso (configured with
    REPEATABLE READ, as graph_store requires). Oxigraph server 0.5 does not serialise concurrent updates
    (see graph_store/_remote.py): several clients may win there, which cannot be prevented from the client
    side; what _race() checks still holds (no lost or partial write, ConflictError means nothing written).
    """
    winners = _race([scenario.connect() for _ in range(RACERS)], scenario.store)  # closed with the test
    if scenario.name != "oxigraph":
        assert len(winners) == 1, winners


def test_concurrent_guarded_transitions_through_one_client(scenario: Backend) -> None:
    """Threads sharing one store instance: its lock serialises them, so exactly one wins on every back-end."""
    winners = _race([scenario.store] * RACERS, scenario.store)
    assert len(winners) == 1, winners


# -- 6. bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("data,media_type,expected", [
    ('<https://a.example/s> <https://a.example/p> "x" .\n<https://a.example/s> <https://a.example/p> .',
     "text/turtle", r"malformed Turtle: .*line 2 column \d+"),
    ('{"@id": "https://a.example/s", "https://a.example/p": [ }', "application/ld+json",
     r"malformed JSON-LD: .*line 1 column \d+"),
    ('<https://a.example/s> <https://a.example/p> "x" .', "text/csv", r"unsupported RDF media type 'text/csv'"),
    ('<https://a.exa mple/s> <https://a.example/p> "x" .', "text/turtle", r"line 1 .*Invalid IRI code point ' '"),
    ('<s> <https://a.example/p> "x" .', "text/turtle", r"line 1 .*No scheme found"),
    ('{"@id": "not an iri", "https://a.example/p": "x"}', "application/ld+json",
     r"'not an iri' is not an absolute IRI"),
    ('{"@id": "s", "https://a.example/p": "x"}', "application/ld+json", r"'s' is not an absolute IRI"),
    ('{"@id": "https://a.example/s", "p": "x"}', "application/ld+json", r"'p' is not an absolute IRI"),
    ('{"@id": "https://a.example/s", "https://a.example/p": {"@value": "x", "@language": "en-"}}',
     "application/ld+json", r"1 statement\(s\) would be silently dropped"),
    ('_:b <https://a.example/p> "x" .', "text/turtle", r"blank node"),
], ids=["turtle-syntax", "jsonld-syntax", "media-type", "turtle-bad-iri", "turtle-relative-iri",
        "jsonld-bad-iri", "jsonld-relative-iri", "jsonld-unmapped-key", "jsonld-bad-language", "blank-node"])
def test_parse_rdf_refuses_bad_input_naming_the_problem(data: str, media_type: str, expected: str) -> None:
    with pytest.raises(InvalidInputError, match=expected):
        parse_rdf(data, media_type, CENTRAL_GRAPH)


def test_parse_rdf_accepts_good_input_into_the_given_graph() -> None:
    doc = '{"@context": {"@vocab": "https://a.example/"}, "@id": "s", "p": {"@id": "o"}}'
    assert parse_rdf(doc, "application/ld+json; charset=utf-8", CENTRAL_GRAPH, base_iri="https://a.example/") == [
        Quad(NamedNode("https://a.example/s"), NamedNode("https://a.example/p"), NamedNode("https://a.example/o"),
             CENTRAL_GRAPH)]
    with pytest.raises(InvalidInputError, match="base IRI"):
        parse_rdf('<s> <p> "x" .', "text/turtle", CENTRAL_GRAPH, base_iri="not an iri")


def test_change_sets_refuse_blank_nodes_the_default_graph_and_non_quads() -> None:
    s, p = NamedNode("https://a.example/s"), NamedNode("https://a.example/p")
    with pytest.raises(InvalidInputError, match="blank node"):
        ChangeSet(insert=[Quad(BlankNode(), p, Literal("x"), CENTRAL_GRAPH)])
    with pytest.raises(InvalidInputError, match="blank node"):
        ChangeSet(guard=[Quad(s, p, BlankNode(), CENTRAL_GRAPH)])
    with pytest.raises(InvalidInputError, match="default graph"):
        ChangeSet(delete=[Quad(s, p, Literal("x"), DefaultGraph())])
    with pytest.raises(InvalidInputError, match="pyoxigraph Quads"):
        ChangeSet(insert=[(s, p, Literal("x"), CENTRAL_GRAPH)])  # type: ignore[list-item]


@pytest.mark.parametrize("graph", [ONTOLOGY_GRAPH, SHAPES_GRAPH], ids=["ontology", "shapes"])
def test_writes_into_the_vocabulary_graphs_are_refused(backend: Backend, graph: NamedNode) -> None:
    store = backend.store
    before = store.quads(g=graph)
    quad = Quad(PHT.Train, NamedNode("http://www.w3.org/2000/01/rdf-schema#comment"), Literal("hacked"), graph)
    existing = next(q for q in before if not has_blank(q))
    for change in (ChangeSet(insert=[quad]), ChangeSet(delete=[existing])):
        with pytest.raises(InvalidInputError, match="loaded from files"):
            store.apply(change)
    assert len(store.quads(g=graph)) == len(before)
    assert not store.contains(quad)


def test_malformed_sparql_is_refused_with_the_parsers_message(backend: Backend) -> None:
    store = backend.store
    with pytest.raises(InvalidInputError) as refused:
        store.query("SELECT ?s WHERE { ?s ?p }")
    message = str(refused.value)
    if backend.name == "embedded":
        assert message.startswith("malformed SPARQL query: error at 1:26: expected")
    elif backend.name == "oxigraph":  # the server's parser, the same message
        assert message.startswith("the SPARQL server refused the request as malformed: error at 1:26: expected")
    else:
        assert message.startswith("the SPARQL server refused the request as malformed: Virtuoso 37000 Error "
                                  "SP030: SPARQL compiler, line 1: syntax error")
        assert "SPARQL query:" not in message  # Virtuoso's echo of the request is left out
    # parameters: a value that is not an RDF term, a missing value
    with pytest.raises(InvalidInputError, match="must be an RDF term"):
        store.query("SELECT * WHERE { $s ?p ?o }", bindings={"s": "https://a.example/s"})
    with pytest.raises(InvalidInputError, match=r"missing value for parameter\(s\): \$s"):
        store.query("SELECT * WHERE { $s ?p ?o }")


# -- 7. remote store down --------------------------------------------------------------------------------


def _small_change(name: str) -> ChangeSet:
    """A valid change on top of the scenario: a new data set held by a scenario station."""
    g, dataset = CENTRAL_GRAPH, ex(f"dataset-{name}")
    return ChangeSet(insert=[
        Quad(dataset, RDF_TYPE, NamedNode("http://www.w3.org/ns/dcat#Dataset"), g),
        Quad(dataset, DCT_TITLE, Literal(f"data set {name}"), g),
        Quad(dataset, PHT.heldBy, ex("station-aachen"), g),
    ])


def test_unreachable_server_raises_store_unavailable_quickly() -> None:
    port = servers.free_port()
    store = RemoteStore(f"http://127.0.0.1:{port}/query", f"http://127.0.0.1:{port}/update", timeout=5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        store.query("ASK {}")
    with pytest.raises(StoreUnavailable, match="cannot be reached"):
        store.apply(_small_change("a"))
    with pytest.raises(StoreUnavailable):
        store.load_vocabulary()
    assert time.monotonic() - started < 5


def _oxigraph_on(location: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start ``oxigraph serve`` on an existing store directory (as servers.py finds it); wait until it answers."""
    beside_python = Path(sys.executable).parent / "oxigraph"
    command = str(beside_python) if beside_python.is_file() else shutil.which("oxigraph")
    assert command is not None
    with open(log, "wb") as out:
        proc = subprocess.Popen([command, "serve", "--location", str(location), "--bind", f"127.0.0.1:{port}"],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/query?query=ASK%7B%7D", timeout=1):
                return proc
        except (urllib.error.URLError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop(proc)
                raise RuntimeError(f"oxigraph did not restart: {log.read_text(errors='replace')[-2000:]}") from None
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.mark.real_component("oxigraph")
def test_server_stopped_between_writes_fails_cleanly_and_keeps_the_committed_data(tmp_path: Path) -> None:
    if (reason := servers.available("oxigraph")) is not None:
        pytest.skip(reason)
    with servers.oxigraph_server() as ox:
        store = RemoteStore(ox.query_url, ox.update_url, timeout=5)
        store.load_vocabulary()
        store.apply(ChangeSet(insert=SCENARIO))
        store.apply(_small_change("before"))
        committed = central(store)

        class DiesBeforeCommit(RemoteStore):
            """The server goes away after validation, right before the update request."""

            def _update(self, text: str) -> None:
                os.killpg(ox.pid, signal.SIGTERM)
                os.waitpid(ox.pid, 0)
                super()._update(text)

        started = time.monotonic()
        with pytest.raises(StoreUnavailable), DiesBeforeCommit(ox.query_url, ox.update_url, timeout=5) as dying:
            dying.apply(_small_change("lost"))
        with pytest.raises(StoreUnavailable):  # down before the write starts: the guard/validation reads fail
            store.apply(transition(ex("train-0002"), PHT.Running, PHT.Finished, ex("ev-lost")))
        with pytest.raises(StoreUnavailable):
            store.query("ASK {}")
        assert time.monotonic() - started < 5
        store.close()

        # the same data directory, served again: exactly what was committed, nothing of the failed writes
        port = servers.free_port()
        proc = _oxigraph_on(ox.location, port, tmp_path / "restart.log")
        try:
            again = RemoteStore(f"http://127.0.0.1:{port}/query", f"http://127.0.0.1:{port}/update", timeout=5)
            assert central(again) == committed
            assert again.apply(_small_change("after")).conforms
            assert central(again) == committed | _small_change("after").insert
            again.close()
        finally:
            _stop(proc)


# -- 8. literal canonicalisation -------------------------------------------------------------------------


def _value_step(store: GraphStore, resource: NamedNode, prop: NamedNode, old: Literal, new: Literal) -> None:
    """Replace the single value ``old`` of a maxCount-1 property by ``new`` in one validated change set."""
    store.apply(ChangeSet(delete=[Quad(resource, prop, old, CENTRAL_GRAPH)],
                          insert=[Quad(resource, prop, new, CENTRAL_GRAPH)]))


@pytest.mark.parametrize("resource,prop,first,second,first_stored", [
    ("def-fedavg-mortality", "rounds", ("02", "integer"), ("05", "integer"), ("2", "integer")),
    ("policy-aachen-approval", "requiresApproval", ("0", "boolean"), ("1", "boolean"), ("false", "boolean")),
    ("ev-0001-aachen-mem", "value", ("2.50", "decimal"), ("3", "decimal"), ("2.5", "decimal")),
    ("ev-0001-aachen-net", "value", ("007.000", "decimal"), ("0.0", "decimal"), ("7", "decimal")),
], ids=["integer", "boolean", "decimal", "integral-decimal"])
def test_non_canonical_literals_can_be_written_and_deleted_as_written(
        scenario: Backend, resource: str, prop: str, first: tuple[str, str], second: tuple[str, str],
        first_stored: tuple[str, str]) -> None:
    store, node, p = scenario.store, ex(resource), PHT[prop]

    def lit(value: tuple[str, str]) -> Literal:
        return Literal(value[0], datatype=NamedNode(XSD + value[1]))

    [original] = [q.object for q in store.quads(node, p, None, CENTRAL_GRAPH)]
    _value_step(store, node, p, original, lit(first))  # maxCount 1: the old value must count as gone
    assert [q.object for q in store.quads(node, p, None, CENTRAL_GRAPH)] == [lit(first_stored)]
    assert store.contains(Quad(node, p, lit(first), CENTRAL_GRAPH))  # found by the literal as written too
    _value_step(store, node, p, lit(first), lit(second))  # deleted with the literal as the writer wrote it
    assert [q.object for q in store.quads(node, p, None, CENTRAL_GRAPH)] == [canonical(lit(second))]
    assert central(store) == stored_form(SCENARIO) - {Quad(node, p, original, CENTRAL_GRAPH)} | {
        Quad(node, p, canonical(lit(second)), CENTRAL_GRAPH)}
    # the stored value, as read back from the server, still satisfies its shape (e.g. sh:datatype) when the
    # node is validated again: re-asserting one of its types makes it a focus node of a change
    type_quad = store.quads(node, RDF_TYPE, None, CENTRAL_GRAPH)[0]
    report = store.validate(ChangeSet(insert=[type_quad]))
    assert report.conforms and report.focus_nodes_checked >= 1


def _round_trip(term: Literal) -> Literal:
    """The literal as an Oxigraph store hands it back."""
    scratch = Store()
    scratch.add(Quad(ex("s"), ex("p"), term, CENTRAL_GRAPH))
    (stored,) = [q.object for q in scratch]
    return stored  # type: ignore[return-value]


@given(when=st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
       digits=st.integers(0, 12), zone=st.sampled_from(["Z", "+00:00", "-05:30", ""]))
def test_timestamps_are_canonicalised_as_oxigraph_stores_them(when: datetime, digits: int, zone: str) -> None:
    """Timestamps skip the round trip through a scratch store (they are new in every write): the shortcut must
    give exactly what the store keeps, trailing zeros of the fraction included."""
    fraction = f"{when.microsecond:06d}000000"[:digits]
    value = Literal(when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + zone,
                    datatype=NamedNode(XSD + "dateTime"))
    assert canonical(value) == _round_trip(value)


@pytest.mark.parametrize("text", ["2024-02-29T23:59:59.000Z", "2026-02-30T00:00:00Z", "2026-11-28T24:00:00Z",
                                  "2026-11-28T01:02:03.0000000001Z", "0999-01-01T00:00:00Z", "yesterday",
                                  "2026-11-28T01:02:03.500Z"])
def test_odd_timestamps_are_canonicalised_as_oxigraph_stores_them(text: str) -> None:
    value = Literal(text, datatype=NamedNode(XSD + "dateTime"))
    assert canonical(value) == _round_trip(value)


# -- large change sets ------------------------------------------------------------------------------------


def test_a_large_change_set_is_committed_and_removed_in_one_request_each(scenario: Backend) -> None:
    """1,200 quads: more than Virtuoso accepts in one INSERT DATA operation (about 1,000), fewer than it
    accepts in one request (about 3,000); the store splits the operations, the request stays one."""
    change = ChangeSet(insert=[q for i in range(400) for q in _small_change(f"bulk-{i:03}").insert])
    assert len(change.insert) == 1200
    store = scenario.store
    assert store.apply(change).conforms
    assert central(store) == stored_form(SCENARIO) | change.insert
    assert store.apply(ChangeSet(delete=change.insert)).conforms
    assert central(store) == stored_form(SCENARIO)


def test_an_update_of_several_operations_is_one_change_on_every_backend(backend: Backend) -> None:
    """Graph management and a WHERE that sees the operations before it, planned into one change set and applied
    the same way on every back-end (graph_store/_update_sequence.py)."""
    a, b = station_graph("contract-a"), station_graph("contract-b")
    label = NamedNode("http://www.w3.org/2000/01/rdf-schema#label")
    store = backend.store
    outcome = store.apply_update(
        f"INSERT DATA {{ GRAPH {a} {{ <https://a.example/x> {label} \"x\" }} }} ; "
        f"INSERT {{ GRAPH {a} {{ ?s {label} \"seen\" }} }} WHERE {{ GRAPH {a} {{ ?s {label} \"x\" }} }} ; "
        f"COPY {a} TO {b} ; CLEAR GRAPH {a} ; ADD {b} TO DEFAULT ; CREATE SILENT GRAPH {b}")
    assert outcome.solutions >= 1
    x = NamedNode("https://a.example/x")
    expected = {Triple(x, label, Literal("x")), Triple(x, label, Literal("seen"))}
    assert not store.quads(g=a)
    assert {q.triple for q in store.quads(g=b)} == expected
    assert {q.triple for q in store.quads(g=DEFAULT_GRAPH)} == expected
    store.apply_update(f"MOVE {b} TO {a} ; CLEAR DEFAULT")
    assert {q.triple for q in store.quads(g=a)} == expected and not store.quads(g=b)
    assert not store.quads(g=DEFAULT_GRAPH)


def test_drop_all_leaves_the_vocabulary_and_the_servers_own_graphs(scenario: Backend) -> None:
    """``DROP ALL`` is the platform's data: never the ontology or shapes, nor a graph of the server behind a remote
    store (Virtuoso keeps its quad maps, which it cannot run without, in ``virtrdf#``)."""
    store = scenario.store
    counts = "SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g"
    claims = NamedNode(GRAPH_NS + "write-lock")  # the writers' claims come and go (one is kept 50 ms after a write)
    server = {row["g"]: row["n"] for row in store.select(counts) if store.server_graph(row["g"]) and row["g"] != claims}
    if scenario.name == "virtuoso":
        assert NamedNode("http://www.openlinksw.com/schemas/virtrdf#") in server
    vocabulary = _vocabulary_size(store)
    store.apply_update("DROP ALL")
    assert not central(store)
    assert _vocabulary_size(store) == vocabulary
    assert {row["g"]: row["n"] for row in store.select(counts)
            if store.server_graph(row["g"]) and row["g"] != claims} == server


# -- 9. few requests per write (issue 16) -----------------------------------------------------------------


def test_existing_names_exactly_the_stored_quads_among_many(scenario: Backend) -> None:
    """``existing`` asks a remote server in one request per 100 quads: 150 stored quads (typed literals among
    them) and their near misses (another object, another graph) come back as exactly the stored ones."""
    stored = sorted(central(scenario.store), key=str)[:150]
    other = NamedNode(GRAPH_NS + "no-such-graph")
    misses = [Quad(q.subject, q.predicate, Literal("not stored"), q.graph_name) for q in stored[:40]]
    misses += [Quad(q.subject, q.predicate, q.object, other) for q in stored[40:80]]
    assert any(isinstance(q.object, Literal) and q.object.datatype != NamedNode(XSD + "string") for q in stored)
    assert scenario.store.existing([*stored, *misses]) == frozenset(stored)
    assert scenario.store.existing([]) == frozenset()


class _LateCommit(RemoteStore):
    """A store whose guarded commit arrives after another client removed its guard (past every check)."""

    remover: GraphStore | None = None
    guard: Quad

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        if self.remover is not None:
            self.remover.apply(transition(self.guard.subject, PHT.Running, PHT.Finished, ex("ev-first")))  # type: ignore[arg-type]
        super()._commit(change, sizes)


@pytest.mark.parametrize("name", [pytest.param("oxigraph", marks=pytest.mark.real_component("oxigraph")),
                                  pytest.param("virtuoso", marks=pytest.mark.real_component("virtuoso"))])
def test_a_guarded_commit_that_did_not_apply_is_a_conflict_and_a_large_one_commits(
        request: pytest.FixtureRequest, name: str) -> None:
    """A commit whose guard another client removed first is reported as a conflict and wrote nothing: on
    Oxigraph server the commit request itself fails, elsewhere the confirmation after it asks for a few of its
    insertions that were absent before it. And a large
    guarded change commits and is confirmed (Oxigraph server: 2,400 quads; an MPU batch is 3,300, and an ASK of
    all of them aborted the server; Virtuoso takes about 1,000 in a guarded template)."""
    backend = _remote(request, name)
    store = backend.store
    assert isinstance(store, RemoteStore)
    store.apply(ChangeSet(insert=SCENARIO))
    guard = Quad(ex("train-0002"), PHT.state, PHT.Running, CENTRAL_GRAPH)
    server = request.getfixturevalue("oxigraph_endpoint" if name == "oxigraph" else "own_virtuoso")
    credentials = (server.user, server.password) if name == "virtuoso" else (None, None)
    late = _LateCommit(store.query_url, store.update_url, user=credentials[0], password=credentials[1],
                       timeout=20, write_lock_ttl_s=None)  # no lock: the other client's removal gets through
    late.apply(ChangeSet(insert=[Quad(ex("late-note"), DCT_TITLE, Literal("n"), CENTRAL_GRAPH)]))  # counts known,
    late.remover, late.guard = backend.connect(), guard  # and stale once the remover wrote
    first = transition(guard.subject, PHT.Running, PHT.Finished, ex("ev-first"))  # type: ignore[arg-type]
    before = central(store)
    with pytest.raises(ConflictError):
        late.apply(ChangeSet(insert=_small_change("late").insert, guard=[guard]))
    assert central(store) == before - first.delete | first.insert, "nothing of the late commit was written"
    assert_sizes_kept(store)  # nor its size change
    # Oxigraph server's commit request says itself whether its guard held (a DROP of a marker graph its guard
    # made); Virtuoso's cannot, and a confirmation asks afterwards. Neither leaves a marker graph behind.
    assert late._commit_checks_itself() is (name == "oxigraph")  # noqa: SLF001
    markers = "SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } FILTER(CONTAINS(STR(?g), \"commit-check\")) }"
    assert not list(store.query(markers))
    guard = Quad(guard.subject, PHT.state, PHT.Finished, CENTRAL_GRAPH)
    big = [q for i in range(800 if name == "oxigraph" else 300) for q in _small_change(f"big-{i:03}").insert]
    assert store.apply(ChangeSet(insert=big, guard=[guard])).conforms
    assert_sizes_kept(store)
    assert stored_form(big) <= central(store)
    late.close()
    store.close()


@contextlib.contextmanager
def _requests_sent(store: RemoteStore) -> Iterator[list[tuple[str, int]]]:
    """The requests the store sends meanwhile, in order: ``(field, 1)`` for one (``update`` or ``query``; the
    write lock's own left out), ``("queries", n)`` for n queries sent at once."""
    sent: list[tuple[str, int]] = []
    http = store._http  # noqa: SLF001
    post, post_queries = http.post, http.post_queries

    def one(url: str, field: str, text: str, **kw: Any) -> tuple[bytes, str]:
        if LOCK_GRAPH.value not in text or CENTRAL_GRAPH.value in text:  # not the lock's own (a lapsed claim)
            sent.append((field, 1))
        return post(url, field, text, **kw)

    def several(url: str, texts: list[str], **kw: Any) -> list[tuple[bytes, str]]:
        sent.append(("queries", len(texts)))
        return post_queries(url, texts, **kw)
    http.post, http.post_queries = one, several  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        http.post, http.post_queries = post, post_queries  # type: ignore[method-assign]


@pytest.mark.parametrize("name", [pytest.param("oxigraph", marks=pytest.mark.real_component("oxigraph")),
                                  pytest.param("virtuoso", marks=pytest.mark.real_component("virtuoso"))])
def test_a_writes_wheres_and_read_ahead_are_asked_for_at_once(request: pytest.FixtureRequest, name: str) -> None:
    """A write of named updates (a lifecycle step: an execution's transition and its train's) asks the server for
    every WHERE and for the quads of the nodes it names in one round trip (``SparqlHttp.post_queries``), and then
    only commits: nothing is asked for one by one in between. What it writes is what the updates say."""
    backend = _remote(request, name)
    store = backend.store
    assert isinstance(store, RemoteStore)
    store.apply(ChangeSet(insert=SCENARIO))  # the lock's claim, the counts and the server's probe are behind us
    fire = named_query("fire_transition").text
    execution, train = ex("exec-0002-aachen-r2"), ex("train-0002")
    step = {"graph": CENTRAL_GRAPH, "reason": Literal(""), "time": Literal("2026-12-05T16:00:00Z",
                                                                                  datatype=NamedNode(XSD + "dateTime"))}
    with _requests_sent(store) as sent:
        outcomes = store.apply_updates(
            [(fire, {**step, "resource": execution, "from": PHT.Running, "to": PHT.Failed, "role": PHT.Operator,
                     "agent": ex("central"), "event": ex("ev-step-1")}),
             (fire, {**step, "resource": train, "from": PHT.Running, "to": PHT.Failed, "role": PHT.Operator,
                     "agent": ex("central"), "event": ex("ev-step-2")})],
            extra=ChangeSet(guard=[Quad(train, PHT.state, PHT.Running, CENTRAL_GRAPH)]), require_match=True)
    commit = sent.index(("update", 1))
    assert sent[:commit] == [("queries", 3)], "both WHEREs and the read-ahead, at once, and nothing else"
    assert [o.solutions for o in outcomes] == [1, 1]
    assert {(q.subject, q.object) for q in store.quads(None, PHT.state, None, CENTRAL_GRAPH)} >= {
        (execution, PHT.Failed), (train, PHT.Failed)}
    assert Quad(ex("ev-step-1"), PHT.aboutTrain, train, CENTRAL_GRAPH) in central(store)
    assert Quad(ex("ev-step-1"), PHT.aboutExecution, execution, CENTRAL_GRAPH) in central(store)
    assert Quad(ex("ev-step-2"), PHT.aboutTrain, train, CENTRAL_GRAPH) in central(store)
    assert_sizes_kept(store)
    with pytest.raises(ConflictError):  # the same step again: its WHERE, answered with the others, matches nothing
        store.apply_updates([(fire, {**step, "resource": train, "from": PHT.Running, "to": PHT.Failed,
                                     "role": PHT.Operator, "agent": ex("central"), "event": ex("ev-step-3")})],
                            require_match=True)
    store.close()


@pytest.mark.parametrize("name", [pytest.param("oxigraph", marks=pytest.mark.real_component("oxigraph")),
                                  pytest.param("virtuoso", marks=pytest.mark.real_component("virtuoso"))])
def test_the_ontology_a_remote_read_ahead_answers_locally_is_what_the_server_holds(
        request: pytest.FixtureRequest, name: str) -> None:
    """A remote store's read-ahead answers the ontology graph's quads from the vocabulary's files, not from the
    server: for every node of the ontology, they are exactly what the server answers (literals in the form it
    hands back), and a node the ontology does not describe has none."""
    store = _remote(request, name).store
    assert isinstance(store, RemoteStore)
    out_of, into_of, entangled = store._ontology_index()  # noqa: SLF001
    assert out_of and into_of and PHT.Incremental in entangled  # a value of an owl:oneOf list
    served = {q for q in store.quads(None, None, None, ONTOLOGY_GRAPH)
              if not isinstance(q.subject, BlankNode) and not isinstance(q.object, BlankNode)}
    assert {q for quads in out_of.values() for q in quads} == served
    assert {q for quads in into_of.values() for q in quads} == served
    scope = frozenset([ONTOLOGY_GRAPH, CENTRAL_GRAPH])
    plain = sorted((n for n in out_of if isinstance(n, NamedNode) and n not in entangled), key=str)
    for nodes, typed in [(plain[:150] + [ex("train-0001")], [PHT.Queued, PHT.Train, ex("train-0001")]),
                         ([PHT.Incremental, PHT.Queued], [PHT.Incremental])]:  # the server's answer, blank nodes too
        assert store._ontology_answers(nodes, typed) is (PHT.Incremental not in nodes)  # noqa: SLF001
        outgoing, incoming = store._quads_of(nodes, typed, scope)  # noqa: SLF001
        for node in nodes:
            assert outgoing[node] == frozenset(store.quads(node, None, None, ONTOLOGY_GRAPH)) \
                | frozenset(store.quads(node, None, None, CENTRAL_GRAPH)), node
        for node in typed:
            assert incoming[node] == frozenset(store.quads(None, None, node, ONTOLOGY_GRAPH)) \
                | frozenset(store.quads(None, None, node, CENTRAL_GRAPH)), node
    store.close()


# -- 10. the graphs' sizes, kept by every write (graph_store/_sizes.py) --------------------------------------


def counted_by_scan(store: GraphStore) -> dict[NamedNode, int]:
    """Every graph's quads, counted by a full scan (what ``graph_sizes.rq`` answered before the sizes were kept)."""
    rows = store.select("SELECT ?g (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } } GROUP BY ?g")
    return {row["g"]: int(row["n"].value) for row in rows  # type: ignore[union-attr]
            if isinstance(row["g"], NamedNode) and not store.server_graph(row["g"])}


def kept_sizes(store: GraphStore) -> dict[NamedNode, int]:
    return {row["graph"]: int(row["triples"].value) for row in store.run_query("graph_sizes")}  # type: ignore[union-attr]


def assert_sizes_kept(store: GraphStore) -> None:
    scanned = counted_by_scan(store)
    assert scanned and kept_sizes(store) == scanned


def test_every_kind_of_write_keeps_the_graphs_sizes(scenario: Backend) -> None:
    """Insertions of stored and new quads, deletions of stored and missing ones, in two graphs at once; a guarded
    step; a refused, a conflicting and an empty write; a SPARQL update; the vocabulary's reload: after each, the
    sizes ``graph_sizes.rq`` reads are what a full scan counts."""
    store = scenario.store
    assert_sizes_kept(store)
    station = station_graph("sizes")
    stored = sorted(stored_form(SCENARIO), key=str)[:5]
    new = [Quad(ex(f"sized-{i}"), DCT_TITLE, Literal(f"t{i}"), station) for i in range(7)]
    note = Quad(ex("sized-note"), DCT_TITLE, Literal("n"), CENTRAL_GRAPH)
    store.apply(ChangeSet(insert=[*stored, *new, note]))
    assert kept_sizes(store)[station] == 7
    assert_sizes_kept(store)
    missing = Quad(ex("never-written"), DCT_TITLE, Literal("x"), station)
    before = kept_sizes(store)[CENTRAL_GRAPH]
    store.apply(ChangeSet(delete=[*new[:3], missing, note], insert=[new[3]]))
    assert kept_sizes(store)[station] == 4 and kept_sizes(store)[CENTRAL_GRAPH] == before - 1
    assert_sizes_kept(store)
    train = ex("train-0002")
    step = transition(train, PHT.Running, PHT.Finished, ex("ev-sizes-1"))
    store.apply(step)
    assert_sizes_kept(store)
    sizes = kept_sizes(store)
    with pytest.raises(ConflictError):
        store.apply(transition(train, PHT.Running, PHT.Finished, ex("ev-sizes-2")))
    with pytest.raises(ValidationFailed):
        store.apply(ChangeSet(insert=[Quad(ex("sized-train"), RDF_TYPE, PHT.Train, CENTRAL_GRAPH)]))
    store.apply(ChangeSet(insert=stored[1:3]))  # stored already: no size changes
    assert kept_sizes(store) == sizes
    store.apply_update(f"DELETE WHERE {{ GRAPH {station} {{ ?s {DCT_TITLE} ?t }} }}")
    assert station not in kept_sizes(store)  # an emptied graph is not listed, as a scan does not find it
    assert_sizes_kept(store)
    store.load_vocabulary()
    assert_sizes_kept(store)


def test_the_sizes_graph_is_the_stores_own(scenario: Backend) -> None:
    """No change set writes it, ``DROP ALL`` leaves it (and keeps counting), and it is not data: a store's quad
    count leaves it out."""
    from graph_store._vocab import SIZES_GRAPH

    store = scenario.store
    assert store.server_graph(SIZES_GRAPH)
    with pytest.raises(InvalidInputError, match="sizes are the store's own"):
        store.apply(ChangeSet(insert=[Quad(CENTRAL_GRAPH, NamedNode("http://rdfs.org/ns/void#triples"), Literal(1),
                                           SIZES_GRAPH)]))
    assert_sizes_kept(store)
    store.apply_update("DROP ALL")
    assert CENTRAL_GRAPH not in kept_sizes(store)
    assert_sizes_kept(store)
    assert len(store) == sum(counted_by_scan(store).values())


def test_a_bulk_load_drops_the_sizes_until_they_are_counted_again() -> None:
    """Writing through ``EmbeddedStore.oxigraph`` is not counted: the sizes are dropped (none rather than wrong
    ones) and writes do not keep them, until ``recount()``; from then on writes keep them again."""
    store = EmbeddedStore()
    store.load_vocabulary()
    store.apply(ChangeSet(insert=SCENARIO))
    assert_sizes_kept(store)
    store.oxigraph.extend([Quad(ex("bulk"), DCT_TITLE, Literal("b"), CENTRAL_GRAPH)])
    assert kept_sizes(store) == {}
    store.apply(ChangeSet(insert=[Quad(ex("bulk-2"), DCT_TITLE, Literal("b"), CENTRAL_GRAPH)]))
    assert kept_sizes(store) == {}
    assert store.recount() == counted_by_scan(store)
    assert_sizes_kept(store)
    store.apply(ChangeSet(insert=[Quad(ex("bulk-3"), DCT_TITLE, Literal("b"), CENTRAL_GRAPH)]))
    assert_sizes_kept(store)


def test_clients_writing_in_turn_keep_the_sizes_and_a_lost_guard_is_still_a_conflict(scenario: Backend) -> None:
    """Each client knows the counts it last wrote; on a server whose commit request checks itself (Oxigraph) it
    replaces exactly those, on the condition that they still hold. Another client's write in between makes that
    condition fail: the counts are read again and the commit sent again, so nothing is lost or counted twice. A
    write whose guard another client removed is still a conflict that wrote nothing, whatever it knew of the counts."""
    first, second = scenario.store, scenario.connect()
    for i in range(3):  # in turn: each write of one client follows one of the other
        for n, client in enumerate((first, second)):
            client.apply(ChangeSet(insert=[Quad(ex(f"turn-{i}-{n}"), DCT_TITLE, Literal("t"), CENTRAL_GRAPH)]))
            assert_sizes_kept(first)
    train = ex("train-0002")
    second.apply(transition(train, PHT.Running, PHT.Finished, ex("ev-turn-1")))
    before = counted_by_scan(first)
    with pytest.raises(ConflictError):
        first.apply(transition(train, PHT.Running, PHT.Finished, ex("ev-turn-2")))
    assert counted_by_scan(first) == before
    assert_sizes_kept(first)
    first.apply(ChangeSet(insert=[Quad(ex("turn-last"), DCT_TITLE, Literal("t"), CENTRAL_GRAPH)]))
    assert_sizes_kept(first)
    if second is not first:
        second.close()


def _fire(resource: NamedNode, frm: NamedNode, to: NamedNode, event: str, role: NamedNode = PHT.Operator
          ) -> tuple[str, dict[str, Any]]:
    """``fire_transition.rq`` moving ``resource`` from ``frm`` to ``to``, recording event ``ex:<event>``."""
    return (named_query("fire_transition").text,
            {"graph": CENTRAL_GRAPH, "resource": resource, "from": frm, "to": to, "role": role, "agent": ex("central"),
             "event": ex(event), "reason": Literal(""),
             "time": Literal("2026-12-05T18:00:00Z", datatype=NamedNode(XSD + "dateTime"))})


def _state(store: GraphStore, resource: NamedNode) -> set[Any]:
    return {q.object for q in store.quads(resource, PHT.state, None, CENTRAL_GRAPH)}


COLOGNE = [Quad(ex("station-cologne"), RDF_TYPE, PHT.Station, CENTRAL_GRAPH),
           Quad(ex("station-cologne"), NamedNode("http://purl.org/dc/terms/identifier"), Literal("cologne"),
                CENTRAL_GRAPH),
           Quad(ex("station-cologne"), DCT_TITLE, Literal("Cologne station", language="en"), CENTRAL_GRAPH),
           Quad(ex("station-cologne"), PHT.ownedBy, ex("org-ukaachen"), CENTRAL_GRAPH),
           Quad(ex("station-cologne"), PHT.runtime, PHT.DockerRuntime, CENTRAL_GRAPH)]
"""A new station: what an execution at it needs to exist first."""
AT_COLOGNE = [Quad(ex("exec-0002-cologne-r2"), RDF_TYPE, PHT.Execution, CENTRAL_GRAPH),
              Quad(ex("exec-0002-cologne-r2"), PHT.ofTrain, ex("train-0002"), CENTRAL_GRAPH),
              Quad(ex("exec-0002-cologne-r2"), PHT.atStation, ex("station-cologne"), CENTRAL_GRAPH),
              Quad(ex("exec-0002-cologne-r2"), PHT.round, Literal(2), CENTRAL_GRAPH),
              Quad(ex("exec-0002-cologne-r2"), PHT.state, PHT.Queued, CENTRAL_GRAPH)]
"""A new execution at the new station (``sh:class pht:Station``: it conforms only once the station exists)."""


def test_a_group_of_writes_is_applied_as_each_would_be_alone_in_turn(scenario: Backend) -> None:
    """``apply_writes``: each write gets what ``apply_updates`` would give it, applied alone after those before
    it (a remote store applies them as one group: its WHEREs answered at once, one commit). A write the one before
    it changed conflicts; one that matches nothing, does not conform or writes the ontology graph is refused alone
    and writes nothing; one that conforms only after an earlier write of the group is applied, and one that comes
    before what it needs is refused."""
    store = scenario.store
    aachen, leipzig, rejected = ex("exec-0002-aachen-r2"), ex("exec-0002-leipzig-r2"), ex("train-0003")
    assert not store.validate(ChangeSet(insert=AT_COLOGNE)).conforms, "needs the station first"
    incomplete = ChangeSet(insert=[Quad(ex("exec-incomplete"), RDF_TYPE, PHT.Execution, CENTRAL_GRAPH)])
    writes = [
        UpdateWrite([_fire(aachen, PHT.Running, PHT.OutputUnderReview, "ev-g0", PHT.StationRole)],
                    require_match=True),
        UpdateWrite([_fire(leipzig, PHT.Pulling, PHT.Running, "ev-g1", PHT.StationRole)], require_match=True),
        UpdateWrite([_fire(aachen, PHT.Running, PHT.Failed, "ev-g2")], require_match=True),  # after ev-g0: too late
        UpdateWrite([_fire(rejected, PHT.Running, PHT.Failed, "ev-g3")], require_match=True),  # it is rejected
        UpdateWrite([], extra=incomplete),
        UpdateWrite([], extra=ChangeSet(insert=[Quad(ex("station-cologne"), RDF_TYPE, PHT.Station, ONTOLOGY_GRAPH)])),
        UpdateWrite([], extra=ChangeSet(insert=AT_COLOGNE)),  # before the station it needs
        UpdateWrite([], extra=ChangeSet(insert=COLOGNE)),
        UpdateWrite([], extra=ChangeSet(insert=AT_COLOGNE)),  # after it
    ]
    results = store.apply_writes(writes)
    kinds = [type(r).__name__ if isinstance(r, Exception) else [o.solutions for o in r] for r in results]
    assert kinds == [[1], [1], "ConflictError", "ConflictError", "ValidationFailed", "InvalidInputError",
                     "ValidationFailed", [], []]
    assert _state(store, aachen) == {PHT.OutputUnderReview}
    assert _state(store, leipzig) == {PHT.Running}
    assert _state(store, rejected) == {PHT.Rejected}
    assert _state(store, ex("exec-0002-cologne-r2")) == {PHT.Queued}
    events = {q.subject for q in store.quads(None, RDF_TYPE, PHT.StateChangeEvent, CENTRAL_GRAPH)}
    assert {ex("ev-g0"), ex("ev-g1")} <= events and not {ex("ev-g2"), ex("ev-g3")} & events
    assert not store.quads(ex("exec-incomplete"), None, None, None)
    assert not store.quads(ex("station-cologne"), None, None, ONTOLOGY_GRAPH)
    if isinstance(store, EmbeddedStore):  # (a server does not let validate_everything follow blank nodes)
        assert store.validate_everything().conforms
    assert_sizes_kept(store)


@pytest.mark.parametrize("name", [pytest.param("oxigraph", marks=pytest.mark.real_component("oxigraph")),
                                  pytest.param("virtuoso", marks=pytest.mark.real_component("virtuoso"))])
def test_a_group_of_remote_writes_costs_the_round_trips_of_one(request: pytest.FixtureRequest, name: str) -> None:
    """On a remote store, ``apply_writes`` of independent lifecycle steps asks for every WHERE and the read-ahead
    at once and commits them all in ONE request: a group of three steps sends what one step sends."""
    backend = _remote(request, name)
    store = backend.store
    assert isinstance(store, RemoteStore)
    store.apply(ChangeSet(insert=SCENARIO))
    with _requests_sent(store) as sent:
        results = store.apply_writes([
            UpdateWrite([_fire(ex("exec-0002-aachen-r2"), PHT.Running, PHT.OutputUnderReview, "ev-r0",
                               PHT.StationRole)], require_match=True),
            UpdateWrite([_fire(ex("exec-0002-leipzig-r2"), PHT.Pulling, PHT.Running, "ev-r1", PHT.StationRole)],
                        extra=ChangeSet(guard=[Quad(ex("train-0002"), PHT.state, PHT.Running, CENTRAL_GRAPH)]),
                        require_match=True),
            UpdateWrite([_fire(ex("train-0002"), PHT.Running, PHT.Queued, "ev-r2")], require_match=True)])
    assert [[o.solutions for o in r] for r in results if not isinstance(r, Exception)] == [[1], [1], [1]]
    confirmed = [] if store._commit_checks_itself() else ["query"]  # noqa: SLF001  # Virtuoso: the commit's ASK
    assert [field for field, _ in sent] == ["queries", "update", *confirmed], "the WHEREs and read-ahead; one commit"
    assert _state(store, ex("exec-0002-aachen-r2")) == {PHT.OutputUnderReview}
    assert _state(store, ex("exec-0002-leipzig-r2")) == {PHT.Running}
    assert _state(store, ex("train-0002")) == {PHT.Queued}
    assert_sizes_kept(store)

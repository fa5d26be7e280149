"""Differential test: the incremental validator reports exactly what pySHACL reports on the project's shapes.

Both see the data *as stored* (Oxigraph canonicalises typed literals on write), pySHACL with the ontology as
``ont_graph`` and no inference, as ``tests/fixtures/shapes/README.md`` describes. Three comparisons:

1. full validation of the valid scenario plus each invalid fixture (every node is a focus node);
2. incremental validation of *inserting* each invalid fixture into a store holding the valid scenario
   (only the focus nodes the change touches) against pySHACL on the whole resulting graph;
3. the same for random change sets (hypothesis): deletions and insertions drawn from the scenario, which
   exercise removed types behind sh:class, nested sh:node shapes, inverse paths and cardinalities.

Since the scenario conforms, every result pySHACL finds after a change is caused by the change, so
equality in 2 and 3 proves the incremental choice of focus nodes misses nothing and adds nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import rdflib
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyoxigraph import Literal, NamedNode, Quad, RdfFormat, parse
from shacl_oracle import our_keys, pyshacl_results, same_results

from graph_store import CENTRAL_GRAPH, ChangeSet, EmbeddedStore, ValidationFailed
from graph_store._convert import to_rdflib

FIXTURES = Path(__file__).parent / "fixtures" / "shapes"
VALID = sorted((FIXTURES / "valid").glob("*.ttl"))
INVALID = sorted((FIXTURES / "invalid").glob("*.ttl"))
XSD = "http://www.w3.org/2001/XMLSchema#"


def read(files: list[Path]) -> list[Quad]:
    quads: list[Quad] = []
    for f in files:
        quads += [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in parse(path=f, format=RdfFormat.TURTLE)]
    return quads


def new_store(quads: list[Quad]) -> EmbeddedStore:
    """A store holding the vocabulary and ``quads``, loaded unvalidated (the scenario under test)."""
    store = EmbeddedStore()
    store.load_vocabulary()
    store.oxigraph.extend(quads)
    return store


def stored_data_graph(store: EmbeddedStore) -> rdflib.Graph:
    g = rdflib.Graph()
    for q in store.quads(None, None, None, CENTRAL_GRAPH):
        g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
    return g


def full_validation(store: EmbeddedStore) -> set:
    return our_keys(store.validate_everything().results)


def assert_same(ours: set, store: EmbeddedStore) -> None:
    oracle = pyshacl_results(stored_data_graph(store))
    ok, why = same_results(ours, oracle)
    assert ok, why


SCENARIO = read(VALID)


def test_valid_scenario_conforms_for_both() -> None:
    store = new_store(SCENARIO)
    ours = full_validation(store)
    assert ours == set()
    assert_same(ours, store)


@pytest.mark.parametrize("fixture", INVALID, ids=[f.stem for f in INVALID])
def test_full_validation_matches_pyshacl(fixture: Path) -> None:
    store = new_store(SCENARIO + read([fixture]))
    ours = full_validation(store)
    assert ours, f"{fixture.name} should violate a shape"
    assert_same(ours, store)


@pytest.mark.parametrize("fixture", INVALID, ids=[f.stem for f in INVALID])
def test_incremental_insert_matches_pyshacl(fixture: Path) -> None:
    store = new_store(SCENARIO)
    change = ChangeSet(insert=set(read([fixture])) - set(SCENARIO))
    before = len(store)
    with pytest.raises(ValidationFailed) as refused:
        store.apply(change)
    assert len(store) == before, "a refused write must leave the store unchanged"
    ours = our_keys(refused.value.report.results)
    store.oxigraph.extend(change.insert)  # the state pySHACL must judge: scenario + fixture
    assert_same(ours, store)


# -- random change sets ------------------------------------------------------------------------------------

_NODES = sorted({q.subject for q in SCENARIO} | {q.object for q in SCENARIO if isinstance(q.object, NamedNode)}, key=str)
_PREDICATES = sorted({q.predicate for q in SCENARIO}, key=str)
_ODD_LITERALS = [
    Literal("0", datatype=NamedNode(XSD + "integer")), Literal("-3", datatype=NamedNode(XSD + "integer")),
    Literal("not a number", datatype=NamedNode(XSD + "integer")), Literal("2026-11-27T08:00:00Z",
                                                                         datatype=NamedNode(XSD + "dateTime")),
    Literal("2026-11-27T08:00:00", datatype=NamedNode(XSD + "dateTime")), Literal("x"), Literal("x", language="en"),
    Literal("2026-02-30T08:00:00Z", datatype=NamedNode(XSD + "dateTime")),
    Literal("2026-11-27", datatype=NamedNode(XSD + "dateTime")),
    Literal("yesterday", datatype=NamedNode(XSD + "dateTime")),
    Literal("true", datatype=NamedNode(XSD + "boolean")), Literal("12.5", datatype=NamedNode(XSD + "decimal")),
    Literal("sha256:" + "a" * 64), Literal("a" * 64),
]


@st.composite
def change_sets(draw: st.DrawFn) -> ChangeSet:
    rng = random.Random(draw(st.integers(0, 2**32)))
    n_delete = draw(st.integers(0, 3))
    n_insert = draw(st.integers(0 if n_delete else 1, 3))
    delete = rng.sample(SCENARIO, n_delete)
    insert = []
    for _ in range(n_insert):
        kind = rng.random()
        base = rng.choice(SCENARIO)
        if kind < 0.4:  # an existing subject gets another value for one of its predicates
            obj = rng.choice(_NODES + _ODD_LITERALS)
            insert.append(Quad(base.subject, base.predicate, obj, CENTRAL_GRAPH))
        elif kind < 0.7:  # a node gets another (or a first) type
            typ = rng.choice([q.object for q in SCENARIO if q.predicate.value.endswith("#type")])
            insert.append(Quad(rng.choice(_NODES), base.predicate if False else
                               NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"), typ, CENTRAL_GRAPH))
        else:  # any predicate between any nodes, or to odd literals
            insert.append(Quad(rng.choice(_NODES), rng.choice(_PREDICATES), rng.choice(_NODES + _ODD_LITERALS),
                               CENTRAL_GRAPH))
    return ChangeSet(delete=delete, insert=insert)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(change=change_sets())
def test_incremental_random_changes_match_pyshacl(change: ChangeSet) -> None:
    store = new_store(SCENARIO)
    ours = our_keys(store.validate(change).results)
    for q in change.delete:
        store.oxigraph.remove(q)
    store.oxigraph.extend(change.insert)
    assert_same(ours, store)


def test_a_literal_that_a_nested_shape_checks_has_no_values_and_fails_it() -> None:
    """sh:node on a value that is a literal: the nested shape's property shapes see no values (a literal is
    never a subject), as in pySHACL; the store is not asked for a literal's outgoing quads (pyoxigraph refuses
    that with a TypeError)."""
    from pyoxigraph import Store

    from graph_store._shapes import compile_shapes
    from graph_store._validator import IncrementalValidator, PostChangeView

    shapes = rdflib.Graph().parse(format="turtle", data="""
        @prefix sh: <http://www.w3.org/ns/shacl#> . @prefix ex: <https://example.org/> .
        ex:ThingShape a sh:NodeShape ; sh:targetClass ex:Thing ;
            sh:property [ sh:path ex:part ; sh:node ex:PartShape ] .
        ex:PartShape a sh:NodeShape ; sh:property [ sh:path ex:name ; sh:minCount 1 ] .
    """)
    ex, g = "https://example.org/", NamedNode("https://example.org/g")
    thing = NamedNode(ex + "a")
    data = [Quad(thing, NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"), NamedNode(ex + "Thing"), g),
            Quad(thing, NamedNode(ex + "part"), Literal("x"), g)]
    store = Store()
    store.extend(data)
    validator = IncrementalValidator(compile_shapes(shapes), superclasses={}, declared_terms=frozenset())
    view = PostChangeView(lambda s, p, o: store.quads_for_pattern(s, p, o, None))
    results = validator.validate_nodes(view, [thing])
    assert [(r.focus_node, r.value, r.component_name) for r in results] == \
        [(thing, Literal("x"), "NodeConstraintComponent")]

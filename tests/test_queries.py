"""Named queries: loading, parameter binding as RDF terms, and injection attempts that must stay data."""

from __future__ import annotations

import pytest
from pyoxigraph import Literal, NamedNode, Quad, QuerySolutions

from graph_store import (
    CENTRAL_GRAPH,
    ChangeSet,
    EmbeddedStore,
    InvalidInputError,
    bind,
    list_named_queries,
    named_query,
)
from graph_store._sparql_text import parameters_of

DCT_ID = NamedNode("http://purl.org/dc/terms/identifier")
HOSTILE = [
    'x" } ; DROP ALL ; #',
    "x' } INSERT DATA { <urn:a> <urn:b> <urn:c> } #",
    "}}}}",
    "# just a comment",
    "line one\nline two } \n#",
    "> <urn:evil> .",
    '"""',
    "\\",
    "$identifier",
    "?resource",
]


@pytest.fixture()
def store() -> EmbeddedStore:
    """A store with one identifier per hostile string plus a harmless one; no validation needed for this."""
    s = EmbeddedStore()
    quads = [Quad(NamedNode(f"urn:res:{i}"), DCT_ID, Literal(v), CENTRAL_GRAPH) for i, v in enumerate(HOSTILE)]
    quads.append(Quad(NamedNode("urn:res:plain"), DCT_ID, Literal("plain"), CENTRAL_GRAPH))
    s.oxigraph.extend(quads)
    return s


@pytest.mark.parametrize("index,value", list(enumerate(HOSTILE)))
def test_hostile_parameter_values_stay_data(store: EmbeddedStore, index: int, value: str) -> None:
    before = len(store)
    rows = list(store.run_query("resources_by_identifier", identifier=Literal(value)))
    assert [r["resource"] for r in rows] == [NamedNode(f"urn:res:{index}")]
    assert len(store) == before  # nothing was injected into the store


def test_hostile_value_in_an_update_template_stays_data(store: EmbeddedStore) -> None:
    hostile = 'x" } ; DROP ALL ; INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:b> "pwned" } } #'
    text = bind("INSERT DATA { GRAPH <urn:g> { <urn:s> <urn:p> $v } }", {"v": Literal(hostile)})
    store.oxigraph.update(text)
    values = [q.object for q in store.quads(NamedNode("urn:s"), NamedNode("urn:p"))]
    assert values == [Literal(hostile)]
    assert store.quads(NamedNode("urn:a")) == []  # the "injected" triple does not exist
    assert len(store.quads(None, DCT_ID)) == len(HOSTILE) + 1  # DROP ALL did not run


def test_iri_parameters_cannot_break_out() -> None:
    with pytest.raises(ValueError):
        NamedNode("urn:x> } DROP ALL #")  # not an IRI: refused before it can reach a query


def test_parameter_tokens_inside_strings_iris_and_comments_are_not_parameters() -> None:
    text = 'SELECT * WHERE { ?s <urn:$x> "$x" . \'$x\' """$x""" } # $x\n'
    assert parameters_of(text) == frozenset()
    assert parameters_of("SELECT * WHERE { $a ?b $c FILTER(?b < $d) }") == {"a", "c", "d"}


def test_missing_unknown_and_non_term_parameters_are_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"missing value for parameter\(s\): \$identifier"):
        bind(named_query("resources_by_identifier").text, {})
    with pytest.raises(InvalidInputError, match=r"unknown parameter\(s\): \$other"):
        bind("SELECT * WHERE { $a ?p ?o }", {"a": NamedNode("urn:a"), "other": NamedNode("urn:b")})
    with pytest.raises(InvalidInputError, match="must be an RDF term"):
        bind("SELECT * WHERE { $a ?p ?o }", {"a": "urn:a"})


def test_named_queries_are_documented_and_classified() -> None:
    queries = list_named_queries()
    assert queries, "sparql_queries/ holds no .rq files"
    for q in queries:
        assert q.description, f"{q.name}.rq has no leading # documentation"
    assert not named_query("trains_by_state").is_update
    with pytest.raises(InvalidInputError, match="no SPARQL query named 'nope'"):
        named_query("nope")


def test_malformed_sparql_gives_the_parser_message(store: EmbeddedStore) -> None:
    with pytest.raises(InvalidInputError, match="malformed SPARQL query"):
        store.query("SELECT * WHERE { ?s ?p }")


def test_writes_to_protected_graphs_are_refused(store: EmbeddedStore) -> None:
    from graph_store import ONTOLOGY_GRAPH
    change = ChangeSet(insert=[Quad(NamedNode("urn:a"), NamedNode("urn:b"), NamedNode("urn:c"), ONTOLOGY_GRAPH)])
    with pytest.raises(InvalidInputError, match="loaded from files"):
        store.apply(change)


def test_select_ask_and_run_query_answer_in_their_own_form(store: EmbeddedStore) -> None:
    """The typed reads: ``select`` and ``run_query`` give solutions, ``ask`` a bool; the wrong form is refused."""
    terms = {"g": CENTRAL_GRAPH, "p": DCT_ID}
    rows = store.select("SELECT ?r WHERE { GRAPH $g { ?r $p ?v } }", bindings=terms)
    assert isinstance(rows, QuerySolutions)
    assert [v.value for v in rows.variables] == ["r"]
    assert len(list(rows)) == len(HOSTILE) + 1
    assert store.ask('ASK { GRAPH $g { <urn:res:plain> $p "plain" } }', bindings=terms) is True
    assert store.ask('ASK { GRAPH $g { <urn:res:plain> $p "other" } }', bindings=terms) is False
    with pytest.raises(InvalidInputError, match="expected a SPARQL SELECT query"):
        store.select("ASK { ?s ?p ?o }")
    with pytest.raises(InvalidInputError, match="expected a SPARQL ASK query"):
        store.ask("SELECT * WHERE { ?s ?p ?o }")
    named = store.run_query("resources_by_identifier", identifier=Literal("plain"))
    assert isinstance(named, QuerySolutions)
    assert [r["resource"] for r in named] == [NamedNode("urn:res:plain")]

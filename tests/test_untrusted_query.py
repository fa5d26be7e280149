"""A caller's query reaches a remote server only as the platform re-serialises it (graph_store._untrusted_query).

Faithful: every named query and a corpus of typical queries answer the same re-serialised as written (embedded
store, a REAL Oxigraph server and a REAL Virtuoso). Hostile: Virtuoso's DEFINE pragmas, ``bif:`` / ``sql:``
functions (``bif:http_get`` made Virtuoso fetch a loopback URL), the server's predefined prefixes, escapes that
spell them, SERVICE and deep nesting are refused; a station confined to its graph on Virtuoso sees no other
station's data whatever it writes.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from pyoxigraph import Literal, NamedNode, Quad, QueryBoolean
from test_remote_queries import (
    REMOTES,
    VIRTUOSO_DIFFERS,
    World,
    _remote,
    answers,
    bindings_for,
    copy_into,
    drop_data_graphs,
)
from test_remote_queries import world as world  # noqa: F401  (the shared module-scoped fixture)

from graph_store import (
    EmbeddedStore,
    GraphStore,
    InvalidInputError,
    RemoteStore,
    StoreUnavailable,
    list_named_queries,
    station_graph,
)
from graph_store._sparql_text import bind, quad_block
from graph_store._untrusted_query import MAX_NESTING, reserialise_query

P = "PREFIX pht: <https://w3id.org/pht-kg/vocab#>\nPREFIX dcterms: <http://purl.org/dc/terms/>\n" \
    "PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>\nPREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>\n"
C = "<https://w3id.org/pht-kg/graph/central>"

CORPUS = [
    P + "SELECT ?t ?id WHERE { GRAPH " + C + " { ?t a pht:Train ; dcterms:identifier ?id } } ORDER BY DESC(?id)",
    P + "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } }",
    P + "SELECT ?s (GROUP_CONCAT(DISTINCT STR(?o); separator=\"|\") AS ?all) WHERE { GRAPH ?g { ?s dcterms:identifier "
        "?o } } GROUP BY ?s HAVING (COUNT(?o) >= 1) ORDER BY ?s LIMIT 5 OFFSET 1",
    P + "ASK { GRAPH " + C + " { ?s a pht:Station } }",
    P + "ASK WHERE { GRAPH ?g { ?s a pht:NoSuchClass } }",
    P + "CONSTRUCT { ?s rdfs:label ?id } WHERE { GRAPH " + C + " { ?s a pht:Station ; dcterms:identifier ?id } }",
    P + "CONSTRUCT WHERE { ?s a pht:Station }",
    P + "SELECT * WHERE { GRAPH " + C + " { ?e pht:forStop/pht:stopIndex ?i . OPTIONAL { ?e pht:round ?r } "
        "FILTER(?i >= 0 && ?i != -1 && ?i < 2.5e3 && ?i IN (0, 1, 2) && ?i NOT IN (-7)) } }",
    P + "SELECT ?c WHERE { GRAPH <https://w3id.org/pht-kg/graph/ontology> { ?c rdfs:subClassOf+ ?d . "
        "?c ^rdfs:subClassOf* ?e . ?c !(rdfs:label|rdfs:comment) ?x } } ORDER BY ?c LIMIT 20",
    P + "SELECT ?s ?id WHERE { VALUES (?id ?x) { (\"aachen\" UNDEF) (\"leipzig\" 1) } GRAPH " + C
        + " { ?s dcterms:identifier ?id } }",
    P + "SELECT ?s ?label WHERE { GRAPH " + C + " { ?s a pht:Station . { ?s dcterms:identifier ?l } UNION "
        "{ ?s dcterms:title ?l } MINUS { ?s dcterms:identifier \"cologne\" } } "
        "BIND(IF(STRLEN(?l) > 3, UCASE(?l), CONCAT(\"#\", ?l, \"}\")) AS ?label) "
        "FILTER(REGEX(?l, \"^[a-z]\", \"i\") && LANGMATCHES(LANG(\"x\"@en-GB), \"en\") || false) }",
    P + "SELECT ?n WHERE { { SELECT (MAX(?i) AS ?n) WHERE { GRAPH " + C + " { ?x pht:stopIndex ?i } } } "
        "FILTER(xsd:integer(?n) = ?n && xsd:string(?n) != \"\"\"a \"quoted\" # not a comment\"\"\") }",
    P + "# a comment naming DEFINE input:default-graph-uri <urn:x> and bif:http_get\n"
        "SELECT ?s WHERE { GRAPH " + C + " { ?s a pht:Station FILTER NOT EXISTS { ?s dcterms:identifier 'aachen' } "
        "FILTER EXISTS { ?s a [] } } } # trailing",
    "BASE <https://w3id.org/pht-kg/>\nPREFIX v: <vocab#>\nSELECT ?s WHERE { GRAPH <graph/central> { ?s a v:Station } }",
    P + "SELECT ?s WHERE { GRAPH " + C + " { ?s pht:definition ?d . ?d pht:route _:r . _:r ?p ?o } } LIMIT 3",
    P + "SELECT ?x WHERE { BIND((1 + -2) * 3 / 4.0 - +5 AS ?x) }",
]


def answer(store: GraphStore, text: str) -> object:
    """answers() of test_remote_queries, an ASK's boolean as such, a server's failure as its class."""
    try:
        if isinstance(store.query(text), QueryBoolean):
            return bool(store.query(text))
    except StoreUnavailable as e:  # a query a server cannot plan fails the same way either way
        return type(e)
    return answers(store, text, {})


def same_answer(store: GraphStore, text: str) -> None:
    rewritten = reserialise_query(text)
    assert answer(store, rewritten) == answer(store, text), rewritten


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_a_typical_query_answers_the_same_re_serialised(world: World, index: int) -> None:  # noqa: F811
    same_answer(world.store, CORPUS[index])


def test_every_named_query_answers_the_same_re_serialised(world: World) -> None:  # noqa: F811
    for q in list_named_queries():
        if not q.is_update:
            same_answer(world.store, bind(q.text, bindings_for(q.name, q.parameters, world)))


def test_the_rewritten_text_has_no_comments_prefixes_or_dataset_when_one_is_given() -> None:
    text = ("# define input:default-graph-uri <urn:other>\nPREFIX ex: <https://example.org/>\n"
            "SELECT * FROM ex:other FROM NAMED <urn:other> WHERE { ?s ex:p \"#x\" } # define get:soft \"soft\"")
    assert reserialise_query(text, drop_dataset=True) == 'SELECT * WHERE { ?s <https://example.org/p> "#x" }'
    assert "FROM <https://example.org/other> FROM NAMED <urn:other>" in reserialise_query(text)


REFUSED = {
    "define": ("DEFINE input:default-graph-uri <https://w3id.org/pht-kg/graph/central> SELECT * { ?s ?p ?o }",
               "DEFINE pragmas"),
    "define-lowercase": ("define input:same-as \"yes\"\nSELECT * { ?s ?p ?o }", "DEFINE pragmas"),
    "bif-predefined": ("SELECT (bif:http_get(\"http://127.0.0.1:1/\") AS ?x) {}", "prefix bif: is not declared"),
    "bif-declared": ("PREFIX bif: <bif:>\nSELECT (bif:http_get(\"http://127.0.0.1:1/\") AS ?x) {}", "<bif:"),
    "bif-iri": ("SELECT * { BIND(<bif:http_get>(\"http://127.0.0.1:1/\") AS ?x) }", "<bif:http_get>"),
    "bif-escaped": ("SELECT * { BIND(<\\u0062if:http_get>(\"http://127.0.0.1:1/\") AS ?x) }", "<bif:http_get>"),
    "bif-magic-predicate": ("SELECT * { ?s <bif:contains> \"x\" }", "<bif:contains>"),
    "sql": ("PREFIX sql: <sql:>\nSELECT * { FILTER(sql:rdf_view_sync()) }", "<sql:"),
    "custom-function": ("SELECT * { BIND(<http://example.org/fn>(1) AS ?x) }", "function <http://example.org/fn>"),
    "service": ("SELECT * { SERVICE <http://127.0.0.1:1/sparql> { ?s ?p ?o } }", "SERVICE"),
    "update": ("INSERT DATA { GRAPH <urn:g> { <urn:a> <urn:b> <urn:c> } }", "not a SPARQL 1.1 query"),
    "load": ("LOAD <http://127.0.0.1:1/x>", "not a SPARQL 1.1 query"),
    "virtuoso-option": ("SELECT * { ?s ?p ?o OPTION (QUIETCAST) }", "not a SPARQL 1.1 query"),
    "backslash": ("SELECT * { ?s ?p ?o } \\u0023", "unexpected character"),
    "relative-iri": ("SELECT * { ?s <p> ?o }", "relative IRI"),
    "nesting": ("ASK " + "{" * 2500 + "}" * 2500, f"more than {MAX_NESTING} deep"),
    "nesting-parentheses": ("SELECT * { FILTER(" + "(" * 2500 + "1" + ")" * 2500 + ") }", "deep"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_vendor_extensions_and_hostile_texts_are_refused_with_one_sentence(case: str) -> None:
    text, reason = REFUSED[case]
    started = time.monotonic()
    with pytest.raises(InvalidInputError) as refused:
        reserialise_query(text)
    assert reason in str(refused.value)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("piece", ["a.", "_:a.", "<a", '"""a', "ex:a.", "a.a:"])
def test_rewriting_stays_linear_on_texts_built_to_make_a_lexer_backtrack(piece: str) -> None:
    """A name's trailing dots, unterminated IRIs and strings: 400 KB is refused or rewritten in about a second
    (the first lexer took 33 s for 64 KB of ``a.a.a.``: a regex retried at every letter)."""
    text = "PREFIX ex: <https://example.org/>\nSELECT * WHERE { ?s ?p " + piece * (400_000 // len(piece)) + " }"
    started = time.monotonic()
    try:
        reserialise_query(text)
    except InvalidInputError:
        pass
    assert time.monotonic() - started < 5


def test_prefixed_names_keep_their_dots_and_escapes() -> None:
    text = ("PREFIX ex: <http://e/>\nPREFIX e.x: <http://f/>\nSELECT * WHERE { ?s ex:p ex:a.b. ?s ex:q ex:c\\. . "
            "_:x.y ex:p ex:d. ?s e.x:y ?o. ?s ex:%41 ?o }")
    assert reserialise_query(text) == ("SELECT * WHERE { ?s <http://e/p> <http://e/a.b> . ?s <http://e/q> <http://e/c.> "
                                       ". _:x.y <http://e/p> <http://e/d> . ?s <http://f/y> ?o . ?s <http://e/%41> ?o }")


# -- on real servers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("remote", REMOTES)
def test_named_and_typical_queries_answer_the_same_re_serialised_on_a_real_server(
        request: pytest.FixtureRequest, world: World, remote: str) -> None:  # noqa: F811
    store = _remote(request, remote)
    copy_into(world.store, store)
    unreliable = VIRTUOSO_DIFFERS if remote == "virtuoso" else {}  # their answers are wrong there either way
    texts = [bind(q.text, bindings_for(q.name, q.parameters, world)) for q in list_named_queries()
             if not q.is_update and q.name not in unreliable] + CORPUS
    for text in texts:
        assert answer(store, reserialise_query(text)) == answer(store, text), text[:300]


class _Listener(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    requests_seen: list[str]


@pytest.fixture()
def listener() -> Iterator[_Listener]:
    """A loopback HTTP server that records every request it gets."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            server.requests_seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret from the loopback")

        def log_message(self, *_: object) -> None:
            pass

    server = _Listener(("127.0.0.1", 0), Handler)
    server.requests_seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.real_component("virtuoso")
def test_bif_http_get_never_reaches_virtuoso_from_a_caller(request: pytest.FixtureRequest,
                                                           listener: _Listener) -> None:
    store = _remote(request, "virtuoso")
    url = f"http://127.0.0.1:{listener.server_address[1]}/probe"
    attack = f'SELECT (bif:http_get("{url}") AS ?page) WHERE {{ }}'
    # the attack is real: sent as written (the platform's own, trusted path), Virtuoso fetches the URL
    page = [row["page"] for row in store.select(attack)]
    assert listener.requests_seen == ["/probe"] and page == [Literal("secret from the loopback")]
    listener.requests_seen.clear()
    for text in (attack, "PREFIX b: <bif:>\n" + attack.replace("bif:", "b:"),
                 attack.replace("bif:http_get", "<bif:http_get>"), attack.replace("bif:http_get", "<\\u0062if:http_get>"),
                 f'SELECT ?x WHERE {{ BIND(<sql:http_get>("{url}") AS ?x) }}'):
        with pytest.raises(InvalidInputError):
            store.query_untrusted(text)
    time.sleep(0.3)
    assert listener.requests_seen == []


OWN, OTHER = station_graph("aachen"), station_graph("leipzig")
SECRET = NamedNode("https://example.org/leipzig-secret")


@pytest.fixture()
def two_stations_on_virtuoso(request: pytest.FixtureRequest) -> Iterator[RemoteStore]:
    store = _remote(request, "virtuoso")
    drop_data_graphs(store)
    quads = [Quad(NamedNode("https://example.org/aachen-row"), NamedNode("https://example.org/p"), Literal("own"), OWN),
             Quad(SECRET, NamedNode("https://example.org/p"), Literal("secret"), OTHER)]
    store._update(f"INSERT DATA {{ {quad_block(quads)} }}")  # noqa: SLF001
    yield store
    drop_data_graphs(store)


TRICKS = [
    "SELECT * WHERE { ?s ?p ?o }",
    "SELECT * WHERE { GRAPH ?g { ?s ?p ?o } }",
    f"SELECT * WHERE {{ GRAPH {OTHER} {{ ?s ?p ?o }} }}",
    f"SELECT * FROM {OTHER} WHERE {{ ?s ?p ?o }}",
    f"SELECT * FROM NAMED {OTHER} WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}",
    f"# define input:default-graph-uri {OTHER}\nSELECT * WHERE {{ ?s ?p ?o }}",
    f"SELECT * WHERE {{ ?s ?p ?o }} # define input:default-graph-uri {OTHER}",
    f"DEFINE input:default-graph-uri {OTHER} SELECT * WHERE {{ ?s ?p ?o }}",
    f"DEFINE input:named-graph-uri {OTHER} SELECT * WHERE {{ GRAPH ?g {{ ?s ?p ?o }} }}",
    f"define input:default-graph-exclude {OWN} SELECT * WHERE {{ ?s ?p ?o }}",
    f"SELECT * WHERE {{ {SECRET} ?p ?o }}",
    f"CONSTRUCT {{ ?s ?p ?o }} WHERE {{ GRAPH {OTHER} {{ ?s ?p ?o }} }}",
    f"ASK {{ GRAPH {OTHER} {{ ?s ?p ?o }} }}",
    f"SELECT * WHERE {{ {{ SELECT * FROM {OTHER} WHERE {{ ?s ?p ?o }} }} }}",
    f'SELECT * WHERE {{ BIND(bif:sprintf("%s", "x") AS ?x) GRAPH {OTHER} {{ ?s ?p ?o }} }}',
    "SELECT * WHERE { ?s <bif:contains> 'secret' }",
    # measured to count leipzig's data on Virtuoso 7.2 with named-graph-uri = aachen only: GRAPH is refused
    f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH {OTHER} {{ ?s ?p ?o }} }}",
    f"SELECT (COUNT(*) AS ?n) WHERE {{ VALUES ?g {{ {OTHER} }} GRAPH ?g {{ ?s ?p ?o }} }}",
    f"SELECT (COUNT(*) AS ?n) WHERE {{ BIND({OTHER} AS ?g) GRAPH ?g {{ ?s ?p ?o }} }}",
    f"SELECT (COUNT(*) AS ?n) WHERE {{ GRAPH ?g {{ ?s ?p ?o }} FILTER(?g = {OTHER}) }}",
    f"ASK {{ GRAPH ?g {{ {SECRET} ?p ?o }} }}",
    f"SELECT (COUNT(*) AS ?n) WHERE {{ {SECRET} ?p ?o }}",
    "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o FILTER(?o = 'secret') }",
]


@pytest.mark.real_component("virtuoso")
@pytest.mark.parametrize("index", range(len(TRICKS)))
def test_a_station_confined_to_its_graph_on_virtuoso_sees_no_other_station(
        two_stations_on_virtuoso: RemoteStore, index: int) -> None:
    store = two_stations_on_virtuoso
    trick = TRICKS[index]
    try:
        result = store.query_untrusted(trick, default_graph=[OWN], named_graphs=[OWN])
    except InvalidInputError:
        return  # refused: fine
    assert not trick.upper().startswith("DEFINE") and "GRAPH" not in trick and "bif:" not in trick, \
        "pragmas, GRAPH and bif: are refused, not merely harmless"
    seen = str(bool(result)) if isinstance(result, QueryBoolean) else " ".join(str(item) for item in result)
    assert "secret" not in seen and "leipzig" not in seen, seen
    if trick.startswith("ASK"):
        assert not bool(result)
    if "COUNT" in trick:
        assert 'value="1"' not in seen and "value=1 " not in seen, seen  # aachen's graph has no match


@pytest.mark.real_component("virtuoso")
def test_the_confined_station_still_reads_its_own_graph(two_stations_on_virtuoso: RemoteStore) -> None:
    rows = list(two_stations_on_virtuoso.query_untrusted("SELECT ?o WHERE { ?s ?p ?o }", default_graph=[OWN],
                                                         named_graphs=[OWN]))
    assert [row["o"] for row in rows] == [Literal("own")]  # type: ignore[index]


def test_the_embedded_store_runs_a_callers_query_as_written() -> None:
    store = EmbeddedStore()
    assert bool(store.query_untrusted("ASK { FILTER(<http://example.org/fn>(1) = 1 || true) }"))
    store.close()


@pytest.mark.real_component("virtuoso")
def test_an_operators_update_where_is_re_serialised_too(request: pytest.FixtureRequest, listener: _Listener) -> None:
    store = _remote(request, "virtuoso")
    url = f"http://127.0.0.1:{listener.server_address[1]}/probe"
    update = (f"PREFIX b: <bif:>\nINSERT {{ GRAPH {OWN} {{ <https://example.org/a> <https://example.org/p> ?page }} }} "
              f'WHERE {{ BIND(b:http_get("{url}") AS ?page) }}')
    with pytest.raises(InvalidInputError, match="<bif:"):
        store.plan_update(update, untrusted=True)
    time.sleep(0.3)
    assert listener.requests_seen == []


@pytest.mark.parametrize("remote", REMOTES)
def test_a_legit_update_plans_the_same_re_serialised(request: pytest.FixtureRequest, world: World,  # noqa: F811
                                                     remote: str) -> None:
    store = _remote(request, remote)
    copy_into(world.store, store)
    update = ("PREFIX pht: <https://w3id.org/pht-kg/vocab#>\nPREFIX dcterms: <http://purl.org/dc/terms/>\n"
              "# a comment: DELETE everything\nINSERT { GRAPH <https://w3id.org/pht-kg/graph/central> { ?s "
              "dcterms:description ?d } } WHERE { GRAPH <https://w3id.org/pht-kg/graph/central> { ?s a pht:Station ; "
              "dcterms:identifier ?id } BIND(CONCAT(\"station \", ?id) AS ?d) }")
    trusted, untrusted = store.plan_update(update), store.plan_update(update, untrusted=True)
    assert untrusted.solutions == trusted.solutions == 3
    assert untrusted.change.insert == trusted.change.insert

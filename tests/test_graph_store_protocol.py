"""The SPARQL 1.1 Graph Store HTTP Protocol at /rdf-graphs (orchestrator/graph_store_protocol.py).

Same set-up as tests/test_sparql_protocol.py (whose helpers it uses): an in-memory EmbeddedStore with the
vocabulary and the valid scenario written through apply(), a fake principal from test headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pyoxigraph import DefaultGraph, Literal, NamedNode, Quad, RdfFormat, Triple, parse, serialize
from test_sparql_protocol import (
    AACHEN,
    EX,
    LEIPZIG,
    OPERATOR,
    RDFS_LABEL,
    RESEARCHER,
    SETTINGS,
    STATION_AACHEN,
    TestClient,
    ex,
    fake_principal,
    scenario_store,
    serve,
)

from graph_store import (
    AUDIT_GRAPH,
    CENTRAL_GRAPH,
    DEFAULT_GRAPH,
    ONTOLOGY_GRAPH,
    RDF_TYPE,
    SHAPES_GRAPH,
    EmbeddedStore,
    station_graph,
)
from orchestrator.graph_store_protocol import graph_store_router
from orchestrator.naming import Iris
from orchestrator.readable_graph import ReadableGraphs

STATION_ADMIN = {"X-Test-Role": "station-admin", "X-Test-Station": "aachen"}
TURTLE = {"Content-Type": "text/turtle"}
DCT_IDENTIFIER = NamedNode("http://purl.org/dc/terms/identifier")
NEW_GRAPH = station_graph("bonn")
PHT_STATION = NamedNode("https://w3id.org/pht-kg/vocab#Station")


def make_app(store: EmbeddedStore, **settings: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(graph_store_router(store=store, principal=fake_principal,
                                          settings=replace(SETTINGS, **settings),
                                          readable=ReadableGraphs(store, Iris(SETTINGS.base_iri))))
    return app


@pytest.fixture()
def env() -> Iterator[tuple[EmbeddedStore, TestClient]]:
    store = scenario_store()
    with TestClient(make_app(store), headers=OPERATOR) as c:
        yield store, c
    store.close()


def url(graph: NamedNode) -> str:
    return "/rdf-graphs?" + httpx.QueryParams({"graph": graph.value}).__str__()


def triples_of(store: EmbeddedStore, graph: NamedNode) -> set[Triple]:
    return {q.triple for q in store.quads(g=graph)}


def labels(*names: str) -> str:
    return "\n".join(f'<{EX}{n}> <{RDFS_LABEL.value}> "{n}" .' for n in names)


# -- reading ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("accept,fmt", [
    (None, RdfFormat.TURTLE),
    ("application/n-triples", RdfFormat.N_TRIPLES),
    ("application/ld+json", RdfFormat.JSON_LD),
    ("application/rdf+xml", RdfFormat.RDF_XML),
    ("application/rdf+xml;q=0.5, application/ld+json;q=0.8", RdfFormat.JSON_LD),
])
def test_get_answers_the_graph_in_the_negotiated_format(env: tuple[EmbeddedStore, TestClient], accept: str | None,
                                                        fmt: RdfFormat) -> None:
    store, c = env
    r = c.get(url(CENTRAL_GRAPH), headers={"Accept": accept} if accept else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == fmt.media_type
    got = {q.triple for q in parse(r.content, format=fmt)}
    assert got == triples_of(store, CENTRAL_GRAPH) and len(got) > 300


def test_get_of_an_empty_graph_is_404_and_unacceptable_formats_406(env: tuple[EmbeddedStore, TestClient]) -> None:
    _, c = env
    assert c.get(url(NEW_GRAPH)).status_code == 404
    r = c.get(url(CENTRAL_GRAPH), headers={"Accept": "application/sparql-results+json"})
    assert r.status_code == 406 and "Accept" in r.json()["detail"]


def test_head_has_the_headers_of_get_and_no_body(env: tuple[EmbeddedStore, TestClient]) -> None:
    _, c = env
    get = c.get(url(AACHEN), headers={"Accept": "application/n-triples"})
    head = c.head(url(AACHEN), headers={"Accept": "application/n-triples"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == str(len(get.content))
    missing = c.head(url(NEW_GRAPH))
    assert missing.status_code == 404 and missing.content == b""


def test_the_default_graph_is_stored_in_its_named_graph_and_read_by_every_query(
        env: tuple[EmbeddedStore, TestClient]) -> None:
    """?default reads (empty: 200, it always exists) and writes DEFAULT_GRAPH; a query's union default graph
    includes it; the store's own default graph stays empty (every statement lives in a named graph)."""
    store, c = env
    r = c.get("/rdf-graphs?default", headers={"Accept": "application/n-triples"})
    assert r.status_code == 200 and r.content == b""
    assert c.put("/rdf-graphs?default", content=labels("x"), headers=TURTLE).status_code == 201
    assert triples_of(store, DEFAULT_GRAPH) == {Triple(ex("x"), RDFS_LABEL, Literal("x"))}
    assert c.post("/rdf-graphs?default", content=labels("y"), headers=TURTLE).status_code == 204
    got = c.get("/rdf-graphs?default", headers={"Accept": "application/n-triples"})
    assert {q.triple for q in parse(got.content, format=RdfFormat.N_TRIPLES)} == triples_of(store, DEFAULT_GRAPH)
    assert store.query("ASK { $s ?p ?o }", bindings={"s": ex("y")}, union_default_graph=True)
    assert c.delete("/rdf-graphs?default").status_code == 204
    assert not store.quads(g=DEFAULT_GRAPH) and not store.quads(g=DefaultGraph())


@pytest.mark.parametrize("query", ["", "/x?graph=https://example.org/g", "?graph=relative/iri", "?default&graph=https://example.org/g",
                                   "?graph=https://example.org/a&graph=https://example.org/b"])
def test_the_target_must_be_exactly_one_graph(env: tuple[EmbeddedStore, TestClient], query: str) -> None:
    _, c = env
    r = c.get("/rdf-graphs" + query)
    assert r.status_code == 400 and r.json()["detail"]


# -- writing ---------------------------------------------------------------------------------------------


def test_put_creates_then_replaces_a_graph(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    first = c.put(url(NEW_GRAPH), content=labels("a", "b"), headers=TURTLE)
    assert first.status_code == 201, first.text
    assert triples_of(store, NEW_GRAPH) == {Triple(ex(n), RDFS_LABEL, Literal(n)) for n in ("a", "b")}
    second = c.put(url(NEW_GRAPH), content=labels("b", "c"), headers=TURTLE)
    assert second.status_code == 204, second.text
    assert triples_of(store, NEW_GRAPH) == {Triple(ex(n), RDFS_LABEL, Literal(n)) for n in ("b", "c")}
    assert {q.triple for q in parse(c.get(url(NEW_GRAPH)).content, format=RdfFormat.TURTLE)} == \
        triples_of(store, NEW_GRAPH)


def test_post_merges_into_a_graph(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    assert c.post(url(NEW_GRAPH), content=labels("a"), headers=TURTLE).status_code == 201
    assert c.post(url(NEW_GRAPH), content=labels("b"), headers=TURTLE).status_code == 204
    assert triples_of(store, NEW_GRAPH) == {Triple(ex(n), RDFS_LABEL, Literal(n)) for n in ("a", "b")}


def test_delete_drops_a_graph_and_a_second_delete_is_404(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    assert c.delete(url(LEIPZIG)).status_code == 204
    assert not store.quads(g=LEIPZIG) and store.quads(g=AACHEN)
    assert c.delete(url(LEIPZIG)).status_code == 404
    assert c.get(url(LEIPZIG)).status_code == 404


@pytest.mark.parametrize("fmt", [RdfFormat.N_TRIPLES, RdfFormat.JSON_LD, RdfFormat.RDF_XML])
def test_every_accepted_format_can_be_written(env: tuple[EmbeddedStore, TestClient], fmt: RdfFormat) -> None:
    store, c = env
    triples = [Triple(ex("a"), RDFS_LABEL, Literal("A", language="en")), Triple(ex("a"), RDFS_LABEL, Literal("B"))]
    body = serialize(triples, format=fmt)
    assert c.put(url(NEW_GRAPH), content=body, headers={"Content-Type": fmt.media_type}).status_code == 201
    assert triples_of(store, NEW_GRAPH) == set(triples)


def test_relative_iris_resolve_against_the_graph(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    r = c.put(url(NEW_GRAPH), content=f'<#it> <{RDFS_LABEL.value}> "it" .', headers=TURTLE)
    assert r.status_code == 201
    assert triples_of(store, NEW_GRAPH) == {Triple(NamedNode(NEW_GRAPH.value + "#it"), RDFS_LABEL, Literal("it"))}


def test_a_shape_violation_is_422_with_the_report_and_leaves_the_graph_as_it_was(
        env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    before = triples_of(store, AACHEN)
    # a second identifier for the Aachen station (its first one is in the central graph)
    body = labels("kept") + f'\n<{EX}station-aachen> <{DCT_IDENTIFIER.value}> "aachen-2" .'
    for method, status in (("put", 422), ("post", 422)):
        r = getattr(c, method)(url(AACHEN), content=body, headers=TURTLE)
        assert r.status_code == status, r.text
        report = r.json()["report"]
        assert not report["conforms"]
        assert [(x["focusNode"], x["sourceConstraintComponent"]) for x in report["results"]] == [
            (EX + "station-aachen", "MaxCountConstraintComponent")]
        assert triples_of(store, AACHEN) == before


def test_each_graph_is_validated_on_its_own_not_with_other_station_graphs(
        env: tuple[EmbeddedStore, TestClient]) -> None:
    """A write to a graph is validated against that graph, the ontology and (for a station graph) the central
    graph, never another station's graph: a station typed in one graph and described in another is refused."""
    store, c = env
    described, typed = station_graph("bonn-description"), station_graph("bonn-type")
    description = [Triple(ex("station-bonn"), q.predicate,
                          Literal("bonn") if q.predicate == DCT_IDENTIFIER else q.object)
                   for q in store.quads(ex("station-aachen"), g=CENTRAL_GRAPH) if q.predicate != RDF_TYPE]
    assert c.put(url(described), content=serialize(description, format=RdfFormat.N_TRIPLES),
                 headers={"Content-Type": "application/n-triples"}).status_code == 201
    r = c.put(url(typed), content=f"<{EX}station-bonn> a <{PHT_STATION.value}> .", headers=TURTLE)
    assert r.status_code == 422, r.text
    components = {(x["focusNode"], x["resultPath"], x["sourceConstraintComponent"])
                  for x in r.json()["report"]["results"]}
    assert (EX + "station-bonn", DCT_IDENTIFIER.value, "MinCountConstraintComponent") in components
    assert not triples_of(store, typed)
    assert c.delete(url(described)).status_code == 204  # untyped there, the description constrains nothing


@pytest.mark.parametrize("body,words", [
    (b"<https://pht.example.org/id/a> <https://pht.example.org/id/p> .", "line 1 column"),
])
def test_malformed_rdf_is_400_with_the_parsers_message(env: tuple[EmbeddedStore, TestClient], body: bytes,
                                                        words: str) -> None:
    store, c = env
    r = c.put(url(AACHEN), content=body, headers=TURTLE)
    assert r.status_code == 400 and words in r.json()["detail"], r.text
    assert store.quads(g=AACHEN)


@pytest.mark.parametrize("headers", [{"Content-Type": "text/csv"}, {"Content-Type": "application/trig"}, {}])
def test_unsupported_media_types_are_415(env: tuple[EmbeddedStore, TestClient], headers: dict[str, str]) -> None:
    _, c = env
    r = c.put(url(NEW_GRAPH), content=labels("a"), headers=headers)
    assert r.status_code == 415 and "text/turtle" in r.json()["detail"]


def test_oversized_bodies_are_413() -> None:
    store = scenario_store()
    with TestClient(make_app(store, max_body_bytes=100), headers=OPERATOR) as c:
        assert c.put(url(NEW_GRAPH), content=labels("a"), headers=TURTLE).status_code == 201
        r = c.post(url(NEW_GRAPH), content=labels(*[f"n{i}" for i in range(20)]), headers=TURTLE)
        assert r.status_code == 413
    assert len(store.quads(g=NEW_GRAPH)) == 1


@pytest.mark.parametrize("graph", [ONTOLOGY_GRAPH, SHAPES_GRAPH])
def test_the_vocabulary_graphs_are_read_only(env: tuple[EmbeddedStore, TestClient], graph: NamedNode) -> None:
    store, c = env
    before = len(store)
    assert c.get(url(graph), headers=RESEARCHER).status_code == 200
    for method in ("put", "post", "delete"):
        kwargs = {} if method == "delete" else {"content": labels("x"), "headers": TURTLE}
        r = getattr(c, method)(url(graph), **kwargs)
        assert r.status_code == 403 and "files" in r.json()["detail"], method
    assert len(store) == before


# -- roles -----------------------------------------------------------------------------------------------


def test_a_station_reads_only_its_own_graph_and_writes_none(env: tuple[EmbeddedStore, TestClient]) -> None:
    """A station's metadata arrives only as signed MPU batches (POST /api/stations/{id}/metadata), whose subjects
    the central service checks; writing its graph here would skip both (tests/security/test_write_paths.py)."""
    store, c = env
    h = STATION_AACHEN
    assert c.get(url(AACHEN), headers=h).status_code == 200
    for graph in (LEIPZIG, CENTRAL_GRAPH, ONTOLOGY_GRAPH):
        assert c.get(url(graph), headers=h).status_code == 403
        assert c.put(url(graph), content=labels("x"), headers={**h, **TURTLE}).status_code == 403
    assert c.get("/rdf-graphs?default", headers=h).status_code == 403
    before = triples_of(store, AACHEN)
    body: dict[str, Any] = {"content": labels("pushed"), "headers": {**h, **TURTLE}}
    for method, kwargs in (("put", body), ("post", body), ("delete", {"headers": h})):
        r = getattr(c, method)(url(AACHEN), **kwargs)
        assert r.status_code == 403 and "signed" in r.json()["detail"], (method, r.text)
    assert triples_of(store, AACHEN) == before
    assert c.get(url(AACHEN), headers={"X-Test-Role": "station"}).status_code == 403  # token without station


@pytest.mark.parametrize("headers", [RESEARCHER, STATION_ADMIN])
def test_researchers_and_station_admins_only_read(env: tuple[EmbeddedStore, TestClient],
                                                  headers: dict[str, str]) -> None:
    store, c = env
    before = len(store)
    # each reads only their part (tests/security/test_read_confidentiality.py): a station admin its own
    # station's graph, nobody else's; the notes in the station graphs are no one's published registry
    own = {AACHEN} if headers is STATION_ADMIN else set()
    for graph in (AACHEN, LEIPZIG):
        assert c.get(url(graph), headers=headers).status_code == (200 if graph in own else 404)
    assert c.put(url(AACHEN), content=labels("x"), headers={**headers, **TURTLE}).status_code == 403
    assert c.post(url(NEW_GRAPH), content=labels("x"), headers={**headers, **TURTLE}).status_code == 403
    assert c.delete(url(AACHEN), headers=headers).status_code == 403
    assert len(store) == before


def test_an_anonymous_caller_is_refused_by_the_dependency(env: tuple[EmbeddedStore, TestClient]) -> None:
    _, c = env
    assert c.get(url(AACHEN), headers={"X-Test-Role": ""}).status_code == 401


# -- over a real connection ------------------------------------------------------------------------------


def test_head_404_leaves_a_kept_alive_connection_usable() -> None:
    """Oxigraph server's HEAD 404 carries a body that corrupts the next response on the connection; ours not."""
    store = scenario_store()
    with serve(make_app(store)) as sparql_url, httpx.Client(headers=OPERATOR, timeout=10) as client:
        base = sparql_url.removesuffix("/sparql")
        missing = client.head(base + url(NEW_GRAPH))
        assert missing.status_code == 404 and missing.content == b""
        found = client.head(base + url(AACHEN))
        assert found.status_code == 200 and int(found.headers["content-length"]) > 0
        put = client.put(base + url(NEW_GRAPH), content=labels("a"), headers=TURTLE)
        assert put.status_code == 201
        got = client.get(base + url(NEW_GRAPH), headers={"Accept": "application/ld+json"})
        assert got.status_code == 200
        assert json.loads(got.text)[0]["@id"] == EX + "a"
    store.close()


def test_station_graph_round_trip_matches_what_was_put(env: tuple[EmbeddedStore, TestClient]) -> None:
    """An operator's PUT of a station graph reads back identically (GET), and the quads land in that graph only."""
    store, c = env
    quads = [Quad(ex(f"ds{i}"), RDFS_LABEL, Literal(f"data set {i}"), AACHEN) for i in range(5)]
    body = serialize([q.triple for q in quads], format=RdfFormat.N_TRIPLES)
    assert c.put(url(AACHEN), content=body, headers={"Content-Type": "application/n-triples"}).status_code == 204
    assert set(store.quads(g=AACHEN)) == set(quads)
    assert not [q for q in store.quads(ex("ds0")) if q.graph_name != AACHEN]


# -- skolemisation, direct identification, POST to the store, multipart -----------------------------------

GENID = SETTINGS.base_iri + ".well-known/genid/"


def test_blank_nodes_are_skolemised_one_iri_per_blank_node(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    body = f'_:a <{RDFS_LABEL.value}> "a" . _:a <{EX}knows> _:b . [] <{RDFS_LABEL.value}> "anon" .'
    assert c.put(url(NEW_GRAPH), content=body, headers=TURTLE).status_code == 201
    quads = store.quads(g=NEW_GRAPH)
    nodes = {t.value for q in quads for t in (q.subject, q.object) if isinstance(t, NamedNode)}
    assert all(isinstance(t, NamedNode | Literal) for q in quads for t in (q.subject, q.object))
    assert len({n for n in nodes if n.startswith(GENID)}) == 3  # _:a (twice, one IRI), _:b and []
    # the same body again is new blank nodes, so new IRIs: a round trip never merges resources by label
    assert c.post(url(NEW_GRAPH), content=body, headers=TURTLE).status_code == 204
    assert len({q.subject for q in store.quads(g=NEW_GRAPH)}) == 4


def test_a_path_under_rdf_graphs_names_the_graph_directly(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    graph = NamedNode(SETTINGS.base_iri + "rdf-graphs/person/1.ttl")
    assert c.put("/rdf-graphs/person/1.ttl", content=labels("p1"), headers=TURTLE).status_code == 201
    assert triples_of(store, graph) == {Triple(ex("p1"), RDFS_LABEL, Literal("p1"))}
    assert c.get(url(graph)).content == c.get("/rdf-graphs/person/1.ttl").content
    assert c.delete("/rdf-graphs/person/1.ttl").status_code == 204 and not store.quads(g=graph)
    assert c.get("/rdf-graphs/person/1.ttl").status_code == 404


def test_post_to_the_store_creates_a_graph_named_in_location(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    r = c.post("/rdf-graphs", content=labels("new"), headers=TURTLE)
    assert r.status_code == 201, r.text
    graph = NamedNode(r.headers["location"])
    assert graph.value.startswith(SETTINGS.base_iri + "rdf-graphs/")
    assert triples_of(store, graph) == {Triple(ex("new"), RDFS_LABEL, Literal("new"))}
    assert c.post("/rdf-graphs", content=labels("new"), headers=TURTLE).headers["location"] != graph.value
    assert c.post("/rdf-graphs", content=b"", headers=TURTLE).status_code == 400


@pytest.mark.parametrize("who", [RESEARCHER, STATION_ADMIN, STATION_AACHEN])
def test_only_operators_create_graphs_by_post_to_the_store(env: tuple[EmbeddedStore, TestClient],
                                                          who: dict[str, str]) -> None:
    store, c = env
    before = set(store.quads())
    r = c.post("/rdf-graphs", content=labels("sneaky"), headers={**TURTLE, **who})
    assert r.status_code == 403 and "location" not in r.headers
    assert set(store.quads()) == before


def _multipart(*parts: tuple[str, str, str]) -> tuple[bytes, dict[str, str]]:
    boundary = "a6fe4cd636164618814be9f8d3d1a0de"
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                   f"Content-Type: {kind}\r\n\r\n{data}\r\n" for name, kind, data in parts) + f"--{boundary}--\r\n"
    return body.encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_multipart_body_merges_every_part(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    body, headers = _multipart(("a.ttl", "text/turtle; charset=utf-8", labels("a")),
                               ("b.nt", "application/n-triples", labels("b")))
    assert c.post(url(NEW_GRAPH), content=body, headers=headers).status_code == 201
    assert triples_of(store, NEW_GRAPH) == {Triple(ex(n), RDFS_LABEL, Literal(n)) for n in ("a", "b")}


@pytest.mark.parametrize("bad", [("evil.sh", "text/x-shellscript", "rm -rf /"),
                                 ("broken.ttl", "text/turtle", "<a> <b> ."),
                                 ("untyped", "", labels("c"))])
def test_a_multipart_part_that_is_not_rdf_is_400_naming_it_and_nothing_is_written(
        env: tuple[EmbeddedStore, TestClient], bad: tuple[str, str, str]) -> None:
    store, c = env
    before = set(store.quads())
    body, headers = _multipart(("good.ttl", "text/turtle", labels("a")), bad)
    for method in ("put", "post"):
        r = getattr(c, method)(url(NEW_GRAPH), content=body, headers=headers)
        assert r.status_code == 400 and repr(bad[0]) in r.json()["detail"], r.text
    assert set(store.quads()) == before


def test_a_malformed_multipart_body_is_400(env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    before = set(store.quads())
    for headers in ({"Content-Type": "multipart/form-data"}, {"Content-Type": "multipart/form-data; boundary="},
                    {"Content-Type": "multipart/form-data; boundary=x"}):
        r = c.post(url(NEW_GRAPH), content=b"--y\r\nnot a form\r\n", headers=headers)
        assert r.status_code == 400 and r.json()["detail"]
    many, headers = _multipart(*[(f"p{i}.ttl", "text/turtle", labels(f"n{i}")) for i in range(101)])
    r = c.post(url(NEW_GRAPH), content=many, headers=headers)
    assert r.status_code == 400 and "at most 100 parts" in r.json()["detail"]
    noisy = b"--b\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(50)) + b"\r\nx\r\n--b--\r\n"
    r = c.post(url(NEW_GRAPH), content=noisy, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 400 and r.json()["detail"]
    assert set(store.quads()) == before


def test_an_operator_still_cannot_write_the_audit_graph(
        env: tuple[EmbeddedStore, TestClient]) -> None:
    store, c = env
    before = set(store.quads(g=AUDIT_GRAPH))
    assert c.put(url(AUDIT_GRAPH), content=labels("x"), headers=TURTLE).status_code == 403
    assert c.delete(url(AUDIT_GRAPH)).status_code == 403
    assert set(store.quads(g=AUDIT_GRAPH)) == before


@pytest.mark.real_component("virtuoso")
def test_no_write_reaches_the_graphs_of_the_server_behind_a_remote_store(virtuoso_endpoint: Any) -> None:
    """Virtuoso keeps its quad maps (``virtrdf#``, without which it cannot run) in the same dataset: no SPARQL
    Update or Graph Store Protocol write of an operator may change them, and DROP ALL leaves them."""
    from graph_store import RemoteStore
    from orchestrator.sparql_protocol import sparql_router

    vt = virtuoso_endpoint
    store = RemoteStore(vt.query_url, vt.update_url, user=vt.user, password=vt.password, timeout=20)
    store.load_vocabulary()
    virtrdf = NamedNode("http://www.openlinksw.com/schemas/virtrdf#")
    before = len(store.quads(g=virtrdf))
    assert before > 100
    app = make_app(store)
    app.include_router(sparql_router(store=store, principal=fake_principal, settings=SETTINGS,
                                     readable=ReadableGraphs(store, Iris(SETTINGS.base_iri))))
    with TestClient(app, headers=OPERATOR) as c:
        for text in (f"CLEAR GRAPH {virtrdf}", f"DROP SILENT GRAPH {virtrdf}", f"MOVE {virtrdf} TO <urn:mine>",
                     f"DELETE WHERE {{ GRAPH {virtrdf} {{ ?s ?p ?o }} }}"):
            r = c.post("/sparql", data={"update": text})
            assert r.status_code == 403 and "server" in r.json()["detail"], (text, r.text)
        for method in ("put", "post", "delete"):
            kwargs = {} if method == "delete" else {"content": labels("x"), "headers": TURTLE}
            r = getattr(c, method)(url(virtrdf), **kwargs)
            assert r.status_code == 403 and "server" in r.json()["detail"], (method, r.text)
        assert c.post("/sparql", data={"update": "DROP ALL"}).status_code == 200
    assert len(store.quads(g=virtrdf)) == before
    store.close()

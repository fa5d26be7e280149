"""The SPARQL clients researchers use, against a real central service (uvicorn on 127.0.0.1).

SPARQLWrapper and rdflib's ``SPARQLStore`` / ``SPARQLUpdateStore`` send the Accept headers, methods and
bodies of their own choosing; each query form is asked for in every format they offer, and the answer must
parse with the client's own parser into the values the store holds. Two answers were chosen for them
(``orchestrator/sparql_http.py``): a CONSTRUCT / DESCRIBE asked for with a result-set Accept (rdflib's
``SPARQLStore`` always sends its ``returnFormat``) is answered in Turtle, or RDF/XML for XML results, and an
ASK asked for as CSV / TSV has the ``_askResult`` header Jena uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from api_helpers import ALICE, BOB, OPS, register_world, signed, station
from central_thread import Central, central_service
from rdflib import Graph, Literal, URIRef
from rdflib.plugins.stores.sparqlstore import SPARQLStore, SPARQLUpdateStore
from SPARQLWrapper import CSV, JSON, JSONLD, N3, POST, POSTDIRECTLY, RDFXML, TSV, TURTLE, XML, SPARQLWrapper

PHT = "https://w3id.org/pht-kg/vocab#"
PREFIXES = f"PREFIX pht: <{PHT}>\nPREFIX dcterms: <http://purl.org/dc/terms/>\n"
STATIONS = PREFIXES + "SELECT ?id WHERE { ?s a pht:Station ; dcterms:identifier ?id } ORDER BY ?id"
ASK_STATION = PREFIXES + "ASK { ?s a pht:Station ; dcterms:identifier 'aachen' }"
ASK_NOTHING = PREFIXES + "ASK { ?s a pht:Station ; dcterms:identifier 'nowhere' }"
CONSTRUCT = PREFIXES + "CONSTRUCT { ?s dcterms:identifier ?id } WHERE { ?s a pht:Station ; dcterms:identifier ?id }"
IDS = ["aachen", "cologne", "leipzig"]
IDENTIFIER = URIRef("http://purl.org/dc/terms/identifier")
NOTES = URIRef("https://pht.example.org/id/client-notes")
LABEL = URIRef("http://www.w3.org/2000/01/rdf-schema#label")


@pytest.fixture(scope="module")
def central() -> Iterator[Central]:
    with central_service() as c:
        with httpx.Client(base_url=c.url, timeout=30) as client:
            register_world(client)
        yield c


def wrapper(central: Central, headers: dict[str, str], query: str, fmt: str, *, method: str = "GET",
            request_method: str | None = None) -> SPARQLWrapper:
    sparql = SPARQLWrapper(f"{central.url}/sparql")
    sparql.addCustomHttpHeader("Authorization", headers["Authorization"])
    sparql.setQuery(query)
    sparql.setReturnFormat(fmt)
    sparql.setMethod(method)
    if request_method:
        sparql.setRequestMethod(request_method)
    return sparql


def as_graph(result: Any, content_type: str) -> Graph:
    """SPARQLWrapper's own conversion (an rdflib graph for RDF/XML and JSON-LD, bytes for Turtle), as a graph."""
    with warnings.catch_warnings():  # SPARQLWrapper builds a ConjunctiveGraph, deprecated by rdflib 7
        warnings.simplefilter("ignore", DeprecationWarning)
        converted = result.convert()
    return converted if isinstance(converted, Graph) else Graph().parse(data=converted, format=content_type)


def graph_ids(graph: Graph) -> list[str]:
    return sorted(str(o) for o in graph.objects(None, IDENTIFIER))


# -- SPARQLWrapper -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method,request_method", [("GET", None), (POST, None), (POST, POSTDIRECTLY)])
def test_sparqlwrapper_select_in_every_results_format(central: Central, method: str,
                                                      request_method: str | None) -> None:
    as_json = wrapper(central, ALICE, STATIONS, JSON, method=method, request_method=request_method).query()
    assert [b["id"]["value"] for b in as_json.convert()["results"]["bindings"]] == IDS
    as_xml = wrapper(central, ALICE, STATIONS, XML, method=method, request_method=request_method).query()
    values = [n.firstChild.firstChild.data for n in as_xml.convert().getElementsByTagName("binding")]
    assert values == IDS
    as_csv = wrapper(central, ALICE, STATIONS, CSV, method=method, request_method=request_method).query()
    assert as_csv.response.headers["Content-Type"].startswith("text/csv")
    assert as_csv.convert().decode().splitlines() == ["id", *IDS]
    as_tsv = wrapper(central, ALICE, STATIONS, TSV, method=method, request_method=request_method).query()
    assert as_tsv.convert().decode().splitlines() == ["?id", *(f'"{i}"' for i in IDS)]


def test_sparqlwrapper_ask_in_every_results_format(central: Central) -> None:
    for query, expected in ((ASK_STATION, True), (ASK_NOTHING, False)):
        assert wrapper(central, ALICE, query, JSON).query().convert()["boolean"] is expected
        xml = wrapper(central, ALICE, query, XML).query().convert()
        assert xml.getElementsByTagName("boolean")[0].firstChild.data == str(expected).lower()
        word = str(expected).lower()
        assert wrapper(central, ALICE, query, CSV).query().convert() == f"_askResult\r\n{word}\r\n".encode()
        assert wrapper(central, ALICE, query, TSV).query().convert() == f"?_askResult\n{word}\n".encode()


@pytest.mark.parametrize("fmt,content_type", [(TURTLE, "text/turtle"), (N3, "text/turtle"),
                                              (RDFXML, "application/rdf+xml"), (XML, "application/rdf+xml"),
                                              (JSONLD, "application/ld+json")])
def test_sparqlwrapper_construct_and_describe_in_every_rdf_format(central: Central, fmt: str,
                                                                  content_type: str) -> None:
    result = wrapper(central, ALICE, CONSTRUCT, fmt).query()
    assert result.response.headers["Content-Type"].split(";")[0] == content_type
    assert graph_ids(as_graph(result, content_type)) == IDS
    describe = wrapper(central, ALICE, PREFIXES + "DESCRIBE ?s WHERE { ?s dcterms:identifier 'aachen' }",
                       fmt).query()
    graph = as_graph(describe, content_type)
    assert graph_ids(graph) == ["aachen"] and len(graph) > 3


def test_sparqlwrapper_update_as_operator_and_refusal_for_a_researcher(central: Central) -> None:
    insert = f'INSERT DATA {{ GRAPH <{NOTES}> {{ <{NOTES}#a> <{LABEL}> "from SPARQLWrapper" }} }}'
    refused = wrapper(central, ALICE, insert, JSON, method=POST)
    with pytest.raises(Exception, match="403"):
        refused.query()
    check = f'ASK {{ GRAPH <{NOTES}> {{ <{NOTES}#a> <{LABEL}> "from SPARQLWrapper" }} }}'
    assert wrapper(central, OPS, check, JSON).query().convert()["boolean"] is False
    done = wrapper(central, OPS, insert, JSON, method=POST).query()
    assert done.response.status == 200
    assert wrapper(central, OPS, check, JSON).query().convert()["boolean"] is True
    wrapper(central, OPS, insert.replace("INSERT DATA", "DELETE DATA"), JSON, method=POST).query()
    assert wrapper(central, OPS, check, JSON).query().convert()["boolean"] is False


# -- rdflib SPARQLStore / SPARQLUpdateStore ------------------------------------------------------------


def sparql_store(central: Central, headers: dict[str, str], fmt: str, method: str = "GET") -> SPARQLStore:
    return SPARQLStore(f"{central.url}/sparql", returnFormat=fmt, method=method,
                       headers={"Authorization": headers["Authorization"]})


@pytest.mark.parametrize("fmt", ["xml", "json", "csv", "tsv"])
@pytest.mark.parametrize("method", ["GET", "POST", "POST_FORM"])
def test_rdflib_sparqlstore_every_query_form_in_every_return_format(central: Central, fmt: str,
                                                                    method: str) -> None:
    """SELECT rows, ASK booleans, CONSTRUCT and DESCRIBE graphs, whatever ``returnFormat`` the store has:
    with json / csv / tsv it asks for a result set even for a graph, and gets Turtle (RDF/XML for xml)."""
    store = sparql_store(central, ALICE, fmt, method)
    rows = store.query(STATIONS)
    assert [str(r[0]) for r in rows] == IDS
    if fmt in ("xml", "json"):  # rdflib reads a CSV / TSV answer as a table, whatever its header says
        assert store.query(ASK_STATION).askAnswer is True
        assert store.query(ASK_NOTHING).askAnswer is False
    else:
        table = store.query(ASK_STATION)
        assert [str(v) for v in table.vars] == ["_askResult"] and [str(r[0]) for r in table] == ["true"]
    assert graph_ids(store.query(CONSTRUCT).graph) == IDS
    described = store.query(PREFIXES + "DESCRIBE ?s WHERE { ?s dcterms:identifier 'leipzig' }").graph
    assert graph_ids(described) == ["leipzig"]


def test_a_graph_asked_for_as_results_says_which_rdf_format_it_is(central: Central) -> None:
    with httpx.Client(base_url=central.url, headers=ALICE) as client:
        for accept, expected in (("application/sparql-results+json", "text/turtle"),
                                 ("text/csv", "text/turtle"),
                                 ("application/sparql-results+xml", "application/rdf+xml"),
                                 ("application/sparql-results+xml, application/rdf+xml;q=0.5", "application/rdf+xml"),
                                 ("application/sparql-results+json, application/ld+json;q=0.1",
                                  "application/ld+json")):
            r = client.get("/sparql", params={"query": CONSTRUCT}, headers={"Accept": accept})
            assert r.status_code == 200 and r.headers["content-type"].split(";")[0] == expected, (accept, r.text)
            assert graph_ids(Graph().parse(data=r.content, format=expected)) == IDS
        refused = client.get("/sparql", params={"query": CONSTRUCT}, headers={"Accept": "text/html"})
        assert refused.status_code == 406 and "Accept" in refused.json()["detail"]


def test_rdflib_sparqlupdatestore_adds_and_removes_through_validated_updates(central: Central) -> None:
    store = SPARQLUpdateStore(f"{central.url}/sparql", f"{central.url}/sparql", returnFormat="json",
                              headers={"Authorization": OPS["Authorization"]}, autocommit=True)
    graph = Graph(store, identifier=NOTES)
    subject = URIRef(f"{NOTES}#rdflib")
    graph.add((subject, LABEL, Literal("from rdflib")))
    assert (subject, LABEL, Literal("from rdflib")) in graph
    assert list(graph.objects(subject, LABEL)) == [Literal("from rdflib")]
    graph.remove((subject, LABEL, Literal("from rdflib")))
    assert list(graph.objects(subject, LABEL)) == []
    store.update(f'INSERT DATA {{ GRAPH <{NOTES}> {{ <{subject}> <{LABEL}> "again" }} }}')
    assert list(graph.objects(subject, LABEL)) == [Literal("again")]
    audit = sparql_store(central, OPS, "json").query(
        'ASK { GRAPH ?g { ?record ?p ?o } FILTER(CONTAINS(STR(?g), "audit")) }')
    assert audit.askAnswer is True  # every update left its audit record


def test_rdflib_sparqlupdatestore_of_a_researcher_is_refused_and_writes_nothing(central: Central) -> None:
    store = SPARQLUpdateStore(f"{central.url}/sparql", f"{central.url}/sparql", returnFormat="json",
                              headers={"Authorization": BOB["Authorization"]}, autocommit=True)
    subject = URIRef(f"{NOTES}#bob")
    with pytest.raises(Exception, match="403"):
        Graph(store, identifier=NOTES).add((subject, LABEL, Literal("bob was here")))
    check = sparql_store(central, OPS, "json").query(f"ASK {{ GRAPH ?g {{ <{subject}> ?p ?o }} }}")
    assert check.askAnswer is False


def test_a_researcher_client_sees_no_other_researchers_train(central: Central) -> None:
    """The confinement is the endpoint's, whichever client asks: bob's train is not in alice's answers."""
    with httpx.Client(base_url=central.url, timeout=30) as api:
        r = api.post("/api/trains", headers=BOB, json=signed(api, BOB, {"definition": "count",
                                                                         "parameters": {"MIN": "3"}}))
        assert r.status_code == 201, r.text
        bobs = r.json()["id"]
        r = api.post(f"/api/executions/{bobs}.r1-s0/steps", headers=station("aachen"),
                     json={"to": "waiting-for-approval", "used": []})
        assert r.status_code == 200, r.text
    trains = PREFIXES + "SELECT ?t WHERE { ?t a pht:Train }"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seen: dict[str, Any] = {
            who: [str(r[0]) for r in sparql_store(central, headers, "json").query(trains)]
            for who, headers in (("alice", ALICE), ("bob", BOB), ("ops", OPS))}
    assert any(bobs in t for t in seen["bob"]) and any(bobs in t for t in seen["ops"])
    assert not any(bobs in t for t in seen["alice"])

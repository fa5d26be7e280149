"""Everyone reads only what is theirs, on the raw graph paths too: ``/sparql``, ``/rdf-graphs`` and the web
view's SPARQL form evaluate a researcher's or a station admin's reads over what they may see (the read model's
rule), whatever FROM, GRAPH or dataset parameters the request names. Before, every researcher and station admin
read every graph: researcher B got researcher A's train, parameters and events while the REST API answered 403.
"""

from __future__ import annotations

from collections.abc import Iterator

from central_store import new_central_store
import pytest
from api_helpers import ALICE, BOB, OPS, admin, service, signed
from fastapi.testclient import TestClient
from pyoxigraph import Literal, NamedNode, Quad, RdfFormat, parse

from graph_store import CENTRAL_GRAPH, RDFS, ChangeSet, station_graph

pytestmark = pytest.mark.central_stores

RDFS_LABEL = RDFS.label

SECRET = "8675309"
"""Alice's parameter value: nobody but Alice, the stations her train visits and operators may read it."""


@pytest.fixture()
def world() -> Iterator[tuple[TestClient, str]]:
    with service() as client:
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": SECRET}}))
        assert r.status_code == 201, r.text
        yield client, r.json()["id"]


def select(client: TestClient, who: dict[str, str], query: str, **params: str) -> list[dict[str, str]]:
    r = client.get("/sparql", headers={**who, "Accept": "application/sparql-results+json"},
                   params={"query": query, **params})
    assert r.status_code == 200, r.text
    return [{k: v["value"] for k, v in b.items()} for b in r.json()["results"]["bindings"]]


ESCAPES = {
    "union default graph": "SELECT ?v WHERE { ?pv <https://w3id.org/pht-kg/vocab#literalValue> ?v }",
    "FROM the central graph": f"SELECT ?v FROM <{CENTRAL_GRAPH.value}> "
                              "WHERE { ?pv <https://w3id.org/pht-kg/vocab#literalValue> ?v }",
    "GRAPH ?g": "SELECT ?v WHERE { GRAPH ?g { ?pv <https://w3id.org/pht-kg/vocab#literalValue> ?v } }",
    "FROM NAMED + GRAPH": f"SELECT ?v FROM NAMED <{CENTRAL_GRAPH.value}> "
                          "WHERE { GRAPH ?g { ?pv <https://w3id.org/pht-kg/vocab#literalValue> ?v } }",
    "every train": "SELECT ?v WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> BIND(STR(?t) AS ?v) }",
}


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_another_researcher_reads_nothing_of_a_train_by_sparql(world: tuple[TestClient, str], escape: str) -> None:
    client, train = world
    assert client.get(f"/api/trains/{train}", headers=BOB).status_code == 403  # REST says so
    found = select(client, BOB, ESCAPES[escape])
    assert not any(SECRET == row["v"] or train in row["v"] for row in found), found
    # the protocol's dataset parameters do not widen it either
    found = select(client, BOB, ESCAPES[escape], **{"default-graph-uri": CENTRAL_GRAPH.value})
    assert not any(SECRET == row["v"] or train in row["v"] for row in found), found


def test_the_requester_and_an_operator_read_the_train(world: tuple[TestClient, str]) -> None:
    client, train = world
    for who in (ALICE, OPS):
        assert [row["v"] for row in select(client, who, ESCAPES["union default graph"])] == [SECRET]
        assert any(train in row["v"] for row in select(client, who, ESCAPES["every train"]))


def test_a_station_admin_reads_the_trains_that_visit_the_station_only(world: tuple[TestClient, str]) -> None:
    client, train = world  # the first stop is aachen; leipzig has no execution of it yet
    assert any(train in row["v"] for row in select(client, admin("aachen"), ESCAPES["every train"]))
    assert select(client, admin("leipzig"), ESCAPES["union default graph"]) == []
    assert not any(train in row["v"] for row in select(client, admin("leipzig"), ESCAPES["every train"]))


def test_everyone_reads_the_published_registry(world: tuple[TestClient, str]) -> None:
    client, _ = world
    stations = select(client, BOB, "SELECT ?id WHERE { ?s a <https://w3id.org/pht-kg/vocab#Station> ; "
                                   "<http://purl.org/dc/terms/identifier> ?id }")
    assert sorted(row["id"] for row in stations) == ["aachen", "cologne", "leipzig"]
    definitions = select(client, BOB, "SELECT ?id WHERE { ?d a <https://w3id.org/pht-kg/vocab#TrainDefinition> ; "
                                      "<http://purl.org/dc/terms/identifier> ?id }")
    assert sorted(row["id"] for row in definitions) == ["count", "fedavg"]


def test_the_graph_store_protocol_serves_a_researcher_only_their_part(world: tuple[TestClient, str]) -> None:
    client, train = world
    for who, sees in ((BOB, False), (ALICE, True), (OPS, True)):
        r = client.get("/rdf-graphs", headers={**who, "Accept": "application/n-triples"},
                       params={"graph": CENTRAL_GRAPH.value})
        assert r.status_code == 200, r.text
        text = r.text
        assert (train in text) is sees and (f'"{SECRET}"' in text) is sees
        triples = list(parse(r.content, format=RdfFormat.N_TRIPLES))
        assert any("Station" in t.object.value for t in triples if t.predicate.value.endswith("#type"))


def test_another_stations_graph_is_not_readable_by_a_station_admin() -> None:
    store = new_central_store()
    with service(store) as client:
        note = Quad(NamedNode("https://example.org/aachen-note"), RDFS_LABEL, Literal("aachen's own note"),
                    station_graph("aachen"))
        store.apply(ChangeSet(insert=[note]))
        url = {"graph": station_graph("aachen").value}
        accept = {"Accept": "application/n-triples"}
        own = client.get("/rdf-graphs", headers={**admin("aachen"), **accept}, params=url)
        assert own.status_code == 200 and "aachen's own note" in own.text
        other = client.get("/rdf-graphs", headers={**admin("leipzig"), **accept}, params=url)
        assert other.status_code == 404, other.text
        query = "SELECT ?l WHERE { GRAPH ?g { <https://example.org/aachen-note> ?p ?l } }"
        assert select(client, admin("leipzig"), query) == []
        assert select(client, admin("aachen"), query) == [{"l": "aachen's own note"}]


def test_the_web_sparql_form_applies_the_same_rule(world: tuple[TestClient, str]) -> None:
    client, train = world
    client.cookies.clear()
    r = client.get("/ui/sparql", headers=BOB, params={"query": ESCAPES["FROM the central graph"]})
    assert r.status_code == 200 and SECRET not in r.text.split("</textarea>", 1)[-1]
    r = client.get("/ui/sparql", headers=ALICE, params={"query": ESCAPES["FROM the central graph"]})
    assert r.status_code == 200 and f">{SECRET}<" in r.text.split("</textarea>", 1)[-1]
    assert train  # the train exists: the refusals above are about who asks


SIZES = "https://w3id.org/pht-kg/graph/sizes"
SIZE_READS = {
    "union default graph": "SELECT ?g ?n WHERE { ?g <http://rdfs.org/ns/void#triples> ?n }",
    "GRAPH ?g": "SELECT ?g ?n WHERE { GRAPH ?s { ?g <http://rdfs.org/ns/void#triples> ?n } }",
    "FROM the sizes graph": f"SELECT ?g ?n FROM <{SIZES}> WHERE {{ ?g <http://rdfs.org/ns/void#triples> ?n }}",
    "GRAPH <sizes>": f"SELECT ?g ?n WHERE {{ GRAPH <{SIZES}> {{ ?g ?p ?n }} }}",
}


@pytest.mark.parametrize("query", sorted(SIZE_READS))
def test_the_graphs_sizes_are_read_through_the_metrics_only(world: tuple[TestClient, str], query: str) -> None:
    """How many triples each station's graph holds tells how busy the station is. The store keeps the sizes as
    its own bookkeeping (``graph_store/_sizes.py``); they reach operators as the metric ``pht_store_triples`` and
    nobody, operators included, reads them as data by ``/sparql`` or the Graph Store Protocol."""
    client, _ = world
    metrics = client.get("/metrics", headers=OPS)
    assert metrics.status_code == 200 and f'pht_store_triples{{graph="{CENTRAL_GRAPH.value}"}}' in metrics.text
    for who in (BOB, ALICE, admin("aachen"), OPS):
        r = client.get("/sparql", headers={**who, "Accept": "application/sparql-results+json"},
                       params={"query": SIZE_READS[query]})
        if r.status_code == 400:  # a remote store refuses a dataset naming the graph, rather than answer nothing
            assert "belongs to the store" in r.json()["detail"] and query == "FROM the sizes graph", r.text
        else:
            assert r.status_code == 200 and r.json()["results"]["bindings"] == [], (who, r.text)
        r = client.get("/rdf-graphs", headers={**who, "Accept": "application/n-triples"}, params={"graph": SIZES})
        assert r.status_code in (403, 404) or "void#triples" not in r.text, (who, r.status_code)

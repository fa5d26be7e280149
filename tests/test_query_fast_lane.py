"""The SPARQL fast lane (``orchestrator/query_fast_lane.py``): which queries it takes, that its answers are the
workers' answers for every kind of caller, that a caller reads their own writes at once, and that a long answer
is left to a worker."""

from __future__ import annotations


import pytest
from api_helpers import ALICE, BOB, OPS, SETTINGS, admin, register_world, service, signed, station
from fastapi.testclient import TestClient
from lane_helpers import JSON_RESULTS, lane_calls, lane_world, rows_from_the_lane
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, RDFS, ChangeSet, EmbeddedStore
from orchestrator.app import create_app
from orchestrator.query_fast_lane import LANE_ROWS, PointQueryLane, is_point_query

__all__ = ["lane_calls", "lane_world"]  # fixtures, imported to be found

T = "<https://pht.example.org/id/t>"
TAKEN = {
    "SELECT over GRAPH ?g": f"SELECT ?p ?o WHERE {{ GRAPH ?g {{ {T} ?p ?o }} }}",
    "SELECT * without WHERE": f"SELECT * {{ {T} ?p ?o . }}",
    "prefixed names and a": "PREFIX ex: <https://pht.example.org/id/> PREFIX pht: <https://w3id.org/pht-kg/vocab#>\n"
                            "ASK { ex:t a pht:Train }",
    "a fixed graph and LIMIT": f"SELECT ?o WHERE {{ GRAPH <urn:g> {{ {T} <urn:p> ?o }} }} LIMIT 3",
    "BASE and a relative IRI": "BASE <https://pht.example.org/id/> SELECT ?p ?o WHERE { <t> ?p ?o }",
}
LEFT = {
    "no fixed subject": "SELECT * WHERE { ?s ?p ?o }",
    "a repeated variable": f"SELECT ?p WHERE {{ {T} ?p ?p }}",
    "the graph variable repeated": f"SELECT ?g WHERE {{ GRAPH ?g {{ {T} ?p ?g }} }}",
    "two patterns": f"SELECT * WHERE {{ {T} ?p ?o . ?o ?q ?r }}",
    "a literal object": f'SELECT ?p WHERE {{ {T} ?p "x" }}',
    "a FILTER": f"SELECT ?o WHERE {{ {T} ?p ?o FILTER(?o) }}",
    "DISTINCT": f"SELECT DISTINCT ?p WHERE {{ {T} ?p ?o }}",
    "ORDER BY": f"SELECT ?p WHERE {{ {T} ?p ?o }} ORDER BY ?o",
    "a comment": f"SELECT ?p WHERE {{ {T} ?p ?o }} # hi",
    "FROM": f"SELECT ?p FROM <urn:g> WHERE {{ {T} ?p ?o }}",
    "SERVICE": f"SELECT ?p WHERE {{ SERVICE <http://127.0.0.1/> {{ {T} ?p ?o }} }}",
    "$ variables": f"SELECT $p WHERE {{ {T} $p $o }}",
    "an unbalanced brace": f"SELECT ?p WHERE {{ GRAPH ?g {{ {T} ?p ?o }}",
    "deep nesting (crashes pyoxigraph's parser)": "ASK " + "{" * 2500 + "}" * 2500,
    "an update": f"INSERT DATA {{ {T} <urn:p> <urn:o> }}",
    "a long text": f"SELECT ?p WHERE {{ {T} ?p ?o }}" + " " * 5000,
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_the_lane_takes_a_point_query(name: str) -> None:
    assert is_point_query(TAKEN[name])


@pytest.mark.parametrize("name", sorted(LEFT))
def test_the_lane_leaves_every_other_query_to_a_worker(name: str) -> None:
    assert not is_point_query(LEFT[name])


def worker_rows(client: TestClient, who: dict[str, str], query: str, monkeypatch: pytest.MonkeyPatch
                ) -> list[dict[str, str]]:
    """The rows a worker answers (the lane closed for this one request)."""
    with monkeypatch.context() as m:
        m.setattr(PointQueryLane, "answer", lambda *_a, **_k: None)
        r = client.get("/sparql", headers={**who, **JSON_RESULTS}, params={"query": query})
    assert r.status_code == 200, r.text
    return [{k: v["value"] for k, v in b.items()} for b in r.json()["results"]["bindings"]]


CALLERS = {"the requester": ALICE, "another researcher": BOB, "an operator": OPS,
           "the first stop's admin": admin("aachen"), "another station's admin": admin("cologne"),
           "the first stop's station": station("aachen")}


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_the_lane_answers_what_a_worker_answers(lane_world: tuple[TestClient, str, list[bool]], caller: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    client, train, calls = lane_world
    who = CALLERS[caller]
    for query in (f"SELECT ?p ?o ?g WHERE {{ GRAPH ?g {{ <{train}> ?p ?o }} }}",
                  f"SELECT ?p ?o WHERE {{ <{train}> ?p ?o }}"):
        lane = rows_from_the_lane(client, who, query, calls)
        assert sorted(map(sorted, (r.items() for r in lane))) == \
            sorted(map(sorted, (r.items() for r in worker_rows(client, who, query, monkeypatch))))
        assert bool(lane) == (caller in ("the requester", "an operator", "the first stop's admin"))


def test_a_caller_reads_their_own_write_at_once(lane_world: tuple[TestClient, str, list[bool]]) -> None:
    """After a commit the caller's view is stale: the lane leaves the query to a worker, which has the write."""
    client, train, calls = lane_world
    rows_from_the_lane(client, ALICE, f"SELECT ?p WHERE {{ <{train}> ?p ?o }}", calls)  # the view is built
    r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count",
                                                                              "parameters": {"MIN": "4"}}))
    assert r.status_code == 201, r.text
    query = f"SELECT ?p ?o WHERE {{ <{r.json()['iri']}> ?p ?o }}"
    found = client.get("/sparql", headers={**ALICE, **JSON_RESULTS}, params={"query": query})
    assert found.status_code == 200 and found.json()["results"]["bindings"], found.text
    assert calls[-1] is False  # answered by a worker: the lane's view predates the write


def test_a_point_query_with_a_long_answer_is_left_to_a_worker(lane_calls: list[bool]) -> None:
    store = EmbeddedStore()
    subject = NamedNode("https://pht.example.org/id/many-labels")
    rows = LANE_ROWS + 5
    with service(store) as client:
        store.apply(ChangeSet(insert=[Quad(subject, RDFS.label, Literal(f"label {k}"), CENTRAL_GRAPH)
                                      for k in range(rows)]))
        r = client.get("/sparql", headers={**OPS, **JSON_RESULTS},
                       params={"query": f"SELECT ?o WHERE {{ <{subject.value}> <{RDFS.label.value}> ?o }}"})
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]["bindings"]) == rows
        assert lane_calls[-1] is False


def test_the_lane_builds_views_again_after_the_service_restarts(lane_calls: list[bool]) -> None:
    """A lifespan that runs again (the same app started twice) opens the lane again, as it does the workers."""
    app = create_app(SETTINGS, store=EmbeddedStore())
    for start in range(2):
        with TestClient(app) as client:
            if start == 0:
                register_world(client)
            r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count",
                                                                                      "parameters": {"MIN": "3"}}))
            assert r.status_code == 201, r.text
            query = f"SELECT ?p WHERE {{ <{r.json()['iri']}> ?p ?o }}"
            assert rows_from_the_lane(client, ALICE, query, lane_calls)

"""The SPARQL fast lane (``orchestrator/query_fast_lane.py``) answers point queries in the service's process: it
must read by the same rule as a worker, and never from a view older than the last write. Each attack is checked
to have been answered by the lane itself (a spy on ``PointQueryLane.answer``), with a control that does read."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import jwt
import pytest
from api_helpers import ALICE, BOB, OPS, SETTINGS, service, signed, token
from fastapi.testclient import TestClient
from lane_helpers import JSON_RESULTS, lane_calls, rows_from_the_lane

from graph_store import CENTRAL_GRAPH, EmbeddedStore
from orchestrator.principal import Role

__all__ = ["lane_calls"]  # a fixture, imported to be found

SECRET = "8675309"


@pytest.fixture()
def world(lane_calls: list[bool]) -> Iterator[tuple[TestClient, str, list[bool]]]:
    with service(EmbeddedStore()) as client:
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count",
                                                                                  "parameters": {"MIN": SECRET}}))
        assert r.status_code == 201, r.text
        yield client, r.json()["iri"], lane_calls


def test_another_researchers_point_queries_find_nothing_in_the_fast_lane(
        world: tuple[TestClient, str, list[bool]]) -> None:
    client, train, calls = world
    queries = [f"SELECT ?p ?o WHERE {{ <{train}> ?p ?o }}",
               f"SELECT ?p ?o ?g WHERE {{ GRAPH ?g {{ <{train}> ?p ?o }} }}",
               f"SELECT ?p ?o WHERE {{ GRAPH <{CENTRAL_GRAPH.value}> {{ <{train}> ?p ?o }} }}"]
    for query in queries:
        assert rows_from_the_lane(client, ALICE, query, calls)  # the control: the requester reads it here
        assert rows_from_the_lane(client, BOB, query, calls) == []
    # her parameter value, by its node: nothing either
    values = rows_from_the_lane(client, ALICE, f"SELECT ?o WHERE {{ <{train}> "
                                               "<https://w3id.org/pht-kg/vocab#parameterValue> ?o }", calls)
    assert values
    value_node = values[0]["o"]
    assert any(r["o"] == SECRET for r in rows_from_the_lane(client, ALICE, f"SELECT ?p ?o WHERE {{ <{value_node}> ?p ?o }}", calls))
    assert rows_from_the_lane(client, BOB, f"SELECT ?p ?o WHERE {{ <{value_node}> ?p ?o }}", calls) == []


def test_the_fast_lane_never_answers_from_a_view_older_than_a_write(
        world: tuple[TestClient, str, list[bool]]) -> None:
    """An operator removes a statement about Alice's train: her next point query must not find it, though the
    lane had her view cached with it."""
    client, train, calls = world
    label = "<http://www.w3.org/2000/01/rdf-schema#label>"
    edit = f'GRAPH <{CENTRAL_GRAPH.value}> {{ <{train}> {label} "to be withdrawn" }}'
    assert client.post("/sparql", headers=OPS, data={"update": f"INSERT DATA {{ {edit} }}"}).status_code == 200
    query = f"SELECT ?o WHERE {{ <{train}> {label} ?o }}"
    assert rows_from_the_lane(client, ALICE, query, calls) == [{"o": "to be withdrawn"}]
    assert client.post("/sparql", headers=OPS, data={"update": f"DELETE DATA {{ {edit} }}"}).status_code == 200
    r = client.get("/sparql", headers={**ALICE, "Accept": "application/sparql-results+json"},
                   params={"query": query})
    assert r.status_code == 200 and r.json()["results"]["bindings"] == [], r.text
    assert rows_from_the_lane(client, ALICE, query, calls) == []


def test_a_revoked_token_is_refused_at_the_point_query_door(lane_calls: list[bool]) -> None:
    """The door (``point_query_door.py``) answers point queries before routing: a token revoked after its holder's
    view was built, and after the door had answered her, must be refused there as on every route."""
    alice = token("alice", Role.RESEARCHER)
    with service(EmbeddedStore(), replace(SETTINGS, revocation_cache_s=0)) as client:
        r = client.post("/api/trains", headers=alice, json=signed(client, alice, {"definition": "count",
                                                                                  "parameters": {"MIN": SECRET}}))
        assert r.status_code == 201, r.text
        query = f"SELECT ?p ?o WHERE {{ <{r.json()['iri']}> ?p ?o }}"
        assert rows_from_the_lane(client, alice, query, lane_calls)  # the control: the door answers her
        jti = jwt.decode(alice["Authorization"].split(" ", 1)[1], options={"verify_signature": False})["jti"]
        revoked = client.post("/api/tokens/revocations", headers=OPS, json={"token_id": jti})
        assert revoked.status_code == 201, revoked.text
        calls = len(lane_calls)
        refused = client.get("/sparql", headers={**alice, **JSON_RESULTS}, params={"query": query})
        assert refused.status_code == 401 and "revoked" in refused.json()["detail"], refused.text
        assert SECRET not in refused.text and len(lane_calls) == calls  # the lane never saw her query

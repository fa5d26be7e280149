"""The point query door (``orchestrator/point_query_door.py``): it answers ``GET /sparql`` point queries before
routing, exactly as the route would, and leaves everything else to the route unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from api_helpers import ALICE, BOB, OPS, SETTINGS, admin, service, station
from fastapi.testclient import TestClient
from lane_helpers import JSON_RESULTS, lane_calls, lane_world, rows_from_the_lane

from graph_store import EmbeddedStore
from orchestrator.app import create_app
from orchestrator.point_query_door import PointQueryDoor

__all__ = ["lane_calls", "lane_world"]  # fixtures, imported to be found


def door_of(client: TestClient) -> PointQueryDoor:
    """The door in the running app's middleware stack."""
    layer = client.app.middleware_stack  # type: ignore[attr-defined]
    while layer is not None and not isinstance(layer, PointQueryDoor):
        layer = getattr(layer, "app", None)
    assert isinstance(layer, PointQueryDoor), "the service has no point query door"
    return layer


CALLERS = {"the requester": ALICE, "another researcher": BOB, "an operator": OPS,
           "the first stop's admin": admin("aachen"), "another station's admin": admin("cologne"),
           "the first stop's station": station("aachen")}
ACCEPTS = {"JSON": "application/sparql-results+json", "XML": "application/sparql-results+xml",
           "CSV preferred": "text/csv, application/sparql-results+json;q=0.5", "none": ""}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("accept", sorted(ACCEPTS))
def test_the_door_answers_exactly_what_the_route_answers(lane_world: tuple[TestClient, str, list[bool]], caller: str,
                                                         accept: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client, train, calls = lane_world
    door = door_of(client)
    who = CALLERS[caller]
    headers = {**who, "Accept": ACCEPTS[accept]} if ACCEPTS[accept] else dict(who)
    rows_from_the_lane(client, who, f"SELECT ?p WHERE {{ <{train}> ?p ?o }}", calls)  # the caller's view is built
    for query in (f"SELECT ?p ?o ?g WHERE {{ GRAPH ?g {{ <{train}> ?p ?o }} }}",
                  f"ASK {{ <{train}> a ?type }}", "BASE <https://pht.example.org/id/trains/> SELECT ?p ?o WHERE "
                  f"{{ <{train.rsplit('/', 1)[1]}> ?p ?o }}"):
        before = door.answered
        at_door = client.get("/sparql", headers=headers, params={"query": query})
        assert door.answered == before + 1 and calls[-1], "the door did not answer it from the lane"
        with monkeypatch.context() as m:
            m.setattr(PointQueryDoor, "_answer", lambda *_a: None)
            by_route = client.get("/sparql", headers=headers, params={"query": query})
        assert door.answered == before + 1 and calls[-1], "the route did not answer it from the lane"
        assert at_door.status_code == by_route.status_code == 200, (at_door.text, by_route.text)
        assert dict(at_door.headers) == dict(by_route.headers)
        assert at_door.content == by_route.content


def _bearer(who: dict[str, str]) -> str:
    return who["Authorization"].split(" ", 1)[1]


Request = Callable[[str], tuple[dict[str, str], Any]]
LEFT_TO_THE_ROUTE: dict[str, tuple[Request, int]] = {  # what the door may not answer, and the route's status
    "no token": (lambda q: ({**JSON_RESULTS}, {"query": q}), 401),
    "a forged token": (lambda q: ({**JSON_RESULTS, "Authorization": "Bearer " + _bearer(ALICE)[:-4] + "AAAA"},
                                  {"query": q}), 401),
    "another scheme": (lambda q: ({**JSON_RESULTS, "Authorization": "Basic " + _bearer(ALICE)}, {"query": q}), 401),
    "an Accept nothing satisfies": (lambda q: ({**ALICE, "Accept": "image/png"}, {"query": q}), 406),
    "an update parameter as well": (lambda q: ({**ALICE, **JSON_RESULTS}, {"query": q, "update": "CLEAR ALL"}), 400),
    "two queries": (lambda q: ({**ALICE, **JSON_RESULTS}, [("query", q), ("query", q)]), 400),
    "a dataset IRI that is not one": (lambda q: ({**ALICE, **JSON_RESULTS},
                                                 {"query": q, "named-graph-uri": "not an IRI"}), 400),
    "a query that is not a point query": (lambda q: ({**ALICE, **JSON_RESULTS},
                                                     {"query": "SELECT * WHERE { ?s ?p ?o } LIMIT 1"}), 200),
}


@pytest.mark.parametrize("case", sorted(LEFT_TO_THE_ROUTE))
def test_what_the_door_cannot_answer_goes_to_the_route(lane_world: tuple[TestClient, str, list[bool]],
                                                       case: str) -> None:
    client, train, calls = lane_world
    query = f"SELECT ?p ?o WHERE {{ <{train}> ?p ?o }}"
    rows_from_the_lane(client, ALICE, query, calls)  # the door would answer Alice's query
    door = door_of(client)
    before = door.answered
    make, status = LEFT_TO_THE_ROUTE[case]
    headers, params = make(query)
    r = client.get("/sparql", headers=headers, params=params)
    assert r.status_code == status, r.text
    assert door.answered == before
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_post_is_answered_by_the_route() -> None:
    with service(EmbeddedStore()) as client:
        door = door_of(client)
        r = client.post("/sparql", headers={**OPS, **JSON_RESULTS},
                        data={"query": "SELECT ?p WHERE { <https://pht.example.org/id/x> ?p ?o }"})
        assert r.status_code == 200, r.text
        assert door.answered == 0


def test_where_verifying_a_token_may_wait_for_the_network_there_is_no_door() -> None:
    """With an OIDC provider a token may need its JWKS fetched: that is not done on the event loop."""
    app = create_app(replace(SETTINGS, jwks_url="https://idp.example.org/jwks", jwt_issuer="https://idp.example.org",
                             jwt_audience="pht"), store=EmbeddedStore())
    with TestClient(app) as client, pytest.raises(AssertionError, match="no point query door"):
        door_of(client)

"""Watching the SPARQL fast lane (``orchestrator/query_fast_lane.py``) from a test: a spy on
``PointQueryLane.answer`` records, per call, whether the lane answered (True) or left the query to a worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import ALICE, service, signed
from fastapi.testclient import TestClient

from graph_store import EmbeddedStore

from orchestrator.principal import Principal
from orchestrator.query_fast_lane import PointQueryLane

JSON_RESULTS = {"Accept": "application/sparql-results+json"}


@pytest.fixture()
def lane_world(lane_calls: list[bool]) -> Iterator[tuple[TestClient, str, list[bool]]]:
    """A service on an embedded store holding one train of Alice's; its IRI; the lane's calls (``lane_calls``)."""
    with service(EmbeddedStore()) as client:
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count",
                                                                                  "parameters": {"MIN": "3"}}))
        assert r.status_code == 201, r.text
        yield client, r.json()["iri"], lane_calls


@pytest.fixture()
def lane_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether each point query the lane saw was answered there (True) or sent on to a worker (False)."""
    calls: list[bool] = []
    original: Callable[..., Any] = PointQueryLane.answer

    def spy(self: PointQueryLane, who: Principal, text: str, *args: Any, **kwargs: Any) -> Any:
        out = original(self, who, text, *args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(PointQueryLane, "answer", spy)
    yield calls


def rows_from_the_lane(client: TestClient, who: dict[str, str], query: str, calls: list[bool],
                       timeout_s: float = 20.0) -> list[dict[str, str]]:
    """The rows of ``query`` once the lane answers it (the first calls may go to a worker while the lane's
    view of the caller is built); fails if the lane never does."""
    give_up = time.monotonic() + timeout_s
    while True:
        before = len(calls)
        r = client.get("/sparql", headers={**who, **JSON_RESULTS}, params={"query": query})
        assert r.status_code == 200, r.text
        # one call when the lane answers; when it does not, the route asks it again after the door did
        assert len(calls) > before, "the query did not reach the fast lane at all"
        if calls[-1]:
            return [{k: v["value"] for k, v in b.items()} for b in r.json()["results"]["bindings"]]
        assert time.monotonic() < give_up, "the fast lane never answered the point query"
        time.sleep(0.05)

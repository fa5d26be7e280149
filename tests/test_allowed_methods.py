"""Every 405 of the app lists every method its path supports, and HEAD is answered wherever GET is.

Walks ``app.routes``: for each path (its parameters filled in), every method is sent; those some route of
the path has must not be answered 405, the others must be, each with the same ``Allow`` header listing all
of them and a one-sentence JSON ``detail``. On today's main ``OPTIONS /api/datasets`` said ``allow: POST``
and ``HEAD /api/trains`` was a 405.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator

from central_store import new_central_store
import pytest
from api_helpers import OPS, SETTINGS
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from orchestrator.allowed_methods import allowed_methods
from orchestrator.app import create_app

pytestmark = pytest.mark.central_stores

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@pytest.fixture(scope="module")
def app(central_store_kind: str) -> FastAPI:  # rebuilt for each kind of store
    return create_app(SETTINGS, store=new_central_store())


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


def concrete_paths(app: FastAPI) -> dict[str, set[str]]:
    """Each route's path with its parameters filled in, and the methods the routes declare for it."""
    paths: dict[str, set[str]] = {}
    for route in iter_route_contexts(app.routes):
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        paths.setdefault(path, set()).update(route.methods or ())
    return paths


def test_every_405_lists_every_method_of_its_path(app: FastAPI, client: TestClient) -> None:
    paths = concrete_paths(app)
    assert len(paths) > 40 and "/api/datasets" in paths and "/sparql" in paths
    checked = 0
    for path in paths:
        expected = allowed_methods(app.routes, path)
        # every route of the path counts (a catch-all such as /ui/{rest} adds its GET to every /ui path)
        assert set(expected) >= {m for p, ms in paths.items() if p == path for m in ms}
        assert ("GET" in expected) == ("HEAD" in expected), (path, expected)
        for method in METHODS:
            r = client.request(method, path, headers=OPS)
            if method in expected:
                assert r.status_code != 405, (method, path, r.text)
                continue
            checked += 1
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"] == ", ".join(expected), (method, path)
            if method == "HEAD":
                assert r.content == b""
                continue
            detail = r.json()["detail"]
            assert detail.startswith(f"{method} is not allowed here") and detail.count(".") <= 1
    assert checked > 100


def test_the_case_of_the_issue(client: TestClient) -> None:
    r = client.options("/api/datasets", headers=OPS)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = client.patch("/sparql", headers=OPS)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
    r = client.options("/rdf-graphs", headers=OPS)
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) >= {"GET", "HEAD", "PUT", "POST", "DELETE"}


def test_head_is_the_get_without_its_body(client: TestClient) -> None:
    for path in ("/api/datasets", "/health", "/api/stations", "/openapi.json"):
        get, head = client.get(path, headers=OPS), client.head(path, headers=OPS)
        assert get.status_code == head.status_code == 200, (path, head.status_code)
        assert head.content == b"" and get.content
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == str(len(get.content))
    refused = client.head("/api/datasets")  # no token: the GET's 401, without its body
    assert refused.status_code == 401 and refused.content == b""

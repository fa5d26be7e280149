"""Property-based tests of the REST API from its own OpenAPI schema (Schemathesis 4, in-process ASGI).

Every operation of ``/openapi.json`` is called with generated requests (valid and invalid ones), as an
operator and as a researcher, on an embedded in-memory store holding three stations, their datasets, an
incremental and a federated definition, and a few trains. Checks:

* ``not_a_server_error``: no 5xx, whatever is sent;
* ``status_code_conformance``: every status answered is documented for the operation;
* ``content_type_conformance`` and ``response_schema_conformance``: the body is what the schema says.

Bounded and deterministic: ``derandomize``, no example database, ``MAX_EXAMPLES`` per operation.
``test_a_server_error_would_be_caught`` makes sure a 500 anywhere fails these checks.

The SPARQL Protocol (``/sparql``) and Graph Store Protocol (``/rdf-graphs``) endpoints are fuzzed on a world of
their own (an operator's accepted writes change it) from the parameters and bodies ``orchestrator/sparql_openapi.py``
documents, with two more checks: every 4xx is JSON with a one-sentence ``detail``, and a refused request
leaves every quad of the store as it was.
"""

import warnings
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from api_helpers import ALICE, OPS, SETTINGS, admin, register_world, signed, station
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import ServerError
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from graph_store import EmbeddedStore, station_graph
from orchestrator.app import create_app

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TOKENS = {"operator": OPS, "researcher": ALICE}


def seeded_app() -> FastAPI:
    """The service on an in-memory store with stations, datasets, definitions and trains.

    Registered without running the lifespan (Schemathesis starts it on its first call and keeps it running):
    the vocabulary is loaded here, so that the lifecycle can fire transitions already.
    """
    store = EmbeddedStore()
    store.load_vocabulary()
    app = create_app(SETTINGS, store=store)
    client = TestClient(app)
    register_world(client)
    walk = (("waiting-for-approval", station), ("approved", admin), ("pulling", station), ("running", station),
            ("output-under-review", station))
    for definition, parameters, steps in (("count", {"MIN": "3"}, 0), ("count", {"MIN": "4"}, 4),
                                          ("count", {"MIN": "5"}, 5), ("fedavg", {}, 2)):
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": definition, "parameters": parameters}))
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        eid = f"{tid}.r1-s0"
        KNOWN["train_id"].append(tid)
        KNOWN["execution_id"] += [eid] + ([f"{tid}.r1-s1"] if definition == "fedavg" else [])
        for to, who in walk[:steps]:
            if to == "output-under-review":
                r = client.post(f"/api/executions/{eid}/outputs", headers=station("aachen"),
                                json={"sha256": "ab" * 32, "byte_size": 7})
                assert r.status_code == 201, r.text
            r = client.post(f"/api/executions/{eid}/steps", headers=who("aachen"), json={"to": to})
            assert r.status_code == 200, r.text
    return app


KNOWN: dict[str, list[str]] = {"station_id": ["aachen", "leipzig", "cologne"], "train_id": [], "execution_id": []}
"""Identifiers that exist, for the path parameters (else nearly every generated id would be a 404)."""

PROTOCOLS = r"^/(sparql|rdf-graphs)"
APP = seeded_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path_regex=PROTOCOLS)
PROTOCOL_APP = seeded_app()
protocol_schema = schemathesis.openapi.from_asgi("/openapi.json", PROTOCOL_APP).include(path_regex=PROTOCOLS)
PROTOCOL_STORE = PROTOCOL_APP.state.services.store

COMMITS: list[object] = []
PROTOCOL_STORE.on_commit(COMMITS.append)


def store_state() -> tuple[int, int]:
    """The number of changes committed and of quads: every write goes through ``GraphStore.apply``, whose
    commits are counted (the vocabulary reload of the lifespan, which Schemathesis starts within a test,
    rewrites the same number of quads and commits no change set)."""
    return len(COMMITS), len(PROTOCOL_STORE)
GRAPHS = [station_graph("aachen").value, "https://w3id.org/pht-kg/graph/central", "https://pht.example.org/fuzz"]
"""Graphs that exist (or one that does not), for ``?graph=``: else nearly every generated IRI would be a 404."""


@schemathesis.serializer("application/sparql-query", "application/sparql-update", "application/n-triples",
                         "application/rdf+xml", "text/turtle")
def as_text(_ctx: schemathesis.SerializationContext, value: Any) -> dict[str, Any]:
    """The protocols' text bodies (a query, an update, a graph) sent as generated, UTF-8."""
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8")}


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Half of the time (per parameter), an identifier that exists instead of the generated one."""
    strategies = {name: st.one_of(st.just(value), st.sampled_from(KNOWN[name])) if KNOWN.get(name) else st.just(value)
                  for name, value in (path_parameters or {}).items()}
    return st.fixed_dictionaries(strategies)

SETTINGS_FOR_TESTS = hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
    print_blob=False,
)


@pytest.fixture(params=sorted(TOKENS))
def headers(request: pytest.FixtureRequest) -> dict[str, str]:
    return TOKENS[request.param]


@schema.parametrize()
@SETTINGS_FOR_TESTS
def test_api_conforms_to_its_schema(case: schemathesis.Case, headers: dict[str, str]) -> None:
    case.call_and_validate(headers=headers, checks=CHECKS)


@protocol_schema.hook
def flatmap_query(context: schemathesis.HookContext, query: dict[str, Any] | None) -> Any:
    """Often, ``?graph=`` names a graph that exists (nearly every generated IRI would be a 404)."""
    if not query or "graph" not in query:
        return st.just(query)
    return st.sampled_from([query["graph"], *GRAPHS]).map(lambda graph: {**query, "graph": graph})


@protocol_schema.parametrize()
@SETTINGS_FOR_TESTS
def test_protocol_endpoints_refuse_cleanly(case: schemathesis.Case, headers: dict[str, str]) -> None:
    before = store_state()
    response = case.call(headers=headers)
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    if 400 <= status < 500 and case.method != "HEAD":
        detail = response.json()["detail"]
        assert isinstance(detail, str) and detail.strip(), response.text
    if status >= 400:
        assert store_state() == before, f"{case.method} {case.path} answered {status} but wrote"


def test_the_protocol_endpoints_document_parameters_bodies_and_media_types() -> None:
    """What a client generator or a fuzzer needs: every protocol parameter, body and media type."""
    paths = protocol_schema.raw_schema["paths"]

    def names(operation: dict[str, Any]) -> set[str]:
        return {p["name"] for p in operation.get("parameters", [])}

    assert names(paths["/sparql"]["get"]) == {"query", "default-graph-uri", "named-graph-uri"}
    post = paths["/sparql"]["post"]
    assert names(post) == {"default-graph-uri", "named-graph-uri", "using-graph-uri", "using-named-graph-uri"}
    bodies = post["requestBody"]["content"]
    assert set(bodies) == {"application/x-www-form-urlencoded", "application/sparql-query",
                           "application/sparql-update"}
    assert set(bodies["application/x-www-form-urlencoded"]["schema"]["properties"]) == {
        "query", "update", "default-graph-uri", "named-graph-uri", "using-graph-uri", "using-named-graph-uri"}
    answers = post["responses"]["200"]["content"]
    assert {"application/sparql-results+json", "text/csv", "text/turtle", "application/rdf+xml"} <= set(answers)
    for method in ("get", "head", "put", "post", "delete"):
        assert names(paths["/rdf-graphs"][method]) >= {"graph", "default"}, method
    for method in ("put", "post"):
        assert set(paths["/rdf-graphs"][method]["requestBody"]["content"]) == {
            "text/turtle", "application/n-triples", "application/ld+json", "application/rdf+xml",
            "multipart/form-data"}


def test_every_operation_with_a_body_documents_the_refusals_of_the_middlewares() -> None:
    """413 (body limit) and 415 (compressed body) come from middlewares, before any route: the schema lists them
    for every operation that takes a body, and a real oversized body gets the documented 413."""
    for raw in (schema.raw_schema, protocol_schema.raw_schema):
        for path, operations in raw["paths"].items():
            for method, operation in operations.items():
                if isinstance(operation, dict) and "requestBody" in operation:
                    assert {"413", "415"} <= set(operation["responses"]), f"{method.upper()} {path}"
    client = TestClient(APP)
    eid = KNOWN["execution_id"][0]
    r = client.post(f"/api/executions/{eid}/outputs", headers=station("aachen"),
                    json={"sha256": "ab" * 32, "byte_size": 7, "record": "x" * (SETTINGS.max_body_bytes + 1)})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_every_operation_is_tested() -> None:
    """The schema lists every route of the API (a route hidden from the schema would escape the tests)."""
    paths = set(schema.raw_schema["paths"])
    assert {"/api/trains", "/api/executions/{execution_id}/steps", "/api/stations/{station_id}/work"} <= paths
    assert all(p.startswith(("/api/", "/health", "/sparql", "/rdf-graphs")) for p in paths), paths


# --- the checks can fail ------------------------------------------------------------------------------


def broken_app() -> FastAPI:
    """Two routes with the bugs the checks are there for: one raises, one answers 500 itself."""
    app = FastAPI()

    @app.get("/raises")
    def raises() -> dict[str, str]:
        raise RuntimeError("a bug")

    @app.get("/answers-500")
    def answers_500() -> JSONResponse:
        return JSONResponse({"detail": "oops"}, status_code=500)

    return app


def test_a_server_error_would_be_caught() -> None:
    """The same call and checks, on an app with the two kinds of 500: both fail the test."""
    broken = schemathesis.openapi.from_asgi("/openapi.json", broken_app())
    with pytest.raises(BaseExceptionGroup) as caught:  # Schemathesis raises its failures as a group
        broken["/answers-500"]["GET"].Case().call_and_validate(headers=OPS, checks=CHECKS)
    assert caught.group_contains(ServerError), repr(caught.value)
    with pytest.raises(RuntimeError, match="a bug"):  # the in-process transport re-raises the app's exception
        broken["/raises"]["GET"].Case().call_and_validate(headers=OPS, checks=CHECKS)

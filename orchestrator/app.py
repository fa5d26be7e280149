"""The central service: one FastAPI application composed from the routers, built from :class:`Settings`.

Durable state lives in the graph store only (no in-memory queues): a restarted service reads everything
back, and ``Lifecycle.recover`` queues trains a crash left ``submitted``. One process owns an embedded store
(RocksDB lock), so run one worker per store; to scale out, run replicas on a remote SPARQL store (what they
share and what each keeps: docs/architecture.md, "Replicas of the central service").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph_store import (
    ConflictError,
    EmbeddedStore,
    GraphStore,
    InvalidInputError,
    RemoteStore,
    StoreUnavailable,
    ValidationFailed,
)

from .allowed_methods import install_allowed_methods
from .api.deps import Services
from .api.key_routes import key_router
from .api.metadata_routes import metadata_router
from .api.models import Problem
from .api.registry_routes import registry_router
from .api.result_routes import result_router
from .api.service_routes import service_router
from .api.station_routes import station_router
from .api.token_routes import token_router
from .api.train_routes import train_router
from .auth import TokenVerifier, principal_dependency, require_roles
from .errors import LifecycleError
from .graph_store_protocol import ACCEPTED_RDF, graph_store_router
from .lifecycle import Lifecycle
from .list_positions import DEFINITIONS, TRAINS, number_unlisted
from .metrics import install_metrics
from .point_query_door import PointQueryDoor
from .query_runner import QueryRunner, query_runner
from .readable_graph import ReadableGraphs
from .reads import Reads
from .registry import Registry
from .request_encoding import RefuseEncodedBodies
from .revocations import Revocations
from .settings import Settings, SettingsError
from .sparql_http import RDF_FORMATS, RESULTS_FORMATS
from .sparql_protocol import sparql_router
from .watchdog import StationWatchdog
from .web import web_router

__all__ = ["create_app", "open_store"]


def open_store(settings: Settings) -> GraphStore:
    """The store the settings name: remote SPARQL endpoints, embedded on disk, or in memory only when
    ``store_in_memory`` asks for it: a forgotten ``PHT_STORE_PATH`` must not lose every train at the next restart.

    :raises SettingsError: no store is named and memory was not asked for.
    """
    if settings.store_query_url:
        return RemoteStore(settings.store_query_url, settings.store_update_url, user=settings.store_user,
                           password=settings.store_password, write_lock_ttl_s=settings.store_lock_ttl_s or None)
    if settings.store_path is None and not settings.store_in_memory:
        raise SettingsError("no store: set PHT_STORE_PATH (a directory) or PHT_STORE_QUERY_URL, or "
                            "PHT_STORE_IN_MEMORY=1 to keep everything in memory and lose it when the service stops")
    return EmbeddedStore(settings.store_path)


class BodyLimit:
    """Refuse request bodies larger than ``limit`` bytes with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(self.limit, send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await _too_large(self.limit, send)


class _TooLarge(Exception):
    pass


async def _too_large(limit: int, send: Send) -> None:
    response = JSONResponse({"detail": f"request body larger than {limit} bytes"}, status_code=413)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse does not read the request
    return {"type": "http.disconnect"}


def create_app(settings: Settings, *, store: GraphStore | None = None) -> FastAPI:
    """Build the central service. ``store`` overrides the one the settings name (tests)."""
    # ``is None``, not ``or``: a GraphStore has ``__len__``, so an empty store given here is falsy.
    the_store = store if store is not None else open_store(settings)
    lifecycle = Lifecycle(the_store, settings)
    revocations = Revocations(the_store, lifecycle.iris, cache_s=settings.revocation_cache_s)
    verifier = TokenVerifier(settings, revoked=revocations.check)
    authenticate = principal_dependency(verifier)
    services = Services(the_store, settings, lifecycle, Registry(the_store, lifecycle.iris),
                        require_roles(authenticate), Reads(the_store, lifecycle.iris, lifecycle.chart),
                        ReadableGraphs(the_store, lifecycle.iris))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_store.load_vocabulary()
        for positioned in (TRAINS, DEFINITIONS):  # written before list positions existed: in their lists too
            number_unlisted(the_store, positioned)
        lifecycle.recover()
        watchdog = StationWatchdog(lifecycle, settings.station_timeout_s)
        watchdog.start()
        yield
        watchdog.stop()
        if store is None:
            the_store.close()

    app = FastAPI(
        title="PHT-KG central service",
        version="0.1.0",
        description="Orchestrates Personal Health Trains; the RDF graph is the system of record. Every call "
                    "needs a bearer token (JWT); roles: researcher, station, station-admin, operator.",
        lifespan=lifespan,
    )
    app.state.services = services
    # First: the protocol endpoints take the quick queries, and a request is matched against the routes in order
    runner = query_runner(services.store, settings, services.readable)  # /sparql's, shared with its door
    _protocol_routers(app, services, authenticate, runner)
    for router in (registry_router(services), train_router(services), station_router(services),
                   metadata_router(services), service_router(services), token_router(services, revocations),
                   key_router(services)):
        app.include_router(router, prefix="/api")
    app.include_router(result_router(services), prefix="/api")  # result links and the objects they read
    app.include_router(web_router(services, verifier=verifier))  # the web view at /ui: same tokens, same revocations
    if runner.lane is not None and not verifier.fetches_keys:  # innermost: the metrics count its answers
        app.add_middleware(PointQueryDoor, runner=runner, verifier=verifier)
    install_metrics(app, services, verifier)
    _error_handlers(app)
    install_allowed_methods(app)  # every 405 lists all methods of its path; HEAD wherever GET is
    _document_body_refusals(app, settings.max_body_bytes)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: the service answers and its store answers a query."""
        bool(the_store.query("ASK { ?s ?p ?o }"))
        return {"status": "ok"}

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RefuseEncodedBodies)  # outermost: limits count the bytes handlers read (see its module)
    return app


def _document_body_refusals(app: FastAPI, limit: int) -> None:
    """Every operation with a body may be answered 413 (``BodyLimit``) or 415 (``RefuseEncodedBodies``): both
    middlewares answer before any route, so they are added to the generated schema of each such operation."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
        refusals = {"413": f"the body is larger than {limit} bytes (PHT_MAX_BODY_BYTES)",
                    "415": "the body is compressed (Content-Encoding) or of a media type not accepted here"}
        for operations in schema["paths"].values():
            for operation in operations.values():
                if isinstance(operation, dict) and "requestBody" in operation:
                    for status, description in refusals.items():
                        operation["responses"].setdefault(status, {"description": description, "content": problem})
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI documents replacing app.openapi this way


def _protocol_routers(app: FastAPI, services: Services, authenticate: Any, runner: QueryRunner) -> None:
    """The SPARQL Protocol and Graph Store Protocol endpoints, with the responses they give documented in
    the OpenAPI schema (their handlers answer with plain Responses, so FastAPI cannot infer them)."""

    def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
        return {status: {"model": Problem} for status in statuses}

    sparql_ok = {"description": "Query results (negotiated from Accept), the service description, or the "
                                "counts of an update", "content": {m: {} for m in (*RESULTS_FORMATS, *RDF_FORMATS)}}
    graph_ok = {"description": "The graph (negotiated from Accept)",
                "content": {m: {} for m in (*ACCEPTED_RDF, *RDF_FORMATS)}}
    app.include_router(sparql_router(store=services.store, principal=authenticate, settings=services.settings,
                                     readable=services.readable, runner=runner),
                       tags=["sparql"],
                       responses={200: sparql_ok, **refusals(400, 401, 403, 406, 409, 413, 415, 422, 503)})
    app.include_router(graph_store_router(store=services.store, principal=authenticate, settings=services.settings,
                                          readable=services.readable),
                       tags=["graph store"],
                       responses={200: graph_ok, 201: {"description": "The graph was created"},
                                  204: {"description": "The graph was replaced, merged into or dropped"},
                                  **refusals(400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 503)})


def _error_handlers(app: FastAPI) -> None:
    """Every refusal becomes a 4xx with one sentence (and the SHACL report for 422); never a 500."""

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # A Problem like every other refusal (one sentence), with Pydantic's errors alongside.
        errors = jsonable_encoder(exc.errors())
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "the request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse({"detail": f"invalid request: {where}: {first.get('msg', 'not valid')}{more}",
                             "errors": errors}, status_code=422)

    @app.exception_handler(LifecycleError)
    async def lifecycle_error(_: Request, exc: LifecycleError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ValidationFailed)
    async def validation_failed(_: Request, exc: ValidationFailed) -> JSONResponse:
        return JSONResponse({"detail": "the write violates the shapes; nothing was written",
                             "report": exc.report.to_dict()}, status_code=422)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(InvalidInputError)
    async def invalid(_: Request, exc: InvalidInputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreUnavailable)
    async def unavailable(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

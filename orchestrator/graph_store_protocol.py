"""The SPARQL 1.1 Graph Store HTTP Protocol at ``/rdf-graphs`` (indirect identification: ``?graph=<IRI>``).

https://www.w3.org/TR/sparql11-http-rdf-update/

======  =====================================================================================================
GET     the graph in the negotiated format (Turtle, N-Triples, JSON-LD, RDF/XML); 404 if it is empty
HEAD    the same headers, no body
PUT     replace the graph by the body (201 if it was empty, else 204)
POST    merge the body into the graph (201 if it was empty, else 204)
DELETE  drop the graph (204; 404 if it is empty)
======  =====================================================================================================

Every write is ONE :class:`~graph_store.ChangeSet` given to :meth:`~graph_store.GraphStore.apply`, together with
its audit record: validated against the shapes as the store would be after it, and atomic (422 with the SHACL
report, nothing written).
The body is parsed with :func:`graph_store.parse_rdf` (400 with the parser's message; blank nodes are refused:
resources need IRIs), relative IRIs resolve against the graph IRI. 415 for other media types, 413 over
``settings.max_body_bytes``.

``?default`` names the default graph, which holds nothing in this store's layout (every statement lives in a
named graph): it can be read, not written (405). The ontology and shapes graphs are loaded from the
repository's files and are never written here (403).

Roles: operators write every data graph but the audit graph, each write recorded there (``orchestrator/audit.py``);
a ``Role.STATION`` caller reads only its own station graph and writes none (its MPU's metadata arrives only as
signed batches, ``POST /api/stations/{id}/metadata``); researchers and station admins only read.

A PUT reads the graph and then applies the difference; a write that lands on the same graph in between
(from another request) is not replaced by it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pyoxigraph import DefaultGraph, NamedNode, Quad
from starlette.concurrency import run_in_threadpool

from graph_store import (
    AUDIT_GRAPH,
    ONTOLOGY_GRAPH,
    SHAPES_GRAPH,
    ChangeSet,
    GraphStore,
    GraphStoreError,
    InputTooLarge,
    InvalidInputError,
    parse_rdf,
)

from .audit import audited
from .naming import Iris
from .principal import Principal, Role
from .readable_graph import ReadableGraphs, reads_everything
from .settings import Settings
from .sparql_http import (
    HttpError,
    error_for,
    media_type,
    own_station_graph,
    rdf_response,
    read_body,
    readable_everything,
)

__all__ = ["graph_store_router"]

ACCEPTED_RDF = ("text/turtle", "application/n-triples", "application/ld+json", "application/rdf+xml")
"""Media types a PUT or POST body may have."""

_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)
_DEFAULT_READ_ONLY = ("the default graph holds nothing here and is not writable: every statement lives in a "
                      "named graph; use ?graph=<IRI>")


def _target(request: Request) -> NamedNode | None:
    """The graph a request is about: a NamedNode for ``?graph=<IRI>``, None for ``?default``."""
    params = request.query_params
    graphs = params.getlist("graph")
    has_default = "default" in params
    if has_default == bool(graphs) or len(graphs) > 1:
        raise HttpError(400, "name exactly one graph: ?graph=<IRI> or ?default")
    if has_default:
        return None
    try:
        return NamedNode(graphs[0])
    except ValueError as e:
        raise HttpError(400, f"graph {graphs[0]!r} is not an absolute IRI: {e}") from None


def _check_read(who: Principal, graph: NamedNode | None) -> None:
    if graph == AUDIT_GRAPH and not who.has(Role.OPERATOR):
        raise HttpError(403, "the record of operators' edits is read by operators only")
    if readable_everything(who):
        return
    if who.has(Role.STATION):
        own = own_station_graph(who)
        if graph != own:
            raise HttpError(403, f"a station may read only its own graph {own}")
        return
    raise HttpError(403, "your roles allow reading no graph")


def _check_write(who: Principal, graph: NamedNode | None) -> NamedNode:
    if graph is None:
        raise HttpError(405, _DEFAULT_READ_ONLY, headers={"Allow": "GET, HEAD"})
    if graph in _PROTECTED:
        raise HttpError(403, f"the graph {graph} is loaded from the repository's files and is not written here")
    if graph == AUDIT_GRAPH:
        raise HttpError(403, f"the graph {graph} records operators' edits and is written only with them")
    if who.has(Role.OPERATOR):
        return graph
    if who.has(Role.STATION):
        raise HttpError(403, "a station's metadata arrives only as a batch signed by its MPU "
                             "(POST /api/stations/{id}/metadata), never written here")
    raise HttpError(403, "only operators write graphs")


async def _body_quads(request: Request, graph: NamedNode, limit: int) -> tuple[list[Quad], bytes]:
    """The body's quads in ``graph``, and the body as sent (its SHA-256 goes into the audit record)."""
    kind = media_type(request)
    if kind not in ACCEPTED_RDF:
        raise HttpError(415, f"send the graph as one of {', '.join(ACCEPTED_RDF)}, not "
                             f"{kind or 'a body without Content-Type'}")
    body = await read_body(request, limit)
    try:
        return await run_in_threadpool(parse_rdf, body, kind, graph, base_iri=graph.value), body
    except InvalidInputError as e:
        raise HttpError(413 if isinstance(e, InputTooLarge) else 400, str(e)) from None


def graph_store_router(*, store: GraphStore, principal: Callable[..., Any], settings: Settings,
                       readable: ReadableGraphs) -> APIRouter:
    """An APIRouter serving the Graph Store HTTP Protocol at ``/rdf-graphs`` over ``store``.

    :param principal: a FastAPI dependency returning the calling :class:`Principal` (raising 401 itself).
    :param settings: ``max_body_bytes`` is used.
    :param readable: what each caller who is not an operator may read (their reads come from it).
    """
    router = APIRouter()
    iris = Iris(settings.base_iri)

    def quads_of(graph: NamedNode | None) -> list[Quad]:
        return store.quads(g=DefaultGraph() if graph is None else graph)

    def readable_quads(who: Principal, graph: NamedNode | None) -> list[Quad]:
        """The graph as ``who`` may read it: whole for an operator or a station reading its own graph, else
        the part of it in the caller's readable graph (``readable_graph.py``)."""
        if reads_everything(who) or not readable_everything(who):
            return quads_of(graph)
        return readable.for_principal(who).quads(g=DefaultGraph() if graph is None else graph)

    def write(who: Principal, kind: str, body: bytes, change: ChangeSet) -> None:
        """The write and its audit record, as one validated, atomic change set (``orchestrator/audit.py``)."""
        store.apply(audited(change, iris=iris, who=who, kind=kind, request=body))

    def replace(who: Principal, graph: NamedNode, new: list[Quad], body: bytes) -> bool:
        old = quads_of(graph)
        write(who, "graph-put", body, ChangeSet(delete=old, insert=new))
        return bool(old)

    def merge(who: Principal, graph: NamedNode, new: list[Quad], body: bytes) -> bool:
        existed = bool(store.query("ASK { GRAPH $g { ?s ?p ?o } }", bindings={"g": graph}))
        write(who, "graph-post", body, ChangeSet(insert=new))
        return existed or not new

    def drop(who: Principal, graph: NamedNode) -> bool:
        old = quads_of(graph)
        if old:
            write(who, "graph-delete", b"", ChangeSet(delete=old))
        return bool(old)

    async def guarded(request: Request, action: Callable[[], Any]) -> Response:
        head = request.method == "HEAD"
        try:
            result: Response = await action()
            return result
        except HttpError as e:
            return e.response(head=head)
        except GraphStoreError as e:
            return error_for(e).response(head=head)
        except OSError as e:
            return HttpError(503, f"the graph store failed: {e}").response(head=head)

    # One route per method: a single api_route(methods=["GET", "HEAD"]) gives both OpenAPI operations the
    # same operationId (FastAPI derives it from the first method), which the OpenAPI spec forbids.
    @router.get("/rdf-graphs", summary="Read a graph (?graph=<IRI> or ?default)")
    @router.head("/rdf-graphs", summary="The headers of reading a graph, without the body")
    async def read_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        async def action() -> Response:
            graph = _target(request)
            _check_read(who, graph)
            quads = await run_in_threadpool(readable_quads, who, graph)
            if not quads and graph is not None:
                raise HttpError(404, f"the graph {graph} is empty or unknown")
            return rdf_response([q.triple for q in quads], request.headers.get("accept"),
                                head=request.method == "HEAD")
        return await guarded(request, action)

    @router.put("/rdf-graphs", summary="Replace a graph by the body (validated, atomic)")
    async def put_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        async def action() -> Response:
            graph = _check_write(who, _target(request))
            new, body = await _body_quads(request, graph, settings.max_body_bytes)
            existed = await run_in_threadpool(replace, who, graph, new, body)
            return Response(status_code=204 if existed or not new else 201)
        return await guarded(request, action)

    @router.post("/rdf-graphs", summary="Merge the body into a graph (validated, atomic)")
    async def post_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        async def action() -> Response:
            graph = _check_write(who, _target(request))
            new, body = await _body_quads(request, graph, settings.max_body_bytes)
            existed = await run_in_threadpool(merge, who, graph, new, body)
            return Response(status_code=204 if existed else 201)
        return await guarded(request, action)

    @router.delete("/rdf-graphs", summary="Drop a graph (validated, atomic)")
    async def delete_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        async def action() -> Response:
            graph = _check_write(who, _target(request))
            if not await run_in_threadpool(drop, who, graph):
                raise HttpError(404, f"the graph {graph} is empty or unknown")
            return Response(status_code=204)
        return await guarded(request, action)

    return router


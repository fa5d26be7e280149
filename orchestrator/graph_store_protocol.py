"""The SPARQL 1.1 Graph Store HTTP Protocol at ``/rdf-graphs``.

https://www.w3.org/TR/sparql11-http-rdf-update/

A request names its graph indirectly (``/rdf-graphs?graph=<IRI>``, ``/rdf-graphs?default``) or directly
(``/rdf-graphs/{path}`` is the graph ``{base_iri}rdf-graphs/{path}``, ``settings.base_iri``: a deployment whose base
IRI is the service's public URL gets graph IRIs that are also the URLs reading them).

======  =====================================================================================================
GET     the graph in the negotiated format (Turtle, N-Triples, JSON-LD, RDF/XML); 404 if it is empty
HEAD    the same headers, no body
PUT     replace the graph by the body (201 if it was empty, else 204)
POST    merge the body into the graph (201 if it was empty, else 204); POST to ``/rdf-graphs`` itself (no graph
        named) creates a new graph ``{base_iri}rdf-graphs/{uuid}``: 201 with its IRI in ``Location``
DELETE  drop the graph (204; 404 if it is empty)
======  =====================================================================================================

Every write is ONE :class:`~graph_store.ChangeSet` given to :meth:`~graph_store.GraphStore.apply`, together with
its audit record: validated against the shapes as the store would be after it, and atomic (422 with the SHACL
report, nothing written).
The body is parsed with :func:`graph_store.parse_rdf` (400 with the parser's message), relative IRIs resolve
against the graph IRI. A ``multipart/form-data`` body is several documents (one per part, each with its own RDF
Content-Type) merged into the graph: a part that is not RDF is refused with 400 naming it, and nothing is written.
Blank nodes are skolemised (RDF 1.1 Concepts §3.5) into IRIs ``{base_iri}.well-known/genid/{uuid}``, one per blank
node of a document: the store keeps no blank nodes. 415 for other media types, 413 over ``settings.max_body_bytes``.

``?default`` names the default graph, stored in the named graph ``DEFAULT_GRAPH`` (every statement lives in a
named graph; a query's default graph is the union of them all, so it includes this one). An empty default graph
reads as an empty document (it always exists), not 404. The ontology and shapes graphs are loaded from the
repository's files and are never written here (403); the audit graph is written only with the edits it records.

Roles: operators write every data graph but those, each write recorded in the audit graph (``orchestrator/audit.py``);
a ``Role.STATION`` caller reads only its own station graph and writes none (its MPU's metadata arrives only as
signed batches, ``POST /api/stations/{id}/metadata``); researchers and station admins only read.

A PUT reads the graph and then applies the difference; a write that lands on the same graph in between
(from another request) is not replaced by it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from pyoxigraph import NamedNode, Quad
from starlette.concurrency import run_in_threadpool

from graph_store import (
    AUDIT_GRAPH,
    DEFAULT_GRAPH,
    ONTOLOGY_GRAPH,
    SHAPES_GRAPH,
    ChangeSet,
    GraphStore,
    GraphStoreError,
    InputTooLarge,
    InvalidInputError,
    parse_rdf,
    server_graph_refusal,
)

from .audit import audited
from .naming import Iris
from .principal import Principal, Role
from .rdf_multipart import MultipartError, form_parts
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
from .sparql_openapi import GSP_READ, GSP_READ_DIRECT, gsp_write

__all__ = ["direct_graph", "graph_store_router"]

ACCEPTED_RDF = ("text/turtle", "application/n-triples", "application/ld+json", "application/rdf+xml")
"""Media types a PUT or POST body (or each part of a multipart/form-data body) may have."""

_MULTIPART = "multipart/form-data"
_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def direct_graph(base_iri: str, path: str) -> NamedNode:
    """The graph ``/rdf-graphs/{path}`` names (direct identification): ``{base_iri}rdf-graphs/{path}``."""
    try:
        return NamedNode(f"{base_iri}rdf-graphs/{quote(path, safe=_PATH_SAFE)}")
    except ValueError as e:
        raise HttpError(400, f"/rdf-graphs/{path} does not name a graph: {e}") from None


def _target(request: Request, base_iri: str) -> NamedNode | None:
    """The graph a request is about (``DEFAULT_GRAPH`` for ``?default``), or None if it names none (the store)."""
    params = request.query_params
    graphs = params.getlist("graph")
    path = request.path_params.get("path")
    named = len(graphs) + ("default" in params) + (path is not None)
    if named > 1:
        raise HttpError(400, "name exactly one graph: /rdf-graphs/{path}, ?graph=<IRI> or ?default")
    if path is not None:
        return direct_graph(base_iri, path)
    if "default" in params:
        return DEFAULT_GRAPH
    if not graphs:
        return None
    try:
        return NamedNode(graphs[0])
    except ValueError as e:
        raise HttpError(400, f"graph {graphs[0]!r} is not an absolute IRI: {e}") from None


def _named(graph: NamedNode | None) -> NamedNode:
    if graph is None:
        raise HttpError(400, "name exactly one graph: /rdf-graphs/{path}, ?graph=<IRI> or ?default")
    return graph


def _check_read(who: Principal, graph: NamedNode) -> None:
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


def _check_write(who: Principal, graph: NamedNode | None) -> None:
    """403 unless ``who`` may write ``graph`` (None: a new graph POSTed to the store)."""
    if graph in _PROTECTED:
        raise HttpError(403, f"the graph {graph} is loaded from the repository's files and is not written here")
    if graph == AUDIT_GRAPH:
        raise HttpError(403, f"the graph {graph} records operators' edits and is written only with them")
    if who.has(Role.OPERATOR):
        return
    if who.has(Role.STATION):
        raise HttpError(403, "a station's metadata arrives only as a batch signed by its MPU "
                             "(POST /api/stations/{id}/metadata), never written here")
    raise HttpError(403, "only operators write graphs")


def _parse(data: bytes, kind: str, graph: NamedNode, skolem: str, what: str) -> list[Quad]:
    if kind not in ACCEPTED_RDF:
        raise HttpError(415 if what == "the body" else 400,
                        f"send {what} as one of {', '.join(ACCEPTED_RDF)}, not {kind or 'data without Content-Type'}")
    try:
        return parse_rdf(data, kind, graph, base_iri=graph.value, skolemise=skolem)
    except InvalidInputError as e:
        raise HttpError(413 if isinstance(e, InputTooLarge) else 400,
                        f"{what}: {e}" if what != "the body" else str(e)) from None


def _document_quads(body: bytes, content_type: str, graph: NamedNode, skolem: str) -> list[Quad]:
    """The quads of a body: one RDF document, or one per part of a multipart/form-data body (all or nothing)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind != _MULTIPART:
        return _parse(body, kind, graph, skolem, "the body")
    try:
        parts = form_parts(body, content_type)
    except MultipartError as e:
        raise HttpError(400, str(e)) from None
    quads: list[Quad] = []
    for part in parts:
        quads += _parse(part.data, part.media_type, graph, skolem, f"the part {part.name!r}")
    return quads


async def _body_quads(request: Request, graph: NamedNode, limit: int, skolem: str) -> tuple[list[Quad], bytes]:
    """The body's quads in ``graph``, and the body as sent (its SHA-256 goes into the audit record)."""
    kind = media_type(request)
    if kind not in (*ACCEPTED_RDF, _MULTIPART):
        raise HttpError(415, f"send the graph as one of {', '.join(ACCEPTED_RDF)} or {_MULTIPART}, not "
                             f"{kind or 'a body without Content-Type'}")
    body = await read_body(request, limit)
    content_type = request.headers.get("content-type", "")
    return await run_in_threadpool(_document_quads, body, content_type, graph, skolem), body


def graph_store_router(*, store: GraphStore, principal: Callable[..., Any], settings: Settings,
                       readable: ReadableGraphs) -> APIRouter:
    """An APIRouter serving the Graph Store HTTP Protocol at ``/rdf-graphs`` over ``store``.

    :param principal: a FastAPI dependency returning the calling :class:`Principal` (raising 401 itself).
    :param settings: ``max_body_bytes`` is used.
    :param readable: what each caller who is not an operator may read (their reads come from it).
    """
    router = APIRouter()
    iris = Iris(settings.base_iri)
    skolem = iris.skolem_prefix

    def check_not_server_graph(graph: NamedNode) -> None:
        if store.server_graph(graph):
            raise HttpError(403, server_graph_refusal(graph))

    def quads_of(graph: NamedNode) -> list[Quad]:
        return store.quads(g=graph)

    def readable_quads(who: Principal, graph: NamedNode) -> list[Quad]:
        """The graph as ``who`` may read it: whole for an operator or a station reading its own graph, else
        the part of it in the caller's readable graph (``readable_graph.py``)."""
        if reads_everything(who) or not readable_everything(who):
            return quads_of(graph)
        return readable.for_principal(who).quads(g=graph)

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

    async def read(request: Request, who: Principal) -> Response:
        async def action() -> Response:
            graph = _named(_target(request, settings.base_iri))
            check_not_server_graph(graph)  # the store's bookkeeping (graph sizes, writers' claims): nobody's data
            _check_read(who, graph)
            quads = await run_in_threadpool(readable_quads, who, graph)
            if not quads and graph != DEFAULT_GRAPH:
                raise HttpError(404, f"the graph {graph} is empty or unknown")
            return rdf_response([q.triple for q in quads], request.headers.get("accept"),
                                head=request.method == "HEAD")
        return await guarded(request, action)

    async def put(request: Request, who: Principal) -> Response:
        async def action() -> Response:
            graph = _named(_target(request, settings.base_iri))
            _check_write(who, graph)
            check_not_server_graph(graph)
            new, body = await _body_quads(request, graph, settings.max_body_bytes, skolem)
            existed = await run_in_threadpool(replace, who, graph, new, body)
            return Response(status_code=204 if existed or not new else 201)
        return await guarded(request, action)

    async def post(request: Request, who: Principal) -> Response:
        async def action() -> Response:
            target = _target(request, settings.base_iri)
            _check_write(who, target)
            if target is not None:
                check_not_server_graph(target)
            graph = target if target is not None else direct_graph(settings.base_iri, str(uuid.uuid4()))
            new, body = await _body_quads(request, graph, settings.max_body_bytes, skolem)
            if target is None:  # POST to the store: a new graph (SPARQL 1.1 Graph Store Protocol §5.5)
                if not new:
                    raise HttpError(400, "a new graph needs at least one statement; the body has none")
                await run_in_threadpool(merge, who, graph, new, body)
                return Response(status_code=201, headers={"Location": graph.value})
            existed = await run_in_threadpool(merge, who, graph, new, body)
            return Response(status_code=204 if existed else 201)
        return await guarded(request, action)

    async def delete(request: Request, who: Principal) -> Response:
        async def action() -> Response:
            graph = _named(_target(request, settings.base_iri))
            _check_write(who, graph)
            check_not_server_graph(graph)
            if not await run_in_threadpool(drop, who, graph):
                raise HttpError(404, f"the graph {graph} is empty or unknown")
            return Response(status_code=204)
        return await guarded(request, action)

    # One route per method and path: a single api_route(methods=["GET", "HEAD"]) gives both OpenAPI operations
    # the same operationId (FastAPI derives it from the first method), which the OpenAPI spec forbids. The
    # direct routes declare ``path`` so that OpenAPI documents it; the handlers read it from the request.
    @router.get("/rdf-graphs", summary="Read a graph (?graph=<IRI> or ?default)",
                openapi_extra=GSP_READ)
    @router.head("/rdf-graphs", summary="The headers of reading a graph, without the body",
                 openapi_extra=GSP_READ)
    async def read_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        return await read(request, who)

    @router.get("/rdf-graphs/{path:path}", summary="Read the graph {base_iri}rdf-graphs/{path}",
                openapi_extra=GSP_READ_DIRECT)
    @router.head("/rdf-graphs/{path:path}", summary="The headers of reading a graph named by its path",
                 openapi_extra=GSP_READ_DIRECT)
    async def read_graph_directly(path: str, request: Request, who: Principal = Depends(principal)) -> Response:
        return await read(request, who)

    @router.put("/rdf-graphs", summary="Replace a graph by the body (validated, atomic)",
                openapi_extra=gsp_write(ACCEPTED_RDF))
    async def put_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        return await put(request, who)

    @router.put("/rdf-graphs/{path:path}", summary="Replace the graph {base_iri}rdf-graphs/{path} by the body",
                openapi_extra=gsp_write(ACCEPTED_RDF, direct=True))
    async def put_graph_directly(path: str, request: Request, who: Principal = Depends(principal)) -> Response:
        return await put(request, who)

    @router.post("/rdf-graphs", summary="Merge the body into a graph, or create a new graph (validated, atomic)",
                 openapi_extra=gsp_write(ACCEPTED_RDF))
    async def post_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        return await post(request, who)

    @router.post("/rdf-graphs/{path:path}", summary="Merge the body into the graph {base_iri}rdf-graphs/{path}",
                 openapi_extra=gsp_write(ACCEPTED_RDF, direct=True))
    async def post_graph_directly(path: str, request: Request, who: Principal = Depends(principal)) -> Response:
        return await post(request, who)

    @router.delete("/rdf-graphs", summary="Drop a graph (validated, atomic)",
                   openapi_extra=GSP_READ)
    async def delete_graph(request: Request, who: Principal = Depends(principal)) -> Response:
        return await delete(request, who)

    @router.delete("/rdf-graphs/{path:path}", summary="Drop the graph {base_iri}rdf-graphs/{path}",
                   openapi_extra=GSP_READ_DIRECT)
    async def delete_graph_directly(path: str, request: Request, who: Principal = Depends(principal)) -> Response:
        return await delete(request, who)

    return router

"""The SPARQL 1.1 Protocol endpoint ``/sparql``: queries for every role, validated updates for operators.

https://www.w3.org/TR/sparql11-protocol/

Queries
    GET ``?query=``, POST form (``query=``) or POST ``application/sparql-query``; ``default-graph-uri`` and
    ``named-graph-uri`` (repeatable) replace the query's own dataset. Without either (and without FROM in the
    query) the default graph is the union of all graphs. A caller holding only ``Role.STATION`` sees only its
    own station graph, whatever it asks for: naming another graph, or using FROM / FROM NAMED, gives 403.

    Results are negotiated from ``Accept`` (q-values honoured) and written by pyoxigraph's serialisers:
    SELECT/ASK as SPARQL JSON (default), XML, CSV or TSV; CONSTRUCT/DESCRIBE as Turtle (default), N-Triples,
    JSON-LD or RDF/XML. 406 if none is acceptable. GET without a query answers a service description.

    SERVICE (federated query) is refused with 400: pyoxigraph would fetch any URL a caller names, from inside
    the platform's network.

Updates
    POST form (``update=``) or ``application/sparql-update``, for ``Role.OPERATOR`` only. An update is never
    run as such: :meth:`~graph_store.GraphStore.plan_update` computes the effect of the whole request — every
    operation but LOAD, several separated by ``;`` applied in order, each seeing the ones before (see
    ``graph_store/_updates.py`` and ``graph_store/_update_sequence.py``) — as ONE :class:`~graph_store.ChangeSet`,
    and :meth:`~graph_store.GraphStore.apply` writes it, SHACL-validated as a whole and atomic like every other
    write (422 with the report on a violation, nothing written; 409 if the quads it deletes went away meanwhile).
    ``using-graph-uri`` / ``using-named-graph-uri`` set the WHEREs' dataset. The update is parsed and
    its WHEREs evaluated like a query (in a worker process, within the time-out, SERVICE refused) and one with more than
    ``settings.query_result_limit`` solutions is refused. Blank nodes an update inserts become skolem IRIs
    ``{base_iri}.well-known/genid/{uuid}``. ``CLEAR ALL`` / ``DROP ALL`` / ``NAMED`` mean the graphs an operator may
    write: they leave the ontology, shapes and audit graphs alone, and naming one of those explicitly is 403.
    ``DEFAULT`` is the named graph ``DEFAULT_GRAPH`` (the Graph Store Protocol's ``?default``). LOAD is refused
    with 400: the platform fetches no URL a caller names. Every update is committed together with its audit record
    (``orchestrator/audit.py``: who, when, the text's SHA-256, quads inserted and deleted per graph) in the
    audit graph, which no update may write (403).

Base IRI
    Relative IRIs in a query or update resolve against the endpoint's URL as the request reached it
    (``BASE <…/sparql>`` ahead of the query's own prologue, which may override it; SPARQL 1.1 Protocol §2.1.4).
    A body whose Content-Type names a charset other than UTF-8 is 415.

Run time
    The main process never parses or evaluates a caller's SPARQL. Before any parser sees it, a query or update
    longer than 1,000,000 characters, nested deeper than 64 ``{`` / ``(`` / ``[``, or holding more than 2,000
    operators is answered 400 (``query_text.py``: pyoxigraph's recursive parser crashes the process on such
    text). Queries and updates' WHEREs are evaluated by worker processes (``query_workers.py``, ``query_worker.py``;
    ``settings.query_workers`` of them, each with an in-memory replica of an embedded store kept current with
    every commit, or its own client of a remote store). A query that has not finished after
    ``settings.query_timeout_s`` is answered 503 with ``Retry-After`` and its worker is killed (SIGKILL) and
    replaced: pyoxigraph cannot cancel a query, a process can be stopped. A query running longer than 1 s (or
    half its deadline) gets a lower CPU priority (nice 10). A caller may run ``settings.query_per_principal``
    queries at a time (one more waits ``settings.query_queue_s`` for a slot, then 429 with ``Retry-After``),
    fewer than there are workers, so one caller's load leaves the others workers. SELECT and CONSTRUCT results
    are cut at ``settings.query_result_limit`` rows / triples and at
    ``settings.query_result_max_bytes`` serialised, announced by ``X-PHT-Result-Truncated: true``. Request
    bodies over ``settings.max_body_bytes`` are answered 413.

Errors are JSON ``{"detail": "<one sentence>"}`` (422 adds ``"report"``); a malformed query or update is
answered 400 with the parser's message.
"""


from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pyoxigraph import NamedNode, Triple
from starlette.concurrency import run_in_threadpool

from graph_store import (
    ONTOLOGY_GRAPH,
    RDF_TYPE,
    SHAPES_GRAPH,
    GraphStore,
    GraphStoreError,
    server_graph_refusal,
)

from .audit import audited, check_not_audit
from .naming import Iris
from .principal import Principal, Role
from .query_runner import QueryRunner, query_runner
from .readable_graph import ReadableGraphs
from .settings import Settings
from .sparql_http import (
    RDF_FORMATS,
    RESULTS_FORMATS,
    HttpError,
    accepts_an_answer,
    endpoint_iri,
    error_for,
    media_type,
    not_acceptable,
    rdf_response,
    read_body,
    readable_everything,
)
from .sparql_openapi import SPARQL_GET, SPARQL_POST

__all__ = ["sparql_router"]

_FORM = "application/x-www-form-urlencoded"
_QUERY = "application/sparql-query"
_UPDATE = "application/sparql-update"
_SD = "http://www.w3.org/ns/sparql-service-description#"
_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)


def _endpoint_iri(request: Request) -> str:
    """The endpoint's URL as the request reached it: the base IRI of its queries and updates."""
    try:
        return endpoint_iri(request.scope)
    except ValueError:
        url = str(request.url.replace(query="", fragment=""))
        raise HttpError(400, f"the request URL {url!r} is not an IRI to resolve relative IRIs against") from None


def _check_charset(request: Request) -> None:
    """415 for a body declared in another charset than UTF-8 (the protocol's only encoding)."""
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise HttpError(415, f"send the request in UTF-8, not {value.strip()}")


def _sd(name: str) -> NamedNode:
    return NamedNode(_SD + name)


def _service_description(request: Request, who: Principal) -> list[Triple]:
    """A SPARQL 1.1 Service Description of the endpoint, as the caller may use it."""
    endpoint = NamedNode(str(request.url.replace(query="", fragment="")))
    triples = [
        Triple(endpoint, RDF_TYPE, _sd("Service")),
        Triple(endpoint, _sd("endpoint"), endpoint),
        Triple(endpoint, _sd("supportedLanguage"), _sd("SPARQL11Query")),
        Triple(endpoint, _sd("defaultEntailmentRegime"), NamedNode("http://www.w3.org/ns/entailment/Simple")),
    ]
    if who.has(Role.OPERATOR):
        triples.append(Triple(endpoint, _sd("supportedLanguage"), _sd("SPARQL11Update")))
    if readable_everything(who):
        triples.append(Triple(endpoint, _sd("feature"), _sd("UnionDefaultGraph")))
    formats = {f.iri for f in RESULTS_FORMATS.values()} | {f.iri for f in RDF_FORMATS.values()}
    triples += [Triple(endpoint, _sd("resultFormat"), NamedNode(iri)) for iri in sorted(formats)]
    return triples


# -- the router ------------------------------------------------------------------------------------------


def sparql_router(*, store: GraphStore, principal: Callable[..., Any], settings: Settings,
                  readable: ReadableGraphs, max_concurrent_queries: int | None = None,
                  runner: QueryRunner | None = None) -> APIRouter:
    """An APIRouter serving the SPARQL 1.1 Protocol at ``/sparql`` over ``store``.

    :param principal: a FastAPI dependency returning the calling :class:`Principal` (raising 401 itself).
    :param settings: ``query_timeout_s``, ``query_result_limit`` and ``max_body_bytes`` are used.
    :param readable: what each caller who is not an operator may read (their queries run over it).
    :param max_concurrent_queries: size of the worker pool evaluating queries (``settings.query_workers``).
    :param runner: the runner to use (the service shares it with ``PointQueryDoor``); by default one of
        ``query_runner(store, settings, readable, workers=max_concurrent_queries)``. Started and closed here.
    """
    iris = Iris(settings.base_iri)
    skolem = iris.skolem_prefix
    if runner is None:
        runner = query_runner(store, settings, readable, workers=max_concurrent_queries)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await runner.start()
        yield
        runner.close()

    router = APIRouter(lifespan=lifespan)

    async def answer_query(request: Request, who: Principal, text: str, default_uris: list[str],
                           named_uris: list[str]) -> Response:
        accept = request.headers.get("accept")
        if not accepts_an_answer(accept):
            raise not_acceptable([*RESULTS_FORMATS, *RDF_FORMATS])  # refused before any evaluation
        # in a worker process; relative IRIs resolve against the endpoint's URL
        return await runner.respond(who, text, default_uris, named_uris, accept, base=_endpoint_iri(request))

    async def run_update(request: Request, who: Principal, text: str, using: list[str],
                         using_named: list[str]) -> Response:
        if not who.has(Role.OPERATOR):
            raise HttpError(403, "only operators may send SPARQL updates")
        # parsed and its WHEREs evaluated like a query (in a worker process, within the time-out); applied here
        planned = await runner.plan_update(who, text, using, using_named, base=_endpoint_iri(request), skolem=skolem)
        for graph in planned.change.graphs():
            if isinstance(graph, NamedNode) and store.server_graph(graph):
                raise HttpError(403, server_graph_refusal(graph))
            if graph in _PROTECTED:
                raise HttpError(403, f"the graph {graph} is loaded from the repository's files and is not "
                                     "written through SPARQL")
        refusal = check_not_audit(planned.change)
        if refusal is not None:
            raise HttpError(403, refusal)
        # the edit and its audit record: one atomic, validated write (orchestrator/audit.py)
        change = audited(planned.change, iris=iris, who=who, kind="sparql-update", request=text.encode("utf-8"))
        await run_in_threadpool(store.apply, change)
        return JSONResponse({"deleted": len(planned.change.delete), "inserted": len(planned.change.insert)})

    async def handle(request: Request, who: Principal) -> Response:
        url_params = request.query_params
        if request.method == "GET":
            if "update" in url_params:
                raise HttpError(400, "updates must be sent with POST (SPARQL 1.1 Protocol §2.2)")
            queries = url_params.getlist("query")
            if not queries:
                return rdf_response(_service_description(request, who), request.headers.get("accept"))
            if len(queries) > 1:
                raise HttpError(400, "give exactly one query parameter")
            return await answer_query(request, who, queries[0], url_params.getlist("default-graph-uri"),
                                      url_params.getlist("named-graph-uri"))
        kind = media_type(request)
        if kind not in (_FORM, _QUERY, _UPDATE):
            raise HttpError(415, f"POST a query or update as {_FORM}, {_QUERY} or {_UPDATE}, not "
                                 f"{kind or 'a body without Content-Type'}")
        _check_charset(request)
        body = await read_body(request, settings.max_body_bytes)
        if kind == _FORM:
            try:
                fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                                   errors="strict")
            except UnicodeDecodeError as e:
                raise HttpError(400, f"the form is not UTF-8: {e}") from None
            form: dict[str, list[str]] = {}
            for key, value in [*url_params.multi_items(), *fields]:
                form.setdefault(key, []).append(value)
            queries, updates = form.get("query", []), form.get("update", [])
            if len(queries) + len(updates) != 1:
                raise HttpError(400, "give exactly one query or update parameter")
            if queries:
                return await answer_query(request, who, queries[0], form.get("default-graph-uri", []),
                                          form.get("named-graph-uri", []))
            return await run_update(request, who, updates[0], form.get("using-graph-uri", []),
                                    form.get("using-named-graph-uri", []))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HttpError(400, f"the body is not UTF-8: {e}") from None
        if kind == _QUERY:
            return await answer_query(request, who, text, url_params.getlist("default-graph-uri"),
                                      url_params.getlist("named-graph-uri"))
        return await run_update(request, who, text, url_params.getlist("using-graph-uri"),
                                url_params.getlist("using-named-graph-uri"))

    async def guarded(request: Request, who: Principal) -> Response:
        try:
            return await handle(request, who)
        except HttpError as e:
            return e.response()
        except GraphStoreError as e:
            return error_for(e).response()
        except OSError as e:  # pyoxigraph reports storage failures as OSError
            return HttpError(503, f"the graph store failed: {e}").response()

    @router.get("/sparql", summary="SPARQL 1.1 query (?query=), or the service description without a query",
                openapi_extra=SPARQL_GET)
    async def sparql_get(request: Request, who: Principal = Depends(principal)) -> Response:
        return await guarded(request, who)

    @router.post("/sparql", summary="SPARQL 1.1 query or update (form, application/sparql-query or -update)",
                 openapi_extra=SPARQL_POST)
    async def sparql_post(request: Request, who: Principal = Depends(principal)) -> Response:
        return await guarded(request, who)

    return router

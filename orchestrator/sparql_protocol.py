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
    run as such: :meth:`~graph_store.GraphStore.plan_update` computes its effect as one
    :class:`~graph_store.ChangeSet` (see ``graph_store/_updates.py`` for what is supported: INSERT DATA,
    DELETE DATA, DELETE/INSERT ... WHERE with WITH / USING, DELETE WHERE; a WHERE operation only alone), and
    :meth:`~graph_store.GraphStore.apply` writes it, SHACL-validated and atomic like every other write (422
    with the report on a violation, nothing written; 409 if the quads it deletes went away meanwhile).
    ``using-graph-uri`` / ``using-named-graph-uri`` set the WHERE's dataset. The WHERE is evaluated like a
    query (in the pool, within the time-out, SERVICE refused) and an update whose WHERE has more than
    ``settings.query_result_limit`` solutions is refused. Writing the ontology or shapes graph is 403; the
    graph management operations (LOAD, CLEAR, DROP, ...) are refused with 400: replace or drop graphs with
    the Graph Store Protocol (``/rdf-graphs``). Every update is committed together with its audit record
    (``orchestrator/audit.py``: who, when, the text's SHA-256, quads inserted and deleted per graph) in the
    audit graph, which no update may write (403).

Run time
    Queries are evaluated in a small pool of worker threads (pyoxigraph releases the GIL while it evaluates,
    so the event loop and the other workers keep answering). A query that has not finished after
    ``settings.query_timeout_s`` is answered 503; pyoxigraph cannot cancel a query, so a worker stuck inside
    one evaluation step stays busy until that step ends (the pool bounds how many can be). SELECT and
    CONSTRUCT results are cut at ``settings.query_result_limit`` rows / triples, announced by the header
    ``X-PHT-Result-Truncated: true``. Request bodies over ``settings.max_body_bytes`` are answered 413.

Errors are JSON ``{"detail": "<one sentence>"}`` (422 adds ``"report"``); a malformed query or update is
answered 400 with the parser's message.
"""

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    QueryBoolean,
    QueryResultsFormat,
    QuerySolutions,
    RdfFormat,
    Triple,
    parse_query_results,
    serialize,
)
from starlette.concurrency import run_in_threadpool

from graph_store import (
    ONTOLOGY_GRAPH,
    RDF_TYPE,
    SHAPES_GRAPH,
    XSD,
    ConflictError,
    GraphStore,
    GraphStoreError,
    InvalidInputError,
    StoreUnavailable,
    UpdatePlan,
    ValidationFailed,
    compile_update,
    station_graph,
)

from .audit import audited, check_not_audit
from .naming import Iris
from .principal import Principal, Role
from .readable_graph import ReadableGraphs, reads_everything
from .settings import Settings

__all__ = ["sparql_router"]
# HttpError, error_for, negotiate, read_body, media_type, rdf_response, readable_everything and
# own_station_graph are shared with graph_store_protocol.py.

T = TypeVar("T")

RESULTS_FORMATS: dict[str, QueryResultsFormat] = {
    "application/sparql-results+json": QueryResultsFormat.JSON,
    "application/sparql-results+xml": QueryResultsFormat.XML,
    "text/csv": QueryResultsFormat.CSV,
    "text/tab-separated-values": QueryResultsFormat.TSV,
    "application/json": QueryResultsFormat.JSON,
    "application/xml": QueryResultsFormat.XML,
}
"""Media types offered for SELECT / ASK results, in order of preference (the first is the default)."""

RDF_FORMATS: dict[str, RdfFormat] = {
    "text/turtle": RdfFormat.TURTLE,
    "application/n-triples": RdfFormat.N_TRIPLES,
    "application/ld+json": RdfFormat.JSON_LD,
    "application/rdf+xml": RdfFormat.RDF_XML,
    "application/x-turtle": RdfFormat.TURTLE,
    "text/plain": RdfFormat.N_TRIPLES,
}
"""Media types offered for graphs (CONSTRUCT / DESCRIBE, Graph Store GET), in order of preference."""

TRUNCATED_HEADER = "X-PHT-Result-Truncated"
LIMIT_HEADER = "X-PHT-Result-Limit"

_FORM = "application/x-www-form-urlencoded"
_QUERY = "application/sparql-query"
_UPDATE = "application/sparql-update"
_SD = "http://www.w3.org/ns/sparql-service-description#"
_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)


# -- HTTP helpers shared with the Graph Store Protocol router ---------------------------------------------


class HttpError(Exception):
    """A refusal to answer with ``status`` and a one-sentence ``detail`` (plus extra JSON members)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def response(self, *, head: bool = False) -> Response:
        """The JSON error response; for a HEAD request its headers (Content-Type and -Length included, as
        RFC 9110 section 9.3.2 asks) without the body."""
        response = JSONResponse({"detail": self.detail, **self.extra}, status_code=self.status, headers=self.headers)
        if head:
            return Response(status_code=self.status, headers=dict(response.headers))
        return response


def error_for(e: GraphStoreError) -> HttpError:
    """The HTTP answer to a refusal of the graph store."""
    if isinstance(e, ValidationFailed):
        return HttpError(422, f"the change violates the shapes; nothing was written. {e.report.text()}",
                         report=e.report.to_dict())
    if isinstance(e, ConflictError):
        return HttpError(409, str(e))
    if isinstance(e, StoreUnavailable):
        return HttpError(503, f"the graph store is unavailable: {e}")
    return HttpError(400, str(e))


def negotiate(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer ``accept`` prefers (RFC 9110 §12.5.1), or None if it accepts none of them.

    Each offer gets the q-value of the most specific media range matching it; the highest wins and ties go to
    the earlier offer. No (or an empty) Accept header accepts the first offer.

    >>> negotiate("text/csv;q=0.5, application/sparql-results+xml", ["application/sparql-results+json",
    ...           "application/sparql-results+xml", "text/csv"])
    'application/sparql-results+xml'
    >>> negotiate("text/*;q=0.2, */*;q=0.1, text/turtle;q=0", ["text/turtle", "application/n-triples"])
    'application/n-triples'
    """
    if accept is None or not accept.strip():
        return offers[0] if offers else None
    ranges: list[tuple[str, str, float]] = []
    for part in accept.split(","):
        fields = part.split(";")
        media = fields[0].strip().lower()
        if media == "*":
            media = "*/*"
        main, slash, sub = media.partition("/")
        if not slash or not main or not sub:
            continue
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        ranges.append((main, sub, q))
    best, best_q = None, 0.0
    for offer in offers:
        o_main, _, o_sub = offer.partition("/")
        specificity, q = -1, 0.0
        for main, sub, range_q in ranges:
            if (main, sub) == (o_main, o_sub):
                rank = 2
            elif main == o_main and sub == "*":
                rank = 1
            elif (main, sub) == ("*", "*"):
                rank = 0
            else:
                continue
            if rank > specificity:
                specificity, q = rank, range_q
        if q > best_q:
            best, best_q = offer, q
    return best


def not_acceptable(offers: Iterable[str]) -> HttpError:
    return HttpError(406, "none of the media types in the Accept header can be served here; ask for one of: "
                     + ", ".join(offers))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or 413 if it is (or declares to be) longer than ``limit`` bytes."""
    too_large = HttpError(413, f"the request body is larger than the limit of {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case ('' if missing)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def rdf_response(triples: Sequence[Triple], accept: str | None, *, extra_headers: dict[str, str] | None = None,
                 head: bool = False) -> Response:
    """``triples`` in the RDF format ``accept`` prefers (406 if none), written by pyoxigraph."""
    chosen = negotiate(accept, list(RDF_FORMATS))
    if chosen is None:
        raise not_acceptable(RDF_FORMATS)
    try:
        body = serialize(triples, format=RDF_FORMATS[chosen])
    except (ValueError, OSError) as e:
        raise HttpError(406, f"the result cannot be written as {chosen} ({e}); ask for text/turtle") from None
    headers = {"Vary": "Accept", **(extra_headers or {})}
    if head:
        headers["Content-Length"] = str(len(body or b""))
        return Response(status_code=200, media_type=chosen, headers=headers)
    return Response(body, media_type=chosen, headers=headers)


def readable_everything(who: Principal) -> bool:
    """True if ``who`` may query any graph: an operator over the whole store, a researcher or a station admin
    over what they may read (``readable_graph.py``); a station-only caller has its own graph only."""
    return who.has(Role.OPERATOR, Role.RESEARCHER, Role.STATION_ADMIN)


def own_station_graph(who: Principal) -> NamedNode:
    """The station graph of a station principal (403 if the token names no valid station)."""
    try:
        return station_graph(who.station or "")
    except ValueError:
        raise HttpError(403, "this station token names no valid station, so it may see no graph") from None


# -- queries ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dataset:
    """Arguments of GraphStore.query that select the RDF dataset (None = the query's / the store's own)."""

    default_graph: list[NamedNode] | None = None
    named_graphs: list[NamedNode] | None = None
    union_default_graph: bool = False
    store: GraphStore | None = None
    """The store to evaluate over, if not the central one: what the caller may read (``readable_graph.py``)."""


@dataclass(frozen=True)
class _Answer:
    """An evaluated query, cut at the row limit."""

    boolean: QueryBoolean | None = None
    variables: tuple[str, ...] = ()
    rows: tuple[Any, ...] = ()
    triples: tuple[Triple, ...] = ()
    is_graph: bool = False
    truncated: bool = False


class _QueryRunner:
    """Evaluates queries in a bounded pool of worker threads and gives up on them after a deadline."""

    def __init__(self, store: GraphStore, *, timeout_s: float, row_limit: int, workers: int) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.row_limit = row_limit
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="sparql-query")
            return self._pool

    def close(self) -> None:
        """Drop queued queries; running ones finish in the background."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    async def run(self, work: Callable[[threading.Event], T]) -> T:
        """``work(cancelled)`` in a worker thread; 503 if it has not finished after the time-out.

        ``work`` should return soon after ``cancelled`` is set.
        """
        cancelled = threading.Event()
        future = self._executor().submit(self._guarded, work, cancelled)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            cancelled.set()
            future.cancel()
            raise HttpError(503, f"the query did not finish within {self.timeout_s:g} s (the service runs at most "
                            f"{self.workers} queries at a time); make it more selective or add a LIMIT",
                            headers={"Retry-After": "1"}) from None

    @staticmethod
    def _guarded(work: Callable[[threading.Event], T], cancelled: threading.Event) -> T:
        if cancelled.is_set():
            raise HttpError(503, "the query was abandoned before it started")
        return work(cancelled)

    def evaluate(self, text: str, dataset: _Dataset, cancelled: threading.Event) -> _Answer:
        """Run ``text`` (in a worker thread) and collect at most ``row_limit`` rows / triples."""
        try:
            store = dataset.store if dataset.store is not None else self.store
            result = store.query(text, default_graph=dataset.default_graph,
                                      named_graphs=dataset.named_graphs,
                                      union_default_graph=dataset.union_default_graph)
        except InvalidInputError as e:
            message = str(e)
            raise HttpError(400, message if message.startswith("malformed") else f"malformed SPARQL query: {message}"
                            ) from None
        if isinstance(result, QueryBoolean):
            return _Answer(boolean=result)
        if isinstance(result, QuerySolutions):
            variables = tuple(v.value for v in result.variables)
            rows, truncated = self._collect(result, cancelled)
            return _Answer(variables=variables, rows=tuple(rows), truncated=truncated)
        triples, truncated = self._collect(result, cancelled)
        return _Answer(triples=tuple(triples), is_graph=True, truncated=truncated)

    def _collect(self, items: Iterable[Any], cancelled: threading.Event) -> tuple[list[Any], bool]:
        collected: list[Any] = []
        for item in items:
            if cancelled.is_set():
                break
            if len(collected) == self.row_limit:
                return collected, True
            collected.append(item)
        return collected, False


def _term_json(term: Any) -> dict[str, Any]:
    """A term in the SPARQL 1.1 (1.2 for triple terms and directions) JSON results form."""
    if isinstance(term, NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, Literal):
        out: dict[str, Any] = {"type": "literal", "value": term.value}
        if term.language:
            out["xml:lang"] = term.language
            if getattr(term, "direction", None):
                out["its:dir"] = str(term.direction)
        elif term.datatype != XSD.string:
            out["datatype"] = term.datatype.value
        return out
    if isinstance(term, Triple):
        return {"type": "triple", "value": {"subject": _term_json(term.subject),
                                            "predicate": _term_json(term.predicate),
                                            "object": _term_json(term.object)}}
    raise TypeError(f"unexpected term {term!r}")


def _solutions(answer: _Answer) -> QuerySolutions:
    """The collected rows again as pyoxigraph QuerySolutions, so that pyoxigraph serialises them.

    pyoxigraph has no constructor for QuerySolutions, so the rows go through the JSON results form (the
    format pyoxigraph itself writes) and are parsed back.
    """
    bindings = [{v: _term_json(t) for v, t in zip(answer.variables, row) if t is not None} for row in answer.rows]
    doc = {"head": {"vars": list(answer.variables)}, "results": {"bindings": bindings}}
    solutions = parse_query_results(json.dumps(doc).encode(), format=QueryResultsFormat.JSON)
    if not isinstance(solutions, QuerySolutions):  # a document with "results" parses as solutions
        raise TypeError("SPARQL JSON results with bindings did not parse as solutions")
    return solutions


def _answer_response(answer: _Answer, accept: str | None, limit: int) -> Response:
    """Serialise an answer in the negotiated format (406 if none is acceptable)."""
    headers = {"Vary": "Accept"}
    if answer.boolean is None:
        headers[TRUNCATED_HEADER] = "true" if answer.truncated else "false"
        headers[LIMIT_HEADER] = str(limit)
    if answer.is_graph:
        return rdf_response(answer.triples, accept, extra_headers=headers)
    chosen = negotiate(accept, list(RESULTS_FORMATS))
    if chosen is None:
        raise not_acceptable(RESULTS_FORMATS)
    fmt = RESULTS_FORMATS[chosen]
    results = answer.boolean if answer.boolean is not None else _solutions(answer)
    return Response(results.serialize(format=fmt), media_type=chosen, headers=headers)


_OPAQUE_START = re.compile(r"[#<\"']")
_COMMENT = re.compile(r"#[^\r\n]*")
_STRING_BODY = {q: re.compile(body, re.DOTALL) for q, body in [
    ('"', r'(?:[^"\\]|\\.)*'), ("'", r"(?:[^'\\]|\\.)*"),
    ('"""', r'(?:[^"\\]|\\.|"(?!""))*'), ("'''", r"(?:[^'\\]|\\.|'(?!''))*")]}
_IRIREF = re.compile(r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>')
_SERVICE = re.compile(r"(?<![\w:?$\-])SERVICE(?![\w:\-])", re.IGNORECASE)
_FROM = re.compile(r"(?<![\w:?$\-.])FROM(?![\w:\-.])", re.IGNORECASE)


def _code(text: str) -> str:
    """``text`` with its IRIs, string literals and comments blanked out (same length, same offsets), so that
    keywords, braces and ``$`` found in the rest are SPARQL syntax, not data.

    Deliberately conservative where it matters for security (the SERVICE check): IRIs may hold ``\\u``
    escapes (as pyoxigraph accepts), a comment ends at the first line break, an unterminated string runs to
    the end (pyoxigraph refuses such a query anyway).

    >>> _code('SELECT * WHERE { <http://a#b> ?p "x } #" } # SERVICE')
    'SELECT * WHERE {              ?p         }          '
    """
    out: list[str] = []
    i, last, n = 0, 0, len(text)
    while (start := _OPAQUE_START.search(text, i)) is not None:
        i = start.start()
        c = text[i]
        if c == "#":
            j = comment.end() if (comment := _COMMENT.match(text, i)) else n  # always matches at a "#"
        elif c == "<" and (m := _IRIREF.match(text, i)):
            j = m.end()
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            body = _STRING_BODY[quote].match(text, i + len(quote))  # always matches (possibly empty)
            j = body.end() if body else n
            j = j + len(quote) if text.startswith(quote, j) else n
        else:
            i += 1
            continue
        out += [text[last:i], " " * (j - i)]
        i = last = j
    out.append(text[last:])
    return "".join(out)


def _checked_query_text(text: str) -> str:
    """A caller's query made ready for GraphStore.query: SERVICE refused, ``$name`` variables as ``?name``.

    pyoxigraph evaluates SERVICE by fetching the named URL: the central service would send requests anywhere a
    caller asks (its own network included). ``$name`` and ``?name`` are the same SPARQL variable, but
    GraphStore.query reads ``$name`` as a parameter to bind.
    """
    code = _code(text)
    if _SERVICE.search(code):
        raise HttpError(400, "federated queries (SERVICE) are not run here: the central service does not send "
                             "requests to other servers on a caller's behalf")
    dollars = [m.start() for m in re.finditer(r"\$", code)]
    if not dollars:
        return text
    parts, last = [], 0
    for k in dollars:
        parts += [text[last:k], "?"]
        last = k + 1
    return "".join(parts) + text[last:]


def _has_dataset_clause(text: str) -> bool:
    """True if the query has FROM / FROM NAMED."""
    return _FROM.search(_code(text)) is not None


def _iris(values: Iterable[str], param: str) -> list[NamedNode]:
    result = []
    for v in values:
        try:
            result.append(NamedNode(v))
        except ValueError as e:
            raise HttpError(400, f"{param} {v!r} is not an absolute IRI: {e}") from None
    return result


def _query_dataset(who: Principal, text: str, default_uris: list[str], named_uris: list[str],
                   readable: ReadableGraphs) -> _Dataset:
    """The dataset of a query: the protocol's graphs, else the query's FROM, else the union of all graphs;
    over the whole store for an operator, over what the caller may read for a researcher or a station admin
    (``readable``); a station-only caller is confined to its own graph."""
    defaults = _iris(default_uris, "default-graph-uri")
    named = _iris(named_uris, "named-graph-uri")
    given = bool(default_uris or named_uris)
    if not readable_everything(who):
        if not who.has(Role.STATION):
            raise HttpError(403, "your roles allow no SPARQL queries")
        own = own_station_graph(who)
        others = sorted({g.value for g in defaults + named if g != own})
        if others:
            raise HttpError(403, f"a station may query only its own graph {own}; not {', '.join(others)}")
        if _has_dataset_clause(text):
            raise HttpError(403, f"a station's queries always run over its own graph {own}; leave out FROM / "
                                 "FROM NAMED")
        return _Dataset(defaults, named) if given else _Dataset([own], [own])
    store = None if reads_everything(who) else readable.for_principal(who)
    if given:
        return _Dataset(defaults, named, store=store)
    if _has_dataset_clause(text):
        return _Dataset(store=store)
    return _Dataset(union_default_graph=True, store=store)


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
                  readable: ReadableGraphs, max_concurrent_queries: int = 4) -> APIRouter:
    """An APIRouter serving the SPARQL 1.1 Protocol at ``/sparql`` over ``store``.

    :param principal: a FastAPI dependency returning the calling :class:`Principal` (raising 401 itself).
    :param settings: ``query_timeout_s``, ``query_result_limit`` and ``max_body_bytes`` are used.
    :param readable: what each caller who is not an operator may read (their queries run over it).
    :param max_concurrent_queries: size of the worker pool evaluating queries.
    """
    iris = Iris(settings.base_iri)
    runner = _QueryRunner(store, timeout_s=settings.query_timeout_s, row_limit=settings.query_result_limit,
                          workers=max_concurrent_queries)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        runner.close()

    router = APIRouter(lifespan=lifespan)

    async def answer_query(request: Request, who: Principal, text: str, default_uris: list[str],
                           named_uris: list[str]) -> Response:
        accept = request.headers.get("accept")
        if negotiate(accept, list(RESULTS_FORMATS)) is None and negotiate(accept, list(RDF_FORMATS)) is None:
            raise not_acceptable([*RESULTS_FORMATS, *RDF_FORMATS])  # refused before any evaluation

        def work(cancelled: threading.Event) -> Response:  # all of it off the event loop, within the time-out
            checked = _checked_query_text(text)
            dataset = _query_dataset(who, checked, default_uris, named_uris, readable)
            answer = runner.evaluate(checked, dataset, cancelled)
            return _answer_response(answer, accept, runner.row_limit)

        return await runner.run(work)

    async def run_update(who: Principal, text: str, using: list[str], using_named: list[str]) -> Response:
        if not who.has(Role.OPERATOR):
            raise HttpError(403, "only operators may send SPARQL updates")
        graphs = _iris(using, "using-graph-uri"), _iris(using_named, "using-named-graph-uri")
        update = await run_in_threadpool(lambda: compile_update(_checked_query_text(text)))  # parsing takes a while

        def plan(_cancelled: threading.Event | None = None) -> UpdatePlan:
            return store.plan_update(update, using=graphs[0], using_named=graphs[1], max_solutions=runner.row_limit)

        # a WHERE is evaluated like a query: in the pool, within the time-out; nothing is written before the end
        planned = await (run_in_threadpool(plan) if update.where is None else runner.run(plan))
        for graph in planned.change.graphs():
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
            return await run_update(who, updates[0], form.get("using-graph-uri", []),
                                    form.get("using-named-graph-uri", []))
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as e:
            raise HttpError(400, f"the body is not UTF-8: {e}") from None
        if kind == _QUERY:
            return await answer_query(request, who, text, url_params.getlist("default-graph-uri"),
                                      url_params.getlist("named-graph-uri"))
        return await run_update(who, text, url_params.getlist("using-graph-uri"),
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

    @router.get("/sparql", summary="SPARQL 1.1 query (?query=), or the service description without a query")
    async def sparql_get(request: Request, who: Principal = Depends(principal)) -> Response:
        return await guarded(request, who)

    @router.post("/sparql", summary="SPARQL 1.1 query or update (form, application/sparql-query or -update)")
    async def sparql_post(request: Request, who: Principal = Depends(principal)) -> Response:
        return await guarded(request, who)

    return router

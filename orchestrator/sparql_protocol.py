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

Updates
    POST form (``update=``) or ``application/sparql-update``, for ``Role.OPERATOR`` only. An update is never
    run as such: its effect is computed as one :class:`~graph_store.ChangeSet` and written with
    :meth:`~graph_store.GraphStore.apply`, so it is SHACL-validated and atomic like every other write (422 with
    the report on a violation, nothing written). Supported operations: INSERT DATA, DELETE DATA,
    DELETE/INSERT ... WHERE (with WITH / USING) and DELETE WHERE. A WHERE is evaluated as a SELECT and the
    templates are instantiated with its solutions, so a request may hold at most one WHERE operation, and
    only as its single operation (a later WHERE would have to see the earlier operations' changes). The
    graph management operations (LOAD, CLEAR, DROP, CREATE, ADD, MOVE, COPY) are refused with 400: replace or
    drop graphs with the Graph Store Protocol (``/rdf-graphs``).

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

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import rdflib
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pyoxigraph import (
    BlankNode,
    DefaultGraph,
    Literal,
    NamedNode,
    Quad,
    QueryBoolean,
    QueryResultsFormat,
    QuerySolutions,
    RdfFormat,
    Triple,
    parse_query_results,
    serialize,
)
from rdflib.plugins.sparql.algebra import translateUpdate
from rdflib.plugins.sparql.parser import parseUpdate
from starlette.concurrency import run_in_threadpool

from graph_store import (
    ONTOLOGY_GRAPH,
    SHAPES_GRAPH,
    ChangeSet,
    ConflictError,
    GraphStore,
    GraphStoreError,
    InvalidInputError,
    StoreUnavailable,
    ValidationFailed,
    station_graph,
)
from graph_store._convert import to_oxi
from graph_store._sparql_text import tokens

from .principal import Principal, Role
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
_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_SD = "http://www.w3.org/ns/sparql-service-description#"
_RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
_PROTECTED = (ONTOLOGY_GRAPH, SHAPES_GRAPH)
_GRAPH_OPERATIONS = {"Load", "Clear", "Drop", "Create", "Add", "Move", "Copy"}


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
        """The JSON error response (no body at all for a HEAD request)."""
        if head:
            return Response(status_code=self.status, headers=self.headers)
        return JSONResponse({"detail": self.detail, **self.extra}, status_code=self.status, headers=self.headers)


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
    """True if ``who`` may read every graph (operator, researcher, station admin)."""
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


@dataclass(frozen=True)
class _Answer:
    """An evaluated query, cut at the row limit."""

    boolean: bool | None = None
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
        result = self.store.query(text, default_graph=dataset.default_graph, named_graphs=dataset.named_graphs,
                                  union_default_graph=dataset.union_default_graph)
        if isinstance(result, QueryBoolean):
            return _Answer(boolean=bool(result))
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
        elif term.datatype.value != _XSD_STRING:
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
    return parse_query_results(json.dumps(doc).encode(), format=QueryResultsFormat.JSON)


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
    if answer.boolean is not None:
        return Response(_boolean_result(answer.boolean).serialize(format=fmt), media_type=chosen, headers=headers)
    return Response(_solutions(answer).serialize(format=fmt), media_type=chosen, headers=headers)


def _boolean_result(value: bool) -> QueryBoolean:
    """A QueryBoolean holding ``value`` (pyoxigraph has no public constructor for it)."""
    doc = {"head": {}, "boolean": value}
    result = parse_query_results(json.dumps(doc).encode(), format=QueryResultsFormat.JSON)
    assert isinstance(result, QueryBoolean)
    return result


def _words(text: str) -> Iterable[tuple[str, int, int]]:
    """The lexer's tokens of a query or update; 400 if it cannot even be lexed."""
    try:
        return list(tokens(text))
    except InvalidInputError as e:
        raise HttpError(400, f"malformed SPARQL: {e}") from None


def _dollar_variables_as_question_marks(text: str) -> str:
    """``$name`` and ``?name`` are the same SPARQL variable; GraphStore.query reads ``$name`` as a parameter."""
    out, last = [], 0
    for kind, start, _ in _words(text):
        if kind == "param":
            out += [text[last:start], "?"]
            last = start + 1
    return "".join(out) + text[last:]


def _has_dataset_clause(text: str) -> bool:
    """True if the query has FROM / FROM NAMED (the word FROM appears nowhere else in SPARQL 1.1)."""
    return any(kind == "word" and text[s:e].upper() == "FROM" for kind, s, e in _words(text))


def _iris(values: Iterable[str], param: str) -> list[NamedNode]:
    result = []
    for v in values:
        try:
            result.append(NamedNode(v))
        except ValueError as e:
            raise HttpError(400, f"{param} {v!r} is not an absolute IRI: {e}") from None
    return result


def _query_dataset(who: Principal, text: str, default_uris: list[str], named_uris: list[str]) -> _Dataset:
    """The dataset of a query: the protocol's graphs, else the query's FROM, else the union of all graphs;
    a station-only caller is confined to its own graph."""
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
    if given:
        return _Dataset(defaults, named)
    if _has_dataset_clause(text):
        return _Dataset()
    return _Dataset(union_default_graph=True)


def _sd(name: str) -> NamedNode:
    return NamedNode(_SD + name)


def _service_description(request: Request, who: Principal) -> list[Triple]:
    """A SPARQL 1.1 Service Description of the endpoint, as the caller may use it."""
    endpoint = NamedNode(str(request.url.replace(query="", fragment="")))
    triples = [
        Triple(endpoint, _RDF_TYPE, _sd("Service")),
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


# -- updates ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Template:
    """Quad templates of one update clause: rdflib terms (variables allowed) with their graph."""

    quads: tuple[tuple[Any, Any, Any, Any], ...]


def _member(comp: Any, key: str) -> Any:
    """``comp[key]`` of an rdflib CompValue, None if missing (its ``get`` returns the key itself then)."""
    return comp[key] if key in comp else None


def _templates(clause: Any, default_graph: Any) -> _Template:
    """The quads of an rdflib update clause (``triples`` outside GRAPH go to ``default_graph``)."""
    if clause is None:
        return _Template(())
    quads = [(s, p, o, default_graph) for s, p, o in _member(clause, "triples") or ()]
    for g, triples in (_member(clause, "quads") or {}).items():
        quads += [(s, p, o, g) for s, p, o in triples]
    return _Template(tuple(quads))


def _oxi(term: Any, row: Any) -> Any:
    """An rdflib template term as a pyoxigraph term (variables from ``row``; None if unbound)."""
    if isinstance(term, rdflib.Variable):
        return None if row is None else row[str(term)]
    if isinstance(term, (NamedNode, DefaultGraph)):
        return term
    return to_oxi(term)


def _instantiate(template: _Template, rows: Sequence[Any]) -> list[Quad]:
    """Template quads for each solution; a quad with an unbound or ill-placed term is left out (SPARQL 1.1
    Update §3.1.3)."""
    quads = []
    for row in rows:
        for s, p, o, g in template.quads:
            terms = [_oxi(t, row) for t in (s, p, o, g)]
            if any(t is None for t in terms):
                continue
            subject, predicate, obj, graph = terms
            if isinstance(subject, Literal) or not isinstance(predicate, NamedNode) or \
                    isinstance(graph, (Literal, BlankNode)):
                continue
            quads.append(Quad(subject, predicate, obj, graph))
    return quads


def _where_as_select(text: str) -> str:
    """The WHERE of the request's only operation (a DELETE/INSERT ... WHERE or DELETE WHERE) as SELECT *."""
    depth, first_op, last_word = 0, None, ""
    groups: list[tuple[int, int, str]] = []
    opened_after, opened_at = "", 0
    for kind, s, e in _words(text):
        if kind == "{":
            if depth == 0:
                opened_at, opened_after = s, last_word
            depth += 1
        elif kind == "}":
            depth -= 1
            if depth == 0:
                groups.append((opened_at, e, opened_after))
        elif kind == "word" and depth == 0:
            last_word = text[s:e].upper()
            if first_op is None and last_word in ("WITH", "DELETE", "INSERT"):
                first_op = s
    if first_op is None or not groups or groups[-1][2] != "WHERE":
        raise HttpError(400, "cannot find the WHERE clause of the update")
    start, end, _ = groups[-1]
    return text[:first_op] + "SELECT * WHERE " + text[start:end]


@dataclass
class _UpdatePlan:
    """What an update request does: DATA quads, and at most one WHERE operation (evaluated separately)."""

    delete: set[Quad]
    insert: set[Quad]
    where_select: str | None = None
    where_dataset: _Dataset | None = None
    delete_template: _Template | None = None
    insert_template: _Template | None = None


def _fold(delete: set[Quad], insert: set[Quad], *, deleted: Iterable[Quad] = (), inserted: Iterable[Quad] = ()) \
        -> None:
    """Apply one operation's deletions, then its insertions, to the request's net effect."""
    for q in deleted:
        insert.discard(q)
        delete.add(q)
    for q in inserted:
        delete.discard(q)
        insert.add(q)


def _plan_update(text: str, using: list[NamedNode], using_named: list[NamedNode]) -> _UpdatePlan:
    """Parse an update request into an _UpdatePlan (400 for unsupported forms, with a sentence)."""
    try:
        operations = list(translateUpdate(parseUpdate(text)).algebra)
    except Exception as e:  # rdflib raises pyparsing ParseException, and others for bad IRIs / prefixes
        raise HttpError(400, f"malformed SPARQL update: {e}") from None
    plan = _UpdatePlan(set(), set())
    where_ops = [op for op in operations if op.name in ("Modify", "DeleteWhere")]
    if where_ops and len(operations) > 1:
        raise HttpError(400, "a DELETE/INSERT ... WHERE or DELETE WHERE operation must be the only operation of "
                             "its request (its WHERE would have to see the changes of the others); send it alone")
    for op in operations:
        if op.name in _GRAPH_OPERATIONS:
            raise HttpError(400, f"{op.name.upper()} is not supported here: only INSERT DATA, DELETE DATA, "
                                 "DELETE/INSERT ... WHERE and DELETE WHERE are; replace or drop graphs with the "
                                 "Graph Store Protocol at /rdf-graphs")
        if op.name == "InsertData":
            _fold(plan.delete, plan.insert, inserted=_instantiate(_templates(op, DefaultGraph()), [None]))
        elif op.name == "DeleteData":
            _fold(plan.delete, plan.insert, deleted=_instantiate(_templates(op, DefaultGraph()), [None]))
        elif op.name == "DeleteWhere":
            if using or using_named:
                raise HttpError(400, "using-graph-uri / using-named-graph-uri do not apply to DELETE WHERE")
            plan.delete_template = _templates(op, DefaultGraph())
            plan.where_select = _where_as_select(text)
            plan.where_dataset = _Dataset()
        elif op.name == "Modify":
            with_graph = to_oxi(op["withClause"]) if _member(op, "withClause") is not None else None
            declared_using = list(_member(op, "using") or ())
            if (using or using_named) and (with_graph is not None or declared_using):
                raise HttpError(400, "an update with WITH or USING may not also be sent with using-graph-uri / "
                                     "using-named-graph-uri (SPARQL 1.1 Protocol §2.2.3)")
            target = with_graph if with_graph is not None else DefaultGraph()
            plan.delete_template = _templates(_member(op, "delete"), target)
            plan.insert_template = _templates(_member(op, "insert"), target)
            plan.where_select = _where_as_select(text)
            if using or using_named:
                plan.where_dataset = _Dataset(using, using_named)
            elif declared_using:
                plan.where_dataset = _Dataset(
                    [to_oxi(u["default"]) for u in declared_using if _member(u, "default") is not None],
                    [to_oxi(u["named"]) for u in declared_using if _member(u, "named") is not None])
            elif with_graph is not None:
                plan.where_dataset = _Dataset([with_graph], None)
            else:
                plan.where_dataset = _Dataset()
        else:
            raise HttpError(400, f"unsupported update operation {op.name}")
    return plan


# -- the router ------------------------------------------------------------------------------------------


def sparql_router(*, store: GraphStore, principal: Callable[..., Any], settings: Settings,
                  max_concurrent_queries: int = 4) -> APIRouter:
    """An APIRouter serving the SPARQL 1.1 Protocol at ``/sparql`` over ``store``.

    :param principal: a FastAPI dependency returning the calling :class:`Principal` (raising 401 itself).
    :param settings: ``query_timeout_s``, ``query_result_limit`` and ``max_body_bytes`` are used.
    :param max_concurrent_queries: size of the worker pool evaluating queries.
    """
    runner = _QueryRunner(store, timeout_s=settings.query_timeout_s, row_limit=settings.query_result_limit,
                          workers=max_concurrent_queries)

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        runner.close()

    router = APIRouter(lifespan=lifespan)

    async def answer_query(request: Request, who: Principal, text: str, default_uris: list[str],
                           named_uris: list[str]) -> Response:
        text = _dollar_variables_as_question_marks(text)
        dataset = _query_dataset(who, text, default_uris, named_uris)
        accept = request.headers.get("accept")

        def work(cancelled: threading.Event) -> Response:
            answer = runner.evaluate(text, dataset, cancelled)
            return _answer_response(answer, accept, runner.row_limit)

        return await runner.run(work)

    async def run_update(who: Principal, text: str, using: list[str], using_named: list[str]) -> Response:
        if not who.has(Role.OPERATOR):
            raise HttpError(403, "only operators may send SPARQL updates")
        plan = await run_in_threadpool(_plan_update, text, _iris(using, "using-graph-uri"),
                                       _iris(using_named, "using-named-graph-uri"))
        delete, insert = set(plan.delete), set(plan.insert)
        if plan.where_select is not None and plan.where_dataset is not None:
            select = _dollar_variables_as_question_marks(plan.where_select)
            where_dataset = plan.where_dataset
            answer = await runner.run(lambda cancelled: runner.evaluate(select, where_dataset, cancelled))
            if answer.truncated:
                raise HttpError(400, f"the update's WHERE matched more than {runner.row_limit} solutions; split "
                                     "it into smaller updates")
            _fold(delete, insert,
                  deleted=_instantiate(plan.delete_template or _Template(()), answer.rows),
                  inserted=_instantiate(plan.insert_template or _Template(()), answer.rows))
        for q in delete | insert:
            if isinstance(q.graph_name, DefaultGraph):
                raise HttpError(400, f"{q} is in the default graph, which holds nothing here: put the triples "
                                     "inside GRAPH <...> { } or name the graph with WITH <...>")
            if q.graph_name in _PROTECTED:
                raise HttpError(403, f"the graph {q.graph_name} is loaded from the repository's files and is "
                                     "not written through SPARQL")
        change = ChangeSet(delete=delete, insert=insert)
        await run_in_threadpool(store.apply, change)
        return JSONResponse({"deleted": len(change.delete), "inserted": len(change.insert)})

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

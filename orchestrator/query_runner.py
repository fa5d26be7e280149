"""Evaluating a caller's query: its dataset (what the caller may read), the run within a deadline and a row
limit, and the answer serialised in the negotiated format."""

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Response
from pyoxigraph import (
    BlankNode,
    Literal,
    NamedNode,
    QueryBoolean,
    QueryResultsFormat,
    QuerySolutions,
    Triple,
    parse_query_results,
)

from graph_store import XSD, GraphStore, InvalidInputError

from .principal import Principal, Role
from .query_text import has_dataset_clause
from .readable_graph import ReadableGraphs, reads_everything
from .sparql_http import (
    LIMIT_HEADER,
    RESULTS_FORMATS,
    TRUNCATED_HEADER,
    HttpError,
    boolean_results,
    graph_accept,
    negotiate,
    not_acceptable,
    own_station_graph,
    rdf_response,
    readable_everything,
)

__all__ = ["QueryAnswer", "QueryDataset", "QueryRunner", "answer_response", "parse_iris", "query_dataset"]

T = TypeVar("T")

@dataclass(frozen=True)
class QueryDataset:
    """Arguments of GraphStore.query that select the RDF dataset (None = the query's / the store's own)."""

    default_graph: list[NamedNode] | None = None
    named_graphs: list[NamedNode] | None = None
    union_default_graph: bool = False
    store: GraphStore | None = None
    """The store to evaluate over, if not the central one: what the caller may read (``readable_graph.py``)."""


@dataclass(frozen=True)
class QueryAnswer:
    """An evaluated query, cut at the row limit."""

    boolean: QueryBoolean | None = None
    variables: tuple[str, ...] = ()
    rows: tuple[Any, ...] = ()
    triples: tuple[Triple, ...] = ()
    is_graph: bool = False
    truncated: bool = False


class QueryRunner:
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

    def evaluate(self, text: str, dataset: QueryDataset, cancelled: threading.Event) -> QueryAnswer:
        """Run ``text`` (in a worker thread) and collect at most ``row_limit`` rows / triples."""
        try:
            store = dataset.store if dataset.store is not None else self.store
            result = store.query_untrusted(text, default_graph=dataset.default_graph,
                                      named_graphs=dataset.named_graphs,
                                      union_default_graph=dataset.union_default_graph)
        except InvalidInputError as e:
            message = str(e)
            raise HttpError(400, message if message.startswith("malformed") else f"malformed SPARQL query: {message}"
                            ) from None
        if isinstance(result, QueryBoolean):
            return QueryAnswer(boolean=result)
        if isinstance(result, QuerySolutions):
            variables = tuple(v.value for v in result.variables)
            rows, truncated = self._collect(result, cancelled)
            return QueryAnswer(variables=variables, rows=tuple(rows), truncated=truncated)
        triples, truncated = self._collect(result, cancelled)
        return QueryAnswer(triples=tuple(triples), is_graph=True, truncated=truncated)

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


def _solutions(answer: QueryAnswer) -> QuerySolutions:
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


def answer_response(answer: QueryAnswer, accept: str | None, limit: int) -> Response:
    """Serialise an answer in the negotiated format (406 if none is acceptable)."""
    headers = {"Vary": "Accept"}
    if answer.boolean is None:
        headers[TRUNCATED_HEADER] = "true" if answer.truncated else "false"
        headers[LIMIT_HEADER] = str(limit)
    if answer.is_graph:
        return rdf_response(answer.triples, graph_accept(accept), extra_headers=headers)
    chosen = negotiate(accept, list(RESULTS_FORMATS))
    if chosen is None:
        raise not_acceptable(RESULTS_FORMATS)
    if answer.boolean is not None:
        return Response(boolean_results(answer.boolean, chosen), media_type=chosen, headers=headers)
    return Response(_solutions(answer).serialize(format=RESULTS_FORMATS[chosen]), media_type=chosen, headers=headers)


def parse_iris(values: Iterable[str], param: str) -> list[NamedNode]:
    result = []
    for v in values:
        try:
            result.append(NamedNode(v))
        except ValueError as e:
            raise HttpError(400, f"{param} {v!r} is not an absolute IRI: {e}") from None
    return result


def query_dataset(who: Principal, text: str, default_uris: list[str], named_uris: list[str],
                   readable: ReadableGraphs) -> QueryDataset:
    """The dataset of a query: the protocol's graphs, else the query's FROM, else the union of all graphs;
    over the whole store for an operator, over what the caller may read for a researcher or a station admin
    (``readable``); a station-only caller is confined to its own graph."""
    defaults = parse_iris(default_uris, "default-graph-uri")
    named = parse_iris(named_uris, "named-graph-uri")
    given = bool(default_uris or named_uris)
    if not readable_everything(who):
        if not who.has(Role.STATION):
            raise HttpError(403, "your roles allow no SPARQL queries")
        own = own_station_graph(who)
        others = sorted({g.value for g in defaults + named if g != own})
        if others:
            raise HttpError(403, f"a station may query only its own graph {own}; not {', '.join(others)}")
        if has_dataset_clause(text):
            raise HttpError(403, f"a station's queries always run over its own graph {own}; leave out FROM / "
                                 "FROM NAMED")
        return QueryDataset(defaults, named) if given else QueryDataset([own], [own])
    store = None if reads_everything(who) else readable.for_principal(who)
    if given:
        return QueryDataset(defaults, named, store=store)
    if has_dataset_clause(text):
        return QueryDataset(store=store)
    return QueryDataset(union_default_graph=True, store=store)

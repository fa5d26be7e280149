"""Inside a query worker: a caller's query dataset (what the caller may read), its evaluation cut at a row
limit, and the answer serialised in the negotiated format within a byte limit."""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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

from graph_store import (
    AUDIT_GRAPH,
    ONTOLOGY_GRAPH,
    SHAPES_GRAPH,
    XSD,
    CompiledUpdate,
    GraphOperation,
    GraphStore,
    InvalidInputError,
    server_graph_refusal,
)

from .principal import Principal, Role
from .query_text import has_dataset_clause, with_base, without_base_line
from .readable_graph import reads_everything
from .sparql_http import (
    LIMIT_HEADER,
    RESULTS_FORMATS,
    RESULTS_OFFERS,
    TRUNCATED_HEADER,
    HttpError,
    boolean_results,
    graph_accept,
    negotiated,
    not_acceptable,
    own_station_graph,
    rdf_response,
    readable_everything,
)

_json_string: Callable[[str], str] = json.encoder.encode_basestring
"""A string as JSON text, as ``json.dumps(..., ensure_ascii=False)`` writes it (the C encoder where there is one)."""

__all__ = ["QueryAnswer", "QueryDataset", "Serialised", "answer_response", "evaluate", "evaluate_at",
           "named_protected", "parse_iris", "query_dataset", "serialised"]

Serialised = tuple[int, bytes, tuple[tuple[str, str], ...]]
"""A response as plain values (status, body, headers without Content-Length): it crosses a worker's pipe."""


@dataclass(frozen=True)
class QueryDataset:
    """Arguments of GraphStore.query that select the RDF dataset (None = the query's / the store's own)."""

    default_graph: list[NamedNode] | None = None
    named_graphs: list[NamedNode] | None = None
    union_default_graph: bool = False
    store: GraphStore | None = None
    """The store to evaluate over, if not the worker's own: what the caller may read (``readable_graph.py``)."""


@dataclass(frozen=True)
class QueryAnswer:
    """An evaluated query, cut at the row limit (plain values: it crosses the pipe from a worker)."""

    boolean: bool | None = None
    variables: tuple[str, ...] = ()
    rows: tuple[Any, ...] = ()
    triples: tuple[Triple, ...] = ()
    is_graph: bool = False
    truncated: bool = False


def evaluate(store: GraphStore, text: str, dataset: QueryDataset, row_limit: int) -> QueryAnswer:
    """Run ``text`` over ``dataset`` (or ``store``) and collect at most ``row_limit`` rows / triples."""
    try:
        over = dataset.store if dataset.store is not None else store
        result = over.query_untrusted(text, default_graph=dataset.default_graph,
                                      named_graphs=dataset.named_graphs,
                                      union_default_graph=dataset.union_default_graph)
    except InvalidInputError as e:
        message = str(e)
        raise HttpError(400, message if message.startswith("malformed") else f"malformed SPARQL query: {message}"
                        ) from None
    if isinstance(result, QueryBoolean):
        return QueryAnswer(boolean=bool(result))
    if isinstance(result, QuerySolutions):
        variables = tuple(v.value for v in result.variables)
        rows, truncated = _collect(result, row_limit)
        return QueryAnswer(variables=variables, rows=tuple(tuple(row) for row in rows), truncated=truncated)
    triples, truncated = _collect(result, row_limit)
    return QueryAnswer(triples=tuple(triples), is_graph=True, truncated=truncated)


def evaluate_at(store: GraphStore, text: str, dataset: QueryDataset, row_limit: int, base: str | None
                ) -> QueryAnswer:
    """:func:`evaluate` with relative IRIs resolved against ``base`` (the endpoint's URL, checked), a parse
    error's positions counted in the text as sent."""
    try:
        return evaluate(store, with_base(text, base), dataset, row_limit)
    except HttpError as e:
        raise (without_base_line(e) if base is not None else e) from None


def serialised(answer: QueryAnswer, accept: str | None, row_limit: int, max_bytes: int) -> Serialised:
    """:func:`answer_response` as plain values."""
    response = answer_response(answer, accept, row_limit, max_bytes=max_bytes)
    headers = tuple((k, v) for k, v in response.headers.items() if k.lower() != "content-length")
    return response.status_code, bytes(response.body), headers


def _collect(items: Iterable[Any], limit: int) -> tuple[list[Any], bool]:
    collected: list[Any] = []
    for item in items:
        if len(collected) == limit:
            return collected, True
        collected.append(item)
    return collected, False


def _term_json(term: Any) -> str:
    """A term in the SPARQL 1.1 (1.2 for triple terms and directions) JSON results form, as JSON text.

    Written as text, not as dicts for ``json.dumps``: the rows of a point query were a third of its time in the
    fast lane. Strings go through ``json``'s own encoder (what ``json.dumps(..., ensure_ascii=False)`` calls).
    """
    if isinstance(term, NamedNode):
        return '{"type":"uri","value":' + _json_string(term.value) + "}"
    if isinstance(term, BlankNode):
        return '{"type":"bnode","value":' + _json_string(term.value) + "}"
    if isinstance(term, Literal):
        out = '{"type":"literal","value":' + _json_string(term.value)
        if term.language:
            out += ',"xml:lang":' + _json_string(term.language)
            if getattr(term, "direction", None):
                out += ',"its:dir":' + _json_string(str(term.direction))
        elif term.datatype != XSD.string:
            out += ',"datatype":' + _json_string(term.datatype.value)
        return out + "}"
    if isinstance(term, Triple):
        return ('{"type":"triple","value":{"subject":' + _term_json(term.subject) + ',"predicate":'
                + _term_json(term.predicate) + ',"object":' + _term_json(term.object) + "}}")
    raise TypeError(f"unexpected term {term!r}")


def _results_json(answer: QueryAnswer) -> bytes:
    """The collected rows in the SPARQL 1.1 Query Results JSON Format (compact, UTF-8)."""
    names = [_json_string(v) + ":" for v in answer.variables]
    bindings = ",".join("{" + ",".join(name + _term_json(t) for name, t in zip(names, row, strict=True)
                                       if t is not None) + "}" for row in answer.rows)
    head = json.dumps({"vars": list(answer.variables)}, ensure_ascii=False, separators=(",", ":"))
    return ('{"head":' + head + ',"results":{"bindings":[' + bindings + "]}}").encode()


def _solutions(answer: QueryAnswer) -> QuerySolutions:
    """The collected rows again as pyoxigraph QuerySolutions, so that pyoxigraph serialises them (XML, CSV, TSV).

    pyoxigraph has no constructor for QuerySolutions, so the rows go through the JSON results form (the
    format pyoxigraph itself writes) and are parsed back.
    """
    solutions = parse_query_results(_results_json(answer), format=QueryResultsFormat.JSON)
    if not isinstance(solutions, QuerySolutions):  # a document with "results" parses as solutions
        raise TypeError("SPARQL JSON results with bindings did not parse as solutions")
    return solutions


def answer_response(answer: QueryAnswer, accept: str | None, limit: int, *, max_bytes: int | None = None
                    ) -> Response:
    """Serialise an answer in the negotiated format (406 if none is acceptable). An answer larger than
    ``max_bytes`` is cut to fewer rows / triples until it fits, announced like the row limit
    (``X-PHT-Result-Truncated: true``): the whole answer would not fit the service's memory budget."""
    response = _serialised(answer, accept, limit)
    while max_bytes is not None and len(response.body) > max_bytes and (answer.rows or answer.triples):
        size = len(answer.rows or answer.triples)
        keep = min(size - 1, int(size * max_bytes / len(response.body) * 0.9))
        answer = QueryAnswer(variables=answer.variables, rows=answer.rows[:keep], triples=answer.triples[:keep],
                             is_graph=answer.is_graph, truncated=True)
        response = _serialised(answer, accept, limit)
    return response


def _serialised(answer: QueryAnswer, accept: str | None, limit: int) -> Response:
    headers = {"Vary": "Accept"}
    if answer.boolean is None:
        headers[TRUNCATED_HEADER] = "true" if answer.truncated else "false"
        headers[LIMIT_HEADER] = str(limit)
    if answer.is_graph:
        return rdf_response(answer.triples, graph_accept(accept), extra_headers=headers)
    chosen = negotiated(accept, RESULTS_OFFERS)
    if chosen is None:
        raise not_acceptable(RESULTS_FORMATS)
    if answer.boolean is not None:
        return Response(boolean_results(_boolean(answer.boolean), chosen), media_type=chosen, headers=headers)
    if RESULTS_FORMATS[chosen] == QueryResultsFormat.JSON:  # already the JSON form: no round trip through pyoxigraph
        return Response(_results_json(answer), media_type=chosen, headers=headers)
    return Response(_solutions(answer).serialize(format=RESULTS_FORMATS[chosen]), media_type=chosen, headers=headers)


def _boolean(value: bool) -> QueryBoolean:
    """An ASK answer as pyoxigraph's QueryBoolean (which has no constructor), to serialise it."""
    parsed = parse_query_results(json.dumps({"head": {}, "boolean": value}).encode(), format=QueryResultsFormat.JSON)
    if not isinstance(parsed, QueryBoolean):
        raise TypeError("a SPARQL JSON boolean did not parse as a QueryBoolean")
    return parsed


def parse_iris(values: Iterable[str], param: str) -> list[NamedNode]:
    result = []
    for v in values:
        try:
            result.append(NamedNode(v))
        except ValueError as e:
            raise HttpError(400, f"{param} {v!r} is not an absolute IRI: {e}") from None
    return result


def query_dataset(who: Principal, text: str, default_uris: list[str], named_uris: list[str],
                  view_of: Callable[[Principal], GraphStore]) -> QueryDataset:
    """The dataset of a query: the protocol's graphs, else the query's FROM, else the union of all graphs;
    over the whole store for an operator, over what the caller may read for a researcher or a station admin
    (``view_of(who)``: ``ReadableGraphs.for_principal``); a station-only caller is confined to its own graph."""
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
    store = None if reads_everything(who) else view_of(who)
    if given:
        return QueryDataset(defaults, named, store=store)
    if has_dataset_clause(text):
        return QueryDataset(store=store)
    return QueryDataset(union_default_graph=True, store=store)


def named_protected(update: CompiledUpdate, store: GraphStore) -> str | None:
    """A sentence refusing an update that names a graph no update writes, else None: checked before its WHEREs
    are evaluated (CLEAR or DROP of an empty audit graph would change nothing, and must be refused all the same;
    a DELETE WHERE over the server's own graphs would first read all of them)."""
    for step in update.steps or (update,):
        named: list[object]
        if isinstance(step, GraphOperation):
            named = [step.target, *([step.source] if step.kind == "MOVE" else [])]
        else:
            named = [template[3] for template in (*step.delete, *step.insert)]
        for graph in named:
            if isinstance(graph, NamedNode) and store.server_graph(graph):
                return server_graph_refusal(graph)
            if graph in (ONTOLOGY_GRAPH, SHAPES_GRAPH):
                return f"the graph {graph} is loaded from the repository's files and is not written through SPARQL"
            if graph == AUDIT_GRAPH:
                return f"the graph {AUDIT_GRAPH.value} records operators' edits; no edit may change it"
    return None

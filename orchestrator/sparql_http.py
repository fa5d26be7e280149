"""HTTP pieces shared by ``/sparql``, ``/rdf-graphs`` and the web view: refusals, content negotiation, bodies.

One place for how the SPARQL endpoints answer: a refusal is :class:`HttpError` (JSON ``{"detail": ...}``), media
types are negotiated by :func:`negotiate` (RFC 9110 q-values), graphs are written by pyoxigraph's serialisers.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import URL
from pyoxigraph import NamedNode, QueryBoolean, QueryResultsFormat, RdfFormat, Triple, serialize

from graph_store import ConflictError, GraphStoreError, StoreUnavailable, ValidationFailed, station_graph

from .principal import Principal, Role

__all__ = ["LIMIT_HEADER", "RDF_FORMATS", "RDF_OFFERS", "RESULTS_FORMATS", "RESULTS_OFFERS", "TRUNCATED_HEADER",
           "HttpError", "accepts_an_answer", "boolean_results", "endpoint_iri", "error_for", "graph_accept",
           "media_type", "negotiate", "negotiated", "not_acceptable", "own_station_graph", "rdf_response", "read_body",
           "readable_everything"]

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


RESULTS_OFFERS = tuple(RESULTS_FORMATS)
RDF_OFFERS = tuple(RDF_FORMATS)
NEGOTIATED_MEMO_CHARS = 512
"""Longest Accept header whose negotiation is remembered (:func:`negotiated`)."""


def negotiated(accept: str | None, offers: tuple[str, ...]) -> str | None:
    """:func:`negotiate`, remembered for the last 256 Accept headers of at most NEGOTIATED_MEMO_CHARS characters
    (a client sends the same one with every request)."""
    if accept is not None and len(accept) > NEGOTIATED_MEMO_CHARS:
        return negotiate(accept, offers)
    return _negotiated(accept, offers)


@functools.lru_cache(maxsize=256)
def _negotiated(accept: str | None, offers: tuple[str, ...]) -> str | None:
    return negotiate(accept, offers)


def accepts_an_answer(accept: str | None) -> bool:
    """True if ``accept`` takes some query answer: a results format (SELECT, ASK) or an RDF format (CONSTRUCT,
    DESCRIBE). A query is refused with 406 before any evaluation otherwise."""
    return negotiated(accept, RESULTS_OFFERS) is not None or negotiated(accept, RDF_OFFERS) is not None


def endpoint_iri(scope: Mapping[str, Any]) -> str:
    """The URL a request reached, without its query string: the base IRI of the SPARQL it sends (relative IRIs
    resolve against the endpoint). Worked out once per scheme, Host header, server and path (64 at most: a
    client sends the same ones again and again). Raises ValueError if it is not an IRI."""
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    server = scope.get("server")  # a list from some servers: hashable here
    return _endpoint_iri(scope.get("scheme", "http"), host, tuple(server) if server else None, scope["path"])


@functools.lru_cache(maxsize=64)
def _endpoint_iri(scheme: str, host: bytes | None, server: tuple[str, int] | None, path: str) -> str:
    headers = [(b"host", host)] if host is not None else []
    scope = {"type": "http", "scheme": scheme, "server": server, "path": path, "query_string": b"",
             "headers": headers}
    return NamedNode(str(URL(scope=scope).replace(query="", fragment=""))).value


def graph_accept(accept: str | None) -> str | None:
    """The Accept header a CONSTRUCT / DESCRIBE answer is negotiated by.

    ``accept`` itself when it accepts an RDF format. A client that accepts only result-set formats (rdflib's
    ``SPARQLStore`` sends the Accept of its ``returnFormat`` whatever the query) gets the graph in the RDF
    format it most likely parses instead of a 406: RDF/XML if it asked for XML results, else Turtle; the
    Content-Type says which (SPARQL 1.1 Protocol §2.1.6 lets a service choose).

    >>> graph_accept("application/sparql-results+json")
    'text/turtle'
    >>> graph_accept("application/sparql-results+xml")
    'application/rdf+xml'
    >>> graph_accept("text/html")  # accepts nothing we write: still a 406
    'text/html'
    """
    if negotiate(accept, list(RDF_FORMATS)) is not None:
        return accept
    wanted = negotiate(accept, list(RESULTS_FORMATS))
    if wanted is None:
        return accept
    return "application/rdf+xml" if wanted.endswith("xml") else "text/turtle"


def boolean_results(answer: QueryBoolean, media: str) -> bytes:
    """An ASK answer in ``media`` (one of :data:`RESULTS_FORMATS`).

    SPARQL 1.1 CSV/TSV results define no boolean form, and a bare ``true`` reads as a header naming a
    variable. CSV and TSV get the form Apache Jena writes and reads back as a boolean: one variable
    ``_askResult`` (``?_askResult`` in TSV) and one row ``true`` or ``false``; any CSV reader reads it as a
    one-cell table.

    >>> from pyoxigraph import Store
    >>> boolean_results(Store().query("ASK {}"), "text/csv")
    b'_askResult\\r\\ntrue\\r\\n'
    """
    word = "true" if answer else "false"
    if media == "text/csv":
        return f"_askResult\r\n{word}\r\n".encode()
    if media == "text/tab-separated-values":
        return f"?_askResult\n{word}\n".encode()
    return answer.serialize(format=RESULTS_FORMATS[media]) or b""


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

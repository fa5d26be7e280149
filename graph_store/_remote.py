"""The remote back-end: any SPARQL 1.1 Query/Update endpoint, spoken to with SPARQLWrapper.

For users who outgrow one machine and keep the graph on an existing server (Oxigraph server, Virtuoso,
...). Tested against a real Oxigraph server and a real Virtuoso 7 (``tests/test_remote_store.py``).

Compatibility choices, each forced by a real server:

* queries are sent as form-encoded POST with an explicit Accept header (Virtuoso never answers a POST
  with ``Content-Type: application/sparql-query`` and answers text/html without Accept);
* updates may need HTTP digest authentication (Virtuoso's ``/sparql-auth``);
* results are parsed by pyoxigraph, so both back-ends return the same term and result types.

Atomicity: the change set is sent as one update request whose WHERE clause is the guard. A server cannot
tell us whether the WHERE matched, so :meth:`RemoteStore._confirm_commit` checks with ASK afterwards and
raises ConflictError if another client won.
"""

from __future__ import annotations

import socket
import urllib.error
from collections.abc import Iterable
from typing import Any

from pyoxigraph import (
    NamedNode,
    Quad,
    QueryResultsFormat,
    RdfFormat,
    Variable,
    parse,
    parse_query_results,
)
from SPARQLWrapper import DIGEST, POST, URLENCODED, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import (
    EndPointInternalError,
    EndPointNotFound,
    QueryBadFormed,
    SPARQLWrapperException,
    Unauthorized,
)

from ._changeset import ChangeSet
from ._errors import ConflictError, InvalidInputError, StoreUnavailable
from ._schema import Schema
from ._sparql_text import bind, quad_block, tokens
from ._store import GraphStore, QueryResult

__all__ = ["RemoteStore"]

_PATTERN = "SELECT ?s ?p ?o ?g WHERE { GRAPH ?g { $s $p $o } }"
_VARS = ("s", "p", "o", "g")


class RemoteStore(GraphStore):
    """A graph store behind SPARQL 1.1 Protocol endpoints.

    :param query_url: the query endpoint, e.g. ``http://127.0.0.1:7878/query``.
    :param update_url: the update endpoint (defaults to ``query_url``).
    :param user: user for HTTP digest authentication of updates (Virtuoso ``/sparql-auth``), or None.
    :param timeout: seconds before a request counts as failed (raises StoreUnavailable).
    """

    def __init__(self, query_url: str, update_url: str | None = None, *, user: str | None = None,
                 password: str | None = None, timeout: float = 30.0, schema: Schema | None = None) -> None:
        super().__init__(schema)
        self.query_url = query_url
        self.update_url = update_url or query_url
        self._auth = (user, password or "") if user else None
        self._timeout = timeout

    # -- transport --------------------------------------------------------------------------------------

    def _client(self, url: str) -> SPARQLWrapper:
        client = SPARQLWrapper(url)
        client.setMethod(POST)
        client.setRequestMethod(URLENCODED)
        client.setTimeout(int(self._timeout))
        # Content negotiation by the Accept header only: otherwise SPARQLWrapper adds format=xml&output=xml
        # (its default return format) to every query, and Virtuoso answers 406 when they contradict Accept.
        client.setOnlyConneg(True)
        if self._auth is not None and url == self.update_url:
            client.setHTTPAuth(DIGEST)
            client.setCredentials(*self._auth)
        return client

    def _send(self, client: SPARQLWrapper) -> tuple[bytes, str]:
        try:
            response = client.query().response
            return response.read(), response.headers.get("Content-Type", "")
        except QueryBadFormed as e:
            raise InvalidInputError(f"the SPARQL server refused the request as malformed: {_short(e)}") from None
        except (EndPointInternalError, EndPointNotFound, Unauthorized, SPARQLWrapperException) as e:
            raise StoreUnavailable(f"SPARQL server at {client.endpoint} failed: {_short(e)}") from None
        except urllib.error.HTTPError as e:
            raise StoreUnavailable(f"SPARQL server at {client.endpoint} answered HTTP {e.code}: {e.reason}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise StoreUnavailable(f"SPARQL server at {client.endpoint} cannot be reached: {reason}") from None

    # -- primitives -------------------------------------------------------------------------------------

    def _query(self, text: str, *, default_graph: list[NamedNode] | None, named_graphs: list[NamedNode] | None,
               union_default_graph: bool) -> QueryResult:
        client = self._client(self.query_url)
        client.setQuery(text)
        for g in default_graph or ():
            client.addDefaultGraph(g.value)
        for g in named_graphs or ():
            client.addNamedGraph(g.value)
        graph_query = _is_graph_query(text)
        client.addCustomHttpHeader(
            "Accept",
            "application/n-triples, text/turtle;q=0.9" if graph_query
            else "application/sparql-results+json",
        )
        body, content_type = self._send(client)
        if graph_query:
            fmt = RdfFormat.N_TRIPLES if "n-triples" in content_type or "text/plain" in content_type \
                else RdfFormat.TURTLE
            # parse() yields quads in the default graph; a CONSTRUCT result is triples, as in pyoxigraph.
            return iter([q.triple for q in parse(body, format=fmt)])
        try:
            return parse_query_results(body, format=QueryResultsFormat.JSON)
        except SyntaxError as e:
            raise StoreUnavailable(f"SPARQL server at {self.query_url} sent unreadable results: {e}") from None

    def _update(self, text: str) -> None:
        client = self._client(self.update_url)
        client.setQuery(text)
        self._send(client)

    def _match(self, s: Any, p: Any, o: Any, g: Any = None) -> Iterable[Quad]:
        text = _PATTERN
        bindings: dict[str, Any] = {}
        for name, term in zip(_VARS, (s, p, o, g)):
            if term is None:
                text = text.replace("$" + name, "?" + name)
            else:
                bindings[name] = term
        text = text.replace("?g", "$g") if g is not None else text
        result = self._query(bind(text, bindings), default_graph=None, named_graphs=None, union_default_graph=False)
        quads = []
        for row in result:  # type: ignore[union-attr]
            terms = [row[Variable(v)] if term is None else term for v, term in zip(_VARS, (s, p, o, g))]
            quads.append(Quad(*terms))
        return quads

    def _confirm_commit(self, change: ChangeSet) -> None:
        if not change.guard:
            return
        won = True
        if change.insert:
            won = bool(self._query(f"ASK {{ {quad_block(change.insert)} }}", default_graph=None,
                                   named_graphs=None, union_default_graph=False))
        elif change.delete:
            won = not any(self.contains(q) for q in change.delete)
        if not won:
            raise ConflictError("another client changed the guarded data first; nothing was written")

    def contains(self, quad: Quad) -> bool:
        return bool(self._query(f"ASK {{ {quad_block([quad])} }}", default_graph=None, named_graphs=None,
                                union_default_graph=False))

    def close(self) -> None:
        """Nothing to release: every request opens its own connection."""


def _is_graph_query(text: str) -> bool:
    for kind, s, e in tokens(text):
        if kind == "word":
            word = text[s:e].upper()
            if word in ("CONSTRUCT", "DESCRIBE"):
                return True
            if word in ("SELECT", "ASK"):
                return False
    return False


def _short(e: Exception) -> str:
    text = str(e).strip().replace("\n", " ")
    return text[:500]

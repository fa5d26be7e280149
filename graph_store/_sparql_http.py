"""The HTTP side of the remote back-end: SPARQL 1.1 Protocol requests over kept-alive connections.

One POST per request, the operation always stated: an update as its own body (``application/sparql-update``,
which both servers take: percent-encoding a commit cost more CPU than anything else in sending it); a query
form-encoded (``query=``), until the server has said in a ``Server`` header that it is Oxigraph: then as its own
body too (``application/sparql-query``, SPARQL 1.1 Protocol 2.1.3), since percent-encoding a 4 KB query costs
0.12 ms of this process's CPU (a remote lifecycle step's CPU fell from 1.97 to 1.81 ms with it, measured in
session 17). Virtuoso 7 never
answers a query sent that way (measured: no answer until the client's timeout), and any other server is not
known to, so they keep the form. Every request has an explicit Accept header (Virtuoso answers text/html
without one). Connections are kept alive and shared by the
threads (:class:`_Connections`): a lifecycle step sends several small requests, and a new TCP connection and
SPARQLWrapper's per-request parsing of the text cost about 1-2 ms each, the request itself 0.3-0.5 ms on
loopback (measured, ``benchmarks/README.md``). Queries a write needs together (its WHEREs and its read-ahead)
go at once, each on a connection of its own (:meth:`SparqlHttp.post_queries`): the server answers them side by
side, in one round trip, where one after the other cost one each.

The standard library's ``http.client`` speaks HTTP, not urllib3 (used until session 16): a lifecycle step's
requests are serialised under the store's write lock and the central service's rate is its CPU per step, of
which urllib3's pool, URL and header handling above ``http.client`` took 0.04 ms a request more than the few
lines of :class:`_Connections` (0.12 against 0.085 ms, measured on loopback). What urllib3 also did is done
here the same way: a kept connection the server closed meanwhile is dropped before it is used (it is readable:
end of file), and no request is ever sent twice.

A URL that needs HTTP digest authentication (Virtuoso's ``/sparql-auth``) is spoken to with the standard
library's digest handler (urllib.request), one connection per request as before: only updates go there.

Every failure becomes one of the store's errors with one sentence: a 400 is the server refusing the request
as malformed (InvalidInputError), a deadlock (SQLSTATE 40001, Virtuoso) TransactionAborted, anything else
StoreUnavailable.
"""

from __future__ import annotations

import http.client
import select
import socket
import threading
import urllib.error
import urllib.request
import weakref
from collections.abc import Sequence
from urllib.parse import urlencode, urlsplit

from ._errors import InvalidInputError, StoreUnavailable, TransactionAborted

__all__ = ["SparqlHttp"]


class SparqlHttp:
    """Sends SPARQL Protocol requests (see the module's docstring for how); returns the body and its content type.

    :param timeout: seconds before a request counts as failed (StoreUnavailable).
    :param auth_url: the one URL whose requests carry digest credentials ``auth`` (user, password), or None.
    """

    def __init__(self, *, timeout: float, auth_url: str | None = None, auth: tuple[str, str] | None = None) -> None:
        self._timeout = timeout
        self._oxigraph: dict[str, bool] = {}  # by URL: whether its server said it is Oxigraph (Server header)
        self._pools: dict[str, _Connections] = {}
        self._pools_lock = threading.Lock()
        # a client dropped without close() closes its kept connections too (no socket left to the collector)
        weakref.finalize(self, _close_all, self._pools)
        self._auth_url = auth_url if auth is not None else None
        self._opener: urllib.request.OpenerDirector | None = None
        if auth is not None and auth_url is not None:
            passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            passwords.add_password(None, auth_url, *auth)
            self._opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(passwords))

    def post(self, url: str, field: str, text: str, *, accept: str,
             default_graphs: Sequence[str] = (), named_graphs: Sequence[str] = ()) -> tuple[bytes, str]:
        """POST ``field=text`` (``query`` or ``update``) with the dataset's graph parameters to ``url``."""
        body, headers = self._request(url, field, text, accept, default_graphs, named_graphs)
        if self._opener is not None and url == self._auth_url:
            return self._post_authenticated(url, body, headers)
        return self._exchange(url, [(body, headers)])[0]

    def post_queries(self, url: str, texts: Sequence[str], *, accept: str) -> list[tuple[bytes, str]]:
        """POST several queries to ``url`` at once, each on a kept-alive connection of its own: every one is sent
        before any answer is read, so the server evaluates them side by side and they cost one round trip, not
        one each. Queries only, and never sent twice (as every request here)."""
        requests = [self._request(url, "query", text, accept, (), ()) for text in texts]
        if self._opener is not None and url == self._auth_url:
            return [self._post_authenticated(url, body, headers) for body, headers in requests]
        return self._exchange(url, requests)

    def _request(self, url: str, field: str, text: str, accept: str, default_graphs: Sequence[str],
                 named_graphs: Sequence[str]) -> tuple[bytes, dict[str, str]]:
        """The body and headers of one request (see the module's docstring for how an operation is sent)."""
        if not default_graphs and not named_graphs and (field == "update" or self._oxigraph.get(url, False)):
            # the operation itself as the body: no percent-encoding of its thousands of characters (for a commit, a
            # quarter of a lifecycle step's CPU in this process, measured); see the module's docstring for which
            # servers take a query so
            body, content_type = text.encode(), f"application/sparql-{field}; charset=utf-8"
        else:
            params = [(field, text)] + [("default-graph-uri", g) for g in default_graphs] \
                + [("named-graph-uri", g) for g in named_graphs]
            body, content_type = urlencode(params).encode(), "application/x-www-form-urlencoded"
        return body, {"Accept": accept, "Content-Type": content_type}

    def _exchange(self, url: str, requests: Sequence[tuple[bytes, dict[str, str]]]) -> list[tuple[bytes, str]]:
        """Send each request on a connection of the pool, then read the answers in order; a connection goes back
        to the pool only once its answer was read in full, and any failure closes every connection not yet back.
        Raises the failure of the first answer that is one, after all were read."""
        pool = self._pool(url)
        pending: list[http.client.HTTPConnection] = []
        answers: list[tuple[int, bytes, str]] = []
        connecting = False
        try:
            for body, headers in requests:
                connection = pool.take()
                pending.append(connection)
                if connection.sock is None:
                    connecting = True
                    connection.connect()
                    connecting = False
                connection.request("POST", pool.path, body=body, headers=headers)  # never sent again
            while pending:
                response = pending[0].getresponse()
                data = response.read()
                pool.give(pending.pop(0), reusable=not response.will_close)
                answers.append((response.status, data, response.headers.get("Content-Type", "")))
                if url not in self._oxigraph:
                    self._oxigraph[url] = response.headers.get("Server", "").startswith("Oxigraph/")
        except TimeoutError:
            raise StoreUnavailable(f"SPARQL server at {url} did not answer within {self._timeout:g} s") from None
        except OSError as e:
            if connecting:  # refused, unknown host, unreachable network
                raise StoreUnavailable(f"SPARQL server at {url} cannot be reached: {e.strerror or e}") from None
            raise StoreUnavailable(f"SPARQL server at {url} broke off: {e!r}") from None
        except http.client.HTTPException as e:  # e.g. the server died while answering
            raise StoreUnavailable(f"SPARQL server at {url} broke off: {e!r}") from None
        finally:
            for connection in pending:  # sent but not read: the connection is in no state to carry another request
                connection.close()
        for status, data, _ in answers:
            if status >= 300:
                raise _failure(url, status, data)
        return [(data, content_type) for _, data, content_type in answers]

    def oxigraph(self, url: str) -> bool:
        """Whether the server at ``url`` has said it is Oxigraph (in the ``Server`` header of an answer): it then
        takes a query as its own body, and its answers need no rewriting (``_remote._portable_results``)."""
        return self._oxigraph.get(url, False)

    def _pool(self, url: str) -> _Connections:
        """The kept-alive connections to ``url``."""
        found = self._pools.get(url)
        if found is None:
            with self._pools_lock:
                found = self._pools.get(url)
                if found is None:
                    found = self._pools[url] = _Connections(url, self._timeout)
        return found

    def _post_authenticated(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[bytes, str]:
        assert self._opener is not None
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return response.read(), response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            raise _failure(url, e.code, e.read()) from None
        except http.client.HTTPException as e:  # e.g. IncompleteRead: the server died while answering
            raise StoreUnavailable(f"SPARQL server at {url} broke off: {e!r}") from None
        except (urllib.error.URLError, socket.timeout, ConnectionError, OSError) as e:
            raise StoreUnavailable(f"SPARQL server at {url} cannot be reached: {getattr(e, 'reason', e)}") from None

    def close(self) -> None:
        """Close the kept-alive connections (a later request opens new ones)."""
        with self._pools_lock:
            _close_all(self._pools)


class _Connections:
    """Kept-alive connections to one URL, shared by threads: a thread takes one (an idle one, else a new one) for
    a request and gives it back after reading the answer; at most ``_IDLE`` are kept idle."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreUnavailable(f"SPARQL server at {url}: not an http(s) URL")
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._https = parts.scheme == "https"
        self._host, self._port, self._timeout = parts.hostname, parts.port, timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False  # closed by its client: a connection in use meanwhile is closed when given back

    def take(self) -> http.client.HTTPConnection:
        with self._lock:
            while self._idle:
                connection = self._idle.pop()
                if not _closed_by_server(connection):
                    return connection
                connection.close()
        kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=self._timeout)

    def give(self, connection: http.client.HTTPConnection, *, reusable: bool) -> None:
        with self._lock:
            if reusable and not self._closed and len(self._idle) < _IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle, self._closed = self._idle, [], True
        for connection in idle:
            connection.close()


def _close_all(pools: dict[str, _Connections]) -> None:
    for pool in list(pools.values()):
        pool.close()
    pools.clear()


_IDLE = 16
"""Idle connections kept per URL (the service's threads that write or read at once)."""


def _closed_by_server(connection: http.client.HTTPConnection) -> bool:
    """True if a kept connection cannot carry a request: never connected, or readable while idle (the server
    closed it: end of file, or it sent something unasked)."""
    sock = connection.sock
    if sock is None:
        return True
    poller = select.poll()  # not select(): it refuses a descriptor above 1,023, which a busy service may hold
    try:
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _failure(url: str, status: int, body: bytes) -> Exception:
    message = _short(body)
    if status == 400:
        return InvalidInputError(f"the SPARQL server refused the request as malformed: {message}")
    if "40001" in message:  # the SQLSTATE of a deadlock (Virtuoso)
        return TransactionAborted(f"SPARQL server at {url} failed: {message}")
    return StoreUnavailable(f"SPARQL server at {url} answered HTTP {status}: {message}")


def _short(body: bytes) -> str:
    """The server's message on one line; Virtuoso's ends with an echo of the whole request, which is left out."""
    text = body.decode("utf-8", "replace").split("\n\nSPARQL query:", 1)[0]
    return " ".join(text.split())[:500]

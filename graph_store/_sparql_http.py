"""The HTTP side of the remote back-end: SPARQL 1.1 Protocol requests over kept-alive connections.

One POST per request, the operation always stated: a query form-encoded (``query=``: Virtuoso never answers
a POST with ``Content-Type: application/sparql-query``), an update as its own body (``application/sparql-update``,
which both servers take: percent-encoding a commit cost more CPU than anything else in sending it), with an
explicit Accept header (Virtuoso answers text/html without one). Connections are pooled and kept alive (urllib3, thread-safe): a lifecycle step sends
several small requests, and a new TCP connection and SPARQLWrapper's per-request parsing of the text cost
about 1-2 ms each, the request itself 0.3-0.5 ms on loopback (measured, ``benchmarks/README.md``).

A URL that needs HTTP digest authentication (Virtuoso's ``/sparql-auth``) is spoken to with the standard
library's digest handler (urllib.request), one connection per request as before: only updates go there.

Every failure becomes one of the store's errors with one sentence: a 400 is the server refusing the request
as malformed (InvalidInputError), a deadlock (SQLSTATE 40001, Virtuoso) TransactionAborted, anything else
StoreUnavailable.
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlencode

import urllib3

from ._errors import InvalidInputError, StoreUnavailable, TransactionAborted

__all__ = ["SparqlHttp"]


class SparqlHttp:
    """Sends form-encoded SPARQL Protocol requests; returns the body and its content type.

    :param timeout: seconds before a request counts as failed (StoreUnavailable).
    :param auth_url: the one URL whose requests carry digest credentials ``auth`` (user, password), or None.
    """

    def __init__(self, *, timeout: float, auth_url: str | None = None, auth: tuple[str, str] | None = None) -> None:
        self._timeout = timeout
        # one pool per origin, spoken to directly (a PoolManager parses and normalises every URL again: a fifth of
        # a request's CPU here, measured); retries=False: a request is never sent twice behind the caller's back
        # (an update is not idempotent)
        self._pools: dict[str, tuple[urllib3.HTTPConnectionPool, str]] = {}
        self._pools_lock = threading.Lock()
        self._auth_url = auth_url if auth is not None else None
        self._opener: urllib.request.OpenerDirector | None = None
        if auth is not None and auth_url is not None:
            passwords = urllib.request.HTTPPasswordMgrWithDefaultRealm()
            passwords.add_password(None, auth_url, *auth)
            self._opener = urllib.request.build_opener(urllib.request.HTTPDigestAuthHandler(passwords))

    def post(self, url: str, field: str, text: str, *, accept: str,
             default_graphs: Sequence[str] = (), named_graphs: Sequence[str] = ()) -> tuple[bytes, str]:
        """POST ``field=text`` (``query`` or ``update``) with the dataset's graph parameters to ``url``."""
        if field == "update" and not default_graphs and not named_graphs:
            # the update itself as the body: no percent-encoding of a commit's thousands of characters (a quarter
            # of a lifecycle step's CPU in this process, measured); Oxigraph server and Virtuoso 7 both take it
            body, content_type = text.encode(), "application/sparql-update; charset=utf-8"
        else:
            params = [(field, text)] + [("default-graph-uri", g) for g in default_graphs] \
                + [("named-graph-uri", g) for g in named_graphs]
            body, content_type = urlencode(params).encode(), "application/x-www-form-urlencoded"
        headers = {"Accept": accept, "Content-Type": content_type}
        if self._opener is not None and url == self._auth_url:
            return self._post_authenticated(url, body, headers)
        try:
            pool, path = self._pool(url)
            response = pool.urlopen("POST", path, body=body, headers=headers, preload_content=True, retries=False)
        except urllib3.exceptions.NewConnectionError as e:  # a subclass of the timeout, but nothing listens
            raise StoreUnavailable(f"SPARQL server at {url} cannot be reached: {_reason(e)}") from None
        except urllib3.exceptions.TimeoutError:
            raise StoreUnavailable(f"SPARQL server at {url} did not answer within {self._timeout:g} s") from None
        except urllib3.exceptions.ProtocolError as e:  # e.g. the server died while answering
            raise StoreUnavailable(f"SPARQL server at {url} broke off: {_reason(e)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise StoreUnavailable(f"SPARQL server at {url} cannot be reached: {_reason(e)}") from None
        data = response.data
        if response.status >= 300:
            raise _failure(url, response.status, data)
        return data, response.headers.get("Content-Type", "")

    def _pool(self, url: str) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The kept-alive connections to ``url``'s origin, and the path (with query string) to post to."""
        found = self._pools.get(url)
        if found is None:
            with self._pools_lock:
                found = self._pools.get(url)
                if found is None:
                    parts = urllib3.util.parse_url(url)
                    pool = urllib3.connection_from_url(url, maxsize=16, retries=False,
                                                       timeout=urllib3.Timeout(total=self._timeout))
                    found = self._pools[url] = (pool, parts.request_uri)
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
            pools, self._pools = list(self._pools.values()), {}
        for pool, _ in pools:
            pool.close()


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


def _reason(e: Exception) -> str:
    """The cause in one phrase (urllib3 wraps the OSError in a message naming its connection object)."""
    cause = e.__cause__ or getattr(e, "reason", None) or e
    return str(cause.__cause__ or cause) if isinstance(cause, urllib3.exceptions.HTTPError) else str(cause)

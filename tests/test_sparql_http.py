"""The remote store's HTTP client (``graph_store/_sparql_http.py``): kept-alive connections shared by threads.

What urllib3 did for the store before session 16 must still hold with ``http.client``: a kept connection the server
closed while it was idle is not used for the next request (which would fail as "broke off"), a request is never
sent twice, and a connection is kept even when its descriptor is above 1,023 (``select()`` cannot watch it).
Several queries sent at once (``post_queries``) reach the server before any is answered."""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import pytest

from graph_store import InvalidInputError, StoreUnavailable
from graph_store._sparql_http import SparqlHttp

ANSWER = b'{"head":{},"boolean":true}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the handler says otherwise
    close_after_answer = False
    requests: list[bytes] = []
    content_types: list[str] = []
    server_closed: threading.Semaphore

    together: threading.Barrier | None = None  # if set: no request is answered before this many have arrived
    hold: threading.Event | None = None  # if set: no request is answered before it is set
    echo = False  # answer with the request's body (which answer is whose)

    def do_POST(self) -> None:  # noqa: N802 - the standard library's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append(body)
        type(self).content_types.append(self.headers["Content-Type"])
        status, answer = 200, body if self.echo else ANSWER
        if b"malformed" in body:
            status, answer = 400, b"Parser error: malformed"
        if self.hold is not None:
            self.hold.wait(timeout=10)
        if self.together is not None:
            try:
                self.together.wait(timeout=5)
            except threading.BrokenBarrierError:
                status, answer = 503, b"the other requests did not come"
        self.send_response(status)
        self.send_header("Content-Type", "application/sparql-results+json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()  # no "Connection: close": the client believes it may keep the connection
        self.wfile.write(answer)
        self.wfile.flush()
        if type(self).close_after_answer:
            self.close_connection = True  # closed by the server once the answer is out

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    """Tells when it has closed a connection (``closed``)."""

    closed = threading.Semaphore(0)

    def shutdown_request(self, request: object) -> None:
        super().shutdown_request(request)  # type: ignore[arg-type]
        self.closed.release()


@pytest.fixture()
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler: type[_Handler] = type("Handler", (_Handler,), {"requests": [], "content_types": [],
                                                            "close_after_answer": False, "together": None,
                                                            "hold": None, "echo": False})
    httpd = _Server(("127.0.0.1", 0), handler)
    httpd.closed = threading.Semaphore(0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.server_closed = httpd.closed
    yield f"http://127.0.0.1:{httpd.server_address[1]}/query", handler
    httpd.shutdown()
    httpd.server_close()


def ask(client: SparqlHttp, url: str) -> bytes:
    return client.post(url, "query", "ASK {}", accept="application/sparql-results+json")[0]


def test_a_kept_connection_the_server_closed_is_not_used_again(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    handler.close_after_answer = True
    client = SparqlHttp(timeout=5)
    for _ in range(5):  # each answer's connection is closed by the server while the client keeps it idle
        assert ask(client, url) == ANSWER
        assert handler.server_closed.acquire(timeout=10), "the server closed the connection"
    assert len(handler.requests) == 5, "every request was sent exactly once"
    client.close()


def test_connections_are_kept_and_reused(server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    client = SparqlHttp(timeout=5)
    ask(client, url)
    (kept,) = client._pools[url]._idle  # noqa: SLF001
    for _ in range(3):
        ask(client, url)
    assert client._pools[url]._idle == [kept], "one connection carried every request"  # noqa: SLF001
    client.close()
    assert client._pools == {}  # noqa: SLF001
    assert ask(client, url) == ANSWER, "a request after close() opens a new connection"
    client.close()


def test_a_connection_with_a_descriptor_above_1023_is_kept(server: tuple[str, type[_Handler]]) -> None:
    url, _ = server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.fail(f"this test needs 1,200 open files; the hard limit here is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    taken = [os.open(os.devnull, os.O_RDONLY) for _ in range(1030)]
    try:
        client = SparqlHttp(timeout=5)
        ask(client, url)
        (kept,) = client._pools[url]._idle  # noqa: SLF001
        assert kept.sock is not None and kept.sock.fileno() > 1023
        ask(client, url)
        assert client._pools[url]._idle == [kept]  # noqa: SLF001
        client.close()
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_server_that_is_not_there_is_one_sentence() -> None:
    client = SparqlHttp(timeout=5)
    with pytest.raises(StoreUnavailable, match=r"^SPARQL server at http://127\.0\.0\.1:9/query cannot be reached: "):
        ask(client, "http://127.0.0.1:9/query")


@pytest.mark.parametrize("server_says", ["Oxigraph/0.5.13", "Virtuoso/07.20.3229 (Linux)"])
def test_a_query_goes_as_its_own_body_only_once_the_server_said_it_is_oxigraph(
        server: tuple[str, type[_Handler]], server_says: str) -> None:
    """Percent-encoding a query costs this process's CPU, so an Oxigraph server gets queries as their own body;
    any other server keeps the form (Virtuoso 7 never answers a query sent as a body). Updates always go as
    their own body."""
    url, handler = server
    handler.server_version, handler.sys_version = server_says, ""
    client = SparqlHttp(timeout=5)
    query = "SELECT * WHERE { ?s ?p 'é & ü' }"
    for _ in range(2):
        assert client.post(url, "query", query, accept="application/sparql-results+json")[0] == ANSWER
    client.post(url, "update", "INSERT DATA { <urn:a> <urn:b> 'é' }", accept="*/*")
    oxigraph = server_says.startswith("Oxigraph/")
    assert client.oxigraph(url) is oxigraph
    form = ("application/x-www-form-urlencoded", urlencode({"query": query}).encode())
    second = ("application/sparql-query; charset=utf-8", query.encode()) if oxigraph else form
    update = ("application/sparql-update; charset=utf-8", "INSERT DATA { <urn:a> <urn:b> 'é' }".encode())
    assert list(zip(handler.content_types, handler.requests)) == [form, second, update]
    client.close()


def test_queries_sent_together_reach_the_server_before_any_is_answered(server: tuple[str, type[_Handler]]) -> None:
    """The server holds every answer until three requests have arrived: sent one after the other, the first
    would wait for the others in vain (503). The answers come back in the order of the queries."""
    url, handler = server
    handler.together, handler.echo = threading.Barrier(3), True
    client = SparqlHttp(timeout=10)
    queries = ["ASK { <urn:one> ?p ?o }", "ASK { <urn:two> ?p ?o }", "ASK { <urn:three> ?p ?o }"]
    answers = client.post_queries(url, queries, accept="application/sparql-results+json")
    assert [body for body, _ in answers] == [urlencode({"query": q}).encode() for q in queries]
    assert len(client._pools[url]._idle) == 3, "each had a connection of its own, kept"  # noqa: SLF001
    client.close()


def test_a_refused_query_among_several_is_one_error_and_the_connections_stay_usable(
        server: tuple[str, type[_Handler]]) -> None:
    url, handler = server
    client = SparqlHttp(timeout=5)
    with pytest.raises(InvalidInputError, match="malformed"):
        client.post_queries(url, ["ASK {}", "ASK { malformed", "ASK {}"], accept="application/sparql-results+json")
    assert len(handler.requests) == 3, "every query was sent, once"
    idle = list(client._pools[url]._idle)  # noqa: SLF001
    assert len(idle) == 3, "every answer was read: each connection can carry the next request"
    assert ask(client, url) == ANSWER and len(handler.requests) == 4
    assert client._pools[url]._idle[-1] in idle  # noqa: SLF001
    client.close()


def test_queries_to_a_server_that_is_not_there_are_one_sentence() -> None:
    client = SparqlHttp(timeout=5)
    with pytest.raises(StoreUnavailable, match=r"^SPARQL server at http://127\.0\.0\.1:9/query cannot be reached: "):
        client.post_queries("http://127.0.0.1:9/query", ["ASK {}", "ASK {}"], accept="application/sparql-results+json")
    assert client._pools["http://127.0.0.1:9/query"]._idle == []  # noqa: SLF001


def test_a_connection_in_use_when_the_client_is_closed_is_closed_once_its_answer_is_read(
        server: tuple[str, type[_Handler]]) -> None:
    """A store's write-lock keeper may be waiting for an answer while the store closes its client: that connection
    must not go back to the closed pool, where nothing would ever close it (an unclosed socket warning later)."""
    url, handler = server
    handler.hold = threading.Event()
    client = SparqlHttp(timeout=10)
    pool = client._pool(url)  # noqa: SLF001
    answered: list[bytes] = []
    waiting = threading.Thread(target=lambda: answered.append(ask(client, url)))
    waiting.start()
    while not handler.requests:  # the request is at the server, its answer held
        threading.Event().wait(0.01)
    client.close()
    handler.hold.set()
    waiting.join(timeout=10)
    assert answered == [ANSWER]
    assert pool._idle == [] and client._pools == {}  # noqa: SLF001
    assert handler.server_closed.acquire(timeout=10), "the client closed the connection"

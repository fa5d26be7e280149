"""The remote store's write lock (``graph_store/_write_lock.py``) closing: no request after ``close()``.

The lock speaks through a store's query and update primitives; here they are an in-memory pyoxigraph store's,
which evaluates the lock's SPARQL (``NOW()`` included) as a server does."""

from __future__ import annotations

import threading
import time

from pyoxigraph import QuerySolutions, Store

from graph_store._write_lock import LOCK_GRAPH, ServerWriteLock


def test_closing_waits_for_the_keeper_that_is_withdrawing_its_claim() -> None:
    """A claim kept after a write is withdrawn by its keeper thread once the linger is over. A store closing
    meanwhile must wait for that withdrawal: sent after the store closed its connections, it opened a new one
    that nothing closed (an unclosed socket warning in a later test of a full CI run)."""
    server = Store()
    closed = threading.Event()
    after_close: list[str] = []
    withdrawing = threading.Event()

    def select(text: str) -> QuerySolutions:
        result = server.query(text)
        assert isinstance(result, QuerySolutions)
        return result

    def update(text: str) -> None:
        if text.startswith("DELETE WHERE"):  # a withdrawal: slow, as over a busy network
            withdrawing.set()
            time.sleep(0.3)
        server.update(text)
        if closed.is_set():
            after_close.append(text)

    lock = ServerWriteLock(select, update, ttl_s=10, linger_s=0.05)
    with lock.hold():
        pass  # one write; its claim is kept for the next one, then withdrawn by its keeper
    assert withdrawing.wait(timeout=5), "the keeper withdraws the claim after the linger"
    lock.close()
    closed.set()
    time.sleep(0.5)
    assert after_close == [], "nothing was sent once close() had returned"
    assert not server.query(f"ASK {{ GRAPH {LOCK_GRAPH} {{ ?s ?p ?o }} }}"), "the claim is withdrawn"

"""A real central service (uvicorn, HTTP on 127.0.0.1) in a thread of the test process.

For tests that drive the platform through its network API the way stations and researchers do, without
the start-up cost of a subprocess. ``tests/test_durability.py`` uses a subprocess where a crash matters.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from api_helpers import SETTINGS
from servers import free_port

from graph_store import EmbeddedStore
from orchestrator.app import create_app


@dataclass
class Central:
    url: str
    store: EmbeddedStore


@contextmanager
def central_service(store: EmbeddedStore | None = None) -> Iterator[Central]:
    store = store if store is not None else EmbeddedStore()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(SETTINGS, store=store), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        raise RuntimeError("the central service did not start within 20 s")
    try:
        yield Central(url, store)
    finally:
        server.should_exit = True
        thread.join(timeout=10)

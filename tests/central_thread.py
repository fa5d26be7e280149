"""A real central service (uvicorn, HTTP on 127.0.0.1, started by ``local_platform``) in a thread of the test process.

For tests that drive the platform through its network API the way stations and researchers do, without
the start-up cost of a subprocess. ``tests/test_durability.py`` uses a subprocess where a crash matters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from api_helpers import SETTINGS
from central_store import new_central_store

from graph_store import GraphStore
from local_platform.platform import serve_in_thread
from orchestrator.app import create_app
from orchestrator.settings import Settings


@dataclass
class Central:
    url: str
    store: GraphStore


@contextmanager
def central_service(store: GraphStore | None = None, settings: Settings = SETTINGS) -> Iterator[Central]:
    """A served central service on ``store``, or else on a new store of the kind the test runs on
    (:func:`central_store.new_central_store`)."""
    store = store if store is not None else new_central_store()
    served = serve_in_thread(create_app(settings, store=store), "central")
    try:
        yield Central(served.url, store)
    finally:
        served.stop()

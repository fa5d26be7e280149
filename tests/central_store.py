"""The one place that decides which graph store the central service runs on in the tests.

The central service keeps its whole state in the graph store, and an operator may run it on the embedded store
(pyoxigraph in the process) or on a SPARQL 1.1 server (``PHT_STORE_QUERY_URL`` / ``PHT_STORE_UPDATE_URL``: an
Oxigraph server, Virtuoso). The central-service test modules therefore run on all three (issue 16, item 5):

* a module opts in with ``pytestmark = pytest.mark.central_stores``; ``conftest.py`` then parametrises the
  module-scoped autouse fixture ``central_store_kind`` over :data:`KINDS` (test ids ``[embedded]``,
  ``[oxigraph]``, ``[virtuoso]``, so ``-k virtuoso`` selects one), grouped by module: a module's tests run on the
  embedded store, then on the Oxigraph server, then on Virtuoso;
* :func:`new_central_store` is what every central service of a test is built on (``api_helpers.service``,
  ``central_thread.central_service`` and the tests that hold the store themselves): an ``EmbeddedStore()``, or
  a ``RemoteStore`` as the service opens it for those URLs (with its server-side write lock) on a server whose
  data graphs were dropped first, so each test starts from a clean store (the vocabulary stays loaded: see
  :class:`_ServerStore`);
* the servers are this module's own (one Oxigraph server and one Virtuoso per session, started on first use):
  the store-contract and named-query tests keep theirs, and a failed test here cannot leave data there.

Modules not marked run on the embedded store only. Where a test cannot pass on a server because of a documented
server difference, it says so with ``@pytest.mark.central_stores_except(*kinds, reason=...)``: those ids are not
generated (a deselection with its reason, never a skip; ``conftest.py`` refuses the marker without a reason).

Which modules run where, and why. Each run on a server is a further run of the module, so CI pays its whole
time again. Measured 2026-12-04 on the shared 2-core machine under other jobs' load (seconds for the module on
embedded / Oxigraph server / Virtuoso; a CI run's own numbers will be lower):

* all three stores (the REST API and lifecycle, the watchdog, refusals that must write nothing, the read and
  write paths' security promises): ``test_api`` (24 / 18 / 42, Virtuoso's start and first vocabulary load
  included), ``test_lifecycle`` (1 / 17 / 21), ``test_watchdog`` (5 / 9 / 8), ``test_hostile_rdf``
  (20 / 10 / 11), ``test_allowed_methods`` (9 / 8 / 31), ``test_train_requests`` (23 / 40 / 18),
  ``security/test_key_lifecycle`` (11 / 35 / 12), ``security/test_read_confidentiality`` (12 / 53 / 24),
  ``security/test_write_paths`` (28 / 72 / 34): about 260 s more on Oxigraph and 200 s on Virtuoso;
* embedded and Oxigraph: ``test_role_matrix`` (14 / 100: 450 calls, each write with the server-side lock's
  three extra requests);
* embedded only, for CI time, though they passed on both servers on 2026-12-04 (mark one ``central_stores`` to
  run it there again): ``test_keys_registry`` (103 / 75 / 71), ``test_station_lease`` (100 / 106 / 117; its
  lease-renewal count is too timing-bound for Virtuoso, see its marker), ``test_train_definition``
  (77 / 89 / 49), and, passed on Oxigraph only, ``test_web`` (41 / 122), ``test_web_sparql`` (7 / 27),
  ``security/test_tokens`` (57 / 90), ``security/test_signed_submissions`` (20 / 65). ``test_end_to_end``,
  ``test_replicas`` and the store-contract and named-query modules choose their stores themselves.

Per test, dropping the data graphs and starting a service costs about 0.5 s more on Oxigraph and 1 s more on
Virtuoso than on the embedded store (with the vocabulary kept loaded, see :class:`_ServerStore`).
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Literal as Kind

import servers
from pyoxigraph import NamedNode

from graph_store import ONTOLOGY_GRAPH, SHAPES_GRAPH, EmbeddedStore, GraphStore, RemoteStore
from graph_store._write_lock import LOCK_GRAPH
from orchestrator.settings import DEMO_SECRET, Settings

__all__ = ["KINDS", "StoreKind", "current", "new_central_store", "select", "server_store", "stop_servers"]

StoreKind = Kind["embedded", "oxigraph", "virtuoso"]
KINDS: tuple[StoreKind, ...] = ("embedded", "oxigraph", "virtuoso")

_kind: StoreKind = "embedded"
_servers: dict[str, servers.OxigraphServer | servers.VirtuosoServer] = {}
_started = ExitStack()


def select(kind: StoreKind) -> None:
    """Make :func:`new_central_store` build stores of ``kind`` (the ``central_store_kind`` fixture's job)."""
    global _kind
    _kind = kind


def current() -> StoreKind:
    """The kind of store the central services of the running test are built on."""
    return _kind


def _server(kind: StoreKind) -> servers.OxigraphServer | servers.VirtuosoServer:
    """This module's server of ``kind``, started at its first use and stopped at the session's end
    (:func:`stop_servers`)."""
    if kind not in _servers:
        if kind == "oxigraph":
            _servers[kind] = _started.enter_context(servers.oxigraph_server())
        else:
            _servers[kind] = _started.enter_context(servers.virtuoso_server())
    return _servers[kind]


def stop_servers() -> None:
    """Stop the servers :func:`new_central_store` started (at the session's end)."""
    _started.close()
    _servers.clear()


class _ServerStore(RemoteStore):
    """The store ``orchestrator.app.open_store`` opens for the server's URLs (a RemoteStore with its server-side
    write lock), but for one shortcut: the vocabulary is written once per server, not at every service start.

    Loading it costs 6 to 15 s on Virtuoso (about 180 update operations: the shapes' blank nodes cannot go into
    INSERT DATA there), and the tests start a service on a clean store hundreds of times. The shortcut is taken
    only while the server holds exactly as many vocabulary quads as the files give (nothing may write those
    graphs but ``load_vocabulary``); the full load at start-up is tested by tests/test_remote_queries.py and
    tests/test_store_contract.py on both servers, and on the embedded store everywhere.
    """

    def load_vocabulary(self) -> None:
        if self._vocabulary_size() != len(set(self.schema.ontology_quads)) + len(set(self.schema.shapes_quads)):
            super().load_vocabulary()

    def _vocabulary_size(self) -> int:
        rows = self.select("SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?s ?p ?o } VALUES ?g { $ontology $shapes } }",
                           bindings={"ontology": ONTOLOGY_GRAPH, "shapes": SHAPES_GRAPH})
        return sum(int(row["n"].value) for row in rows)


def server_store(kind: StoreKind) -> RemoteStore:
    """A store on the (not emptied) server of ``kind``, as the service opens it (:class:`_ServerStore`)."""
    server = _server(kind)
    user, password = (server.user, server.password) if isinstance(server, servers.VirtuosoServer) else (None, None)
    return _ServerStore(server.query_url, server.update_url, user=user, password=password,
                        write_lock_ttl_s=Settings(jwt_secret=DEMO_SECRET, demo=True).store_lock_ttl_s)


def _empty(store: RemoteStore) -> None:
    """Drop every graph the server holds but its own (Virtuoso's system graphs) and the vocabulary's, the write
    lock's included: the store then holds what a new ``EmbeddedStore()`` holds once a service started on it.
    Graph by graph, not ``DROP ALL``: on Virtuoso that also reaches the system graphs, and once left data quads
    behind (tests/test_store_contract.py)."""
    rows = store.select("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } }")
    graphs = sorted({str(row["g"]) for row in rows if not _kept(store, row["g"])})
    if graphs:
        store._update(" ; ".join(f"DROP SILENT GRAPH {g}" for g in graphs))  # noqa: SLF001 - a test's clean slate


def _kept(store: RemoteStore, graph: object) -> bool:
    """A graph of the server's own, or the vocabulary's (the write lock's claims are the store's, but dropped)."""
    if not isinstance(graph, NamedNode):
        return False
    return graph in (ONTOLOGY_GRAPH, SHAPES_GRAPH) or (graph != LOCK_GRAPH and store.server_graph(graph))


def new_central_store() -> GraphStore:
    """An empty store of the selected kind, for a central service of the running test.

    On a server it is the same data as every other store this returns until the next call, as replicas of the
    service share a server; close it (or let the service's lifespan end) when done.
    """
    if _kind == "embedded":
        return EmbeddedStore()
    store = server_store(_kind)
    _empty(store)
    return store


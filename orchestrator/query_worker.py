"""One query worker process: it parses and evaluates callers' queries and update WHEREs, so that a query that
crashes pyoxigraph or runs past its deadline takes down only this process (``query_workers.py`` kills and
replaces it), never the service.

It reads over its own store: an in-memory replica of the embedded store (seeded from a dump, then kept current
with the change sets of later commits, which every message carries), or its own client of the remote store.
A caller who is not an operator is evaluated over :class:`ReadableGraphs` built here from that store, so views
never cross the pipe. Imported by the forkserver at start (``query_workers.py``), so a new worker is a fork
with everything loaded.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from pyoxigraph import RdfFormat

from graph_store import (
    SIZES_GRAPH,
    ChangeSet,
    EmbeddedStore,
    GraphStore,
    GraphStoreError,
    RemoteStore,
    compile_update,
    load_schema,
)

from .naming import Iris
from .principal import Principal
from .query_eval import evaluate_at, named_protected, parse_iris, query_dataset, serialised
from .query_text import checked_query_text
from .readable_graph import ReadableGraphs
from .sparql_http import HttpError, error_for

__all__ = ["Job", "Reply", "Sync", "WorkerConfig", "serve"]

load_schema()  # the forkserver loads the shapes once; every worker forked from it has them


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker opens: a replica (``remote_query_url`` None) or a client of the remote store."""

    base_iri: str
    remote_query_url: str | None = None
    remote_update_url: str | None = None
    readable_max_age_s: float = 2.0


@dataclass(frozen=True)
class Sync:
    """Brings a replica to ``generation``: replaced by ``seed`` (N-Quads) if given, then ``changes`` applied."""

    generation: int
    seed: bytes | None = None
    changes: tuple[ChangeSet, ...] = ()


@dataclass(frozen=True)
class Job:
    """A caller's query (``kind`` "respond": the serialised answer; "answer": a QueryAnswer for the web view)
    or update ("plan": the UpdatePlan of its WHERE, for the main process to apply); or "view": the caller's
    readable view as N-Quads (the fast lane's, ``query_fast_lane.py``)."""

    kind: str
    text: str
    who: Principal | None = None
    default_uris: tuple[str, ...] = ()
    named_uris: tuple[str, ...] = ()
    accept: str | None = None
    row_limit: int = 10_000
    max_bytes: int = 50_000_000
    base: str | None = None
    """The IRI relative IRIs resolve against (the endpoint's URL), checked by the service."""
    skolem: str | None = None
    """The prefix of the IRIs an update's blank nodes become (``Iris.skolem_prefix``)."""


@dataclass(frozen=True)
class Reply:
    """A job's outcome: ``value`` (a (status, body, headers) response, a QueryAnswer or an UpdatePlan), or a
    refusal (``status`` >= 400 with one sentence ``detail``)."""

    value: Any = None
    status: int = 200
    detail: str = ""
    headers: tuple[tuple[str, str], ...] = ()


class _Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.iris = Iris(config.base_iri)
        self.generation = -1
        self.store: GraphStore
        if config.remote_query_url is not None:
            self.store = RemoteStore(config.remote_query_url, config.remote_update_url)
        else:
            self.store = EmbeddedStore()
        self.readable = ReadableGraphs(self.store, self.iris, max_age_s=config.readable_max_age_s)

    def sync(self, sync: Sync) -> None:
        if not isinstance(self.store, EmbeddedStore):  # a client of the server: the views of callers are stale
            if sync.generation != self.generation:     # after a commit of the main process (read your writes)
                self.readable.changed()
                self.generation = sync.generation
            return
        if sync.seed is not None:
            self.store = EmbeddedStore()
            self.store.oxigraph.load(sync.seed, format=RdfFormat.N_QUADS)
            # the graphs' sizes are the main store's bookkeeping (graph_store/_sizes.py), no caller's data
            self.store.oxigraph.remove_graph(SIZES_GRAPH)
            self.readable = ReadableGraphs(self.store, self.iris, max_age_s=self.config.readable_max_age_s)
        if sync.changes:
            replica = self.store.oxigraph  # applied as committed: the main process validated them
            for change in sync.changes:
                for quad in change.delete:
                    replica.remove(quad)
                replica.extend(change.insert)
            self.readable.changed()
        self.generation = sync.generation

    def run(self, job: Job) -> Any:
        if job.kind == "view":  # the caller's view as N-Quads, for the service's fast lane (query_fast_lane.py)
            if job.who is None:
                raise HttpError(400, "a view needs a caller")
            view = self.readable.for_principal(job.who)
            if not isinstance(view, EmbeddedStore):
                raise TypeError("a readable view is an in-memory store")
            return view.snapshot()
        text = checked_query_text(job.text)
        if job.kind == "plan":
            update = compile_update(text, job.base)
            refusal = named_protected(update, self.store)
            if refusal is not None:
                raise HttpError(403, refusal)
            return self.store.plan_update(update, using=parse_iris(job.default_uris, "using-graph-uri"),
                                          using_named=parse_iris(job.named_uris, "using-named-graph-uri"),
                                          max_solutions=job.row_limit, skolem=job.skolem, untrusted=True)
        if job.who is None:
            raise HttpError(400, "a query needs a caller")
        dataset = query_dataset(job.who, text, list(job.default_uris), list(job.named_uris),
                                self.readable.for_principal)
        answer = evaluate_at(self.store, text, dataset, job.row_limit, job.base)
        if job.kind == "answer":
            return answer
        return serialised(answer, job.accept, job.row_limit, job.max_bytes)


def serve(conn: Connection, config: WorkerConfig) -> None:
    """The worker's loop: receive (Sync, Job | None), answer a Reply, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service stops its workers itself
    worker = _Worker(config)
    while True:
        try:
            sync, job = conn.recv()
            conn.send(_handle(worker, sync, job))
        except (EOFError, OSError):  # the service closed the pipe: it stops, or gave up on this worker
            return


def _handle(worker: _Worker, sync: Sync, job: Job | None) -> Reply:
    try:
        worker.sync(sync)
        return Reply(None if job is None else worker.run(job))
    except HttpError as e:
        return Reply(status=e.status, detail=e.detail, headers=tuple(e.headers.items()))
    except GraphStoreError as e:
        refusal = error_for(e)
        return Reply(status=refusal.status, detail=refusal.detail)
    except OSError as e:  # pyoxigraph reports storage failures as OSError
        return Reply(status=503, detail=f"the graph store failed: {e}")
    except Exception as e:  # a bug must answer one sentence, never take the worker's loop down
        return Reply(status=503, detail=f"the query could not be evaluated ({type(e).__name__}: {e})")

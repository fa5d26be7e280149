"""Running a caller's query or update WHERE: in a worker process (``query_workers.py``) within a deadline, at most
``per_principal`` at a time per caller (one more waits ``queue_s`` for one of them, then is refused).

The main process never parses or evaluates a caller's SPARQL, with one exception: a worker does
(``query_worker.py``, with ``query_eval.py``), and is killed and replaced when the deadline passes (pyoxigraph
cannot cancel a query) or when the query crashes it. The exception is a point query on an embedded store
(``query_fast_lane.py``): its grammar and cost are bounded before it is parsed, and it is answered here.
"""

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Response
from starlette.concurrency import run_in_threadpool

from graph_store import EmbeddedStore, GraphStore, RemoteStore, UpdatePlan

from .principal import Principal
from .query_eval import QueryAnswer, QueryDataset, answer_response, evaluate, parse_iris, query_dataset
from .query_fast_lane import PointQueryLane
from .query_worker import Job, WorkerConfig
from .query_workers import WorkerDied, WorkerPool
from .readable_graph import ReadableGraphs
from .settings import Settings
from .sparql_http import HttpError

log = logging.getLogger(__name__)
QUEUE_POLL_S = 0.005
"""How often a queued query looks for a free slot of its caller's."""
QUEUE_DEPTH = 8
"""At most this many of one caller's queries wait for a slot (a dashboard's panels); more are refused at once, so
that one caller's flood of waiting requests cannot crowd the event loop."""

__all__ = ["QueryAnswer", "QueryDataset", "QueryRunner", "answer_response", "evaluate", "parse_iris",
           "query_dataset", "query_runner"]


class QueryRunner:
    """Runs callers' queries and update WHEREs in worker processes: at most ``per_principal`` at a time per
    caller (one more waits up to ``queue_s`` for one of them to finish, else 429), each within ``timeout_s``
    (503 at the deadline, its worker killed and replaced)."""

    def __init__(self, pool: WorkerPool, *, timeout_s: float, row_limit: int, max_bytes: int,
                 per_principal: int, queue_s: float = 0.0, lane: PointQueryLane | None = None) -> None:
        self.pool, self.lane = pool, lane
        self.timeout_s, self.row_limit, self.max_bytes, self.per_principal = timeout_s, row_limit, max_bytes, \
            per_principal
        self.queue_s = queue_s
        self._running: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._lock = threading.Lock()

    async def start(self, *, wait: bool = True) -> None:
        """Start the workers and (``wait``) wait at most a minute until they run, so that the first queries a
        starting service answers do not spend their deadline waiting for a worker."""
        self.pool.open()
        if self.lane is not None:
            self.lane.open()
        if not wait:
            self.pool.start()
        elif not await run_in_threadpool(self.pool.wait_ready, 60.0):
            log.warning("not every query worker started within a minute; queries wait for them")

    def close(self) -> None:
        """Kill the workers (and stop the fast lane's view builder)."""
        if self.lane is not None:
            self.lane.close()
        self.pool.close()

    @asynccontextmanager
    async def _slot(self, who: Principal) -> AsyncIterator[None]:
        key = who.subject
        if not self._take(key):  # a dashboard's panels queue briefly; a flood is refused at once
            await self._queue(key)
        try:
            yield
        finally:
            with self._lock:
                self._running[key] -= 1
                if not self._running[key]:
                    del self._running[key]

    async def _queue(self, key: str) -> None:
        """Wait up to ``queue_s`` for one of the caller's slots; at most QUEUE_DEPTH of a caller's queries wait."""
        with self._lock:
            if self._waiting.get(key, 0) >= QUEUE_DEPTH:
                raise self._too_many()
            self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            give_up = time.monotonic() + self.queue_s
            while not self._take(key):
                if time.monotonic() >= give_up:
                    raise self._too_many()
                await asyncio.sleep(QUEUE_POLL_S)
        finally:
            with self._lock:
                self._waiting[key] -= 1
                if not self._waiting[key]:
                    del self._waiting[key]

    def _too_many(self) -> HttpError:
        return HttpError(429, f"you have {self.per_principal} queries running already; wait for one to finish",
                         headers={"Retry-After": "1"})

    def _take(self, key: str) -> bool:
        with self._lock:
            if self._running.get(key, 0) >= self.per_principal:
                return False
            self._running[key] = self._running.get(key, 0) + 1
            return True

    def _over_time(self) -> HttpError:
        return HttpError(503, f"the query did not finish within {self.timeout_s:g} s; make it more selective or "
                              "add a LIMIT", headers={"Retry-After": "1"})

    async def _call(self, who: Principal, job: Job) -> Any:
        async with self._slot(who):
            try:
                return await self.pool.call(job, time.monotonic() + self.timeout_s, self._over_time)
            except WorkerDied:
                raise HttpError(503, "the process evaluating the query stopped (the query may be too complex to "
                                     "parse or evaluate); simplify it", headers={"Retry-After": "1"}) from None

    async def respond(self, who: Principal, text: str, default_uris: list[str], named_uris: list[str],
                      accept: str | None, *, base: str | None = None) -> Response:
        """The serialised answer to ``who``'s query, as ``/sparql`` sends it (relative IRIs against ``base``): a
        point query's from the fast lane if it can, else from a worker."""
        if self.lane is not None:
            answered = self.lane.answer(who, text, default_uris, named_uris, accept,
                                        row_limit=self.row_limit, max_bytes=self.max_bytes, base=base)
            if answered is not None:
                status, body, headers = answered
                return Response(body, status_code=status, headers=dict(headers))
        job = Job("respond", text, who, tuple(default_uris), tuple(named_uris), accept, self.row_limit,
                  self.max_bytes, base=base)
        status, body, headers = await self._call(who, job)
        return Response(body, status_code=status, headers=dict(headers))

    async def answer(self, who: Principal, text: str) -> QueryAnswer:
        """``who``'s query evaluated over the dataset ``/sparql`` would use without protocol graphs."""
        answer = await self._call(who, Job("answer", text, who, row_limit=self.row_limit))
        if not isinstance(answer, QueryAnswer):
            raise TypeError("a worker answered something else than a QueryAnswer")
        return answer

    async def plan_update(self, who: Principal, text: str, using: list[str], using_named: list[str], *,
                          base: str | None = None, skolem: str | None = None) -> UpdatePlan:
        """What ``who``'s update would change (GraphStore.plan_update in a worker, relative IRIs against ``base``,
        blank nodes as IRIs under ``skolem``): the caller applies it."""
        plan = await self._call(who, Job("plan", text, who, tuple(using), tuple(using_named),
                                         row_limit=self.row_limit, base=base, skolem=skolem))
        if not isinstance(plan, UpdatePlan):
            raise TypeError("a worker answered something else than an UpdatePlan")
        return plan


def query_runner(store: GraphStore, settings: Settings, readable: ReadableGraphs, *,
                 workers: int | None = None) -> QueryRunner:
    """A runner over ``store`` with the settings' limits and ``workers`` (default ``settings.query_workers``)
    worker processes: replicas of an embedded store, clients of a remote store's query URL (whose views of what
    a caller may read are rebuilt after ``readable.max_age_s``: other processes may write the remote store).
    Over an embedded store, point queries take the fast lane, over ``readable``'s views."""
    readable_max_age_s = readable.max_age_s
    if isinstance(store, RemoteStore):
        config = WorkerConfig(settings.base_iri, store.query_url, store.update_url, readable_max_age_s)
    elif isinstance(store, EmbeddedStore):  # a replica is told of every change: its views never expire by age
        config = WorkerConfig(settings.base_iri, readable_max_age_s=math.inf)
    else:
        raise TypeError(f"no query workers for a {type(store).__name__}")
    pool = WorkerPool(store, config, size=workers or settings.query_workers)
    per_principal = settings.query_per_principal
    if pool.size > 1:  # one caller never holds every worker (a pool of one can only be shared in turn)
        per_principal = min(per_principal, pool.size - 1)
    lane = PointQueryLane(store, readable, pool, timeout_s=settings.query_timeout_s) \
        if isinstance(store, EmbeddedStore) else None
    return QueryRunner(pool, timeout_s=settings.query_timeout_s, row_limit=settings.query_result_limit,
                       max_bytes=settings.query_result_max_bytes, per_principal=per_principal,
                       queue_s=settings.query_queue_s, lane=lane)

"""A pool of query worker processes (``query_worker.py``) that are killed and replaced when a query passes its
deadline or crashes them: pyoxigraph cannot cancel a query, and a thread running one cannot be stopped.

Workers are forked by a forkserver that has imported ``query_worker`` (a fork of a single-threaded process,
with everything loaded: a replacement is ready in tens of milliseconds, not the seconds of a fresh spawn).

Replicas (embedded store): the pool counts the store's commits (``generation``) and keeps the last
``LOG_SIZE`` change sets; each job carries the changes its worker has not applied yet, so a query sees every
write committed before it was sent. A worker further behind, a new one, and every worker after a write that
bypassed ``apply()`` (``GraphStore.on_bypass``) is reseeded from a dump. A dump taken while commits go on is
labelled with the generation read before it; replaying later change sets over it is exact, because a change
set sets each of its quads present or absent whatever the state before.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import socket
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any

from starlette.concurrency import run_in_threadpool

from graph_store import ChangeSet, EmbeddedStore, GraphStore

from .query_worker import Job, Reply, Sync, WorkerConfig, serve
from .sparql_http import HttpError

__all__ = ["LOG_SIZE", "WorkerDied", "WorkerPool"]

LOG_SIZE = 1_000
"""Change sets kept for workers to catch up with; a worker further behind is reseeded from a dump."""
LOG_QUADS = 200_000
"""At most this many quads in the kept change sets (about 40 MB; a station's metadata batch holds thousands)."""
SLOW_AFTER_S = 1.0
"""A query running longer than this, or than half its deadline, is slow: its worker gets a lower CPU priority
(``SLOW_NICE``). Not sooner: a worker's first query for a caller builds their view (0.15 s at 100,000 quads),
and a demoted one on a busy machine can miss its deadline, be killed, and leave a cold worker behind."""
SLOW_NICE = 10
"""Linux gives a nice-10 process about a tenth of a nice-0 one's CPU share: slow queries yield to quick ones
without starving (nice 19, a 1.5 % share, let unrelated load on a busy machine stall a legitimate 0.3 s query
past its deadline)."""
REPLACE_WAIT_S = 30.0
"""Longest wait for a killed worker's replacement before its query is answered."""
FAST_MESSAGE_BYTES = 16 * 1024
"""Jobs and replies up to this size cross the pipe on the event loop, sparing a point query two thread hops;
larger ones (a seed, a long change log, a large answer) cross in a thread, so that the loop never waits on a pipe."""
RETRY_AFTER_FAILURE_S = 1.0
"""After a worker failed to start, the next start waits this long (no fork storm if the store cannot load)."""

log = logging.getLogger(__name__)
_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["orchestrator.query_worker"])


class WorkerDied(Exception):
    """The worker's process ended before answering (killed, or crashed by the query)."""


@dataclass
class _Handle:
    process: BaseProcess
    conn: Connection
    generation: int = -1
    niced: bool = False

    def __post_init__(self) -> None:
        # The same socket (a duplex Pipe is a socketpair), to peek at a reply's length before reading it.
        self.peek = socket.socket(fileno=os.dup(self.conn.fileno()))

    def close(self) -> None:
        self.conn.close()
        self.peek.close()

    def pending_reply_bytes(self) -> int | None:
        """The length of the reply waiting in the pipe, from its header (None if unknown or over 2 GiB)."""
        try:
            header = self.peek.recv(4, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return None
        if len(header) < 4:
            return None
        size: int = struct.unpack("!i", header)[0]  # multiprocessing.Connection's framing; -1: a 64-bit length
        return size if size >= 0 else None


def _kill(handles: list[_Handle]) -> None:
    for handle in handles:
        if handle.process.is_alive():
            handle.process.kill()
        handle.close()


class WorkerPool:
    """``size`` worker processes over ``store`` (a replica each if it is embedded, else a client of its URL)."""

    def __init__(self, store: GraphStore, config: WorkerConfig, *, size: int) -> None:
        self.store, self.config, self.size = store, config, size
        self.replicated = isinstance(store, EmbeddedStore)
        self._lock = threading.Lock()
        self._idle: list[_Handle] = []
        self._all: list[_Handle] = []
        self._starting = 0
        self._closed = False
        self._generation = 0
        self._floor = 0  # workers below this generation are reseeded
        self._log: deque[tuple[int, ChangeSet]] = deque()
        self._log_quads = 0
        self._dump: tuple[int, bytes] | None = None
        self._failed_at = -RETRY_AFTER_FAILURE_S
        me = weakref.ref(self)  # weakly: the store outlives the pools of the apps built over it (tests)

        def committed(change: ChangeSet) -> None:
            if (pool := me()) is not None:
                pool._committed(change)

        # on a remote store too: a worker's cached views of what a caller may read are dropped after a commit
        store.on_commit(committed)
        if self.replicated:

            def bypassed() -> None:
                if (pool := me()) is not None:
                    pool._bypassed()

            store.on_bypass(bypassed)
        self._finalizer = weakref.finalize(self, _kill, self._all)

    # -- the replicas' log ---------------------------------------------------------------------------

    def _committed(self, change: ChangeSet) -> None:
        with self._lock:
            self._generation += 1
            if not self.replicated:  # a remote store's workers need only the count (their views' age)
                return
            self._log.append((self._generation, change))
            self._log_quads += len(change.delete) + len(change.insert)
            while len(self._log) > LOG_SIZE or (self._log_quads > LOG_QUADS and len(self._log) > 1):
                _, old = self._log.popleft()
                self._log_quads -= len(old.delete) + len(old.insert)

    def _bypassed(self) -> None:
        with self._lock:
            self._generation += 1
            self._floor = self._generation
            self._log.clear()
            self._log_quads = 0
            self._dump = None

    def _sync_for(self, handle: _Handle) -> Sync:
        """What ``handle`` needs to reach the store's current generation (a dump if the log cannot say)."""
        sync = self._catch_up(handle, may_dump=True)
        assert sync is not None
        return sync

    def _catch_up(self, handle: _Handle, *, may_dump: bool) -> Sync | None:
        """:meth:`_sync_for`, or None if that needs a dump not taken yet and not ``may_dump`` (taking one is
        slow: not on the event loop)."""
        if not self.replicated:
            with self._lock:
                return Sync(self._generation)
        while True:
            with self._lock:
                oldest = self._log[0][0] if self._log else self._generation + 1
                if self._floor <= handle.generation and oldest <= handle.generation + 1:
                    return Sync(self._generation, changes=tuple(c for g, c in self._log if g > handle.generation))
                dump = self._dump
                if dump is None or dump[0] < self._floor or dump[0] + 1 < oldest:
                    dump = None
                    at = self._generation
            if dump is None:
                if not may_dump:
                    return None
                assert isinstance(self.store, EmbeddedStore)
                dump = (at, self.store.snapshot())
            with self._lock:
                oldest = self._log[0][0] if self._log else self._generation + 1
                if dump[0] >= self._floor and dump[0] + 1 >= oldest:  # else commits outran the log: dump again
                    self._dump = dump
                    return Sync(self._generation, seed=dump[1],
                                changes=tuple(c for g, c in self._log if g > dump[0]))

    # -- processes -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Let a closed pool start workers again: an app's lifespan may run more than once (a test client
        entered twice, Schemathesis's ASGI transport once per test), each time closing the pool at its end."""
        with self._lock:
            self._closed = False
            self._failed_at = -RETRY_AFTER_FAILURE_S

    def start(self) -> None:
        """Start the missing workers in the background (each seeded before it takes a job)."""
        with self._lock:
            if self._closed:
                return
            if time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_S:
                return
            missing = self.size - len(self._all) - self._starting
            self._starting += max(missing, 0)
        for _ in range(max(missing, 0)):
            threading.Thread(target=self._add_worker, daemon=True, name="query-worker-start").start()

    def wait_ready(self, timeout_s: float) -> bool:
        """Start the workers and wait until all run (or ``timeout_s`` passed): a service answers once they do."""
        self.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._all) >= self.size:
                    return True
            time.sleep(0.01)
        return False

    def _add_worker(self) -> None:
        handle: _Handle | None = None
        try:
            parent, child = _context.Pipe()
            process = _context.Process(target=serve, args=(child, self.config), daemon=True,
                                       name="pht-query-worker")
            process.start()
            child.close()
            handle = _Handle(process, parent)
            sync = self._sync_for(handle)
            parent.send((sync, None))
            reply = parent.recv()
            if not isinstance(reply, Reply) or reply.status != 200:
                raise RuntimeError(f"the new worker could not load the store: {getattr(reply, 'detail', reply)}")
            handle.generation = sync.generation
        except Exception:
            log.exception("a query worker could not be started")
            if handle is not None:
                _kill([handle])
            handle = None
        with self._lock:
            self._starting -= 1
            if handle is None:
                self._failed_at = time.monotonic()
                return
            if self._closed:
                _kill([handle])
                return
            self._all.append(handle)
            self._idle.append(handle)

    def _retire(self, handle: _Handle) -> None:
        """Kill ``handle``'s process (SIGKILL: the query inside cannot be asked to stop) and start another."""
        if handle.process.is_alive():
            handle.process.kill()  # SIGKILL
        handle.close()
        threading.Thread(target=handle.process.join, args=(5,), daemon=True).start()  # reap it
        with self._lock:
            if handle in self._all:
                self._all.remove(handle)
        if not self._closed:
            self.start()

    def pids(self) -> list[int]:
        """The worker processes' ids (tests kill them to prove the pool recovers)."""
        with self._lock:
            return [h.process.pid for h in self._all if h.process.pid is not None]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles, self._idle = list(self._all), []
            self._all.clear()
        _kill(handles)

    # -- running a job ---------------------------------------------------------------------------------

    async def _acquire(self, deadline: float, on_timeout: Callable[[], HttpError]) -> _Handle:
        self.start()
        while True:
            with self._lock:
                while self._idle:
                    handle = self._idle.pop()
                    if handle.process.is_alive():
                        return handle
                    dead = handle
                    break
                else:
                    dead = None
            if dead is not None:
                self._retire(dead)
                continue
            if time.monotonic() >= deadline:
                raise on_timeout()
            await asyncio.sleep(0.002)

    async def call(self, job: Job, deadline: float, on_timeout: Callable[[], HttpError]) -> Any:
        """``job``'s value from a worker; ``on_timeout()`` is raised (and the worker killed) at ``deadline``;
        a refusal by the worker is raised as HttpError; WorkerDied if its process ended meanwhile.

        A query still running after SLOW_AFTER_S is lowered to CPU priority SLOW_NICE: on a loaded machine
        the slow queries share what the quick ones leave, so that other callers keep their latency. A query whose
        worker is killed returns only once a replacement runs: its caller's slot stays taken meanwhile, so one
        caller's slow queries cannot leave the pool without idle workers while replacements load the store."""
        while True:
            handle = await self._acquire(deadline, on_timeout)
            now = time.monotonic()
            wait = max(min(SLOW_AFTER_S, (deadline - now) / 2), 0)
            try:  # a quick query's small messages cross on the event loop; else one trip to a thread
                sync, reply = await self._round_trip(handle, job, wait)
            except (EOFError, OSError):
                await self._replace(handle)
                raise WorkerDied() from None
            except BaseException:  # cancelled (the client went away): the worker is in an unknown state
                self._retire(handle)
                raise
            if sync is not None:
                break
            self._retire(handle)  # it died while idle (killed from outside): the job never started, take another
        if reply is None:
            _set_nice(handle.process.pid, SLOW_NICE)
            handle.niced = True
            try:
                reply = await self._reply(handle, max(deadline - time.monotonic(), 0))
            except (EOFError, OSError):
                await self._replace(handle)
                raise WorkerDied() from None
            except BaseException:
                self._retire(handle)
                raise
            if reply is None:
                await self._replace(handle)
                raise on_timeout()
        handle.generation = sync.generation
        if handle.niced and not _set_nice(handle.process.pid, 0):
            self._retire(handle)  # it would stay slow for the next query: replace it
        else:
            handle.niced = False
            with self._lock:
                if not self._closed:
                    self._idle.append(handle)
        if reply.status >= 400:
            raise HttpError(reply.status, reply.detail, headers=dict(reply.headers))
        return reply.value

    async def _replace(self, handle: _Handle) -> None:
        """Kill ``handle`` and wait (at most REPLACE_WAIT_S) until the pool is whole again."""
        self._retire(handle)
        await run_in_threadpool(self.wait_ready, REPLACE_WAIT_S)

    async def _round_trip(self, handle: _Handle, job: Job, wait_s: float) -> tuple[Sync | None, Reply | None]:
        """:meth:`_exchange` without leaving the event loop when the job and its catching up are small."""
        sync = self._catch_up(handle, may_dump=False)
        message = None if sync is None else ForkingPickler.dumps((sync, job))
        if sync is None or message is None or len(message) > FAST_MESSAGE_BYTES:
            return await run_in_threadpool(self._exchange, handle, job, wait_s)
        try:
            handle.conn.send_bytes(message)  # an idle worker's empty pipe takes it at once
        except OSError:
            return None, None
        return sync, await self._reply(handle, wait_s)

    async def _reply(self, handle: _Handle, wait_s: float) -> Reply | None:
        """The worker's reply, waited for ``wait_s`` on the event loop (None if it has not come); read on the
        loop if small, else in a thread."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        fd = handle.conn.fileno()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        timer = loop.call_later(wait_s, readable.cancel)  # not asyncio.wait_for: it costs a task per query
        try:
            await readable
        except asyncio.CancelledError:
            if not readable.cancelled() or (task := asyncio.current_task()) is None or task.cancelling():
                raise  # the caller was cancelled, not our timer
            return None
        finally:
            timer.cancel()
            loop.remove_reader(fd)
        size = handle.pending_reply_bytes()
        if size is not None and size <= FAST_MESSAGE_BYTES:
            reply = handle.conn.recv()  # the worker writes a small reply at once: this read does not wait
        else:
            os.set_blocking(fd, True)
            reply = await run_in_threadpool(handle.conn.recv)
        if not isinstance(reply, Reply):
            raise EOFError("unexpected message from a worker")
        return reply

    def _exchange(self, handle: _Handle, job: Job, wait_s: float) -> tuple[Sync | None, Reply | None]:
        """Send ``job`` with what the worker must catch up on, and wait ``wait_s`` for the reply (None if it has
        not come). (None, None): the worker was dead before it got the job."""
        sync = self._sync_for(handle)
        try:
            os.set_blocking(handle.conn.fileno(), True)  # the event loop's reader (libuv) leaves it non-blocking
            handle.conn.send((sync, job))
        except OSError:
            return None, None
        return sync, self._wait(handle, wait_s)

    @staticmethod
    def _wait(handle: _Handle, wait_s: float) -> Reply | None:
        if not handle.conn.poll(wait_s):
            return None
        reply = handle.conn.recv()
        if not isinstance(reply, Reply):
            raise EOFError("unexpected message from a worker")
        return reply


def _set_nice(pid: int | None, nice: int) -> bool:
    """Set a worker's CPU priority; False if not permitted (raising it back needs CAP_SYS_NICE)."""
    if not pid:  # never 0: that would be this process
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
        return True
    except (PermissionError, ProcessLookupError):
        return False

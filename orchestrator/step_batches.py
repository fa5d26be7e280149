"""Lifecycle steps of concurrent clients, applied in groups (group commit).

A step handler that ran :meth:`Lifecycle.step` on the event loop held the loop while the store answered: on a
remote store, each step waited for its round trips alone, one step after the other, and the service's own work
(reading requests, writing answers) never overlapped the server's. Here a handler queues its step and awaits it;
one runner at a time hands every step queued meanwhile to :meth:`Lifecycle.step_many` in a worker thread, which
writes them as one group (``GraphStore.apply_writes``: the round trips of one write). While a group is written,
the event loop reads the next requests, which form the next group. A step that arrives when none is under way
starts at once, alone: grouping adds no wait.

On a store that writes each step alone anyway (the embedded store: no round trips to save, a step takes about a
millisecond of CPU) the step runs on the event loop, as the other handlers' writes do: handing it to a thread
cost 11 % of the steps per second (measured, ``benchmarks/README.md`` session 21).
"""

from __future__ import annotations

import asyncio

from starlette.concurrency import run_in_threadpool

from .lifecycle import Lifecycle, StepRequest

__all__ = ["StepBatches"]

_MOST = 32
"""Most steps of one group (a larger queue is taken in turns)."""


class StepBatches:
    """The step queue of one service process (its event loop)."""

    def __init__(self, lifecycle: Lifecycle, *, most: int = _MOST) -> None:
        self._lifecycle = lifecycle
        self._most = most
        self._queued: list[tuple[StepRequest, asyncio.Future[str]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def step(self, request: StepRequest) -> str:
        """What :meth:`Lifecycle.step` returns for ``request`` (or raises), stepped with the others queued."""
        if not self._lifecycle.store.groups_writes:
            result: str | Exception
            (result,) = self._lifecycle.step_many([request])
            if isinstance(result, Exception):
                raise result
            return result
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._queued.append((request, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        """Step the queued requests, group after group, until none is left."""
        while self._queued:
            group, self._queued = self._queued[:self._most], self._queued[self._most:]
            group = [(request, future) for request, future in group if not future.done()]  # its client went away
            if not group:
                continue
            try:
                results = await run_in_threadpool(self._lifecycle.step_many, [request for request, _ in group])
            except Exception as e:  # step_many answers each step's error itself: this is its own failure
                results = [e] * len(group)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():  # its client went away meanwhile
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

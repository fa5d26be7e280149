"""Server-sent events of one train: its state, progress and new events, as they appear in the graph.

The graph is the system of record and other processes may write it (a remote store), so the stream polls
the store (every ``poll_s``) rather than listening to this process's writes. Each connection lives at most
``lifetime_s``; the browser's EventSource then reconnects by itself (``retry``). The bound matters because
uvicorn, when it stops, waits for open responses to finish. When the train has reached a terminal state the
stream says ``end`` and closes, and the page's script stops listening.

Messages (``data`` is JSON):

* ``snapshot``: ``{state, terminal, released, planned, current, executions: [...]}`` whenever it changed;
* ``event``: one row of the events table (``EventRow``) for each event not sent before on this connection;
* ``end``: the train is finished (or rejected, withheld, failed, cancelled): nothing more will come.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from ..api.deps import Services
from .views import EventRow, Snapshot, TrainFacts, executions, train_events, train_snapshot

__all__ = ["train_stream"]

KEEPALIVE_S = 15.0
"""A comment line at least this often, so that proxies do not close an idle stream."""


def _message(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def train_stream(request: Request, s: Services, facts: TrainFacts, *, poll_s: float,
                       lifetime_s: float) -> AsyncIterator[str]:
    """The SSE body for one train page (see the module's docstring)."""

    def read() -> tuple[Snapshot, list[EventRow]]:
        execs = executions(s, facts.train)
        return train_snapshot(s, facts, execs), train_events(s, facts.train)

    yield f"retry: {int(max(poll_s, 1.0) * 1000)}\n\n"
    sent: set[str] = set()
    last: dict[str, Any] | None = None
    started = last_write = time.monotonic()
    while True:
        snapshot, events = await run_in_threadpool(read)  # store reads block: off the event loop
        if snapshot.as_json() != last:  # first, so that the page knows new executions before their events
            last = snapshot.as_json()
            yield _message("snapshot", last)
            last_write = time.monotonic()
        for event in events:
            if event.event not in sent:
                sent.add(event.event)
                yield _message("event", asdict(event))
                last_write = time.monotonic()
        if snapshot.terminal:
            yield _message("end", {"state": snapshot.state})
            return
        now = time.monotonic()
        if now - started >= lifetime_s or await request.is_disconnected():
            return
        if now - last_write >= KEEPALIVE_S:
            yield ": keep-alive\n\n"
            last_write = now
        await asyncio.sleep(poll_s)

"""A background task of the central service that one replica runs at a time (the station watchdog).

Replicas of the service share one store; each runs the same background threads. A task whose every round must
happen once (two watchdogs would both fail a stale execution, or race for it) holds a ``pht:ServiceTaskLease`` in
the central graph: before each round a replica takes or renews it (compare-and-set, :class:`leases.LeaseRecords`)
and runs the round only if it holds it; it releases it when it stops. A replica killed without releasing it
loses it when it expires (``period_s``), and another replica's next round takes it over.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from pyoxigraph import Literal, Quad

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, ConflictError, GraphStore

from .leases import LeaseRecords, Tenure
from .naming import Iris

__all__ = ["TaskLease", "replica_name"]


def replica_name() -> str:
    """This process as a lease holder: its pid, host and a random instance id (pids repeat across hosts)."""
    return f"central service pid {os.getpid()} on {socket.gethostname()} (instance {uuid.uuid4().hex[:8]})"


class TaskLease:
    """The lease of ``task`` for this replica (``holder``), ``period_s`` long from each renewal."""

    def __init__(self, store: GraphStore, iris: Iris, task: str, *, holder: str, period_s: float,
                 clock: Callable[[], datetime]) -> None:
        self.records = LeaseRecords(store)
        self.lease = iris.task_lease(task)
        self.task, self.holder, self.period_s, self.clock = task, holder, period_s, clock

    def hold(self) -> bool:
        """Take or renew the lease; True if this replica holds it now (and may run a round)."""
        now = self.clock()
        try:
            tenure = self.records.take(self.lease, self.holder, now=now,
                                       until=now + timedelta(seconds=self.period_s),
                                       created=[Quad(self.lease, RDF_TYPE, PHT.ServiceTaskLease, CENTRAL_GRAPH),
                                                Quad(self.lease, PHT.leaseTask, Literal(self.task), CENTRAL_GRAPH)])
        except ConflictError:
            return False  # another replica wrote it meanwhile: its round, not ours
        return tenure.holder == self.holder

    def release(self) -> None:
        """End this replica's lease now (it stops), so that another replica takes over at its next round."""
        try:
            self.records.release(self.lease, self.holder, now=self.clock())
        except ConflictError:
            pass  # another replica has it now

    def current(self) -> Tenure | None:
        """Who holds (or last held) the lease."""
        return self.records.read(self.lease)

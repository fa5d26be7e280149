"""The station watchdog: a station that goes away must not leave its trains waiting forever.

A background thread of the central service that periodically fails executions their station has not moved
for ``PHT_STATION_TIMEOUT_S`` (see ``Lifecycle.expire_stale``); the train fails with the reason, which
names the station. Waiting for a person (approval, output review) never expires. Each stale execution is handled
on its own: one that cannot be failed is logged with its train and execution id and the round goes on with the
others (``Lifecycle.expire_stale``); a round that fails as a whole (the store is down) is logged and retried.

Replicas sharing a store run one watchdog between them: a round runs only in the replica holding the
``station-watchdog`` task lease (``task_lease.py``), renewed before each round and taken over by another replica
once a dead holder's lease expires (three rounds' time).
"""

import logging
import threading

from .lifecycle import Lifecycle
from .task_lease import TaskLease, replica_name

log = logging.getLogger("pht.watchdog")

TASK = "station-watchdog"


class StationWatchdog:
    def __init__(self, lifecycle: Lifecycle, timeout_s: float, *, holder: str | None = None) -> None:
        self.lifecycle = lifecycle
        self.timeout_s = timeout_s
        self.interval_s = min(max(timeout_s / 4, 0.2), 30.0)
        self.lease = TaskLease(lifecycle.store, lifecycle.iris, TASK, holder=holder or replica_name(),
                               period_s=max(3 * self.interval_s, 1.0), clock=lifecycle.clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.timeout_s <= 0:
            return
        try:  # at start-up, not a round later: a replica's first write is not left to some moment of its traffic
            self.lease.hold()
        except Exception:
            log.warning("station watchdog: the lease cannot be taken now; the first round tries again")
        self._thread = threading.Thread(target=self._run, name="station-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            try:
                self.lease.release()
            except Exception:  # the store is down: the lease expires by itself
                log.warning("the station watchdog could not release its lease; it expires by itself")

    def _run(self) -> None:
        holding = False
        while not self._stop.wait(self.interval_s):
            try:
                if not self.lease.hold():
                    if holding:
                        log.warning("station watchdog: another replica holds the lease now; this one stands by")
                    holding = False
                    continue
                if not holding:
                    log.info("station watchdog: this replica (%s) holds the lease and runs the rounds",
                             self.lease.holder)
                holding = True
                for eid in self.lifecycle.expire_stale(self.timeout_s):
                    log.warning("execution %s failed: its station did not move it for %s s", eid, self.timeout_s)
            except Exception:  # the next round tries again; the service must not lose its watchdog
                log.exception("station watchdog round failed")

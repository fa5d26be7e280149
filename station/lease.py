"""This agent's lease on its station at the central service: one running agent per station.

A second agent started by mistake for the same station would drive the same executions (and e.g. remove the
container the first one runs). So the agent takes its station's lease before it does anything, renews it at a
third of the period (not on every poll: each renewal is a write to the central graph), and releases it when it
stops. If it dies without releasing, the lease expires and a new agent may start. The central service decides
who holds it (its clock, compare-and-set writes), so this works across hosts.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

from client import CentralClient, ClientError

log = logging.getLogger("pht.station.lease")

RENEW_FRACTION = 1 / 3
"""Renew when this fraction of the period has passed: two renewals can fail before the lease runs out."""


class LeaseRefused(Exception):
    """Another agent holds the station's lease; ``str(e)`` is the central service's sentence naming it."""


class LeaseLost(Exception):
    """This agent held the lease and another agent has it now; ``str(e)`` says so."""


def describe_this_agent() -> str:
    """How the lease names this agent for people: process, host and a random instance id (unique per start)."""
    return f"pid {os.getpid()} on {socket.gethostname()} (instance {secrets.token_hex(4)})"


class StationLease:
    """Takes, renews and releases the station's lease; thread-safe (the poll loop and a renewing thread)."""

    def __init__(self, client: CentralClient, station_id: str, *, period_s: float, holder: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.station_id = station_id
        self.period_s = period_s
        self.holder = holder or describe_this_agent()
        self._clock = clock
        self._lock = threading.Lock()
        self._renewed_at: float | None = None  # when the last successful take or renewal was sent (our clock)
        self._lost: str | None = None

    @property
    def lost(self) -> str | None:
        """Why this agent lost its lease, or None."""
        return self._lost

    def held(self) -> bool:
        """True while the lease is surely ours: taken, not lost, and not past its period by our own clock (which
        started before the central service's did, so it runs out first)."""
        with self._lock:
            return self._lost is None and self._renewed_at is not None \
                and self._clock() < self._renewed_at + self.period_s

    def ensure(self) -> None:
        """Take the lease, or renew it if a third of its period has passed since the last renewal.

        Raises :class:`LeaseRefused` if another agent holds it and this one never had it, :class:`LeaseLost` if
        this one had it and another has it now, and ``ClientError`` if the central service cannot be asked
        while the lease has run out (a renewal that fails while it still runs is only logged)."""
        with self._lock:
            if self._lost is not None:
                raise LeaseLost(self._lost)
            sent = self._clock()
            if self._renewed_at is not None and sent - self._renewed_at < self.period_s * RENEW_FRACTION:
                return
            try:
                lease = self.client.take_lease(self.station_id, self.holder, self.period_s)
            except ClientError as e:
                if e.status == 409 and self._renewed_at is None:
                    raise LeaseRefused(str(e)) from None
                if e.status == 409:
                    self._lost = (f"station {self.station_id}: this agent ({self.holder}) lost its lease and stops "
                                  f"taking work: {e}")
                    raise LeaseLost(self._lost) from None
                if self._renewed_at is None or sent >= self._renewed_at + self.period_s:
                    raise
                log.warning("could not renew the lease of station %s (still ours for %.0f s): %s", self.station_id,
                            self._renewed_at + self.period_s - sent, e)
                return
            if self._renewed_at is None:
                log.info("station %s: this agent (%s) holds the station's lease (until %s, renewed every %g s)",
                         self.station_id, self.holder, lease["expires"], self.period_s * RENEW_FRACTION)
            else:
                log.debug("station %s: lease renewed until %s", self.station_id, lease["expires"])
            self._renewed_at = sent

    def renew(self) -> None:
        """:meth:`ensure`, but only once the lease was taken (the renewing thread never takes it itself)."""
        if self._renewed_at is not None or self._lost is not None:
            self.ensure()

    def release(self) -> None:
        """Give the lease back (clean shutdown), so that another agent may start at once; never raises."""
        with self._lock:
            if self._renewed_at is None or self._lost is not None:
                return
            self._renewed_at = None
            try:
                self.client.release_lease(self.station_id, self.holder)
            except ClientError as e:
                log.warning("could not release the lease of station %s (it expires within %g s): %s",
                            self.station_id, self.period_s, e)
                return
            log.info("station %s: this agent (%s) released the station's lease", self.station_id, self.holder)

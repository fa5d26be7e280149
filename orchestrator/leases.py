"""Leases in the graph: one holder at a time of a right that several processes may claim, across hosts.

:class:`LeaseRecords` is the compare-and-set core (holder + expiry on a lease node, taken, renewed, released,
taken over after expiry); :class:`StationLeases` (here) and the central service's task leases
(``task_lease.py``: one replica runs the station watchdog) use it.

Station leases: one running agent per station, across hosts.

Two agents of one station (a second one started by mistake) would drive the same executions against each
other, e.g. one removing the container the other runs. So an agent holds its station's lease
(``pht:StationLease`` in the central graph, the system of record) while it works: it takes it at start,
renews it at a fraction of the period while it runs, and releases it when it stops. The lease expires if its
holder dies without releasing it, so a crashed agent never locks its station out. Every write is a
compare-and-set ``ChangeSet`` guarded by the holder and expiry it read, like a lifecycle step; only the
station's own token may take, renew or release its lease.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, XSD, ChangeSet, ConflictError, GraphStore, ValidationFailed

from .errors import Forbidden, LifecycleError, NotFound
from .naming import Iris
from .principal import Principal, Role
from .reads import check_station_scope

__all__ = ["Lease", "LeaseHeld", "LeaseRecords", "StationLeases", "MIN_PERIOD_S", "MAX_PERIOD_S", "MAX_HOLDER_CHARS",
           "Tenure"]

G = CENTRAL_GRAPH
MIN_PERIOD_S = 1.0
MAX_PERIOD_S = 3600.0
MAX_HOLDER_CHARS = 200


class LeaseHeld(LifecycleError):
    """Another agent holds the station's lease (HTTP 409); ``str(e)`` names it and until when."""

    status = 409


@dataclass(frozen=True)
class Lease:
    """A station's lease as the graph records it."""

    station: str
    holder: str
    expires: datetime

    def held_at(self, now: datetime) -> bool:
        return now < self.expires


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _literal(t: datetime) -> Literal:
    return Literal(t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                   datatype=XSD.dateTime)


def _text(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Tenure:
    """Who holds (or last held) a lease node, and until when."""

    holder: str
    expires: datetime

    def held_at(self, now: datetime) -> bool:
        return now < self.expires


class LeaseRecords:
    """Reads and writes lease nodes (``pht:leaseHolder``, ``pht:leaseExpires``) in the central graph; each write
    one validated change set guarded by the holder and expiry it replaces, so of two processes racing for a lease
    exactly one wins (the store serialises writers across processes, see ``graph_store/_write_lock.py``)."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def read(self, lease: NamedNode) -> Tenure | None:
        """The lease's holder and expiry, or None if it was never taken."""
        holders = self.store.quads(lease, PHT.leaseHolder, None, G)
        expiries = self.store.quads(lease, PHT.leaseExpires, None, G)
        if not holders or not expiries:
            return None
        holder, expiry = holders[0].object, expiries[0].object
        assert isinstance(holder, Literal) and isinstance(expiry, Literal)  # the shapes say so
        return Tenure(holder.value, datetime.fromisoformat(expiry.value.replace("Z", "+00:00")))

    def take(self, lease: NamedNode, holder: str, *, now: datetime, until: datetime,
             created: Sequence[Quad]) -> Tenure:
        """Give the lease to ``holder`` until ``until`` unless another holder's has not expired at ``now``; a first
        take also writes ``created`` (the node's type and what it is the lease of). Returns the lease as it now
        stands: another holder's if they have it (nothing written)."""
        current = self.read(lease)
        if current is not None and current.holder != holder and current.held_at(now):
            return current
        new = Tenure(holder, until)
        return new if self.write(lease, current, new, created) else self._now_held(lease, new)

    def release(self, lease: NamedNode, holder: str, *, now: datetime) -> Tenure | None:
        """End ``holder``'s lease at ``now``; returns another holder's lease if they have it (nothing written)."""
        current = self.read(lease)
        if current is None or not current.held_at(now):
            return None  # never taken, or already ended
        if current.holder != holder:
            return current
        new = Tenure(holder, now)
        return None if self.write(lease, current, new, ()) else self._now_held(lease, new)

    def write(self, lease: NamedNode, current: Tenure | None, new: Tenure, created: Sequence[Quad]) -> bool:
        """Replace ``current`` by ``new`` (compare-and-set); False if another writer changed the lease first (a
        first take creates the node: two racing first takes cannot both win, since the shapes allow one holder)."""
        insert = [Quad(lease, PHT.leaseHolder, Literal(new.holder), G),
                  Quad(lease, PHT.leaseExpires, _literal(new.expires), G)]
        if current is None:
            insert += created
            old: list[Quad] = []
        else:
            old = [q for p in (PHT.leaseHolder, PHT.leaseExpires) for q in self.store.quads(lease, p, None, G)]
        try:
            self.store.apply(ChangeSet(delete=old, insert=insert, guard=old))
        except ConflictError:
            return False
        except ValidationFailed:
            if current is not None:
                raise
            return False
        return True

    def _now_held(self, lease: NamedNode, wanted: Tenure) -> Tenure:
        """After a lost race: the lease as the winner left it (ConflictError if it is, oddly, ours or gone)."""
        now_held = self.read(lease)
        if now_held is None or now_held.holder == wanted.holder:
            raise ConflictError("the lease changed meanwhile; try again")
        return now_held


class StationLeases:
    """Takes, renews and releases station leases; each write one guarded, validated change set."""

    def __init__(self, store: GraphStore, iris: Iris, *, clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.iris = iris
        self.clock = clock
        self.records = LeaseRecords(store)
        self._lock = threading.Lock()  # spares this process's callers needless conflicts; the guards do the rest

    def take(self, principal: Principal, station_id: str, *, holder: str, period_s: float) -> Lease:
        """Take the lease for ``holder`` for ``period_s`` seconds from now, or renew it if ``holder`` has it;
        :class:`LeaseHeld` if another holder's lease has not expired yet."""
        station = self._own_station(principal, station_id, "take")
        if not MIN_PERIOD_S <= period_s <= MAX_PERIOD_S:
            raise LifecycleError(f"a lease lasts {MIN_PERIOD_S:g} to {MAX_PERIOD_S:g} s, not {period_s:g} s")
        if not 0 < len(holder) <= MAX_HOLDER_CHARS or not holder.isprintable():
            raise LifecycleError(f"a lease holder is 1 to {MAX_HOLDER_CHARS} printable characters")
        lease = self._lease_iri(station)
        with self._lock:
            now = self.clock()
            try:
                tenure = self.records.take(lease, holder, now=now, until=now + timedelta(seconds=period_s),
                                           created=[Quad(lease, RDF_TYPE, PHT.StationLease, G),
                                                    Quad(lease, PHT.leaseOf, station, G)])
            except ConflictError:
                raise LeaseHeld(f"the lease of station {station_id} changed meanwhile; try again") from None
            if tenure.holder != holder:
                raise self._held(Lease(station_id, tenure.holder, tenure.expires))
            return Lease(station_id, holder, tenure.expires)

    def release(self, principal: Principal, station_id: str, *, holder: str) -> None:
        """End ``holder``'s lease now (its expiry becomes the release time), so that another agent may start
        at once; nothing to do if it already ended. :class:`LeaseHeld` if someone else holds the lease."""
        station = self._own_station(principal, station_id, "release")
        with self._lock:
            try:
                other = self.records.release(self._lease_iri(station), holder, now=self.clock())
            except ConflictError:
                raise LeaseHeld(f"the lease of station {station_id} changed meanwhile; try again") from None
            if other is not None:
                raise self._held(Lease(station_id, other.holder, other.expires))

    def current(self, principal: Principal, station_id: str) -> Lease | None:
        """The station's lease (held or not), or None if no agent ever took it; the station's own tokens and
        operators may read it."""
        station = self.iris.station(station_id)
        check_station_scope(principal, station_id, "read the lease of")
        if not self.store.contains(Quad(station, RDF_TYPE, PHT.Station, G)):
            raise NotFound(f"no station {station_id!r}")
        tenure = self.records.read(self._lease_iri(station))
        return None if tenure is None else Lease(station_id, tenure.holder, tenure.expires)

    # -- helpers ----------------------------------------------------------------------------------------

    def _own_station(self, principal: Principal, station_id: str, what: str) -> NamedNode:
        if not principal.has(Role.STATION) or principal.station != station_id:
            raise Forbidden(f"only station {station_id!r}'s own token may {what} its lease")
        station = self.iris.station(station_id)
        if not self.store.contains(Quad(station, RDF_TYPE, PHT.Station, G)):
            raise NotFound(f"no station {station_id!r}")
        return station

    @staticmethod
    def _lease_iri(station: NamedNode) -> NamedNode:
        return NamedNode(station.value + "/lease")

    def _held(self, lease: Lease) -> LeaseHeld:
        return LeaseHeld(f"station {lease.station} already has a running agent: {lease.holder} holds its lease "
                         f"until {_text(lease.expires)} (stop that agent first; if it died, its lease expires "
                         "then)")

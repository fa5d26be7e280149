"""Station leases: one running agent per station, across hosts.

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, XSD, ChangeSet, ConflictError, GraphStore, ValidationFailed

from .errors import Forbidden, LifecycleError, NotFound
from .naming import Iris
from .principal import Principal, Role
from .reads import check_station_scope

__all__ = ["Lease", "LeaseHeld", "StationLeases", "MIN_PERIOD_S", "MAX_PERIOD_S", "MAX_HOLDER_CHARS"]

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


class StationLeases:
    """Takes, renews and releases station leases; each write one guarded, validated change set."""

    def __init__(self, store: GraphStore, iris: Iris, *, clock: Callable[[], datetime] = _now) -> None:
        self.store = store
        self.iris = iris
        self.clock = clock
        self._lock = threading.Lock()  # spares this process's callers needless conflicts; the guards do the rest

    def take(self, principal: Principal, station_id: str, *, holder: str, period_s: float) -> Lease:
        """Take the lease for ``holder`` for ``period_s`` seconds from now, or renew it if ``holder`` has it;
        :class:`LeaseHeld` if another holder's lease has not expired yet."""
        station = self._own_station(principal, station_id, "take")
        if not MIN_PERIOD_S <= period_s <= MAX_PERIOD_S:
            raise LifecycleError(f"a lease lasts {MIN_PERIOD_S:g} to {MAX_PERIOD_S:g} s, not {period_s:g} s")
        if not 0 < len(holder) <= MAX_HOLDER_CHARS or not holder.isprintable():
            raise LifecycleError(f"a lease holder is 1 to {MAX_HOLDER_CHARS} printable characters")
        with self._lock:
            now = self.clock()
            current = self._read(station, station_id)
            if current is not None and current.holder != holder and current.held_at(now):
                raise self._held(current)
            lease = Lease(station_id, holder, now + timedelta(seconds=period_s))
            self._write(station, current, lease)
            return lease

    def release(self, principal: Principal, station_id: str, *, holder: str) -> None:
        """End ``holder``'s lease now (its expiry becomes the release time), so that another agent may start
        at once; nothing to do if it already ended. :class:`LeaseHeld` if someone else holds the lease."""
        station = self._own_station(principal, station_id, "release")
        with self._lock:
            now = self.clock()
            current = self._read(station, station_id)
            if current is None or not current.held_at(now):
                return  # never taken, or already ended
            if current.holder != holder:
                raise self._held(current)
            self._write(station, current, Lease(station_id, holder, now))

    def current(self, principal: Principal, station_id: str) -> Lease | None:
        """The station's lease (held or not), or None if no agent ever took it; the station's own tokens and
        operators may read it."""
        station = self.iris.station(station_id)
        check_station_scope(principal, station_id, "read the lease of")
        if not self.store.contains(Quad(station, RDF_TYPE, PHT.Station, G)):
            raise NotFound(f"no station {station_id!r}")
        return self._read(station, station_id)

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

    def _read(self, station: NamedNode, station_id: str) -> Lease | None:
        lease = self._lease_iri(station)
        holders = self.store.quads(lease, PHT.leaseHolder, None, G)
        expiries = self.store.quads(lease, PHT.leaseExpires, None, G)
        if not holders or not expiries:
            return None
        holder, expiry = holders[0].object, expiries[0].object
        assert isinstance(holder, Literal) and isinstance(expiry, Literal)  # the shape says so
        return Lease(station_id, holder.value, datetime.fromisoformat(expiry.value.replace("Z", "+00:00")))

    def _held(self, lease: Lease) -> LeaseHeld:
        return LeaseHeld(f"station {lease.station} already has a running agent: {lease.holder} holds its lease "
                         f"until {_text(lease.expires)} (stop that agent first; if it died, its lease expires "
                         "then)")

    def _write(self, station: NamedNode, current: Lease | None, new: Lease) -> None:
        """Replace ``current`` by ``new``, guarded by ``current``'s holder and expiry (a first take creates the
        lease; two racing first takes cannot both win, since the shape allows one holder)."""
        lease = self._lease_iri(station)
        insert = [Quad(lease, PHT.leaseHolder, Literal(new.holder), G),
                  Quad(lease, PHT.leaseExpires, _literal(new.expires), G)]
        if current is None:
            insert += [Quad(lease, RDF_TYPE, PHT.StationLease, G), Quad(lease, PHT.leaseOf, station, G)]
            old: list[Quad] = []
        else:
            old = [q for p in (PHT.leaseHolder, PHT.leaseExpires) for q in self.store.quads(lease, p, None, G)]
        try:
            self.store.apply(ChangeSet(delete=old, insert=insert, guard=old))
        except (ConflictError, ValidationFailed) as e:
            if isinstance(e, ValidationFailed) and current is not None:
                raise
            # another writer (another service process on the same store) took or renewed it meanwhile
            now_held = self._read(station, new.station)
            if now_held is not None and now_held.holder != new.holder:
                raise self._held(now_held) from None
            raise LeaseHeld(f"the lease of station {new.station} changed meanwhile; try again") from None

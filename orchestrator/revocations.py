"""Token revocations: recorded in the central graph, checked on every request within seconds.

A bearer token cannot be taken back once handed out, so the verifier asks this module about every token it
accepts (after checking its signature: only signed tokens are asked about). An operator records a
``pht:TokenRevocation`` (validated like every write): either one token, by its ``jti``, or every token naming a
station (``station`` and ``station-admin`` tokens) issued before a cut-off -- what to do when a station is
compromised (then issue its agent a new token). The verifier asks about the token it holds, never the whole
set (which grows forever): the named query ``token_revocations`` answers, from the token's ``jti`` and station
identifier, whether that ``jti`` is revoked and the station's latest cut-off, at the cost of one token however
many revocations are recorded. The answers are kept per (``jti``, station) in an LRU of ``size`` entries (a flood
of distinct tokens cannot grow memory). On a store only this process writes (the embedded store) they are all
dropped after a commit that may change them, so a revocation takes effect at once and no request waits for a
read the data did not need; on a shared remote store (other replicas write) each is reused for at most
``cache_s`` seconds (``Settings.revocation_cache_s``, at most 5), so a revocation takes effect within that time
without a store read per request. This process's own revocations take effect at once on either.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import chain
from typing import Any

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    CENTRAL_GRAPH,
    DCTERMS,
    PHT,
    RDF_TYPE,
    XSD,
    ChangeSet,
    EmbeddedStore,
    GraphStore,
    GraphStoreError,
)

from .auth import VerificationUnavailable
from .errors import LifecycleError, NotFound
from .naming import Iris
from .principal import Principal

__all__ = ["CACHE_SIZE", "Revocation", "RevocationSet", "Revocations", "InvalidRevocation"]

G = CENTRAL_GRAPH
_READ_PREDICATES = frozenset({PHT.revokesToken, PHT.revokesStation, PHT.revokesIssuedBefore, DCTERMS.identifier})
"""What ``token_revocations.rq`` reads besides the type: a change without these (or the type) leaves its answer."""
CACHE_SIZE = 4096
"""Answers (one per token id and station) the verifier keeps: the tokens in use at once, with room to spare."""


def may_change_revocations(change: ChangeSet) -> bool:
    """Whether ``change`` may change what ``token_revocations`` answers (a revocation, or a station's identifier)."""
    return any(q.graph_name == G and (q.predicate in _READ_PREDICATES or q.object == PHT.TokenRevocation)
               for q in chain(change.insert, change.delete))


class InvalidRevocation(LifecycleError):
    """A revocation that names nothing, or both a token and a station (HTTP 400)."""

    status = 400


@dataclass(frozen=True)
class Revocation:
    """What one recorded revocation refuses: one ``token_id``, or ``station``'s tokens issued before
    ``issued_before``."""

    iri: str
    revoked_at: datetime
    token_id: str | None = None
    station: str | None = None
    issued_before: datetime | None = None


@dataclass(frozen=True)
class RevocationSet:
    """Revocations as the verifier needs them (those that concern one token): revoked token ids, and per
    station its latest cut-off (Unix seconds)."""

    token_ids: frozenset[str] = frozenset()
    station_cutoffs: Mapping[str, float] = field(default_factory=dict)

    def reason(self, claims: Mapping[str, Any]) -> str | None:
        """Why a token with ``claims`` is revoked (one sentence), or None. A station token without ``iat``
        cannot be shown to be newer than its station's cut-off, so it counts as revoked."""
        jti = claims.get("jti")
        if isinstance(jti, str) and jti in self.token_ids:
            return "token has been revoked"
        station = claims.get("station")
        if isinstance(station, str) and station in self.station_cutoffs:
            issued = claims.get("iat")
            if not isinstance(issued, (int, float)) or issued < self.station_cutoffs[station]:
                return f"the tokens of station {station} issued before a cut-off have been revoked; ask for a new one"
        return None


def _utc(t: datetime) -> datetime:
    return t.astimezone(timezone.utc)


def _literal(t: datetime) -> Literal:
    return Literal(_utc(t).isoformat(timespec="milliseconds").replace("+00:00", "Z"), datatype=XSD.dateTime)


class Revocations:
    """Reads (per token, cached) and records token revocations in ``store``."""

    def __init__(self, store: GraphStore, iris: Iris, *, cache_s: float, size: int = CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.iris, self.cache_s, self.size, self._clock = store, iris, cache_s, size, clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple[str | None, str | None], tuple[float, RevocationSet]] = OrderedDict()
        self._generation = 0  # counts forget(): an answer read across one is not kept
        # every write of a store only this process writes passes its on_commit listeners (or on_bypass)
        self._sees_every_write = isinstance(store, EmbeddedStore)
        if self._sees_every_write:
            me = weakref.ref(self)  # weakly: the store outlives the apps built over it (tests)

            def committed(change: ChangeSet) -> None:
                if (revocations := me()) is not None and may_change_revocations(change):
                    revocations.forget()

            def bypassed() -> None:
                if (revocations := me()) is not None:
                    revocations.forget()

            store.on_commit(committed)
            store.on_bypass(bypassed)

    def forget(self) -> None:
        """Read the revocations again at the next check of every token."""
        with self._lock:
            self._answers.clear()
            self._generation += 1

    def concerning(self, claims: Mapping[str, Any]) -> RevocationSet:
        """The revocations that concern a token with ``claims`` (its ``jti``, its station's cut-off), read again
        when the last read of them is older than ``cache_s`` on a remote store or a write may have changed them.

        :raises VerificationUnavailable: the store cannot be read (tokens are then neither accepted nor refused).
        """
        jti, station = claims.get("jti"), claims.get("station")
        key = (jti if isinstance(jti, str) else None, station if isinstance(station, str) else None)
        if key == (None, None):
            return RevocationSet()  # nothing a revocation could name
        with self._lock:
            now, generation = self._clock(), self._generation
            cached = self._answers.get(key)
            if cached is not None and (self._sees_every_write or now - cached[0] < self.cache_s):
                self._answers.move_to_end(key)
                return cached[1]
        answer = self._read(*key)  # outside the lock: one slow read does not hold up the other tokens' checks
        with self._lock:
            if generation == self._generation:  # else a revocation may have been recorded during the read
                self._answers[key] = (now, answer)
                self._answers.move_to_end(key)
                while len(self._answers) > self.size:
                    self._answers.popitem(last=False)
        return answer

    def check(self, claims: Mapping[str, Any]) -> str | None:
        """The verifier's question (``auth.RevocationCheck``): why ``claims``' token is revoked, or None."""
        return self.concerning(claims).reason(claims)

    def _read(self, jti: str | None, station: str | None) -> RevocationSet:
        """What the store says about ``jti`` and ``station`` (``""`` for an absent one: nothing names it)."""
        try:
            rows = list(self.store.run_query("token_revocations", tokenId=Literal(jti or ""),
                                             stationId=Literal(station or "")))
        except (GraphStoreError, OSError):
            raise VerificationUnavailable("token revocations cannot be read now (the store does not answer); "
                                          "try again shortly") from None
        revoked = jti is not None and any(row["revocation"] is not None for row in rows)
        cutoffs = [datetime.fromisoformat(row["before"].value).timestamp() for row in rows
                   if isinstance(row["before"], Literal)]
        return RevocationSet(frozenset({jti} if revoked and jti is not None else ()),
                             {station: max(cutoffs)} if station is not None and cutoffs else {})

    def revoke(self, principal: Principal, *, token_id: str | None = None, station: str | None = None,
               issued_before: datetime | None = None, reason: str | None = None) -> Revocation:
        """Record a revocation by ``principal`` (an operator: the route checks the role): ``token_id``, or
        ``station``'s tokens issued before ``issued_before`` (default now). Validated against the shapes.

        :raises InvalidRevocation: neither or both of ``token_id`` and ``station``, or a cut-off without a station.
        :raises NotFound: ``station`` is not registered.
        """
        if (token_id is None) == (station is None):
            raise InvalidRevocation("a revocation names either one token (token_id) or one station, not both "
                                    "or neither")
        if issued_before is not None and station is None:
            raise InvalidRevocation("issued_before applies to a station's tokens; give a station with it")
        now = datetime.now(timezone.utc)
        iri = NamedNode(f"{self.iris.base}token-revocations/{uuid.uuid4()}")
        quads = [Quad(iri, RDF_TYPE, PHT.TokenRevocation, G),
                 Quad(iri, PHT.revokedAt, _literal(now), G),
                 Quad(iri, PHT.revokedBy, Literal(principal.subject), G)]
        before = None
        if token_id is not None:
            quads.append(Quad(iri, PHT.revokesToken, Literal(token_id), G))
        else:
            assert station is not None
            station_iri = self.iris.station(station)
            if not self.store.contains(Quad(station_iri, RDF_TYPE, PHT.Station, G)):
                raise NotFound(f"station {station} is not registered")
            before = _utc(issued_before) if issued_before is not None else now
            quads += [Quad(iri, PHT.revokesStation, station_iri, G),
                      Quad(iri, PHT.revokesIssuedBefore, _literal(before), G)]
        if reason:
            quads.append(Quad(iri, PHT.revocationReason, Literal(reason), G))
        self.store.apply(ChangeSet(insert=quads))
        self.forget()  # this process's revocations take effect at once (on a shared store too)
        return Revocation(iri.value, now, token_id=token_id, station=station, issued_before=before)



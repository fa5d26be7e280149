"""One writer at a time across processes sharing a SPARQL server that does not serialise guarded updates.

Oxigraph server 0.5 evaluates an update's WHERE on a snapshot and applies its writes without detecting that a
concurrent update changed what it read, so two processes' compare-and-set writes (the same lifecycle step sent to
two replicas of the central service) may both apply (measured: 24 of 100 races of raw guarded updates). A
:class:`RemoteStore` therefore holds this lock around each write (guard check, validation, commit), the way a
store object's thread lock serialises its own threads.

The protocol uses only single-request writes and reads, which the server does make atomic and visible to every
later request (a "splitter" over the shared graph):

1. insert a fresh claim ``{LOCK_GRAPH}#claim-<uuid>`` stamped with the server's ``NOW()`` (its clock, so hosts'
   clocks never matter);
2. read the live claims (younger than ``ttl_s`` by the server's clock): if only ours is there, the lock is held.
   Two claimants cannot both see only their own claim: whichever read came later started after the other's
   claim was written. Otherwise the claimant with the smallest claim keeps it and reads again; the others
   withdraw theirs and retry after a random pause, so one of them always progresses;
3. release by deleting the claim, ``linger_s`` (50 ms) after the write: a write of the same process within
   that time uses the claim still held and sends no request for the lock (writes back to back, as 8 clients
   stepping trains send them, keep one claim for at most ``keep_s``, 0.5 s, then withdraw it so that another
   process's claim can win; it waits at most that much longer). A holder killed mid-write (``kill -9``) leaves a claim that stops counting
   after ``ttl_s``. While it writes, a holder restamps its claim every ``ttl_s / 4`` from a thread; one whose claim
   was last seen stamped more than ``ttl_s / 2`` ago (it stalled) gives up before committing
   (:meth:`ServerWriteLock.check`), and should it stall after that check, its guarded update also requires its
   claim (:meth:`ServerWriteLock.fence`), which the next writer removed before writing. A claim that waited long
   for its turn is restamped (in one request, so it never disappears) before its holder writes.

Claims live in their own graph, which SPARQL Update's ``ALL`` / ``NAMED`` leave alone and no caller may name
(:meth:`RemoteStore.server_graph`). Cost: three extra requests per write (claim, read, release) when writes
are apart, none for a write while the claim is kept; two more per ``ttl_s / 4`` of a held claim.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from pyoxigraph import Literal, NamedNode, QuerySolutions

from ._errors import StoreUnavailable, TransactionAborted
from ._sparql_text import bind
from ._vocab import GRAPH_NS, PHT

__all__ = ["LOCK_GRAPH", "ServerWriteLock"]

_T = TypeVar("_T")

_ABORT_RETRIES = 20
"""How often a lock request the server aborted (a deadlock among concurrent claimants: Virtuoso) is sent again."""


def _retried(send: Callable[[str], _T]) -> Callable[[str], _T]:
    """``send`` sent again after a short random pause when the server aborted it for a concurrent transaction:
    Virtuoso aborts one of several claimants' requests on the lock's graph with SR172 "Transaction deadlocked"."""
    def again(text: str) -> _T:
        for attempt in range(_ABORT_RETRIES):
            try:
                return send(text)
            except TransactionAborted:
                if attempt == _ABORT_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
        raise AssertionError("unreachable")
    return again

LOCK_GRAPH = NamedNode(GRAPH_NS + "write-lock")
"""The graph of the writers' claims (see the module's docstring)."""

_CLAIM = f"INSERT {{ GRAPH {LOCK_GRAPH} {{ $claim <{PHT.claimedAt.value}> ?now }} }} WHERE {{ BIND(NOW() AS ?now) }}"
_CLAIMS = (f"SELECT ?claim ?at (NOW() AS ?now) WHERE {{ GRAPH {LOCK_GRAPH} "
           f"{{ ?claim <{PHT.claimedAt.value}> ?at }} }}")
_WITHDRAW = f"DELETE WHERE {{ GRAPH {LOCK_GRAPH} {{ $claim ?p ?o }} }}"
_RENEW = (f"DELETE {{ GRAPH {LOCK_GRAPH} {{ $claim <{PHT.claimedAt.value}> ?at }} }} "
          f"INSERT {{ GRAPH {LOCK_GRAPH} {{ $claim <{PHT.claimedAt.value}> ?now }} }} "
          f"WHERE {{ GRAPH {LOCK_GRAPH} {{ $claim <{PHT.claimedAt.value}> ?at }} BIND(NOW() AS ?now) }}")


def _time(term: object) -> datetime | None:
    if not isinstance(term, Literal):
        return None
    try:
        return datetime.fromisoformat(term.value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class _Hold:
    """One claim of this process: when it was made and last known stamped (monotonic), when its last write
    ended (None while one is under way), and whether it has ended (its keeper thread then stops)."""

    claim: NamedNode
    since: float
    made: float
    left: float | None = None
    ended: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class ServerWriteLock:
    """The lock, spoken through a store's raw query and update primitives (text already bound).

    :param ttl_s: how long a claim counts; a write must reach its commit within ``ttl_s / 2``.
    :param wait_s: how long to try before giving up (StoreUnavailable; nothing written).
    :param linger_s: how long a claim is kept after a write for this process's next write, which then needs no
        request for the lock (0: withdrawn at once). Another process waits at most this much longer.
    :param keep_s: a claim kept for writes back to back is withdrawn after the first write that ends this long
        after it was made, so that other processes get their turn (the claims' protocol decides the next).
    """

    def __init__(self, select: Callable[[str], QuerySolutions], update: Callable[[str], None], *,
                 ttl_s: float = 10.0, wait_s: float | None = None, linger_s: float = 0.05,
                 keep_s: float = 0.5) -> None:
        self._select, self._update = _retried(select), _retried(update)  # claims and reads are idempotent
        self.ttl_s = ttl_s
        self.wait_s = 3 * ttl_s if wait_s is None else wait_s
        self.linger_s, self.keep_s = linger_s, min(keep_s, ttl_s / 4)
        self._held = threading.local()
        self._turn = threading.Lock()  # one write at a time under this process's claim
        self._state = threading.Lock()  # guards _kept and each _Hold's left / ended
        self._kept: _Hold | None = None  # the claim kept between writes (see linger_s)
        self._keepers: list[threading.Thread] = []  # the claims' keeper threads, some perhaps ended

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the body (one write); re-entrant within a thread. A long write (planning a large
        update) keeps its claim alive: a thread restamps it every ``ttl_s / 4`` until the claim ends."""
        if getattr(self._held, "hold", None) is not None:
            yield
            return
        with self._turn:
            held = self._take()
            self._held.hold = held
            try:
                yield
            finally:
                self._held.hold = None
                self._leave(held)

    def close(self) -> None:
        """Withdraw a claim kept for the next write (a store closing: the others need not wait for it), and wait
        for the claims' keepers to stop: none may send a request once the store has closed its connections (one
        withdrawing its claim meanwhile left an open connection behind)."""
        with self._turn:
            with self._state:
                kept, self._kept = self._kept, None
                keepers = list(self._keepers)
            if kept is not None:
                self._end(kept)
            for keeper in keepers:  # each has ended, or ends at its next wake-up (no write is under way)
                keeper.join(timeout=self.ttl_s / 4)

    def _take(self) -> _Hold:
        """The kept claim if it is fresh enough for one more write, else a new claim."""
        with self._state:
            kept, self._kept = self._kept, None
            if kept is not None:
                kept.left = None
        now = time.monotonic()
        if kept is not None and now - kept.since < self.ttl_s / 4 and now - kept.made < self.keep_s:
            return kept
        if kept is not None:
            self._end(kept)
        claim, since = self._acquire()
        held = _Hold(claim, since, made=time.monotonic())
        keeper = threading.Thread(target=self._keep_alive, args=(held,), name="store-write-lock", daemon=True)
        keeper.start()
        with self._state:
            self._keepers = [k for k in self._keepers if k.is_alive()] + [keeper]
        return held

    def _leave(self, held: _Hold) -> None:
        """After a write: keep the claim for ``linger_s`` (its keeper withdraws it then), or withdraw it now."""
        now = time.monotonic()
        if self.linger_s > 0 and now - held.made < self.keep_s:
            with self._state:
                held.left, self._kept = now, held
            held.wake.set()
            return
        self._end(held)

    def _end(self, held: _Hold) -> None:
        """Stop the claim's keeper and withdraw the claim (not kept: no other thread uses it)."""
        with self._state:
            held.ended = True
        held.wake.set()
        self._withdraw(held.claim)

    def _withdraw(self, claim: NamedNode) -> None:
        try:
            self._update(bind(_WITHDRAW, {"claim": claim}))
        except StoreUnavailable:
            pass  # the claim stops counting after ttl_s

    def check(self) -> None:
        """Raise StoreUnavailable if this thread's claim may have expired by the time a commit arrives (it was
        last stamped more than ``ttl_s / 2`` ago: this process stalled, or the server did not answer)."""
        held = getattr(self._held, "hold", None)
        if held is not None and time.monotonic() - held.since > self.ttl_s / 2:
            raise StoreUnavailable(f"this write held the store's write lock for more than {self.ttl_s / 2:g} s "
                                   "without renewing it; nothing was written, try again")

    def _keep_alive(self, held: _Hold) -> None:
        """The claim's keeper: restamps it every ``ttl_s / 4`` (``since`` moves only once the claim is seen
        stamped again: a claim another writer removed as expired stays removed, and check() then refuses), and
        withdraws it once it was kept ``linger_s`` with no write."""
        renew_at = time.monotonic() + self.ttl_s / 4
        while True:
            held.wake.clear()  # before reading the state: a later wake-up is never lost
            with self._state:
                if held.ended:
                    return
                now, left = time.monotonic(), held.left
                idle_since = left if left is not None and self._kept is held else None
                expired = idle_since is not None and now - idle_since >= self.linger_s
                if expired:
                    self._kept, held.ended = None, True
            if expired:
                self._withdraw(held.claim)
                return
            wait = renew_at - now if idle_since is None else min(renew_at, idle_since + self.linger_s) - now
            if wait > 0:
                held.wake.wait(wait)
                continue
            renew_at = time.monotonic() + self.ttl_s / 4
            sent = time.monotonic()
            try:
                self._update(bind(_RENEW, {"claim": held.claim}))
                live, _ = self._claims()
            except StoreUnavailable:
                continue
            if held.claim.value in live:
                held.since = sent

    def fence(self) -> str:
        """A graph pattern that matches only while this thread's claim is in the store ("" if none is held): a
        guarded commit requires it, so a writer whose claim another writer removed as expired writes nothing."""
        held = getattr(self._held, "hold", None)
        if held is None:
            return ""
        return bind(f"GRAPH {LOCK_GRAPH} {{ $claim <{PHT.claimedAt.value}> ?fence }}", {"claim": held.claim})

    def _acquire(self) -> tuple[NamedNode, float]:
        deadline = time.monotonic() + self.wait_s
        pause = 0.002
        while True:
            claim = NamedNode(f"{LOCK_GRAPH.value}#claim-{uuid.uuid4()}")
            since = time.monotonic()
            self._update(bind(_CLAIM, {"claim": claim}))
            while True:
                live, expired = self._claims()
                if expired:
                    self._update(" ; ".join(bind(_WITHDRAW, {"claim": c}) for c in expired))
                if live == [claim.value]:
                    if time.monotonic() - since > self.ttl_s / 4:  # it waited: restamp it, in one request
                        since = time.monotonic()
                        self._update(bind(_RENEW, {"claim": claim}))
                    return claim, since
                if claim.value not in live or min(live) != claim.value or time.monotonic() > deadline:
                    break  # ours expired, or a smaller claim goes first: withdraw and retry
                time.sleep(0.001)  # ours is the smallest: wait for the others to withdraw
            self._update(bind(_WITHDRAW, {"claim": claim}))
            if time.monotonic() > deadline:
                raise StoreUnavailable(f"the store's write lock stayed taken by other writers for {self.wait_s:g} s; "
                                       "nothing was written, try again")
            time.sleep(random.uniform(0, pause))
            pause = min(pause * 2, 0.05)

    def _claims(self) -> tuple[list[str], list[NamedNode]]:
        """The live claims' IRIs (sorted) and the expired claims, by the server's clock."""
        live, expired = [], []
        for row in self._select(_CLAIMS):
            claim, at, now = row["claim"], _time(row["at"]), _time(row["now"])
            if not isinstance(claim, NamedNode):
                continue
            # a claim stamped in the future (never by NOW(); by a hand that wrote the graph) must not hold forever
            if at is not None and now is not None and abs((now - at).total_seconds()) < self.ttl_s:
                live.append(claim.value)
            else:
                expired.append(claim)
        return sorted(live), expired

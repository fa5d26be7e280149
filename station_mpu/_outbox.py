"""The on-disk outbox: filtered events wait here until the central service acknowledges them.

One SQLite database (WAL, ``synchronous=FULL``: a committed event survives a crash and a power cut) in the
MPU's data directory. Each row is one filtered event (or description unit) as N-Triples, keyed by its stable
IRI, so delivery is at-least-once and the central write idempotent:

* an event is queued once -- posting it again is a no-op, also after it was delivered (the row stays as a
  ledger, without its triples, for ``delivered_retention_s``);
* a row leaves the queue only when the central service acknowledged the batch holding it (2xx), so stopping
  either side loses nothing; a batch whose acknowledgement was lost is sent again and written once;
* an event the central service refuses for good (unknown train, shapes) is set aside with the reason.

The raw events (before filtering) of the last ``keep_received`` posts stay at the station too, for
``pht mpu policy preview``. The batch sequence numbers the pusher signs are reserved here
(:meth:`Outbox.reserve_sequences`), so that they keep growing across restarts. A full disk, or the optional
``max_bytes`` quota, raises :class:`OutboxFull`: nothing of the call is stored, and the caller keeps running.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outbox", "OutboxItem", "Pending", "OutboxError", "OutboxFull", "Received"]

_SQLITE_FULL = 13

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    key     TEXT    NOT NULL UNIQUE,
    body    BLOB,
    triples INTEGER NOT NULL,
    status  INTEGER NOT NULL DEFAULT 0,
    note    TEXT,
    created REAL    NOT NULL,
    done    REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(seq) WHERE status = 0;
CREATE INDEX IF NOT EXISTS outbox_done ON outbox(done) WHERE status = 1;
CREATE TABLE IF NOT EXISTS received (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    key   TEXT NOT NULL UNIQUE,
    kind  TEXT NOT NULL,
    data  TEXT NOT NULL,
    at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_PENDING, _DELIVERED, _REFUSED = 0, 1, 2


class OutboxError(Exception):
    """The outbox cannot store or read events (the message says why); nothing of the call was stored."""


class OutboxFull(OutboxError):
    """The disk (or the outbox's quota) is full; nothing of the call was stored."""


@dataclass(frozen=True)
class OutboxItem:
    """One filtered event to queue: its key (stable IRI), its N-Triples and how many triples that is."""

    key: str
    body: bytes
    triples: int


@dataclass(frozen=True)
class Pending:
    """A queued event, in queue order (``seq``)."""

    seq: int
    key: str
    body: bytes
    triples: int


@dataclass(frozen=True)
class Received:
    """A raw event (or description) as posted, kept for previews: ``kind`` is ``event`` or ``description``."""

    key: str
    kind: str
    data: str


class Outbox:
    """The outbox database in ``directory`` (created if missing). Thread-safe; one object per directory.

    Two connections: one for the posts (``add``), one for the pusher and the readers, so that reading the next
    batch never waits for a post being written (WAL readers do not block the writer); SQLite serialises the
    two writers itself. The number of waiting events is kept in memory (the depth gauge reads it often).
    """

    def __init__(self, directory: Path | str, *, max_bytes: int | None = None, keep_received: int = 10_000,
                 delivered_retention_s: float = 30 * 86400.0) -> None:
        self.path = Path(directory) / "outbox.sqlite3"
        self.keep_received = keep_received
        self.retention_s = delivered_retention_s
        self._max_bytes = max_bytes
        self._in_lock, self._out_lock, self._count_lock = threading.Lock(), threading.Lock(), threading.Lock()
        self._since_prune = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._in = self._connect()
            self._in.executescript(_SCHEMA)
            self._out = self._connect()
            self._pending = int(self._out.execute("SELECT COUNT(*) FROM outbox WHERE status = 0").fetchone()[0])
        except (sqlite3.Error, OSError) as e:
            raise _error(e, f"cannot open the outbox {self.path}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if self._max_bytes is not None:
            page = db.execute("PRAGMA page_size").fetchone()[0]
            db.execute(f"PRAGMA max_page_count={max(8, int(self._max_bytes) // int(page))}")
        return db

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._pending += delta

    # -- writing ----------------------------------------------------------------------------------------

    def add(self, items: Sequence[OutboxItem], received: Sequence[Received] = ()) -> int:
        """Queue ``items`` and keep ``received``, in one transaction; returns how many items were new.

        Raises OutboxFull (disk or quota full) or OutboxError; then nothing was stored.
        """
        now = time.time()
        with self._in_lock:
            db = self._in
            try:
                db.execute("BEGIN IMMEDIATE")
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO outbox(key, body, triples, created) VALUES (?, ?, ?, ?)",
                               [(i.key, i.body, i.triples, now) for i in items])
                added = db.total_changes - before
                if received and self.keep_received > 0:
                    db.executemany("INSERT OR IGNORE INTO received(key, kind, data, at) VALUES (?, ?, ?, ?)",
                                   [(r.key, r.kind, r.data, now) for r in received])
                    self._since_prune += len(received)
                    if self._since_prune >= 1000:
                        self._since_prune = 0
                        db.execute("DELETE FROM received WHERE seq <= (SELECT MAX(seq) FROM received) - ?",
                                   (self.keep_received,))
                db.execute("COMMIT")
            except (sqlite3.Error, OSError) as e:
                _rollback(db)
                raise _error(e, "cannot store the events in the outbox") from None
        self._count(added)
        return added

    def delivered(self, seqs: Sequence[int]) -> None:
        """Mark events acknowledged by the central service: they leave the queue and are never sent again."""
        now = time.time()
        done = self._update("UPDATE outbox SET status = 1, body = NULL, done = ? WHERE seq = ? AND status = 0",
                            [(now, s) for s in seqs])
        self._count(-done)
        with self._out_lock:
            try:
                self._out.execute("DELETE FROM outbox WHERE status = 1 AND done < ?", (now - self.retention_s,))
            except sqlite3.Error:
                pass  # pruning the ledger can wait for the next acknowledgement

    def refused(self, notes: dict[int, str]) -> None:
        """Set aside events the central service refuses for good, with its reason (kept for ``/status``)."""
        now = time.time()
        done = self._update("UPDATE outbox SET status = 2, note = ?, done = ? WHERE seq = ? AND status = 0",
                            [(note, now, seq) for seq, note in notes.items()])
        self._count(-done)

    def _update(self, sql: str, rows: list[tuple[object, ...]]) -> int:
        with self._out_lock:
            db = self._out
            try:
                db.execute("BEGIN IMMEDIATE")
                before = db.total_changes
                db.executemany(sql, rows)
                changed = db.total_changes - before
                db.execute("COMMIT")
                return changed
            except (sqlite3.Error, OSError) as e:
                _rollback(db)
                raise _error(e, "cannot update the outbox") from None

    def reserve_sequences(self, count: int, above: int = 0) -> int:
        """Reserve the next ``count`` batch sequence numbers, all greater than ``above`` and than every number
        reserved before (also by an earlier process); returns the first. Committed (synchronous) before it
        returns, so a number is never handed out twice, whatever crashes."""
        with self._out_lock:
            db = self._out
            try:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT value FROM counters WHERE name = 'batch_sequence'").fetchone()
                first = max(int(row[0]) if row else 0, above) + 1
                db.execute("INSERT INTO counters(name, value) VALUES ('batch_sequence', ?) ON CONFLICT(name) DO "
                           "UPDATE SET value = excluded.value", (first + count - 1,))
                db.execute("COMMIT")
                return first
            except (sqlite3.Error, OSError) as e:
                _rollback(db)
                raise _error(e, "cannot reserve batch sequence numbers in the outbox") from None

    # -- reading ----------------------------------------------------------------------------------------

    def next_batch(self, *, max_items: int, max_bytes: int) -> list[Pending]:
        """The oldest queued events, at most ``max_items`` and ``max_bytes`` of N-Triples (but at least one)."""
        with self._out_lock:
            rows = self._out.execute("SELECT seq, key, body, triples FROM outbox WHERE status = 0 ORDER BY seq "
                                     "LIMIT ?", (max_items,)).fetchall()
        batch: list[Pending] = []
        size = 0
        for seq, key, body, triples in rows:
            if batch and size + len(body) > max_bytes:
                break
            batch.append(Pending(seq, key, bytes(body), triples))
            size += len(body)
        return batch

    def depth(self) -> int:
        """How many events wait for delivery."""
        return self._pending

    def oldest_age_s(self) -> float:
        """Seconds the oldest waiting event has waited (0 if none)."""
        if self._pending == 0:
            return 0.0
        with self._out_lock:
            row = self._out.execute("SELECT MIN(created) FROM outbox WHERE status = 0").fetchone()
        return 0.0 if row[0] is None else max(0.0, time.time() - float(row[0]))

    def counts(self) -> dict[str, int]:
        """Events by status: ``pending``, ``delivered`` (still in the ledger), ``refused``."""
        with self._out_lock:
            rows = dict(self._out.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status").fetchall())
        return {"pending": rows.get(_PENDING, 0), "delivered": rows.get(_DELIVERED, 0),
                "refused": rows.get(_REFUSED, 0)}

    def refusals(self, limit: int = 20) -> list[tuple[str, str]]:
        """The latest events the central service refused: (key, reason)."""
        with self._out_lock:
            return [(k, n or "") for k, n in self._out.execute(
                "SELECT key, note FROM outbox WHERE status = 2 ORDER BY done DESC, seq DESC LIMIT ?", (limit,))]

    def received(self, limit: int = 1000) -> list[Received]:
        """The latest raw events and descriptions posted (oldest first)."""
        with self._out_lock:
            rows = self._out.execute("SELECT key, kind, data FROM received ORDER BY seq DESC LIMIT ?",
                                     (limit,)).fetchall()
        return [Received(k, kind, data) for k, kind, data in reversed(rows)]

    def close(self) -> None:
        with self._in_lock, self._out_lock:
            self._in.close()
            self._out.close()


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction was open


def _error(e: BaseException, what: str) -> OutboxError:
    """OutboxFull for a full disk or quota, else OutboxError, each with one sentence."""
    full = getattr(e, "sqlite_errorcode", None) == _SQLITE_FULL or getattr(e, "errno", None) == errno.ENOSPC \
        or "full" in str(e).lower()
    if full:
        return OutboxFull(f"{what}: the disk or the outbox quota is full ({e})")
    return OutboxError(f"{what}: {e}")

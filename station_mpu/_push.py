"""Pushing batches of filtered events to the central service: signed by the station, authenticated as it.

``POST {central}/api/stations/{station}/metadata`` with the batch as N-Triples and the signature headers of
:mod:`graph_store._signed_batch`, among them a sequence number greater than any the station signed before
(:class:`BatchSequence`) and the creation time. The answer decides what happens to the batch (see
:class:`PushResult`): 2xx delivered; 400 / 422 refused for good (with the events the central side names); 413
too large (split); anything else -- the central service down, 5xx, an expired token, an unregistered key -- is
retried later, because it is not the events' fault and nothing may be lost.

A retry is a new batch: newly signed, with a new sequence number, so the central service never sees the same
signed batch twice from the MPU. If the answer to a batch it accepted was lost (the crash between send and
acknowledgement), the batch sent again writes nothing new (event IRIs are fixed in the outbox). Two 409s are
the MPU's own business: the very batch already accepted (``already_accepted``: it counts as delivered) and
a sequence that is not greater than the last accepted one (the outbox was replaced or lost: the numbering
continues above the central service's ``last_sequence`` and the batch is signed again, once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from graph_store import MAX_SEQUENCE, batch_headers, key_id

from ._outbox import Pending

__all__ = ["BatchSequence", "Pusher", "PushResult", "TokenFile", "load_private_key"]


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The station's Ed25519 private key from a PEM file (unencrypted PKCS#8); ValueError with a sentence."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the station's private key {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, but stations sign with Ed25519 keys")
    return key


class TokenFile:
    """The station's bearer token, read from a file and re-read when the file changes (token rotation)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self._token = self.path.read_text().strip()
                self._stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass  # keep the last token; the central service will say if it is no good
        return self._token


class BatchSequence:
    """The station's batch sequence numbers: each greater than the one before, also across restarts.

    ``reserve(count, above)`` (``Outbox.reserve_sequences``) persists a block of numbers before any is used,
    so one disk write serves ``block`` batches and a restart continues above every number handed out before
    (the rest of the block is skipped: gaps are allowed, repeats never). Without ``reserve`` the numbers live in
    memory (a process that signs a few batches, e.g. a benchmark; the central service's answer re-aligns it).
    """

    def __init__(self, reserve: Callable[[int, int], int] | None = None, *, block: int = 1000) -> None:
        self._reserve = reserve
        self._block = block
        self._next = 1
        self._limit = 0 if reserve is not None else MAX_SEQUENCE
        self._lock = threading.Lock()

    def next(self) -> int:
        """The next number (raises OutboxError if it cannot be reserved on disk)."""
        with self._lock:
            if self._next > self._limit:
                assert self._reserve is not None
                self._next = self._reserve(self._block, self._next - 1)
                self._limit = self._next + self._block - 1
            number = self._next
            self._next += 1
            return number

    def skip_past(self, number: int) -> None:
        """Continue above ``number`` (the central service accepted a batch of that sequence already)."""
        with self._lock:
            if number >= self._next:
                self._next = number + 1
                if self._reserve is not None:
                    self._limit = 0  # reserve anew, above it


@dataclass(frozen=True)
class PushResult:
    """``delivered`` (acknowledged), ``refused`` (for good: ``refused`` names events and reasons when the
    central side did) or ``retry`` (later; ``smaller`` if the batch was too large)."""

    outcome: Literal["delivered", "refused", "retry"]
    status: int | None
    detail: str
    refused: dict[str, str] = field(default_factory=dict)
    smaller: bool = False


class Pusher:
    """Signs and sends batches for one station."""

    def __init__(self, *, central_url: str, station_id: str, private_key: Ed25519PrivateKey,
                 token: Callable[[], str], client: httpx.Client | None = None, timeout_s: float = 30.0,
                 sequence: BatchSequence | None = None) -> None:
        self.url = central_url.rstrip("/") + f"/api/stations/{station_id}/metadata"
        self.station_id = station_id
        self._key = private_key
        self.key_id = key_id(private_key.public_key())
        self._token = token
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)
        self.sequence = sequence if sequence is not None else BatchSequence()

    def push(self, batch: Sequence[Pending]) -> PushResult:
        """Send one batch; never raises for what the network or the central service does (OutboxError if no
        sequence number can be reserved: nothing was sent)."""
        body = b"".join(p.body for p in batch)
        for _ in range(2):
            sequence = self.sequence.next()
            batch_id = f"s{sequence}.b{batch[0].seq}-{batch[-1].seq}-{len(batch)}"
            headers = {"Authorization": f"Bearer {self._token()}",
                       **batch_headers(self._key, self.station_id, batch_id, body, sequence=sequence)}
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as e:
                return PushResult("retry", None, f"the central service cannot be reached: {type(e).__name__}: {e}")
            if response.status_code != 409:
                break
            replay = _replay(response)
            if replay is None:
                break
            already_accepted, last = replay
            if already_accepted:
                return PushResult("delivered", 409, _detail(response))
            if last < sequence:
                break
            self.sequence.skip_past(last)  # our numbering is behind the central service's: continue above it
        status = response.status_code
        detail = _detail(response)
        if 200 <= status < 300:
            return PushResult("delivered", status, detail)
        if status in (400, 422):
            refused = {}
            try:
                for item in response.json().get("refused", []) or []:
                    refused[str(item["subject"])] = str(item["reason"])
            except (ValueError, KeyError, TypeError, AttributeError):
                refused = {}
            return PushResult("refused", status, detail, refused)
        return PushResult("retry", status, detail, smaller=status == 413)

    def close(self) -> None:
        self._client.close()


def _replay(response: httpx.Response) -> tuple[bool, int] | None:
    """(already accepted, last accepted sequence) from a 409 about the batch's sequence, else None."""
    try:
        body = response.json()
        already, last = body["already_accepted"], body["last_sequence"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(already, bool) or isinstance(last, bool) or not isinstance(last, int):
        return None
    return already, last


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:500]
    except (ValueError, AttributeError):
        return response.text[:500]

"""The one way tests read a released output: every output is sealed to its next readers (age), so a test fetches it
by digest (verified), opens it with the proper reader's key directory and unpacks it, as that reader's station or
client would (``station.encryption.fetch_opened``)."""

from __future__ import annotations

from pathlib import Path

from station.encryption import fetch_opened
from station.objects import ObjectStore
from trust import load_keys


def open_output(objects: ObjectStore, sha256: str, target: Path, reader_keys: Path) -> Path:
    """Released output ``sha256`` from ``objects``, opened with the keys in ``reader_keys`` and unpacked into the new
    folder ``target``; raises ``trust.SealError`` if it is not sealed to that reader."""
    return fetch_opened(objects, sha256, target, load_keys(reader_keys).encryption, max_bytes=100 * 1024**2,
                        max_files=10_000)

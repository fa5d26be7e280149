"""End-to-end encryption at the station: seal an output to its readers, open an input sealed to this station.

Every output leaves its station encrypted (age, X25519 recipients: ``trust.sealing``) to exactly its next readers:
the next station, the round's aggregator, the next round's stations, or the requester. The central service names
them in the work item (``WorkItem.readers``, its rule in ``orchestrator/readers.py``); :func:`readers_for` is the
one place the station turns them into keys, and refuses, in one sentence naming the reader, a reader without a
usable key. The admin reviews the plain output; what is held for release, staged, released and promoted is the
ciphertext, so the central service and the object store only ever hold ciphertext and its digest.

An input is fetched by its (ciphertext) digest, verified, opened with the station's own X25519 key
(``PHT_STATION_KEYS_DIR``) and unpacked safely; a ciphertext not for this station, truncated or altered fails the
execution with one sentence, and nothing decrypted is left on disk (``trust.open_sealed_file`` writes the
plaintext only once it all authenticated, and it is deleted after unpacking either way).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from client import WorkItem
from trust import (
    KeyFormatError,
    ciphertext_file_digest,
    decode_encryption_key,
    load_keys,
    open_sealed_file,
    seal_file,
)

from . import archive
from .objects import ObjectStore

__all__ = ["EncryptionRefused", "fetch_opened", "readers_for", "seal_output", "station_identity"]

UNSIGNED = ("the train names no result recipient, so its result cannot be encrypted to anyone: submit it signed")


class EncryptionRefused(ValueError):
    """An output cannot be sealed to its readers, or an input cannot be opened; one sentence naming why."""


def readers_for(work: WorkItem) -> list[X25519PublicKey]:
    """The X25519 keys ``work``'s output is sealed to: one per reader the central service names.

    :raises EncryptionRefused: no readers are named; the requester's reader has no key (an unsigned train); a
        reader has no key, or one that does not decode, was rotated out or revoked (the sentence names the reader).
    """
    if not work.readers:
        raise EncryptionRefused(f"the central service names no reader for the output of execution {work.execution}, "
                                "so it cannot be encrypted to anyone")
    keys = []
    for reader in work.readers:
        who = f"the requester {reader.party}" if reader.party == work.requester else f"the station {reader.party}"
        if reader.key is None and reader.party == work.requester:
            raise EncryptionRefused(UNSIGNED)
        if reader.key is None or reader.multibase is None:
            raise EncryptionRefused(f"{who} has no encryption key at the central service, so the output cannot be "
                                    "encrypted to it")
        if reader.revoked is not None:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} was revoked at {reader.revoked}, so "
                                    "the output is not encrypted to it")
        if reader.expires is not None:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} was rotated out at {reader.expires}, "
                                    "so the output is not encrypted to it")
        try:
            keys.append(decode_encryption_key(reader.multibase))
        except KeyFormatError as e:
            raise EncryptionRefused(f"the encryption key {reader.key} of {who} cannot be used: {e}") from None
    return keys


def seal_output(plain: Path, sealed: Path, readers: list[X25519PublicKey]) -> tuple[str, int]:
    """Seal the packed output ``plain`` to ``readers`` into ``sealed`` (never partial); returns the ciphertext's
    SHA-256 (hex) and size: what the release records and the object store addresses."""
    seal_file(plain, sealed, readers)
    return ciphertext_file_digest(sealed).removeprefix("sha256:"), sealed.stat().st_size


def station_identity(keys_dir: Path | None, station: str) -> X25519PrivateKey:
    """This station's X25519 private key, from its key directory (``PHT_STATION_KEYS_DIR``).

    :raises EncryptionRefused: no key directory is set, or its keys cannot be read (one sentence naming why).
    """
    if keys_dir is None:
        raise EncryptionRefused(f"station {station} has no key directory (PHT_STATION_KEYS_DIR), so it cannot open "
                                "the inputs encrypted to it")
    try:
        return load_keys(keys_dir).encryption
    except (OSError, KeyFormatError) as e:
        raise EncryptionRefused(f"station {station} cannot read its keys: {e}") from None


def fetch_opened(store: ObjectStore, sha256: str, target: Path, identity: X25519PrivateKey, *, max_bytes: int,
                 max_files: int) -> Path:
    """Download the sealed input ``sha256`` (verified against its digest), open it with ``identity`` and unpack it
    safely into ``target`` (which must not hold anything yet); the ciphertext and the plain archive are deleted
    whatever happens, so a failure leaves nothing decrypted. Returns ``target``.

    :raises ObjectStoreError: the object is missing or its bytes differ from the digest.
    :raises SealError: the ciphertext is not for this station, truncated or altered.
    :raises archive.ArchiveError: the opened archive is unsafe or damaged.
    """
    sealed, packed = target.with_name(target.name + ".age"), target.with_name(target.name + ".tar.gz")
    try:
        store.get_file(sha256, sealed)
        open_sealed_file(sealed, packed, identity)
        archive.extract(packed, target, max_bytes=max_bytes, max_files=max_files)
    finally:
        sealed.unlink(missing_ok=True)
        packed.unlink(missing_ok=True)
    return target


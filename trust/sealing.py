"""Results encrypted to exactly their readers: the age format (https://age-encryption.org/v1) with X25519
recipients, through ``pyrage`` (Python bindings of rage, the Rust implementation of age).

A station seals its output to the next station, the aggregator or the requester; the central service and the object
store only ever hold the ciphertext and its digest (:func:`ciphertext_digest`). age encrypts one payload key to
each recipient, so one ciphertext serves all readers, and its payload is a stream of authenticated 64 KiB chunks, so
the file forms (:func:`seal_file`, :func:`open_sealed_file`) run in constant memory. The recipient stanzas carry
ephemeral shares, not the readers' keys: a ciphertext does not name its readers, though it shows how many there are.

Keys are ``cryptography``'s X25519 objects, the same the rest of :mod:`trust` uses; age writes them as Bech32 strings
(``age1...`` recipients, ``AGE-SECRET-KEY-1...`` identities). pyrage parses and prints those strings but gives no way
to a key's 32 bytes (its ``x25519.Identity`` and ``Recipient`` have only ``from_str``, ``str``, ``to_public`` and
``generate``), so the conversion uses the ``bech32`` library (Pieter Wuille's BIP-173 reference code: the original
Bech32 checksum age uses, without BIP-173's 90-character limit).

>>> from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
>>> reader = X25519PrivateKey.generate()
>>> open_sealed(seal(b"mean age 54.2", [reader.public_key()]), reader)
b'mean age 54.2'
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bech32
import pyrage
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

__all__ = [
    "SealError",
    "ciphertext_digest",
    "ciphertext_file_digest",
    "from_age_identity",
    "from_age_recipient",
    "open_sealed",
    "open_sealed_file",
    "seal",
    "seal_file",
    "to_age_identity",
    "to_age_recipient",
]

_RECIPIENT_PREFIX = "age"  # Bech32 human-readable parts, before the separator "1"
_IDENTITY_PREFIX = "age-secret-key-"
_MAGIC = b"age-encryption.org/"  # first line of a binary age file: age-encryption.org/v1
_ARMOR = b"-----BEGIN AGE ENCRYPTED FILE-----"  # first line of an ASCII-armoured one (pyrage opens both)

_EMPTY = "the ciphertext is empty"
_NOT_AGE = "the data is not an age ciphertext (it does not start with the age header line)"
_OTHER_KEY = "the ciphertext is not encrypted to this key (no recipient stanza in its header opens with it)"
_TRUNCATED = "the ciphertext is truncated"
_HEADER_ALTERED = "the ciphertext's header was altered (its syntax or its MAC is invalid)"
_PAYLOAD_ALTERED = "the ciphertext's payload was altered or cut short (a chunk failed authentication)"

# rage's error texts (pyrage 1.4) -> our sentence. A flipped byte in this key's own stanza reads as "No matching
# keys found": age's stanzas are anonymous, so a damaged one cannot be told from one for another key.
_REASONS = {
    "No matching keys found": _OTHER_KEY,
    "failed to fill whole buffer": _TRUNCATED,
    "Incomplete header": _TRUNCATED,
    "age file is truncated": _TRUNCATED,
    "Header is invalid": _HEADER_ALTERED,
    "Header MAC is invalid": _HEADER_ALTERED,
    "Unknown age format": _HEADER_ALTERED,
    "decryption error": _PAYLOAD_ALTERED,
}


class SealError(ValueError):
    """A ciphertext that cannot be opened: empty, not age, for other recipients, truncated or altered; or no
    recipients to seal to. The message is one sentence naming the problem."""


# --------------------------------------------------------------------------- keys as age strings


def to_age_recipient(public_key: X25519PublicKey) -> str:
    """The age recipient string (``age1...``, lower case) of an X25519 public key."""
    return bech32.bech32_encode(_RECIPIENT_PREFIX, _to_5_bit(public_key.public_bytes_raw()))


def to_age_identity(private_key: X25519PrivateKey) -> str:
    """The age identity string (``AGE-SECRET-KEY-1...``, upper case as age writes it) of an X25519 private key."""
    return bech32.bech32_encode(_IDENTITY_PREFIX, _to_5_bit(private_key.private_bytes_raw())).upper()


def from_age_recipient(text: str) -> X25519PublicKey:
    """The X25519 public key of an age recipient string (``age1...``).

    :raises ValueError: the string is not an age X25519 recipient (one sentence naming why).
    """
    return X25519PublicKey.from_public_bytes(_decode(text, _RECIPIENT_PREFIX, "an age recipient"))


def from_age_identity(text: str) -> X25519PrivateKey:
    """The X25519 private key of an age identity string (``AGE-SECRET-KEY-1...``).

    :raises ValueError: the string is not an age X25519 identity (the message never repeats the string: a secret).
    """
    return X25519PrivateKey.from_private_bytes(_decode(text, _IDENTITY_PREFIX, "an age identity"))


def _to_5_bit(key: bytes) -> list[int]:
    groups = bech32.convertbits(key, 8, 5, True)
    assert groups is not None  # 8-to-5 with padding accepts any bytes
    return groups


def _decode(text: str, prefix: str, what: str) -> bytes:
    """The 32 key bytes of a Bech32 string whose human-readable part is *prefix* (case-insensitive, as Bech32)."""
    hrp, data = bech32.bech32_decode(text.strip())
    if hrp is None or data is None:
        raise ValueError(f"the string is not {what}: it is not Bech32 (a wrong character, mixed case or checksum)")
    if hrp != prefix:
        raise ValueError(f"the string is not {what}: its prefix is {hrp + '1'!r}, not {prefix + '1'!r}")
    key = bech32.convertbits(data, 5, 8, False)
    if key is None or len(key) != 32:
        raise ValueError(f"the string is not {what}: it does not hold a 32-byte X25519 key")
    return bytes(key)


# --------------------------------------------------------------------------- sealing and opening


def seal(plaintext: bytes, recipients: Sequence[X25519PublicKey]) -> bytes:
    """*plaintext* encrypted once to every key of *recipients* (duplicates collapsed), in age's binary format.

    :raises SealError: *recipients* is empty.
    :raises TypeError: a recipient is not an X25519 public key (an Ed25519 signing key, say).
    """
    return bytes(pyrage.encrypt(plaintext, _age_recipients(recipients)))


def open_sealed(ciphertext: bytes, identity: X25519PrivateKey) -> bytes:
    """The plaintext of an age *ciphertext* sealed to *identity*'s public key; all of it or nothing.

    :raises SealError: the ciphertext is empty, not age, not for this key, truncated or altered.
    """
    if not ciphertext:
        raise SealError(_EMPTY)
    try:
        return bytes(pyrage.decrypt(ciphertext, [_age_identity(identity)]))
    except pyrage.DecryptError as error:
        raise _seal_error(error, bytes(ciphertext[: len(_ARMOR)])) from error


def seal_file(source: Path, target: Path, recipients: Sequence[X25519PublicKey]) -> None:
    """:func:`seal` for a file of any size, streamed (memory does not grow with the file). *target* appears, or is
    replaced, only once the whole ciphertext is written (a temporary file beside it, mode 0600, then renamed).

    :raises SealError: *recipients* is empty.
    :raises OSError: *source* cannot be read or *target*'s folder written.
    """
    age_recipients = _age_recipients(recipients)
    with _replaced_on_success(target) as temporary:
        pyrage.encrypt_file(str(source), str(temporary), age_recipients)


def open_sealed_file(source: Path, target: Path, identity: X25519PrivateKey) -> None:
    """:func:`open_sealed` for a file of any size, streamed. rage writes plaintext chunk by chunk as each one
    authenticates, so it goes to a temporary file beside *target* (mode 0600), deleted on any failure and renamed
    to *target* only once the last chunk authenticated: *target* is never partial.

    :raises SealError: the ciphertext is empty, not age, not for this key, truncated or altered.
    :raises OSError: *source* cannot be read or *target*'s folder written.
    """
    with source.open("rb") as stream:
        head = stream.read(len(_ARMOR))
    if not head:
        raise SealError(_EMPTY)
    with _replaced_on_success(target) as temporary:
        try:
            pyrage.decrypt_file(str(source), str(temporary), [_age_identity(identity)])
        except pyrage.DecryptError as error:
            raise _seal_error(error, head) from error
        except OSError as error:  # a payload chunk failing authentication comes as an OSError without errno
            if error.errno is not None or str(error) not in _REASONS:
                raise
            raise _seal_error(error, head) from error


def ciphertext_digest(ciphertext: bytes) -> str:
    """``sha256:<hex>`` of a ciphertext: what the central side may record of a result it cannot read."""
    return "sha256:" + hashlib.sha256(ciphertext).hexdigest()


def ciphertext_file_digest(path: Path) -> str:
    """:func:`ciphertext_digest` of a ciphertext file, read in chunks."""
    with path.open("rb") as stream:
        return "sha256:" + hashlib.file_digest(stream, "sha256").hexdigest()


def _age_recipients(recipients: Sequence[X25519PublicKey]) -> list[Any]:
    """pyrage recipients of *recipients*, each key once (in first-seen order)."""
    unique: dict[bytes, X25519PublicKey] = {}
    for key in recipients:
        if not isinstance(key, X25519PublicKey):
            raise TypeError(f"a recipient must be an X25519 public key, not {type(key).__name__}")
        unique.setdefault(key.public_bytes_raw(), key)
    if not unique:
        raise SealError("there are no recipients to seal to")
    return [pyrage.x25519.Recipient.from_str(to_age_recipient(key)) for key in unique.values()]


def _age_identity(identity: X25519PrivateKey) -> Any:
    if not isinstance(identity, X25519PrivateKey):
        raise TypeError(f"the identity must be an X25519 private key, not {type(identity).__name__}")
    return pyrage.x25519.Identity.from_str(to_age_identity(identity))


def _seal_error(error: Exception, head: bytes) -> SealError:
    """Our one-sentence error for a rage failure on a ciphertext that starts with *head*."""
    looks_like_age = any(head.startswith(magic) or magic.startswith(head) for magic in (_MAGIC, _ARMOR))
    if not looks_like_age:
        return SealError(_NOT_AGE)
    reason = str(error).split("\n", 1)[0].strip().rstrip(".")
    return SealError(_REASONS.get(reason) or f"the ciphertext cannot be opened ({reason})")


@contextmanager
def _replaced_on_success(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside *target*, renamed to *target* if the block succeeds and deleted if not."""
    descriptor, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise

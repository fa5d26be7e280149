"""The signed metadata batch: how a station's MPU signs what it pushes and how the central service checks it.

Shared by both sides (``station_mpu`` signs, ``orchestrator`` verifies), which must never import each other,
so the one definition of the format lives here.

A batch is an N-Triples document (the HTTP body, ``application/n-triples``) sent to
``POST /api/stations/{station}/metadata`` with five headers (:func:`batch_headers` makes them):

* ``X-PHT-Batch``: the batch's id (chosen by the station; letters, digits, ``.``, ``_``, ``-``), for tracing;
* ``X-PHT-Sequence``: the station's batch sequence number (a positive integer), greater for every batch the
  station signs; the central service accepts a batch only if its sequence is greater than the last one it
  accepted from that station, so a captured batch can be neither replayed nor sent after a newer one;
* ``X-PHT-Created``: when the station signed it (RFC 3339 in UTC, ``2026-12-03T10:00:00.123456Z``);
* ``X-PHT-Key-Id``: which of the station's registered keys signed it (:func:`key_id`);
* ``X-PHT-Signature``: base64 of the Ed25519 signature of :func:`signing_input` -- a fixed domain string
  (version 2), the station id, the batch id, the sequence, the creation time and the exact body bytes. The
  station id inside the signature means a batch signed by one station cannot be replayed as another's;
  altering one byte of the body, the sequence or the time breaks it.

The events of a station have IRIs under :func:`station_event_prefix`, so the central side can tell which
station's events a triple describes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._iris import ResourceIris

__all__ = [
    "BATCH_HEADER",
    "BATCH_MEDIA_TYPE",
    "CREATED_HEADER",
    "KEY_ID_HEADER",
    "MAX_SEQUENCE",
    "SEQUENCE_HEADER",
    "SIGNATURE_HEADER",
    "batch_headers",
    "created_now",
    "key_id",
    "parse_sequence",
    "sign_batch",
    "signing_input",
    "station_event_prefix",
    "verify_batch",
]

BATCH_MEDIA_TYPE = "application/n-triples"
BATCH_HEADER = "X-PHT-Batch"
KEY_ID_HEADER = "X-PHT-Key-Id"
SIGNATURE_HEADER = "X-PHT-Signature"
SEQUENCE_HEADER = "X-PHT-Sequence"
CREATED_HEADER = "X-PHT-Created"
_DOMAIN = b"PHT-KG station metadata batch v2\n"
_BATCH_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_CREATED = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z$")
MAX_SEQUENCE = 2**63 - 1
"""The largest sequence number (a signed 64-bit integer, what every SPARQL store keeps exactly)."""


def signing_input(station_id: str, batch_id: str, body: bytes, *, sequence: int, created: str) -> bytes:
    """The exact bytes a batch signature covers; ValueError for a malformed batch id, sequence or time.

    >>> signing_input("aachen", "b1", b"<a> <b> <c> .\\n", sequence=7, created="2026-12-03T10:00:00Z")
    b'PHT-KG station metadata batch v2\\naachen\\nb1\\n7\\n2026-12-03T10:00:00Z\\n<a> <b> <c> .\\n'
    """
    if not _BATCH_ID.match(batch_id):
        raise ValueError(f"batch id {batch_id!r} must be 1-128 letters, digits, '.', '_' or '-'")
    if isinstance(sequence, bool) or not isinstance(sequence, int) or not 1 <= sequence <= MAX_SEQUENCE:
        raise ValueError(f"the batch sequence must be an integer from 1 to {MAX_SEQUENCE}, not {sequence!r}")
    if not _CREATED.match(created):
        raise ValueError(f"the batch's creation time {created!r} must be RFC 3339 in UTC, e.g. "
                         "2026-12-03T10:00:00.123Z")
    return b"\n".join((_DOMAIN.rstrip(b"\n"), station_id.encode(), batch_id.encode(), str(sequence).encode(),
                       created.encode(), body))


def parse_sequence(text: str | None) -> int:
    """The ``X-PHT-Sequence`` header's number; ValueError with a sentence if it is missing or not one."""
    if not text or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ValueError(f"the batch needs the header {SEQUENCE_HEADER}: a positive integer")
    return int(text)


def created_now() -> str:
    """Now, as a batch's ``X-PHT-Created`` (RFC 3339, UTC, microseconds)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name of a public key: the first 16 hex digits of the SHA-256 of its DER encoding."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def sign_batch(private_key: Ed25519PrivateKey, station_id: str, batch_id: str, body: bytes, *, sequence: int,
               created: str) -> str:
    """The base64 Ed25519 signature of a batch (the ``X-PHT-Signature`` header)."""
    message = signing_input(station_id, batch_id, body, sequence=sequence, created=created)
    return base64.b64encode(private_key.sign(message)).decode()


def batch_headers(private_key: Ed25519PrivateKey, station_id: str, batch_id: str, body: bytes, *, sequence: int,
                  created: str | None = None) -> dict[str, str]:
    """Every header of a signed batch but the token's (``created`` defaults to now)."""
    created = created or created_now()
    return {"Content-Type": BATCH_MEDIA_TYPE, BATCH_HEADER: batch_id, SEQUENCE_HEADER: str(sequence),
            CREATED_HEADER: created, KEY_ID_HEADER: key_id(private_key.public_key()),
            SIGNATURE_HEADER: sign_batch(private_key, station_id, batch_id, body, sequence=sequence, created=created)}


def verify_batch(public_keys: Iterable[Ed25519PublicKey], station_id: str, batch_id: str, body: bytes,
                 signature: str, *, sequence: int, created: str, signed_by: str | None = None) -> str | None:
    """The key id of the key among ``public_keys`` that verifies the batch's signature, or None if none does.

    The caller passes the station's keys that may verify a batch of that time (the central service decodes its
    registered Multikeys and leaves out revoked and retired ones); with ``signed_by`` only the key of that id is
    tried. Raises ValueError for a signature that is not base64 of 64 bytes or a malformed batch id, sequence or
    creation time.
    """
    try:
        raw = base64.b64decode(signature.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signature is not base64") from None
    if len(raw) != 64:
        raise ValueError(f"an Ed25519 signature has 64 bytes, this one {len(raw)}")
    message = signing_input(station_id, batch_id, body, sequence=sequence, created=created)
    for key in public_keys:
        kid = key_id(key)
        if signed_by is not None and kid != signed_by:
            continue
        try:
            key.verify(raw, message)
        except InvalidSignature:
            continue
        return kid
    return None


def station_event_prefix(base_iri: str, station_id: str) -> str:
    """The IRI namespace of one station's events: ``{base}stations/{id}/events/``.

    >>> station_event_prefix("https://pht.example.org/id/", "aachen")
    'https://pht.example.org/id/stations/aachen/events/'
    """
    return ResourceIris(base_iri).station(station_id).value + "/events/"


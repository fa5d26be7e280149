"""The signed metadata batch: how a station's MPU signs what it pushes and how the central service checks it.

Shared by both sides (``station_mpu`` signs, ``orchestrator`` verifies), which must never import each other,
so the one definition of the format lives here.

A batch is an N-Triples document (the HTTP body, ``application/n-triples``) sent to
``POST /api/stations/{station}/metadata`` with three headers:

* ``X-PHT-Batch``: the batch's id (chosen by the station; letters, digits, ``.``, ``_``, ``-``), for tracing;
* ``X-PHT-Key-Id``: which of the station's registered keys signed it (:func:`key_id`);
* ``X-PHT-Signature``: base64 of the Ed25519 signature of :func:`signing_input` -- a fixed domain string,
  the station id, the batch id and the exact body bytes. The station id inside the signature means a batch
  signed by one station cannot be replayed as another's; altering one byte of the body breaks it.

The events of a station have IRIs under :func:`station_event_prefix`, so the central side can tell which
station's events a triple describes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ._iris import ResourceIris

__all__ = [
    "BATCH_HEADER",
    "BATCH_MEDIA_TYPE",
    "KEY_ID_HEADER",
    "SIGNATURE_HEADER",
    "key_id",
    "sign_batch",
    "signing_input",
    "station_event_prefix",
    "verify_batch",
]

BATCH_MEDIA_TYPE = "application/n-triples"
BATCH_HEADER = "X-PHT-Batch"
KEY_ID_HEADER = "X-PHT-Key-Id"
SIGNATURE_HEADER = "X-PHT-Signature"
_DOMAIN = b"PHT-KG station metadata batch v1\n"
_BATCH_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def signing_input(station_id: str, batch_id: str, body: bytes) -> bytes:
    """The exact bytes a batch signature covers.

    >>> signing_input("aachen", "b1", b"<a> <b> <c> .\\n")
    b'PHT-KG station metadata batch v1\\naachen\\nb1\\n<a> <b> <c> .\\n'
    """
    if not _BATCH_ID.match(batch_id):
        raise ValueError(f"batch id {batch_id!r} must be 1-128 letters, digits, '.', '_' or '-'")
    return _DOMAIN + station_id.encode() + b"\n" + batch_id.encode() + b"\n" + body


def key_id(public_key: Ed25519PublicKey | str) -> str:
    """A short, stable name of a public key: the first 16 hex digits of the SHA-256 of its DER encoding."""
    key = _load_public(public_key) if isinstance(public_key, str) else public_key
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def sign_batch(private_key: Ed25519PrivateKey, station_id: str, batch_id: str, body: bytes) -> str:
    """The base64 Ed25519 signature of a batch (the ``X-PHT-Signature`` header)."""
    return base64.b64encode(private_key.sign(signing_input(station_id, batch_id, body))).decode()


def verify_batch(public_keys: Iterable[str], station_id: str, batch_id: str, body: bytes, signature: str,
                 *, signed_by: str | None = None) -> str | None:
    """The key id of the registered key (PEM) that verifies the batch's signature, or None if none does.

    Keys that are not Ed25519 (a station may register others for encryption) are skipped; with ``signed_by``
    only the key of that id is tried. Raises ValueError for a signature that is not base64 of 64 bytes or a
    malformed batch id.
    """
    try:
        raw = base64.b64decode(signature.encode(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signature is not base64") from None
    if len(raw) != 64:
        raise ValueError(f"an Ed25519 signature has 64 bytes, this one {len(raw)}")
    message = signing_input(station_id, batch_id, body)
    for pem in public_keys:
        try:
            key = _load_public(pem)
        except ValueError:
            continue
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


def _load_public(pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as e:
        raise ValueError(f"not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 key but {type(key).__name__}")
    return key

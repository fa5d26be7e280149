"""Who holds which public key: the registry's W3C Multikeys read back from the central graph.

The rule that says when a key verifies is :class:`client.public_keys.PublicKeyRecord`'s (the stations and
``pht verify`` decide with it too): old signatures stay verifiable after rotation, new ones need the new key; a
revoked key verifies nothing from its revocation on. The rotation rule trusts the signer's ``created``: whoever
still holds a rotated-out key can back-date a signature to before the rotation. That is why a key whose private
half leaked is revoked, not rotated. See docs/security.md, "Key lifecycle".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Literal as Use

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from pyoxigraph import Literal, NamedNode

from client.key_claims import ASSERTION_METHOD, KEY_AGREEMENT
from client.public_keys import PublicKeyRecord, parse_time
from graph_store import XSD, GraphStore
from trust import KeyFormatError, KeyResolver, decode_multikey, decode_signing_key, encode_multikey

from .errors import InvalidValue

__all__ = ["USES", "KeyDirectory", "PublicKeyRecord", "literal_time", "multikey_of", "parse_time", "signing_keys"]

USES: dict[str, NamedNode] = {"signing": ASSERTION_METHOD, "encryption": KEY_AGREEMENT}
"""A key's use (as the named queries and the API name it) -> the property linking its party to it."""


def multikey_of(text: str) -> tuple[str, Use["signing", "encryption"]]:
    """A public key given as a Multikey or as PEM (SubjectPublicKeyInfo), as its Multikey and use: Ed25519 keys
    sign, X25519 keys are encrypted to.

    :raises InvalidValue: neither a Multikey nor a PEM public key, or a key of another kind (RSA, EC, ...).
    """
    text = text.strip()
    key: object
    try:
        key = serialization.load_pem_public_key(text.encode()) if text.startswith("-----BEGIN") else (
            decode_multikey(text))
    except (ValueError, TypeError):  # KeyFormatError is a ValueError
        raise InvalidValue(f"the public key {text[:60]!r} is neither a Multikey (z6Mk... or z6LS...) nor a PEM "
                           "public key") from None
    if not isinstance(key, (Ed25519PublicKey, X25519PublicKey)):
        raise InvalidValue(f"the public key is {type(key).__name__.lstrip('_')}, not Ed25519 (signing) or X25519 "
                           "(encryption)")
    return encode_multikey(key), "signing" if isinstance(key, Ed25519PublicKey) else "encryption"


class KeyDirectory:
    """The registry's public keys, for the verifiers: read from the central graph on every call (a revocation
    takes effect at once), through the named queries ``verification_method`` and ``party_keys``."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def record(self, iri: str) -> PublicKeyRecord | None:
        """The key ``iri`` as registered (None if unknown or not listed by its controller)."""
        try:
            node = NamedNode(iri)
        except ValueError:
            return None
        rows = list(self.store.run_query("verification_method", key=node))
        return PublicKeyRecord.from_row(rows[0], iri=iri) if rows else None

    def party_keys(self, party: str) -> list[PublicKeyRecord]:
        """Every key of ``party`` (its IRI), oldest first."""
        return [PublicKeyRecord.from_row(row, controller=party)
                for row in self.store.run_query("party_keys", party=NamedNode(party))]

    def signing_key(self, iri: str, *, created: datetime, now: datetime | None = None) -> Ed25519PublicKey | None:
        """The Ed25519 key ``iri`` names, if it verifies a signature made at ``created`` when checked at ``now``
        (default: the current time); None if it is unknown, not a signing key, rotated out before ``created``, or
        revoked by ``now``. The rule, in short: old signatures stay verifiable after rotation, new ones need the
        new key; a revoked key verifies nothing from its revocation on (see the module docstring)."""
        record = self.record(iri)
        if record is None or record.use != "signing":
            return None
        if not record.verifies(created=created, now=now or datetime.now(timezone.utc)):
            return None
        try:
            return decode_signing_key(record.multibase)
        except KeyFormatError:
            return None

    def resolver(self, *, created: datetime, now: datetime | None = None) -> KeyResolver:
        """:meth:`signing_key` as ``trust.verify_proof``'s key resolver, for a proof made at ``created``."""
        return lambda iri: self.signing_key(iri, created=created, now=now)


def signing_keys(records: Iterable[PublicKeyRecord], *, created: datetime, now: datetime) -> list[Ed25519PublicKey]:
    """The Ed25519 keys among ``records`` that verify a signature made at ``created``, checked at ``now``."""
    keys = []
    for record in records:
        if record.use == "signing" and record.verifies(created=created, now=now):
            try:
                keys.append(decode_signing_key(record.multibase))
            except KeyFormatError:
                continue
    return keys



def literal_time(moment: datetime) -> Literal:
    """``moment`` as the ``xsd:dateTime`` (UTC, microseconds) key times are written with."""
    return Literal(moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


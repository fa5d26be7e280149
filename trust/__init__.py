"""The cryptography every party shares: a party's keys (Ed25519 for signing, X25519 for encryption) and their
Multikey form, W3C Data Integrity proofs (``eddsa-rdfc-2022``) over RDF, and results encrypted to exactly their
readers (age). The bottom layer beside ``graph_store``: it imports nothing of ours, so the researcher's client,
the station and the central service use one implementation. See docs/architecture.md and docs/security.md."""

from __future__ import annotations

from .sealing import (
    SealError,
    ciphertext_digest,
    ciphertext_file_digest,
    from_age_identity,
    from_age_recipient,
    open_sealed,
    open_sealed_file,
    seal,
    seal_file,
    to_age_identity,
    to_age_recipient,
)

__all__: list[str] = [
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

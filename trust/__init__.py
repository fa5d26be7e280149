"""The cryptography every party shares: a party's keys (Ed25519 for signing, X25519 for encryption) and their
Multikey form, W3C Data Integrity proofs (``eddsa-rdfc-2022``) over RDF, and results encrypted to exactly their
readers (age). The bottom layer beside ``graph_store``: it imports nothing of ours, so the researcher's client,
the station and the central service use one implementation. See docs/architecture.md and docs/security.md."""

from __future__ import annotations

from .integrity import (
    CRYPTOSUITE,
    DATA_INTEGRITY_PROOF,
    KeyResolver,
    Proof,
    ProofError,
    canonical_nquads,
    create_proof,
    verify_proof,
)
from .jsonld import (
    DocumentNotLocal,
    local_document_loader,
    sign_jsonld,
    verify_jsonld,
)
from .keys import (
    ENCRYPTION_KEY_FILE,
    SIGNING_KEY_FILE,
    KeyFormatError,
    PartyKeys,
    decode_encryption_key,
    decode_multikey,
    decode_signing_key,
    encode_multikey,
    generate_keys,
    load_keys,
    save_keys,
)
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
    "CRYPTOSUITE",
    "DATA_INTEGRITY_PROOF",
    "DocumentNotLocal",
    "ENCRYPTION_KEY_FILE",
    "KeyFormatError",
    "KeyResolver",
    "PartyKeys",
    "Proof",
    "ProofError",
    "SIGNING_KEY_FILE",
    "SealError",
    "canonical_nquads",
    "ciphertext_digest",
    "ciphertext_file_digest",
    "create_proof",
    "decode_encryption_key",
    "decode_multikey",
    "decode_signing_key",
    "encode_multikey",
    "from_age_identity",
    "from_age_recipient",
    "generate_keys",
    "load_keys",
    "local_document_loader",
    "open_sealed",
    "open_sealed_file",
    "save_keys",
    "seal",
    "seal_file",
    "sign_jsonld",
    "to_age_identity",
    "to_age_recipient",
    "verify_jsonld",
    "verify_proof",
]

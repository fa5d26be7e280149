"""A party's claim to its public keys, as the registry's RDF and as a request body, with a proof of possession.

A researcher (``POST /api/keys``), a station admin (``POST /api/stations/{id}/enroll``) and whoever rotates keys
(``POST /api/keys/rotate``) send the same body, :class:`KeyClaim`: the Ed25519 signing key and the X25519
encryption key as Multikeys, and a W3C Data Integrity proof (``eddsa-rdfc-2022``, purpose ``authentication``)
made with the new signing key over :func:`claim_triples` -- exactly the RDF the registry will hold about the keys.
Why a Data Integrity proof rather than a signature over a byte string of our own: it is the one signature format
the platform verifies everywhere (trains, execution records), over canonical RDF, checkable by other
implementations; and it binds the keys to the party's IRI, so a claim made for one party proves nothing for
another. (The X25519 key cannot sign; the proof binds it to the holder of the signing key.)

Both sides build the document here, so what the client signs is what the service checks.

>>> from trust import generate_keys
>>> claim = prove_possession(generate_keys(), "https://pht.example.org/id/agents/alice")
>>> claim.signing_key.startswith("z6Mk") and claim.encryption_key.startswith("z6LS")
True
>>> key_iri("https://pht.example.org/id/agents/alice", "z6Mk...")
'https://pht.example.org/id/agents/alice/keys/1226e0cba928c5c10b147c8c'
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints
from pyoxigraph import Literal, NamedNode, Triple

from graph_store import RDF_TYPE
from trust import (
    ENCRYPTION_KEY_FILE,
    SIGNING_KEY_FILE,
    PartyKeys,
    Proof,
    create_proof,
    encode_multikey,
    generate_keys,
    load_keys,
    save_keys,
)

from .wire import Strict

__all__ = [
    "ASSERTION_METHOD",
    "CONTROLLER",
    "EXPIRES",
    "KEY_AGREEMENT",
    "MULTIBASE",
    "MULTIKEY",
    "POSSESSION_PURPOSE",
    "PUBLIC_KEY_MULTIBASE",
    "REVOKED",
    "SEC_NS",
    "KeyClaim",
    "PossessionProof",
    "claim_proof",
    "claim_triples",
    "key_iri",
    "keys_in",
    "prove_possession",
]

SEC_NS = "https://w3id.org/security#"
"""W3C Controlled Identifiers / Data Integrity vocabulary (``sec:``)."""
MULTIKEY = NamedNode(SEC_NS + "Multikey")
ASSERTION_METHOD = NamedNode(SEC_NS + "assertionMethod")
KEY_AGREEMENT = NamedNode(SEC_NS + "keyAgreement")
CONTROLLER = NamedNode(SEC_NS + "controller")
PUBLIC_KEY_MULTIBASE = NamedNode(SEC_NS + "publicKeyMultibase")
MULTIBASE = NamedNode(SEC_NS + "multibase")
"""The datatype the multikey-v1 JSON-LD context gives ``publicKeyMultibase``."""
EXPIRES = NamedNode(SEC_NS + "expiration")
"""The IRI of the multikey-v1 context's term ``expires``: set when a key is rotated out."""
REVOKED = NamedNode(SEC_NS + "revoked")
POSSESSION_PURPOSE = "authentication"
"""The proof purpose of a proof of possession: never ``assertionMethod``, so it signs no statement of the party."""

SigningMultikey = Annotated[str, StringConstraints(pattern=r"^z6Mk[1-9A-HJ-NP-Za-km-z]{44}$")]
EncryptionMultikey = Annotated[str, StringConstraints(pattern=r"^z6LS[1-9A-HJ-NP-Za-km-z]{44}$")]


class PossessionProof(Strict):
    """The Data Integrity proof's variable parts; its verification method is the claimed signing key's IRI."""

    created: Annotated[str, StringConstraints(max_length=40)] = Field(
        description="when the proof was made (xsd:dateTime with time zone, exactly as signed); at most 10 minutes "
                    "from the service's clock")
    proof_value: Annotated[str, StringConstraints(pattern=r"^z[1-9A-HJ-NP-Za-km-z]{1,100}$")] = Field(
        description="multibase base58-btc of the Ed25519 signature (eddsa-rdfc-2022)")


class KeyClaim(Strict):
    """A party's new public keys and the proof that it holds the signing key's private half."""

    signing_key: SigningMultikey = Field(description="Ed25519 public key as a Multikey (z6Mk...)")
    encryption_key: EncryptionMultikey = Field(description="X25519 public key as a Multikey (z6LS...)")
    proof: PossessionProof


def key_iri(party: str, multibase: str) -> str:
    """A key's IRI: ``{party}/keys/{first 24 hex digits of SHA-256(multibase)}`` (the same key, the same IRI)."""
    return f"{party}/keys/{hashlib.sha256(multibase.encode('ascii')).hexdigest()[:24]}"


def claim_triples(party: str, *, signing_key: str, encryption_key: str) -> list[Triple]:
    """The RDF a proof of possession signs: the party's two keys as the registry records them, without times."""
    triples = []
    for use, multibase in ((ASSERTION_METHOD, signing_key), (KEY_AGREEMENT, encryption_key)):
        key = NamedNode(key_iri(party, multibase))
        triples += [Triple(NamedNode(party), use, key), Triple(key, RDF_TYPE, MULTIKEY),
                    Triple(key, CONTROLLER, NamedNode(party)),
                    Triple(key, PUBLIC_KEY_MULTIBASE, Literal(multibase, datatype=MULTIBASE))]
    return triples


def claim_proof(party: str, claim: KeyClaim) -> Proof:
    """The full :class:`trust.Proof` a claim carries for ``party`` (what the service verifies)."""
    return Proof(verification_method=key_iri(party, claim.signing_key), created=claim.proof.created,
                 proof_purpose=POSSESSION_PURPOSE, proof_value=claim.proof.proof_value)


def prove_possession(keys: PartyKeys, party: str, *, created: datetime | None = None) -> KeyClaim:
    """The claim of ``party`` (its IRI) to the public halves of ``keys``, signed with ``keys.signing``."""
    signing = encode_multikey(keys.signing.public_key())
    encryption = encode_multikey(keys.encryption.public_key())
    proof = create_proof(claim_triples(party, signing_key=signing, encryption_key=encryption), keys.signing,
                         verification_method=key_iri(party, signing), proof_purpose=POSSESSION_PURPOSE,
                         created=created or datetime.now(timezone.utc))
    assert proof.proof_value is not None  # create_proof always signs
    return KeyClaim(signing_key=signing, encryption_key=encryption,
                    proof=PossessionProof(created=proof.created, proof_value=proof.proof_value))


def keys_in(directory: Path) -> tuple[PartyKeys, bool]:
    """The keys in ``directory`` (``trust.save_keys``' layout), generated and saved there first if it holds no key
    file at all; the flag says whether they are new.

    :raises FileNotFoundError: one of the two key files is missing (a half-written directory is not replaced).
    :raises PermissionError, trust.KeyFormatError: as ``trust.load_keys``.
    """
    if not any((directory / name).exists() for name in (SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE)):
        save_keys(generate_keys(), directory)
        return load_keys(directory), True
    return load_keys(directory), False

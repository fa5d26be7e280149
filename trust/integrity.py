"""W3C Data Integrity proofs with the ``eddsa-rdfc-2022`` cryptosuite (w3.org/TR/vc-di-eddsa), natively over RDF.

The document is RDF already (our graph's quads), so no JSON-LD is involved: the proof options are RDF too (the
triples JSON-LD would give for them with the data-integrity v2 context), and the algorithm is the spec's:
hashData = SHA-256(RDFC-1.0 N-Quads of the proof options without ``proofValue``) followed by SHA-256(RDFC-1.0 N-Quads
of the document), signed with Ed25519; ``proofValue`` is multibase base58-btc of the 64-byte signature. A proof
created here verifies with the JavaScript reference implementation, and theirs here (tests/test_trust_interop.py).

The proof's options are signed as a node without a name, so the caller names the proof's node when storing it
(:meth:`Proof.to_triples`) without changing what was signed; a JSON-LD proof with an ``id`` is therefore not supported.

>>> from datetime import UTC, datetime
>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> from pyoxigraph import Literal, NamedNode, Triple
>>> key = Ed25519PrivateKey.generate()
>>> document = [Triple(NamedNode("https://example.org/train/1"), NamedNode("https://example.org/image"), Literal("x"))]
>>> proof = create_proof(document, key, verification_method="https://example.org/researcher#key-1",
...                      created=datetime(2026, 12, 3, tzinfo=UTC))
>>> verify_proof(document, proof, lambda method: key.public_key())
>>> Proof.from_quads(proof.to_triples()) == proof
True
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import base58
import pyoxigraph as ox
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "CANONICALIZATION_TIMEOUT_S",
    "CRYPTOSUITE",
    "DATA_INTEGRITY_PROOF",
    "KeyResolver",
    "Proof",
    "ProofError",
    "canonical_nquads",
    "create_proof",
    "verify_proof",
]

SEC = "https://w3id.org/security#"
XSD = "http://www.w3.org/2001/XMLSchema#"
DATA_INTEGRITY_PROOF = SEC + "DataIntegrityProof"
CRYPTOSUITE = "eddsa-rdfc-2022"

# The predicates and datatypes the data-integrity v2 JSON-LD context gives the proof's terms (trust/contexts/).
_RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
_CREATED = ox.NamedNode("http://purl.org/dc/terms/created")
_CRYPTOSUITE = ox.NamedNode(SEC + "cryptosuite")
_VERIFICATION_METHOD = ox.NamedNode(SEC + "verificationMethod")
_PROOF_PURPOSE = ox.NamedNode(SEC + "proofPurpose")
_PROOF_VALUE = ox.NamedNode(SEC + "proofValue")
_CRYPTOSUITE_STRING = ox.NamedNode(SEC + "cryptosuiteString")
_MULTIBASE = ox.NamedNode(SEC + "multibase")
_DATE_TIME = ox.NamedNode(XSD + "dateTime")
# proofPurpose term -> IRI, as the context's scoped @vocab maps them
_PURPOSES = {
    "assertionMethod": SEC + "assertionMethod",
    "authentication": SEC + "authenticationMethod",
    "capabilityInvocation": SEC + "capabilityInvocationMethod",
    "capabilityDelegation": SEC + "capabilityDelegationMethod",
    "keyAgreement": SEC + "keyAgreementMethod",
}
_PURPOSE_TERMS = {iri: term for term, iri in _PURPOSES.items()}
_SIGNATURE_LENGTH = 64

Statement = ox.Quad | ox.Triple
KeyResolver = Callable[[str], Ed25519PublicKey | None]


class ProofError(ValueError):
    """A proof is missing, malformed, made for another purpose or key, or does not match its document."""


@dataclass(frozen=True)
class Proof:
    """A Data Integrity proof: its options and, once signed, its ``proof_value``.

    ``created`` is the ``xsd:dateTime`` lexical form exactly as signed (a reformatted instant would not verify);
    ``proof_purpose`` is the JSON-LD term (``assertionMethod``), or the IRI when the term is not a known one.
    """

    verification_method: str
    created: str
    proof_purpose: str = "assertionMethod"
    proof_value: str | None = None
    type: str = DATA_INTEGRITY_PROOF
    cryptosuite: str = CRYPTOSUITE

    @property
    def created_at(self) -> datetime:
        """``created`` as a timezone-aware datetime."""
        return datetime.fromisoformat(self.created)

    def options_triples(self, node: ox.NamedNode | ox.BlankNode | None = None) -> list[ox.Triple]:
        """The proof options as RDF, without ``proofValue``: what is canonicalised, hashed and signed."""
        subject = node if node is not None else ox.BlankNode()
        purpose = _PURPOSES.get(self.proof_purpose, self.proof_purpose)
        return [
            ox.Triple(subject, _RDF_TYPE, _iri(self.type, "type")),
            ox.Triple(subject, _CRYPTOSUITE, ox.Literal(self.cryptosuite, datatype=_CRYPTOSUITE_STRING)),
            ox.Triple(subject, _CREATED, ox.Literal(self.created, datatype=_DATE_TIME)),
            ox.Triple(subject, _VERIFICATION_METHOD, _iri(self.verification_method, "verificationMethod")),
            ox.Triple(subject, _PROOF_PURPOSE, _iri(purpose, "proofPurpose")),
        ]

    def to_triples(self, node: ox.NamedNode | ox.BlankNode | None = None) -> list[ox.Triple]:
        """The whole proof as RDF about ``node`` (an IRI or blank node of the caller's choice; a fresh blank node
        by default), to store beside the document; :meth:`from_quads` reads it back."""
        subject = node if node is not None else ox.BlankNode()
        triples = self.options_triples(subject)
        if self.proof_value is not None:
            triples.append(ox.Triple(subject, _PROOF_VALUE, ox.Literal(self.proof_value, datatype=_MULTIBASE)))
        return triples

    @classmethod
    def from_quads(cls, statements: Iterable[Statement],
                   node: ox.NamedNode | ox.BlankNode | None = None) -> Proof:
        """The proof about ``node`` in ``statements`` (by default: the one node typed ``DataIntegrityProof``).

        :raises ProofError: no such proof, several, a property missing, repeated or not in the form the
            data-integrity v2 context gives it, or a property this implementation does not sign.
        """
        statements = list(statements)
        subject: ox.NamedNode | ox.BlankNode | ox.Triple | None = node
        if subject is None:
            nodes = {s.subject for s in statements
                     if s.predicate == _RDF_TYPE and s.object == ox.NamedNode(DATA_INTEGRITY_PROOF)}
            if len(nodes) != 1:
                raise ProofError(f"expected one node typed DataIntegrityProof in the proof's RDF, found {len(nodes)}")
            subject = next(iter(nodes))
        values: dict[ox.NamedNode, ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple] = {}
        for statement in statements:
            if statement.subject != subject:
                continue
            if statement.predicate not in _PROOF_PREDICATES:
                raise ProofError(f"the proof carries {statement.predicate}, which eddsa-rdfc-2022 here does not "
                                 "support (only type, cryptosuite, created, verificationMethod, proofPurpose and "
                                 "proofValue)")
            if statement.predicate in values:
                raise ProofError(f"the proof has more than one {_PROOF_PREDICATES[statement.predicate]}")
            values[statement.predicate] = statement.object
        missing = [name for predicate, name in _PROOF_PREDICATES.items() if predicate not in values]
        if missing:
            raise ProofError(f"the proof has no {' and no '.join(missing)}")
        purpose = _named(values[_PROOF_PURPOSE], "proofPurpose")
        return cls(
            type=_named(values[_RDF_TYPE], "type"),
            cryptosuite=_typed_literal(values[_CRYPTOSUITE], _CRYPTOSUITE_STRING, "cryptosuite"),
            created=_typed_literal(values[_CREATED], _DATE_TIME, "created"),
            verification_method=_named(values[_VERIFICATION_METHOD], "verificationMethod"),
            proof_purpose=_PURPOSE_TERMS.get(purpose, purpose),
            proof_value=_typed_literal(values[_PROOF_VALUE], _MULTIBASE, "proofValue"),
        )


_PROOF_PREDICATES = {
    _RDF_TYPE: "type", _CRYPTOSUITE: "cryptosuite", _CREATED: "created",
    _VERIFICATION_METHOD: "verificationMethod", _PROOF_PURPOSE: "proofPurpose", _PROOF_VALUE: "proofValue",
}


def canonical_nquads(statements: Iterable[Statement]) -> str:
    """The RDFC-1.0 canonical N-Quads of ``statements`` (triples are in the default graph): blank nodes relabelled
    ``_:c14n0``…, one line per distinct quad, sorted by code point. Two isomorphic datasets give the same text.

    RDFC-1.0 is exponential on "poison" graphs (many blank nodes only their neighbourhoods tell apart) and
    pyoxigraph sets it no limit, so a dataset with more than a few such blank nodes is canonicalised in a child
    process given ``CANONICALIZATION_TIMEOUT_S``: a hostile document is refused instead of hanging its verifier.

    >>> b = ox.BlankNode()
    >>> canonical_nquads([ox.Triple(b, ox.NamedNode("http://example.org/p"), ox.Literal("v"))])
    '_:c14n0 <http://example.org/p> "v" .\\n'

    :raises ProofError: the dataset's canonicalisation did not finish in time.
    """
    dataset = ox.Dataset(s if isinstance(s, ox.Quad) else ox.Quad(s.subject, s.predicate, s.object)
                         for s in statements)
    tied = _tied_blank_nodes(dataset)
    if tied > _MAX_TIED_IN_PROCESS:
        return _canonical_nquads_in_child(dataset, tied)
    dataset.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)
    return "".join(sorted(f"{quad} .\n" for quad in dataset))


#: seconds a child process may spend canonicalising a dataset with many tied blank nodes
CANONICALIZATION_TIMEOUT_S = 10.0
# tied blank nodes canonicalised in this process: the worst case (all six in one clique) takes about 0.04 s, each
# further one about ten times more
_MAX_TIED_IN_PROCESS = 6
_CHILD = ("import sys, pyoxigraph as ox\n"
          "d = ox.Dataset(ox.parse(sys.stdin.buffer.read(), format=ox.RdfFormat.N_QUADS))\n"
          "d.canonicalize(ox.CanonicalizationAlgorithm.RDFC_1_0)\n"
          "sys.stdout.write(''.join(sorted(f'{q} .\\n' for q in d)))\n")


def _tied_blank_nodes(dataset: ox.Dataset) -> int:
    """How many blank nodes share their RDFC-1.0 first-degree hash with another (compared by its pre-image, the
    sorted N-Quads of the node's quads with itself as ``_:a`` and other blank nodes as ``_:z``): only these make
    RDFC-1.0 search (its N-degree hashing), so without them it is fast."""
    mentions: dict[ox.BlankNode, set[ox.Quad]] = {}
    for quad in dataset:
        for term in (quad.subject, quad.object, quad.graph_name):
            if isinstance(term, ox.BlankNode):
                mentions.setdefault(term, set()).add(quad)
    signatures = Counter(
        tuple(sorted(" ".join("_:a" if term == node else "_:z" if isinstance(term, ox.BlankNode) else str(term)
                              for term in (q.subject, q.predicate, q.object, q.graph_name)) for q in quads))
        for node, quads in mentions.items())
    return sum(count for count in signatures.values() if count > 1)


def _canonical_nquads_in_child(dataset: ox.Dataset, tied: int) -> str:
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD], input=ox.serialize(dataset, format=ox.RdfFormat.N_QUADS),
                              capture_output=True, timeout=CANONICALIZATION_TIMEOUT_S, check=True)
    except subprocess.TimeoutExpired:
        raise ProofError(f"the RDF has {tied} blank nodes that RDFC-1.0 canonicalisation could not tell apart "
                         f"within {CANONICALIZATION_TIMEOUT_S:g} s (a poison graph), so it is refused") from None
    except subprocess.CalledProcessError as error:
        raise ProofError(f"canonicalising the RDF in a child process failed (exit status {error.returncode})") from None
    return done.stdout.decode("utf-8")


def create_proof(document: Iterable[Statement], key: Ed25519PrivateKey, *, verification_method: str,
                 created: datetime, proof_purpose: str = "assertionMethod") -> Proof:
    """Sign ``document`` (its RDF, canonicalised) as ``verification_method`` (the IRI of the signer's Multikey).

    :raises ProofError: ``created`` has no timezone, or ``verification_method`` is not an IRI.
    """
    if created.tzinfo is None or created.utcoffset() is None:
        raise ProofError("the proof's created time has no timezone, so it is not an xsd:dateTimeStamp")
    lexical = created.isoformat().replace("+00:00", "Z")
    proof = Proof(verification_method=verification_method, created=lexical, proof_purpose=proof_purpose)
    signature = key.sign(_hash_data(document, proof))
    return Proof(verification_method=verification_method, created=lexical, proof_purpose=proof_purpose,
                 proof_value="z" + base58.b58encode(signature).decode("ascii"))


def verify_proof(document: Iterable[Statement], proof: Proof, resolve_key: KeyResolver, *,
                 expected_purpose: str = "assertionMethod") -> None:
    """Check that ``proof`` signs ``document`` with the key ``resolve_key`` gives for its verification method.

    ``resolve_key`` returns the Ed25519 public key of a verification method the caller trusts for this purpose,
    or ``None`` for one it does not know (or no longer accepts: revoked).

    :raises ProofError: wrong type or cryptosuite, another purpose, a malformed ``proofValue``, an unknown
        verification method, or a signature that does not verify (the document or proof was altered, or another
        key signed it).
    """
    if proof.type != DATA_INTEGRITY_PROOF:
        raise ProofError(f"the proof's type is {proof.type}, not {DATA_INTEGRITY_PROOF}")
    if proof.cryptosuite != CRYPTOSUITE:
        raise ProofError(f"the proof's cryptosuite is {proof.cryptosuite!r}, not {CRYPTOSUITE!r}")
    if proof.proof_purpose != expected_purpose:
        raise ProofError(f"the proof's purpose is {proof.proof_purpose!r}, not the expected {expected_purpose!r}")
    signature = _signature(proof.proof_value)
    key = resolve_key(proof.verification_method)
    if key is None:
        raise ProofError(f"the proof's verification method {proof.verification_method} is not a known key")
    try:
        key.verify(signature, _hash_data(document, proof))
    except InvalidSignature:
        raise ProofError(f"the signature of {proof.verification_method} does not verify: the document or the proof "
                         "was altered, or another key signed it") from None


def _hash_data(document: Iterable[Statement], proof: Proof) -> bytes:
    proof_hash = hashlib.sha256(canonical_nquads(proof.options_triples()).encode("utf-8")).digest()
    document_hash = hashlib.sha256(canonical_nquads(document).encode("utf-8")).digest()
    return proof_hash + document_hash


def _signature(proof_value: str | None) -> bytes:
    if not proof_value:
        raise ProofError("the proof has no proofValue")
    if not proof_value.startswith("z"):
        raise ProofError("the proofValue does not start with 'z' (multibase base58-btc)")
    try:
        signature = base58.b58decode(proof_value[1:])
    except ValueError:
        raise ProofError("the proofValue is not valid base58-btc after its 'z'") from None
    if len(signature) != _SIGNATURE_LENGTH:
        raise ProofError(f"the proofValue holds {len(signature)} bytes, not a {_SIGNATURE_LENGTH}-byte signature")
    return signature


def _iri(value: str, name: str) -> ox.NamedNode:
    try:
        return ox.NamedNode(value)
    except ValueError:
        raise ProofError(f"the proof's {name} {value!r} is not an IRI") from None


def _named(term: object, name: str) -> str:
    if not isinstance(term, ox.NamedNode):
        raise ProofError(f"the proof's {name} is {term}, not an IRI")
    return term.value


def _typed_literal(term: object, datatype: ox.NamedNode, name: str) -> str:
    if not isinstance(term, ox.Literal) or term.datatype != datatype:
        raise ProofError(f"the proof's {name} is {term}, not a literal of type {datatype}")
    return term.value

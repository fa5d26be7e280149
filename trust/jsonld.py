"""The JSON-LD face of :mod:`trust.integrity`, for interoperability: sign and verify a JSON-LD document carrying its
``proof``, as the W3C reference implementations do, by turning it into RDF with pyld and using the same native
functions. Contexts come only from the copies shipped in ``trust/contexts/`` (:func:`local_document_loader`): a
document is never fetched from the network.

pyld has no "safe mode" (jsonld.js refuses a term its context does not define, and a relative IRI; pyld silently
drops the one from the RDF, so it would go unsigned, and resolves the other against a made-up base): here both are
refused, so a signed document's RDF is exactly what it says.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyld import jsonld

from .integrity import KeyResolver, Proof, ProofError, create_proof, verify_proof

__all__ = ["CONTEXTS_DIR", "DocumentLoader", "DocumentNotLocal", "local_document_loader", "sign_jsonld",
           "verify_jsonld"]

CONTEXTS_DIR = Path(__file__).resolve().parent / "contexts"
#: pyld's document loader: ``loader(url, options) -> {"contextUrl": None, "documentUrl": url, "document": ...}``
DocumentLoader = Callable[[str, dict[str, Any]], dict[str, Any]]

# a vocabulary no context uses, put before the document's contexts (a context's own @vocab replaces it): a term
# that expands into it was undefined in the document's context
_UNDEFINED = "urn:pht:trust:undefined-term:"
# the base relative IRIs resolve against (pyld would use http://example.org/base/): an IRI under it was relative
_NO_BASE = "https://relative-iri.invalid/"


class DocumentNotLocal(LookupError):
    """A JSON-LD document (a context) was asked for that is not among the local copies."""


@cache
def _local_documents() -> dict[str, Any]:
    index = json.loads((CONTEXTS_DIR / "contexts.json").read_text())
    return {url: json.loads((CONTEXTS_DIR / name).read_text()) for url, name in index.items()}


def local_document_loader(url: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Serve the contexts shipped in ``trust/contexts/`` (listed in its ``contexts.json``); never the network.

    :raises DocumentNotLocal: ``url`` is not one of them.
    """
    documents = _local_documents()
    if url not in documents:
        raise DocumentNotLocal(f"the JSON-LD document {url} is not among the local contexts (trust/contexts/) "
                               "and is never fetched from the network")
    return {"contextUrl": None, "documentUrl": url, "document": documents[url]}


def sign_jsonld(document: dict[str, Any], key: Ed25519PrivateKey, *, verification_method: str, created: datetime,
                proof_purpose: str = "assertionMethod",
                document_loader: DocumentLoader = local_document_loader) -> dict[str, Any]:
    """A copy of ``document`` with an ``eddsa-rdfc-2022`` Data Integrity ``proof``.

    The document's ``@context`` must define the proof's terms (the data-integrity v2 context, or the VC 2.0
    context, which includes it).

    :raises ProofError: the document already has a proof, is not JSON-LD this loader can read, uses a term its
        context does not define, or its context does not define the proof's terms.
    """
    if "proof" in document:
        raise ProofError("the document already carries a proof (proof sets and chains are not supported)")
    proof = create_proof(_statements(document, document_loader), key, verification_method=verification_method,
                         created=created, proof_purpose=proof_purpose)
    proof_json = {"type": "DataIntegrityProof", "cryptosuite": proof.cryptosuite, "created": proof.created,
                  "verificationMethod": proof.verification_method, "proofPurpose": proof.proof_purpose,
                  "proofValue": proof.proof_value}
    try:
        read_back: Proof | None = _read_proof(proof_json, document.get("@context"), document_loader)
    except ProofError:
        read_back = None
    if read_back != proof:
        raise ProofError("the document's @context does not give the proof's terms their Data Integrity meaning: "
                         "add https://w3id.org/security/data-integrity/v2")
    return {**document, "proof": proof_json}


def verify_jsonld(document: dict[str, Any], resolve_key: KeyResolver, *, expected_purpose: str = "assertionMethod",
                  document_loader: DocumentLoader = local_document_loader) -> None:
    """Check the ``eddsa-rdfc-2022`` proof a JSON-LD document carries, as :func:`trust.integrity.verify_proof`.

    :raises ProofError: no proof or several, a proof that is not one object in the document's context's terms,
        a document this loader cannot read or using an undefined term, or any failure of ``verify_proof``.
    """
    proof_json = document.get("proof")
    if isinstance(proof_json, list) and len(proof_json) == 1:
        proof_json = proof_json[0]
    if proof_json is None:
        raise ProofError("the document carries no proof")
    if not isinstance(proof_json, dict):
        raise ProofError("the document's proof is not exactly one JSON object (proof sets are not supported)")
    if "id" in proof_json or "previousProof" in proof_json:
        raise ProofError("the document's proof has an id or previousProof (proof chains are not supported)")
    proof = _read_proof(proof_json, document.get("@context"), document_loader)
    unsigned = {name: value for name, value in document.items() if name != "proof"}
    verify_proof(_statements(unsigned, document_loader), proof, resolve_key, expected_purpose=expected_purpose)


def _read_proof(proof_json: dict[str, Any], context: Any, loader: DocumentLoader) -> Proof:
    """The proof as the spec reads it: its JSON in the document's ``@context``."""
    return Proof.from_quads(_statements({**proof_json, "@context": context}, loader))


def _statements(document: dict[str, Any], loader: DocumentLoader) -> list[ox.Quad]:
    """The document's RDF, refusing terms its context leaves undefined (which RDF would silently drop)."""
    if "@context" not in document:
        raise ProofError("the document has no @context, so it is not JSON-LD that can be signed")
    contexts = document["@context"] if isinstance(document["@context"], list) else [document["@context"]]
    probe = {**document, "@context": [{"@vocab": _UNDEFINED}, *contexts]}
    for quad in _to_rdf(probe, loader):
        for term in (quad.subject, quad.predicate, quad.object, quad.graph_name):
            if isinstance(term, ox.NamedNode) and term.value.startswith(_UNDEFINED):
                raise ProofError(f"the document uses the term {term.value.removeprefix(_UNDEFINED)!r}, "
                                 "which its @context does not define")
            if isinstance(term, ox.NamedNode) and term.value.startswith(_NO_BASE):
                raise ProofError(f"the document uses the relative IRI {term.value.removeprefix(_NO_BASE)!r}, "
                                 "which has no base to resolve against")
    return _to_rdf(document, loader)


def _to_rdf(document: dict[str, Any], loader: DocumentLoader) -> list[ox.Quad]:
    try:
        nquads = jsonld.to_rdf(document, {"format": "application/n-quads", "documentLoader": loader, "base": _NO_BASE})
    except jsonld.JsonLdError as error:
        local = next((e for e in _causes(error) if isinstance(e, DocumentNotLocal)), None)
        if local is not None:
            raise ProofError(str(local)) from None
        code = next((c for c in (getattr(e, "code", None) or getattr(e, "type", None) for e in _causes(error))
                     if c), "unknown error")
        raise ProofError(f"the document is not JSON-LD that can be turned into RDF ({code})") from None
    try:
        return list(ox.parse(nquads, format=ox.RdfFormat.N_QUADS))
    except SyntaxError as error:
        raise ProofError(f"the document's RDF is not valid N-Quads ({error})") from None


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """The error and the errors behind it (pyld keeps them in ``cause``, Python in ``__cause__``)."""
    seen = 0
    while error is not None and seen < 20:
        yield error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
        seen += 1

"""Checking a signed train request at submission, and the quads that record it beside the train.

The central service rebuilds the signed document itself (``client.train_request``) from what it is about to write
-- the definition's content and the submitted parameters -- and the request values the client sent, then
verifies the Data Integrity proof with the registry's keys (``KeyDirectory``: a revoked key verifies nothing, a
rotated-out key only what was signed before its rotation). So a proof that verifies means the caller's own key
signed exactly this definition, these parameters and this result recipient; an operator or a proxy that changed
any of them breaks it. Each refusal is one sentence naming the problem, raised before anything is written.
See docs/security.md, "What a signed train request proves".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pyoxigraph import NamedNode, Quad, Triple

from client.train_request import (DEFINITION_PARTS, SERVER_ADDED, RequestSignature, RequestTerms, request_triples,
                                  signed_document)
from client.purposes import DUO, data_use_terms
from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, GraphStore
from trust import Proof, ProofError, verify_proof

from .errors import Forbidden, IllegalTransition, InvalidValue, LifecycleError
from .keys import KeyDirectory, parse_time
from .naming import Iris

__all__ = ["SERVER_ADDED", "check_terms", "definition_content", "signed_request_quads"]

G = CENTRAL_GRAPH


def definition_content(store: GraphStore, definition: NamedNode, *, with_server_added: bool = True) -> list[Quad]:
    """The registered definition, its route stops, parameters and data-space inputs as stored (empty if there is none); without
    ``with_server_added``, the definition's content only (what a train request signs)."""
    own = store.quads(definition, None, None, G)
    if not any(q.predicate == RDF_TYPE for q in own):
        return []
    parts = [q.object for q in own if q.predicate in DEFINITION_PARTS]
    quads = own + [q for part in parts for q in store.quads(part, None, None, G)]
    if with_server_added:
        return quads
    return [q for q in quads if not (q.subject == definition and q.predicate in SERVER_ADDED)]


def signed_request_quads(store: GraphStore, iris: Iris, *, train: NamedNode, requester: NamedNode,
                         definition: Sequence[Quad | Triple], definition_id: str, parameters: Mapping[str, str],
                         datatypes: Mapping[str, str], signature: RequestSignature, now: datetime,
                         terms: RequestTerms = RequestTerms()) -> list[Quad]:
    """Verify ``signature`` for a train of ``definition`` (its content quads) with ``parameters`` requested by
    ``requester`` and the declared ``terms`` (purpose, project, ε); the quads recording the request, its proof (``{train}/request-proof``) and the train's links to
    them, to write in the train's change set.

    :raises LifecycleError: (4xx, one sentence) the request names another requester or a result recipient that is
        not the requester's current encryption key; the key is not the requester's, unknown, revoked or rotated
        out; the proof does not verify (the document was altered); the request id was used already (409).
    """
    directory = KeyDirectory(store)
    if signature.requested_by != requester.value:
        raise Forbidden(f"the signed request names the requester {signature.requested_by}, not you "
                        f"({requester.value}); sign your own request")
    try:
        created = parse_time(signature.created)
    except ValueError:
        raise InvalidValue(f"the signed request's created time {signature.created!r} is not an xsd:dateTime with "
                           "a time zone") from None
    _check_key(directory, signature.verification_method, requester, created=created, now=now)
    recipient = directory.record(signature.result_recipient)
    if recipient is None or recipient.controller != requester.value or recipient.use != "encryption" \
            or not recipient.current:
        raise Forbidden(f"the signed request's result recipient {signature.result_recipient} is not your current "
                        "encryption key (GET /api/keys lists it)")
    node = NamedNode(signature.request)
    used = store.quads(None, PHT.signedRequest, node, G)
    if used or store.quads(node, None, None, G):
        other = used[0].subject if used else None
        by = f" by train {iris.local(other, 'trains')}" if isinstance(other, NamedNode) else ""
        raise IllegalTransition(f"the signed request {signature.request} was used already{by}; sign a new request "
                                "for every train (a request is not replayed)")
    request = signature.train_request(definition_id, parameters, terms)
    triples = request_triples(iris, request, datatypes)
    proof = Proof(verification_method=signature.verification_method, created=signature.created,
                  proof_value=signature.proof_value)
    try:
        verify_proof(signed_document(definition, triples), proof, directory.resolver(created=created, now=now))
    except ProofError as e:
        raise LifecycleError(f"the train request's signature was refused: {e}") from None
    proof_node = NamedNode(f"{train.value}/request-proof")
    return ([Quad(t.subject, t.predicate, t.object, G) for t in triples]
            + [Quad(t.subject, t.predicate, t.object, G) for t in proof.to_triples(proof_node)]
            + [Quad(train, PHT.signedRequest, node, G), Quad(train, PHT.requestProof, proof_node, G)])


def _check_key(directory: KeyDirectory, iri: str, requester: NamedNode, *, created: datetime, now: datetime) -> None:
    """Refuse, naming why, a verification method that is not the requester's signing key usable for ``created``."""
    record = directory.record(iri)
    if record is None:
        raise Forbidden(f"the train request is signed by {iri}, which is not a registered key")
    if record.controller != requester.value or record.use != "signing":
        raise Forbidden(f"the train request is signed by {iri}, which is not one of your signing keys")
    why = record.unusable_because(created=created, now=now)
    if why == "revoked" and record.revoked is not None:
        raise Forbidden(f"the train request is signed by {iri}, which was revoked at "
                        f"{record.revoked.isoformat()}; register new keys (pht keys rotate)")
    if why == "rotated out" and record.expires is not None:
        raise Forbidden(f"the train request is signed by {iri}, which was rotated out at "
                        f"{record.expires.isoformat()}; sign with your current key")


def check_terms(terms: RequestTerms, *, signed: bool) -> None:
    """Refuse, in one sentence, declared terms the stations could not rely on: any of them on an unsigned train
    (only the signature binds them), or a purpose that is not a vetted DUO term (``ontology/duo.ttl``).

    :raises InvalidValue: (400) as above.
    """
    declared = [name for name, value in (("purpose", terms.purpose), ("project", terms.project),
                                         ("dp_mechanism", terms.dp_mechanism), ("epsilon", terms.epsilon))
                if value is not None]
    if declared and not signed:
        raise InvalidValue(f"{', '.join(declared)} can only be declared in a signed train request (stations rely on "
                           "the signature); submit the train signed (pht keys init, then pht train submit)")
    duo = data_use_terms()
    if terms.purpose is not None and not duo.known(terms.purpose):
        known = ", ".join(f"DUO_{iri.removeprefix(DUO)} ({duo.label(iri)})" for iri in sorted(duo.labels))
        raise InvalidValue(f"the purpose {terms.purpose} is not a DUO term this platform accepts; declare one of "
                           f"{known}")

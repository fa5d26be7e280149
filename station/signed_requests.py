"""Is this work item exactly what the researcher signed? The station's check, before it decides anything.

The central service is semi-trusted: its operators can edit the graph after a researcher signed a train. So the
station does not take the work item's image digest, command or parameters on trust. It takes the signed request
the work item carries (``WorkItem.request``: the definition's content and the request node, as N-Triples) and its
proof, verifies the proof (``trust.verify_proof``, eddsa-rdfc-2022) with the requester's signing key from the
central registry, and then checks that what it is asked to run is what that document says: the definition, the
image digest, the entrypoint, every parameter value, the requester, and that this station is on the signed route
or is the signed aggregator. Each problem is a :class:`RequestRefused` of one sentence, naming parameters, never
their values.

The registry is the central service's too, so the station pins the signing key it first verified for each
researcher (trust on first use, :class:`KeyPins`, ``state_dir/pinned-keys.json``): a different key later is
accepted only if the registry says the pinned one was rotated out or revoked; otherwise the admin decides (by
deleting the researcher's line from the file). See docs/security.md, "What a signed train proves".
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyoxigraph as ox
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from client import WorkItem
from client.execution_records import document_hash
from client.public_keys import PublicKeyRecord, parse_time
from client.train_request import parameter_datatypes, rdf_literal
from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, RDF_TYPE, ChangeSet, ResourceIris
from trust import KeyFormatError, Proof, ProofError, decode_signing_key, verify_proof

__all__ = ["PINNED_KEYS_FILE", "KeyLookup", "KeyPins", "RequestRefused", "SignedRequest",
           "keys_from_wire", "parse_ntriples", "signed_hash", "verify_work"]

PINNED_KEYS_FILE = "pinned-keys.json"
SignedTerm = ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple


class RequestRefused(ValueError):
    """The work item is not exactly what its researcher signed (or is unsigned): one sentence saying why."""


def keys_from_wire(body: Mapping[str, Any]) -> list[PublicKeyRecord]:
    """A party's keys from ``GET /api/keys`` (``CentralClient.keys``).

    :raises RequestRefused: a record is malformed.
    """
    party = str(body.get("party") or "")
    try:
        return [PublicKeyRecord(iri=str(r["iri"]), controller=party,
                                use="signing" if r["use"] == "signing" else "encryption",
                                multibase=str(r["multibase"]), created=parse_time(str(r["created"])),
                                expires=parse_time(str(r["expires"])) if r.get("expires") else None,
                                revoked=parse_time(str(r["revoked"])) if r.get("revoked") else None)
                for r in body.get("keys") or []]
    except (KeyError, TypeError, ValueError) as e:
        raise RequestRefused(f"the central registry's keys of {party or 'the requester'} are malformed ({e})") \
            from None


KeyLookup = Callable[[str], Sequence[PublicKeyRecord]]
"""A researcher's registered keys by the researcher's IRI (the station asks the central registry)."""


@dataclass(frozen=True)
class SignedRequest:
    """What the station verified: the request's id, its signer and key, and the hash approvals bind to."""

    request: str
    requester: str
    signing_key: str
    """The Multikey of the key that verified the proof."""
    signed_hash: str
    """SHA-256 hex of the RDFC-1.0 canonical N-Quads of the signed document."""


def signed_hash(document: Sequence[ox.Triple]) -> str:
    """SHA-256 hex of the document's canonical N-Quads: the hash an approval binds to, and the one the station's
    execution record names (``client.execution_records.document_hash``, the one implementation)."""
    return document_hash(document)


def parse_ntriples(text: str, what: str) -> list[ox.Triple]:
    """``text`` as triples. :raises RequestRefused: it is not N-Triples."""
    try:
        return [ox.Triple(q.subject, q.predicate, q.object)
                for q in ox.parse(text.encode("utf-8"), format=ox.RdfFormat.N_TRIPLES)]
    except SyntaxError as e:
        raise RequestRefused(f"the train's {what} is not valid N-Triples ({e})") from None


class KeyPins:
    """The public key this station trusts for each party, pinned on first use in a JSON file (``{party IRI:
    Multikey}``, written atomically, mode 0600): the researchers' signing keys in ``pinned-keys.json`` (here), the
    readers' encryption keys in ``reader-keys.json`` (``station/encryption.py``). To accept a party's new key that
    the registry does not show as a rotation, the admin deletes the party's entry (docs/station.md)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def read(self) -> dict[str, str]:
        """The pins. :raises RequestRefused: the file is not a JSON object of strings (so nothing is decided)."""
        try:
            pins = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise RequestRefused(f"the station's pinned keys {self.path} cannot be read ({e})") from None
        if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
            raise RequestRefused(f"the station's pinned keys {self.path} are not a JSON object of Multikeys")
        return {str(k): v for k, v in pins.items()}

    def pin(self, party: str, multibase: str) -> None:
        """Pin ``multibase`` as ``party``'s key (replacing an earlier pin; nothing written if it is pinned
        already)."""
        with self._lock:
            pins = self.read()
            if pins.get(party) == multibase:
                return
            pins[party] = multibase
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:  # mkstemp creates it 0600
                    json.dump(pins, out, indent=1, sort_keys=True)
                    out.write("\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise


def verify_work(work: WorkItem, *, station: str, keys: KeyLookup, pins: KeyPins,
                now: datetime | None = None) -> SignedRequest:
    """Check that ``work`` is exactly what its requester signed, with a key this station trusts for them.

    :raises RequestRefused: one sentence naming the problem (unsigned; not the request the train names; a proof
        that does not verify; an unknown, revoked or rotated-out key or one that differs from the pinned key;
        anything the station is asked to run that differs from the signed document).
    """
    if not work.request or not work.request_proof:
        raise RequestRefused("the train is unsigned, and this station runs signed trains only")
    document = parse_ntriples(work.request, "signed request")
    try:
        proof = Proof.from_quads(parse_ntriples(work.request_proof, "request proof"))
    except ProofError as e:
        raise RequestRefused(f"the train request's proof is malformed: {e}") from None
    nodes = {t.subject for t in document if t.predicate == RDF_TYPE and t.object == PHT.TrainRequest}
    if len(nodes) != 1 or not isinstance(node := next(iter(nodes)), ox.NamedNode):
        raise RequestRefused(f"the train's signed request holds {len(nodes)} train requests, not one")
    requester = _one(document, node, PHT.requestedBy, "requester")
    if requester != work.requester:
        raise RequestRefused(f"the train is attributed to {work.requester}, but its signed request was made by "
                             f"{requester}")
    created_text = _one(document, node, DCTERMS.created, "created time")
    try:
        created = datetime.fromisoformat(created_text.replace("Z", "+00:00"))
    except ValueError:
        raise RequestRefused(f"the signed request's created time {created_text!r} is not a time") from None
    if created.tzinfo is None:
        raise RequestRefused(f"the signed request's created time {created_text!r} has no time zone")
    # asked once, so the key and the pin are judged on the same answer; only keys the requester controls count
    registered = [k for k in keys(requester) if k.controller == requester]
    key = _signing_key(proof, requester, registered, created=created, now=now or datetime.now(UTC))
    try:
        public = decode_signing_key(key.multibase)
    except KeyFormatError:
        raise RequestRefused(f"the registry's key {key.iri} is not an Ed25519 Multikey") from None
    _check_pin(pins, requester, key, registered)

    def resolve(method: str) -> Ed25519PublicKey | None:
        return public if method == key.iri else None

    try:
        verify_proof(document, proof, resolve)
    except ProofError as e:
        raise RequestRefused(f"the train request's signature does not verify: {e}") from None
    _check_content(work, document, node, station=station)
    pins.pin(requester, key.multibase)
    return SignedRequest(request=node.value, requester=requester, signing_key=key.multibase,
                         signed_hash=signed_hash(document))


def _signing_key(proof: Proof, requester: str, registered: Sequence[PublicKeyRecord], *, created: datetime,
                 now: datetime) -> PublicKeyRecord:
    """The requester's registered signing key that made ``proof``, if it verifies a proof made at ``created``."""
    for key in registered:
        if key.iri == proof.verification_method and key.use == "signing":
            why = key.unusable_because(created=created, now=now)
            if why == "revoked" and key.revoked is not None:
                raise RequestRefused(f"the train request is signed by {key.iri}, which was revoked at "
                                     f"{key.revoked.isoformat()}")
            if why is not None and key.expires is not None:
                raise RequestRefused(f"the train request is signed by {key.iri}, which was rotated out at "
                                     f"{key.expires.isoformat()} before the request was signed")
            return key
    raise RequestRefused(f"the train request is signed by {proof.verification_method}, which is not a signing key "
                         f"of its requester {requester}")


def _check_pin(pins: KeyPins, requester: str, key: PublicKeyRecord, registered: Sequence[PublicKeyRecord]) -> None:
    """Refuse a key other than the one pinned for ``requester`` unless the registry says the pinned one was
    rotated out or revoked (then the new one replaces it once the proof verifies)."""
    pinned = pins.read().get(requester)
    if pinned is None or pinned == key.multibase:
        return
    record = next((k for k in registered if k.multibase == pinned), None)
    if record is not None and not record.current:
        return
    raise RequestRefused(f"the train request of {requester} is signed with key {key.multibase}, but this station "
                         f"pinned {pinned} for them, which the registry does not show as rotated out or revoked; if "
                         f"the researcher confirms the new key, delete their entry from {pins.path}")


def _check_content(work: WorkItem, document: Sequence[ox.Triple], node: ox.NamedNode, *, station: str) -> None:
    """Refuse a work item whose definition, code, parameters or station differ from the signed document."""
    iris = ResourceIris(work.requester[:work.requester.rindex("agents/")] if "agents/" in work.requester else "")
    definition = iris.definition(work.definition)
    signed_definition = _one(document, node, PHT.ofDefinition, "definition")
    if signed_definition != definition.value:
        raise RequestRefused(f"the train runs definition {work.definition}, but its request was signed for "
                             f"{unquote(signed_definition.rsplit('/', 1)[-1])}")
    digest = _one(document, definition, PHT.imageDigest, "image digest")
    if digest != work.image_digest:
        raise RequestRefused(f"the image digest differs from the signed one: signed {digest}, given "
                             f"{work.image_digest}")
    name = _one(document, definition, PHT.imageName, "image name")
    if name != work.image_name:  # a registry reference names the manifest digest the station pulls
        raise RequestRefused(f"the image name differs from the signed one: signed {name}, given {work.image_name}")
    entrypoint = _optional(document, definition, PHT.entrypoint)
    if entrypoint != work.entrypoint:
        raise RequestRefused("the entrypoint differs from the signed one")
    _check_parameters(work, document, node, parameter_datatypes(document))
    here = iris.station(station)
    on_route = {t.object for t in document if t.predicate == PHT.station}
    aggregator = {t.object for t in document if t.subject == definition and t.predicate == PHT.aggregator}
    if here not in on_route | aggregator:
        raise RequestRefused(f"station {station} is not on the signed route")


def _check_parameters(work: WorkItem, document: Sequence[ox.Triple], node: ox.NamedNode,
                      datatypes: Mapping[str, str]) -> None:
    bindings = {t.object for t in document if t.subject == node and t.predicate == PHT.parameterBinding}
    signed: dict[str, SignedTerm] = {}
    for binding in bindings:
        if isinstance(binding, ox.NamedNode):
            name = _one(document, binding, PHT.bindingName, "parameter name")
            value = next((t.object for t in document if t.subject == binding and t.predicate == PHT.bindingValue), None)
            if value is not None:
                signed[name] = value
    for name in sorted(set(signed) | set(work.parameters)):
        if name not in signed:
            raise RequestRefused(f"parameter {name} is not in the signed request")
        if name not in work.parameters:
            raise RequestRefused(f"parameter {name} of the signed request is missing")
        given = rdf_literal(work.parameters[name], datatypes.get(name, "string"))
        if not _same_value(given, signed[name]):
            raise RequestRefused(f"parameter {name} differs from the signed value")


def _same_value(given: ox.Literal, signed: SignedTerm) -> bool:
    """Whether two literals are the same value in the form the store keeps it (``"01"^^xsd:integer`` is ``"1"``)."""
    if given == signed:
        return True
    kept = ChangeSet(insert=[ox.Quad(ox.NamedNode("urn:x:s"), ox.NamedNode("urn:x:p"), given, CENTRAL_GRAPH)]).insert
    return any(q.object == signed for q in kept)


def _one(document: Sequence[ox.Triple], subject: ox.NamedNode, predicate: ox.NamedNode, what: str) -> str:
    values = [t.object.value for t in document if t.subject == subject and t.predicate == predicate
              and isinstance(t.object, ox.NamedNode | ox.Literal)]
    if len(values) != 1:
        raise RequestRefused(f"the train's signed request has {len(values)} values for its {what}, not one")
    return values[0]


def _optional(document: Sequence[ox.Triple], subject: ox.NamedNode, predicate: ox.NamedNode) -> str | None:
    values = [t.object.value for t in document if t.subject == subject and t.predicate == predicate
              and isinstance(t.object, ox.Literal)]
    return values[0] if len(values) == 1 else None

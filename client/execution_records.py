"""Station-signed execution records, chained: what each station did, signed by that station, naming the hop before.

When a station releases an output it signs a record of what it did (:class:`ExecutionRecord`): the hash of the
signed train request it verified, the image digest it ran, the (ciphertext) digests of its inputs and of its
output, how the run was approved and released, when it ran, and the hashes of the records of the hops whose
outputs it used. The record is RDF of IRIs and literals only, node ``{execution}/record``; its proof (W3C Data
Integrity, ``eddsa-rdfc-2022``, by the station's signing key) sits at ``{execution}/record-proof``. A record's hash
is the SHA-256 of its canonical N-Quads (RDFC-1.0), the same way the signed request is hashed.

:func:`verify_chain` checks a whole train from the graph alone (what ``train_provenance.rq`` gives), against the
keys the registry lists: the researcher's signed request, every hop's signature, and that every record agrees with
the graph and with the records before it. Whoever edits the history -- an operator deleting an approval,
changing a digest, dropping a hop -- cannot re-sign a station's record, so the edit shows as a named break.

>>> record = ExecutionRecord(execution="https://pht.example.org/id/executions/e1",
...     train="https://pht.example.org/id/trains/t1", station="https://pht.example.org/id/stations/aachen",
...     round=1, stop=0, signed_request_hash="a" * 64, image_digest="sha256:" + "b" * 64, input_digests=(),
...     previous_record_hashes=(), output_digest="c" * 64, approved_how="auto", released_how="admin",
...     started="2026-12-03T10:00:00Z", ended="2026-12-03T10:00:05Z")
>>> ExecutionRecord.from_statements(record.triples(), record.node) == record
True
>>> len(record.digest())
64
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal as Choice

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Triple

from graph_store import PHT, PROV, RDF_TYPE, XSD
from trust import KeyFormatError, Proof, ProofError, canonical_nquads, create_proof, decode_signing_key, verify_proof

from .public_keys import PublicKeyRecord, key_records
from .train_request import signed_request_document

__all__ = [
    "ChainVerdict",
    "DisclosureControl",
    "ExecutionRecord",
    "RecordError",
    "RuleApplied",
    "document_hash",
    "proof_node",
    "record_node",
    "record_time",
    "sign_record",
    "verify_chain",
    "verify_record",
]

Statement = Triple | Quad
How = Choice["auto", "admin"]
HOWS: tuple[How, ...] = ("auto", "admin")


class RecordError(ValueError):
    """A record is missing a part, has one twice, or holds a value of the wrong form; ``str(e)`` names it."""


def document_hash(statements: Iterable[Statement]) -> str:
    """SHA-256 (hex) of ``statements``' canonical N-Quads (RDFC-1.0): how a signed request and a record are named
    by the hops after them."""
    return hashlib.sha256(canonical_nquads(statements).encode("utf-8")).hexdigest()


def record_node(execution: str) -> NamedNode:
    """The node of ``execution``'s record."""
    return NamedNode(execution + "/record")


def proof_node(execution: str) -> NamedNode:
    """The node of the proof of ``execution``'s record."""
    return NamedNode(execution + "/record-proof")


@dataclass(frozen=True)
class RuleApplied:
    """One disclosure rule a station applied to the output: its name, its threshold if it has one, the outcome.
    Never the value the rule protects."""

    rule: str
    passed: bool
    threshold: int | None = None


Stage = Choice["local-result", "aggregate"]


@dataclass(frozen=True)
class DisclosureControl:
    """How the output was reviewed before it left (``pht:DisclosureControlRecord``, SATRE 3.3.09): the rules applied,
    the checker's version, the stage, the dataset version. The decision (released) and who made it are the record's
    ``released_how``; the code is its ``image_digest``."""

    rules: tuple[RuleApplied, ...]
    checker_version: str
    stage: Stage
    dataset_version: str | None = None

    def triples(self, record: NamedNode, decided_how: How) -> list[Triple]:
        node = NamedNode(record.value + "/disclosure")
        out = [Triple(record, PHT.disclosureControl, node), Triple(node, RDF_TYPE, PHT.DisclosureControlRecord),
               Triple(node, PHT.checkerVersion, Literal(self.checker_version)),
               Triple(node, PHT.reviewStage, Literal(self.stage)), Triple(node, PHT.decision, Literal("released")),
               Triple(node, PHT.decidedHow, Literal(decided_how))]
        if self.dataset_version is not None:
            out.append(Triple(node, PHT.datasetVersion, Literal(self.dataset_version)))
        for rule in self.rules:
            r = NamedNode(f"{node.value}/rule/{rule.rule}")
            out += [Triple(node, PHT.ruleApplied, r), Triple(r, RDF_TYPE, PHT.RuleApplication),
                    Triple(r, PHT.ruleName, Literal(rule.rule)),
                    Triple(r, PHT.passed, Literal("true" if rule.passed else "false", datatype=XSD.boolean))]
            if rule.threshold is not None:
                out.append(Triple(r, PHT.threshold, Literal(str(rule.threshold), datatype=XSD.integer)))
        return out

    @classmethod
    def from_statements(cls, statements: Iterable[Statement], record: NamedNode) -> DisclosureControl | None:
        """The disclosure-control record of ``record`` in ``statements``, or None if it has none (the check that
        it is exactly what a station signs is the record's, :meth:`ExecutionRecord.from_statements`).

        :raises RecordError: a part is missing or of the wrong form."""
        node = NamedNode(record.value + "/disclosure")
        values: dict[NamedNode, dict[NamedNode, list[str]]] = {}
        for t in statements:
            if isinstance(t.subject, NamedNode) and t.subject.value.startswith(node.value) and \
                    isinstance(t.object, NamedNode | Literal):
                values.setdefault(t.subject, {}).setdefault(t.predicate, []).append(t.object.value)
        if node not in values:
            return None

        def one(subject: NamedNode, predicate: NamedNode, *, optional: bool = False) -> str | None:
            found = values.get(subject, {}).get(predicate, [])
            if len(found) > 1 or (not found and not optional):
                raise RecordError(f"the disclosure-control record {subject.value} has {len(found)} "
                                  f"{_short(predicate)}, not one")
            return found[0] if found else None

        rules = []
        for iri in sorted(values[node].get(PHT.ruleApplied, [])):
            r = NamedNode(iri)
            threshold = one(r, PHT.threshold, optional=True)
            try:
                rules.append(RuleApplied(str(one(r, PHT.ruleName)), one(r, PHT.passed) == "true",
                                         None if threshold is None else int(threshold)))
            except ValueError as e:
                if isinstance(e, RecordError):
                    raise
                raise RecordError(f"the rule {iri} has a threshold that is not a whole number") from None
        stage = one(node, PHT.reviewStage)
        if stage not in ("local-result", "aggregate"):
            raise RecordError(f"the disclosure-control record {node.value} names neither stage")
        return cls(rules=tuple(rules), checker_version=str(one(node, PHT.checkerVersion)),
                   stage="aggregate" if stage == "aggregate" else "local-result",
                   dataset_version=one(node, PHT.datasetVersion, optional=True))


@dataclass(frozen=True)
class ExecutionRecord:
    """What one station did for one execution, as it signs it. Digests are 64 hex digits (``image_digest``:
    ``sha256:`` and 64); times are ``xsd:dateTime`` lexical forms with a time zone."""

    execution: str
    train: str
    station: str
    round: int
    stop: int | None
    signed_request_hash: str
    image_digest: str
    input_digests: tuple[str, ...]
    previous_record_hashes: tuple[str, ...]
    output_digest: str
    approved_how: How
    released_how: How
    started: str
    ended: str
    disclosure: DisclosureControl | None = None  #: how the output was reviewed; None in records made before it

    @property
    def node(self) -> NamedNode:
        return record_node(self.execution)

    def triples(self) -> list[Triple]:
        """The record as RDF (what is signed and stored)."""
        n = self.node

        def lit(value: str | int, dt: NamedNode | None = None) -> Literal:
            return Literal(str(value), datatype=dt) if dt is not None else Literal(str(value))

        triples = [Triple(n, RDF_TYPE, PHT.ExecutionRecord), Triple(n, PHT.recordOf, NamedNode(self.execution)),
                   Triple(n, PHT.recordTrain, NamedNode(self.train)),
                   Triple(n, PHT.recordStation, NamedNode(self.station)),
                   Triple(n, PHT.recordRound, lit(self.round, XSD.integer)),
                   Triple(n, PHT.signedRequestHash, lit(self.signed_request_hash)),
                   Triple(n, PHT.ranImage, lit(self.image_digest)),
                   Triple(n, PHT.outputDigest, lit(self.output_digest)),
                   Triple(n, PHT.approvedHow, lit(self.approved_how)),
                   Triple(n, PHT.releasedHow, lit(self.released_how)),
                   Triple(n, PHT.runStarted, lit(self.started, XSD.dateTime)),
                   Triple(n, PHT.runEnded, lit(self.ended, XSD.dateTime))]
        if self.stop is not None:
            triples.append(Triple(n, PHT.recordStop, lit(self.stop, XSD.integer)))
        triples += [Triple(n, PHT.inputDigest, lit(d)) for d in self.input_digests]
        triples += [Triple(n, PHT.previousRecordHash, lit(h)) for h in self.previous_record_hashes]
        if self.disclosure is not None:
            triples += self.disclosure.triples(n, self.released_how)
        return triples

    def digest(self) -> str:
        """The record's hash: what the next hop names."""
        return document_hash(self.triples())

    @classmethod
    def from_statements(cls, statements: Iterable[Statement], node: NamedNode) -> ExecutionRecord:
        """The record about ``node`` in ``statements``.

        :raises RecordError: a part is missing, repeated, of the wrong form, or the record says more than a
            record says (a triple this module does not write would go unsigned-for by :meth:`triples`).
        """
        statements = list(statements)  # read more than once (the disclosure-control part)
        values: dict[NamedNode, list[NamedNode | Literal]] = {}
        for t in statements:
            if t.subject == node and isinstance(t.object, NamedNode | Literal):
                values.setdefault(t.predicate, []).append(t.object)
        unknown = set(values) - _RECORD_PREDICATES
        if unknown:
            raise RecordError(f"the record {node.value} holds {min(p.value for p in unknown)}, which a record does "
                              "not hold")

        def one(predicate: NamedNode, *, optional: bool = False) -> str | None:
            found = values.get(predicate, [])
            if len(found) > 1 or (not found and not optional):
                raise RecordError(f"the record {node.value} has {len(found)} {_short(predicate)}, not one")
            return found[0].value if found else None

        def many(predicate: NamedNode) -> tuple[str, ...]:
            return tuple(sorted(v.value for v in values.get(predicate, [])))

        if values.get(RDF_TYPE) != [PHT.ExecutionRecord]:
            raise RecordError(f"{node.value} is not typed pht:ExecutionRecord (alone)")
        approved, released = one(PHT.approvedHow), one(PHT.releasedHow)
        if approved not in HOWS or released not in HOWS:
            raise RecordError(f"the record {node.value} says neither auto nor admin for its approval or release")
        try:
            stop = one(PHT.recordStop, optional=True)
            record = cls(execution=str(one(PHT.recordOf)), train=str(one(PHT.recordTrain)),
                         station=str(one(PHT.recordStation)), round=int(str(one(PHT.recordRound))),
                         stop=None if stop is None else int(stop),
                         signed_request_hash=str(one(PHT.signedRequestHash)), image_digest=str(one(PHT.ranImage)),
                         input_digests=many(PHT.inputDigest), previous_record_hashes=many(PHT.previousRecordHash),
                         output_digest=str(one(PHT.outputDigest)),
                         approved_how="auto" if approved == "auto" else "admin",
                         released_how="auto" if released == "auto" else "admin",
                         started=str(one(PHT.runStarted)), ended=str(one(PHT.runEnded)),
                         disclosure=DisclosureControl.from_statements(statements, node))
        except ValueError as e:
            if isinstance(e, RecordError):
                raise
            raise RecordError(f"the record {node.value} holds a round or stop that is not a whole number") from None
        if record.node != node:
            raise RecordError(f"the record {node.value} is about execution {record.execution}, whose record is "
                              f"{record.node.value}")
        given = {Triple(t.subject, t.predicate, t.object) for t in statements
                 if t.subject == node or _part_of(t.subject, node)}
        if record.triples_set() != given:
            raise RecordError(f"the record {node.value} is not in the form a station signs (a value is of the "
                              "wrong type or written twice)")
        return record

    def triples_set(self) -> set[Triple]:
        return set(self.triples())


_RECORD_PREDICATES = frozenset({RDF_TYPE, PHT.recordOf, PHT.recordTrain, PHT.recordStation, PHT.recordRound,
                                PHT.recordStop, PHT.signedRequestHash, PHT.ranImage, PHT.outputDigest,
                                PHT.approvedHow, PHT.releasedHow, PHT.runStarted, PHT.runEnded,
                                PHT.inputDigest, PHT.previousRecordHash, PHT.disclosureControl})


def _part_of(subject: object, record: NamedNode) -> bool:
    """Whether ``subject`` is a node of the record's disclosure-control part (``{record}/disclosure...``)."""
    return isinstance(subject, NamedNode) and subject.value.startswith(record.value + "/disclosure")


def _short(predicate: NamedNode) -> str:
    return predicate.value.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def sign_record(record: ExecutionRecord, key: Ed25519PrivateKey, *, verification_method: str,
                created: datetime) -> Proof:
    """The station's proof over ``record`` (``verification_method``: the IRI of its registered signing key)."""
    return create_proof(record.triples(), key, verification_method=verification_method, created=created)


def verify_record(record: ExecutionRecord, proof: Proof, keys: dict[str, PublicKeyRecord], *, now: datetime) -> None:
    """Check that the record's station signed it with a key of its that verifies a signature made when the proof
    says (``keys``: the registry's keys by IRI).

    :raises ProofError: the key is not the station's signing key, is revoked or rotated out, or the signature does
        not verify.
    """
    key = keys.get(proof.verification_method)
    if key is None or key.use != "signing" or key.controller != record.station:
        raise ProofError(f"the record of {record.execution} is signed by {proof.verification_method}, which is not "
                         f"a signing key of its station {record.station}")
    why = key.unusable_because(created=proof.created_at, now=now)
    if why is not None:
        raise ProofError(f"the record of {record.execution} is signed by {proof.verification_method}, which is {why}")

    def resolve(iri: str) -> Ed25519PublicKey | None:
        try:
            return decode_signing_key(key.multibase) if iri == key.iri else None
        except KeyFormatError:
            return None

    verify_proof(record.triples(), proof, resolve)


@dataclass(frozen=True)
class Hop:
    """An execution as the graph holds it, for :func:`verify_chain`."""

    execution: str
    station: str
    round: int
    stop: int | None
    state: str
    output_digest: str | None
    input_executions: tuple[str, ...]
    approved: bool  #: the graph records a step of this execution into "approved"


@dataclass
class ChainVerdict:
    """The outcome of :func:`verify_chain`: ``breaks`` names every problem found, one sentence each."""

    train: str
    hops: int = 0
    verified_hops: int = 0
    breaks: list[str] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.breaks and self.hops > 0


def verify_chain(statements: Sequence[Statement], train: str, *, now: datetime,
                 planned_hops: Callable[[Sequence[Statement], NamedNode], int] | None = None) -> ChainVerdict:
    """Check the history of ``train`` in ``statements`` (``sparql_queries/train_provenance.rq``'s answer): the
    researcher's signed request verifies with the requester's key; every released hop has a record its station
    signed; each record names this train, its execution's station, the signed request's hash and image, the output
    digest the graph records and the inputs the hop used, with the hashes of the records of the hops that made
    them; the graph records each hop's approval; a finished train has every hop its definition plans."""
    verdict = ChainVerdict(train)
    t = NamedNode(train)
    keys = key_records(statements)
    request_hash, image = _check_request(statements, t, keys, now, verdict)
    hops = _hops(statements, t)
    verdict.hops = len(hops)
    records: dict[str, ExecutionRecord] = {}
    for hop in hops.values():
        if hop.state != str(PHT.Released.value) and hop.output_digest is None:
            continue  # not released (yet): nothing signed to check
        record = _checked_record(statements, hop, keys, now, verdict)
        if record is not None:
            records[hop.execution] = record
    digests = {e: r.digest() for e, r in records.items()}
    for hop in hops.values():
        record = records.get(hop.execution)
        if record is None:
            continue
        where = _where(hop)
        problems = []
        if request_hash is not None and record.signed_request_hash != request_hash:
            problems.append(f"{where} ran another signed request than the train's (its station signed "
                            f"{record.signed_request_hash[:12]}..., the train's is {request_hash[:12]}...)")
        if image is not None and record.image_digest != image:
            problems.append(f"{where} ran image {record.image_digest}, not the signed {image}")
        if record.train != train or record.station != hop.station or record.round != hop.round \
                or record.stop != hop.stop:
            problems.append(f"the record of {where} is about another train, station, round or stop than the graph "
                            "says")
        if record.output_digest != hop.output_digest:
            problems.append(f"the output digest of {where} in the graph ({(hop.output_digest or 'none')[:12]}...) "
                            f"differs from the one its station signed ({record.output_digest[:12]}...)")
        given = tuple(sorted(hops[e].output_digest or "" for e in hop.input_executions if e in hops))
        if record.input_digests != given or len(hop.input_executions) != len(given):
            problems.append(f"the inputs of {where} in the graph differ from the ones its station signed")
        previous = tuple(sorted(digests.get(e, "") for e in hop.input_executions))
        if record.previous_record_hashes != previous:
            missing = [e for e in hop.input_executions if e not in digests]
            problems.append(f"{where} names {len(record.previous_record_hashes)} previous record(s) that the graph "
                            + (f"does not hold (no signed record of {_short(NamedNode(missing[0]))})" if missing
                               else "holds in another form: a record before it was changed or replaced"))
        if not hop.approved:
            problems.append(f"the graph holds no approval of {where}, which its station signed as approved "
                            f"({record.approved_how})")
        if problems:
            verdict.breaks += problems
        else:
            verdict.verified_hops += 1
    produced = {r.output_digest for r in records.values()}
    for record in records.values():
        for digest in record.input_digests:
            if digest not in produced:
                verdict.breaks.append(f"{_short(NamedNode(record.execution))} used an input ({digest[:12]}...) that "
                                      "no signed record produced: a hop is missing")
    planned = planned_hops(statements, t) if planned_hops is not None else _planned_hops(statements, t)
    if _train_finished(statements, t) and planned and len(records) < planned:
        verdict.breaks.append(f"the train finished, but only {len(records)} of its {planned} hops have a signed "
                              "record: a hop is missing")
    return verdict


def _check_request(statements: Sequence[Statement], train: NamedNode, keys: dict[str, PublicKeyRecord],
                   now: datetime, verdict: ChainVerdict) -> tuple[str | None, str | None]:
    """Verify the train's signed request; (its hash, the signed image digest), or Nones after naming the break."""
    requests = [s.object for s in statements if s.subject == train and s.predicate == PHT.signedRequest]
    if len(requests) != 1 or not isinstance(requests[0], NamedNode):
        verdict.breaks.append("the train has no signed request (an unsigned train cannot be verified)")
        return None, None
    request = requests[0]
    try:
        document = signed_request_document(statements, request)
        proof = Proof.from_quads(statements, NamedNode(train.value + "/request-proof"))
    except (ProofError, ValueError) as e:
        verdict.breaks.append(f"the train's signed request cannot be read: {e}")
        return None, None
    requester = next((_text(s.object) for s in document
                      if s.subject == request and s.predicate == PHT.requestedBy), "")
    key = keys.get(proof.verification_method)
    try:
        if key is None or key.controller != requester or key.use != "signing":
            raise ProofError(f"it is signed by {proof.verification_method}, not a signing key of its requester")
        why = key.unusable_because(created=proof.created_at, now=now)
        if why is not None:
            raise ProofError(f"it is signed by {proof.verification_method}, which is {why}")
        verify_proof(document, proof, lambda iri: decode_signing_key(key.multibase) if iri == key.iri else None)
    except (ProofError, KeyFormatError) as e:
        verdict.breaks.append(f"the train's signed request does not verify: {e}")
        return None, None
    definition = next((s.object for s in document if s.subject == request and s.predicate == PHT.ofDefinition), None)
    image = next((_text(s.object) for s in document if s.subject == definition and s.predicate == PHT.imageDigest),
                 None)
    return document_hash(document), image


def _checked_record(statements: Sequence[Statement], hop: Hop, keys: dict[str, PublicKeyRecord], now: datetime,
                    verdict: ChainVerdict) -> ExecutionRecord | None:
    where = _where(hop)
    node = record_node(hop.execution)
    if not any(s.subject == node for s in statements):
        verdict.breaks.append(f"{where} has no signed record of its station")
        return None
    try:
        record = ExecutionRecord.from_statements(statements, node)
        verify_record(record, Proof.from_quads(statements, proof_node(hop.execution)), keys, now=now)
    except (RecordError, ProofError) as e:
        verdict.breaks.append(f"the record of {where} does not verify: {e}")
        return None
    return record


def _hops(statements: Sequence[Statement], train: NamedNode) -> dict[str, Hop]:
    """The train's executions as the graph holds them."""
    about: dict[object, dict[NamedNode, list[str]]] = {}
    for s in statements:
        about.setdefault(s.subject, {}).setdefault(s.predicate, []).append(_text(s.object))

    def objects(subject: object, predicate: NamedNode) -> list[str]:
        return about.get(subject, {}).get(predicate, [])

    executions = [s.subject for s in statements if s.predicate == PHT.ofTrain and s.object == train
                  and isinstance(s.subject, NamedNode)]
    outputs = {_text(s.object): s.subject for s in statements if s.predicate == PROV.wasGeneratedBy}
    by_output = {_text(o): e for e, o in outputs.items()}
    approved = {_text(s.object) for s in statements if s.predicate == PHT.aboutExecution
                and PHT.Approved.value in objects(s.subject, PHT.toState)}
    hops = {}
    for e in executions:
        stop_nodes = objects(e, PHT.forStop)
        stops = objects(NamedNode(stop_nodes[0]), PHT.stopIndex) if stop_nodes else []
        output = outputs.get(e.value)
        sha = objects(output, PHT.sha256) if output is not None else []
        inputs = tuple(sorted(by_output[u] for u in objects(e, PROV.used) if u in by_output))
        hops[e.value] = Hop(execution=e.value, station=(objects(e, PHT.atStation) or [""])[0],
                            round=int((objects(e, PHT.round) or ["0"])[0]),
                            stop=int(stops[0]) if stops else None, state=(objects(e, PHT.state) or [""])[0],
                            output_digest=sha[0] if sha else None, input_executions=inputs,
                            approved=e.value in approved)
    return hops


def _planned_hops(statements: Sequence[Statement], train: NamedNode) -> int:
    """How many executions the train's signed definition plans: each round every stop, plus the aggregation of
    each round when federated (0 when the definition cannot be read)."""
    request = next((s.object for s in statements if s.subject == train and s.predicate == PHT.signedRequest), None)
    definition = next((s.object for s in statements if s.subject == request and s.predicate == PHT.ofDefinition),
                      None)
    if definition is None:
        return 0
    stops = sum(1 for s in statements if s.subject == definition and s.predicate == PHT.routeStop)
    rounds = next((int(_text(s.object)) for s in statements if s.subject == definition and s.predicate == PHT.rounds),
                  1)
    federated = any(s.subject == definition and s.predicate == PHT.mode and s.object == PHT.Federated
                    for s in statements)
    return rounds * (stops + (1 if federated else 0))


def _train_finished(statements: Sequence[Statement], train: NamedNode) -> bool:
    return any(s.subject == train and s.predicate == PHT.state and s.object == PHT.Finished for s in statements)


def _text(term: object) -> str:
    """An IRI's, blank node's or literal's string (RDF-star triples, which this graph never holds, give "")."""
    return term.value if isinstance(term, NamedNode | BlankNode | Literal) else ""


def _where(hop: Hop) -> str:
    station = hop.station.rsplit("/", 1)[-1]
    what = f"stop {hop.stop}" if hop.stop is not None else "the aggregation"
    return f"{what} of round {hop.round} at {station} ({_short(NamedNode(hop.execution))})"


def record_time(moment: datetime) -> str:
    """``moment`` as a record's ``xsd:dateTime`` lexical form: UTC, whole seconds, ``Z`` (the form a store keeps as
    is; a fraction like ``.30`` would be stored as ``.3`` and the stored record would no longer be the signed one)."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")

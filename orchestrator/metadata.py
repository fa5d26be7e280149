"""Metadata a station's MPU pushes: verified, checked, then one validated write of the station's own graph.

A batch (``graph_store._signed_batch``) is accepted only if, in this order:

1. the station is registered (404) and has a signing key (403), the batch is signed (400 without usable
   signature, sequence and creation headers) by one of its registered Ed25519 keys (``sec:assertionMethod``
   Multikeys) over the exact body, its station id, batch id, sequence and creation time, with a key that
   verifies a signature of that time (``orchestrator.keys``: not revoked, not rotated out before the batch's
   ``X-PHT-Created``) -- 401 otherwise: forged, altered, or signed with a revoked or retired key;
2. its sequence is greater than that of the last batch accepted from the station, and its id is not that
   batch's (409 otherwise: a replayed batch, or an older one sent after a newer -- which would roll the
   station's description back); the answer says whether it is the very batch last accepted
   (``already_accepted``: its acknowledgement was lost, so the MPU counts it as delivered) and the last
   accepted sequence;
3. the body is N-Triples without blank nodes (400) -- triples, not quads: everything lands in the station's
   own graph, no other graph can be named;
3. every subject is one of the station's events (an IRI under ``{base}stations/{id}/events/``, typed with
   ``pht:Event`` or a subclass, using only event properties, emitted by this station, about a registered
   train this station takes part in and, if it names one, about an execution at this station) or the station's
   description (the station itself, or a dataset it holds: ``dcterms:description``, ``dcat:keyword``, a dataset's
   ``pht:variable`` ``{dataset}/variables/{name}`` and those variables' name, datatype, unit and code system: never
   a value) -- otherwise 422 naming each refused subject and why;
5. the write conforms to the shapes (422 with the SHACL report, and the subjects it concerns).

Then it is ONE ``GraphStore.apply`` of the station's graph, which also records the batch's receipt
(``pht:BatchReceipt`` ``{station IRI}/batches/{sequence}`` in the station's graph: the batch's sequence, id and
creation time): atomic, nothing of a refused batch is written. Receipts are only ever added (each accepted
batch keeps its own, an account of what was accepted when), so a batch is an insert-only write, the store's
fastest; the latest receipt is read from the store once per station, then remembered, and batches of one
station are checked and written one at a time. Of two services racing on one store, the second to write a
sequence fails the receipt's shape (one batch id per sequence) and is checked again. Event IRIs are stable,
so the MPU's events sent again in a new batch (the acknowledgement of the first was lost) write nothing new.
A description replaces the station's previous description of the same resource (a dataset's variables with it).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property

import rdflib
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Triple

from graph_store import (
    BATCH_MEDIA_TYPE,
    CENTRAL_GRAPH,
    CREATED_HEADER,
    DCAT,
    DCTERMS,
    PHT,
    PHT_NS,
    PROV,
    RDF_TYPE,
    SEQUENCE_HEADER,
    XSD,
    ChangeSet,
    ConflictError,
    GraphStore,
    InvalidInputError,
    ValidationFailed,
    parse_rdf,
    parse_sequence,
    station_event_prefix,
    station_graph,
    verify_batch,
)

from .errors import LifecycleError, NotFound
from .keys import PublicKeyRecord, parse_time, signing_keys
from .naming import Iris

__all__ = ["MetadataIntake", "MetadataRefused", "Accepted", "BadSignature", "BatchReplayed", "Receipt"]

DESCRIPTION_PREDICATES = frozenset({DCTERMS.description, DCAT.keyword})
DATASET_PREDICATES = DESCRIPTION_PREDICATES | {PHT.variable}
"""What a station says about a dataset it holds: a description, keywords, its variables ({dataset}/variables/...)."""
VARIABLE_PREDICATES = frozenset({RDF_TYPE, PHT.variableName, PHT.variableDatatype, PHT.variableUnit, PHT.codeSystem})
"""What a station says about a variable of its dataset (ontology/variables.ttl): never a value of it."""


class MetadataRefused(LifecycleError):
    """The batch's triples are not all this station's to write (422); ``refused`` maps subject -> reason."""

    status = 422

    def __init__(self, message: str, refused: dict[str, str]) -> None:
        super().__init__(message)
        self.refused = refused


class BadSignature(LifecycleError):
    """The batch is not signed by a registered key of the station (forged, altered, or an unknown key)."""

    status = 401


class BatchReplayed(LifecycleError):
    """A batch whose sequence is not greater than the last accepted one, or whose id that batch had (409).

    ``already_accepted``: it is the very batch last accepted (same id and sequence), so everything in it is
    written; ``last_sequence``: the sequence of the last accepted batch.
    """

    status = 409

    def __init__(self, message: str, *, already_accepted: bool, last_sequence: int) -> None:
        super().__init__(message)
        self.already_accepted = already_accepted
        self.last_sequence = last_sequence


@dataclass(frozen=True)
class Receipt:
    """The last batch accepted from a station, as its ``pht:BatchReceipt`` records it (``iri``: the receipt)."""

    sequence: int
    batch: str
    iri: NamedNode


@dataclass(frozen=True)
class Accepted:
    """What a pushed batch wrote."""

    batch: str
    events: int
    described: int
    triples: int
    graph: str


class MetadataIntake:
    """Checks and writes pushed batches; one per service."""

    def __init__(self, store: GraphStore, iris: Iris) -> None:
        self.store = store
        self.iris = iris
        self._latest: dict[str, Receipt | None] = {}  # station id -> its latest receipt, once read
        self._station_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @cached_property
    def _event_vocabulary(self) -> tuple[frozenset[NamedNode], frozenset[NamedNode]]:
        """(event classes, event properties), read from the ontology: pht:Event and its subclasses, and the
        properties whose domain is one of them (plus rdf:type and prov:wasAssociatedWith)."""
        g = self.store.schema.ontology
        event = rdflib.URIRef(PHT_NS + "Event")
        classes = {c for c in g.transitive_subjects(rdflib.RDFS.subClassOf, event) if isinstance(c, rdflib.URIRef)}
        props = {p for c in classes for p in g.subjects(rdflib.RDFS.domain, c) if isinstance(p, rdflib.URIRef)}
        return (frozenset(NamedNode(str(c)) for c in classes),
                frozenset(NamedNode(str(p)) for p in props) | {RDF_TYPE, PROV.wasAssociatedWith})

    def accept(self, *, station_id: str, batch_id: str, signature: str | None, key_id: str | None,
               body: bytes, sequence: str | None = None, created: str | None = None) -> Accepted:
        """Verify, check and write one batch (see the module docstring); raises a LifecycleError subclass
        (404, 400, 401, 403, 409, 422), InvalidInputError (400) or ValidationFailed (422), nothing written then.
        ``sequence`` and ``created`` are the ``X-PHT-Sequence`` and ``X-PHT-Created`` headers as sent."""
        station, keys = self._station(station_id)
        if not signature or not batch_id or not created:
            raise LifecycleError("a metadata batch needs the headers X-PHT-Batch, X-PHT-Sequence, X-PHT-Created and "
                                 "X-PHT-Signature (Ed25519, base64); see docs/mpu.md")
        try:
            number = parse_sequence(sequence)
        except ValueError as e:
            raise LifecycleError(f"{e}; see docs/mpu.md") from None
        if not keys:
            raise _Forbidden(f"station {station_id!r} has no signing key registered, so no batch of it can be "
                             "verified; enroll the station's keys (pht station enroll)")
        try:
            signed_at = parse_time(created)
        except ValueError:
            raise LifecycleError(f"the batch's creation time ({CREATED_HEADER}) {created!r} is not an RFC 3339 time in "
                                 "UTC") from None
        usable = signing_keys(keys, created=signed_at, now=datetime.now(timezone.utc))
        try:
            signer = verify_batch(usable, station_id, batch_id, body, signature, sequence=number, created=created,
                                  signed_by=key_id or None)
        except ValueError as e:
            raise LifecycleError(f"the batch's signature headers are malformed: {e}") from None
        if signer is None:
            which = f"the key {key_id}" if key_id else "any"
            raise BadSignature(f"the batch's signature does not verify with {which} of the usable Ed25519 keys "
                               f"registered for station {station_id!r}: forged, altered, signed with an unregistered "
                               "key, a revoked one, or one rotated out before the batch's time; nothing was written")
        with self._station_lock(station_id):
            return self._write(station_id, station, batch_id, number, created, body)

    def _station_lock(self, station_id: str) -> threading.Lock:
        """One lock per station: its batches are checked against the latest receipt and written one at a time."""
        with self._locks_lock:
            return self._station_locks.setdefault(station_id, threading.Lock())

    def _write(self, station_id: str, station: NamedNode, batch_id: str, number: int, created: str,
               body: bytes) -> Accepted:
        """Under the station's lock: refuse a replay, check the subjects, write the batch with its receipt."""
        graph = station_graph(station_id)
        receipt = self._latest_receipt(station_id, station, graph)
        self._check_new(station_id, batch_id, number, receipt)  # before any work: a replay costs no store access
        try:
            quads = parse_rdf(body, BATCH_MEDIA_TYPE, graph)
        except InvalidInputError as e:
            raise LifecycleError(f"the batch is not N-Triples without blank nodes: {e}") from None
        events, described = self._check(quads, station_id, station)
        receipt_iri = NamedNode(f"{station.value}/batches/{number}")
        new_receipt = [Quad(receipt_iri, RDF_TYPE, PHT.BatchReceipt, graph),
                       Quad(receipt_iri, PHT.receiptOf, station, graph),
                       Quad(receipt_iri, PHT.batchSequence, Literal(str(number), datatype=XSD.integer), graph),
                       Quad(receipt_iri, PHT.batchId, Literal(batch_id), graph),
                       Quad(receipt_iri, PHT.batchCreated, Literal(created, datatype=XSD.dateTime), graph)]
        for attempt in range(3):  # another writer of the store (an operator, another service) may have been first
            if attempt:
                receipt = self._latest_receipt(station_id, station, graph, reread=True)
                self._check_new(station_id, batch_id, number, receipt)
            delete = self._previous_description(described, graph)
            guard = [] if receipt is None else [
                Quad(receipt.iri, PHT.batchSequence, Literal(str(receipt.sequence), datatype=XSD.integer), graph)]
            try:
                self.store.apply(ChangeSet(delete=delete, insert=[*quads, *new_receipt], guard=guard))
            except ConflictError:
                continue
            except ValidationFailed as e:
                if any(r.focus_node == receipt_iri for r in e.report.results):
                    continue  # another service accepted a batch with this sequence meanwhile
                subjects = {q.subject for q in quads}
                raise _ShapesRefused(e, {r.focus_node.value: r.message for r in e.report.results
                                         if r.focus_node in subjects and isinstance(r.focus_node, NamedNode)}) from None
            self._latest[station_id] = Receipt(number, batch_id, receipt_iri)
            return Accepted(batch=batch_id, events=len(events), described=len(described), triples=len(quads),
                            graph=graph.value)
        raise ConflictError(f"other batches of station {station_id!r} kept being accepted meanwhile; nothing of "
                            f"batch {batch_id!r} was written, send it again")

    def _previous_description(self, described: set[NamedNode], graph: NamedNode) -> list[Quad]:
        """What the station published before about the resources it describes again (a dataset's variables too)."""
        old = [q for s in described for p in DATASET_PREDICATES for q in self.store.quads(s, p, None, graph)]
        variables = {q.object for q in old if q.predicate == PHT.variable and isinstance(q.object, NamedNode)}
        return old + [q for v in variables for q in self.store.quads(v, None, None, graph)]

    def _latest_receipt(self, station_id: str, station: NamedNode, graph: NamedNode, *, reread: bool = False,
                        ) -> Receipt | None:
        """The station's latest batch receipt (None before its first batch): remembered after the first read
        and every write, read again from the store when a write found the store changed."""
        if reread or station_id not in self._latest:
            rows = list(self.store.run_query("last_batch_receipt", station=station, graph=graph))
            self._latest[station_id] = None if not rows else Receipt(
                int(rows[0]["sequence"].value), rows[0]["batch"].value, rows[0]["receipt"])
        return self._latest[station_id]

    @staticmethod
    def _check_new(station_id: str, batch_id: str, sequence: int, receipt: Receipt | None) -> None:
        """BatchReplayed unless the batch is newer than the last accepted one and has another id."""
        if receipt is None:
            return
        if batch_id == receipt.batch and sequence == receipt.sequence:
            raise BatchReplayed(f"batch {batch_id!r} (sequence {sequence}) of station {station_id!r} was already "
                                "accepted; nothing was written again", already_accepted=True,
                                last_sequence=receipt.sequence)
        if sequence <= receipt.sequence:
            raise BatchReplayed(f"the batch's {SEQUENCE_HEADER} {sequence} is not greater than that of the last "
                                f"batch accepted from station {station_id!r} ({receipt.sequence}): a replayed or "
                                "older batch is refused, nothing was written", already_accepted=False,
                                last_sequence=receipt.sequence)
        if batch_id == receipt.batch:
            raise BatchReplayed(f"batch id {batch_id!r} was already accepted from station {station_id!r}; a new "
                                "batch needs a new id, nothing was written", already_accepted=False,
                                last_sequence=receipt.sequence)

    def _station(self, station_id: str) -> tuple[NamedNode, list[PublicKeyRecord]]:
        """The station and its signing keys (rotated out and revoked ones too: ``signing_keys`` decides)."""
        rows = list(self.store.run_query("station_keys", stationId=Literal(station_id)))
        if not rows:
            raise NotFound(f"no station {station_id!r} is registered")
        station = rows[0]["station"]
        return station, [PublicKeyRecord.from_row(r, controller=station.value, use="signing")
                         for r in rows if r["key"] is not None]

    def _check(self, quads: list[Quad], station_id: str, station: NamedNode) -> tuple[set[NamedNode], set[NamedNode]]:
        """(event subjects, described subjects); MetadataRefused naming every subject that is neither."""
        prefix = station_event_prefix(self.iris.base, station_id)
        by_subject: dict[NamedNode | BlankNode | Triple, list[Quad]] = defaultdict(list)
        for q in quads:
            by_subject[q.subject].append(q)
        refused: dict[str, str] = {}
        events: set[NamedNode] = set()
        described: set[NamedNode] = set()
        known: dict[tuple[object, ...], str | None] = {}  # lookups in the central graph, once per batch
        neither = (f"neither an event of station {station_id!r} (IRIs under {prefix}) nor the station, "
                   "one of its datasets or one of their variables")
        for subject, props in by_subject.items():
            if not isinstance(subject, NamedNode):  # a blank node or a triple term is neither
                refused[subject.value if isinstance(subject, BlankNode) else str(subject)] = neither
                continue
            iri = subject.value
            if iri.startswith(prefix) and len(iri) > len(prefix):
                why = self._event_problem(props, station, known)
                if why is None:
                    events.add(subject)
                else:
                    refused[iri] = why
            elif subject == station or self.store.quads(subject, PHT.heldBy, station, CENTRAL_GRAPH):
                why = _description_problem(subject, props, dataset=subject != station)
                if why is None:
                    described.add(subject)
                else:
                    refused[iri] = why
            elif "/variables/" in iri and self.store.quads(NamedNode(iri.split("/variables/", 1)[0]), PHT.heldBy,
                                                           station, CENTRAL_GRAPH):
                why = _variable_problem(props)
                if why is not None:
                    refused[iri] = why
            else:
                refused[iri] = neither
        if refused:
            first = min(refused)
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            raise MetadataRefused(f"{first}: {refused[first]}{more}; nothing was written", refused)
        return events, described

    def _event_problem(self, props: list[Quad], station: NamedNode, known: dict[tuple[object, ...], str | None],
                       ) -> str | None:
        """Why a subject under the station's event prefix may not be written, or None if it may."""
        classes, properties = self._event_vocabulary
        typed, trains, executions = False, [], []
        for q in props:
            p, o = q.predicate, q.object
            if p not in properties:
                return f"not an event property: {p.value}"
            if p == RDF_TYPE:
                if o not in classes:
                    return "an event is typed with pht:Event or a subclass of it, and with nothing else"
                typed = True
            elif p == PHT.emittedBy:
                if o != station:
                    return f"a station reports only events it emitted itself (pht:emittedBy {station.value})"
            elif p == PHT.aboutTrain:
                trains.append(o)
            elif p == PHT.aboutExecution:
                executions.append(o)
        if not typed:
            return "an event is typed with pht:Event or a subclass of it, and with nothing else"
        for train in trains:
            if ("train", train) not in known:
                known[("train", train)] = self._train_problem(train, station)
            if known[("train", train)] is not None:
                return known[("train", train)]
        for execution in executions:
            if ("execution", execution) not in known:
                known[("execution", execution)] = self._execution_problem(execution, station)
            if known[("execution", execution)] is not None:
                return known[("execution", execution)]
            for train in trains:
                key = ("of", execution, train)
                if key not in known:
                    known[key] = None if self.store.quads(execution, PHT.ofTrain, train, CENTRAL_GRAPH) else (
                        f"the execution {_value(execution)} is not an execution of the event's train")
                if known[key] is not None:
                    return known[key]
        return None

    def _train_problem(self, train: object, station: NamedNode) -> str | None:
        if not isinstance(train, NamedNode) or not self.store.quads(train, RDF_TYPE, PHT.Train, CENTRAL_GRAPH):
            return f"unknown train {_value(train)}: the central service has no such train"
        if not any(self.store.quads(q.subject, PHT.atStation, station, CENTRAL_GRAPH)
                   for q in self.store.quads(None, PHT.ofTrain, train, CENTRAL_GRAPH)):
            return f"the train {_value(train)} does not visit this station"
        return None

    def _execution_problem(self, execution: object, station: NamedNode) -> str | None:
        if not isinstance(execution, NamedNode):
            return f"unknown execution {_value(execution)}"
        at = self.store.quads(execution, PHT.atStation, None, CENTRAL_GRAPH)
        if not at:
            return f"unknown execution {_value(execution)}: the central service has no such execution"
        if all(q.object != station for q in at):
            return f"the execution {_value(execution)} runs at another station"
        return None


class _Forbidden(LifecycleError):
    status = 403


class _ShapesRefused(MetadataRefused):
    """The write violates the shapes; carries the report."""

    def __init__(self, failed: ValidationFailed, refused: dict[str, str]) -> None:
        super().__init__("the batch violates the shapes; nothing was written", refused)
        self.report = failed.report


def _value(term: object) -> str:
    return str(getattr(term, "value", term))


def _description_problem(subject: NamedNode, props: list[Quad], *, dataset: bool) -> str | None:
    """Why a station may not write ``props`` about itself or a dataset it holds, or None if it may."""
    allowed = DATASET_PREDICATES if dataset else DESCRIPTION_PREDICATES
    wrong = sorted({q.predicate.value for q in props if q.predicate not in allowed})
    if wrong:
        return (f"a station describes itself and its datasets only with dcterms:description, dcat:keyword and "
                f"(a dataset) pht:variable, not {', '.join(wrong)}")
    for q in props:
        if q.predicate == PHT.variable:
            if not (isinstance(q.object, NamedNode) and q.object.value.startswith(subject.value + "/variables/")):
                return f"a dataset's variables are named under {subject.value}/variables/"
        elif not isinstance(q.object, Literal):
            return "descriptions and keywords are literals"
    return None


def _variable_problem(props: list[Quad]) -> str | None:
    """Why a station may not write ``props`` about a variable of its dataset, or None if it may."""
    wrong = sorted({q.predicate.value for q in props if q.predicate not in VARIABLE_PREDICATES})
    if wrong:
        return (f"a variable is described only by its type, name, datatype, unit and code system "
                f"(ontology/variables.ttl), not {', '.join(wrong)}")
    if any(q.predicate == RDF_TYPE and q.object != PHT.Variable for q in props):
        return "a variable is typed pht:Variable and nothing else"
    return None

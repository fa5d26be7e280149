"""The station-signed record that comes with a release: checked, then stored beside the output it accounts for.

The station signs what it did (``client.execution_records``); the central service cannot change that record
unnoticed, but it refuses one that would only make ``pht verify`` fail later: a record about another execution,
train or station, naming another output than the one released, in a form a station does not sign, or whose
signature does not verify with a signing key of the execution's station (revoked and rotated-out keys verify
nothing new). Accepted, the record and its proof are written in the same write as the release, linked from the
execution (``pht:executionRecord``, ``pht:recordProof``).
"""

from __future__ import annotations

from datetime import datetime

from pyoxigraph import NamedNode, Quad, RdfFormat, Triple, parse

from client.execution_records import (
    ExecutionRecord,
    RecordError,
    document_hash,
    proof_node,
    record_node,
    verify_record,
)
from graph_store import CENTRAL_GRAPH, PHT, PROV, ChangeSet, GraphStore
from trust import Proof, ProofError

from .errors import Forbidden, InvalidValue
from .keys import KeyDirectory

__all__ = ["MAX_RECORD_BYTES", "input_record_hash", "record_quads"]

G = CENTRAL_GRAPH
MAX_RECORD_BYTES = 16_384
"""A record and its proof are about 2 KB with a handful of inputs; an aggregation of 50 stations stays far below."""


def record_quads(directory: KeyDirectory, *, execution: NamedNode, train: NamedNode, station: NamedNode,
                 output_sha256: str, ntriples: str, now: datetime) -> list[Quad]:
    """The quads that store the signed record ``ntriples`` (the record and its proof as N-Triples) of
    ``execution``, released with the output ``output_sha256``.

    :raises InvalidValue: (422) the text is not N-Triples of one record and its proof, or the record is about
        another execution, train or station, or names another output.
    :raises Forbidden: (403) the signature does not verify with a current signing key of ``station``.
    """
    if len(ntriples.encode("utf-8")) > MAX_RECORD_BYTES:
        raise InvalidValue(f"the execution record is larger than {MAX_RECORD_BYTES} bytes")
    node, proof_at = record_node(execution.value), proof_node(execution.value)
    try:
        triples = [Triple(q.subject, q.predicate, q.object)
                   for q in parse(ntriples.encode("utf-8"), format=RdfFormat.N_TRIPLES)]
    except SyntaxError as e:
        raise InvalidValue(f"the execution record is not N-Triples: {str(e).splitlines()[0]}") from None
    strangers = {t.subject for t in triples if not (isinstance(t.subject, NamedNode)  # its disclosure-control part
                                                    and t.subject.value.startswith(node.value + "/disclosure"))}
    strangers -= {node, proof_at}
    if strangers:
        raise InvalidValue(f"the execution record speaks of {min(str(s) for s in strangers)}, which is neither "
                           f"the record {node.value} nor its proof")
    try:
        record = ExecutionRecord.from_statements(triples, node)
        proof = Proof.from_quads(triples, proof_at)
    except (RecordError, ProofError) as e:
        raise InvalidValue(f"the execution record cannot be read: {e}") from None
    if record.train != train.value or record.station != station.value:
        raise InvalidValue(f"the execution record names train {record.train} at station {record.station}, not this "
                           "execution's")
    if record.output_digest != output_sha256:
        raise InvalidValue(f"the execution record names the output {record.output_digest}, not the released "
                           f"{output_sha256}")
    key = directory.record(proof.verification_method)
    try:
        verify_record(record, proof, {key.iri: key} if key is not None else {}, now=now)
    except ProofError as e:
        raise Forbidden(f"the execution record's signature was refused: {e}") from None
    quads = ([Quad(t.subject, t.predicate, t.object, G) for t in record.triples()]
             + [Quad(t.subject, t.predicate, t.object, G) for t in proof.to_triples(proof_at)])
    stored = set(ChangeSet(insert=quads).insert)
    altered = [q for q in quads if q not in stored]
    if altered:  # stored, it would no longer be what was signed: pht verify would call it forged
        raise InvalidValue(f"the execution record's {altered[0].object} is not in the form the store keeps it (a "
                           "time with trailing zeros in its fraction, a number with leading zeros); sign it in that "
                           "form")
    return quads + [Quad(execution, PHT.executionRecord, node, G), Quad(execution, PHT.recordProof, proof_at, G)]


def input_record_hash(store: GraphStore, output: str) -> str:
    """The hash of the signed record of the execution that generated ``output`` (an output's IRI), as the central
    graph holds it; "" if it has none. The station names it in its own record: the link of the chain. The station
    takes it on trust, which is safe: a wrong hash breaks the chain ``pht verify`` checks."""
    for generated in store.quads(NamedNode(output), PROV.wasGeneratedBy, None, G):
        for link in store.quads(generated.object, PHT.executionRecord, None, G):
            nodes = [link.object]  # the record, and its disclosure-control part (which the station signed with it)
            for part in store.quads(link.object, PHT.disclosureControl, None, G):
                nodes += [part.object] + [r.object for r in store.quads(part.object, PHT.ruleApplied, None, G)]
            triples = [Triple(q.subject, q.predicate, q.object) for n in nodes for q in store.quads(n, None, None, G)]
            return document_hash(triples) if triples else ""
    return ""

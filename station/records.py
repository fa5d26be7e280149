"""The station's signed record of each execution it releases (``client.execution_records``), drafted and signed here.

When the output is held for review, the agent writes a draft of the record next to it (``record.json``: what ran,
on which inputs, with which output, approved how, when), because the release may come later from another process
(``pht station release`` on the station host). The release then adds how it was released, signs the record with
the station's signing key (``PHT_STATION_KEYS_DIR``) naming the station's registered key, and sends it with the
release step; the central service stores it beside the output, and ``pht verify`` checks the chain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from pyoxigraph import RdfFormat, serialize

from client import CentralClient, WorkItem
from client.execution_records import (
    DisclosureControl,
    ExecutionRecord,
    How,
    RuleApplied,
    Stage,
    proof_node,
    record_time,
    sign_record,
)
from graph_store import ResourceIris
from trust import KeyFormatError, PartyKeys, encode_multikey, load_keys

from .files import write_atomic
from .policy import StationPolicy
from .review import CHECKER_VERSION

__all__ = ["RecordSigner", "SignerUnavailable", "disclosure_control", "draft_record", "load_draft", "save_draft"]

DRAFT_FILE = "record.json"


def draft_record(work: WorkItem, *, station_iri: str, signed_hash: str, approved_how: How, output_digest: str,
                 input_record_hashes: list[str], started: datetime, ended: datetime,
                 disclosure: DisclosureControl | None = None) -> ExecutionRecord:
    """The record of ``work`` as far as it is known when its output is held (released "admin" until the release
    says how)."""
    iris = ResourceIris(station_iri[:station_iri.rindex("stations/")])
    return ExecutionRecord(
        execution=iris.execution(work.execution).value, train=iris.train(work.train).value, station=station_iri,
        round=work.round, stop=work.stop, signed_request_hash=signed_hash, image_digest=work.image_digest,
        input_digests=tuple(sorted(work.input_digests)),
        previous_record_hashes=tuple(sorted(h for h in input_record_hashes if h)),
        output_digest=output_digest, approved_how=approved_how, released_how="admin",
        started=record_time(started), ended=record_time(ended), disclosure=disclosure)


def disclosure_control(checks: list[dict[str, object]], policy: StationPolicy, *, stage: Stage,
                       dataset_version: str | None, applied: Sequence[RuleApplied] = ()) -> DisclosureControl:
    """The disclosure-control part of the record: each rule the review applied (``checks`` as ``review.json`` holds
    them) with the policy's threshold and the outcome, and the rules ``applied`` before (consent, privacy budget).
    A check's detail never enters it: it may name where a small count is, and the record leaves with the output."""
    thresholds = {"min-cell-count": policy.min_cell_count, "differencing": policy.differencing_minimum,
                  "max-output-bytes": policy.max_output_bytes, "max-file-bytes": policy.max_file_bytes}
    rules = tuple(RuleApplied(str(c["name"]), bool(c["passed"]), thresholds.get(str(c["name"])))
                  for c in checks if c["name"] != "file-list") + tuple(applied)  # file-list: for the admin only
    return DisclosureControl(rules=rules, checker_version=CHECKER_VERSION, stage=stage,
                             dataset_version=dataset_version)


def save_draft(folder: Path, record: ExecutionRecord) -> None:
    """Write the draft into the execution's folder (atomically: a crash leaves the old draft or the new one)."""
    write_atomic(folder / DRAFT_FILE, json.dumps(asdict(record), sort_keys=True).encode())


def load_draft(folder: Path) -> ExecutionRecord | None:
    """The draft in the execution's folder, or None (an output held before records existed, or none)."""
    try:
        data = json.loads((folder / DRAFT_FILE).read_text())
        data["input_digests"] = tuple(data["input_digests"])
        data["previous_record_hashes"] = tuple(data["previous_record_hashes"])
        part = data.get("disclosure")
        if part is not None:
            data["disclosure"] = DisclosureControl(
                rules=tuple(RuleApplied(**r) for r in part["rules"]), checker_version=part["checker_version"],
                stage=part["stage"], dataset_version=part["dataset_version"])
        return ExecutionRecord(**data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SignerUnavailable(Exception):
    """The station cannot sign: no key folder, unreadable keys, or a key the registry does not list as its own."""


class RecordSigner:
    """Signs this station's records with its own signing key, naming the key the registry lists for it."""

    def __init__(self, client: CentralClient, station_id: str, keys_dir: Path | None) -> None:
        self.client, self.station_id, self.keys_dir = client, station_id, keys_dir
        self._keys: PartyKeys | None = None
        self._identity: tuple[str, str] | None = None  # (station IRI, verification method IRI)

    def keys(self) -> PartyKeys:
        if self._keys is None:
            if self.keys_dir is None:
                raise SignerUnavailable(f"station {self.station_id} has no key folder (PHT_STATION_KEYS_DIR), so it "
                                        "cannot sign its record of the execution")
            try:
                self._keys = load_keys(self.keys_dir)
            except (OSError, KeyFormatError) as e:
                raise SignerUnavailable(f"the station's keys in {self.keys_dir} cannot be read: {e}") from None
        return self._keys

    def identity(self) -> tuple[str, str]:
        """(the station's IRI, the IRI of its registered signing key that is this key), asked once.

        :raises SignerUnavailable: see the class; ``ClientError``: the central service cannot be asked now."""
        if self._identity is None:
            mine = encode_multikey(self.keys().signing.public_key())
            listed = self.client.keys(station=self.station_id)
            key = next((k["iri"] for k in listed.get("keys") or []
                        if k.get("multibase") == mine and not k.get("revoked") and not k.get("expires")), None)
            if key is None:
                raise SignerUnavailable(f"the signing key in {self.keys_dir} is not a current key of station "
                                  f"{self.station_id} at the central service (pht station enroll registers it)")
            self._identity = (str(listed["party"]), str(key))
        return self._identity

    def station_iri(self) -> str:
        return self.identity()[0]

    def sign(self, draft: ExecutionRecord, *, released_how: How) -> str:
        """The record (released ``released_how``) and its proof as N-Triples, for ``OutputIn.record``."""
        record = replace(draft, released_how=released_how)
        _, method = self.identity()
        proof = sign_record(record, self.keys().signing, verification_method=method,
                            created=datetime.now(timezone.utc).replace(microsecond=0))  # as the store keeps it
        triples = record.triples() + proof.to_triples(proof_node(record.execution))
        return bytes(serialize(triples, format=RdfFormat.N_TRIPLES) or b"").decode("utf-8")

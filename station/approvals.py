"""What this station approved, kept at the station: one approval binds exactly one code.

The central graph says which executions are approved, but an operator can edit a definition's image digest or
entrypoint after the approval; the station must run only what it approved. So when the agent asks for an
approval (``waiting-for-approval``: what the admin is shown) or approves automatically, it records the code it
decides on — definition id, image digest, entrypoint, parameters, and the signed train request it verified (its id
and the SHA-256 of its canonical N-Quads, ``station/signed_requests.py``) — in ``state_dir/approvals.jsonl``
(appended, fsynced: durable across restarts; the last line of an execution counts). Before every later step it
compares the current work item with that record and refuses to go on if anything differs (:func:`differences`).
The ledger also remembers which train each signed request was approved for (:meth:`ApprovalLedger.train_of`): a
request is good for one train, so the same request on another train is a replay.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyoxigraph import NamedNode

from client import WorkItem
from graph_store import PHT, RDF_TYPE

from .signed_requests import parse_ntriples, signed_hash

__all__ = ["ApprovalLedger", "ApprovedCode", "differences"]


@dataclass(frozen=True)
class ApprovedCode:
    """The code one approval is for."""

    definition: str
    image_digest: str
    entrypoint: str | None
    parameters: dict[str, str] = field(default_factory=dict)
    request: str = ""
    """The signed train request's id (``urn:uuid:...``)."""
    signed_hash: str = ""
    """SHA-256 hex of the signed request's canonical N-Quads (``trust.canonical_nquads``)."""

    @classmethod
    def of(cls, work: WorkItem) -> ApprovedCode:
        """The code of ``work``, its signed request's hash computed from what the work item carries (empty for an
        unsigned or unreadable one: the agent refuses those before recording anything)."""
        return cls(definition=work.definition, image_digest=work.image_digest, entrypoint=work.entrypoint,
                   parameters=dict(work.parameters), request=_request_id(work), signed_hash=_signed_hash(work))


def _signed_hash(work: WorkItem) -> str:
    if not work.request:
        return ""
    try:
        return signed_hash(parse_ntriples(work.request, "signed request"))
    except ValueError:  # RequestRefused, ProofError: a document that cannot be read has no hash
        return ""


def _request_id(work: WorkItem) -> str:
    try:
        triples = parse_ntriples(work.request, "signed request") if work.request else []
    except ValueError:
        return ""
    nodes = sorted(t.subject.value for t in triples if t.predicate == RDF_TYPE and t.object == PHT.TrainRequest
                   and isinstance(t.subject, NamedNode))
    return nodes[0] if len(nodes) == 1 else ""


def differences(approved: ApprovedCode, work: WorkItem) -> list[str]:
    """What differs between the approved code and the work item, by field name (parameter names, never values:
    parameters may be sensitive)."""
    now = ApprovedCode.of(work)
    found = [what for what, a, b in (("train definition", approved.definition, now.definition),
                                     ("image digest", approved.image_digest, now.image_digest),
                                     ("entrypoint", approved.entrypoint, now.entrypoint),
                                     ("signed train request", (approved.request, approved.signed_hash),
                                      (now.request, now.signed_hash))) if a != b]
    names = sorted(n for n in set(approved.parameters) | set(now.parameters)
                   if approved.parameters.get(n) != now.parameters.get(n))
    if names:
        found.append("parameter(s) " + ", ".join(names))
    return found


class ApprovalLedger:
    """The station's approvals, an append-only JSON-lines file (the agent is its only writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._latest: dict[str, tuple[str, ApprovedCode]] = {}
        self._trains: dict[str, str] = {}  # signed request id -> the train it was first recorded for
        self._torn = False  # the file ends in a line a crash cut short: the next record starts on a new line
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        self._torn = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                code = ApprovedCode(definition=entry["definition"], image_digest=entry["image_digest"],
                                    entrypoint=entry["entrypoint"], parameters=dict(entry["parameters"]),
                                    request=str(entry.get("request", "")),
                                    signed_hash=str(entry.get("signed_hash", "")))
                self._latest[str(entry["execution"])] = (str(entry["how"]), code)
                if code.request and entry.get("train"):
                    self._trains.setdefault(code.request, str(entry["train"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash while appending: the decision it recorded was not taken

    def record(self, work: WorkItem, *, how: str, reason: str = "") -> ApprovedCode:
        """Record the code of ``work`` as approved (``how``: "auto" or "requested" from the admin) before the step
        that says so is fired; returns it."""
        code = ApprovedCode.of(work)
        entry: dict[str, Any] = {"execution": work.execution, "train": work.train, "how": how, "reason": reason,
                                 "time": datetime.now(UTC).isoformat(), **asdict(code)}
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        with self._lock:
            if self._torn:
                line, self._torn = b"\n" + line, False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            self._latest[work.execution] = (how, code)
            if code.request:
                self._trains.setdefault(code.request, work.train)
        return code

    def train_of(self, request: str) -> str | None:
        """The train the signed ``request`` was first recorded for at this station, or None."""
        return self._trains.get(request)

    def get(self, execution: str) -> ApprovedCode | None:
        """The code recorded for ``execution`` (its last record), or None."""
        found = self._latest.get(execution)
        return found[1] if found is not None else None

    def how(self, execution: str) -> str | None:
        found = self._latest.get(execution)
        return found[0] if found is not None else None

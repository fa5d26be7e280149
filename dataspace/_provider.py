"""The provider side: the catalog of published results, contract negotiation, transfers (push and pull).

The provider decides a negotiation itself: a request whose offer is the published one and whose sender's
claims satisfy its policy is agreed at once (REQUESTED -> AGREED, the agreement sent to the consumer's
callback), anything else is refused with the DSP error and nothing is written. A transfer is re-checked against
the agreement, its expiry, the result's withdrawal and the sender's current claims before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from pyoxigraph import NamedNode, Quad

from graph_store import PHT

from ._chart import chart
from ._core import Core, ProtocolError, Reply, join
from ._messages import catalog, data_address, dataset, message
from ._policy import Claims, Policy, PolicyInvalid
from ._records import Process, PublishedResult
from ._vocab import DATASPACE_GRAPH, NEGOTIATION, PROVIDER, PULL, PUSH, TRANSFER

__all__ = ["Provider"]

log = logging.getLogger("dataspace")
_NEG, _TP = "negotiation", "transfer"


class Provider:
    """The provider's DSP endpoints over ``core``, and publishing."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.records = core.records
        # built, schema-checked and serialised once per change of the catalog (publish, withdraw)
        self._catalog: bytes | None = None

    @property
    def service_id(self) -> str:
        return join(self.core.settings.base_url, "#dsp")

    # -- publishing ---------------------------------------------------------------------------------------------

    def publish(self, *, train: str, title: str, data: Path, policy: Policy) -> PublishedResult:
        """Offer the plaintext in ``data`` (a file the researcher decrypted) as a published result of ``train``."""
        digest = hashlib.sha256()
        with data.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        target = self._path(digest.hexdigest())
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            tmp = target.with_suffix(".part")
            shutil.copyfile(data, tmp)
            tmp.replace(target)
        result = self.records.publish(train=train, title=title, sha256=digest.hexdigest(),
                                      size=target.stat().st_size, policy=policy)
        self._catalog = None
        return result

    def withdraw(self, result: NamedNode) -> None:
        """Withdraw a published result: out of the catalog, no more negotiations or transfers for it."""
        if self.records.result(result) is None:
            raise KeyError(f"{result.value} is not published here.")
        self.records.withdraw(result)
        self._catalog = None

    def _path(self, sha256: str) -> Path:
        return self.core.settings.data_dir / "published" / sha256

    # -- catalog ------------------------------------------------------------------------------------------------

    def catalog_request(self, authorization: str | None, body: object) -> Reply:
        """``POST /catalog/request``: the catalog (every published result not withdrawn, with its offer)."""
        self.core.claims(authorization, "catalog")
        self.core.accept(body, "CatalogRequestMessage", "catalog")
        if self._catalog is None:
            s = self.core.settings
            built = catalog(catalog_id=join(s.base_url, "catalog"), participant=s.participant_id,
                            service_id=self.service_id, endpoint=s.base_url, results=self.records.catalog())
            self.core.accept(built, "Catalog", "catalog")
            self._catalog = json.dumps(built, ensure_ascii=False, separators=(",", ":")).encode()
        return Reply(200, None, encoded=self._catalog)

    def dataset(self, authorization: str | None, dataset_id: str) -> Reply:
        """``GET /catalog/datasets/{id}``: one published result not withdrawn."""
        self.core.claims(authorization, "catalog")
        iri = _iri(dataset_id)
        result = self.records.result(iri) if iri is not None else None
        if result is None or result.withdrawn:
            raise ProtocolError(404, f"No dataset {dataset_id} is published here.", family="catalog")
        return Reply(200, self.core.accept(dataset(result, self.service_id, root=True), "Dataset", "catalog"))

    # -- negotiation --------------------------------------------------------------------------------------------

    def negotiation_request(self, authorization: str | None, body: object) -> Reply:
        """``POST /negotiations/request``: a consumer's initial request; agreed at once if the policy allows."""
        claims = self.core.claims(authorization, _NEG)
        msg = self.core.accept(body, "ContractRequestMessage", _NEG)
        cpid = msg["consumerPid"]
        if "providerPid" in msg or "callbackAddress" not in msg:
            raise ProtocolError(400, "An initial contract request has a callbackAddress and no providerPid.",
                                family=_NEG, consumer_pid=cpid)
        if self.records.process(NEGOTIATION, role=PROVIDER, consumer_pid=cpid) is not None:
            raise ProtocolError(400, f"A negotiation with consumerPid {cpid} exists already (a replay?).",
                                family=_NEG, consumer_pid=cpid)
        result = self._offered(msg["offer"], claims, cpid)
        ppid = f"urn:uuid:{uuid.uuid4()}"
        self.records.new_process(NEGOTIATION, role=PROVIDER, consumer_pid=cpid, provider_pid=ppid,
                                 counterparty=claims.participant, callback=msg["callbackAddress"],
                                 result=result.iri, offer_id=result.offer)
        process = self.records.process(NEGOTIATION, role=PROVIDER, provider_pid=ppid)
        assert process is not None
        return Reply(201, message("ContractNegotiation", providerPid=ppid, consumerPid=cpid, state="REQUESTED"),
                     then=lambda: self._agree(process, result, claims))

    def _offered(self, offer: dict[str, Any], claims: Claims, cpid: str) -> PublishedResult:
        """The published result an offer names, if it is the published offer and ``claims`` satisfy it."""
        target = offer.get("target")
        iri = _iri(target)
        result = self.records.result(iri) if iri is not None else None
        if result is None:
            raise ProtocolError(400, f"No dataset {target} is offered here.", family=_NEG, consumer_pid=cpid)
        if result.withdrawn:
            raise ProtocolError(410, f"The dataset {target} was withdrawn.", family=_NEG, consumer_pid=cpid)
        try:
            same = offer.get("@id") == result.offer and Policy.from_odrl(offer) == result.policy
        except PolicyInvalid:
            same = False
        if not same:
            raise ProtocolError(400, "The offer is not the one this provider publishes for that dataset.",
                                family=_NEG, consumer_pid=cpid)
        refusals = result.policy.refusals(claims)
        if refusals:
            raise ProtocolError(403, f"Refused: {'; '.join(refusals)}.", family=_NEG, consumer_pid=cpid)
        return result

    def _agree(self, process: Process, result: PublishedResult, claims: Claims) -> None:
        """REQUESTED -> AGREED with the agreement written in the same step, then the agreement to the consumer."""
        agreement_id = f"urn:uuid:{uuid.uuid4()}"
        issued = datetime.now(timezone.utc)
        until = result.policy.usable_until
        iri, quads = self.records.agreement_quads(agreement_id=agreement_id, result=result.iri,
                                                  assignee=claims.participant,
                                                  assigner=self.core.settings.participant_id, issued=issued,
                                                  usable_until=until)
        self.core.step(process, "ContractAgreementMessage", _NEG,
                       insert=[*quads, *_link(process.iri, PHT.agreement, iri)])
        agreement = {"@id": agreement_id, "@type": "Agreement", "target": result.iri.value,
                     "timestamp": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "assigner": self.core.settings.participant_id, "assignee": claims.participant,
                     **result.policy.to_odrl()}
        body = message("ContractAgreementMessage", providerPid=process.provider_pid,
                       consumerPid=process.consumer_pid, agreement=agreement)
        self._callback(process, f"negotiations/{process.consumer_pid}/agreement", body)

    def _callback(self, process: Process, path: str, body: dict[str, Any]) -> None:
        """Send a message to the consumer's callback; if it cannot be delivered, terminate the process."""
        assert process.callback is not None
        try:
            self.core.send(join(process.callback, path), body)
        except Exception as e:  # noqa: BLE001 - any failure to deliver ends the process the same way
            log.warning("dataspace: %s to %s failed, terminating: %s", body["@type"], process.callback, e)
            fresh = self._reread(process)
            message_kind = ("ContractNegotiationTerminationMessage" if process.process_class == NEGOTIATION
                            else "TransferTerminationMessage")
            if fresh is not None and chart().next_state(fresh.process_class, fresh.state, message_kind):
                self.core.records.advance(fresh, message_kind)
                self.core.notify()

    def _reread(self, process: Process) -> Process | None:
        return self.records.process(process.process_class, role=PROVIDER, provider_pid=process.provider_pid)

    def negotiation_get(self, authorization: str | None, pid: str) -> Reply:
        """``GET /negotiations/{providerPid}``."""
        return self._state_of(NEGOTIATION, _NEG, "ContractNegotiation", authorization, pid)

    def _state_of(self, cls: NamedNode, family: str, kind: str, authorization: str | None, pid: str) -> Reply:
        p, _ = self.core.received(cls, PROVIDER, family, authorization, pid)
        return Reply(200, message(kind, providerPid=pid, consumerPid=p.consumer_pid, state=p.state_name))

    def negotiation_message(self, authorization: str | None, pid: str, kind: str, body: object) -> Reply:
        """``POST /negotiations/{providerPid}/{request|events|agreement/verification|termination}``."""
        p, msg = self.core.received(NEGOTIATION, PROVIDER, _NEG, authorization, pid, kind, body)
        key = f"{kind}:{msg['eventType']}" if kind == "ContractNegotiationEventMessage" else kind
        self.core.step(p, key, _NEG)
        if kind == "ContractAgreementVerificationMessage":
            return Reply(200, None, then=lambda: self._finalize(pid))
        return Reply(200, None)

    def _finalize(self, pid: str) -> None:
        p = self.records.process(NEGOTIATION, role=PROVIDER, provider_pid=pid)
        assert p is not None
        self.core.step(p, "ContractNegotiationEventMessage:FINALIZED", _NEG)
        body = message("ContractNegotiationEventMessage", providerPid=pid, consumerPid=p.consumer_pid,
                       eventType="FINALIZED")
        self._callback(p, f"negotiations/{p.consumer_pid}/events", body)

    # -- transfer -----------------------------------------------------------------------------------------------

    def transfer_request(self, authorization: str | None, body: object) -> Reply:
        """``POST /transfers/request``: under a finalized, unexpired agreement of the sender, for a result not
        withdrawn, with the policy still satisfied; then started (pull: a token; push: the data sent)."""
        claims = self.core.claims(authorization, _TP)
        msg = self.core.accept(body, "TransferRequestMessage", _TP)
        cpid, fmt = msg["consumerPid"], msg["format"]
        refuse = _refuser(cpid)
        if fmt not in (PULL, PUSH):
            raise refuse(400, f"The format {fmt} is not offered (only {PULL} and {PUSH}).")
        if fmt == PUSH and "endpoint" not in msg.get("dataAddress", {}):
            raise refuse(400, f"A {PUSH} transfer needs the consumer's dataAddress with an endpoint.")
        if self.records.process(TRANSFER, role=PROVIDER, consumer_pid=cpid) is not None:
            raise refuse(400, f"A transfer with consumerPid {cpid} exists already (a replay?).")
        agreement = self.records.agreement(msg["agreementId"], role=PROVIDER)
        if agreement is None or agreement.assignee != claims.participant:
            raise refuse(404, f"No agreement {msg['agreementId']} is known for this participant.")
        if agreement.negotiation_state != chart().state(NEGOTIATION, "FINALIZED"):
            raise refuse(400, "The agreement's negotiation is not finalized.")
        now = datetime.now(timezone.utc)
        if agreement.usable_until is not None and now > agreement.usable_until:
            raise refuse(403, f"The agreement expired at {agreement.usable_until.isoformat()}.")
        result = self.records.result(agreement.result)
        if result is None or result.withdrawn:
            raise refuse(410, "The result under this agreement was withdrawn.")
        refusals = result.policy.refusals(claims, now)
        if refusals:
            raise refuse(403, f"Refused: {'; '.join(refusals)}.")
        ppid = f"urn:uuid:{uuid.uuid4()}"
        self.records.new_process(TRANSFER, role=PROVIDER, consumer_pid=cpid, provider_pid=ppid,
                                 counterparty=claims.participant, callback=msg["callbackAddress"],
                                 agreement=agreement.iri, format=fmt)
        p = self.records.process(TRANSFER, role=PROVIDER, provider_pid=ppid)
        assert p is not None
        sink: dict[str, Any] = msg.get("dataAddress", {})
        then = (lambda: self._start_pull(p)) if fmt == PULL else (lambda: self._push(p, result, sink))
        return Reply(201, message("TransferProcess", providerPid=ppid, consumerPid=cpid, state="REQUESTED"),
                     then=then)

    def _start_pull(self, p: Process) -> None:
        """REQUESTED -> STARTED with a new single-use token (its digest only in the graph), sent to the consumer."""
        token = secrets.token_urlsafe(32)
        expires = datetime.now(timezone.utc) + timedelta(seconds=self.core.settings.pull_token_ttl_s)
        self.core.step(p, "TransferStartMessage", _TP,
                       insert=self.records.token_quads(p.iri, hashlib.sha256(token.encode()).hexdigest(), expires))
        address = data_address(join(self.core.settings.base_url, f"data/{p.provider_pid}"), token)
        body = message("TransferStartMessage", providerPid=p.provider_pid, consumerPid=p.consumer_pid,
                       dataAddress=address)
        self._callback(p, f"transfers/{p.consumer_pid}/start", body)

    def _push(self, p: Process, result: PublishedResult, sink: dict[str, Any]) -> None:
        """REQUESTED -> STARTED, the bytes PUT to the consumer's sink with its token, -> COMPLETED."""
        self.core.step(p, "TransferStartMessage", _TP)
        self._callback(p, f"transfers/{p.consumer_pid}/start",
                       message("TransferStartMessage", providerPid=p.provider_pid, consumerPid=p.consumer_pid))
        props = {e["name"]: e["value"] for e in sink.get("endpointProperties", [])}
        headers = {"Authorization": f"Bearer {props['authorization']}"} if "authorization" in props else {}
        try:
            with self._path(result.sha256).open("rb") as f:
                r = self.core.http.put(sink["endpoint"], content=f, headers=headers)
            r.raise_for_status()
        except Exception as e:  # noqa: BLE001 - a failed push terminates the transfer, whatever failed
            log.warning("dataspace: push to %s failed: %s", sink["endpoint"], e)
            fresh = self._reread(p)
            if fresh is not None:
                self.core.step(fresh, "TransferTerminationMessage", _TP)
                self._callback(fresh, f"transfers/{p.consumer_pid}/termination",
                               message("TransferTerminationMessage", providerPid=p.provider_pid,
                                       consumerPid=p.consumer_pid, code="push-failed", reason=[str(e)[:200]]))
            return
        fresh = self._reread(p)
        assert fresh is not None
        self.core.step(fresh, "TransferCompletionMessage", _TP)
        self._callback(fresh, f"transfers/{p.consumer_pid}/completion",
                       message("TransferCompletionMessage", providerPid=p.provider_pid, consumerPid=p.consumer_pid))

    def transfer_get(self, authorization: str | None, pid: str) -> Reply:
        """``GET /transfers/{providerPid}``."""
        return self._state_of(TRANSFER, _TP, "TransferProcess", authorization, pid)

    def transfer_message(self, authorization: str | None, pid: str, kind: str, body: object) -> Reply:
        """``POST /transfers/{providerPid}/{start|completion|suspension|termination}``."""
        p, _ = self.core.received(TRANSFER, PROVIDER, _TP, authorization, pid, kind, body)
        if kind == "TransferStartMessage":
            raise ProtocolError(400, "This provider does not resume suspended transfers.", family=_TP,
                                provider_pid=pid, consumer_pid=p.consumer_pid)
        self.core.step(p, kind, _TP)
        return Reply(200, None)

    def data(self, authorization: str | None, pid: str) -> Path:
        """``GET /data/{providerPid}`` with a pull token: the file, once, before the token expires, while the
        transfer is STARTED and its result not withdrawn."""
        token = (authorization or "").removeprefix("Bearer ").strip()
        record = self.records.token(hashlib.sha256(token.encode()).hexdigest()) if token else None
        refuse = _refuser("", pid)
        if record is None or record.provider_pid != pid:
            raise refuse(401, "The pull token is not valid for this transfer.")
        if not record.unused:
            raise refuse(403, "The pull token was used already.")
        if datetime.now(timezone.utc) > record.expires:
            raise refuse(403, "The pull token expired.")
        if record.transfer_state != chart().state(TRANSFER, "STARTED"):
            raise refuse(400, "The transfer is not started.")
        if record.withdrawn:
            raise refuse(410, "The result under this transfer was withdrawn.")
        result = self.records.result(record.result)
        if result is None or not self.records.use_token(record):
            raise refuse(403, "The pull token was used already.")
        return self._path(result.sha256)


def _iri(text: object) -> NamedNode | None:
    """``text`` as an absolute IRI this connector could have minted; None for anything else."""
    if not isinstance(text, str) or not text.startswith(("http://", "https://", "urn:")):
        return None
    try:
        return NamedNode(text)
    except ValueError:
        return None


def _link(s: NamedNode, p: NamedNode, o: NamedNode) -> list[Quad]:
    return [Quad(s, p, o, DATASPACE_GRAPH)]


def _refuser(consumer_pid: str, provider_pid: str = "") -> Any:
    def refuse(status: int, reason: str) -> ProtocolError:
        return ProtocolError(status, reason, family=_TP, consumer_pid=consumer_pid, provider_pid=provider_pid)
    return refuse

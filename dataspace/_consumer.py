"""The consumer side: asking a provider's catalog, negotiating, and obtaining data by pull or push.

Its callbacks (``{base_url}/callback/...``) accept only messages from the provider the process was started
with (by its verified identity token) and only in the order the chart allows. The credentials it receives or
hands out (a pull token, a push sink's token) stay in this process's memory: never in the graph, never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import PHT

from ._chart import chart
from ._core import Core, ProtocolError, Reply, join, refusal_reason
from ._messages import data_address, message
from ._policy import Policy
from ._records import Process
from ._schemas import validate_message
from ._vocab import CONSUMER, DATASPACE_GRAPH, NEGOTIATION, PULL, PUSH, TRANSFER

__all__ = ["Consumer", "TransferFailed"]

_NEG, _TP = "negotiation", "transfer"


class TransferFailed(RuntimeError):
    """A negotiation or transfer that ended without the data; ``str()`` says why in one sentence."""


class Consumer:
    """The consumer's operations and callback endpoints over ``core``."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.records = core.records
        self._addresses: dict[str, dict[str, Any]] = {}  # consumerPid -> pull data address (memory only)
        self._sinks: dict[str, str] = {}  # consumerPid -> the push sink's token (memory only)

    @property
    def callback(self) -> str:
        return join(self.core.settings.base_url, "callback")

    # -- operations ---------------------------------------------------------------------------------------------

    def request_catalog(self, provider_url: str) -> dict[str, Any]:
        """The provider's catalog (checked against the Catalog schema)."""
        r = self.core.send(join(provider_url, "catalog/request"), message("CatalogRequestMessage"))
        return validate_message(r.json(), "Catalog")

    def negotiate(self, provider_url: str, dataset: dict[str, Any], *, provider_id: str) -> str:
        """Negotiate for a catalog ``dataset`` under its first offer until FINALIZED: the agreement's id.

        ``provider_id`` is the catalog's ``participantId``: only that participant's callbacks are accepted.

        :raises TransferFailed: the provider refused (its DSP error) or terminated the negotiation.
        """
        offer = {**dataset["hasPolicy"][0], "target": dataset["@id"]}
        cpid = f"urn:uuid:{uuid.uuid4()}"
        self.records.new_process(NEGOTIATION, role=CONSUMER, consumer_pid=cpid, counterparty=provider_id,
                                 callback=provider_url, result=NamedNode(dataset["@id"]), offer_id=offer["@id"])
        body = message("ContractRequestMessage", consumerPid=cpid, offer=offer, callbackAddress=self.callback)
        try:
            r = self.core.send(join(provider_url, "negotiations/request"), body, expect=(201,))
        except RuntimeError as e:
            self._end(cpid, NEGOTIATION)
            raise TransferFailed(str(e)) from None
        ack = validate_message(r.json(), "ContractNegotiation")
        p = self._process(NEGOTIATION, cpid)
        self.records.set_provider_pid(p, ack["providerPid"])
        done = self.core.wait_for(lambda: self._settled(NEGOTIATION, cpid, "FINALIZED"), f"negotiation {cpid}")
        if done.state_name != "FINALIZED" or done.agreement_id is None:
            raise TransferFailed(f"The provider ended negotiation {cpid} in state {done.state_name}.")
        return str(done.agreement_id)

    def pull(self, provider_url: str, agreement_id: str, *, sha256: str | None = None,
             max_bytes: int | None = None) -> bytes:
        """Request a pull transfer under an agreement, fetch the data with the token once, complete it.

        :raises TransferFailed: refused, terminated, more than ``max_bytes``, or the bytes do not match ``sha256``.
        """
        cpid = self._request_transfer(provider_url, agreement_id, PULL, None)
        done = self.core.wait_for(lambda: self._settled(TRANSFER, cpid, "STARTED"), f"transfer {cpid}")
        address = self._addresses.pop(cpid, None)
        if done.state_name != "STARTED" or address is None:
            raise TransferFailed(f"The provider ended transfer {cpid} in state {done.state_name}.")
        props = {e["name"]: e["value"] for e in address.get("endpointProperties", [])}
        headers = {"Authorization": f"Bearer {props['authorization']}"}
        with self.core.http.stream("GET", address["endpoint"], headers=headers) as r:
            if r.status_code != 200:
                r.read()
                raise TransferFailed(f"The provider refused the pull ({r.status_code}): {refusal_reason(r)}")
            chunks, size = [], 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TransferFailed(f"The provider sent more than {max_bytes} bytes, the most accepted here.")
                chunks.append(chunk)
        data = b"".join(chunks)
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise TransferFailed("The pulled data does not match the dataset's SHA-256.")
        p = self._process(TRANSFER, cpid)
        self.core.step(p, "TransferCompletionMessage", _TP)
        self.core.send(join(provider_url, f"transfers/{p.provider_pid}/completion"),
                       message("TransferCompletionMessage", providerPid=p.provider_pid, consumerPid=cpid))
        return data

    def push(self, provider_url: str, agreement_id: str) -> bytes:
        """Request a push transfer into this connector's sink and wait until the provider completed it."""
        cpid = f"urn:uuid:{uuid.uuid4()}"
        token = secrets.token_urlsafe(32)
        self._sinks[cpid] = token
        sink = data_address(join(self.core.settings.base_url, f"sink/{cpid}"), token)
        self._request_transfer(provider_url, agreement_id, PUSH, sink, cpid=cpid)
        done = self.core.wait_for(lambda: self._settled(TRANSFER, cpid, "COMPLETED"), f"transfer {cpid}")
        self._sinks.pop(cpid, None)
        path = self._sink_path(cpid)
        if done.state_name != "COMPLETED" or not path.exists():
            raise TransferFailed(f"The provider ended transfer {cpid} in state {done.state_name}.")
        return path.read_bytes()

    def _request_transfer(self, provider_url: str, agreement_id: str, fmt: str, sink: dict[str, Any] | None,
                          *, cpid: str | None = None) -> str:
        agreement = self.records.agreement(agreement_id, role=CONSUMER)
        if agreement is None:
            raise TransferFailed(f"No agreement {agreement_id} was reached by this connector.")
        cpid = cpid or f"urn:uuid:{uuid.uuid4()}"
        self.records.new_process(TRANSFER, role=CONSUMER, consumer_pid=cpid, counterparty=agreement.assigner,
                                 callback=provider_url, agreement=agreement.iri, format=fmt)
        body = message("TransferRequestMessage", consumerPid=cpid, agreementId=agreement_id, format=fmt,
                       dataAddress=sink, callbackAddress=self.callback)
        try:
            r = self.core.send(join(provider_url, "transfers/request"), body, expect=(201,))
        except RuntimeError as e:
            self._end(cpid, TRANSFER)
            raise TransferFailed(str(e)) from None
        ack = validate_message(r.json(), "TransferProcess")
        self.records.set_provider_pid(self._process(TRANSFER, cpid), ack["providerPid"])
        return cpid

    def _process(self, cls: NamedNode, cpid: str) -> Process:
        p = self.records.process(cls, role=CONSUMER, consumer_pid=cpid)
        assert p is not None
        return p

    def _settled(self, cls: NamedNode, cpid: str, goal: str) -> Process | None:
        p = self._process(cls, cpid)
        return p if p.state_name in (goal, "TERMINATED") else None

    def _end(self, cpid: str, cls: NamedNode) -> None:
        kind = "ContractNegotiationTerminationMessage" if cls == NEGOTIATION else "TransferTerminationMessage"
        p = self._process(cls, cpid)
        if chart().next_state(cls, p.state, kind):
            self.records.advance(p, kind)

    def _sink_path(self, cpid: str) -> Path:
        return self.core.settings.data_dir / "received" / hashlib.sha256(cpid.encode()).hexdigest()

    # -- callbacks ----------------------------------------------------------------------------------------------

    def agreement(self, authorization: str | None, cpid: str, body: object) -> Reply:
        """``POST /callback/negotiations/{consumerPid}/agreement``: checked against what was asked, recorded
        with the step to AGREED; then verified (AGREED -> VERIFIED) towards the provider."""
        p, msg = self.core.received(NEGOTIATION, CONSUMER, _NEG, authorization, cpid, "ContractAgreementMessage",
                                    body)
        a = msg["agreement"]
        try:
            policy = Policy.from_odrl(a)
        except Exception:  # noqa: BLE001 - any policy we cannot evaluate is refused the same way
            policy = None
        problems = [
            why for ok, why in (
                (p.result is not None and a["target"] == p.result.value, "its target is not the dataset asked for"),
                (a["assignee"] == self.core.settings.participant_id, "its assignee is not this participant"),
                (a["assigner"] == p.counterparty, "its assigner is not the provider"),
                (policy is not None, "its policy cannot be evaluated here"),
            ) if not ok]
        if problems:
            raise ProtocolError(400, f"The agreement is refused: {'; '.join(problems)}.", family=_NEG,
                                provider_pid=msg["providerPid"], consumer_pid=cpid)
        assert policy is not None and p.result is not None
        iri, quads = self.records.agreement_quads(
            agreement_id=a["@id"], result=p.result, assignee=a["assignee"], assigner=a["assigner"],
            issued=datetime.fromisoformat(a.get("timestamp", datetime.now(timezone.utc).isoformat())
                                          .replace("Z", "+00:00")),
            usable_until=policy.usable_until)
        extra = [Quad(p.iri, PHT.agreement, iri, DATASPACE_GRAPH)]
        if p.provider_pid is None:
            extra.append(Quad(p.iri, PHT.providerPid, Literal(msg["providerPid"]), DATASPACE_GRAPH))
        self.core.step(p, "ContractAgreementMessage", _NEG, insert=[*quads, *extra])
        return Reply(200, None, then=lambda: self._verify(cpid))

    def _verify(self, cpid: str) -> None:
        p = self._process(NEGOTIATION, cpid)
        self.core.step(p, "ContractAgreementVerificationMessage", _NEG)
        assert p.callback is not None
        try:
            self.core.send(join(p.callback, f"negotiations/{p.provider_pid}/agreement/verification"),
                           message("ContractAgreementVerificationMessage", providerPid=p.provider_pid,
                                   consumerPid=cpid))
        except RuntimeError:
            self._end(cpid, NEGOTIATION)
            self.core.notify()

    def negotiation_message(self, authorization: str | None, cpid: str, kind: str, body: object) -> Reply:
        """``POST /callback/negotiations/{consumerPid}/{events|termination}``."""
        p, msg = self.core.received(NEGOTIATION, CONSUMER, _NEG, authorization, cpid, kind, body)
        key = f"{kind}:{msg['eventType']}" if kind == "ContractNegotiationEventMessage" else kind
        self.core.step(p, key, _NEG)
        return Reply(200, None)

    def transfer_message(self, authorization: str | None, cpid: str, kind: str, body: object) -> Reply:
        """``POST /callback/transfers/{consumerPid}/{start|completion|suspension|termination}``."""
        p, msg = self.core.received(TRANSFER, CONSUMER, _TP, authorization, cpid, kind, body)
        if kind == "TransferStartMessage" and p.format == PULL:
            if "dataAddress" not in msg:
                raise ProtocolError(400, "A pull transfer's start message needs a dataAddress.", family=_TP,
                                    provider_pid=p.provider_pid, consumer_pid=cpid)
            self._addresses[cpid] = msg["dataAddress"]
        self.core.step(p, kind, _TP)
        return Reply(200, None)

    def sink(self, authorization: str | None, cpid: str, chunks: Iterator[bytes]) -> None:
        """``PUT /sink/{consumerPid}``: a pushed result, once, with the sink's token, while the transfer is
        STARTED."""
        expected = self._sinks.pop(cpid, None)
        given = (authorization or "").removeprefix("Bearer ").strip()
        if expected is None or not hmac.compare_digest(expected.encode(), given.encode()):
            raise ProtocolError(401, "The sink token is not valid for this transfer.", family=_TP,
                                consumer_pid=cpid)
        p = self._process(TRANSFER, cpid)
        if p.state_name != "STARTED":
            raise ProtocolError(400, "The transfer is not started.", family=_TP, consumer_pid=cpid)
        path = self._sink_path(cpid)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        with tmp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
        tmp.replace(path)

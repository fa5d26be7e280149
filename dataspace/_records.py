"""A connector's graph: published results, DSP processes, agreements and pull tokens, as validated writes.

Every state change is a guarded change set on the process's current state (compare-and-set), so of two
messages racing for one step exactly one wins, and a step the chart (``_chart.py``) does not allow from the
current state is refused before anything is written. Reads are the named queries ``dataspace_*.rq``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from pyoxigraph import Literal, NamedNode, Quad, QuerySolution

from graph_store import DCTERMS, PHT, PROV, RDF_TYPE, XSD, ChangeSet, ConflictError, GraphStore

from ._chart import chart
from ._policy import Constraint, Policy
from ._vocab import DATASPACE_GRAPH, MEMBER_OF, ODRL, ODRL_NS

__all__ = ["AgreementRecord", "OutOfOrder", "Process", "PublishedResult", "Records", "TokenRecord", "now_literal"]

_G = DATASPACE_GRAPH
_LEFT = {"purpose": ODRL.purpose, "dateTime": ODRL.dateTime, MEMBER_OF: NamedNode(MEMBER_OF)}
_LEFT_BACK = {v.value: k for k, v in _LEFT.items()}


class OutOfOrder(ValueError):
    """A message the process's chart does not allow from its current state (out of order, or a replay)."""


def _q(s: NamedNode, p: NamedNode, o: NamedNode | Literal) -> Quad:
    return Quad(s, p, o, _G)


def _time(value: datetime) -> Literal:
    return Literal(value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


def now_literal() -> Literal:
    """Now, as the xsd:dateTime the records hold."""
    return _time(datetime.now(timezone.utc))


def _str(row: QuerySolution, var: str) -> str | None:
    term = row[var]
    return None if term is None else str(term.value)


@dataclass(frozen=True)
class PublishedResult:
    """A published result as the catalog shows it."""

    iri: NamedNode
    title: str
    sha256: str
    size: int
    train: str
    offer: str
    policy: Policy
    withdrawn: str | None = None


@dataclass(frozen=True)
class Process:
    """A DSP process (negotiation or transfer) of this connector, as the graph holds it."""

    iri: NamedNode
    process_class: NamedNode
    state: NamedNode
    state_name: str
    consumer_pid: str
    provider_pid: str | None
    counterparty: str
    callback: str | None
    result: NamedNode | None
    offer_id: str | None
    agreement: NamedNode | None
    agreement_id: str | None
    format: str | None


@dataclass(frozen=True)
class AgreementRecord:
    """An agreement this connector reached."""

    iri: NamedNode
    agreement_id: str
    result: NamedNode
    assignee: str
    assigner: str
    usable_until: datetime | None
    negotiation_state: NamedNode


@dataclass(frozen=True)
class TokenRecord:
    """A pull token's record (never the token)."""

    iri: NamedNode
    expires: datetime
    unused: bool
    transfer_state: NamedNode
    provider_pid: str
    result: NamedNode
    withdrawn: bool


class Records:
    """The connector's reads and writes on its graph in ``store``; IRIs minted under ``base_iri``."""

    def __init__(self, store: GraphStore, base_iri: str) -> None:
        self.store = store
        self.base = base_iri.rstrip("/") + "/"

    # -- published results ----------------------------------------------------------------------------------

    def publish(self, *, train: str, title: str, sha256: str, size: int, policy: Policy) -> PublishedResult:
        """Write a new published result with its ODRL offer (one validated write)."""
        result = NamedNode(f"{self.base}results/{uuid.uuid4()}")
        offer = NamedNode(result.value + "/offer")
        permission = NamedNode(result.value + "/offer/permission")
        quads = [
            _q(result, RDF_TYPE, PHT.PublishedResult), _q(result, DCTERMS.title, Literal(title)),
            _q(result, PHT.sha256, Literal(sha256)), _q(result, PHT.byteSize, Literal(size)),
            _q(result, PROV.wasDerivedFrom, NamedNode(train)), _q(result, ODRL.hasPolicy, offer),
            _q(offer, RDF_TYPE, ODRL.Offer), _q(offer, ODRL.permission, permission),
            _q(permission, ODRL.action, ODRL.use),
        ]
        for i, c in enumerate(policy.constraints):
            node = NamedNode(f"{result.value}/offer/constraint/{i:03d}")
            quads += [_q(permission, ODRL.constraint, node), _q(node, ODRL.leftOperand, _LEFT[c.left_operand]),
                      _q(node, ODRL.operator, NamedNode(ODRL_NS + c.operator)),
                      _q(node, ODRL.rightOperand, Literal(c.right_operand))]
        self.store.apply(ChangeSet(insert=quads))
        return PublishedResult(result, title, sha256, size, train, offer.value, policy)

    def withdraw(self, result: NamedNode) -> None:
        """Mark a published result withdrawn (once): it leaves the catalog and nothing more is transferred."""
        self.store.apply(ChangeSet(insert=[_q(result, PHT.withdrawn, now_literal())]))

    def catalog(self) -> list[PublishedResult]:
        """Every published result not withdrawn, in IRI order."""
        return self._results(self.store.run_query("dataspace_catalog", graph=_G), None)

    def result(self, result: NamedNode) -> PublishedResult | None:
        """One published result, withdrawn or not; None if never published here."""
        found = self._results(self.store.run_query("dataspace_result", graph=_G, result=result), result)
        return found[0] if found else None

    @staticmethod
    def _results(rows: Iterable[QuerySolution], fixed: NamedNode | None) -> list[PublishedResult]:
        grouped: dict[str, tuple[QuerySolution, list[Constraint]]] = {}
        for row in rows:
            iri = fixed.value if fixed is not None else str(row["result"].value)
            entry = grouped.setdefault(iri, (row, []))
            if row["left"] is not None:
                entry[1].append(Constraint(_LEFT_BACK[row["left"].value],
                                           row["operator"].value.removeprefix(ODRL_NS), row["right"].value))
        out = []
        for iri, (row, constraints) in grouped.items():
            out.append(PublishedResult(NamedNode(iri), row["title"].value, row["sha256"].value,
                                       int(row["size"].value), row["train"].value, row["offer"].value,
                                       Policy(tuple(constraints)),
                                       _str(row, "withdrawn") if fixed is not None else None))
        return out

    # -- processes --------------------------------------------------------------------------------------------

    def new_process(self, process_class: NamedNode, *, role: NamedNode, consumer_pid: str, counterparty: str,
                    provider_pid: str | None = None, callback: str | None = None, result: NamedNode | None = None,
                    offer_id: str | None = None, agreement: NamedNode | None = None,
                    format: str | None = None) -> NamedNode:
        """Write a new process in its chart's initial state."""
        kind = "negotiations" if process_class == PHT.ContractNegotiation else "transfers"
        p = NamedNode(f"{self.base}dataspace/{kind}/{uuid.uuid4()}")
        quads = [_q(p, RDF_TYPE, process_class), _q(p, PHT.protocolState, chart().initial[process_class]),
                 _q(p, PHT.connectorRole, role), _q(p, PHT.consumerPid, Literal(consumer_pid)),
                 _q(p, PHT.counterparty, Literal(counterparty))]
        optional: list[tuple[NamedNode, NamedNode | Literal | None]] = [
            (PHT.providerPid, Literal(provider_pid) if provider_pid else None),
            (PHT.callbackAddress, Literal(callback) if callback else None), (PHT.negotiatedResult, result),
            (PHT.offerId, Literal(offer_id) if offer_id else None), (PHT.agreement, agreement),
            (PHT.transferFormat, Literal(format) if format else None)]
        quads += [_q(p, k, v) for k, v in optional if v is not None]
        self.store.apply(ChangeSet(insert=quads))
        return p

    def process(self, process_class: NamedNode, *, role: NamedNode, provider_pid: str | None = None,
                consumer_pid: str | None = None) -> Process | None:
        """The process of ``role`` with that provider (or consumer) id; None if there is none."""
        prop, pid = (PHT.providerPid, provider_pid) if provider_pid is not None else (PHT.consumerPid, consumer_pid)
        rows = list(self.store.run_query("dataspace_process", graph=_G, **{"class": process_class},
                                         pidProperty=prop, pid=Literal(pid or ""), role=role))
        if not rows:
            return None
        r = rows[0]
        result, agreement = r["result"], r["agreement"]
        return Process(
            iri=NamedNode(r["process"].value), process_class=process_class, state=NamedNode(r["state"].value),
            state_name=r["stateName"].value, consumer_pid=r["consumerPid"].value,
            provider_pid=_str(r, "providerPid"), counterparty=r["counterparty"].value, callback=_str(r, "callback"),
            result=NamedNode(result.value) if result is not None else None, offer_id=_str(r, "offerId"),
            agreement=NamedNode(agreement.value) if agreement is not None else None,
            agreement_id=_str(r, "agreementId"), format=_str(r, "format"))

    def advance(self, process: Process, message: str, *, insert: Iterable[Quad] = ()) -> NamedNode:
        """Move ``process`` along its chart for ``message`` from the state it was read in, with ``insert``.

        :raises OutOfOrder: the chart has no such step from that state, or another message moved it first.
        """
        to = chart().next_state(process.process_class, process.state, message)
        if to is None:
            raise OutOfOrder(f"A {message.split(':')[0]} is not allowed in state {process.state_name}.")
        current = _q(process.iri, PHT.protocolState, process.state)
        try:
            self.store.apply(ChangeSet(delete=[current], insert=[_q(process.iri, PHT.protocolState, to), *insert],
                                       guard=[current]))
        except ConflictError:
            raise OutOfOrder(f"A {message.split(':')[0]} arrived while the process changed state.") from None
        return to

    def set_provider_pid(self, process: Process, provider_pid: str) -> None:
        """Record the provider's id on a consumer's process (the same value again is no change)."""
        if process.provider_pid != provider_pid:
            self.store.apply(ChangeSet(insert=[_q(process.iri, PHT.providerPid, Literal(provider_pid))]))

    # -- agreements -------------------------------------------------------------------------------------------

    def agreement_quads(self, *, agreement_id: str, result: NamedNode, assignee: str, assigner: str,
                        issued: datetime, usable_until: datetime | None) -> tuple[NamedNode, list[Quad]]:
        """An agreement's IRI and quads, to be written with the step that reaches it."""
        a = NamedNode(f"{self.base}dataspace/agreements/{uuid.uuid4()}")
        quads = [_q(a, RDF_TYPE, PHT.ContractAgreement), _q(a, DCTERMS.identifier, Literal(agreement_id)),
                 _q(a, PHT.negotiatedResult, result), _q(a, PHT.assignee, Literal(assignee)),
                 _q(a, PHT.assigner, Literal(assigner)), _q(a, DCTERMS.issued, _time(issued))]
        if usable_until is not None:
            quads.append(_q(a, PHT.usableUntil, _time(usable_until)))
        return a, quads

    def agreement(self, agreement_id: str, *, role: NamedNode) -> AgreementRecord | None:
        """The agreement with that id this connector reached as ``role``; None if unknown."""
        rows = list(self.store.run_query("dataspace_agreement", graph=_G, agreementId=Literal(agreement_id),
                                         role=role))
        if not rows:
            return None
        r = rows[0]
        until = _str(r, "usableUntil")
        return AgreementRecord(NamedNode(r["agreement"].value), agreement_id, NamedNode(r["result"].value),
                               r["assignee"].value, r["assigner"].value,
                               datetime.fromisoformat(until.replace("Z", "+00:00")) if until else None,
                               NamedNode(r["negotiationState"].value))

    # -- pull tokens ------------------------------------------------------------------------------------------

    def token_quads(self, transfer: NamedNode, digest: str, expires: datetime) -> list[Quad]:
        """A new unused token's quads (its digest only), to be written with the step that starts the transfer."""
        t = NamedNode(f"{self.base}dataspace/tokens/{digest}")
        return [_q(t, RDF_TYPE, PHT.AccessToken), _q(t, PHT.tokenDigest, Literal(digest)),
                _q(t, PHT.tokenExpires, _time(expires)), _q(t, PHT.tokenFor, transfer),
                _q(t, PHT.tokenUnused, Literal(True))]

    def token(self, digest: str) -> TokenRecord | None:
        """The record of the token with that SHA-256; None if unknown."""
        rows = list(self.store.run_query("dataspace_token", graph=_G, digest=Literal(digest)))
        if not rows:
            return None
        r = rows[0]
        expires = datetime.fromisoformat(r["expires"].value.replace("Z", "+00:00"))
        return TokenRecord(NamedNode(r["token"].value), expires,
                           r["unused"] is not None, NamedNode(r["state"].value), r["providerPid"].value,
                           NamedNode(r["result"].value), r["withdrawn"] is not None)

    def use_token(self, token: TokenRecord) -> bool:
        """Spend an unused token (compare-and-set): True for exactly one caller, False if already used."""
        unused = _q(token.iri, PHT.tokenUnused, Literal(True))
        try:
            self.store.apply(ChangeSet(delete=[unused], guard=[unused]))
        except ConflictError:
            return False
        return True

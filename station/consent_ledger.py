"""The station's own record of its consent decisions and of the privacy loss ε its releases spent.

Kept in the station's own store (the one the disclosure ledger uses, ``station/disclosure.py``: an embedded store
under the state folder, never the central store), in its own graph: each decision on an execution under the
consent policy (``pht:ConsentDecision``: permit or refuse, the rule, the reason, when) and each differentially
private release (``pht:EpsilonSpend``: researcher, project, dataset, ε, when). A privacy budget
(``pht:epsilonBudget`` of the permission that permitted the train) is checked against the sum of ε the researcher
spent on that project and dataset (``sparql_queries/station_epsilon_spent.rq``): before the train runs (so no work
is wasted) and again before its output leaves (a release in between may have spent the rest).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import PHT, RDF_TYPE, XSD, ChangeSet, EmbeddedStore

from .consent import Decision
from .disclosure import open_ledger

__all__ = ["CONSENT_GRAPH", "ConsentLedger", "Spend", "SpentRow", "open_consent_ledger"]

CONSENT_GRAPH = NamedNode("https://w3id.org/pht-kg/graph/station-consent")  #: in the station's own store only


@dataclass(frozen=True)
class Spend:
    """One differentially private release: whose budget, which project and dataset, how much ε."""

    execution: str  #: the execution's IRI
    researcher: str
    project: str  #: '' if the request declared none
    dataset: str
    epsilon: Decimal


@dataclass(frozen=True)
class SpentRow:
    """The ledger's sum for one researcher, project and dataset."""

    researcher: str
    project: str
    dataset: str
    spent: Decimal
    releases: int


class ConsentLedger:
    """The station's consent graph in its own store (see the module)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store

    def record_decision(self, execution: str, decision: Decision, *, at: datetime | None = None) -> NamedNode:
        """Add ``decision`` on ``execution`` (validated by the shapes); one per execution (the first stays)."""
        node = NamedNode(execution + "/consent-decision")
        if self.store.contains(Quad(node, RDF_TYPE, PHT.ConsentDecision, CONSENT_GRAPH)):
            return node
        quads = [Quad(node, RDF_TYPE, PHT.ConsentDecision, CONSENT_GRAPH),
                 Quad(node, PHT.decidedExecution, NamedNode(execution), CONSENT_GRAPH),
                 Quad(node, PHT.consentOutcome, Literal("permit" if decision.permitted else "refuse"), CONSENT_GRAPH),
                 Quad(node, PHT.consentReason, Literal(decision.reason), CONSENT_GRAPH),
                 Quad(node, PHT.decidedAt, _now(at), CONSENT_GRAPH)]
        if decision.rule is not None:
            quads.append(Quad(node, PHT.consentRule, NamedNode(decision.rule.iri), CONSENT_GRAPH))
        self.store.apply(ChangeSet(insert=quads))
        return node

    def decision(self, execution: str) -> tuple[str, str] | None:
        """(outcome, reason) of the decision recorded on ``execution``, or None."""
        node = NamedNode(execution + "/consent-decision")
        outcome = self.store.quads(node, PHT.consentOutcome, None, CONSENT_GRAPH)
        reason = self.store.quads(node, PHT.consentReason, None, CONSENT_GRAPH)
        if not outcome or not reason or not isinstance(o := outcome[0].object, Literal) \
                or not isinstance(r := reason[0].object, Literal):
            return None
        return o.value, r.value

    def spent(self, researcher: str, project: str, dataset: str) -> Decimal:
        """The ε ``researcher`` spent on ``project`` and ``dataset`` at this station."""
        rows = self.store.run_query("station_epsilon_spent", graph=CONSENT_GRAPH, researcher=NamedNode(researcher),
                                    project=Literal(project), dataset=Literal(dataset))
        return sum((Decimal(row["epsilon"].value) for row in rows), Decimal(0))

    def spent_by(self, execution: str) -> Decimal | None:
        """The ε the release of ``execution`` spent, or None if it spent none (yet)."""
        found = self.store.quads(NamedNode(execution + "/epsilon-spend"), PHT.epsilon, None, CONSENT_GRAPH)
        return Decimal(found[0].object.value) if found and isinstance(found[0].object, Literal) else None

    def record_spend(self, spend: Spend, *, at: datetime | None = None) -> NamedNode:
        """Add ``spend`` (validated by the shapes); the same execution again changes nothing."""
        node = NamedNode(spend.execution + "/epsilon-spend")
        if self.store.contains(Quad(node, RDF_TYPE, PHT.EpsilonSpend, CONSENT_GRAPH)):
            return node
        g = CONSENT_GRAPH
        self.store.apply(ChangeSet(insert=[
            Quad(node, RDF_TYPE, PHT.EpsilonSpend, g), Quad(node, PHT.spentExecution, NamedNode(spend.execution), g),
            Quad(node, PHT.spentBy, NamedNode(spend.researcher), g), Quad(node, PHT.spentProject,
                                                                         Literal(spend.project), g),
            Quad(node, PHT.spentDataset, Literal(spend.dataset), g),
            Quad(node, PHT.epsilon, Literal(str(spend.epsilon), datatype=XSD.decimal), g),
            Quad(node, PHT.releasedAt, _now(at), g)]))
        return node

    def ledger(self) -> list[SpentRow]:
        """Every researcher's, project's and dataset's ε spent at this station (for its admin)."""
        return [SpentRow(r["researcher"].value, r["project"].value, r["dataset"].value, Decimal(r["spent"].value),
                         int(r["releases"].value))
                for r in self.store.run_query("station_epsilon_ledger", graph=CONSENT_GRAPH)]


def _now(at: datetime | None) -> Literal:
    when = (at or datetime.now(timezone.utc)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return Literal(when, datatype=XSD.dateTime)


@contextmanager
def open_consent_ledger(state_dir: Path) -> Iterator[ConsentLedger]:
    """The station's consent graph, in the store ``station/disclosure.py`` opens under ``state_dir`` (one store
    per station; one process at a time, so a budget check and the spend it allows are not interleaved)."""
    with open_ledger(state_dir) as disclosure:
        yield ConsentLedger(disclosure.store)

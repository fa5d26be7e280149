"""Privacy budgets: the ε a differentially private release spends, counted per researcher, project and dataset.

A permission of the consent policy with ``pht:epsilonBudget B`` (``station/consent.py``) requires every train it
permits to declare its mechanism and its ε per release (``pht:dpMechanism``, ``pht:epsilon``, signed). The station
refuses, in one sentence: a missing or non-positive ε, and an ε that with what the researcher already spent on the
project and dataset (``station/consent_ledger.py``) would exceed B. It checks at ``queued``, before anything runs,
and again when the output is released, where the spend is recorded (in the same opening of the station's store as
the check, so two releases cannot both spend the last of a budget). A train that declares an ε under a permission
without a budget is still recorded, so the admin sees every ε spent (``pht station budget``).

What is held between the two checks is the execution's :class:`HeldSpend` (``spend.json`` in its folder).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from client.execution_records import RuleApplied
from graph_store import GraphStoreError

from .consent import Declared, Rule
from .files import write_atomic
from .consent_ledger import Spend, open_consent_ledger
from .disclosure import LEDGER_DIR

__all__ = ["BudgetExceeded", "HeldSpend", "budget_problem", "consent_rules", "load_spend", "save_spend",
           "spend_on_release"]

SPEND_FILE = "spend.json"


class BudgetExceeded(ValueError):
    """The release would take the researcher's ε beyond the budget: one sentence (nothing is released)."""


@dataclass(frozen=True)
class HeldSpend:
    """What an execution's release will spend, and the budget the permission set (None: none, only recorded)."""

    spend: Spend
    budget: Decimal | None
    rule: str

    def remaining(self, spent: Decimal) -> str:
        """The sentence the researcher is shown: their budget left on this project and dataset (theirs only)."""
        project = f"project {self.spend.project}" if self.spend.project else "no project"
        if self.budget is None:
            return f"ε spent by you on {project} at dataset {self.spend.dataset}: {spent} (no budget set)"
        return (f"privacy budget left for you on {project} at dataset {self.spend.dataset}: ε {self.budget - spent} "
                f"of {self.budget}")


def budget_problem(rule: Rule, declared: Declared, spent: Decimal, *, station: str) -> str | None:
    """Why the permission ``rule`` does not let ``declared`` run given ``spent`` so far, or None."""
    if rule.epsilon_budget is None:
        return None
    refuse = f"station {station} refuses the train"
    if declared.epsilon is None or declared.dp_mechanism is None:
        return (f"{refuse}: the permission {rule.iri} sets a privacy budget, so a train must declare its "
                "differentially private mechanism and its ε per release (dp_mechanism, epsilon)")
    if declared.epsilon <= 0:
        return f"{refuse}: its ε {declared.epsilon} is not positive"
    if spent + declared.epsilon > rule.epsilon_budget:
        project = f"project {declared.project}" if declared.project else "no project"
        return (f"{refuse}: its ε {declared.epsilon} would exceed the privacy budget of the permission {rule.iri} "
                f"(ε {rule.epsilon_budget} for each researcher, project and dataset; {declared.requester} has spent "
                f"{spent} on {project} here)")
    return None


def save_spend(folder: Path, held: HeldSpend) -> None:
    """Write what the execution's release will spend into its folder (atomically)."""
    s = held.spend
    data = {"execution": s.execution, "researcher": s.researcher, "project": s.project, "dataset": s.dataset,
            "epsilon": str(s.epsilon), "budget": None if held.budget is None else str(held.budget), "rule": held.rule}
    write_atomic(folder / SPEND_FILE, json.dumps(data, sort_keys=True).encode())


def load_spend(folder: Path) -> HeldSpend | None:
    """The execution's held spend, or None if its train declared no ε."""
    try:
        data = json.loads((folder / SPEND_FILE).read_text())
        return HeldSpend(Spend(str(data["execution"]), str(data["researcher"]), str(data["project"]),
                               str(data["dataset"]), Decimal(str(data["epsilon"]))),
                         None if data["budget"] is None else Decimal(str(data["budget"])), str(data["rule"]))
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError):
        return None


def spend_on_release(state_dir: Path, held: HeldSpend, *, record: bool = True) -> str:
    """Check the held spend against the budget and (with ``record``) record it, in one opening of the station's
    store; the researcher's remaining budget after it, as a sentence.

    :raises BudgetExceeded: the release would exceed the budget (nothing recorded).
    """
    with open_consent_ledger(state_dir) as ledger:
        s = held.spend
        spent = ledger.spent(s.researcher, s.project, s.dataset)
        already = ledger.spent_by(s.execution)
        if already is None and held.budget is not None and spent + s.epsilon > held.budget:
            raise BudgetExceeded(
                f"the output's ε {s.epsilon} would exceed the privacy budget of the "
                f"permission {held.rule} (ε {held.budget}; {s.researcher} has spent {spent} on this project and "
                "dataset here)")
        if record and already is None:
            ledger.record_spend(s)
            spent += s.epsilon
        elif already is None:
            spent += s.epsilon
    return held.remaining(spent)


def consent_rules(state_dir: Path, folder: Path, execution: str) -> tuple[RuleApplied, ...]:
    """The consent rules applied to ``execution``, for its station-signed record: ``consent`` (the decision
    recorded at ``queued``, if the policy made one) and ``privacy-budget`` (if a budget applies to its release).
    Names and outcomes only, like every rule of the record."""
    rules, decided = [], None
    if (state_dir / LEDGER_DIR).is_dir():  # no store yet: nothing was decided (and none is made for asking)
        try:
            with open_consent_ledger(state_dir) as ledger:
                decided = ledger.decision(execution)
        except GraphStoreError:
            decided = None
    if decided is not None:
        rules.append(RuleApplied("consent", decided[0] == "permit"))
    held = load_spend(folder)
    if held is not None and held.budget is not None:
        rules.append(RuleApplied("privacy-budget", True))
    return tuple(rules)

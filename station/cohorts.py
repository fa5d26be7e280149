"""A train's cohort as the station reads it: parsed from the train's signed ``COHORT`` parameter, checked against
the station's own dataset, measured there, and the only rows the train gets.

Why the station does this itself: a differencing attack (the count of a cohort, then of the same cohort minus one
person) can only be caught by comparing the people two releases are about, and the station must not take the
train's word for who they are. So a train declares its cohort as a filter over the dataset's variables
(``age >= 40 AND sex = F``: criteria joined by ``AND``, each ``variable operator value`` with an operator of
``< <= > >= = !=``), the station maps each variable onto a column of its CSV files, selects the rows itself
(:func:`measure`), and runs the train on those rows only (:func:`materialise`): the cohort size and member set it
records are what the train saw, measured, not claimed. A filter the station cannot interpret (syntax, a variable
its data does not have, an ordering on a non-number) is refused with one sentence before anything runs.

>>> cohort = parse_cohort("age >= 40 AND sex = F")
>>> [(c.variable, c.operator, c.value) for c in cohort.criteria]
[('age', 'ge', '40'), ('sex', 'eq', 'F')]
>>> parse_cohort("age >=")
Traceback (most recent call last):
...
station.cohorts.CohortRefused: the cohort definition cannot be interpreted: "age >=" is not "variable operator value"
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pyoxigraph import Literal, NamedNode, Triple

from graph_store import PHT, RDF_TYPE

__all__ = ["COHORT_PARAMETER", "Cohort", "CohortRefused", "Criterion", "Measured", "cohort_of", "dataset_version",
           "csv_tables", "materialise", "measure", "parse_cohort", "table_header", "table_rows"]

COHORT_PARAMETER = "COHORT"  #: the train parameter that declares the cohort (signed with the other values)
MAX_CRITERIA = 20
_OPERATORS = {"<=": "le", ">=": "ge", "!=": "ne", "<": "lt", ">": "gt", "=": "eq"}
_CRITERION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*(<=|>=|!=|<|>|=)\s*([^\s]{1,100})\s*$")
_ORDERING = frozenset({"lt", "le", "gt", "ge"})


class CohortRefused(ValueError):
    """The cohort definition cannot be interpreted by this station; the message is one sentence for the researcher."""


@dataclass(frozen=True)
class Criterion:
    variable: str
    operator: str  #: lt le gt ge eq ne
    value: str

    def holds(self, cell: str) -> bool:
        """Whether a row whose ``variable`` is ``cell`` meets this criterion (numbers compared as numbers)."""
        left, right = _number(cell), _number(self.value)
        if self.operator in _ORDERING:
            if left is None or right is None:
                return False
            return {"lt": left < right, "le": left <= right, "gt": left > right, "ge": left >= right}[self.operator]
        same = left == right if left is not None and right is not None else cell.strip() == self.value
        return same if self.operator == "eq" else not same


@dataclass(frozen=True)
class Cohort:
    """A conjunction of criteria over the dataset's variables, in a canonical order (so equal filters are equal)."""

    criteria: tuple[Criterion, ...]

    def text(self) -> str:
        symbols = {v: k for k, v in _OPERATORS.items()}
        return " AND ".join(f"{c.variable} {symbols[c.operator]} {c.value}" for c in self.criteria)

    def triples(self, node: NamedNode) -> list[Triple]:
        """The cohort as RDF (``pht:Cohort`` with one ``pht:CohortCriterion`` per criterion, ontology/disclosure.ttl)."""
        out = [Triple(node, RDF_TYPE, PHT.Cohort), Triple(node, PHT.cohortFilter, Literal(self.text()))]
        for i, c in enumerate(self.criteria):
            crit = NamedNode(f"{node.value}/criterion/{i}")
            out += [Triple(node, PHT.criterion, crit), Triple(crit, RDF_TYPE, PHT.CohortCriterion),
                    Triple(crit, PHT.cohortVariable, Literal(c.variable)),
                    Triple(crit, PHT.cohortOperator, Literal(c.operator)),
                    Triple(crit, PHT.comparedWith, Literal(c.value))]
        return out


@dataclass(frozen=True)
class Measured:
    """A cohort as the station's data holds it: its members (bit i = row i of the dataset, files in name order), their
    number, and the dataset's version (a digest of its files). Stays at the station."""

    members: int
    size: int
    dataset_version: str


def parse_cohort(text: str) -> Cohort:
    """The cohort ``text`` declares. :raises CohortRefused: it is not a conjunction of criteria."""
    parts = re.split(r"\s+AND\s+", text.strip(), flags=re.IGNORECASE) if text.strip() else []
    if not parts:
        raise CohortRefused("the cohort definition cannot be interpreted: it is empty")
    if len(parts) > MAX_CRITERIA:
        raise CohortRefused(f"the cohort definition cannot be interpreted: it has more than {MAX_CRITERIA} criteria")
    criteria = []
    for part in parts:
        match = _CRITERION.match(part)
        if match is None:
            raise CohortRefused(f'the cohort definition cannot be interpreted: "{part.strip()[:80]}" is not '
                                '"variable operator value"')
        variable, symbol, value = match.groups()
        operator = _OPERATORS[symbol]
        if operator in _ORDERING and _number(value) is None:
            raise CohortRefused(f"the cohort definition cannot be interpreted: {variable} {symbol} needs a number")
        criteria.append(Criterion(variable, operator, value))
    return Cohort(tuple(sorted(set(criteria), key=lambda c: (c.variable, c.operator, c.value))))


def cohort_of(parameters: dict[str, str], dataset: Path) -> Cohort | None:
    """The cohort the train's parameters declare, checked against ``dataset``'s variables, or None if it declares
    none. :raises CohortRefused: it cannot be interpreted over this station's data."""
    text = parameters.get(COHORT_PARAMETER)
    if text is None:
        return None
    cohort = parse_cohort(text)
    files = csv_tables(dataset)
    if not files:
        raise CohortRefused("the cohort definition cannot be interpreted: the station's dataset has no CSV table")
    for path in files:
        header = table_header(path)
        missing = sorted({c.variable for c in cohort.criteria} - set(header))
        if missing:
            raise CohortRefused(f"the cohort definition cannot be interpreted: the station's dataset has no variable "
                                f"{missing[0]}")
    return cohort


def measure(cohort: Cohort, dataset: Path) -> Measured:
    """Which rows of ``dataset`` (its ``*.csv`` files in name order) are in ``cohort``, read by the station."""
    members, index, size = 0, 0, 0
    for path in csv_tables(dataset):
        for row in table_rows(path):
            if all(c.holds(row.get(c.variable) or "") for c in cohort.criteria):
                members |= 1 << index
                size += 1
            index += 1
    return Measured(members, size, dataset_version(dataset))


def dataset_version(dataset: Path) -> str:
    """``sha256:`` and the SHA-256 over the names and contents of the dataset's CSV tables (what a cohort reads)."""
    digest = hashlib.sha256()
    for path in csv_tables(dataset):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def materialise(cohort: Cohort, dataset: Path, target: Path) -> None:
    """Write the cohort's rows of each CSV file of ``dataset`` (with its header) into ``target``: the train's data."""
    target.mkdir(parents=True, exist_ok=True)
    for path in csv_tables(dataset):
        with (target / path.name).open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, fieldnames=table_header(path), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(row for row in table_rows(path)
                             if all(c.holds(row.get(c.variable) or "") for c in cohort.criteria))


def csv_tables(dataset: Path) -> list[Path]:
    """The dataset's tables: its ``*.csv`` files in name order (what trains, cohorts and descriptions read)."""
    return sorted(p for p in dataset.glob("*.csv") if p.is_file())


def table_header(path: Path) -> list[str]:
    """The table's column names. :raises CohortRefused: it is not CSV."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        try:
            return next(csv.reader(f), [])
        except csv.Error as e:
            raise CohortRefused(f"the station's table {path.name} cannot be read as CSV: {e}") from None


def table_rows(path: Path) -> list[dict[str, str]]:
    """The table's rows by column name. :raises CohortRefused: it is not CSV."""
    with path.open(newline="", encoding="utf-8", errors="replace") as f:
        try:
            return list(csv.DictReader(f))
        except csv.Error as e:
            raise CohortRefused(f"the station's table {path.name} cannot be read as CSV: {e}") from None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


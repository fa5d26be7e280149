"""What this station has released, kept in its own RDF graph (never the central store), and the differencing check.

Every released output whose train declared a cohort (``station/cohorts.py``) becomes a ``pht:DisclosureRelease``
in the station's disclosure graph (an embedded store under the state folder): the statistic (definition and image),
the cohort definition as RDF, its size and member set as the station measured them, the dataset version. Before a
release the station looks for earlier releases whose cohort differs from the new one by more than nobody and fewer
than the policy's minimum cell count (``sparql_queries/station_release_candidates.rq`` narrows them by size, the
member sets give the exact difference): two such counts give away the people in the difference, whoever asked.
Such an output is held for the admin with the earlier release and the size of the difference (the check's detail,
which stays at the station), or withheld by the policy (``pht:withholdsDifferencing``).

The store is opened for each use and closed after (:func:`open_ledger`), since the admin's ``pht station release``
runs in another process than the agent and RocksDB lets one process open it at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import PHT, RDF_TYPE, XSD, ChangeSet, EmbeddedStore, InvalidInputError

from .cohorts import Cohort, Measured, parse_cohort
from .files import write_atomic
from .review import Check

__all__ = ["COHORT_FILE", "DISCLOSURE_GRAPH", "DisclosureLedger", "HeldCohort", "NearRelease", "differencing_check",
           "load_cohort", "open_ledger", "release_quads", "save_cohort"]

DISCLOSURE_GRAPH = NamedNode("https://w3id.org/pht-kg/graph/station-disclosure")  #: the graph, in the station's own store only
LEDGER_DIR = "disclosure-graph"
COHORT_FILE = "cohort.json"
OPEN_ATTEMPTS_S = 10.0  #: how long to wait for the other process (agent or CLI) to close the store


@dataclass(frozen=True)
class HeldCohort:
    """The cohort of one held output, measured when the train ran (``cohort.json`` in the execution's folder)."""

    execution: str  #: the execution's IRI
    statistic: str  #: what was computed: the definition and image digest
    cohort: Cohort
    measured: Measured


@dataclass(frozen=True)
class NearRelease:
    """An earlier release whose cohort differs from a new one by ``difference`` people (0 < difference < minimum)."""

    release: str
    execution: str
    statistic: str
    difference: int


def save_cohort(folder: Path, held: HeldCohort) -> None:
    """Write the held output's cohort into its folder (atomically). The member set never leaves the station."""
    data = {"execution": held.execution, "statistic": held.statistic, "filter": held.cohort.text(),
            "members": _hex(held.measured.members), "size": held.measured.size,
            "dataset_version": held.measured.dataset_version}
    write_atomic(folder / COHORT_FILE, json.dumps(data, sort_keys=True).encode())


def load_cohort(folder: Path) -> HeldCohort | None:
    """The held output's cohort, or None if its train declared none."""
    try:
        data = json.loads((folder / COHORT_FILE).read_text())
        return HeldCohort(str(data["execution"]), str(data["statistic"]), parse_cohort(str(data["filter"])),
                          Measured(int(data["members"], 16), int(data["size"]), str(data["dataset_version"])))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class DisclosureLedger:
    """The station's releases in its disclosure graph (see the module)."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store

    def record_release(self, held: HeldCohort, *, released_at: datetime | None = None) -> NamedNode:
        """Add the release of ``held`` (validated by the shapes); the same execution again changes nothing."""
        node = NamedNode(held.execution + "/release")
        if not self.store.contains(Quad(node, RDF_TYPE, PHT.DisclosureRelease, DISCLOSURE_GRAPH)):
            self.store.apply(ChangeSet(insert=release_quads(held, released_at=released_at)))
        return node

    def near(self, measured: Measured, minimum: int, *, exclude: str | None = None) -> list[NearRelease]:
        """Earlier releases whose cohort differs from ``measured`` by 1 .. ``minimum``-1 people, closest first
        (``exclude``: an execution not to compare with, the output's own release)."""
        rows = self.store.run_query(
            "station_release_candidates", graph=DISCLOSURE_GRAPH,
            low=Literal(str(max(0, measured.size - minimum + 1)), datatype=XSD.integer),
            high=Literal(str(measured.size + minimum - 1), datatype=XSD.integer))
        found = []
        for row in rows:
            execution = row["execution"].value
            if execution == exclude:
                continue
            difference = (int(row["members"].value or "0", 16) ^ measured.members).bit_count()
            if 0 < difference < minimum:
                found.append(NearRelease(row["release"].value, execution, row["statistic"].value, difference))
        return sorted(found, key=lambda n: (n.difference, n.release))


def release_quads(held: HeldCohort, *, released_at: datetime | None = None) -> list[Quad]:
    """The quads of the release of ``held`` in the disclosure graph: the release and its cohort."""
    node, cohort = NamedNode(held.execution + "/release"), NamedNode(held.execution + "/cohort")
    when = (released_at or datetime.now(timezone.utc)).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    triples: list[tuple[NamedNode, NamedNode, NamedNode | Literal]] = [
        (node, RDF_TYPE, PHT.DisclosureRelease), (node, PHT.releasedExecution, NamedNode(held.execution)),
        (node, PHT.statistic, Literal(held.statistic)), (node, PHT.releasedCohort, cohort),
        (node, PHT.cohortSize, Literal(str(held.measured.size), datatype=XSD.integer)),
        (node, PHT.cohortMembers, Literal(_hex(held.measured.members), datatype=XSD.hexBinary)),
        (node, PHT.datasetVersion, Literal(held.measured.dataset_version)),
        (node, PHT.releasedAt, Literal(when, datatype=XSD.dateTime))]
    return ([Quad(s, p, o, DISCLOSURE_GRAPH) for s, p, o in triples]
            + [Quad(t.subject, t.predicate, t.object, DISCLOSURE_GRAPH) for t in held.cohort.triples(cohort)])


@contextmanager
def open_ledger(state_dir: Path) -> Iterator[DisclosureLedger]:
    """The station's disclosure graph under ``state_dir``, open for the ``with`` block (waiting up to
    :data:`OPEN_ATTEMPTS_S` while the other process has it open). :raises InvalidInputError: it cannot be opened."""
    path = state_dir / LEDGER_DIR
    deadline = time.monotonic() + OPEN_ATTEMPTS_S
    while True:
        try:
            store = EmbeddedStore(path)
            break
        except InvalidInputError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield DisclosureLedger(store)
    finally:
        store.close()


def _hex(members: int) -> str:
    """The member bitmap as xsd:hexBinary (whole bytes)."""
    text = format(members, "x")
    return "0" + text if len(text) % 2 else text


def differencing_check(near: list[NearRelease], minimum: int) -> Check:
    """The review's line for the differencing check: which earlier release is too close, and by how many people
    (for the station's admin: the detail stays at the station, like every check's)."""
    if not near:
        return Check("differencing", True, "No earlier release of this station has a cohort that differs from this "
                                           f"one by fewer than {minimum} people.")
    first = near[0]
    more = f" (and {len(near) - 1} more)" if len(near) > 1 else ""
    return Check("differencing", False, f"The cohort differs by {first.difference} person(s), fewer than the "
                                        f"minimum cell count {minimum}, from the cohort of the release {first.release} "
                                        f"of execution {first.execution} ({first.statistic}){more}: together they "
                                        "would disclose the people in the difference.")

"""The station's cohorts and its disclosure graph, without a platform: what the end-to-end attack tests build on.

The cohort's member set is measured over the dataset's own rows (not over the train's copy), so two cohorts of the
same size but different people are told apart; the disclosure graph's records conform to the shapes, and each
shape refuses what it should (passing and failing examples).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import PHT, RDF_TYPE, XSD, ChangeSet, validate_unstored
from station.cohorts import CohortRefused, cohort_of, materialise, measure, parse_cohort
from station.disclosure import DISCLOSURE_GRAPH, HeldCohort, differencing_check, open_ledger
from station.policy import PolicyError, load_policy

ROWS = "age,sex\n" + "".join(f"{25 + i},{'F' if i % 2 else 'M'}\n" for i in range(30))
EXECUTION = "https://pht.example.org/id/executions/e1"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "patients.csv").write_text(ROWS)
    return folder


def test_member_sets_tell_apart_cohorts_of_one_size(dataset: Path) -> None:
    """age >= 41 and (age >= 40 but not 41) both have 14 people; two differ, which the sizes alone do not show."""
    a = measure(parse_cohort("age >= 41"), dataset)
    b = measure(parse_cohort("age >= 40 AND age != 41"), dataset)
    assert a.size == b.size == 14 and (a.members ^ b.members).bit_count() == 2
    assert a.dataset_version == b.dataset_version and a.dataset_version.startswith("sha256:")


def test_the_train_gets_the_cohorts_rows_only(dataset: Path, tmp_path: Path) -> None:
    materialise(parse_cohort("sex = F AND age < 35"), dataset, tmp_path / "cohort")
    assert (tmp_path / "cohort" / "patients.csv").read_text() == "age,sex\n26,F\n28,F\n30,F\n32,F\n34,F\n"


def test_equal_filters_are_one_cohort() -> None:
    assert parse_cohort("sex = F AND age >= 40") == parse_cohort("age>=40 and sex=F")


@pytest.mark.parametrize("text, sentence", [
    ("", "it is empty"),
    ("age >= forty", "age >= needs a number"),
    ("age; DROP", '"age; DROP" is not "variable operator value"'),
    (" AND ".join(f"age > {i}" for i in range(21)), "it has more than 20 criteria"),
])
def test_uninterpretable_filters_are_refused_with_a_sentence(text: str, sentence: str) -> None:
    with pytest.raises(CohortRefused, match="^the cohort definition cannot be interpreted: " + sentence):
        parse_cohort(text)


def test_a_variable_the_dataset_lacks_is_refused(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(CohortRefused, match="has no variable weight$"):
        cohort_of({"COHORT": "weight > 3"}, dataset)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortRefused, match="has no CSV table$"):
        cohort_of({"COHORT": "age > 3"}, tmp_path / "empty")
    assert cohort_of({"OTHER": "x"}, dataset) is None


def test_the_ledger_finds_near_releases_and_not_far_or_equal_ones(dataset: Path, tmp_path: Path) -> None:
    with open_ledger(tmp_path / "state") as ledger:
        for i, text in enumerate(("age >= 40", "age >= 50", "sex = F")):
            cohort = parse_cohort(text)
            ledger.record_release(HeldCohort(f"{EXECUTION}{i}", "count (sha256:ab)", cohort, measure(cohort, dataset)))
        near = ledger.near(measure(parse_cohort("age >= 42"), dataset), 5)
        same = ledger.near(measure(parse_cohort("age >= 40"), dataset), 5)
    assert [(n.execution, n.difference) for n in near] == [(f"{EXECUTION}0", 2)]
    assert same == []  # nobody is in the difference of a cohort and itself
    check = differencing_check(near, 5)
    assert not check.passed and "differs by 2 person(s)" in check.detail and f"{EXECUTION}0/release" in check.detail
    assert differencing_check([], 5).passed


def _release(**change: object) -> list[Quad]:
    r, c, k = NamedNode(EXECUTION + "/release"), NamedNode(EXECUTION + "/cohort"), NamedNode(EXECUTION + "/cohort/0")
    values: dict[tuple[NamedNode, NamedNode], object] = {
        (r, RDF_TYPE): PHT.DisclosureRelease, (r, PHT.releasedExecution): NamedNode(EXECUTION),
        (r, PHT.statistic): Literal("count"), (r, PHT.releasedCohort): c,
        (r, PHT.cohortSize): Literal("3", datatype=XSD.integer),
        (r, PHT.cohortMembers): Literal("07", datatype=XSD.hexBinary),
        (r, PHT.datasetVersion): Literal("sha256:" + "a" * 64),
        (r, PHT.releasedAt): Literal("2026-12-04T10:00:00Z", datatype=XSD.dateTime),
        (c, RDF_TYPE): PHT.Cohort, (c, PHT.cohortFilter): Literal("age ge 40"), (c, PHT.criterion): k,
        (k, RDF_TYPE): PHT.CohortCriterion, (k, PHT.cohortVariable): Literal("age"),
        (k, PHT.cohortOperator): Literal("ge"), (k, PHT.comparedWith): Literal("40")}
    for name, value in change.items():
        key = next(key for key in values if key[1].value.endswith("#" + name))
        values[key] = value
    return [Quad(s, p, o, DISCLOSURE_GRAPH) for (s, p), o in values.items() if o is not None]  # type: ignore[misc]


@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"cohortMembers": Literal("7", datatype=XSD.hexBinary)}, "A release has exactly one member set"),
    ({"datasetVersion": Literal("v1")}, "A release has exactly one dataset version"),
    ({"releasedExecution": Literal("e1")}, "A release names exactly one execution"),
    ({"cohortOperator": Literal(">=")}, "A criterion has exactly one operator"),
    ({"criterion": None}, "A cohort has 1 to 20 criteria"),
])
def test_release_shapes(change: dict[str, object], message: str | None) -> None:
    report = validate_unstored(ChangeSet(insert=_release(**change)))
    assert report.conforms is (message is None), report
    assert message is None or [r.message.split(" (")[0] for r in report.results] == [message.split(" (")[0]]


def _policy(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "policy.ttl"
    path.write_text("@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n"
                    "<urn:p> a pht:StationPolicy ; pht:appliesToStation <https://pht.example.org/id/stations/aachen> ;"
                    f" pht:requiresApproval true ; pht:requiresOutputReview true {extra} .\n")
    return path


def test_the_policy_turns_the_differencing_check_on_off_and_to_withholding(tmp_path: Path) -> None:
    """On with a minimum cell count unless switched off; withholding only when the policy says so."""
    assert load_policy(_policy(tmp_path, "; pht:minCellCount 5")).differencing_minimum == 5
    assert load_policy(_policy(tmp_path, "")).differencing_minimum is None
    off = load_policy(_policy(tmp_path, "; pht:minCellCount 5 ; pht:checksDifferencing false"))
    strict = load_policy(_policy(tmp_path, "; pht:minCellCount 5 ; pht:withholdsDifferencing true"))
    assert off.differencing_minimum is None and not off.withholds_differencing
    assert strict.differencing_minimum == 5 and strict.withholds_differencing
    with pytest.raises(PolicyError, match="pht:withholdsDifferencing is at most one boolean"):
        load_policy(_policy(tmp_path, '; pht:withholdsDifferencing "yes"'))


def test_a_table_that_is_not_csv_is_refused_not_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "patients.csv").write_bytes(b"age,sex\n\xff4,F\n")  # not UTF-8: read, replaced, not a crash
    assert measure(parse_cohort("sex = F"), folder).size == 1
    (folder / "patients.csv").write_text("age,sex\n" + "4" * 200_000 + ",F\n")  # beyond the csv module's field limit
    with pytest.raises(CohortRefused, match="^the station's table patients.csv cannot be read as CSV"):
        measure(parse_cohort("age > 3"), folder)

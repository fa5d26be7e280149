"""The differencing attack through real stations (central service, agents, process runtime), and its defence.

Two researchers ask one station for the count of a cohort: alice for ``age >= 40``, then bob for ``age >= 41``,
the same cohort minus the one person aged 40. Apart, each count passes every per-output check; together they say
whether that person has the diagnosis. The station remembers its releases in its own graph (station/disclosure.py),
so bob's output is held for the admin (station ``guarded``) or withheld by its policy (``strict``); with the check
turned off (``open``) the attack succeeds, which shows that the check, not something else, stops it.
"""

from __future__ import annotations

import json
import time
import warnings
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyoxigraph import Literal, Quad, RdfFormat, parse

from client.execution_records import ExecutionRecord, record_node, verify_chain
from client.ro_crate_export import export_ro_crate
from graph_store import CENTRAL_GRAPH, DEFAULT_BASE_IRI, PHT, XSD, ChangeSet, EmbeddedStore, ResourceIris, validate_unstored
from local_platform import LocalPlatform, StationSpec
from polling import wait_for
from self_releasing_platform import DOCKERFILE
from station import StationPolicy
from orchestrator.principal import Role
from station.agent import Holding, release
from station.cohorts import dataset_version
from station.disclosure import DISCLOSURE_GRAPH, LEDGER_DIR, load_cohort
from station.records import RecordSigner
from station.review import CHECKER_VERSION
from station.runtimes.process import IsolationWarning, folder_digest

TRAIN = """import csv, json, os, pathlib
rows = [r for p in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv"))
        for r in csv.DictReader(p.open(newline=""))]
result = {"count": len(rows), "with_diagnosis": sum(r["diagnosis"] == "1" for r in rows)}
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps(result))
"""
#: 30 patients aged 25..54 (one of each age); the one aged 40 has the diagnosis, so does everyone from 45
ROWS = [(25 + i, "F" if i % 2 else "M", "1" if 25 + i == 40 or 25 + i >= 45 else "0") for i in range(30)]
AUTO = {"requires_approval": False, "requires_output_review": False, "min_cell_count": 5}
POLICIES = {"guarded": StationPolicy(**AUTO),  # type: ignore[arg-type]
            "strict": StationPolicy(**AUTO, withholds_differencing=True),  # type: ignore[arg-type]
            "open": StationPolicy(**AUTO, checks_differencing=False)}  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("differencing")
    specs = []
    for sid, policy in POLICIES.items():
        data = tmp / "data" / sid
        data.mkdir(parents=True)
        (data / "patients.csv").write_text("age,sex,diagnosis\n" + "".join(f"{a},{s},{d}\n" for a, s, d in ROWS))
        specs.append(StationSpec(sid, data, policy))
    train = tmp / "count"
    train.mkdir()
    (train / "Dockerfile").write_text(DOCKERFILE)
    (train / "train.py").write_text(TRAIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        platform = LocalPlatform(tmp / "platform", specs, runtime="process", poll_interval_s=0.05, with_mpu=False)
        platform.start()
    try:
        for sid in POLICIES:
            platform.client("alice").register_definition({
                "id": f"count-{sid}", "title": "count", "image_name": str(train), "image_digest": folder_digest(train),
                "mode": "incremental", "route": [sid], "parameters": [{"name": "COHORT", "datatype": "string"}]})
        yield platform
    finally:
        platform.stop()


def _execution(platform: LocalPlatform, researcher: str, tid: str) -> dict[str, Any]:
    return dict(platform.client(researcher).train(tid)["executions"][0])


def _settled(platform: LocalPlatform, researcher: str, tid: str) -> dict[str, Any]:
    """The train's only execution once the station has nothing more to do for it by itself: released, withheld or
    failed, or under review for longer than the agent (polling every 0.05 s) takes to release what it may."""
    since: dict[str, float] = {}

    def settled() -> dict[str, Any] | None:
        execution = _execution(platform, researcher, tid)
        if execution["state"] in ("released", "withheld", "failed"):
            return execution
        if execution["state"] == "output-under-review":
            first = since.setdefault("held", time.monotonic())
            return execution if time.monotonic() - first > 2 else None
        return None

    return dict(wait_for(f"train {tid} settles", settled, timeout_s=90))  # type: ignore[call-overload]


def _count(platform: LocalPlatform, researcher: str, sid: str, cohort: str, tmp: Path) -> tuple[dict[str, Any], Any]:
    """Submit the count of ``cohort`` at ``sid`` as ``researcher``: the settled execution, and its result if released."""
    client = platform.client(researcher)
    tid = client.submit(f"count-{sid}", {"COHORT": cohort})
    execution = {**_settled(platform, researcher, tid), "train": tid}
    if execution["state"] != "released":
        return execution, None
    assert client.wait(tid, timeout_s=60)["state"] == "finished"
    folder = platform.fetch(execution["output_sha256"], tmp / tid, reader=researcher)
    return execution, json.loads((folder / "result.json").read_text())


def test_without_the_check_two_researchers_learn_one_persons_diagnosis(platform: LocalPlatform,
                                                                       tmp_path: Path) -> None:
    """The attack works where the check is off: the control that shows the other tests measure the check."""
    one, first = _count(platform, "alice", "open", "age >= 40", tmp_path)
    two, second = _count(platform, "bob", "open", "age >= 41", tmp_path)
    assert first is not None and second is not None, ([(e["to_state"], e["reason"]) for e in platform.client("alice").events(one["train"])],
                                                      [(e["to_state"], e["reason"]) for e in platform.client("bob").events(two["train"])])
    assert first["count"] - second["count"] == 1 and first["with_diagnosis"] - second["with_diagnosis"] == 1


def test_the_station_holds_the_second_count_for_its_admin(platform: LocalPlatform, tmp_path: Path) -> None:
    execution, first = _count(platform, "alice", "guarded", "age >= 40", tmp_path)
    assert first == {"count": 15, "with_diagnosis": 11}  # the train saw the cohort's rows only, as the station chose
    held, second = _count(platform, "bob", "guarded", "age >= 41", tmp_path)
    assert second is None and held["state"] == "output-under-review"
    # the admin's view: the review at the station names the earlier release and the size of the difference
    folder = platform.workdir / "stations" / "guarded" / "executions" / held["id"]
    checks = {c["name"]: c for c in json.loads((folder / "review.json").read_text())["checks"]}
    assert checks["min-cell-count"]["passed"] and not checks["differencing"]["passed"]
    assert f"executions/{execution['id']}" in checks["differencing"]["detail"]
    assert "differs by 1 person(s), fewer than the minimum cell count 5" in checks["differencing"]["detail"]
    # the researcher's view: the output awaits review, and nothing about it (not the check) left the station
    events = platform.client("bob").events(held["train"])
    assert [e["reason"] for e in events if e["to_state"] == "output-under-review"] == [
        "the output awaits review at the station"]
    assert "differ" not in json.dumps(events)


def test_the_policy_withholds_the_second_count_itself(platform: LocalPlatform, tmp_path: Path) -> None:
    _count(platform, "alice", "strict", "age >= 40", tmp_path)
    held, second = _count(platform, "bob", "strict", "age >= 41", tmp_path)
    assert second is None and held["state"] == "withheld"
    reasons = [e["reason"] for e in platform.client("bob").events(held["train"]) if e["to_state"] == "withheld"]
    assert set(reasons) == {"withheld by the station policy: the output's cohort differs from the cohort of an earlier "
                       "release by fewer people than the minimum cell count"}  # the execution's step, and the train's


def test_the_same_cohort_again_and_a_distant_one_are_released(platform: LocalPlatform, tmp_path: Path) -> None:
    """Neither repeating a released cohort (nobody in the difference) nor a cohort 5 people away discloses anyone."""
    _count(platform, "alice", "guarded", "age >= 40", tmp_path)  # released, or already held by an earlier test
    _, again = _count(platform, "bob", "guarded", "age >= 40", tmp_path)
    _, far = _count(platform, "bob", "guarded", "age >= 45", tmp_path)
    assert again == {"count": 15, "with_diagnosis": 11} and far == {"count": 10, "with_diagnosis": 10}


def test_the_release_carries_a_signed_disclosure_control_record(platform: LocalPlatform, tmp_path: Path) -> None:
    """Item 1: each rule (rule, threshold, outcome), checker version, stage, decision and who, code and dataset
    version, inside the station-signed record, in the RO-Crate export's provenance, conforming to the shapes, and
    never the value a rule protects (the counts)."""
    released, result = _count(platform, "alice", "guarded", "age >= 30 AND age < 50", tmp_path)
    assert result == {"count": 20, "with_diagnosis": 6}
    crate = export_ro_crate(platform.client("alice"), released["train"], tmp_path / "crate")
    statements = list(parse((crate / "provenance.nt").read_bytes(), format=RdfFormat.N_TRIPLES))
    iris = ResourceIris(DEFAULT_BASE_IRI)
    iri = iris.execution(released["id"]).value
    record = ExecutionRecord.from_statements(statements, record_node(iri))
    verdict = verify_chain(statements, iris.train(released["train"]).value, now=datetime.now(timezone.utc))
    assert verdict.verified, verdict.breaks  # the station's signature covers the disclosure-control part
    part = record.disclosure
    assert part is not None and part.stage == "local-result" and part.checker_version == CHECKER_VERSION
    assert {(r.rule, r.threshold, r.passed) for r in part.rules} >= {("min-cell-count", 5, True),
                                                                     ("differencing", 5, True)}
    data = platform.stations[0].dataset
    assert part.dataset_version == dataset_version(data) and record.released_how == "auto"
    ours = [t for t in statements if str(t.subject).startswith("<" + iri + "/record/disclosure")]
    assert {t.object.value for t in ours if t.predicate == PHT.decidedHow} == {"auto"}
    assert {t.object.value for t in ours if t.predicate == PHT.decision} == {"released"}
    assert not {"20", "6"} & {t.object.value for t in ours}  # neither count appears
    metadata = json.loads((crate / "ro-crate-metadata.json").read_text())
    check = next(e for e in metadata["@graph"] if e["@id"] == f"#disclosurecheck-{released['id']}")
    assert "min-cell-count (threshold 5): passed" in check["description"]
    assert "differencing (threshold 5): passed" in check["description"]
    # the central store validated the whole record when it stored it; the part alone conforms too
    assert validate_unstored(ChangeSet(insert=[Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in ours]))\
        .conforms


def test_an_admins_release_of_a_flagged_output_is_remembered_and_signed_as_hers(platform: LocalPlatform,
                                                                               tmp_path: Path) -> None:
    """The admin may release what the check flagged (``pht station release``): the station remembers it like any
    release, and its signed record says the differencing rule failed and the admin decided."""
    _count(platform, "alice", "guarded", "age >= 40", tmp_path)
    held, _ = _count(platform, "bob", "guarded", "age >= 39", tmp_path)  # one more person: held
    assert held["state"] == "output-under-review"
    admin = platform.client("admin-guarded", Role.STATION_ADMIN, "guarded")
    state_dir = platform.workdir / "stations" / "guarded"
    release(admin, platform.objects, Holding(state_dir, held["id"]), held["id"], reason="planned analysis",
            records=RecordSigner(admin, "guarded", platform.workdir / "keys" / "guarded"))
    crate = export_ro_crate(platform.client("bob"), held["train"], tmp_path / "crate")
    statements = list(parse((crate / "provenance.nt").read_bytes(), format=RdfFormat.N_TRIPLES))
    record = ExecutionRecord.from_statements(statements, record_node(ResourceIris(DEFAULT_BASE_IRI).execution(
        held["id"]).value))
    assert record.released_how == "admin" and record.disclosure is not None
    assert ("differencing", 5, False) in {(r.rule, r.threshold, r.passed) for r in record.disclosure.rules}
    # remembered: age >= 35 is 4 people from it (and 5 from age >= 40, which alone would not hold it): held, naming it
    again, _ = _count(platform, "bob", "guarded", "age >= 35", tmp_path)
    assert again["state"] == "output-under-review"
    review = json.loads((state_dir / "executions" / again["id"] / "review.json").read_text())
    detail = next(c["detail"] for c in review["checks"] if c["name"] == "differencing")
    assert f"executions/{held['id']}/release" in detail and "differs by 4 person(s)" in detail


@pytest.mark.parametrize("cohort, sentence", [
    ("weight >= 80", "the station's dataset has no variable weight"),
    ("age >>= 40", '"age >>= 40" is not "variable operator value"'),
    ("sex > F", "sex > needs a number"),
])
def test_a_cohort_the_station_cannot_interpret_is_refused_and_nothing_runs(
        platform: LocalPlatform, cohort: str, sentence: str) -> None:
    client = platform.client("bob")
    tid = client.submit("count-guarded", {"COHORT": cohort})
    execution = _settled(platform, "bob", tid)
    assert execution["state"] == "failed"
    reasons = [e["reason"] for e in client.events(tid) if e["to_state"] == "failed"]
    assert set(reasons) == {"station guarded refuses the train: the cohort definition cannot be interpreted: "
                            f"{sentence}"}  # the execution's step, and the train's
    assert not [e for e in client.events(tid) if e["to_state"] in ("approved", "running")]
    assert not (platform.workdir / "stations" / "guarded" / "executions" / execution["id"] / "output").exists()


def test_the_stations_releases_stay_in_its_own_graph_and_conform(platform: LocalPlatform, tmp_path: Path) -> None:
    _count(platform, "alice", "guarded", "sex = F AND age < 35", tmp_path)
    assert platform.store is not None  # the central store has no release, no cohort, no member set
    central = platform.store.select("SELECT ?s WHERE { GRAPH ?g { ?s ?p ?o } FILTER(CONTAINS(STR(?p), 'cohort')) }")
    assert not list(central)
    platform.stop_station("guarded")  # the agent's thread may hold the station's store open
    wait_for("the guarded agent stops", lambda: all(not t.is_alive() for t in platform._threads
                                                    if t.name == "station-guarded"), timeout_s=30)
    store = EmbeddedStore(platform.workdir / "stations" / "guarded" / LEDGER_DIR)
    try:
        sizes = sorted(int(r["size"].value) for r in store.run_query(
            "station_release_candidates", graph=DISCLOSURE_GRAPH, low=Literal("0", datatype=XSD.integer),
            high=Literal("100", datatype=XSD.integer)))
        assert {15, 10, 16} <= set(sizes) and 14 not in sizes  # held counts were not released
        quads = list(store.oxigraph.quads_for_pattern(None, None, None, DISCLOSURE_GRAPH))
    finally:
        store.close()
    assert validate_unstored(ChangeSet(insert=quads)).conforms
    assert load_cohort(platform.workdir / "stations" / "guarded" / "executions" / "none") is None

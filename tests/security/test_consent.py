"""Purposes, consent and privacy budgets through real stations (central service, agents, process runtime).

Station ``consented`` holds a dataset for health or medical research (DUO_0000006) and permits alice's disease
specific research (DUO_0000007) on project ``cardio``, prohibits the definition ``leaky-consented`` for everyone,
and gives each researcher an ε budget of 1 per project and dataset for its differentially private statistic
(``dp-*``: the station counts the ε the signed request declares; the example DP train, trains/dp-mean with opendp,
runs at the end under the process runtime with the station's Python, which has opendp: the sandboxed runtime
mounts only ``/usr``).
Station ``open`` has no consent policy: the same trains run there, which shows that the consent policy, not
something else, stops them (the control for each attack). A refused train never runs: its execution goes from
``queued`` to ``failed`` with the station's sentence, no output folder is made, and the station records the
decision in its own graph.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for
from pyoxigraph import RdfFormat, parse
from runtime_helpers import make_spec
from self_releasing_platform import self_releasing_platform
from typer.testing import CliRunner

from client import ClientError
from client.execution_records import ExecutionRecord, record_node
from client.ro_crate_export import export_ro_crate
from local_platform import LocalPlatform
from pht_cli.main import app
from station.consent_ledger import CONSENT_GRAPH, open_consent_ledger
from station.policy import load_policy
from station.runtimes.process import IsolationWarning, ProcessRuntime, folder_digest

REPO = Path(__file__).resolve().parents[2]
DUO = "http://purl.obolibrary.org/obo/DUO_"
BASE = "https://pht.example.org/id/"
COUNT = """import csv, json, os, pathlib
rows = [r for p in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv"))
        for r in csv.DictReader(p.open(newline=""))]
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps({"count": len(rows)}))
"""
POLICY = """@prefix pht: <https://w3id.org/pht-kg/vocab#> .
@prefix odrl: <http://www.w3.org/ns/odrl/2/> .
@prefix obo: <http://purl.obolibrary.org/obo/> .
@prefix : <https://hospital.example/policies/> .
:pht a pht:StationPolicy ;
    pht:appliesToStation <https://pht.example.org/id/stations/consented> ;
    pht:requiresApproval false ; pht:requiresOutputReview false ;
    pht:dataUse obo:DUO_0000006 ;
    pht:consentPolicy :consent .
:consent a odrl:Set ;
    odrl:prohibition :no-leaky ;
    odrl:permission :cardio , :dp-cardio .
:no-leaky odrl:action odrl:use ; odrl:constraint :leaky-definition .
:leaky-definition odrl:leftOperand pht:trainDefinition ; odrl:operator odrl:eq ; odrl:rightOperand "leaky-consented" .
:cardio odrl:action odrl:use ;
    odrl:assignee <https://pht.example.org/id/agents/alice> ;
    odrl:constraint :disease-research , :cardio-project , :count-definition .
:dp-cardio odrl:action odrl:use ;
    odrl:constraint :disease-research , :cardio-project , :dp-definition ;
    pht:epsilonBudget 1.0 .
:disease-research odrl:leftOperand pht:purpose ; odrl:operator odrl:isA ; odrl:rightOperand obo:DUO_0000007 .
:cardio-project odrl:leftOperand pht:project ; odrl:operator odrl:isAnyOf ; odrl:rightOperand "cardio" .
:count-definition odrl:leftOperand pht:trainDefinition ; odrl:operator odrl:isAnyOf ;
    odrl:rightOperand "count-consented" , "leaky-consented" .
:dp-definition odrl:leftOperand pht:trainDefinition ; odrl:operator odrl:eq ; odrl:rightOperand "dp-count-consented" .
"""
ROWS = "age,diagnosis\n" + "".join(f"{25 + i},{i % 2}\n" for i in range(30))
STATIONS = ("consented", "open")
DISEASE, GENERAL, ANCESTRY = DUO + "0000007", DUO + "0000042", DUO + "0000011"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    tmp = tmp_path_factory.mktemp("consent")
    (tmp / "policy.ttl").write_text(POLICY)
    consented = load_policy(tmp / "policy.ttl", station_iri=BASE + "stations/consented")
    with self_releasing_platform(tmp, STATIONS, COUNT, "count", policies={"consented": consented}, patients=ROWS,
                                 with_mpu=False) as (platform, count):
        alice = platform.client("alice")
        platform.client("bob")  # registers bob's keys
        for sid in STATIONS:
            for name in ("count", "leaky", "dp-count"):
                alice.register_definition({
                    "id": f"{name}-{sid}", "title": name, "image_name": str(count),
                    "image_digest": folder_digest(count), "mode": "incremental", "route": [sid]})
        yield platform


def _run(platform: LocalPlatform, researcher: str, definition: str, **terms: Any) -> dict[str, Any]:
    """Submit a signed train with ``terms`` (purpose, project, dp_mechanism, epsilon, parameters); its settled
    execution, the train's events and its id."""
    client = platform.client(researcher)
    tid = client.submit_train({"definition": definition, "parameters": terms.pop("parameters", {}), **terms})

    def settled() -> dict[str, Any] | None:
        execution = client.train(tid)["executions"][0]
        return dict(execution) if execution["state"] in ("released", "failed", "withheld") else None

    execution = wait_for(f"train {tid} settles", settled, timeout_s=90)
    return {**execution, "train": tid, "events": client.events(tid)}  # type: ignore[dict-item]


def _never_ran(platform: LocalPlatform, station: str, run: dict[str, Any]) -> str:
    """The refusal sentence of an execution that never ran: failed straight from queued, no output at the station."""
    states = [e["to_state"] for e in run["events"] if e.get("to_state")]
    assert run["state"] == "failed" and not {"approved", "pulling", "running"} & set(states), states
    assert not (platform.workdir / "stations" / station / "executions" / run["id"] / "output").exists()
    return str([e["reason"] for e in run["events"] if e.get("to_state") == "failed"][0])


def _decision(platform: LocalPlatform, station: str, run: dict[str, Any]) -> tuple[str, str] | None:
    with open_consent_ledger(platform.workdir / "stations" / station) as ledger:
        return ledger.decision(f"{BASE}executions/{run['id']}")


def _dp(epsilon: float, project: str = "cardio") -> dict[str, Any]:
    return {"purpose": DISEASE, "project": project, "dp_mechanism": "laplace", "epsilon": epsilon}


def _record_rules(platform: LocalPlatform, researcher: str, run: dict[str, Any], tmp: Path) -> set[tuple[str, bool]]:
    """The rules (name, passed) of the station-signed record of ``run``'s execution, as the researcher exports it."""
    client = platform.client(researcher)
    assert client.wait(run["train"], timeout_s=60)["state"] == "finished"
    crate = export_ro_crate(client, run["train"], tmp / "crate")
    statements = list(parse((crate / "provenance.nt").read_bytes(), format=RdfFormat.N_TRIPLES))
    record = ExecutionRecord.from_statements(statements, record_node(f"{BASE}executions/{run['id']}"))
    assert record.disclosure is not None
    return {(r.rule, r.passed) for r in record.disclosure.rules}


def test_a_permitted_purpose_runs_and_the_decision_is_recorded(platform: LocalPlatform, tmp_path: Path) -> None:
    run = _run(platform, "alice", "count-consented", purpose=DISEASE, project="cardio")
    assert run["state"] == "released", run["events"]
    approved = [e["reason"] for e in run["events"] if e.get("to_state") == "approved"][0]
    assert "permitted by the permission https://hospital.example/policies/cardio" in approved  # the researcher's view
    assert _decision(platform, "consented", run) == ("permit", approved.split("; ", 1)[1])  # the station's record
    shown = platform.client("alice").train(run["train"])  # stored with the signed request, shown with the train
    assert (shown["purpose"], shown["project"], shown["epsilon"]) == (DISEASE, "cardio", None)
    assert ("consent", True) in _record_rules(platform, "alice", run, tmp_path)  # signed, released with the output


@pytest.mark.parametrize(("researcher", "definition", "terms", "sentence"), [
    ("alice", "count", {"purpose": ANCESTRY, "project": "cardio"},
     "its dataset may be used for health or medical or biomedical research only, not for population origins"),
    ("alice", "count", {"purpose": GENERAL, "project": "cardio"},
     "not for general research use"),  # broader than the dataset allows
    ("alice", "count", {"project": "cardio"}, "the train declares no purpose"),
    ("alice", "count", {"purpose": DISEASE, "project": "oncology"},
     "no permission of its consent policy allows disease specific research, project oncology"),
    ("bob", "count", {"purpose": DISEASE, "project": "cardio"}, "researcher https://pht.example.org/id/agents/bob"),
    ("alice", "leaky", {"purpose": DISEASE, "project": "cardio"},
     "the prohibition https://hospital.example/policies/no-leaky of its consent policy applies"),
], ids=["dataset-use", "broader-purpose", "no-purpose", "project", "researcher", "function"])
def test_a_refused_train_never_runs_and_runs_where_the_policy_is_off(
        platform: LocalPlatform, researcher: str, definition: str, terms: dict[str, str], sentence: str) -> None:
    refused = _run(platform, researcher, f"{definition}-consented", **terms)
    reason = _never_ran(platform, "consented", refused)
    assert reason.startswith("station consented refuses the train: ") and sentence in reason, reason
    assert _decision(platform, "consented", refused) == ("refuse", reason)
    control = _run(platform, researcher, f"{definition}-open", **terms)
    assert control["state"] == "released", control["events"]  # the feature off: the same train runs


def test_an_unknown_duo_term_is_refused_at_submission(platform: LocalPlatform) -> None:
    alice = platform.client("alice")
    before = len(alice.trains())
    with pytest.raises(ClientError) as refused:
        alice.submit_train({"definition": "count-consented", "purpose": DUO + "0000999", "project": "cardio"})
    assert refused.value.status == 422
    assert "the purpose http://purl.obolibrary.org/obo/DUO_0000999 is not a DUO term this platform accepts" in str(
        refused.value)
    assert len(alice.trains()) == before  # nothing written


def test_a_wire_purpose_other_than_the_signed_one_is_refused(platform: LocalPlatform) -> None:
    """The attack: sign a request for one purpose, send another in the train file's field (or the reverse)."""
    alice = platform.client("alice")
    keys = platform.researcher_keys("alice")
    for signed, sent in ((GENERAL, DISEASE), (DISEASE, GENERAL)):
        body: dict[str, Any] = {"definition": "count-consented", "parameters": {}, "purpose": signed,
                                "project": "cardio"}
        signature = alice._sign(body, keys)  # noqa: SLF001 -- the researcher's own client, used as an attacker would
        with pytest.raises(ClientError) as refused:
            alice._text("POST", "/api/trains", "id",  # noqa: SLF001
                        json={**body, "purpose": sent, "signature": signature.model_dump()})
        assert refused.value.status == 400 and "signature was refused" in str(refused.value)


def test_the_privacy_budget_refuses_the_release_that_would_exceed_it(platform: LocalPlatform,
                                                                     tmp_path: Path) -> None:
    """The attack: repeat a DP release until the budget is spent. The station refuses the next one before it runs;
    where the policy is off, it runs (and the researcher's ε keeps adding up)."""
    first = _run(platform, "bob", "dp-count-consented", **_dp(0.4))
    assert first["state"] == "released", first["events"]
    released = [e["reason"] for e in first["events"] if e.get("to_state") == "released"][0]
    assert "privacy budget left for you on project cardio at dataset consented-data: ε 0.6 of 1" in released
    assert {("consent", True), ("privacy-budget", True)} <= _record_rules(platform, "bob", first, tmp_path)
    result = json.loads((platform.fetch(first["output_sha256"], tmp_path / "first", reader="bob")
                         / "result.json").read_text())
    assert result == {"count": 30}
    second = _run(platform, "bob", "dp-count-consented", **_dp(0.5))
    assert second["state"] == "released", second["events"]
    third = _run(platform, "bob", "dp-count-consented", **_dp(0.2))
    reason = _never_ran(platform, "consented", third)
    assert "its ε 0.2 would exceed the privacy budget of the permission https://hospital.example/policies/dp-cardio" \
           in reason and "has spent 0.9 on project cardio here" in reason, reason
    # another researcher's budget is their own; the same researcher's other project too (but not permitted here)
    assert _run(platform, "alice", "dp-count-consented", **_dp(0.9))["state"] == "released"
    with open_consent_ledger(platform.workdir / "stations" / "consented") as ledger:
        assert str(ledger.spent(f"{BASE}agents/bob", "cardio", "consented-data")) == "0.9"
        assert ledger.store.quads(None, None, None, CONSENT_GRAPH)  # kept in the station's own graph
    # the station admin's view: every researcher's spend, and the budgets
    shown = CliRunner().invoke(app, ["station", "budget", "--state-dir", str(platform.workdir / "stations" / "consented"),
                                     "--policy", str(platform.workdir.parent / "policy.ttl")], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert f"{BASE}agents/bob" in shown.output and "0.9" in shown.output and f"{BASE}agents/alice" in shown.output
    assert "permission https://hospital.example/policies/dp-cardio: ε budget 1.0 per researcher" in shown.output
    for _ in range(3):  # the feature off: every release runs
        assert _run(platform, "bob", "dp-count-open", **_dp(0.5))["state"] == "released"


def test_a_dp_train_without_its_epsilon_is_refused(platform: LocalPlatform) -> None:
    reason = _never_ran(platform, "consented", _run(platform, "alice", "dp-count-consented", purpose=DISEASE,
                                                    project="cardio"))
    assert "must declare its differentially private mechanism and its ε per release" in reason, reason


def test_a_negative_epsilon_is_refused_at_submission(platform: LocalPlatform) -> None:
    with pytest.raises(ClientError) as refused:
        platform.client("alice").submit_train({"definition": "dp-count-consented", **_dp(-0.5)})
    assert refused.value.status in (400, 422) and "epsilon" in str(refused.value)


def test_the_example_dp_mean_train_releases_a_noisy_mean_with_its_epsilon() -> None:
    """trains/dp-mean under the process runtime with the station's Python (opendp from pyproject's test extra)."""
    root = Path(tempfile.mkdtemp(prefix="pht-test-dp-mean-"))
    root.chmod(0o755)  # uid 10001 (the train, when the tests run as root) reaches its folders by path
    try:
        with pytest.warns(IsolationWarning):
            runtime = ProcessRuntime(bwrap=None, work_root=root / "work")
        folder = REPO / "trains" / "dp-mean"
        spec = make_spec(root, name="pht-test-dp-mean", image=str(folder), digest=folder_digest(folder),
                         params={"COLUMN": "age", "LOWER": "0", "UPPER": "120", "EPSILON": "1"})
        result = runtime.run(spec)
        assert result.ok, (result.failure, result.logs)
        released = json.loads((spec.output_dir / "result.json").read_text())
        assert released["epsilon"] == 1 and released["mechanism"] == "laplace"
        assert isinstance(released["count"], int) and isinstance(released["mean"], float)
    finally:
        shutil.rmtree(root, ignore_errors=True)

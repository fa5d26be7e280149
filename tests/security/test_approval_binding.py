"""An approval binds code (issue 13, item 4), each attack played against a real central service over HTTP.

* The station records what it approved (definition, image digest, entrypoint, parameters) in its own state folder
  and runs nothing else: an operator who edits the definition in the central graph after the approval gets a
  failed execution whose reason names what changed, and nothing runs.
* Auto-approval by image digest covers the image's own command only: a researcher-chosen ``sh -c ...`` entrypoint
  waits for the admin, unless the policy lists that very command.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from release_gate_world import DIGEST, OTHER_DIGEST, ScriptedRuntime, World, open_world, writes

from station.approvals import ApprovalLedger
from station.policy import StationPolicy

MANUAL = StationPolicy(requires_approval=True, requires_output_review=False)
EVIL = "sh -c 'cat /pht/data/* > /pht/output/all.csv'"
DEFINITIONS = "https://pht.example.org/id/definitions"


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def approved_by_the_admin(world: World, runtime: ScriptedRuntime, did: str,
                          **definition: Any) -> tuple[str, str, object]:
    world.define(did, **definition)
    agent = world.agent("aachen", MANUAL, runtime)
    tid = world.submit(did)
    eid = f"{tid}.r1-s0"
    agent.poll_once()
    assert world.train(tid)["executions"][0]["state"] == "waiting-for-approval"
    with world.admin("aachen") as admin:
        admin.step(eid, "approved", reason="looked at the image")
    return tid, eid, agent


@pytest.mark.parametrize(("field", "edit"), [
    ("image digest", f'DELETE {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <{DEFINITIONS}/count> <https://w3id.org/pht-kg/vocab#imageDigest> ?d }} }} '
                     f'INSERT {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <{DEFINITIONS}/count> <https://w3id.org/pht-kg/vocab#imageDigest> '
                     f'"{OTHER_DIGEST}" }} }} WHERE {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <{DEFINITIONS}/count> '
                     f'<https://w3id.org/pht-kg/vocab#imageDigest> ?d }} }}'),
    ("entrypoint", f'INSERT DATA {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <{DEFINITIONS}/count> '
                   f'<https://w3id.org/pht-kg/vocab#entrypoint> "{EVIL}" }} }}'),
])
def test_an_edit_after_the_approval_is_not_run_and_the_failure_names_it(world: World, field: str, edit: str) -> None:
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    tid, eid, agent = approved_by_the_admin(world, runtime, "count")
    world.update(edit)  # the operator changes what runs, after the admin approved
    agent.poll_once()  # type: ignore[attr-defined]
    assert runtime.runs == [], "nothing ran"
    execution = world.train(tid)["executions"][0]
    assert execution["state"] == "failed"
    reason = next(r for r in world.reasons(tid) if "changed after" in r)
    # the edit changed the definition's content, which the researcher signed: the approval's signed hash differs too
    assert f"the {field} and signed train request changed after station aachen approved execution {eid}" in reason, \
        reason
    assert OTHER_DIGEST not in reason and EVIL not in reason, "the reason names the field, not the values"


def test_a_data_space_input_changed_after_the_approval_is_neither_obtained_nor_run(world: World) -> None:
    """The declared inputs are part of the signed definition: pointing one at an attacker's connector or dataset
    after the approval fails the execution before the station contacts anyone."""
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    node = f"<{DEFINITIONS}/ds/dataspace-inputs/cohort>"
    tid, eid, agent = approved_by_the_admin(world, runtime, "ds", dataspace_inputs=[
        {"name": "cohort", "connector": "https://provider.example.org/dsp",
         "dataset": "https://provider.example.org/id/results/1"}])
    g = "GRAPH <https://w3id.org/pht-kg/graph/central>"
    world.update(f'DELETE {{ {g} {{ {node} <https://w3id.org/pht-kg/vocab#providerConnector> ?c }} }} '
                 f'INSERT {{ {g} {{ {node} <https://w3id.org/pht-kg/vocab#providerConnector> '
                 f'"https://attacker.example.org/dsp"^^<http://www.w3.org/2001/XMLSchema#anyURI> }} }} '
                 f'WHERE {{ {g} {{ {node} <https://w3id.org/pht-kg/vocab#providerConnector> ?c }} }}')
    agent.poll_once()  # type: ignore[attr-defined]
    assert runtime.runs == [], "nothing ran"
    assert world.train(tid)["executions"][0]["state"] == "failed"
    reason = next(r for r in world.reasons(tid) if "changed after" in r)
    assert f"the signed train request changed after station aachen approved execution {eid}" in reason, reason
    assert "attacker" not in reason


def test_what_was_approved_runs_and_is_recorded_at_the_station(world: World) -> None:
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    tid, eid, agent = approved_by_the_admin(world, runtime, "count")
    agent.poll_once()  # type: ignore[attr-defined]
    assert world.train(tid)["state"] == "finished"
    assert runtime.runs == [(DIGEST, None)]
    recorded = ApprovalLedger(world.tmp / "state" / "aachen" / "approvals.jsonl").get(eid)
    assert recorded is not None and (recorded.image_digest, recorded.entrypoint, recorded.parameters) == (
        DIGEST, None, {"MIN": "5"})


def test_a_changed_parameter_is_named_not_shown(world: World) -> None:
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    tid, eid, agent = approved_by_the_admin(world, runtime, "count")
    world.update('DELETE { GRAPH <https://w3id.org/pht-kg/graph/central> { ?v <https://w3id.org/pht-kg/vocab#literalValue> ?x } } '
                 'INSERT { GRAPH <https://w3id.org/pht-kg/graph/central> { ?v <https://w3id.org/pht-kg/vocab#literalValue> 1 } } '
                 f'WHERE {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <https://pht.example.org/id/trains/{tid}> '
                 '<https://w3id.org/pht-kg/vocab#parameterValue> ?v . ?v <https://w3id.org/pht-kg/vocab#literalValue> ?x } }')
    agent.poll_once()  # type: ignore[attr-defined]
    assert runtime.runs == []
    reason = next(r for r in world.reasons(tid) if "changed after" in r)
    assert "parameter(s) MIN changed" in reason, reason


def test_auto_approval_by_image_does_not_approve_a_researcher_chosen_command(world: World) -> None:
    by_image = StationPolicy(requires_approval=True, requires_output_review=False, approve_images=frozenset({DIGEST}))
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    world.define("shell", entrypoint=EVIL)
    agent = world.agent("aachen", by_image, runtime)
    tid = world.submit("shell")
    agent.poll_once()
    assert world.train(tid)["executions"][0]["state"] == "waiting-for-approval"
    assert runtime.runs == [], "sh -c chosen by the researcher does not run unreviewed"
    world.define("plain")  # the same image with its own command is approved by the same rule
    plain = world.submit("plain")
    agent.poll_once()
    assert world.train(plain)["state"] == "finished" and runtime.runs == [(DIGEST, None)]
    listed = StationPolicy(requires_approval=True, requires_output_review=False, approve_images=frozenset({DIGEST}),
                           approve_commands=frozenset({EVIL}))
    agent = world.agent("aachen", listed, runtime)
    world.define("shell2", entrypoint=EVIL)
    again = world.submit("shell2")
    agent.poll_once()
    assert world.train(again)["state"] == "finished", "a command the admin listed is approved"
    assert runtime.runs[-1] == (DIGEST, EVIL.split())


def test_an_approval_the_station_has_no_record_of_is_not_run(world: World) -> None:
    runtime = ScriptedRuntime(writes({"result.json": "{}"}))
    tid, eid, agent = approved_by_the_admin(world, runtime, "count")
    (world.tmp / "state" / "aachen" / "approvals.jsonl").unlink()  # e.g. the state folder was lost
    fresh = world.agent("aachen", MANUAL, runtime)
    fresh.poll_once()
    assert runtime.runs == [] and world.train(tid)["state"] == "failed"
    assert any(f"no record of approving execution {eid}" in r for r in world.reasons(tid))


def test_the_record_survives_a_restart_and_a_torn_last_line(tmp_path: Path) -> None:
    from client import WorkItem
    work = WorkItem(execution="t.r1-s0", state="queued", train="t", round=1, stop=0, image_name="pht/count",
                    image_digest=DIGEST, entrypoint=None, inputs=[], definition="count", parameters={"MIN": "5"})
    path = tmp_path / "approvals.jsonl"
    ApprovalLedger(path).record(work, how="auto")
    with path.open("a") as f:
        f.write('{"execution": "t.r1-s1", "how": "au')  # the agent died while appending
    ledger = ApprovalLedger(path)
    assert ledger.get("t.r1-s0") is not None and ledger.get("t.r1-s1") is None
    ledger.record(work.model_copy(update={"execution": "t.r1-s2"}), how="requested")
    again = ApprovalLedger(path)
    assert again.get("t.r1-s2") is not None and again.how("t.r1-s2") == "requested"

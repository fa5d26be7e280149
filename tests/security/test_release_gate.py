"""Nothing about an output leaves the station before its release (issue 13, item 1), and a release is atomic from
the readers' view (item 6), each attack played against a real central service over HTTP.

* Until the station admin releases an output, the central service learns only that an output awaits review: not
  its digest (packing is deterministic, so a digest of a small count gives the count away), size, file names,
  checks or the train's exit code; not in any graph, any answer or its log.
* The minimum cell count check never states the count it protects.
* What a train's failure tells the central service is the station policy's choice; by default only that it failed.
* A released output's digest and size arrive with the release step.
* A release whose step is refused leaves nothing readable in the object store; one whose answer was lost is
  finished by the agent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ALICE, admin
from release_gate_world import SECRET_FILE, ScriptedRuntime, World, central_log, open_world, writes

from client import CentralClient, ClientError
from station.agent import Holding, release
from station.archive import pack_to
from station.objects import (
    InvalidDigest,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    new_staging_key,
    object_store_from_url,
)
from station.policy import FAILURE_EXIT_CODE, StationPolicy
from station.review import review

REVIEWED = StationPolicy(requires_approval=False, requires_output_review=True, min_cell_count=5,
                         max_output_bytes=100_000)
AUTOMATIC = StationPolicy(requires_approval=False, requires_output_review=False, max_output_bytes=100_000)
SMALL = {"result.json": json.dumps({"count": 3}), SECRET_FILE: json.dumps({"note": "who"})}


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def readable_objects(world: World) -> list[Path]:
    """Every file anyone could read from the object store's folder."""
    return [p for p in world.objects.root.rglob("*") if p.is_file()]


def test_a_withheld_small_count_leaves_nothing_at_the_central_service(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.define("count")
    agent = world.agent("aachen", REVIEWED, ScriptedRuntime(writes(SMALL)))
    tid = world.submit("count")
    eid = f"{tid}.r1-s0"
    agent.poll_once()
    assert world.train(tid)["executions"][0]["state"] == "output-under-review"
    hold = Holding(agent.settings.state_dir, eid)
    held = hold.held()
    assert held is not None
    sha256, size, checks = held  # of the ciphertext (sealed to the requester); the plain archive's stays here too
    plain_sha256 = json.loads(hold.review.read_text())["plain_sha256"]
    failed = [c for c in checks if not c["passed"]]
    assert [c["name"] for c in failed] == ["min-cell-count"], checks  # the station's own review found it
    with world.admin("aachen") as deciding:
        deciding.step(eid, "withheld", reason="small cells")
    agent.poll_once()
    assert world.train(tid)["state"] == "withheld"

    # the attacker knows the train and packs each small count it could have found: the one that matches the
    # station's archive would give the count away, if the digest were anywhere centrally
    candidates = {}
    for count in range(1, 5):
        folder = tmp_path / f"guess-{count}"
        folder.mkdir()
        writes({**SMALL, "result.json": json.dumps({"count": count})})(folder)
        candidates[count] = pack_to(folder, tmp_path / f"guess-{count}.tar.gz")[0]
    assert candidates[3] == plain_sha256, "packing is deterministic: the plain digest alone would reveal the count"

    seen = world.everything_central() + world.answers(tid) + central_log(caplog.records)
    for digest in [*candidates.values(), sha256]:
        assert digest not in seen
    assert SECRET_FILE not in seen and "result.json" not in seen, "no train-chosen file name"
    assert "min-cell-count" not in seen and "CheckResult" not in seen and "OutputReview" not in seen, "no review"
    assert f'"{size}"^^' not in world.everything_central(), "no size"
    assert "pht-kg/vocab#Output>" not in world.everything_central(), "no output record at all"
    assert not readable_objects(world)


def test_the_min_cell_count_check_says_where_never_the_count(tmp_path: Path) -> None:
    policy = StationPolicy(min_cell_count=5)
    details = set()
    for count in range(1, 5):
        out = tmp_path / f"out-{count}"
        out.mkdir()
        (out / "result.json").write_text(json.dumps({"count": count}))
        (out / "table.csv").write_text(f"site,n\naachen,{count}\n")
        (check,) = [c for c in review(out, policy) if c.name == "min-cell-count"]
        assert not check.passed and not re.search(rf"\b{count}\b", check.detail), check.detail
        details.add(check.detail)
    assert len(details) == 1, f"the sentence must not depend on the count: {details}"


def test_a_crashing_train_says_only_that_it_failed_unless_the_policy_shares_more(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.define("count")
    runtime = ScriptedRuntime(writes({}, exit_code=3))
    agent = world.agent("aachen", AUTOMATIC, runtime)
    tid = world.submit("count")
    agent.poll_once()
    assert world.train(tid)["state"] == "failed"
    assert "the train failed at station aachen" in world.reasons(tid)
    seen = world.everything_central() + world.answers(tid) + central_log(caplog.records)
    assert not re.search(r"exit code|exited|code 3", seen), "the exit code stays at the station"
    to_mpu = json.dumps(agent.events.posted)  # type: ignore[attr-defined]  # RecordingEvents
    assert "exited" not in to_mpu and "code 3" not in to_mpu, "nor does it go out through the station's MPU"

    sharing = StationPolicy(requires_approval=False, requires_output_review=False, failure_detail=FAILURE_EXIT_CODE)
    agent = world.agent("aachen", sharing, runtime)
    tid = world.submit("count")
    agent.poll_once()
    assert "the train failed at station aachen (exit code 3)" in world.reasons(tid)


def test_a_released_output_arrives_with_its_release(world: World) -> None:
    world.define("count", route=("aachen", "leipzig"))
    agent = world.agent("aachen", AUTOMATIC, ScriptedRuntime(writes({"result.json": json.dumps({"count": 40})})))
    tid = world.submit("count")
    agent.poll_once()
    execution = world.train(tid)["executions"][0]
    assert execution["state"] == "released"
    digest = execution["output_sha256"]
    assert digest and world.objects.exists(digest), "readable by its digest once released"
    size = world.objects.path_for(digest).stat().st_size
    assert f'"{size}"^^<http://www.w3.org/2001/XMLSchema#integer>' in world.everything_central()
    assert "CheckResult" not in world.everything_central(), "the checks' names leave only if the policy says so"
    sharing = StationPolicy(requires_approval=False, requires_output_review=False, shares_check_names=True,
                            max_output_bytes=100_000)
    agent = world.agent("aachen", sharing, ScriptedRuntime(writes({"result.json": json.dumps({"count": 40})})))
    tid = world.submit("count")
    agent.poll_once()
    everything = world.everything_central()
    assert "max-output-bytes" in everything and "file-list" in everything
    assert "result.json" not in everything, "check names and results only, never their details"


def test_a_refused_release_leaves_nothing_readable(world: World) -> None:
    world.define("count")
    agent = world.agent("aachen", REVIEWED, ScriptedRuntime(writes(SMALL)))
    tid = world.submit("count")
    eid = f"{tid}.r1-s0"
    agent.poll_once()
    hold = Holding(agent.settings.state_dir, eid)
    held = hold.held()
    assert held is not None
    # the researcher cancels the train while the admin looks at the output; the admin then releases it
    r = world.http.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={"reason": "wrong cohort"})
    assert r.status_code == 200, r.text
    with world.admin("aachen") as deciding, pytest.raises(ClientError) as refused:
        release(deciding, world.objects, hold, eid, reason="looks fine")
    assert refused.value.status == 409
    assert not world.objects.exists(held[0])
    assert not readable_objects(world), "not even a staged copy is left"
    assert held[0] not in world.everything_central()


def test_a_release_whose_answer_was_lost_is_finished_by_the_agent(world: World) -> None:
    world.define("count")
    agent = world.agent("aachen", REVIEWED, ScriptedRuntime(writes(SMALL)))
    tid = world.submit("count")
    eid = f"{tid}.r1-s0"
    agent.poll_once()
    hold = Holding(agent.settings.state_dir, eid)
    held = hold.held()
    assert held is not None

    class LostAnswer(CentralClient):
        def step(self, *args: object, **kwargs: object) -> str:
            super().step(*args, **kwargs)  # type: ignore[arg-type]
            raise ClientError("the central service did not answer")  # no status: unknown outcome

    with LostAnswer(world.central.url, admin("aachen")["Authorization"].removeprefix("Bearer ")) as lost, \
            pytest.raises(ClientError):
        release(lost, world.objects, hold, eid, reason="looks fine")
    assert world.train(tid)["executions"][0]["state"] == "released"
    assert not world.objects.exists(held[0]), "staged, not yet readable by its digest"
    agent.poll_once()  # the execution left the station's work: the agent finishes the release, then forgets it
    assert world.objects.exists(held[0])
    assert [p.parent.name for p in readable_objects(world)] == [held[0][:2]], "only the promoted object is left"
    assert not hold.root.exists()



def test_the_station_admin_sees_the_review_on_the_station_host_only(world: World) -> None:
    world.define("count")
    agent = world.agent("aachen", REVIEWED, ScriptedRuntime(writes(SMALL)))
    tid = world.submit("count")
    agent.poll_once()
    token = admin("aachen")["Authorization"].removeprefix("Bearer ")
    base = [sys.executable, "-m", "pht_cli.main", "station", "pending", "aachen", "--central", world.central.url,
            "--token", token]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PHT_")}, "COLUMNS": "250"}
    local = subprocess.run([*base, "--state-dir", str(agent.settings.state_dir)], capture_output=True, text=True,
                           env=env, timeout=60)
    assert local.returncode == 0, local.stderr
    said = " ".join(local.stdout.split())
    assert f"{tid}.r1-s0" in said and "FAILED: min-cell-count" in said and "result.json" in said, said
    central_only = subprocess.run(base, capture_output=True, text=True, env=env, timeout=60)
    assert central_only.returncode == 0, central_only.stderr
    assert "min-cell-count" not in central_only.stdout and "--state-dir" in " ".join(central_only.stdout.split())
    page = world.http.get("/ui/station/aachen/pending", headers=admin("aachen")).text
    assert f"{tid}.r1-s0" in page and "min-cell-count" not in page and "result.json" not in page


def _staging_round(store: ObjectStore, listed: Callable[[], list[str]], tmp_path: Path) -> None:
    """Staged bytes are readable by no digest; discarded, nothing is left; promoted, they are the object."""
    archive = tmp_path / "held.tar.gz"
    archive.write_bytes(b"a small count: 3")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    refused, accepted = new_staging_key(), new_staging_key()
    assert store.stage_file(archive, refused) == digest and not store.exists(digest)
    store.discard(refused)
    assert listed() == [] and not store.exists(digest)
    store.stage_file(archive, accepted)
    store.promote(accepted, digest)
    store.promote(accepted, digest)  # a resumed release: already done
    assert store.exists(digest) and len(listed()) == 1
    store.get_file(digest, tmp_path / "down.bin")
    with pytest.raises(InvalidDigest):
        store.stage_file(archive, "../../sha256/" + digest)


def test_a_staged_output_is_readable_only_once_promoted(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    _staging_round(store, lambda: [str(p) for p in store.root.rglob("*") if p.is_file()], tmp_path)


@pytest.mark.real_component("s3")
def test_a_staged_output_is_readable_only_once_promoted_in_s3(s3_endpoint: Any, tmp_path: Path) -> None:
    store = object_store_from_url(f"s3+http://{s3_endpoint.access_key}:{s3_endpoint.secret_key}@"
                                  f"{s3_endpoint.endpoint}/staging-{uuid.uuid4().hex[:12]}")
    assert isinstance(store, S3ObjectStore)
    client = store._client  # the bucket as anyone with its credentials lists it
    _staging_round(store, lambda: [o.object_name for o in client.list_objects(store.bucket, recursive=True)],
                   tmp_path)

"""A researcher using only the README and ``--help`` (issue 11), against a real platform: the central service over
HTTP, two station agents, each with its metadata processing unit pushing to the central graph, and trains run as
local processes (the runtime every machine has).

* ``pht train results ID --out DIR`` fetches the result through the link the service hands its requester
  (no object store settings), and only its requester's;
* every path that lists a train's events shows one row per state transition, MPUs running;
* ``pht ask``, ``pht train list`` and ``pht train watch`` stay within an 80-character terminal, values whole.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pyoxigraph import NamedNode
from rich.console import Console

from local_platform import LocalPlatform, StationSpec, read_pooled, split_breast_cancer
from orchestrator.principal import Role
from station.runtimes.process import IsolationWarning

REPO = Path(__file__).resolve().parent.parent
PHT = [sys.executable, "-m", "pht_cli.main"]
ROUTE = ("aachen", "leipzig")
COUNT = {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"}
FAILURE = "the train failed at station leipzig"  # by default, no exit code leaves the station


@dataclass
class World:
    platform: LocalPlatform
    finished: str  # a cohort count through both stations
    failed: str  # released at aachen, failed at leipzig

    @property
    def central(self) -> str:
        return self.platform.url

    def token(self, who: str = "alice") -> str:
        return self.platform.token(who, Role.RESEARCHER)

    @property
    def keys(self) -> Path:
        """Alice's key directory: her trains are signed with it and their results sealed to it."""
        return self.platform.workdir / "keys" / "researchers" / "alice"


def pht(*args: str, token: str, columns: int = 200, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The command line as a researcher runs it: nothing set but the token (no PHT_OBJECTS_URL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    env.update(PHT_TOKEN=token, COLUMNS=str(columns))
    return subprocess.run([*PHT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def station_accounts(world: World, tid: str) -> list[tuple[str, str]]:
    """(graph, new state) of every state change the stations' MPUs pushed about the train."""
    client = world.platform.client("alice")
    history = client.named_query("train_history", train=NamedNode(client.train(tid)["iri"]))
    return [(row["graph"]["value"].rsplit("/", 1)[-1], row["to"]["value"].rsplit("#", 1)[-1])
            for row in history["results"]["bindings"]
            if "to" in row and not row["graph"]["value"].endswith("/central")]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("researcher")
    folders = split_breast_cancer(tmp / "data", ROUTE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)  # no bubblewrap here: unisolated, said loudly elsewhere
        platform = LocalPlatform(tmp / "platform", [StationSpec(s, folders[s]) for s in ROUTE], runtime="process")
        platform.start()
    try:
        alice = platform.client("alice")
        for did, folder, params in (("count", REPO / "trains" / "cohort-count", list(COUNT)),
                                    ("fail-second", REPO / "tests" / "fixtures" / "trains" / "fail-second", [])):
            image = platform.build_image(folder, f"pht-test/{did}:cli")
            alice.register_definition({"id": did, "title": did, "image_name": image.name, "image_digest": image.digest,
                                       "mode": "incremental", "route": list(ROUTE),
                                       "parameters": [{"name": p} for p in params]})
        w = World(platform, alice.submit("count", COUNT), alice.submit("fail-second", {}))
        assert alice.wait(w.finished)["state"] == "finished"
        assert alice.wait(w.failed)["state"] == "failed"
        deadline = time.monotonic() + 60
        while ("leipzig", "Failed") not in station_accounts(w, w.failed) or \
                ("leipzig", "Released") not in station_accounts(w, w.finished):
            assert time.monotonic() < deadline, "the MPUs did not push the stations' accounts of the steps"
            time.sleep(0.2)
        yield w
    finally:
        platform.stop()


# -- 1. results come through a link, to their requester only ------------------------------------------------------


def test_results_as_the_readme_writes_it_come_through_a_link(world: World, tmp_path: Path) -> None:
    done = pht("train", "results", world.finished, "--out", str(tmp_path / "result"), "--central", world.central,
               "--keys", str(world.keys), token=world.token())
    assert done.returncode == 0, done.stderr
    assert "verified" in done.stdout and "decrypted" in done.stdout
    x, _, names = read_pooled([s.dataset for s in world.platform.stations])
    got = json.loads((tmp_path / "result" / "result.json").read_text())
    assert got["count"] == int((x[:, names.index("mean_radius")] > 15).sum())
    assert not list(tmp_path.glob("*.tar.gz")) and not list(tmp_path.glob(".*.part")), "the download is cleaned up"


def test_another_researcher_gets_no_result_in_one_sentence(world: World, tmp_path: Path) -> None:
    done = pht("train", "results", world.finished, "--out", str(tmp_path / "stolen"), "--central", world.central,
               token=world.token("bob"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "only the requester" in done.stderr or "another requester" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "stolen").exists() and not list(tmp_path.iterdir())


def test_results_of_a_train_that_did_not_finish_say_so_in_one_sentence(world: World, tmp_path: Path) -> None:
    done = pht("train", "results", world.failed, "--out", str(tmp_path / "result"), "--central", world.central,
               token=world.token())
    assert done.returncode == 1, done.stdout + done.stderr
    assert "not finished" in done.stderr and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "result").exists()
    # its first station released an output, which its requester may still fetch, but it is sealed to the next
    # station (leipzig), not to her: she gets a sentence and no file
    first = pht("train", "results", world.failed, "--execution", f"{world.failed}.r1-s0", "--out",
                str(tmp_path / "first"), "--central", world.central, "--keys", str(world.keys), token=world.token())
    assert first.returncode == 1, first.stdout
    assert "not encrypted to this key" in first.stderr and first.stderr.count("\n") == 1, first.stderr
    assert not list(tmp_path.iterdir())


def test_the_service_names_no_object_store_to_anyone(world: World) -> None:
    answer = httpx.get(world.central + "/api/settings", headers={"Authorization": f"Bearer {world.token()}"})
    assert answer.status_code == 200
    assert answer.json() == {"results_served": True, "result_link_ttl_s": 300.0}
    assert httpx.get(world.central + "/api/settings").status_code == 401


# -- 3. one row per transition, MPUs running ------------------------------------------------------------------


def test_rest_events_list_each_transition_once_although_the_mpus_recorded_them_too(world: World) -> None:
    for tid in (world.finished, world.failed):
        assert station_accounts(world, tid), "the stations' MPUs pushed their own state changes"
        events = world.platform.client("alice").events(tid)
        transitions = Counter((e["execution"], e["to_state"]) for e in events if e["execution"] and e["to_state"])
        assert transitions and max(transitions.values()) == 1, transitions


def test_the_web_timeline_and_its_live_stream_show_each_state_once(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.token()}"}
    page = httpx.get(f"{world.central}/ui/trains/{world.failed}", headers=headers)
    assert page.status_code == 200
    for eid in (f"{world.failed}.r1-s0", f"{world.failed}.r1-s1"):
        timeline = page.text.split(f'data-timeline="{eid}"')[1].split("data-timeline=")[0]
        states = [chunk.split('"')[0] for chunk in timeline.split('class="state s-')[1:]]
        assert len(states) == len(set(states)) and states[-1] in ("released", "failed"), states
    stream = httpx.get(f"{world.central}/ui/trains/{world.failed}/events/stream", headers=headers, timeout=60)
    rows = [json.loads(block.split("data: ", 1)[1]) for block in stream.text.split("\n\n")
            if block.startswith("event: event")]
    transitions = Counter((r["execution"], r["to_state"]) for r in rows if r["execution"] and r["to_state"])
    assert transitions and max(transitions.values()) == 1, transitions


def test_watch_prints_the_failure_once_with_its_station(world: World) -> None:
    done = pht("train", "watch", world.failed, "--central", world.central, "--timeout", "30", token=world.token())
    assert done.returncode == 1
    text = " ".join(done.stdout.split())
    assert text.count(FAILURE) == 1, done.stdout
    assert "failed at leipzig, round 1:" in text, done.stdout


# -- 4, 5. 80 columns -----------------------------------------------------------------------------------------


def assert_fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert lines and max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)
    return lines


def assert_whole(lines: list[str], *values: str) -> None:
    """Each value is readable: every word of it whole on a line (a value wraps only at its spaces)."""
    for value in values:
        for word in value.split():
            assert any(word in line for line in lines), f"{word!r} of {value!r} is cut or missing"


def test_ask_fits_80_columns_and_keeps_values_readable(world: World) -> None:
    from pht_cli.train_commands import print_sparql_json
    client = world.platform.client("alice")
    execution = f"{world.failed}.r1-s1"
    reason = next(e["reason"] for e in client.events(world.failed) if e["execution"] == execution
                  and e["to_state"] == "failed")
    for query, columns, values in (
            ("train_history", None, (execution, reason, "OutputUnderReview", "leipzig")),
            ("train_history", ("time", "stationId", "from", "to", "reason"), (reason, "OutputUnderReview")),
            ("station_durations", None, (execution, "Released", "Failed"))):
        out = io.StringIO()
        answer = client.named_query(query, train=NamedNode(client.train(world.failed)["iri"]))
        print_sparql_json(answer, Console(file=out, width=80), columns=columns)
        assert_whole(assert_fits(out.getvalue()), *values)
    done = pht("ask", "train_history", "--param", f"train={world.failed}", "--central", world.central,
               columns=80, token=world.token())
    assert done.returncode == 0, done.stderr
    assert_whole(assert_fits(done.stdout), execution, reason, "OutputUnderReview")


def test_list_and_watch_fit_80_columns(world: World) -> None:
    listed = pht("train", "list", "--central", world.central, columns=80, token=world.token())
    assert listed.returncode == 0, listed.stderr
    assert_whole(assert_fits(listed.stdout), world.finished, world.failed, "fail-second", "finished")
    watched = pht("train", "watch", world.failed, "--central", world.central, columns=80, token=world.token())
    lines = assert_fits(watched.stdout)
    assert_whole(lines, "round 1 aachen", "round 1 leipzig", "released", "failed")


def test_ask_names_an_unknown_column_in_one_sentence(world: World) -> None:
    done = pht("ask", "train_history", "--param", f"train={world.failed}", "--columns", "time,nope",
               "--central", world.central, token=world.token())
    assert done.returncode == 1 and "no column nope" in done.stderr and "stationId" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1

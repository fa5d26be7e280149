"""The researcher's and operator's command line against a running platform: set up stations in one
command, submit from a file, watch, fetch and verify results, ask provenance questions, and the refusals."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from api_helpers import SETTINGS
from central_thread import Central, central_service
from conftest import require_component

from local_platform import read_pooled
from orchestrator.auth import issue_token
from orchestrator.principal import Role
from orchestrator.settings import DEMO_SECRET
from station.agent import StationAgent
from station.images import build_train_image
from station.runtimes.docker import DockerRuntime
from station.settings import StationSettings

pytestmark = pytest.mark.real_component("docker")
REPO = Path(__file__).resolve().parent.parent
PHT = [sys.executable, "-m", "pht_cli.main"]
STATIONS = ("aachen", "leipzig", "cologne")


def token(subject: str, role: Role) -> str:
    return issue_token(DEMO_SECRET, subject=subject, roles=[role])


def pht(*args: str, who: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PHT_DEMO": "1", "COLUMNS": "200"}
    if who is not None:
        env["PHT_TOKEN"] = who
    return subprocess.run([*PHT, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value, comments=True)[0] if value.strip() else ""
    return env


class Platform:
    def __init__(self, central: Central, homes: dict[str, Path]) -> None:
        self.central, self.homes = central, homes
        self.alice_keys = Path()
        self.agents = [StationAgent(StationSettings.from_env({**read_env(home / "station.env"),
                                                              "PHT_STATION_POLL_INTERVAL": "0.2"}),
                                    runtime=DockerRuntime()) for home in homes.values()]
        self.threads = [threading.Thread(target=a.run, daemon=True) for a in self.agents]
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        for a in self.agents:
            a.stop()
        for t in self.threads:
            t.join(timeout=60)
        for a in self.agents:
            a.close()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    require_component("docker")
    out = tmp_path_factory.mktemp("cli") / "stations"
    # the service reads results from the folder pht setup gives the stations
    with central_service(settings=replace(SETTINGS, results_store_url=f"file://{out / 'objects'}")) as central:
        done = pht("setup", str(out), "--central", central.url, "--automatic", who=token("ops", Role.OPERATOR))
        assert done.returncode == 0, done.stderr
        homes = {sid: out / sid for sid in STATIONS}
        for sid, home in homes.items():
            assert f"station {sid}: registered" in done.stdout
            assert (home / "data" / "patients.csv").is_file() and (home / "keys" / "signing.pem").is_file()
            token_file = Path(read_env(home / "station.env")["PHT_STATION_TOKEN_FILE"])
            assert token_file.read_text().strip(), "a token was issued (PHT_DEMO=1)"
        p = Platform(central, homes)
        # alice's keys (pht keys init): her trains are signed, as the service and the stations require
        p.alice_keys = out.parent / "alice-keys"
        done = pht("keys", "init", "--dir", str(p.alice_keys), "--central", central.url,
                   who=token("alice", Role.RESEARCHER))
        assert done.returncode == 0, done.stderr
        try:
            yield p
        finally:
            p.stop()


def train_file(tmp: Path, did: str, folder: str, route: tuple[str, ...], parameters: dict[str, str],
               **definition: object) -> Path:
    digest = build_train_image(REPO / folder, f"pht-test/{did}:cli")
    path = tmp / f"{did}.json"
    path.write_text(json.dumps({"definition": {
        "id": did, "title": did, "image_name": f"pht-test/{did}:cli", "image_digest": digest,
        "mode": "incremental", "route": list(route), "parameters": [{"name": n} for n in parameters],
        **definition}, "parameters": parameters}))
    return path


@pytest.fixture(scope="module")
def keys(platform: Platform) -> tuple[str, str]:
    """``--keys DIR`` with alice's keys (the platform fixture's ``pht keys init``): she signs her trains, and their
    results are sealed to her encryption key."""
    return ("--keys", str(platform.alice_keys))


def test_submit_watch_fetch_and_ask(platform: Platform, keys: tuple[str, str], tmp_path: Path) -> None:
    alice, bob = token("alice", Role.RESEARCHER), token("bob", Role.RESEARCHER)
    central = ("--central", platform.central.url)
    params = {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"}
    done = pht("train", "submit", str(train_file(tmp_path, "count", "trains/cohort-count", STATIONS, params)),
               *central, *keys, who=alice)
    assert done.returncode == 0, done.stderr
    tid = done.stdout.strip()
    watched = pht("train", "watch", tid, *central, "--interval", "0.2", "--timeout", "120", who=alice)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    for sid in STATIONS:
        assert f"round 1 {sid}" in watched.stdout
    assert "released" in watched.stdout
    fetched = pht("train", "results", tid, "--out", str(tmp_path / "result"), *central, *keys, who=alice)
    assert fetched.returncode == 0, fetched.stderr
    assert "verified" in fetched.stdout
    x, _, names = read_pooled([platform.homes[s] / "data" for s in STATIONS])
    got = json.loads((tmp_path / "result" / "result.json").read_text())
    assert got["count"] == int((x[:, names.index("mean_radius")] > 15).sum())
    refused = pht("train", "results", tid, "--out", str(tmp_path / "stolen"), *central, who=bob)
    assert refused.returncode == 1 and not (tmp_path / "stolen").exists()
    assert "Traceback" not in refused.stderr and refused.stderr.count("\n") <= 2, refused.stderr
    asked = pht("ask", "train_history", "--param", f"train={tid}", "--columns", "time,stationId,from,to", *central,
                who=alice)
    assert asked.returncode == 0, asked.stderr
    assert "Released" in asked.stdout and "aachen" in asked.stdout and "…" not in asked.stdout
    query = tmp_path / "states.rq"
    query.write_text("PREFIX pht: <https://w3id.org/pht-kg/vocab#> SELECT (COUNT(*) AS ?n) WHERE { ?t a pht:Train }")
    assert pht("ask", "--file", str(query), *central, who=alice).returncode == 0
    broken = tmp_path / "broken.rq"
    broken.write_text("SELECT WHERE {")
    bad = pht("ask", "--file", str(broken), *central, who=alice)
    assert bad.returncode == 1 and "error:" in bad.stderr and "Traceback" not in bad.stderr


def test_an_invalid_train_file_gets_the_shacl_report(platform: Platform, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"definition": {
        "id": "bad", "title": "bad", "image_name": "x", "image_digest": "latest", "mode": "incremental",
        "route": ["aachen"]}, "parameters": {}}))
    done = pht("train", "submit", str(path), "--central", platform.central.url, "--keys", str(platform.alice_keys),
               who=token("alice", Role.RESEARCHER))
    assert done.returncode == 1
    assert "violates the shapes" in done.stderr and "sha256" in done.stderr, done.stderr


def test_a_failure_at_the_second_station_names_station_and_step_and_keeps_the_first_output(
        platform: Platform, keys: tuple[str, str], tmp_path: Path) -> None:
    alice = token("alice", Role.RESEARCHER)
    central = ("--central", platform.central.url)
    path = train_file(tmp_path, "fail-second", "tests/fixtures/trains/fail-second", ("aachen", "leipzig"), {})
    tid = pht("train", "submit", str(path), *central, *keys, who=alice).stdout.strip()
    watched = pht("train", "watch", tid, *central, "--interval", "0.2", "--timeout", "120", who=alice)
    assert watched.returncode == 1
    text = " ".join(watched.stdout.split())
    assert "failed" in text and "the train failed at station leipzig" in text, text
    asked = pht("ask", "train_history", "--param", f"train={tid}", "--columns", "stationId,from,to", *central,
                who=alice)
    assert "Running" in asked.stdout and "Failed" in asked.stdout, "the step it failed from is in the history"
    from client import CentralClient
    with CentralClient(platform.central.url, alice) as client:
        first = client.train(tid)["executions"][0]
    assert first["state"] == "released" and first["output_sha256"]
    from station.objects import LocalObjectStore
    assert LocalObjectStore(platform.homes["aachen"].parent / "objects").exists(first["output_sha256"])

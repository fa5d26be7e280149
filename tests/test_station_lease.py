"""One agent per station: the station's lease at the central service, taken, renewed and released by real
agents (``pht station run`` processes and agents in threads) against a real central service over HTTP.

A second agent started by mistake once drove the same execution as the first and removed its container; now
it refuses to start, naming the first. The lease expires if its holder dies (SIGKILL), so a crash does not
lock the station out, and a clean stop releases it at once.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import ALICE, DIGEST, KEY, OPS, holding_keys, station, token
from central_thread import Central, central_service
from polling import wait_for
from pyoxigraph import Literal, NamedNode, Quad

from client import CentralClient, ClientError
from graph_store import CENTRAL_GRAPH, PHT, ChangeSet, EmbeddedStore, ValidationFailed, parse_rdf
from orchestrator.principal import Role
from station.agent import LeaseLost, LeaseRefused, StationAgent, quiet_request_logs
from station.settings import StationSettings

REPO = Path(__file__).resolve().parent.parent
PHT_CLI = [sys.executable, "-m", "pht_cli.main"]
HOST = socket.gethostname()


class NoRuntime:
    """These agents never run a train (the station admin decides, and nobody approves)."""

    name = "none"

    def close(self) -> None:
        pass


NO_RUNTIME = NoRuntime()  # type: ignore[var-annotated]


def bearer(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture()
def central() -> Iterator[Central]:
    with central_service() as c:
        with CentralClient(c.url, bearer(OPS)) as ops:
            for sid in ("aachen", "leipzig"):
                ops.register_station({"id": sid, "title": sid, "owner": "hospital", "public_keys": [KEY]})
                ops.register_dataset({"id": f"{sid}-data", "title": "data", "station": sid})
        with CentralClient(c.url, bearer(ALICE)) as alice:
            alice.register_definition({"id": "count", "title": "count", "image_name": "pht/count",
                                       "image_digest": DIGEST, "mode": "incremental", "route": ["aachen"]})
        yield c


def lease_of(central: Central, sid: str = "aachen") -> dict[str, object] | None:
    r = httpx.get(f"{central.url}/api/stations/{sid}/lease", headers=OPS, timeout=10)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()


# ---- the central service's side --------------------------------------------------------------------------


def test_a_station_takes_renews_and_releases_its_lease_and_a_second_holder_is_refused_naming_the_first(
        central: Central) -> None:
    with CentralClient(central.url, bearer(station("aachen"))) as aachen:
        first = aachen.take_lease("aachen", "pid 1 on host-a (instance aaaa0001)", 30)
        assert first["holder"] == "pid 1 on host-a (instance aaaa0001)" and first["held"]
        renewed = aachen.take_lease("aachen", "pid 1 on host-a (instance aaaa0001)", 30)
        assert renewed["expires"] >= first["expires"]
        with pytest.raises(ClientError) as refused:
            aachen.take_lease("aachen", "pid 2 on host-b (instance bbbb0002)", 30)
        assert refused.value.status == 409
        sentence = str(refused.value)
        assert sentence.startswith("station aachen already has a running agent: pid 1 on host-a (instance aaaa0001) "
                                   "holds its lease until 20") and sentence.count(". ") == 0
        with pytest.raises(ClientError) as not_theirs:  # only the holder releases
            aachen.release_lease("aachen", "pid 2 on host-b (instance bbbb0002)")
        assert not_theirs.value.status == 409
        aachen.release_lease("aachen", "pid 1 on host-a (instance aaaa0001)")
        assert not lease_of(central)["held"]  # type: ignore[index]
        aachen.release_lease("aachen", "pid 1 on host-a (instance aaaa0001)")  # again: nothing to do
        assert aachen.take_lease("aachen", "pid 2 on host-b (instance bbbb0002)", 30)["held"], "taken at once"


def test_a_lease_nobody_renews_expires(central: Central) -> None:
    with CentralClient(central.url, bearer(station("aachen"))) as aachen:
        aachen.take_lease("aachen", "pid 1 on host-a (instance aaaa0001)", 1)
        with pytest.raises(ClientError):
            aachen.take_lease("aachen", "pid 2 on host-b (instance bbbb0002)", 1)
        time.sleep(1.1)
        assert aachen.take_lease("aachen", "pid 2 on host-b (instance bbbb0002)", 1)["held"]


def test_only_the_stations_own_token_takes_its_lease(central: Central) -> None:
    body = {"holder": "pid 1 on host-a (instance aaaa0001)", "period_s": 30}
    for who in (station("leipzig"), OPS, token("admin-aachen", Role.STATION_ADMIN, station="aachen"), ALICE):
        r = httpx.put(f"{central.url}/api/stations/aachen/lease", headers=who, json=body, timeout=10)
        assert r.status_code == 403, (who, r.text)
    r = httpx.delete(f"{central.url}/api/stations/aachen/lease", headers=station("leipzig"),
                     params={"holder": body["holder"]}, timeout=10)
    assert r.status_code == 403
    assert lease_of(central) is None, "nothing was written"
    r = httpx.get(f"{central.url}/api/stations/aachen/lease", headers=station("leipzig"), timeout=10)
    assert r.status_code == 403


@pytest.mark.parametrize("body", [{"holder": "", "period_s": 30}, {"holder": "x" * 201, "period_s": 30},
                                  {"holder": "a", "period_s": 0.5}, {"holder": "a", "period_s": 86400},
                                  {"holder": "a"}, {"holder": "a", "period_s": 30, "extra": 1}])
def test_a_malformed_lease_request_is_refused_with_one_sentence(central: Central, body: dict[str, object]) -> None:
    r = httpx.put(f"{central.url}/api/stations/aachen/lease", headers=station("aachen"), json=body, timeout=10)
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request: body")
    assert lease_of(central) is None


def test_the_lease_of_an_unknown_station_is_404(central: Central) -> None:
    r = httpx.put(f"{central.url}/api/stations/nowhere/lease", headers=station("nowhere"),
                  json={"holder": "a", "period_s": 30}, timeout=10)
    assert r.status_code == 404 and r.json()["detail"] == "no station 'nowhere'"


def test_the_lease_is_a_validated_resource_of_the_central_graph_and_two_first_takes_cannot_both_win(
        central: Central) -> None:
    with CentralClient(central.url, bearer(station("aachen"))) as aachen:
        aachen.take_lease("aachen", "pid 1 on host-a (instance aaaa0001)", 30)
    rows = list(central.store.run_query("station_leases"))
    assert [(r["stationId"].value, r["holder"].value) for r in rows] == [
        ("aachen", "pid 1 on host-a (instance aaaa0001)")]
    assert rows[0]["expires"].datatype == NamedNode("http://www.w3.org/2001/XMLSchema#dateTime")
    # another writer's first take landing next to it (what a race of two service processes would do) is refused
    lease = rows[0]["lease"]
    with pytest.raises(ValidationFailed) as refused:
        central.store.apply(ChangeSet(insert=[Quad(lease, PHT.leaseHolder, Literal("pid 2 on host-b"), CENTRAL_GRAPH)]))
    assert "exactly one holder" in refused.value.report.text()


def test_the_station_leases_query_on_a_fixture_store() -> None:
    store = EmbeddedStore()
    store.load_vocabulary()
    store.apply(ChangeSet(insert=parse_rdf(
        (REPO / "tests/fixtures/shapes/valid/stations.ttl").read_bytes(), "text/turtle", CENTRAL_GRAPH)))
    rows = {r["stationId"].value: (r["holder"].value, r["expires"].value) for r in store.run_query("station_leases")}
    assert rows == {"aachen": ("pid 4711 on aachen-pht-01 (instance 3f9c2a1b)", "2026-11-27T10:00:30Z"),
                    "leipzig": ("pid 982 on leipzig-node (instance 0c4e77d2)", "2026-11-27T09:12:04.125+01:00")}


# ---- agents in threads -------------------------------------------------------------------------------------


def agent_settings(central: Central, tmp: Path, *, lease_s: float = 30, name: str = "a") -> StationSettings:
    (tmp / "data").mkdir(exist_ok=True)
    return StationSettings(station_id="aachen", central_url=central.url, token=bearer(station("aachen")),
                           datasets={"aachen-data": tmp / "data"}, state_dir=tmp / f"state-{name}",
                           objects_url=f"file://{tmp / 'objects'}", poll_interval_s=0.05, lease_s=lease_s)


def test_polls_renew_the_lease_at_a_fraction_of_its_period_not_on_every_poll(central: Central, tmp_path: Path) -> None:
    writes: list[ChangeSet] = []
    central.store.on_commit(lambda change: writes.append(change)
                            if any(q.predicate == PHT.leaseExpires for q in change.insert) else None)
    agent = StationAgent(agent_settings(central, tmp_path, lease_s=3), runtime=NO_RUNTIME)  # type: ignore[arg-type]
    try:
        started = time.monotonic()
        polls = 0
        while time.monotonic() - started < 2.5:
            agent.poll_once()
            polls += 1
    finally:
        agent.close()
    assert polls > 30
    # the take, renewals every third of the 3 s period (at most 2 within 2.5 s), and the release at close
    assert 2 <= len(writes) <= 4, f"{len(writes)} lease writes for {polls} polls"


def test_an_agent_that_lost_its_lease_takes_no_step_and_says_so(central: Central, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    first = StationAgent(agent_settings(central, tmp_path, lease_s=1, name="1"), runtime=NO_RUNTIME)  # type: ignore[arg-type]
    second = StationAgent(agent_settings(central, tmp_path, lease_s=30, name="2"), runtime=NO_RUNTIME)  # type: ignore[arg-type]
    try:
        first.poll_once()
        with pytest.raises(LeaseRefused, match=re.escape(f"already has a running agent: {first.lease.holder} ")):
            second.poll_once()
        time.sleep(1.1)  # the first agent was paused past its lease (e.g. its host hung): the second may start
        second.poll_once()
        with holding_keys(CentralClient(central.url, bearer(ALICE))) as alice:
            train = alice.submit("count")
        with caplog.at_level(logging.ERROR, logger="pht.station"), pytest.raises(LeaseLost) as lost:
            first.run()  # it wakes up: its renewal is refused, so it stops without taking any step
        assert "this agent" in str(lost.value) and "lost its lease and stops taking work" in str(lost.value)
        assert second.lease.holder in str(lost.value)
        assert any("lost its lease" in r.getMessage() for r in caplog.records)
        with holding_keys(CentralClient(central.url, bearer(ALICE))) as alice:
            assert alice.train(train)["executions"][0]["state"] == "queued", "the first agent took no step"
        assert lease_of(central)["holder"] == second.lease.holder  # type: ignore[index]
    finally:
        first.close()
        second.close()


def test_an_idle_poll_logs_at_debug_and_what_happens_at_info(central: Central, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logging.getLogger("httpx"), "level", logging.getLogger("httpx").level)  # restored after
    quiet_request_logs()  # as `pht station run` does
    agent = StationAgent(agent_settings(central, tmp_path), runtime=NO_RUNTIME)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_for("20 polls", lambda: sum("polled" in r.getMessage() for r in caplog.records) >= 20)
        polls = [r for r in caplog.records if "polled" in r.getMessage()]
        assert all(r.levelno == logging.DEBUG and r.name == "pht.station" for r in polls)
        info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert len(info) == 1 and "holds the station's lease" in info[0], info  # nothing per poll
        with holding_keys(CentralClient(central.url, bearer(ALICE))) as alice:
            train = alice.submit("count")
        wait_for("the decision logged", lambda: any(f"{train}.r1-s0 -> waiting-for-approval" in r.getMessage()
                                                    and r.levelno == logging.INFO for r in caplog.records))
    finally:
        agent.stop()
        thread.join(timeout=30)
        agent.close()
    assert any("released the station's lease" in r.getMessage() and r.levelno == logging.INFO
               for r in caplog.records)


# ---- agents as processes: `pht station run` ------------------------------------------------------------------


class Agents:
    """``pht station run`` processes of station aachen against the central service; output kept in files."""

    def __init__(self, central: Central, tmp: Path) -> None:
        self.central, self.tmp = central, tmp
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        (tmp / "data").mkdir(exist_ok=True)

    def start(self, lease_s: float) -> subprocess.Popen[bytes]:
        n = len(self.procs)
        env = {**os.environ, "PHT_STATION_ID": "aachen", "PHT_CENTRAL_URL": self.central.url,
               "PHT_STATION_TOKEN": bearer(station("aachen")), "PHT_STATION_DATASETS": f"aachen-data={self.tmp / 'data'}",
               "PHT_STATION_STATE_DIR": str(self.tmp / f"state-{n}"), "PHT_OBJECTS_URL": f"file://{self.tmp / 'objects'}",
               "PHT_STATION_RUNTIME": "process", "PHT_STATION_POLL_INTERVAL": "0.2",
               "PHT_STATION_LEASE_S": str(lease_s), "COLUMNS": "300"}
        env.pop("PHT_MPU_URL", None)
        log = self.tmp / f"agent-{n}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*PHT_CLI, "station", "run"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.procs if p is proc).read_text()

    def holds(self, proc: subprocess.Popen[bytes]) -> bool:
        lease = lease_of(self.central)
        return lease is not None and bool(lease["held"]) and str(lease["holder"]).startswith(f"pid {proc.pid} on ")

    def stop_all(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture()
def agents(central: Central, tmp_path: Path) -> Iterator[Agents]:
    a = Agents(central, tmp_path)
    try:
        yield a
    finally:
        a.stop_all()


def test_a_second_agent_refuses_to_start_a_killed_agents_lease_expires_and_a_clean_stop_releases_at_once(
        agents: Agents) -> None:
    first = agents.start(lease_s=3)
    wait_for("the first agent holds the lease", lambda: agents.holds(first))
    second = agents.start(lease_s=3)
    assert second.wait(timeout=60) == 1
    said = agents.output(second)
    assert f"error: station aachen already has a running agent: pid {first.pid} on {HOST} (instance " in said
    assert "holds its lease until 20" in said and "Traceback" not in said
    assert agents.holds(first), "the refused agent changed nothing"

    first.kill()  # SIGKILL: no clean-up, the lease stays until it expires
    first.wait(timeout=30)
    killed_at = time.monotonic()
    assert agents.holds(first), "a killed agent's lease is not released"
    wait_for("the killed agent's lease expires", lambda: not lease_of(agents.central)["held"])  # type: ignore[index]
    assert time.monotonic() - killed_at <= 3 + 2, "it expired within its period (3 s)"
    third = agents.start(lease_s=600)
    wait_for("a new agent starts", lambda: agents.holds(third))

    third.send_signal(signal.SIGTERM)  # a clean stop releases the 600 s lease at once
    assert third.wait(timeout=60) == 0, agents.output(third)
    assert "released the station's lease" in agents.output(third)
    fourth = agents.start(lease_s=600)
    wait_for("another agent starts at once", lambda: agents.holds(fourth), timeout_s=30)
    assert fourth.poll() is None


def test_an_agent_paused_past_its_lease_stops_with_a_sentence_when_it_wakes_up(agents: Agents) -> None:
    first = agents.start(lease_s=2)
    wait_for("the first agent holds the lease", lambda: agents.holds(first))
    first.send_signal(signal.SIGSTOP)  # a hung host: it cannot renew
    wait_for("its lease expires", lambda: not lease_of(agents.central)["held"])  # type: ignore[index]
    second = agents.start(lease_s=30)
    wait_for("a second agent takes over", lambda: agents.holds(second))
    first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=60) == 1
    said = agents.output(first)
    assert f"error: station aachen: this agent (pid {first.pid} on {HOST}" in said
    assert "lost its lease and stops taking work" in said and f"pid {second.pid} on {HOST}" in said
    assert "Traceback" not in said
    assert agents.holds(second) and second.poll() is None

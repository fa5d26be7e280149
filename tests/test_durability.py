"""Crash safety of the central service: ``python -m orchestrator`` as a real process on an on-disk store,
killed with SIGKILL in the middle of concurrent traffic, restarted on the same directory.

Each round: several client threads submit trains and step their executions through the chart (with some
cancellations and failures) over HTTP; after a random delay the process is SIGKILLed. Then, with the
process dead, the store directory is opened directly (only one process may open it) and checked:

* every train whose submit was answered 201, and every step answered 200, is in the store (durability);
* no train or execution is in an impossible state (:func:`violations`, the lifecycle's invariants);
* ``validate_everything()`` conforms (the shapes hold for the whole store).

The service is then restarted on the directory: acknowledged trains are served, start-up recovery queues the
trains a crash left ``submitted``, and a train submitted before the kill is driven to ``finished``. After the
last round the service is stopped cleanly and the store checked once more, now without any ``submitted``
train (recovery must have queued them).

Set ``PHT_DURABILITY_SEED`` to replay a run (the seed is printed in every failure message).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ALICE, OPS, admin, register_world, service, signed, station
from pyoxigraph import Literal, NamedNode, Quad

from client import ClientError
from graph_store import CENTRAL_GRAPH, EmbeddedStore
from orchestrator.chart import Chart, load_chart
from orchestrator.settings import DEMO_SECRET

REPO = Path(__file__).resolve().parent.parent
ROUNDS = 3
THREADS = 4
TRAFFIC_S = (0.8, 2.5)
"""How long each round's traffic runs before the kill (uniformly drawn)."""

STATIONS = ("aachen", "leipzig", "cologne")
PHT = "https://w3id.org/pht-kg/vocab#"
BASE = "https://pht.example.org/id/"
NEXT = {  # the happy path: state -> (next state, who fires it)
    "queued": ("waiting-for-approval", station),
    "waiting-for-approval": ("approved", admin),
    "approved": ("pulling", station),
    "pulling": ("running", station),
    "running": ("output-under-review", station),
    "output-under-review": ("released", admin),
}
TERMINAL_TRAIN = {"finished", "cancelled", "failed", "rejected", "withheld"}


# --- the service process ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """One ``python -m orchestrator`` process on ``store`` (its output goes to ``log``)."""

    store: Path
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        env = {**os.environ, "PHT_DEMO": "1", "PHT_JWT_SECRET": DEMO_SECRET, "PHT_STORE_PATH": str(self.store),
               "PHT_HOST": "127.0.0.1", "PHT_PORT": str(self.port), "PHT_LOG_LEVEL": "warning",
               # every traffic thread is the same operator: durability, not the per-caller limit, is tested here
               "PHT_QUERY_PER_PRINCIPAL": str(THREADS), "PHT_QUERY_WORKERS": str(THREADS + 1)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "orchestrator"], cwd=REPO, env=env,
                                            stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"the service did not answer /health within {timeout_s} s:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no lifespan."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        """SIGTERM and wait: uvicorn runs the lifespan's shutdown (the store is closed)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@contextmanager
def running_service(store: Path, log: Path) -> Iterator[Service]:
    service = Service(store, log)
    service.start()
    try:
        yield service
    finally:
        if service.process is not None:  # only the process this test started
            service.stop()


# --- clients ------------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the service acknowledged (thread-safe)."""

    trains: set[str] = field(default_factory=set)
    steps: list[tuple[str, str]] = field(default_factory=list)
    """(execution id, state) of every step answered 200."""
    cancelled: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def register(client: httpx.Client) -> None:
    register_world(client, count_rounds=2)


class Driver:
    """Moves trains through their lifecycle over HTTP, recording what was acknowledged."""

    def __init__(self, client: httpx.Client, ledger: Ledger, rng: random.Random) -> None:
        self.client, self.ledger, self.rng = client, ledger, rng

    def expect(self, response: httpx.Response, status: int, what: str) -> bool:
        if response.status_code == status:
            return True
        with self.ledger.lock:
            self.ledger.errors.append(f"{what}: {response.status_code} {response.text[:300]}")
        return False

    def submit(self) -> str | None:
        definition = self.rng.choice(["count", "fedavg"])
        body = {"definition": definition, "parameters": {"MIN": "3"} if definition == "count" else {}}
        r = self.client.post("/api/trains", headers=ALICE, json=signed(self.client, ALICE, body))
        if not self.expect(r, 201, "submit"):
            return None
        tid = str(r.json()["id"])
        with self.ledger.lock:
            self.ledger.trains.add(tid)
        return tid

    def train(self, tid: str) -> dict[str, Any]:
        r = self.client.get(f"/api/trains/{tid}", headers=OPS)
        assert r.status_code == 200, f"train {tid}: {r.status_code} {r.text}"
        return dict(r.json())

    def step(self, eid: str, sid: str, to: str, who: Any, **extra: Any) -> bool:
        r = self.client.post(f"/api/executions/{eid}/steps", headers=who(sid), json={"to": to, **extra})
        if not self.expect(r, 200, f"step {eid} -> {to}"):
            return False
        with self.ledger.lock:
            self.ledger.steps.append((eid, to))
        return True

    def advance(self, tid: str, *, mischief: float = 0.0) -> str:
        """One step of every active execution of the train (with probability ``mischief``: cancel the train
        or fail an execution instead); returns the train's state before."""
        train = self.train(tid)
        if train["state"] in TERMINAL_TRAIN:
            return str(train["state"])
        active = [e for e in train["executions"] if e["state"] in NEXT]
        if mischief and self.rng.random() < mischief:
            if self.rng.random() < 0.5 or not active:
                r = self.client.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={"reason": "durability"})
                if self.expect(r, 200, f"cancel {tid}"):
                    with self.ledger.lock:
                        self.ledger.cancelled.add(tid)
            else:
                e = self.rng.choice(active)
                self.step(e["id"], e["station"], "failed", station, reason="durability")
            return str(train["state"])
        for e in active:
            to, who = NEXT[e["state"]]
            if to == "output-under-review":
                r = self.client.post(f"/api/executions/{e['id']}/outputs", headers=station(e["station"]),
                                     json={"sha256": "ab" * 32, "byte_size": 42})
                if not self.expect(r, 201, f"output of {e['id']}"):
                    return str(train["state"])
            extra = {"used": [f"{e['station']}-data"]} if to == "running" else {}
            if not self.step(e["id"], e["station"], to, who, **extra):
                break
        return str(train["state"])

    def finish(self, tid: str, max_steps: int = 200) -> str:
        for _ in range(max_steps):
            state = self.advance(tid)
            if state in TERMINAL_TRAIN:
                return state
        return str(self.train(tid)["state"])


def traffic(url: str, ledger: Ledger, seed: int, stop: threading.Event, killed: threading.Event) -> None:
    """One client: keeps a few trains of its own in flight, submitting and advancing them."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=10) as client:
        driver = Driver(client, ledger, rng)
        mine: list[str] = []
        try:
            while not stop.is_set():
                if len(mine) < 3 or rng.random() < 0.25:
                    tid = driver.submit()
                    if tid:
                        mine.append(tid)
                    continue
                tid = rng.choice(mine)
                if driver.advance(tid, mischief=0.04) in TERMINAL_TRAIN:
                    mine.remove(tid)
        except (httpx.TransportError, ClientError, AssertionError) as e:  # ClientError: signing asks the service too
            if not killed.is_set():
                with ledger.lock:
                    ledger.errors.append(f"client failed before the kill: {e!r}")


# --- the invariants -----------------------------------------------------------------------------------


def _local(iri: str, kind: str) -> str:
    return iri.removeprefix(f"{BASE}{kind}/")


def _rows(store: EmbeddedStore, select: str) -> list[dict[str, str | None]]:
    result = store.query(f"PREFIX pht: <{PHT}> PREFIX prov: <http://www.w3.org/ns/prov#> {select}")
    names = [v.value for v in result.variables]  # type: ignore[union-attr]
    return [{n: (None if row[n] is None else row[n].value) for n in names} for row in result]  # type: ignore[union-attr]


def chart_states(chart: Chart, kind: str) -> set[str]:
    return {chart.token(s) for (k, f, t) in chart.transitions if k == kind for s in (f, t)}


def in_time_order(events: list[tuple[Any, ...]], *, start: str | None) -> list[tuple[Any, ...]]:
    """Events (time, from, to, ...) ordered by instant, not by lexical form.

    The store writes "14.178000" as "14.178", which sorts after "14.178958" as text. Events sharing one instant
    are put in chain order (from the state the previous one reached), since the clock may not tell them apart.
    """
    pending = sorted(events, key=lambda ev: datetime.fromisoformat(ev[0]))
    ordered: list[tuple[Any, ...]] = []
    at = start
    while pending:
        first = datetime.fromisoformat(pending[0][0])
        ties = [ev for ev in pending if datetime.fromisoformat(ev[0]) == first]
        chosen = next((ev for ev in ties if ev[1] == at), ties[0])
        pending.remove(chosen)
        ordered.append(chosen)
        at = chosen[2]
    return ordered


def violations(store: EmbeddedStore, *, recovered: bool) -> list[str]:
    """Every broken lifecycle invariant in the store (empty if none).

    ``recovered``: the service has started since the crash, so no train may still be ``submitted``.
    """
    chart = load_chart()
    tok = {iri.value: token for iri, token in chart.token_by_state.items()}
    terminal = {s.value for s in chart.terminal}
    train_states, execution_states = chart_states(chart, "train"), chart_states(chart, "execution")
    g = f"<{CENTRAL_GRAPH.value}>"
    problems: list[str] = []

    trains: dict[str, dict[str, Any]] = {}
    for r in _rows(store, f"""SELECT ?t ?state ?mode ?rounds ?agg (COUNT(DISTINCT ?stop) AS ?stops) WHERE {{ GRAPH {g} {{
            ?t a pht:Train ; pht:definition ?d . OPTIONAL {{ ?t pht:state ?state }}
            ?d pht:mode ?mode ; pht:rounds ?rounds ; pht:routeStop ?stop . OPTIONAL {{ ?d pht:aggregator ?agg }} }} }}
            GROUP BY ?t ?state ?mode ?rounds ?agg"""):
        t = _local(str(r["t"]), "trains")
        if r["state"] is None:
            problems.append(f"train {t} has no state")
            continue
        if t in trains:
            problems.append(f"train {t} has two states: {trains[t]['state']} and {tok.get(str(r['state']))}")
            continue
        trains[t] = {"state": tok.get(str(r["state"]), str(r["state"])), "federated": str(r["mode"]).endswith("Federated"),
                     "rounds": int(str(r["rounds"])), "stops": int(str(r["stops"])), "executions": []}
    for t, info in trains.items():
        if info["state"] not in train_states:
            problems.append(f"train {t} is in {info['state']}, not a state of the train chart")
        if recovered and info["state"] == "submitted":
            problems.append(f"train {t} is still submitted after a restart (recovery should have queued it)")

    executions: dict[str, dict[str, Any]] = {}
    for r in _rows(store, f"""SELECT ?e ?t ?state ?round ?stop ?sid WHERE {{ GRAPH {g} {{
            ?e a pht:Execution . OPTIONAL {{ ?e pht:ofTrain ?t }} OPTIONAL {{ ?e pht:state ?state }}
            OPTIONAL {{ ?e pht:round ?round }} OPTIONAL {{ ?e pht:forStop/pht:stopIndex ?stop }}
            OPTIONAL {{ ?e pht:atStation/<http://purl.org/dc/terms/identifier> ?sid }} }} }}"""):
        e = _local(str(r["e"]), "executions")
        if e in executions:
            problems.append(f"execution {e} has several states, trains, rounds or stops")
            continue
        if r["t"] is None or r["state"] is None or r["round"] is None or r["sid"] is None:
            problems.append(f"execution {e} lacks its train, state, round or station: {r}")
            continue
        state = tok.get(str(r["state"]), str(r["state"]))
        executions[e] = {"state": state, "terminal": r["state"] in terminal, "round": int(str(r["round"])),
                         "stop": None if r["stop"] is None else int(str(r["stop"]))}
        if state not in execution_states:
            problems.append(f"execution {e} is in {state}, not a state of the execution chart")
        t = _local(str(r["t"]), "trains")
        if t not in trains:
            problems.append(f"execution {e} belongs to {t}, which is not a train with a state")
            continue
        trains[t]["executions"].append((e, executions[e]))

    for t, info in trains.items():
        problems += _train_problems(t, info)

    problems += _event_problems(store, chart, trains, executions)
    return problems


def _train_problems(t: str, info: dict[str, Any]) -> list[str]:
    state, execs = info["state"], sorted(info["executions"], key=lambda x: (x[1]["round"], x[1]["stop"] is None,
                                                                            x[1]["stop"] or 0))
    active = [(e, x) for e, x in execs if not x["terminal"]]
    n, rounds = info["stops"], info["rounds"]
    problems = []

    def bad(why: str) -> None:
        problems.append(f"train {t} ({state}, {'federated' if info['federated'] else 'incremental'}): {why}; "
                        f"executions: {[(e.rsplit('.', 1)[-1], x['state']) for e, x in execs]}")

    if state == "submitted":
        if execs:
            bad("a submitted train has executions")
        return problems
    if not execs:
        bad("no execution (the first stop's executions are created with the queueing)")
        return problems
    if state in TERMINAL_TRAIN and active:
        bad("a train in a terminal state has active executions")
    if state == "finished" and any(x["state"] != "released" for _, x in execs):
        bad("a finished train has an execution that was not released")
    if not info["federated"]:
        positions = [(x["round"] - 1) * n + (x["stop"] if x["stop"] is not None else -10**6) for _, x in execs]
        if positions != list(range(len(execs))):
            bad(f"the executions are not the route's first {len(execs)} stops in order")
        if any(x["state"] != "released" for _, x in execs[:-1]):
            bad("an execution before the current stop was not released")
        if state in ("queued", "running"):
            if len(active) != 1 or active[0][0] != execs[-1][0]:
                bad("a queued or running incremental train needs exactly one active execution, at its current stop")
            elif (active[0][1]["state"] == "queued") != (state == "queued"):
                bad("the train is queued exactly when its current execution is")
        if state == "aggregating":
            bad("an incremental train never aggregates")
        if state == "finished" and len(execs) != n * rounds:
            bad(f"a finished train has {len(execs)} executions, not {n * rounds}")
        return problems
    current = max(x["round"] for _, x in execs)
    by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for _, x in execs:
        by_round[x["round"]].append(x)
    for r, xs in by_round.items():
        stops = sorted(x["stop"] for x in xs if x["stop"] is not None)
        aggregations = [x for x in xs if x["stop"] is None]
        if stops != list(range(n)):
            bad(f"round {r} has stop executions {stops}, not one per stop")
        if len(aggregations) > 1:
            bad(f"round {r} has {len(aggregations)} aggregations")
        if aggregations and any(x["state"] != "released" for x in xs if x["stop"] is not None):
            bad(f"round {r} aggregates before every stop released")
        if r < current and (len(aggregations) != 1 or any(x["state"] != "released" for x in xs)):
            bad(f"round {r} is over but was not released and aggregated")
    cur = by_round[current]
    aggregation = [x for x in cur if x["stop"] is None]
    if state in ("queued", "running"):
        if aggregation:
            bad("a queued or running federated train already aggregates its round")
        if not active or any(x["state"] not in ("released",) and x["terminal"] for x in cur):
            bad("a queued or running federated train needs active executions and no failed one")
        if state == "queued" and any(x["state"] != "queued" for x in cur):
            bad("a queued federated train has an execution that started")
        if state == "running" and all(x["state"] == "queued" for x in cur):
            bad("a running federated train has no execution that started")
    if state == "aggregating" and (len(aggregation) != 1 or [x for _, x in active] != aggregation):
        bad("an aggregating train needs exactly one active execution: its round's aggregation")
    if state == "finished" and (current != rounds or len(aggregation) != 1):
        bad(f"a finished federated train ended after round {current} of {rounds}")
    return problems


def _event_problems(store: EmbeddedStore, chart: Chart, trains: dict[str, Any],
                    executions: dict[str, Any]) -> list[str]:
    """Each resource's StateChangeEvents, oldest first, form a chain of chart transitions (each fired in an
    allowed role) from its initial state to the state it is in: so every state change has its event."""
    tok = {iri.value: token for iri, token in chart.token_by_state.items()}
    allowed = {(k, chart.token(f), chart.token(t)): {r.value for r in roles}
               for (k, f, t), roles in chart.transitions.items()}
    g = f"<{CENTRAL_GRAPH.value}>"
    chains: dict[tuple[str, str], list[tuple[str, str | None, str, str | None]]] = defaultdict(list)
    problems = []
    for r in _rows(store, f"""SELECT ?ev ?train ?exec ?from ?to ?time ?role WHERE {{ GRAPH {g} {{
            ?ev a pht:StateChangeEvent . OPTIONAL {{ ?ev pht:aboutTrain ?train }}
            OPTIONAL {{ ?ev pht:aboutExecution ?exec }} OPTIONAL {{ ?ev pht:fromState ?from }}
            OPTIONAL {{ ?ev pht:toState ?to }} OPTIONAL {{ ?ev pht:eventTime ?time }}
            OPTIONAL {{ ?ev pht:actingRole ?role }} }} }}"""):
        if r["train"] is None or r["to"] is None or r["time"] is None or r["role"] is None:
            problems.append(f"event {r['ev']} lacks its train, target state, time or role")
            continue
        key = ("execution", _local(str(r["exec"]), "executions")) if r["exec"] else ("train", _local(str(r["train"]), "trains"))
        frm = None if r["from"] is None else tok.get(str(r["from"]), str(r["from"]))
        chains[key].append((str(r["time"]), frm, tok.get(str(r["to"]), str(r["to"])), r["role"]))
    resources = [("train", t, x["state"]) for t, x in trains.items()]
    resources += [("execution", e, x["state"]) for e, x in executions.items()]
    for kind, rid, state in resources:
        at: str | None = None if kind == "train" else "queued"  # a train starts with its submit event
        events = in_time_order(chains.pop((kind, rid), []), start=at)
        for time_, frm, to, role in events:
            if frm != at:
                problems.append(f"{kind} {rid}: event at {time_} is from {frm}, but the {kind} was {at}")
            elif frm is None and to != "submitted":
                problems.append(f"{kind} {rid}: its first event goes to {to}, not submitted")
            elif frm is not None and role not in allowed.get((kind, frm, to), set()):
                problems.append(f"{kind} {rid}: {frm} -> {to} fired as {role}, which the chart does not allow")
            at = to
        if at != state:
            problems.append(f"{kind} {rid} is {state} but its events end in {at} (a state change without its event)")
    problems += [f"events about {kind} {rid}, which does not exist" for kind, rid in chains]
    return problems


def acknowledged_but_lost(store: EmbeddedStore, ledger: Ledger) -> list[str]:
    """Trains answered 201 and steps answered 200 that the store does not have."""
    g = f"<{CENTRAL_GRAPH.value}>"
    have_trains = {_local(str(r["t"]), "trains") for r in _rows(store, f"SELECT ?t WHERE {{ GRAPH {g} {{ ?t a pht:Train }} }}")}
    tok = {iri.value: token for iri, token in load_chart().token_by_state.items()}
    have_steps = {(_local(str(r["e"]), "executions"), tok.get(str(r["to"]), "")) for r in _rows(store, f"""
        SELECT ?e ?to WHERE {{ GRAPH {g} {{ ?ev pht:aboutExecution ?e ; pht:toState ?to }} }}""")}
    lost = [f"train {t} was acknowledged (201) but is not in the store" for t in sorted(ledger.trains - have_trains)]
    lost += [f"step {e} -> {to} was acknowledged (200) but has no event" for e, to in ledger.steps
             if (e, to) not in have_steps]
    return lost


def check_store(path: Path, ledger: Ledger, *, recovered: bool, context: str) -> int:
    """Open the store directory (the service must not be running) and check it; returns the train count."""
    store = EmbeddedStore(path)
    try:
        problems = acknowledged_but_lost(store, ledger) + violations(store, recovered=recovered)
        assert not problems, f"{context}: {len(problems)} problem(s):\n" + "\n".join(problems[:40])
        report = store.validate_everything()
        assert report.conforms, f"{context}: the store does not conform to the shapes: {report.to_dict()}"
        return len(store.quads(None, None, None, CENTRAL_GRAPH))
    finally:
        store.close()


# --- the test -----------------------------------------------------------------------------------------


def test_sigkill_during_traffic_loses_nothing_acknowledged_and_breaks_no_invariant() -> None:
    seed = int(os.environ.get("PHT_DURABILITY_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    ledger = Ledger()
    with tempfile.TemporaryDirectory(prefix="pht-durability-") as tmp:
        store, log = Path(tmp) / "store", Path(tmp) / "service.log"
        context = f"seed {seed} (PHT_DURABILITY_SEED={seed} replays the delays)"
        with running_service(store, log) as server, httpx.Client(base_url=server.url, timeout=10) as client:
            register(client)
        for round_ in range(1, ROUNDS + 1):
            server = Service(store, log)
            server.start()
            try:
                stop, killed = threading.Event(), threading.Event()
                threads = [threading.Thread(target=traffic, args=(server.url, ledger, rng.randrange(2**32), stop,
                                                                  killed), daemon=True) for _ in range(THREADS)]
                for thread in threads:
                    thread.start()
                time.sleep(rng.uniform(*TRAFFIC_S))
                killed.set()
                server.kill()
            finally:
                stop.set()
                if server.process is not None:
                    server.stop()
            for thread in threads:
                thread.join(timeout=20)
            assert not any(t.is_alive() for t in threads), f"{context}: a client thread hangs"
            where = f"{context}, round {round_}, after the SIGKILL"
            assert not ledger.errors, f"{where}: unexpected answers during the traffic:\n" + "\n".join(ledger.errors[:20])
            assert ledger.trains, f"{where}: no train was submitted before the kill"
            check_store(store, ledger, recovered=False, context=where)

            where = f"{context}, round {round_}, after the restart"
            with running_service(store, log) as server, httpx.Client(base_url=server.url, timeout=10) as client:
                driver = Driver(client, ledger, rng)
                missing = [t for t in sorted(ledger.trains)
                           if client.get(f"/api/trains/{t}", headers=OPS).status_code != 200]
                assert not missing, f"{where}: acknowledged trains not served: {missing[:10]}"
                states = {t: driver.train(t)["state"] for t in sorted(ledger.trains)}
                assert "submitted" not in states.values(), f"{where}: recovery left submitted trains"
                pending = sorted(t for t, s in states.items() if s not in TERMINAL_TRAIN)
                assert pending, f"{where}: every train had ended; nothing to drive on"
                tid = rng.choice(pending)
                assert driver.finish(tid) == "finished", f"{where}: train {tid} could not be driven to finished"
                assert not ledger.errors, f"{where}: unexpected answers:\n" + "\n".join(ledger.errors[:20])
        check_store(store, ledger, recovered=True, context=f"{context}, at the end")


# --- the checker checks -------------------------------------------------------------------------------

G = CENTRAL_GRAPH
STATE = NamedNode(PHT + "state")
XSD_INTEGER = NamedNode("http://www.w3.org/2001/XMLSchema#integer")
RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")


def _pht(name: str) -> NamedNode:
    return NamedNode(PHT + name)


def _tamper(store: EmbeddedStore, delete: list[Quad], insert: list[Quad]) -> None:
    """Write around the lifecycle (and the shapes): what a non-atomic write interrupted by a crash could leave."""
    oxi = store.oxigraph
    for q in delete:
        oxi.remove(q)
    for q in insert:
        oxi.add(q)


def _one_event_of(store: EmbeddedStore, e: NamedNode) -> list[Quad]:
    event = store.quads(None, _pht("aboutExecution"), e, G)[0].subject
    return store.quads(event)


def _second_execution(t: NamedNode, e: NamedNode) -> list[Quad]:
    x = NamedNode(e.value + "-twin")
    return [Quad(x, RDF_TYPE, _pht("Execution"), G), Quad(x, _pht("ofTrain"), t, G), Quad(x, STATE, _pht("Queued"), G),
            Quad(x, _pht("atStation"), NamedNode(f"{BASE}stations/leipzig"), G),
            Quad(x, _pht("round"), Literal("1", datatype=XSD_INTEGER), G)]


TAMPERINGS: dict[str, Callable[[EmbeddedStore, NamedNode, NamedNode], None]] = {
    "nothing": lambda store, t, e: None,
    "a train state changed without its event":
        lambda store, t, e: _tamper(store, [Quad(t, STATE, _pht("Running"), G)], [Quad(t, STATE, _pht("Queued"), G)]),
    "a terminal train with an active execution":
        lambda store, t, e: _tamper(store, [Quad(t, STATE, _pht("Running"), G)], [Quad(t, STATE, _pht("Finished"), G)]),
    "an execution in a state of the train chart only":
        lambda store, t, e: _tamper(store, [Quad(e, STATE, _pht("Approved"), G)],
                                    [Quad(e, STATE, _pht("Aggregating"), G)]),
    "an execution in two states": lambda store, t, e: _tamper(store, [], [Quad(e, STATE, _pht("Pulling"), G)]),
    "a lost event": lambda store, t, e: _tamper(store, _one_event_of(store, e), []),
    "a second active execution of an incremental train":
        lambda store, t, e: _tamper(store, [], _second_execution(t, e)),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_the_invariants_catch_impossible_states(tampering: str) -> None:
    """``violations`` finds nothing in a store the service wrote, and something in each tampered one."""
    store = EmbeddedStore()
    store.load_vocabulary()  # not empty: api_helpers.service replaces an empty (falsy) store by a new one
    with service(store) as client:
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}}))
        tid = r.json()["id"]
        eid = f"{tid}.r1-s0"
        for to, who in (("waiting-for-approval", station), ("approved", admin)):
            r = client.post(f"/api/executions/{eid}/steps", headers=who("aachen"), json={"to": to})
            assert r.status_code == 200, r.text
        TAMPERINGS[tampering](store, NamedNode(f"{BASE}trains/{tid}"), NamedNode(f"{BASE}executions/{eid}"))
        found = violations(store, recovered=True)
    if tampering == "nothing":
        assert found == []
    else:
        assert found, f"the invariants missed: {tampering}"

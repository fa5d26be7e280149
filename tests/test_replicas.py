"""Two replicas of the central service on one REAL Oxigraph server, as real processes (``python -m orchestrator``).

What must hold when the central tier is replicated (docs/architecture.md, "Replicas"):

* a guarded write is a compare-and-set across processes: the same lifecycle step sent to both replicas at once
  has exactly one winner (200) and one loser (409), and the graph records one transition. Oxigraph server does not
  serialise guarded updates by itself (the control below shows several winners without the store's write lock);
* the station watchdog runs in one replica at a time (a ``pht:ServiceTaskLease``), and another replica takes over
  when its holder is killed;
* a step made through one replica shows at once in the other's REST reads and in its web page's live stream;
* ``kill -9`` of a replica mid-traffic loses no write it acknowledged, leaves no half-written change set (the
  whole graph validates), and the other replica keeps serving.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import servers
from api_helpers import ALICE, OPS, admin, register_world, signed, station
from conftest import Closing, require_component
from pyoxigraph import Literal, NamedNode, Quad

from client import ClientError
from graph_store import ChangeSet, ConflictError, EmbeddedStore, RemoteStore
from graph_store._write_lock import LOCK_GRAPH

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.real_component("oxigraph")
LOCK_TTL_S = 3.0


@dataclass
class Replica:
    """One ``python -m orchestrator`` process and an HTTP client for it."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_replica(ox: servers.OxigraphServer, folder: Path, name: str, **settings: str) -> Replica:
    """The central service as its own process on ``ox``, returned once ``/health`` answers."""
    port = servers.free_port()
    env = dict(os.environ, PHT_STORE_QUERY_URL=ox.query_url, PHT_STORE_UPDATE_URL=ox.update_url,
               PHT_PORT=str(port), PHT_DEMO="1", PHT_JWT_SECRET=_demo_secret(), PHT_QUERY_WORKERS="2",
               PHT_QUERY_PER_PRINCIPAL="1", PHT_STORE_LOCK_TTL_S=str(LOCK_TTL_S), PYTHONPATH=str(ROOT), **settings)
    env.pop("PHT_STORE_PATH", None)
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return Replica(proc, url, log)
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"replica {name} did not start:\n{log.read_text()[-3000:]}")


def _demo_secret() -> str:
    from orchestrator.settings import DEMO_SECRET
    return DEMO_SECRET


@contextlib.contextmanager
def two_replicas(ox: servers.OxigraphServer, **settings: str) -> Iterator[tuple[Replica, Replica]]:
    with tempfile.TemporaryDirectory(prefix="pht-replicas-") as tmp:
        a = start_replica(ox, Path(tmp), "a", **settings)
        try:
            b = start_replica(ox, Path(tmp), "b", **settings)
        except BaseException:
            a.stop()
            raise
        try:
            yield a, b
        finally:
            a.stop()
            b.stop()


def submit(replica: Replica, definition: str = "count") -> str:
    body = {"definition": definition, "parameters": {"MIN": "5"} if definition == "count" else {}}
    r = replica.client.post("/api/trains", headers=ALICE, json=signed(replica.client, ALICE, body))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def events_to(replica: Replica, tid: str, eid: str, to: str) -> list[dict[str, str]]:
    r = replica.client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500})
    assert r.status_code == 200, r.text
    return [e for e in r.json()["items"] if e["execution"] == eid and e["to_state"] == to]


@pytest.fixture(scope="module")
def ox() -> Iterator[servers.OxigraphServer]:
    """An Oxigraph server of this module's own (the replicas' data must not meet other tests')."""
    require_component("oxigraph")
    with servers.oxigraph_server() as server:
        yield server


@pytest.fixture(scope="module")
def pair(ox: servers.OxigraphServer) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B on one Oxigraph server, with the api_helpers world registered through A."""
    with two_replicas(ox) as (a, b):
        register_world(a.client)
        yield a, b


# -- the store: compare-and-set across processes ----------------------------------------------------------------


class _SlowCommit(RemoteStore):
    """A RemoteStore that pauses between checking a guard and committing, as a busy process may: the window in
    which another process's write can slip in is then wide open."""

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        time.sleep(0.05)
        super()._commit(change, sizes)


class _TogetherCommit(RemoteStore):
    """A RemoteStore whose racing commits leave together (all guards checked, then all updates sent at once)."""

    barrier: threading.Barrier

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        if change.guard:  # the racing step, not the set-up
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(timeout=2)
        super()._commit(change, sizes)


def _race(stores: list[RemoteStore], subject: NamedNode) -> tuple[int, int]:
    """Each store applies the same guarded step at once; (winners, events recorded)."""
    g = NamedNode("https://w3id.org/pht-kg/graph/test-replicas")
    state, event = NamedNode("urn:test:state"), NamedNode("urn:test:event")
    before = Quad(subject, state, Literal("a"), g)
    stores[0].apply(ChangeSet(insert=[before]))
    barrier, wins = threading.Barrier(len(stores)), []

    def step(k: int) -> None:
        barrier.wait()
        try:
            stores[k].apply(ChangeSet(delete=[before], guard=[before], insert=[
                Quad(subject, state, Literal("b"), g), Quad(subject, event, Literal(f"by {k}"), g)]))
            wins.append(k)
        except ConflictError:
            pass

    threads = [threading.Thread(target=step, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(wins), len(stores[0].quads(subject, event, None, g))


def test_guarded_writes_of_separate_store_objects_have_exactly_one_winner(
        ox: servers.OxigraphServer, closing: Closing) -> None:
    unlocked = [closing(_TogetherCommit(ox.query_url, ox.update_url, write_lock_ttl_s=None)) for _ in range(8)]
    unlocked[0].load_vocabulary()
    races = several = 0
    while races < 100 and not several:  # a few per cent of the races have several winners: up to 100 of them
        _TogetherCommit.barrier = threading.Barrier(8)
        several += _race(unlocked, NamedNode(f"urn:test:unlocked:{races}")) != (1, 1)
        races += 1
    assert several, "control: without the write lock Oxigraph server lets several guarded updates apply"
    locked = [closing(_SlowCommit(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S)) for _ in range(6)]
    outcomes = [_race(locked, NamedNode(f"urn:test:locked:{i}")) for i in range(10)]
    assert outcomes == [(1, 1)] * 10
    time.sleep(0.3)  # a claim is kept 50 ms (linger_s) for its process's next write
    assert not locked[0].quads(g=NamedNode("https://w3id.org/pht-kg/graph/write-lock")), "every claim withdrawn"


def test_a_writer_killed_holding_the_lock_delays_the_others_by_its_ttl_only(
        ox: servers.OxigraphServer) -> None:
    """A claim left by a dead writer (written here as a killed process leaves it) stops counting after the TTL."""
    store = RemoteStore(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S)
    store._update("INSERT { GRAPH <https://w3id.org/pht-kg/graph/write-lock> { "  # noqa: SLF001
                  "<https://w3id.org/pht-kg/graph/write-lock#claim-0dead> "
                  "<https://w3id.org/pht-kg/vocab#claimedAt> ?now } } WHERE { BIND(NOW() AS ?now) }")
    g = NamedNode("https://w3id.org/pht-kg/graph/test-replicas")
    started = time.monotonic()
    store.apply(ChangeSet(insert=[Quad(NamedNode("urn:test:after-dead"), NamedNode("urn:test:p"), Literal("x"), g)]))
    waited = time.monotonic() - started
    assert LOCK_TTL_S * 0.5 < waited < LOCK_TTL_S + 3, waited
    claims = {q.subject.value for q in store.quads(g=NamedNode("https://w3id.org/pht-kg/graph/write-lock"))}
    assert "https://w3id.org/pht-kg/graph/write-lock#claim-0dead" not in claims, "the dead claim was removed"
    store.close()  # its own claim, kept for a next write, is withdrawn
    assert not store.quads(g=NamedNode("https://w3id.org/pht-kg/graph/write-lock"))


class _CountingLock(RemoteStore):
    """A RemoteStore that counts its requests about the write lock (the claims' graph)."""

    lock_requests = 0

    def _update(self, text: str) -> None:
        self.lock_requests += "graph/write-lock>" in text and "claim" in text and "INSERT {" in text[:20]
        super()._update(text)


def test_writes_back_to_back_keep_one_claim_and_another_store_still_gets_its_turn(
        ox: servers.OxigraphServer) -> None:
    """A claim is kept 50 ms after a write: this process's next write sends no claim; once the writes stop it
    is withdrawn, and a writer of another store (another process) that waited meanwhile has written."""
    g = NamedNode("https://w3id.org/pht-kg/graph/test-replicas")
    p = NamedNode("urn:test:p")
    busy = _CountingLock(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S)
    other = RemoteStore(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S)
    busy.apply(ChangeSet(insert=[Quad(NamedNode("urn:test:kept:0"), p, Literal("0"), g)]))
    assert busy.lock_requests == 1
    for i in range(1, 6):
        busy.apply(ChangeSet(insert=[Quad(NamedNode(f"urn:test:kept:{i}"), p, Literal(str(i)), g)]))
    assert busy.lock_requests == 1, "the writes back to back used the kept claim"
    waited: list[float] = []
    thread = threading.Thread(target=lambda: (other.apply(ChangeSet(insert=[
        Quad(NamedNode("urn:test:kept:other"), p, Literal("o"), g)])), waited.append(time.monotonic())))
    started = time.monotonic()
    thread.start()
    while thread.is_alive() and time.monotonic() - started < 3:  # busy keeps writing for at most 3 s
        busy.apply(ChangeSet(insert=[Quad(NamedNode("urn:test:kept:busy"), p, Literal(str(time.monotonic())), g)]))
    thread.join(timeout=30)
    assert waited and waited[0] - started < 3, "the other store got the lock while this one kept writing"
    assert busy.lock_requests > 1, "the kept claim was withdrawn after keep_s and claimed anew"
    time.sleep(0.3)
    assert not busy.quads(g=NamedNode("https://w3id.org/pht-kg/graph/write-lock")), "withdrawn after linger_s"
    busy.close()
    other.close()


class _LongWrite(RemoteStore):
    """A RemoteStore whose write takes twice its lock's TTL between validation and commit (a large update)."""

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        time.sleep(2.0)
        super()._commit(change, sizes)


def test_a_write_longer_than_the_ttl_keeps_the_lock_and_the_others_wait(ox: servers.OxigraphServer,
                                                                        closing: Closing) -> None:
    g = NamedNode("https://w3id.org/pht-kg/graph/test-replicas")
    p = NamedNode("urn:test:p")
    long = closing(_LongWrite(ox.query_url, ox.update_url, write_lock_ttl_s=1.0))
    other = closing(RemoteStore(ox.query_url, ox.update_url, write_lock_ttl_s=1.0))
    ended: dict[str, float] = {}

    def write(store: RemoteStore, name: str) -> None:
        store.apply(ChangeSet(insert=[Quad(NamedNode(f"urn:test:long:{name}"), p, Literal(name), g)]))
        ended[name] = time.monotonic()

    first = threading.Thread(target=write, args=(long, "long"))
    first.start()
    time.sleep(0.5)  # the long write holds the lock by now
    write(other, "short")
    first.join()
    assert set(ended) == {"long", "short"}, "the long write renewed its claim and committed"
    assert ended["short"] >= ended["long"] - 0.05, "the other writer waited for the long write to end"


def test_no_caller_writes_the_write_lock_graph_and_a_forged_claim_does_not_block_writes(
        pair: tuple[Replica, Replica], ox: servers.OxigraphServer, closing: Closing) -> None:
    """An operator's SPARQL Update or Graph Store Protocol write naming the claims' graph is refused; a claim
    stamped far in the future (written past the platform, on the server itself) does not lock everyone out."""
    a, _ = pair
    lock = "https://w3id.org/pht-kg/graph/write-lock"
    forged = (f"INSERT DATA {{ GRAPH <{lock}> {{ <{lock}#claim-0> <https://w3id.org/pht-kg/vocab#claimedAt> "
              '"2999-01-01T00:00:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime> } }')
    r = a.client.post("/sparql", data={"update": forged}, headers=OPS)
    assert r.status_code in (400, 403) and "belongs to the store" in r.json()["detail"], r.text
    r = a.client.put("/rdf-graphs", params={"graph": lock}, headers={**OPS, "Content-Type": "text/turtle"},
                     content=b"<urn:a> <urn:b> <urn:c> .")
    assert r.status_code in (400, 403), r.text
    store = closing(RemoteStore(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S))
    # nothing of the refused writes (a replica's own claim, kept 50 ms after its write, may be there)
    subjects = {q.subject.value for q in store.quads(g=NamedNode(lock))}
    assert all(s.startswith(f"{lock}#claim-") for s in subjects) and f"{lock}#claim-0" not in subjects, subjects
    store._update(forged)  # noqa: SLF001
    started = time.monotonic()
    submit(a)
    assert time.monotonic() - started < LOCK_TTL_S, "a claim from the future is not a live claim"
    assert f"{lock}#claim-0" not in {q.subject.value for q in store.quads(g=NamedNode(lock))}, "and it was removed"


# -- two service replicas -----------------------------------------------------------------------------------


def test_the_same_step_sent_to_both_replicas_has_exactly_one_winner(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    races = []
    for i in range(10):
        tid = submit(a if i % 2 else b)
        races.append((tid, f"{tid}.r1-s0"))
    outcomes = []
    for n, (tid, eid) in enumerate(races):
        # even races: both replicas get the same approval; odd ones: one approves, the other rejects
        bodies = [{"to": "approved"}, {"to": "approved" if n % 2 == 0 else "rejected", "reason": "no"}]
        barrier, codes = threading.Barrier(2), [0, 0]

        def send(k: int, tid: str = tid, eid: str = eid, bodies: list = bodies, barrier: threading.Barrier = barrier,
                 codes: list = codes) -> None:  # type: ignore[type-arg]
            replica = (a, b)[k]
            barrier.wait()
            codes[k] = replica.client.post(f"/api/executions/{eid}/steps", headers=station("aachen"),
                                           json=bodies[k]).status_code

        threads = [threading.Thread(target=send, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [200, 409], (n, codes, events_to(a, tid, eid, "approved"), events_to(a, tid, eid, "rejected"))
        winner = bodies[codes.index(200)]["to"]
        state = b.client.get(f"/api/trains/{tid}", headers=ALICE).json()["executions"][0]["state"]
        assert state == winner
        recorded = events_to(a, tid, eid, "approved") + events_to(a, tid, eid, "rejected")
        assert len(recorded) == 1, recorded
        outcomes.append(winner)
    assert "approved" in outcomes


def test_a_step_decided_on_states_another_replica_changed_is_decided_again_on_the_stores(
        pair: tuple[Replica, Replica]) -> None:
    """A replica decides a step on the states it last read or committed, without reading them (a round trip of a
    step's four): when another replica has moved them since, the step is refused by what it knew, or its
    commit's guard finds them changed, and it is decided again on what the store holds."""
    a, b = pair
    tid = submit(a)
    eid = f"{tid}.r1-s0"

    def step(replica: Replica, to: str, headers: dict[str, str] = station("aachen")) -> httpx.Response:
        return replica.client.post(f"/api/executions/{eid}/steps", headers=headers, json={"to": to})

    def state(resource: str = "execution") -> str:
        train = b.client.get(f"/api/trains/{tid}", headers=ALICE).json()
        return str(train["executions"][0]["state"] if resource == "execution" else train["state"])

    assert step(a, "approved").status_code == 200  # A knows: approved (and its train running)
    assert step(b, "pulling").status_code == 200
    r = step(a, "running")  # approved -> running is not in the chart, pulling -> running is
    assert r.status_code == 200, r.text
    assert step(b, "output-under-review").status_code == 200
    r = step(a, "output-under-review")  # running -> output-under-review is: its commit's guard finds it moved
    assert r.status_code == 409 and "is output-under-review" in r.text, r.text
    assert len(events_to(a, tid, eid, "output-under-review")) == 1

    # the train's state counts too: an operator puts a train back in the queue through B, and A, which knew it
    # running, approves a new train's execution: the train runs again (the step A's knowledge would have left out)
    tid = submit(a)
    eid = f"{tid}.r1-s0"
    assert step(a, "waiting-for-approval").status_code == 200 and state("train") == "running"
    train_iri = b.client.get(f"/api/trains/{tid}", headers=ALICE).json()["iri"]
    requeue = (f"PREFIX pht: <https://w3id.org/pht-kg/vocab#> WITH <https://w3id.org/pht-kg/graph/central> "
               f"DELETE {{ <{train_iri}> pht:state pht:Running }} INSERT {{ <{train_iri}> pht:state pht:Queued }} "
               f"WHERE {{ <{train_iri}> pht:state pht:Running }}")
    r = b.client.post("/sparql", data={"update": requeue}, headers=OPS)
    assert r.status_code in (200, 204), r.text
    assert state("train") == "queued"
    r = step(a, "approved", admin("aachen"))
    assert r.status_code == 200, r.text
    assert (state(), state("train")) == ("approved", "running")


def test_a_step_through_one_replica_reaches_the_other_replicas_reads_and_live_stream(
        pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    tid = submit(a)
    eid = f"{tid}.r1-s0"
    seen: list[dict] = []  # type: ignore[type-arg]
    opened = threading.Event()

    def listen() -> None:
        with b.client.stream("GET", f"/ui/trains/{tid}/events/stream", headers=ALICE, timeout=30) as r:
            assert r.status_code == 200
            kind = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind in ("snapshot", "event"):
                    data = json.loads(line.removeprefix("data: "))
                    seen.append({"kind": kind, **data})
                    opened.set()
                    if kind == "event" and data.get("to_state") == "pulling":
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert opened.wait(20), "the stream of replica B sent no snapshot"
    for to in ("approved", "pulling"):
        r = a.client.post(f"/api/executions/{eid}/steps", headers=station("aachen"), json={"to": to})
        assert r.status_code == 200, r.text
        train = b.client.get(f"/api/trains/{tid}", headers=ALICE).json()  # at once: no cache between replicas
        assert train["executions"][0]["state"] == to, train
    listener.join(20)
    assert not listener.is_alive(), f"replica B's live stream never showed the step made through A: {seen}"
    assert [e["to_state"] for e in seen if e["kind"] == "event" and e["execution"] == eid][-2:] == \
        ["approved", "pulling"]


def test_kill_9_of_a_replica_mid_traffic_loses_nothing_and_the_other_keeps_serving(
        pair: tuple[Replica, Replica], ox: servers.OxigraphServer) -> None:
    a, b = pair
    acknowledged: list[tuple[str, str, str]] = []  # (replica, train, state it answered 2xx for)
    after_kill: list[str] = []
    killed, stop = threading.Event(), threading.Event()
    errors: list[str] = []
    lock = threading.Lock()

    def drive(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            order = [a, b] if rng.random() < 0.5 else [b, a]
            tid = None
            for replica in order:  # a client retries on the other replica when one does not answer
                try:
                    tid = submit(replica)
                    with lock:
                        acknowledged.append((replica.url, tid, "queued"))
                        if killed.is_set():
                            after_kill.append(tid)
                    break
                except (httpx.HTTPError, AssertionError, ClientError):  # B was killed: on to A
                    continue
            if tid is None:
                continue
            eid = f"{tid}.r1-s0"
            for to in ("approved", "pulling", "running"):
                for replica in order:
                    try:
                        r = replica.client.post(f"/api/executions/{eid}/steps", headers=station("aachen"),
                                                json={"to": to})
                    except httpx.HTTPError:
                        continue  # killed: try the other one
                    if r.status_code == 200:
                        with lock:
                            acknowledged.append((replica.url, eid, to))
                        break
                    if r.status_code == 409:  # the killed replica may have committed it before dying
                        break
                    with lock:
                        errors.append(f"{to} via {replica.url}: {r.status_code} {r.text}")
                    break

    drivers = [threading.Thread(target=drive, args=(k,)) for k in range(3)]
    for t in drivers:
        t.start()
    time.sleep(4)
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    killed.set()
    time.sleep(LOCK_TTL_S + 4)
    stop.set()
    for t in drivers:
        t.join(60)
    assert not errors, errors
    by_b = [x for x in acknowledged if x[0] == b.url]
    assert by_b, "replica B answered nothing before it was killed"
    assert len(after_kill) >= 3, f"replica A served {len(after_kill)} submissions after B was killed"
    for _, resource, state in acknowledged:  # every acknowledged write is in the graph, read through A
        if state == "queued":
            r = a.client.get(f"/api/trains/{resource}", headers=ALICE)
            assert r.status_code == 200, (resource, r.text)
        else:
            tid = resource.rsplit(".", 1)[0]
            assert events_to(a, tid, resource, state), (resource, state)
    copy = EmbeddedStore()  # the whole graph as the server holds it, validated node by node
    with RemoteStore(ox.query_url, ox.update_url) as server:
        copy.oxigraph.extend(server.quads())
    report = copy.validate_everything()
    assert report.conforms, report.text()
    assert a.client.get("/api/trains", headers=OPS).status_code == 200


# -- the watchdog: one replica at a time --------------------------------------------------------------------


def _stale_execution(replica: Replica) -> tuple[str, str]:
    """A train whose first execution its station took to ``pulling`` and then left."""
    tid = submit(replica)
    eid = f"{tid}.r1-s0"
    for to in ("approved", "pulling"):
        r = replica.client.post(f"/api/executions/{eid}/steps", headers=station("aachen"), json={"to": to})
        assert r.status_code == 200, r.text
    return tid, eid


def _failed(replica: Replica, tid: str, eid: str, within_s: float) -> list[dict[str, str]]:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if replica.client.get(f"/api/trains/{tid}", headers=ALICE).json()["state"] == "failed":
            time.sleep(1.0)  # a second watchdog would fail it within a round or two: give it the chance
            return events_to(replica, tid, eid, "failed")
        time.sleep(0.2)
    raise AssertionError(f"train {tid} was not failed within {within_s} s")


def _lease_holder(store: RemoteStore) -> str:
    rows = [(r["task"].value, r["holder"].value) for r in store.run_query("service_task_leases")]  # type: ignore[union-attr]
    assert [task for task, _ in rows] == ["station-watchdog"], rows
    return rows[0][1]


def test_one_replica_runs_the_watchdog_and_another_takes_over_when_it_is_killed(closing: Closing) -> None:
    require_component("oxigraph")
    with servers.oxigraph_server() as ox:
        store = closing(RemoteStore(ox.query_url, ox.update_url))
        with two_replicas(ox, PHT_STATION_TIMEOUT_S="1") as (a, b):
            register_world(a.client)
            tid, eid = _stale_execution(a)
            failures = _failed(b, tid, eid, 20)
            assert len(failures) == 1, failures
            assert "station aachen" in failures[0]["reason"]
            holder = _lease_holder(store)
            first, second = (a, b) if f"pid {a.proc.pid} " in holder else (b, a)
            assert f"pid {first.proc.pid} " in holder, holder
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait()
            tid, eid = _stale_execution(second)
            failures = _failed(second, tid, eid, 30)
            assert len(failures) == 1, failures
            assert f"pid {second.proc.pid} " in _lease_holder(store)
            logs = first.log.read_text() + second.log.read_text()
            assert "Traceback" not in logs, logs[-3000:]


def test_the_lock_ttl_setting_is_checked_and_0_turns_the_lock_off() -> None:
    from orchestrator.app import open_store
    from orchestrator.settings import Settings, SettingsError
    env = {"PHT_STORE_QUERY_URL": "http://127.0.0.1:9/query", "PHT_JWT_SECRET": "x" * 40}
    for bad in ("0.5", "301", "-1"):
        with pytest.raises(SettingsError, match="PHT_STORE_LOCK_TTL_S"):
            Settings.from_env({**env, "PHT_STORE_LOCK_TTL_S": bad})
    assert open_store(Settings.from_env({**env, "PHT_STORE_LOCK_TTL_S": "0"}))._lock is None  # type: ignore[attr-defined]  # noqa: SLF001
    locked = open_store(Settings.from_env(env))
    assert locked._lock is not None and locked._lock.ttl_s == 10.0  # type: ignore[attr-defined]  # noqa: SLF001


_OTHER_WRITER = """
import sys
from pyoxigraph import Literal, NamedNode, Quad
from graph_store import ChangeSet, RemoteStore
query_url, update_url, subject = sys.argv[1:4]
g, state, s = NamedNode("https://w3id.org/pht-kg/graph/test-replicas"), NamedNode("urn:test:state"), NamedNode(subject)
with RemoteStore(query_url, update_url, write_lock_ttl_s=3.0) as store:
    before = Quad(s, state, Literal("a"), g)
    store.apply(ChangeSet(delete=[before], guard=[before], insert=[
        Quad(s, state, Literal("c"), g), Quad(NamedNode("urn:test:referrer"), NamedNode("urn:test:points"), s, g)]))
"""


def test_a_write_of_another_process_between_two_writes_is_seen_by_the_second(ox: servers.OxigraphServer) -> None:
    """What a write reads under the write lock (its guard's existence, the quads its validation needs, the quads
    pointing at the nodes it types) answers that write only: another process's write between two writes of one
    store makes the second's guard fail, and its reads show the other's write."""
    g, state = NamedNode("https://w3id.org/pht-kg/graph/test-replicas"), NamedNode("urn:test:state")
    subject = NamedNode(f"urn:test:between:{time.time_ns()}")
    before = Quad(subject, state, Literal("a"), g)
    with RemoteStore(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S) as store:
        store.load_vocabulary()
        store.apply(ChangeSet(insert=[before]))
        step = ChangeSet(delete=[before], guard=[before], insert=[Quad(subject, state, Literal("b"), g)])
        with store._exclusive():  # noqa: SLF001  # the first write's hold: read ahead, then left without a commit
            store._read_ahead(step)  # noqa: SLF001
            assert store.existing([before]) == {before}
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, ox.query_url, ox.update_url, subject.value],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=60)
        with pytest.raises(ConflictError):
            store.apply(step)
        typing = ChangeSet(insert=[Quad(subject, NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type"),
                                        NamedNode("urn:test:Thing"), g)])
        with store._exclusive():  # noqa: SLF001
            store._read_ahead(typing)  # noqa: SLF001
            assert store.existing([before]) == frozenset(), "the other process's write is seen"
            own, pointing = store._prefetched(typing, frozenset([g]))  # noqa: SLF001
        assert {q.object for q in own[subject]} == {Literal("c")}
        assert {q.subject for q in pointing[subject]} == {NamedNode("urn:test:referrer")}
        assert {q.object for q in store.quads(subject, state, None, g)} == {Literal("c")}, "the guard refused 'b'"


class _ClaimRemovedBeforeCommit(RemoteStore):
    """A writer that stalled past its checks: before its commit arrives, another writer removed its claim as
    expired (as ``ServerWriteLock._acquire`` removes claims past their ttl)."""

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        self._update(f"DELETE WHERE {{ GRAPH {LOCK_GRAPH} {{ ?claim ?p ?o }} }}")  # every claim: ours is gone
        super()._commit(change, sizes)


@pytest.mark.parametrize("checks_itself", [True, False], ids=["commit-checks-itself", "asked-afterwards"])
def test_a_writer_whose_claim_was_removed_writes_nothing_and_reports_a_conflict(
        ox: servers.OxigraphServer, checks_itself: bool) -> None:
    """The commit's fence requires the writer's claim: a writer fenced out writes nothing, and is told so, both
    when the commit request says whether its guard held (Oxigraph server) and when a confirmation asks
    afterwards (the path of a server that cannot, as Virtuoso)."""
    g, state = NamedNode("https://w3id.org/pht-kg/graph/test-replicas"), NamedNode("urn:test:state")
    subject = NamedNode(f"urn:test:fenced:{time.time_ns()}")
    before = Quad(subject, state, Literal("a"), g)
    with _ClaimRemovedBeforeCommit(ox.query_url, ox.update_url, write_lock_ttl_s=LOCK_TTL_S) as store:
        store.load_vocabulary()
        store.apply(ChangeSet(insert=[before]))  # unguarded: no confirmation to make
        assert store._commit_checks_itself() is True  # noqa: SLF001  # Oxigraph server passes the probe
        store._checks_itself = checks_itself  # noqa: SLF001
        step = ChangeSet(delete=[before], guard=[before], insert=[Quad(subject, state, Literal("b"), g)])
        with pytest.raises(ConflictError):
            store.apply(step)
        assert {q.object for q in store.quads(subject, state, None, g)} == {Literal("a")}, "nothing was written"

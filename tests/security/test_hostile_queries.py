"""Hostile queries: no query or update a caller sends can crash the service or starve other callers.

The attacker holds any valid token. On the code before the query workers, the deep query below killed the test
process itself (pyoxigraph's parser overflows its stack, exit 139), and four abandoned cross products left
every later query answering 503. Here the app is the /sparql router over the scenario store, under uvicorn
(a real server: concurrent clients) with short deadlines; callers are told apart by ``X-Test-Subject``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import servers
from api_helpers import ALICE, service
from conftest import Closing
from fastapi import FastAPI, HTTPException, Request
from pyoxigraph import Literal, NamedNode, Quad
from test_sparql_protocol import AACHEN, HEAVY, RDFS_LABEL, SETTINGS, STATIONS, scenario_store, serve

from graph_store import CENTRAL_GRAPH, ChangeSet, EmbeddedStore, GraphStore, RemoteStore, station_graph
from orchestrator import query_workers
from orchestrator.naming import Iris
from orchestrator.principal import Principal, Role
from orchestrator.query_runner import QUEUE_DEPTH
from orchestrator.query_text import MAX_NESTING, MAX_OPERATORS
from orchestrator.readable_graph import ReadableGraphs
from orchestrator.settings import Settings, SettingsError
from orchestrator.sparql_protocol import sparql_router

DEEP = {
    "braces": "ASK " + "{" * 2500 + "}" * 2500,
    "parentheses": "ASK { FILTER(" + "(" * 2500 + "true" + ")" * 2500 + ") }",
    "brackets": "ASK { " + "[ <http://x/p> " * 2500 + "]" * 2500 + " }",
    "path": "ASK { ?s " + "(" * 2500 + "<http://x/p>" + ")" * 2500 + " ?o }",
    "subqueries": "SELECT * WHERE " + "{ SELECT * WHERE " * 1000 + "{}" + "}" * 1000,
    "plus chain": "ASK { FILTER(" + "+".join(["1"] * 20_000) + " = 1) }",
    "union chain": "ASK { " + " UNION ".join(["{}"] * 20_000) + " }",
    "optional chain": "ASK { " + " ".join(["OPTIONAL {}"] * 20_000) + " }",
}
"""Each kills pyoxigraph 0.5.13 (the chains too: a left-deep tree of 10,000 operators overflows the stack)."""
DEEP_UPDATES = {
    "insert data": "INSERT DATA { GRAPH <http://x/g> " + "{" * 2500 + "}" * 2500 + " }",
    "where": "DELETE WHERE { " + " UNION ".join(["{}"] * 20_000) + " }",
}
ROLES = {
    "operator": {"X-Test-Role": "operator"},
    "researcher": {"X-Test-Role": "researcher"},
    "station-admin": {"X-Test-Role": "station-admin", "X-Test-Station": "aachen"},
    "station": {"X-Test-Role": "station", "X-Test-Station": "aachen"},
}
POINT = "SELECT ?id WHERE { <https://pht.example.org/id/station-aachen> ?p ?id } LIMIT 1"


def principal(request: Request) -> Principal:
    roles = request.headers.get("X-Test-Role")
    if not roles:
        raise HTTPException(401, "no X-Test-Role header")
    return Principal(subject=request.headers.get("X-Test-Subject", "tester"),
                     roles=frozenset(Role(r) for r in roles.split(",")), station=request.headers.get("X-Test-Station"))


def app_over(store: GraphStore, **settings: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(sparql_router(store=store, principal=principal, settings=replace(SETTINGS, **settings),
                                     readable=ReadableGraphs(store, Iris(SETTINGS.base_iri))))
    return app


def workers() -> dict[int, multiprocessing.process.BaseProcess]:
    """This process's live query workers by pid (forkserver children are still listed as ours)."""
    return {p.pid: p for p in multiprocessing.active_children() if p.name == "pht-query-worker" and p.pid}


def gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (reaped, or a zombie that uses no CPU)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_for_workers(n: int, timeout: float = 10) -> dict[int, multiprocessing.process.BaseProcess]:
    deadline = time.monotonic() + timeout
    while len(found := workers()) < n:
        assert time.monotonic() < deadline, f"only {len(found)} of {n} query workers running"
        time.sleep(0.02)
    return found


def get(url: str, query: str, who: str = "tester", role: str = "operator", timeout: float = 30) -> httpx.Response:
    return httpx.get(url, params={"query": query}, headers={**ROLES[role], "X-Test-Subject": who}, timeout=timeout)


@pytest.fixture(scope="module")
def store() -> Iterator[EmbeddedStore]:
    s = scenario_store()
    yield s
    s.close()


@pytest.fixture(scope="module")
def url(store: EmbeddedStore) -> Iterator[str]:
    with serve(app_over(store, query_timeout_s=1.0, query_workers=6, query_per_principal=2, query_queue_s=0.2)) as u:
        wait_for_workers(6)
        yield u


# -- crash -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("shape", DEEP)
def test_a_deep_query_is_refused_with_400_and_the_service_keeps_answering(url: str, role: str, shape: str) -> None:
    before = set(workers())
    headers = {**ROLES[role], "X-Test-Subject": f"attacker-{role}"}
    answers = [
        httpx.post(url, data={"query": DEEP[shape]}, headers=headers, timeout=30),
        httpx.post(url, content=DEEP[shape], headers={**headers, "Content-Type": "application/sparql-query"},
                   timeout=30),
    ]
    if len(DEEP[shape]) < 20_000:  # longer ones do not fit a URL
        answers.append(httpx.get(url, params={"query": DEEP[shape]}, headers=headers, timeout=30))
    for r in answers:
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert f"at most {MAX_NESTING}" in detail or f"at most {MAX_OPERATORS}" in detail, detail
    assert set(workers()) == before, "a worker was lost: the text reached a parser"
    assert get(url, "ASK {}", role=role).status_code == 200


@pytest.mark.parametrize("shape", DEEP_UPDATES)
def test_a_deep_update_is_refused_with_400(url: str, store: EmbeddedStore, shape: str) -> None:
    size = len(store)
    for role in ROLES:
        r = httpx.post(url, data={"update": DEEP_UPDATES[shape]}, headers=ROLES[role], timeout=30)
        assert r.status_code == (400 if role == "operator" else 403), r.text
    assert len(store) == size
    assert get(url, "ASK {}").status_code == 200


def test_the_bounds_leave_ordinary_large_queries_alone(url: str) -> None:
    nested = "ASK " + "{" * 30 + "}" * 30
    filters = "SELECT * WHERE { ?s ?p ?o FILTER(" + " || ".join(f"?o = {i}" for i in range(300)) + ") } LIMIT 1"
    for query in (nested, filters, STATIONS):
        assert get(url, query).status_code == 200


def test_a_worker_that_dies_mid_query_fails_only_that_query_and_is_replaced(url: str) -> None:
    running = wait_for_workers(6)
    for pid in running:
        _cpu_ticks(pid)  # the baseline
    out: dict[str, httpx.Response] = {}
    heavy = threading.Thread(target=lambda: out.setdefault("heavy", get(url, HEAVY, "victim-of-crash")))
    heavy.start()
    time.sleep(0.3)
    ticks = {pid: _cpu_ticks(pid) for pid in running}
    busy = max(ticks, key=lambda pid: ticks[pid])  # the worker evaluating HEAVY is the one burning CPU
    assert ticks[busy] > 5, "no worker was evaluating the heavy query"
    os.kill(busy, signal.SIGKILL)
    assert get(url, STATIONS, "bystander").status_code == 200
    heavy.join(30)
    assert out["heavy"].status_code == 503 and "process evaluating the query stopped" in out["heavy"].json()["detail"]
    deadline = time.monotonic() + 5
    while busy in workers() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gone(busy) and busy not in wait_for_workers(6)


_ticks: dict[int, int] = {}


def _cpu_ticks(pid: int) -> int:
    """CPU ticks ``pid`` used since the last call for it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().split(")")[-1].split()
    except FileNotFoundError:
        return 0
    total = int(fields[11]) + int(fields[12])
    used, _ticks[pid] = total - _ticks.get(pid, total), total
    return used


# -- starvation ------------------------------------------------------------------------------------------


def test_a_query_at_its_deadline_is_503_and_its_worker_is_killed(url: str) -> None:
    before = set(wait_for_workers(6))
    start = time.monotonic()
    r = get(url, HEAVY, "slow")
    took = time.monotonic() - start
    assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
    assert "did not finish within 1 s" in r.json()["detail"] and took < 2.5
    deadline = time.monotonic() + 2
    while not (killed := before - set(workers())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(killed) == 1 and all(gone(pid) for pid in killed), "the abandoned query's worker still runs"
    start = time.monotonic()
    assert get(url, "ASK {}").status_code == 200 and time.monotonic() - start < 0.5


def test_four_abandoned_slow_queries_leave_the_service_answering(url: str) -> None:
    wait_for_workers(6)
    threads = [threading.Thread(target=_abandon, args=(url, f"abandoner-{i}")) for i in range(4)]
    for t in threads:  # the clients give up long before the deadline: nobody reads these answers
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.5)  # past the deadline: the workers evaluating them are killed
    start = time.monotonic()
    r = get(url, "ASK {}", "after")
    assert r.status_code == 200 and time.monotonic() - start < 0.5
    assert r.json()["boolean"] is True
    pool = wait_for_workers(6)
    for pid in pool:
        _cpu_ticks(pid)  # the baseline
    time.sleep(0.5)
    assert sum(_cpu_ticks(pid) for pid in pool) < 10, "workers still burn CPU for abandoned queries"


def _abandon(url: str, who: str) -> None:
    try:
        get(url, HEAVY, who, timeout=0.3)
    except httpx.TimeoutException:
        pass


def test_one_principal_over_its_limit_gets_429_and_another_is_served(url: str) -> None:
    wait_for_workers(6)
    out: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: out.append(get(url, HEAVY, "greedy"))) for _ in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    time.sleep(0.2)
    other = get(url, STATIONS, "someone-else", role="researcher")
    for t in threads:
        t.join(30)
    statuses = sorted(r.status_code for r in out)
    assert statuses == [429, 503, 503], statuses
    refused = next(r for r in out if r.status_code == 429)
    assert refused.headers["retry-after"] == "1" and "2 queries running" in refused.json()["detail"]
    assert other.status_code == 200


MEDIUM = ("SELECT (COUNT(*) AS ?n) WHERE { { SELECT ?c WHERE { GRAPH ?g { ?a ?b ?c } } LIMIT 1500 } "
          "{ SELECT ?f WHERE { GRAPH ?h { ?d ?e ?f } } LIMIT 1500 } FILTER(STR(?c) != STR(?f)) }")
"""About 0.2 s of evaluation: long enough that six sent at once overlap."""


@pytest.mark.parametrize("queue_s", [0.0, 10.0])
def test_a_callers_queries_beyond_the_limit_wait_for_a_slot_instead_of_429(store: EmbeddedStore,
                                                                              queue_s: float) -> None:
    """A dashboard's six panels refreshed at once by one viewer: with a queue all are answered, in turn; without
    one (the control) some are refused, so it is the queue that answers them."""
    with serve(app_over(store, query_timeout_s=10.0, query_workers=4, query_per_principal=2,
                        query_queue_s=queue_s)) as u:
        assert get(u, "ASK {}").status_code == 200  # the workers run
        out: list[httpx.Response] = []
        panels = [threading.Thread(target=lambda: out.append(get(u, MEDIUM, "dashboard-viewer"))) for _ in range(6)]
        for t in panels:
            t.start()
        for t in panels:
            t.join(60)
    statuses = sorted(r.status_code for r in out)
    if queue_s:
        assert statuses == [200] * 6, statuses
    else:
        assert 429 in statuses and 200 in statuses, statuses


def test_a_flood_of_one_callers_queries_is_refused_at_once_beyond_the_queue(store: EmbeddedStore) -> None:
    """Twenty queries of one caller at once: two run, QUEUE_DEPTH wait, the rest get 429 at once instead of
    waiting (each waiter polls for a slot: an unbounded queue would let one caller crowd the event loop)."""
    with serve(app_over(store, query_timeout_s=10.0, query_workers=4, query_per_principal=2,
                        query_queue_s=30.0)) as u:
        assert get(u, "ASK {}").status_code == 200
        out: list[tuple[int, float]] = []

        def send() -> None:
            start = time.monotonic()
            r = get(u, MEDIUM, "flooder")  # 0.2 s each: all twenty arrive while the first two run
            out.append((r.status_code, time.monotonic() - start))

        flood = [threading.Thread(target=send) for _ in range(20)]
        for t in flood:
            t.start()
        for t in flood:
            t.join(120)
    refused = [elapsed for status, elapsed in out if status == 429]
    assert len(out) == 20 and len(refused) == 20 - 2 - QUEUE_DEPTH, sorted(s for s, _ in out)
    assert max(refused) < 1.0, refused  # at once, not after waiting
    assert sorted(s for s, _ in out)[:2 + QUEUE_DEPTH] == [200] * (2 + QUEUE_DEPTH)


def test_an_app_whose_lifespan_runs_again_answers_at_once(store: EmbeddedStore) -> None:
    """A second lifespan (a test client entered twice; Schemathesis runs one per test) starts the workers the
    first one's end stopped, instead of waiting a minute for a closed pool."""
    app = app_over(store, query_timeout_s=5.0)
    for _ in range(2):
        start = time.monotonic()
        with serve(app) as u:
            assert get(u, "ASK {}").status_code == 200
        assert time.monotonic() - start < 20


def test_settings_keep_a_worker_free_of_any_one_caller() -> None:
    for workers, per_principal in ((2, 2), (4, 4), (4, 0)):
        with pytest.raises(SettingsError, match="less than PHT_QUERY_WORKERS"):
            replace(SETTINGS, query_workers=workers, query_per_principal=per_principal)
    for queue_s in (-1.0, 61.0):
        with pytest.raises(SettingsError, match="PHT_QUERY_QUEUE_S"):
            replace(SETTINGS, query_queue_s=queue_s)
    env = {"PHT_JWT_SECRET": SETTINGS.jwt_secret or "", "PHT_QUERY_WORKERS": "6", "PHT_QUERY_PER_PRINCIPAL": "3",
           "PHT_QUERY_QUEUE_S": "0.5"}
    read = Settings.from_env(env)
    assert (read.query_workers, read.query_per_principal, read.query_queue_s) == (6, 3, 0.5)


def test_another_users_point_query_stays_fast_under_four_hostile_clients(url: str) -> None:
    wait_for_workers(6)
    baseline = _point_latencies(url, time.monotonic() + 1)
    stop = time.monotonic() + 3
    hostile = [threading.Thread(target=_hammer, args=(url, stop)) for _ in range(4)]
    for t in hostile:
        t.start()
    time.sleep(0.3)
    latencies = _point_latencies(url, stop)
    for t in hostile:
        t.join(30)
    # generous bounds (other work shares this machine); benchmarks/sparql_endpoint.py measures the real figure
    assert statistics.median(latencies) < max(0.25, 3 * statistics.median(baseline)), (baseline, latencies)
    assert max(latencies) < 2.0, f"victim's point query took up to {max(latencies):.2f} s"


def _point_latencies(url: str, stop: float) -> list[float]:
    latencies = []
    while time.monotonic() < stop:
        start = time.monotonic()
        r = get(url, POINT, "victim", role="researcher")
        latencies.append(time.monotonic() - start)
        assert r.status_code == 200, r.text
        time.sleep(0.02)
    return latencies


def _hammer(url: str, stop: float) -> None:
    while time.monotonic() < stop:
        if get(url, HEAVY, "hostile").status_code == 429:
            time.sleep(0.05)


# -- the replicas see every write ------------------------------------------------------------------------


def test_reads_after_a_write_see_it_for_every_role(store: EmbeddedStore) -> None:
    mine = scenario_store()
    with serve(app_over(mine, query_timeout_s=5.0)) as u:
        for i in range(3):  # each write reaches every worker (a query may land on any of them)
            label = f"fresh note {i}"
            r = httpx.post(u, data={"update": f'INSERT DATA {{ GRAPH {AACHEN} {{ <https://pht.example.org/id/n{i}> '
                                              f'<http://www.w3.org/2000/01/rdf-schema#label> "{label}" }} }}'},
                           headers=ROLES["operator"], timeout=10)
            assert r.status_code == 200, r.text
            ask = f'ASK {{ ?s <http://www.w3.org/2000/01/rdf-schema#label> "{label}" }}'
            for role in ("operator", "station-admin", "station"):
                for _ in range(4):
                    assert get(u, ask, role=role).json()["boolean"] is True, role
            assert get(u, ask, role="researcher").json()["boolean"] is False  # not theirs to read
        station = NamedNode("https://pht.example.org/id/bulk")
        mine.oxigraph.add(Quad(station, NamedNode("http://x/p"), Literal("bulk"), CENTRAL_GRAPH))  # bypasses apply
        for _ in range(4):
            assert get(u, 'ASK { ?s <http://x/p> "bulk" }').json()["boolean"] is True
    mine.close()


def test_a_worker_behind_the_kept_log_is_reseeded_and_sees_every_write(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_workers, "LOG_SIZE", 2)
    mine = scenario_store()
    with serve(app_over(mine, query_timeout_s=5.0)) as u:
        assert get(u, "ASK {}").status_code == 200  # the workers are seeded now
        for i in range(5):  # more commits than the log keeps
            mine.apply(ChangeSet(insert=[Quad(NamedNode(f"https://pht.example.org/id/late-{i}"), RDFS_LABEL,
                                              Literal(f"late {i}"), AACHEN)]))
        answers: list[httpx.Response] = []
        label = "<http://www.w3.org/2000/01/rdf-schema#label>"
        ask = f'ASK {{ ?a {label} "late 0" . ?b {label} "late 4" }}'
        askers = [threading.Thread(target=lambda k=k: answers.append(get(u, ask, f"asker-{k}"))) for k in range(8)]
        for t in askers:  # at once, so that every worker answers some
            t.start()
        for t in askers:
            t.join(30)
    mine.close()
    assert [r.json()["boolean"] for r in answers] == [True] * 8


def test_an_answer_over_the_byte_limit_is_cut_and_says_so(store: EmbeddedStore) -> None:
    with serve(app_over(store, query_result_max_bytes=5000)) as u:
        r = get(u, "SELECT * WHERE { GRAPH ?g { ?s ?p ?o } }")
    assert r.status_code == 200 and len(r.content) <= 5000
    assert r.headers["x-pht-result-truncated"] == "true" and r.json()["results"]["bindings"]


# -- the web view's SPARQL form, and a remote store -------------------------------------------------------


def test_the_web_views_sparql_form_refuses_a_deep_query_and_keeps_answering() -> None:
    with service() as c:
        r = c.post("/ui/sparql", headers=ALICE, data={"query": DEEP["braces"]})
        assert r.status_code == 400 and f"at most {MAX_NESTING}" in r.text
        r = c.post("/ui/sparql", headers=ALICE, data={"query": DEEP["plus chain"]})
        assert r.status_code == 400 and f"at most {MAX_OPERATORS}" in r.text
        assert c.get("/ui/sparql", headers=ALICE, params={"query": "ASK {}"}).status_code == 200


@pytest.mark.real_component("oxigraph")
def test_over_a_remote_store_workers_query_it_with_their_own_client(
        oxigraph_endpoint: servers.OxigraphServer, closing: Closing) -> None:
    remote = closing(RemoteStore(oxigraph_endpoint.query_url, oxigraph_endpoint.update_url, timeout=20))
    remote.load_vocabulary()
    graph = station_graph("hostile-remote")
    label = Quad(NamedNode("https://pht.example.org/id/remote-note"), RDFS_LABEL, Literal("remote note"), graph)
    remote.apply(ChangeSet(insert=[label]))
    ask = 'ASK { GRAPH ?g { ?s <http://www.w3.org/2000/01/rdf-schema#label> "remote note" } }'
    with serve(app_over(remote, query_timeout_s=1.0)) as u:
        assert get(u, ask).json()["boolean"] is True
        # a station queries its default graph (its own): GRAPH is refused in a confined query on a remote store
        own = 'ASK { ?s <http://www.w3.org/2000/01/rdf-schema#label> "remote note" }'
        station = {"X-Test-Role": "station", "X-Test-Station": "hostile-remote"}
        assert httpx.get(u, params={"query": own}, headers=station, timeout=10).json()["boolean"] is True
        assert get(u, own, role="station").json()["boolean"] is False  # aachen's graph does not hold it
        assert get(u, DEEP["braces"]).status_code == 400
        assert get(u, STATIONS).status_code == 200
    remote.apply(ChangeSet(delete=[label]))

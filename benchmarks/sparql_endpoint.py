"""Benchmark: ``/sparql`` against an Oxigraph server on the same data, side by side, and under hostile load.

The data is the valid fixture scenario copied ``--copies`` times (``_data.py``), with the researchers ``alice``
and ``alice0`` ... (one per client: the service runs at most 2 queries per caller at a time) made requesters of
the first ten copies' trains. Our service (``python -m orchestrator``, embedded on-disk
store, query workers) answers a researcher token: authentication on, and every query evaluated over what she
may read (``readable_graph.py``). The Oxigraph server (``oxigraph serve``, the venv's) holds the same quads.

1. A point query (one of her trains' triples) and the provenance query ``train_history`` for one of her trains,
   one at a time: latency p50 / p95 on each side, after ``--warm-s`` seconds of every caller's point queries
   (the service's fast lane loads its views of the callers meanwhile: ``orchestrator/query_fast_lane.py``).
2. Throughput: ``--clients`` concurrent clients alternating both queries for ``--seconds``, on each side:
   ``throughput_ratio_vs_oxigraph`` = ours / Oxigraph's queries per second (ours evaluates over her readable
   view, Oxigraph over everything: the provenance query is cheaper here); the same with point queries only
   (``point_throughput_ratio_vs_oxigraph``: the platform's overhead per query).
3. Hostile load: 4 clients of another researcher send a cross product that runs to the deadline
   (``PHT_QUERY_TIMEOUT_S`` = ``--deadline``) over and over; alice's point query meanwhile: ``victim_point_p95_ms``.

Last line: one JSON object. Usage: .venv/bin/python benchmarks/sparql_endpoint.py [--copies 200] [--seconds 10]
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _data import EX, copies, scenario  # noqa: E402
from _service import auth, free_port, start_service  # noqa: E402
from pyoxigraph import NamedNode, Quad  # noqa: E402
from servers import oxigraph_server  # noqa: E402

from graph_store import CENTRAL_GRAPH, DEFAULT_BASE_IRI, PROV, EmbeddedStore, bind, named_query  # noqa: E402
from orchestrator.naming import Iris  # noqa: E402
from orchestrator.principal import Role  # noqa: E402

HOSTILE = "SELECT (COUNT(*) AS ?n) WHERE { GRAPH ?g { ?a ?p ?b } GRAPH ?h { ?c ?q ?d } FILTER(STR(?b) != STR(?d)) }"
JSON_RESULTS = {"Accept": "application/sparql-results+json"}


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def build(copies_n: int, researchers: list[str], directory: Path) -> bytes:
    """The on-disk store of our service, and the same quads as N-Quads for the Oxigraph server."""
    iris = Iris(DEFAULT_BASE_IRI)
    quads = list(copies(scenario(), copies_n))
    quads += [Quad(NamedNode(f"{EX}train-000{t}-c{c}"), PROV.wasAttributedTo, iris.agent(who), CENTRAL_GRAPH)
              for who in researchers for c in range(10) for t in (1, 2, 3)]
    store = EmbeddedStore(directory)
    store.oxigraph.bulk_extend(quads)  # trusted data: the fixture scenario, valid
    store.load_vocabulary()
    dump = store.snapshot()
    store.close()
    return dump


def timed(get: Callable[[], httpx.Response], out: list[float]) -> None:
    t0 = time.perf_counter()
    r = get()
    out.append((time.perf_counter() - t0) * 1000)
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.text[:300]}")


def throughput(send: Callable[[httpx.Client, int, int], httpx.Response], clients: int, seconds: float) -> float:
    """Queries per second of ``clients`` threads calling ``send(client, k, i)`` (client k, its i-th query)."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=30) as c:
            while time.monotonic() < stop:
                r = send(c, k, counts[k])
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code}: {r.text[:300]}")
                counts[k] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--deadline", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--warm-s", type=float, default=5.0, help="seconds of point queries before measuring")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="bench-sparql-")) / "store"
    atexit.register(shutil.rmtree, directory.parent, True)  # the store is gone when the run ends, failed or not
    researchers = ["alice", *(f"alice{k}" for k in range(args.clients))]
    dump = build(args.copies, researchers, directory)
    train = NamedNode(f"{EX}train-0001-c3")
    point = bind("SELECT ?p ?o WHERE { GRAPH ?g { $train ?p ?o } }", {"train": train})
    history = bind(named_query("train_history").text, {"train": train})
    queries = [point, history]
    port = free_port()
    proc = start_service(directory, port, PHT_QUERY_TIMEOUT_S=str(args.deadline),
                         PHT_STATION_TIMEOUT_S="0")  # the copies' dates are old: no watchdog writes meanwhile
    ours = f"http://127.0.0.1:{port}/sparql"
    alice, mallory = auth("alice", Role.RESEARCHER), auth("mallory", Role.RESEARCHER)
    try:
        with oxigraph_server() as ox, httpx.Client(timeout=60) as c:
            c.post(ox.store_url, content=dump, headers={"Content-Type": "application/n-quads"}).raise_for_status()
            sides: dict[str, Callable[[httpx.Client, str], httpx.Response]] = {
                "ours": lambda cl, q: cl.get(ours, params={"query": q}, headers={**alice, **JSON_RESULTS}),
                "oxigraph": lambda cl, q: cl.get(ox.query_url, params={"query": q}, headers=JSON_RESULTS),
            }
            rows = {side: [len(send(c, q).json()["results"]["bindings"]) for q in queries]
                    for side, send in sides.items()}
            print(f"rows (point, train_history): ours {rows['ours']}, oxigraph {rows['oxigraph']}")
            assert rows["ours"] == rows["oxigraph"] and all(rows["ours"]), "the two sides answer differently"
            warm = [threading.Thread(target=lambda k=k: httpx.get(  # every worker builds the callers' views once
                ours, params={"query": point}, headers={**auth(researchers[k % len(researchers)], Role.RESEARCHER),
                                                        **JSON_RESULTS}, timeout=60)) for k in range(16)]
            for t in warm:
                t.start()
            for t in warm:
                t.join()
            warm_until = time.monotonic() + args.warm_s  # the service's fast lane loads its views of the callers
            while time.monotonic() < warm_until:         # meanwhile (query_fast_lane.py): a few seconds
                for who in researchers:
                    c.get(ours, params={"query": point}, headers={**auth(who, Role.RESEARCHER), **JSON_RESULTS})
            latency: dict[str, dict[str, list[float]]] = {s: {"point": [], "history": []} for s in sides}
            for _ in range(args.repeat):  # alternating sides
                for side, send in sides.items():
                    timed(lambda: send(c, point), latency[side]["point"])  # noqa: B023
                    timed(lambda: send(c, history), latency[side]["history"])  # noqa: B023
            for side in sides:
                for name, values in latency[side].items():
                    print(f"{side:9} {name:8} p50 {statistics.median(values):6.2f} ms  p95 {pct(values, 0.95):6.2f} ms")
            tokens = [auth(f"alice{k}", Role.RESEARCHER) for k in range(args.clients)]
            rates: dict[str, dict[str, float]] = {"ours": {}, "oxigraph": {}}
            for mix, chosen in (("both", queries), ("point", [point, point])):
                rates["ours"][mix] = throughput(
                    lambda cl, k, i: cl.get(ours, params={"query": chosen[i % 2]},  # noqa: B023
                                            headers={**tokens[k], **JSON_RESULTS}), args.clients, args.seconds)
                rates["oxigraph"][mix] = throughput(
                    lambda cl, k, i: cl.get(ox.query_url, params={"query": chosen[i % 2]},  # noqa: B023
                                            headers=JSON_RESULTS), args.clients, args.seconds)
                print(f"queries/s with {args.clients} clients ({mix}): ours {rates['ours'][mix]:.0f}, oxigraph "
                      f"{rates['oxigraph'][mix]:.0f}")

        stop = time.monotonic() + args.seconds + 1
        outcomes: dict[int, int] = {}

        def hostile() -> None:
            with httpx.Client(timeout=60) as hc:
                while time.monotonic() < stop:
                    status = hc.get(ours, params={"query": HOSTILE}, headers={**mallory, **JSON_RESULTS}).status_code
                    outcomes[status] = outcomes.get(status, 0) + 1
                    if status == 429:
                        time.sleep(0.05)

        attackers = [threading.Thread(target=hostile) for _ in range(4)]
        for t in attackers:
            t.start()
        time.sleep(1)
        victim: list[float] = []
        with httpx.Client(timeout=60) as c:
            while time.monotonic() < stop:
                timed(lambda: c.get(ours, params={"query": point}, headers={**alice, **JSON_RESULTS}), victim)
                time.sleep(0.01)
        for t in attackers:
            t.join()
        print(f"under hostile load (4 clients, answers {dict(sorted(outcomes.items()))}): victim point query "
              f"p50 {statistics.median(victim):.2f} ms, p95 {pct(victim, 0.95):.2f} ms, max {max(victim):.1f} ms "
              f"({len(victim)} queries)")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(json.dumps({
        "throughput_ratio_vs_oxigraph": round(rates["ours"]["both"] / rates["oxigraph"]["both"], 3),
        "point_throughput_ratio_vs_oxigraph": round(rates["ours"]["point"] / rates["oxigraph"]["point"], 3),
        "point_p50_ms": round(statistics.median(latency["ours"]["point"]), 2),
        "victim_point_p95_ms": round(pct(victim, 0.95), 2),
        "history_p50_ms": round(statistics.median(latency["ours"]["history"]), 2),
        "oxigraph_point_p50_ms": round(statistics.median(latency["oxigraph"]["point"]), 2),
        "oxigraph_history_p50_ms": round(statistics.median(latency["oxigraph"]["history"]), 2),
        "ours_qps": round(rates["ours"]["both"], 1), "oxigraph_qps": round(rates["oxigraph"]["both"], 1),
        "copies": args.copies, "clients": args.clients, "deadline_s": args.deadline,
    }))


if __name__ == "__main__":
    main()

"""Benchmark: the central service over HTTP on loopback (embedded on-disk store; with ``--store remote`` also on
an Oxigraph server, side by side).

Median and p95 latency of submit a train, read a train's status, a researcher's SPARQL point query through
``/sparql`` (over her readable graph: the dataset restriction), one lifecycle step; and lifecycle steps per
second with 8 concurrent clients. The service runs as its own process (``python -m orchestrator``), the
clients are httpx in this process. With ``--store remote`` the same run follows on a service whose store is an
``oxigraph serve`` process (the venv's, on-disk; its write lock in the graph on, as replicas need it), and
``remote_steps_per_s_8_clients`` and its ratio to the embedded store are reported. Last line: one JSON object.

Usage: .venv/bin/python benchmarks/api_throughput.py [--trains 200] [--clients 8] [--seconds 10] [--store remote]
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _service import auth, free_port, start_service  # noqa: E402
from servers import oxigraph_server  # noqa: E402

from graph_store import PHT_NS  # noqa: E402
from orchestrator.principal import Role  # noqa: E402

KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADw+5Be8pE6f1TCQ5ILUvhMbG4vSCtzKjLvFYye8Qd6M=\n-----END PUBLIC KEY-----\n"
STEPS = [("waiting-for-approval", "station"), ("approved", "admin"), ("pulling", "station"), ("running", "station"),
         ("output-under-review", "station"), ("released", "admin")]


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--store", choices=["embedded", "remote"], default="embedded",
                        help="remote: also run on an Oxigraph server, after the embedded store")
    args = parser.parse_args()
    print("== embedded store ==")
    directory = Path(tempfile.mkdtemp(prefix="bench-api-"))
    atexit.register(shutil.rmtree, directory, True)  # the store is gone when the run ends, failed or not
    figures = run(args, directory / "store", {})
    if args.store == "remote":
        print("== remote store: oxigraph serve ==")
        with oxigraph_server() as server:
            remote = run(args, None, {"PHT_STORE_QUERY_URL": server.query_url,
                                      "PHT_STORE_UPDATE_URL": server.update_url})
        figures.update({f"remote_{key}": value for key, value in remote.items() if key != "clients"})
        figures["remote_ratio_vs_embedded"] = round(remote["steps_per_s_8_clients"]
                                                    / figures["steps_per_s_8_clients"], 3)
    print(json.dumps(figures))


def run(args: argparse.Namespace, store: Path | None, settings: dict[str, str]) -> dict[str, float]:
    """One service on ``store`` (None: ``settings`` name a remote store): prints its figures, returns them."""
    port = free_port()
    # unsigned trains: the clients are plain httpx (signing and its check cost the submit, not the steps measured)
    proc = start_service(store, port, PHT_REQUIRE_SIGNED_TRAINS="0", **settings)
    base = f"http://127.0.0.1:{port}/api"
    ops, alice = auth("ops", Role.OPERATOR), auth("alice", Role.RESEARCHER)
    stations = [f"s{i}" for i in range(args.clients)]
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            for sid in stations:
                c.post("/stations", headers=ops, json={"id": sid, "title": sid, "owner": sid,
                                                        "public_keys": [KEY]}).raise_for_status()
                c.post("/definitions", headers=alice, json={
                    "id": f"def-{sid}", "title": "bench", "image_name": "pht/bench",
                    "image_digest": "sha256:" + "ab" * 32, "mode": "incremental", "route": [sid],
                    "rounds": 1000}).raise_for_status()
            submit_ms, status_ms, step_ms = [], [], []
            train_ids, train_iris = [], []
            for i in range(args.trains):
                t0 = time.perf_counter()
                r = c.post("/trains", headers=alice, json={"definition": f"def-{stations[i % len(stations)]}"})
                submit_ms.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                train_ids.append(r.json()["id"])
                train_iris.append(r.json()["iri"])
            for tid in train_ids * 3:
                t0 = time.perf_counter()
                c.get(f"/trains/{tid}", headers=alice).raise_for_status()
                status_ms.append((time.perf_counter() - t0) * 1000)
            sid = stations[0]
            who = {"station": auth(f"st-{sid}", Role.STATION, sid), "admin": auth(f"ad-{sid}", Role.STATION_ADMIN, sid)}
            for tid in train_ids[:: len(stations)][:30]:
                for to, role in STEPS[:3]:
                    t0 = time.perf_counter()
                    c.post(f"/executions/{tid}.r1-s0/steps", headers=who[role], json={"to": to}).raise_for_status()
                    step_ms.append((time.perf_counter() - t0) * 1000)
            # a researcher's point query through /sparql: evaluated over what she may read (her trains and the
            # registry, orchestrator/readable_graph.py); the first after the steps above rebuilds that view
            sparql_ms = []
            sparql = f"http://127.0.0.1:{port}/sparql"
            for iri in train_iris[:100]:
                query = f"SELECT ?state WHERE {{ <{iri}> <{PHT_NS}state> ?state }}"
                t0 = time.perf_counter()
                r = c.get(sparql, headers={**alice, "Accept": "application/sparql-results+json"},
                          params={"query": query})
                sparql_ms.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                assert len(r.json()["results"]["bindings"]) == 1, r.text

        counts = [0] * args.clients
        errors: list[str] = []
        stop = time.time() + args.seconds

        def client(k: int) -> None:
            sid = stations[k]
            who = {"station": auth(f"st-{sid}", Role.STATION, sid), "admin": auth(f"ad-{sid}", Role.STATION_ADMIN, sid)}
            with httpx.Client(base_url=base, timeout=30) as c:
                tid = c.post("/trains", headers=alice, json={"definition": f"def-{sid}"}).json()["id"]
                round_ = 1
                while time.time() < stop:  # one train loops over its 1-stop route round after round
                    for to, role in STEPS:
                        r = c.post(f"/executions/{tid}.r{round_}-s0/steps", headers=who[role], json={"to": to})
                        if r.status_code != 200:
                            errors.append(r.text)
                            return
                        counts[k] += 1
                    round_ += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        steps_per_s = sum(counts) / elapsed
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    print(f"submit a train:       p50 {statistics.median(submit_ms):.2f} ms, p95 {pct(submit_ms, 0.95):.2f} ms "
          f"({len(submit_ms)} calls)")
    print(f"read a train's status: p50 {statistics.median(status_ms):.2f} ms, p95 {pct(status_ms, 0.95):.2f} ms "
          f"({len(status_ms)} calls)")
    print(f"one lifecycle step:   p50 {statistics.median(step_ms):.2f} ms, p95 {pct(step_ms, 0.95):.2f} ms "
          f"({len(step_ms)} calls)")
    print(f"a researcher's SPARQL point query: p50 {statistics.median(sparql_ms):.2f} ms, p95 "
          f"{pct(sparql_ms, 0.95):.2f} ms, first (builds her readable graph) {sparql_ms[0]:.1f} ms")
    print(f"lifecycle steps/s with {args.clients} concurrent clients: {steps_per_s:.0f} "
          f"({sum(counts)} steps in {elapsed:.1f} s, {len(errors)} errors)")
    if errors:
        print("first error:", errors[0][:300])
    return {
        "submit_p50_ms": round(statistics.median(submit_ms), 2), "submit_p95_ms": round(pct(submit_ms, 0.95), 2),
        "status_p50_ms": round(statistics.median(status_ms), 2), "status_p95_ms": round(pct(status_ms, 0.95), 2),
        "step_p50_ms": round(statistics.median(step_ms), 2), "step_p95_ms": round(pct(step_ms, 0.95), 2),
        "sparql_point_p50_ms": round(statistics.median(sparql_ms), 2),
        "sparql_point_first_ms": round(sparql_ms[0], 1),
        "steps_per_s_8_clients": round(steps_per_s, 1), "clients": args.clients, "errors": len(errors),
    }


if __name__ == "__main__":
    main()

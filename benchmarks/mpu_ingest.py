"""Benchmark: station metadata end to end, from event to validated write in the central graph.

Events (dicts in the ``POST /events`` schema: state changes, transmissions, rejections of one execution) are
ingested by an MPU in this process in posts of ``--post`` events: validated against the shapes, filtered by the
safe default policy, queued in the on-disk outbox; the MPU's pusher thread takes batches of 500 events, signs
them (Ed25519) and pushes them over loopback HTTP to the central service (``python -m orchestrator``, its own
process, embedded on-disk store), which verifies the signature, checks every subject and writes the batch with
one validated ``GraphStore.apply``. The clock stops when the central service has acknowledged every event.

Side by side in the same run, the same pipeline without the outbox: the filtered batches go through an
in-memory queue to the same pusher thread (nothing on disk, nothing durable). ``outbox_overhead`` is
(time with outbox - time without) / time without. Modes alternate, ``--rounds`` of each; the best of each
mode is reported (the machine is shared), and so is the CPU time per triple of each side (this process: the
MPU's threads; the service: from /proc), which other load on the machine hardly changes. Last line: one JSON
object.

Every run starts a fresh central service on a fresh store: the central side's cost per triple grows with the
station graph (RocksDB), so runs on a store grown by the runs before them are not comparable.

With ``--store remote``, ``--rounds`` more runs of the real pipeline (with the outbox) follow on a central
service whose store is an ``oxigraph serve`` process (a fresh one per run; its write lock on, as replicas need
it): ``remote_triples_per_s`` (the best run) and its ratio to the embedded store are reported.

Usage: .venv/bin/python benchmarks/mpu_ingest.py [--events 20000] [--post 500] [--rounds 2] [--store remote]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _service import auth, free_port, start_service  # noqa: E402
from servers import OxigraphServer, oxigraph_server  # noqa: E402

from client import CentralClient  # noqa: E402
from graph_store import tune_garbage_collection  # noqa: E402
from orchestrator.principal import Role  # noqa: E402
from station_mpu import (  # noqa: E402
    EventAdapter,
    Mpu,
    MpuSettings,
    Naming,
    Pusher,
    apply_policy,
    event_triples,
    read_policy,
    validated,
)
from station_mpu._mpu import _ntriples  # noqa: E402
from station_mpu._outbox import Pending  # noqa: E402
from trust import generate_keys  # noqa: E402

BATCH = 500


def register(url: str, key: Ed25519PrivateKey) -> tuple[str, str]:
    """Station aachen with the benchmark's key, a definition, a train; returns (train, execution) ids."""
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    ops, alice = auth("ops", Role.OPERATOR), auth("alice", Role.RESEARCHER)
    with httpx.Client(base_url=url, timeout=30) as c:
        c.post("/api/stations", headers=ops, json={"id": "aachen", "title": "Aachen", "owner": "UKA",
                                                   "public_keys": [pem]}).raise_for_status()
        c.post("/api/definitions", headers=alice, json={
            "id": "count", "title": "count", "image_name": "pht/count", "image_digest": "sha256:" + "ab" * 32,
            "mode": "incremental", "route": ["aachen"]}).raise_for_status()
    keys = generate_keys()  # trains are signed (the service requires it by default)
    with CentralClient(url, alice["Authorization"].removeprefix("Bearer "), keys=keys) as researcher:
        researcher.register_keys(keys)
        train = researcher.submit("count")
    return train, f"{train}.r1-s0"


def make_events(tag: str, n: int, train: str, execution: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        base = {"id": f"{tag}-{i}", "time": f"2026-11-27T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
                "train": train, "execution": execution}
        kind = i % 3
        if kind == 0:
            out.append({**base, "kind": "state-change", "from_state": "pulling", "to_state": "running"})
        elif kind == 1:
            out.append({**base, "kind": "started-transmission"})
        else:
            out.append({**base, "kind": "rejection", "reason": f"No anonymity ({i})"})
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_outbox(settings: MpuSettings, evs: list[dict[str, Any]], post: int) -> tuple[float, int]:
    """The real MPU: ingest in posts, its pusher thread drains the outbox; seconds until all acknowledged."""
    mpu = Mpu(settings)
    mpu.start()
    t0 = time.perf_counter()
    triples = 0
    for i in range(0, len(evs), post):
        triples += mpu.ingest(evs[i:i + post]).triples_leaving
    while mpu.outbox.depth() > 0:
        time.sleep(0.01)
    elapsed = time.perf_counter() - t0
    mpu.close()
    return elapsed, triples


def without_outbox(settings: MpuSettings, evs: list[dict[str, Any]], post: int) -> tuple[float, int]:
    """The same validation, filter, signature and push, the batches handed to the pusher in memory."""
    naming = Naming(settings.base_iri, settings.station_id)
    policy = read_policy(settings.policy_path, station=naming.station)
    assert settings.private_key_path is not None and settings.central_url is not None
    key = serialization.load_pem_private_key(settings.private_key_path.read_bytes(), password=None)
    pusher = Pusher(central_url=settings.central_url, station_id=settings.station_id, private_key=key,  # type: ignore[arg-type]
                    token=lambda: settings.token or "")
    batches: queue.Queue[list[Pending] | None] = queue.Queue(maxsize=64)
    failures: list[str] = []

    def push_loop() -> None:
        while (batch := batches.get()) is not None:
            result = pusher.push(batch)
            if result.outcome != "delivered":
                failures.append(f"{result.status} {result.detail}")

    thread = threading.Thread(target=push_loop)
    thread.start()
    t0 = time.perf_counter()
    triples, seq, pending = 0, 0, []
    for i in range(0, len(evs), post):
        models = EventAdapter.validate_python(evs[i:i + post])
        for f in apply_policy(validated([event_triples(m, naming) for m in models]), policy):  # type: ignore[arg-type]
            if f.leaving:
                seq += 1
                pending.append(Pending(seq, f.event.key, _ntriples(f.leaving), len(f.leaving)))
                triples += len(f.leaving)
            if len(pending) == BATCH:
                batches.put(pending)
                pending = []
    if pending:
        batches.put(pending)
    batches.put(None)
    thread.join()
    elapsed = time.perf_counter() - t0
    pusher.close()
    if failures:
        raise SystemExit(f"pushes failed without the outbox: {failures[:3]}")
    return elapsed, triples


def stored_triples(url: str) -> int:
    """Triples in station aachen's graph of the central store, but for the central service's batch receipts."""
    with httpx.Client(base_url=url, timeout=60) as c:
        count = c.get("/sparql", headers=auth("ops", Role.OPERATOR), params={
            "query": "SELECT (COUNT(*) AS ?n) WHERE { GRAPH <https://w3id.org/pht-kg/graph/station/aachen> "
                     "{ ?s ?p ?o FILTER NOT EXISTS { ?s a <https://w3id.org/pht-kg/vocab#BatchReceipt> } } }"},
            follow_redirects=True)
        if count.status_code != 200:
            raise SystemExit(f"counting the stored triples failed: {count.status_code} {count.text[:300]}")
        return int(count.json()["results"]["bindings"][0]["n"]["value"])


def measure(work: Path, tag: str, run: Any, events: int, post: int,
            server: OxigraphServer | None = None) -> tuple[float, int, float, float]:
    """One run on a fresh central service and store (so that every run starts from the same store size; a fresh
    ``server`` for a remote store): register, warm up with 1,000 events, then time ``events`` events. Returns
    (seconds, triples, station CPU and central CPU per triple in microseconds: the service's, and the
    server's with a remote store)."""
    port = free_port()
    if server is None:
        proc = start_service(work / f"store-{tag}", port)
    else:
        proc = start_service(None, port, PHT_STORE_QUERY_URL=server.query_url, PHT_STORE_UPDATE_URL=server.update_url)
    try:
        url = f"http://127.0.0.1:{port}"
        key = Ed25519PrivateKey.generate()
        pem = work / f"aachen-{tag}.pem"
        pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        train, execution = register(url, key)
        token = auth("station-aachen", Role.STATION, "aachen")["Authorization"].removeprefix("Bearer ")

        def settings(name: str) -> MpuSettings:
            return MpuSettings(station_id="aachen", data_dir=work / f"mpu-{name}", central_url=url,
                               private_key_path=pem, token=token, sample_interval_s=0, batch_max_events=BATCH)

        # warm-up (imports, caches, the service's first writes), not measured
        _, warm = with_outbox(settings(f"warm-{tag}"), make_events(f"warm-{tag}", 1000, train, execution), post)
        central_pids = [proc.pid] + ([server.pid] if server is not None else [])
        station0, central0 = time.process_time(), sum(map(cpu_seconds, central_pids))
        elapsed, triples = run(settings(tag), make_events(tag, events, train, execution), post)
        station_cpu, central_cpu = time.process_time() - station0, sum(map(cpu_seconds, central_pids)) - central0
        stored = stored_triples(url)
        if stored != warm + triples:
            raise SystemExit(f"{tag}: the station graph holds {stored} triples, {warm + triples} were sent")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return elapsed, triples, station_cpu / triples * 1e6, central_cpu / triples * 1e6


def main() -> None:
    tune_garbage_collection()  # this process is the MPU: configured as `pht mpu serve` configures it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--post", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--store", choices=["embedded", "remote"], default="embedded",
                        help="remote: also run the pipeline into an Oxigraph server, after the embedded store")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, int, float, float]]] = {"outbox": [], "memory": []}
    with tempfile.TemporaryDirectory(prefix="pht-mpu-bench-") as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            order = (("memory", without_outbox), ("outbox", with_outbox))
            for mode, run in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                elapsed, triples, station_us, central_us = measure(work, f"{mode}{r}", run, args.events, args.post)
                results[mode].append((elapsed, triples, station_us, central_us))
                print(f"{mode:>7} round {r + 1}: {args.events} events, {triples} triples in {elapsed:.2f} s "
                      f"= {triples / elapsed:,.0f} triples/s; CPU per triple: station {station_us:.1f} us, "
                      f"central {central_us:.1f} us; load {os.getloadavg()[0]:.1f}", flush=True)
        remote = []
        for r in range(args.rounds if args.store == "remote" else 0):
            with oxigraph_server() as server:
                remote.append(measure(work, f"remote{r}", with_outbox, args.events, args.post, server))
            elapsed, triples, _, central_us = remote[-1]
            print(f" remote round {r + 1} (Oxigraph server, with outbox): {triples} triples in {elapsed:.2f} s = "
                  f"{triples / elapsed:,.0f} triples/s; CPU per triple: central (service + server) "
                  f"{central_us:.1f} us; load {os.getloadavg()[0]:.1f}", flush=True)
    best = {mode: min(runs) for mode, runs in results.items()}
    rate = {mode: t[1] / t[0] for mode, t in best.items()}
    overhead = (best["outbox"][0] / best["outbox"][1]) / (best["memory"][0] / best["memory"][1]) - 1
    print("every run on a fresh central store; each run's triples were all found in the station graph")
    print(f"with outbox {rate['outbox']:,.0f} triples/s, without {rate['memory']:,.0f} triples/s, "
          f"outbox overhead {overhead:.1%}")
    station_cpu = {mode: min(r[2] for r in runs) for mode, runs in results.items()}
    central_cpu = min(r[3] for runs in results.values() for r in runs)
    print(f"CPU per triple (best round): station {station_cpu['outbox']:.1f} us with outbox, "
          f"{station_cpu['memory']:.1f} us without; central {central_cpu:.1f} us")
    figures: dict[str, Any] = {}
    if remote:
        fastest = min(remote)
        figures = {"remote_triples_per_s": round(fastest[1] / fastest[0]),
                   "remote_ratio_vs_embedded": round(fastest[1] / fastest[0] / rate["outbox"], 3),
                   "remote_central_cpu_us_per_triple": round(min(r[3] for r in remote), 1)}
        print(f"remote store (Oxigraph server): {figures['remote_triples_per_s']:,} triples/s, "
              f"{figures['remote_ratio_vs_embedded']:.2f} of the embedded store's")
    print(json.dumps({"triples_per_s": round(rate["outbox"]), "outbox_overhead": round(overhead, 3),
                      "station_cpu_us_per_triple": round(station_cpu["outbox"], 1),
                      "station_cpu_us_per_triple_without_outbox": round(station_cpu["memory"], 1),
                      "central_cpu_us_per_triple": round(central_cpu, 1),
                      "triples_per_s_without_outbox": round(rate["memory"]), "events_per_run": args.events,
                      "triples_per_run": best["outbox"][1], "rounds": args.rounds, **figures}))


if __name__ == "__main__":
    main()

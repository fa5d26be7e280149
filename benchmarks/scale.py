"""Benchmark: how cost grows with the graph. An on-disk embedded store of 10 million triples (the platform's
history of about 76,500 trains over 50 stations), streamed in; every named query's p50 / p95 there (in child
processes: one still running after --query-timeout is stopped and reported); validated change sets per second
there and at 10 thousand triples, alternately; peak RSS; and the memory of one query worker's in-memory replica
of the large store (in a child process, as a worker seeds it from a dump).

Usage: .venv/bin/python benchmarks/scale.py [--size 10000000] [--small 10000] [--steps 2000] [--reps 20]
       [--query-budget 8] [--query-timeout 180] [--no-replica]

The data is the valid SHACL fixture scenario (3 trains, 7 executions, 25 events, station metadata, keys, leases,
batch receipts, an audit record: 526 triples) copied with renamed IRIs and identifiers (397 new triples a copy);
its station-level resources (stations, their data sets, policies, filters, keys, leases, receipts, owners,
admins) are shared, 25 copies per pair of stations, so the store has 50 stations whatever its size, and the
central service's task leases by every copy; what a station's MPU pushes goes to its station graph; only the
newest copies' federated train is still in flight. Every train has an identifier (the service gives one at
submission) and copy c's times are the scenario's plus c minutes (``COPY_INTERVAL``).
The change sets measured move executions of the trains in flight (the newest ``IN_FLIGHT`` copies; in the small
store, every copy), as a real platform's steps do: the history's ended trains do not change. Beside them, and
reported as ``ratio_10m_10k_whole_history``, change sets that move an execution of every copy in turn (what
sessions up to 16 measured as the ratio): each visit is cold in every cache, so it measures the working set as
much as the size.
Updates (``fire_transition``) are measured as ``plan_update`` (WHERE and templates, no write). The large store is
compacted after the bulk load (a store grown by writes has had RocksDB's compactions), and its graphs' sizes are
counted once (``GraphStore.recount``: a bulk load is not counted), as after a restore; every measured change set then
keeps them, as a service's writes do. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import resource
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pyoxigraph import Literal, NamedNode, Quad, RdfFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _data import EX, POSITIONS, LifecycleSteps, rate, scenario  # noqa: E402

from graph_store import (  # noqa: E402
    CENTRAL_GRAPH,
    DCTERMS,
    NO_FILTER,
    PHT,
    RDF_TYPE,
    XSD,
    EmbeddedStore,
    list_named_queries,
    station_graph,
    tune_garbage_collection,
)
from orchestrator.list_positions import position_literal  # noqa: E402
from orchestrator.page_tokens import REJECTIONS_FIRST  # noqa: E402

STATION_PAIRS = 25
"""Copies share their stations modulo this: 2 stations per copy, so 50 stations."""
TRAINS_PER_COPY = 3
"""The scenario's trains (train-0001..0003, list positions 1..3): copy c's are 3c+1..3c+3 (``history``)."""
DEFINITIONS_PER_COPY = 2
"""The scenario's definitions (list positions 1..2, as the service numbers every definition, at registration or
at start-up): copy c's are 2c+1..2c+2 (``history``)."""
IN_FLIGHT = 100
"""Only the newest copies' federated train is still running (as in a real history, where all but the latest
trains have ended): in older copies it is finished, its last round's executions released."""
_ENDED = {"train-0002": PHT.Finished, "exec-0002-aachen-r2": PHT.Released, "exec-0002-leipzig-r2": PHT.Released}
_STATION_LEVEL = ("station-", "dataset-", "policy-", "org-", "filter-", "bob")
_NESTED = ("agents", "audit", "enrollments", "token-revocations")
_SERVICE_LEVEL = "agents/central-service/"
"""The central service's own resources (its background tasks' leases): one service whatever the history, so
shared by every copy, not renamed (a lease per task, not per train)."""
_UUID = "urn:uuid:"
_RENAMED_IDENTIFIERS = ("station-", "dataset-", "def-", "train-")
COPY_INTERVAL = timedelta(minutes=1)
"""Copy c's times are the scenario's plus c minutes (its trains, executions, events, outputs, records), so the
history spans 17 days at 10 million triples and its time-ordered lists are ordered by time, as a real one is
(with the scenario's times in every copy, every copy's rejection had the same time). Station-level and the
service's shared resources keep theirs (one resource, one value)."""


def _rename_iri(value: str, copy: int) -> str:
    """``ex:exec-0001-aachen/record`` -> ``ex:exec-0001-aachen-c7/record``: the suffix goes on the resource a
    sub-resource hangs from, so ``/lease``, ``/keys/…``, ``/record`` stay under their (renamed) owner."""
    if value.startswith(_UUID):  # a signed request's urn:uuid: the copy in its last 12 hex digits
        uuid, _, rest = value.partition("/")
        return f"{uuid[:-12]}{copy:012x}" + (f"/{rest}" if rest else "")
    local = value[len(EX):]
    if local.startswith(_SERVICE_LEVEL):
        return value
    parts = local.split("/")
    i = 1 if parts[0] in _NESTED and len(parts) > 1 else 0
    suffix = copy if _own_to_copy(value) else copy % STATION_PAIRS
    parts[i] = f"{parts[i]}-c{suffix}"
    return EX + "/".join(parts)


def _own_to_copy(value: str) -> bool:
    """True for an IRI renamed per copy (``-c<copy>``, as :func:`_rename_iri` does), not shared by copies."""
    if value.startswith(_UUID):
        return True
    local = value[len(EX):]
    return value.startswith(EX) and not local.startswith(_SERVICE_LEVEL) and not local.split("/")[0].startswith(
        _STATION_LEVEL)


def _shifted(time: Literal, copy: int) -> Literal:
    """An ``xsd:dateTime`` of the scenario as copy ``copy`` has it (:data:`COPY_INTERVAL`), its offset kept."""
    moved = (datetime.fromisoformat(time.value) + copy * COPY_INTERVAL).isoformat()
    if time.value.endswith("Z"):
        moved = moved.removesuffix("+00:00") + "Z"
    return Literal(moved, datatype=XSD.dateTime)


def _pushed_by_station(base: list[Quad]) -> dict[str, str]:
    """The events a station's MPU pushes (all a station emits but state changes and rejections, which the
    central lifecycle records), by IRI, with the emitting station's short id: they go to its station graph."""
    lifecycle = {PHT.StateChangeEvent, PHT.RejectionEvent}
    types: dict[str, set[Any]] = {}
    for q in base:
        if q.predicate == RDF_TYPE:
            types.setdefault(q.subject.value, set()).add(q.object)
    return {q.subject.value: q.object.value[len(EX) + len("station-"):] for q in base
            if q.predicate == PHT.emittedBy and q.object.value.startswith(EX + "station-")
            and not types.get(q.subject.value, set()) & lifecycle}


def history(base: list[Quad], n: int) -> Iterator[Quad]:
    """``n`` copies of ``base`` with renamed IRIs and identifiers, generated one quad at a time (never held);
    what a station's MPU pushes in its station graph, as the platform stores it."""
    pushed = _pushed_by_station(base)
    positions = {p: sorted(int(q.object.value) for q in base if q.predicate == p and isinstance(q.object, Literal))
                 for p in POSITIONS}
    own = {q.subject.value for q in base if isinstance(q.subject, NamedNode) and _own_to_copy(q.subject.value)}
    for c in range(n):
        graphs = {event: station_graph(f"{station}-c{c % STATION_PAIRS}") for event, station in pushed.items()}
        names: dict[str, NamedNode] = {}

        def rename(term: Any, c: int = c, names: dict[str, NamedNode] = names) -> Any:
            if isinstance(term, NamedNode) and term.value.startswith((EX, _UUID)):
                node = names.get(term.value)
                if node is None:
                    node = names[term.value] = NamedNode(_rename_iri(term.value, c))
                return node
            return term

        for q in base:
            o = q.object
            if q.predicate in positions and isinstance(o, Literal):  # copy c's after copy c - 1's
                listed = positions[q.predicate]
                o = position_literal(len(listed) * c + listed.index(int(o.value)) + 1)
            if q.predicate == DCTERMS.identifier and q.subject.value[len(EX):].startswith(_RENAMED_IDENTIFIERS):
                local = q.subject.value[len(EX):]
                o = Literal(f"{o.value}-c{c % STATION_PAIRS if local.startswith(_STATION_LEVEL) else c}")
            if q.predicate == PHT.state and c < n - IN_FLIGHT:
                o = _ENDED.get(q.subject.value[len(EX):], o)
            if isinstance(o, Literal) and o.datatype == XSD.dateTime and q.subject.value in own:
                o = _shifted(o, c)
            yield Quad(rename(q.subject), q.predicate, rename(o), graphs.get(q.subject.value, q.graph_name))


def numbered(base: list[Quad]) -> list[Quad]:
    """``base`` with a list position for each definition without one (the fixture's federated one), after the
    others, as the service numbers every definition at registration or at start-up (``list_positions.py``), and
    an identifier for each train without one (the fixture's rejected one), as the service gives every train at
    submission (``orchestrator/lifecycle.py``): lists leave out trains without one."""
    trains = {q.subject for q in base if q.predicate == RDF_TYPE and q.object == PHT.Train}
    identified = {q.subject for q in base if q.predicate == DCTERMS.identifier}
    base = base + [Quad(t, DCTERMS.identifier, Literal(t.value[len(EX):]), CENTRAL_GRAPH)
                   for t in sorted(trains - identified, key=str)]
    listed = [int(q.object.value) for q in base if q.predicate == PHT.definitionListPosition]
    unlisted = sorted({q.subject for q in base if q.predicate == RDF_TYPE and q.object == PHT.TrainDefinition}
                      - {q.subject for q in base if q.predicate == PHT.definitionListPosition}, key=str)
    return base + [Quad(d, PHT.definitionListPosition, position_literal(max(listed, default=0) + i), CENTRAL_GRAPH)
                   for i, d in enumerate(unlisted, start=1)]


def per_copy(base: list[Quad]) -> float:
    """Distinct triples a copy adds once every station exists (station-level resources are shared)."""
    first, second = set(history(base, STATION_PAIRS)), set(history(base, 2 * STATION_PAIRS))
    return len(second - first) / STATION_PAIRS


def build(directory: Path, base: list[Quad], target: int
          ) -> tuple[EmbeddedStore, LifecycleSteps, LifecycleSteps, int, float]:
    """An on-disk store of about ``target`` triples; its lifecycle steps (of the trains in flight, and of every
    copy's), copies, and load rate (triples/s)."""
    n = max(1, round(target / per_copy(base)))
    store = EmbeddedStore(directory)
    store.load_vocabulary()
    before = len(store)
    t0 = time.perf_counter()
    store.oxigraph.bulk_extend(history(base, n))
    load_rate = (len(store) - before) / (time.perf_counter() - t0)
    # two executions of each copy's first train, so that each set of steps alone knows its executions' states
    in_flight = LifecycleSteps(n, first_copy=max(0, n - IN_FLIGHT))
    whole = LifecycleSteps(n, execution="exec-0001-leipzig")
    for steps in (in_flight, whole):
        for execution in steps.executions:
            (state,) = [q.object for q in store.quads(execution, PHT.state, None, CENTRAL_GRAPH)]
            steps.initial_state(execution, state)
    return store, in_flight, whole, n, load_rate


def bindings_for(copy: int) -> dict[str, Any]:
    """Realistic parameters: resources of copy ``copy`` (a train in the middle of the history)."""
    def ex(local: str) -> NamedNode:
        return NamedNode(_rename_iri(EX + local, copy))

    station = ex("station-aachen")
    return {
        "train": ex("train-0001"), "definition": ex("def-cohort-count"), "execution": ex("exec-0002-aachen-r1"),
        "output": ex("output-0001-leipzig"), "party": ex("agents/alice"),
        "key": ex("agents/alice/keys/3c4d5e6f708192a3b4c5d6e7"),
        "stationId": Literal(f"aachen-c{copy % STATION_PAIRS}"), "station": station, "graph": CENTRAL_GRAPH,
        "identifier": Literal(f"train-0001-c{copy}"),
        "tokenId": Literal("0f3c9a7be2d14c8f9a61d0e5b7c2a4f1"),  # token_revocations: the fixture's revoked jti
        "before": _shifted(Literal("2026-11-27T12:00:00Z", datatype=XSD.dateTime), copy),
        "onlyRequester": ex("alice"), "onlyState": NO_FILTER, "researcher": ex("alice"),
        # a keyset page of the trains list (the API's and the web view's) starting above copy's trains: for a
        # researcher's list every older train of theirs, for an operator's the window of a largest page (501
        # positions) below, as orchestrator/reads.py scans (a page costs the same wherever it starts)
        "afterPosition": position_literal(TRAINS_PER_COPY * (copy + 1) + 1), "afterId": Literal(""),
        "lowestPosition": position_literal(TRAINS_PER_COPY * (copy + 1) + 1 - 501),
        **REJECTIONS_FIRST,  # the first page of rejections.rq
        # fire_transition: a running execution reported done by its station
        "resource": ex("exec-0002-aachen-r2"), "from": PHT.Running, "to": PHT.OutputUnderReview,
        "role": PHT.StationRole, "agent": station, "event": ex("bench-event"),
        "time": Literal("2026-11-28T00:00:00Z", datatype=XSD.dateTime), "reason": Literal("done"),
        # the dataspace connector's queries (dataspace/): over its own graph, which this history does not have
        "agreementId": Literal("agreement-1"), "class": PHT.ContractNegotiation, "pidProperty": PHT.providerPid,
        "pid": Literal("urn:uuid:0"), "digest": Literal("00" * 32), "result": ex("results/none"),
        # the disclosure ledger (station/disclosure.py): a size range, over a graph the central store lacks
        "low": Literal("1", datatype=XSD.integer), "high": Literal("10", datatype=XSD.integer),
        # the privacy-budget ledger (station/consent_ledger.py), over a graph the central store lacks
        "project": Literal("p1"), "dataset": Literal("patients"),
    }


def definitions_window(copy: int) -> dict[str, Any]:
    """``list_definitions``' own window (its parameters are named as the trains list's): a largest page (501
    positions) starting above copy ``copy``'s definitions, as ``orchestrator/reads.py`` scans."""
    after = DEFINITIONS_PER_COPY * (copy + 1) + 1
    return {"afterPosition": position_literal(after), "afterId": Literal(""),
            "lowestPosition": position_literal(max(0, after - 501))}


BINDINGS_BY_QUERY: dict[str, Callable[[int], dict[str, Any]]] = {"list_definitions": definitions_window}
"""Queries whose parameters take other values than :func:`bindings_for`'s."""


def timed(run: Callable[[], int], reps: int, budget_s: float) -> tuple[list[float], int]:
    """Milliseconds of ``reps`` runs and the rows of the last. The first run warms caches and is not counted,
    unless it took over ``budget_s``: then it is the only one (a query of minutes is not run 20 times); runs
    stop after ``budget_s`` (at least 3)."""
    t0 = time.perf_counter()
    rows = run()
    first = (time.perf_counter() - t0) * 1000
    if first > budget_s * 1000:
        return [first], rows
    times: list[float] = []
    spent = time.perf_counter()
    while len(times) < reps and (len(times) < 3 or time.perf_counter() - spent < budget_s):
        t0 = time.perf_counter()
        rows = run()
        times.append((time.perf_counter() - t0) * 1000)
    return times, rows


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20, method="inclusive")[-1] if len(times) > 1 else times[0]


def query_runs(store: EmbeddedStore, copy: int) -> Iterator[tuple[str, Callable[[], int]]]:
    """Every named query bound to realistic parameters; an optional filter also unfiltered (``name[all]``)."""
    common = bindings_for(copy)
    for q in list_named_queries():
        values = {**common, **BINDINGS_BY_QUERY[q.name](copy)} if q.name in BINDINGS_BY_QUERY else common
        bound = {p: values[p] for p in q.parameters}
        if q.is_update:
            yield q.name, lambda b=bound, text=q.text: len(store.plan_update(text, bindings=b).change.insert)
            continue
        yield q.name, lambda b=bound, text=q.text: _rows(store, text, b)
        if "onlyRequester" in q.parameters:
            everyone = {**bound, "onlyRequester": NO_FILTER}
            yield f"{q.name}[all]", lambda b=everyone, text=q.text: _rows(store, text, b)


def _rows(store: EmbeddedStore, text: str, bindings: dict[str, Any]) -> int:
    """Runs a query to its last row (a SELECT's solutions, a CONSTRUCT's triples) and counts them."""
    result = store.query(text, bindings=bindings)
    return 1 if isinstance(result, bool) else sum(1 for _ in result)


def query_child(path: str, copy: int, reps: int, budget_s: float, skip: set[str]) -> None:
    """In a child process (``--query-child``): times the named queries not in ``skip`` over the store at
    ``path``, one JSON line each as it finishes, then one line with the child's peak RSS."""
    store = EmbeddedStore(path)
    for name, run in query_runs(store, copy):
        if name in skip:
            continue
        times, rows = timed(run, reps, budget_s)
        print(json.dumps({"name": name, "p50_ms": round(statistics.median(times), 2),
                          "p95_ms": round(p95(times), 2), "rows": rows, "runs": len(times)}), flush=True)
    hwm = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())  # not ru_maxrss: see replica_rss_mb
    print(json.dumps({"peak_rss_mb": int(hwm.group(1)) / 1024 if hwm else 0.0}), flush=True)


def measure_queries(path: Path, copy: int, args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], float]:
    """Every named query's figures, measured by child processes over the (closed) store at ``path``: a query
    still running after ``--query-timeout`` s is recorded as timed out and its child killed (pyoxigraph cannot
    cancel a query), and a new child goes on with the rest. Also the children's peak RSS."""
    results: dict[str, dict[str, Any]] = {}
    peak = 0.0
    while True:
        cmd = [sys.executable, __file__, "--query-child", str(path), "--copy", str(copy), "--reps", str(args.reps),
               "--query-budget", str(args.query_budget), "--skip", ",".join(results)]
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE)
        assert child.stdout is not None
        fd, pending_bytes, timed_out = child.stdout.fileno(), b"", False
        while True:
            if b"\n" not in pending_bytes:
                ready, _, _ = select.select([fd], [], [], args.query_timeout)
                if not ready:
                    timed_out = True
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending_bytes += chunk
                continue
            line, _, pending_bytes = pending_bytes.partition(b"\n")
            row = json.loads(line)
            if "peak_rss_mb" in row:
                peak = max(peak, row["peak_rss_mb"])
                continue
            results[row.pop("name")] = row
            print(f"  {list(results)[-1]:32} p50 {row['p50_ms']:9.1f} ms  p95 {row['p95_ms']:9.1f} ms  "
                  f"({row['rows']} rows, {row['runs']} runs)", flush=True)
        if not timed_out:
            child.wait()
            return results, peak
        child.kill()
        child.wait()
        pending = next(name for name, _ in _query_names() if name not in results)
        results[pending] = {"p50_ms": None, "p95_ms": None, "timed_out_after_s": args.query_timeout}
        print(f"  {pending:32} still running after {args.query_timeout:.0f} s: stopped", flush=True)


def _query_names() -> Iterator[tuple[str, None]]:
    for q in list_named_queries():
        yield q.name, None
        if "onlyRequester" in q.parameters:
            yield f"{q.name}[all]", None


def replica_rss_mb(store: EmbeddedStore, directory: Path) -> tuple[float, float]:
    """Peak RSS of a child that loads the store's N-Quads dump into an in-memory store, as a query worker seeds
    its replica, minus the same child's RSS before loading; and the dump's bytes per quad."""
    dump = directory / "dump.nq"
    store.oxigraph.dump(output=str(dump), format=RdfFormat.N_QUADS)
    # VmHWM, not ru_maxrss: Linux carries a parent's peak RSS over into the ru_maxrss of a child it forks
    code = (
        "import re, sys; from graph_store import EmbeddedStore; from pyoxigraph import RdfFormat;"
        "kb = lambda key: int(re.search(key + r':\\s+(\\d+)', open('/proc/self/status').read()).group(1));"
        "s = EmbeddedStore(); before = kb('VmRSS');"
        "s.oxigraph.load(path=sys.argv[1], format=RdfFormat.N_QUADS);"
        "print(before / 1024, kb('VmHWM') / 1024, len(s))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(dump)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    before, after, _ = out.stdout.split()
    per_quad = dump.stat().st_size / len(store)
    dump.unlink()
    return float(after) - float(before), per_quad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="triples in the large store")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=2000, help="change sets per size, in 4 alternating blocks")
    parser.add_argument("--reps", type=int, default=20, help="runs per named query")
    parser.add_argument("--query-budget", type=float, default=8.0, help="seconds per query before fewer runs")
    parser.add_argument("--query-timeout", type=float, default=180.0, help="seconds before a query is stopped")
    parser.add_argument("--no-replica", action="store_true", help="skip measuring a query worker's replica")
    parser.add_argument("--query-child", help=argparse.SUPPRESS)
    parser.add_argument("--copy", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--skip", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.query_child:
        query_child(args.query_child, args.copy, args.reps, args.query_budget, set(filter(None, args.skip.split(","))))
        return

    base = numbered(scenario())
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    atexit.register(shutil.rmtree, tmp, True)  # 3 GB at 10 million triples: gone when the run ends, failed or not
    small, small_steps, _, _, _ = build(tmp / "small", base, args.small)
    t0 = time.perf_counter()
    large, large_steps, history_steps, copies, load_rate = build(tmp / "large", base, args.size)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    for store in (small, large):  # a bulk load skips RocksDB's compaction, which a store grown by writes has had
        store.oxigraph.optimize()
    compacted = time.perf_counter() - t0
    t0 = time.perf_counter()
    for store in (small, large):  # a bulk load is not counted: the graphs' sizes are counted once after it
        store.recount()           # (graph_store/_sizes.py), as a restore would; every write keeps them from then on
    recounted = time.perf_counter() - t0
    size_small, size_large = len(small), len(large)
    print(f"large store: {size_large:,} quads ({copies:,} copies: {3 * copies:,} trains, {7 * copies:,} executions, "
          f"{2 * STATION_PAIRS} stations, {IN_FLIGHT} trains in flight), streamed in at {load_rate:,.0f} triples/s "
          f"({built:.0f} s with the look-ups after), compacted in {compacted:.0f} s, sizes counted in {recounted:.1f} s; small store {size_small:,} quads",
          flush=True)
    tune_garbage_collection()  # as the central service's entry point does after start-up

    # Queries first, on the history as generated (the writes below make running executions), in child processes
    large.close()
    queries, query_rss_mb = measure_queries(tmp / "large", copies - IN_FLIGHT // 2, args)
    large = EmbeddedStore(tmp / "large")

    # warm-up: caches, RocksDB blocks
    rate(small, small_steps, 200), rate(large, large_steps, 200), rate(large, history_steps, 200)
    small_rates, large_rates, history_rates = [], [], []
    for _ in range(4):  # alternate so that machine noise hits both sizes alike
        small_rates.append(rate(small, small_steps, args.steps // 4))
        large_rates.append(rate(large, large_steps, args.steps // 4))
        history_rates.append(rate(large, history_steps, args.steps // 4))
    r_small, r_large = statistics.median(small_rates), statistics.median(large_rates)
    r_history = statistics.median(history_rates)
    print(f"validated change sets/s at {size_small:,} quads: {r_small:,.0f} (blocks {[round(r) for r in small_rates]})")
    print(f"validated change sets/s at {size_large:,} quads: {r_large:,.0f} "
          f"(blocks {[round(r) for r in large_rates]}); "
          f"moving an execution of every copy in turn (the whole history, cold in every cache) instead of the "
          f"trains in flight: {r_history:,.0f} (blocks {[round(r) for r in history_rates]})")
    stopped = sorted(n for n in queries if queries[n]["p95_ms"] is None)
    measured = [n for n in queries if queries[n]["p95_ms"] is not None]
    worst = max(measured, key=lambda n: queries[n]["p95_ms"])
    over = sorted(n for n in measured if queries[n]["p95_ms"] > 200) + stopped
    max_p95 = args.query_timeout * 1000 if stopped else queries[worst]["p95_ms"]
    own_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_rss_mb = max(own_rss_mb, query_rss_mb)
    print(f"worst query p95: {stopped[0] + ' (stopped)' if stopped else worst} {max_p95:.1f} ms; "
          f"over 200 ms: {over or 'none'}")
    print(f"peak RSS: {own_rss_mb:.0f} MB (loading, writes), {query_rss_mb:.0f} MB (the queries' process)")
    replica = per_quad = None
    if not args.no_replica:
        small.close()
        replica, per_quad = replica_rss_mb(large, tmp)
        print(f"one query worker's in-memory replica of {size_large:,} quads: {replica:,.0f} MB "
              f"({replica * 1024 / size_large:.2f} KB per quad; dump {per_quad:.0f} bytes per quad)")
    else:
        small.close()
    large.close()
    print(json.dumps({
        "ratio_10m_10k": round(r_large / r_small, 3),
        "ratio_10m_10k_whole_history": round(r_history / r_small, 3),
        "validated_writes_per_s_large": round(r_large, 1),
        "validated_writes_per_s_10k": round(r_small, 1),
        "max_query_p95_ms": max_p95,
        "max_query": stopped[0] if stopped else worst,
        "queries_stopped": stopped,
        "queries_over_200_ms": over,
        "peak_rss_mb": round(peak_rss_mb, 1),
        "load_triples_per_s": round(load_rate),
        "compaction_s": round(compacted, 1),
        "recount_s": round(recounted, 1),
        "replica_rss_mb": None if replica is None else round(replica),
        "dump_bytes_per_quad": None if per_quad is None else round(per_quad),
        "store_quads_large": size_large,
        "store_quads_small": size_small,
        "queries": queries,
    }))


if __name__ == "__main__":
    main()

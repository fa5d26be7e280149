"""Benchmark: validated, atomic change sets per second on the embedded store at 10 thousand and 1 million
triples, side by side in one run, against pySHACL baselines.

Usage: .venv/bin/python benchmarks/validated_writes.py [--large 1000000] [--small 10000] [--steps 4000]

A change set is one lifecycle step of an execution (guarded state change + a PROV state-change event,
12 quads). The store is the on-disk default back-end. Peak RSS is read before any pySHACL baseline runs,
so it is the platform's own footprint; the whole-graph pySHACL baseline at the large size runs in a child
process for the same reason. Last line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyshacl
import rdflib

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _data import LifecycleSteps, copies, rate, scenario  # noqa: E402

from graph_store import CENTRAL_GRAPH, PHT, EmbeddedStore, load_schema, tune_garbage_collection  # noqa: E402
from graph_store._convert import to_rdflib  # noqa: E402


def build(directory: Path, base: list, target: int) -> tuple[EmbeddedStore, LifecycleSteps]:
    n = max(1, round(target / len(base)))
    store = EmbeddedStore(directory)
    store.load_vocabulary()
    store.oxigraph.bulk_extend(copies(base, n))
    steps = LifecycleSteps(n)
    for execution in steps.executions:
        (state,) = [q.object for q in store.quads(execution, PHT.state, None, CENTRAL_GRAPH)]
        steps.initial_state(execution, state)
    return store, steps


def rdflib_graph(store: EmbeddedStore) -> rdflib.Graph:
    g = rdflib.Graph()
    for q in store.quads(None, None, None, CENTRAL_GRAPH):
        g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
    return g


def pyshacl_per_change(store: EmbeddedStore, steps: LifecycleSteps, count: int) -> float:
    """The naive approach: pySHACL on the touched resources (their stored triples + the change) per write."""
    schema = load_schema()
    t0 = time.perf_counter()
    for _ in range(count):
        change = steps.next()
        g = rdflib.Graph()
        subjects = {q.subject for q in change.insert | change.delete}
        for s in subjects:
            for q in store.quads(s, None, None, CENTRAL_GRAPH):
                if q not in change.delete:
                    g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
        for q in change.insert:
            g.add((to_rdflib(q.subject), to_rdflib(q.predicate), to_rdflib(q.object)))
        conforms, _, _ = pyshacl.validate(g, shacl_graph=schema.shapes, ont_graph=schema.ontology, inference="none")
        if conforms:
            store.apply(change)
    return count / (time.perf_counter() - t0)


def pyshacl_whole_graph(g: rdflib.Graph, reps: int) -> float:
    schema = load_schema()
    t0 = time.perf_counter()
    for _ in range(reps):
        pyshacl.validate(g, shacl_graph=schema.shapes, ont_graph=schema.ontology, inference="none")
    return reps / (time.perf_counter() - t0)


def whole_graph_in_child(target: int, timeout: float) -> float | None:
    """Rate of pySHACL re-validating a ``target``-triple graph, in a child process; None on time-out."""
    code = (
        "import sys,time; sys.path[:0]=[%r,%r]; from validated_writes import *; import tempfile;"
        "d=tempfile.mkdtemp(); s,_=build(Path(d)/'s', scenario(), %d); g=rdflib_graph(s);"
        "print(pyshacl_whole_graph(g, 1))" % (str(Path(__file__).parent), str(Path(__file__).parent.parent), target)
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, check=True)
    except subprocess.TimeoutExpired:
        return None
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=4000, help="change sets per size, in 4 alternating blocks")
    parser.add_argument("--child-timeout", type=float, default=600.0)
    args = parser.parse_args()

    base = scenario()
    tmp = Path(tempfile.mkdtemp(prefix="bench-validated-writes-"))
    t0 = time.perf_counter()
    small, small_steps = build(tmp / "small", base, args.small)
    large, large_steps = build(tmp / "large", base, args.large)
    size_small, size_large = len(small), len(large)
    print(f"stores built in {time.perf_counter() - t0:.1f} s: {size_small:,} and {size_large:,} quads "
          f"(incl. vocabulary; scenario of {len(base)} triples copied)")
    tune_garbage_collection()  # as the central service's entry point does after start-up
    rate(small, small_steps, 200), rate(large, large_steps, 200)  # warm-up: caches, RocksDB blocks
    small_rates, large_rates = [], []
    block = args.steps // 4
    for _ in range(4):  # alternate so that machine noise hits both sizes alike
        small_rates.append(rate(small, small_steps, block))
        large_rates.append(rate(large, large_steps, block))
    r_small = sorted(small_rates)[len(small_rates) // 2]
    r_large = sorted(large_rates)[len(large_rates) // 2]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"validated change sets/s at {size_small:,} quads: {r_small:,.0f} (blocks: {[round(r) for r in small_rates]})")
    print(f"validated change sets/s at {size_large:,} quads: {r_large:,.0f} (blocks: {[round(r) for r in large_rates]})")
    print(f"ratio large/small: {r_large / r_small:.2f}")
    print(f"peak RSS of this process at {size_large:,} quads: {peak_rss_mb:.0f} MB")

    per_change = pyshacl_per_change(small, small_steps, 100)
    print(f"baseline pySHACL per change set (touched resources only): {per_change:,.1f} change sets/s")
    small_graph = rdflib_graph(small)
    whole_small = pyshacl_whole_graph(small_graph, 3)
    print(f"baseline pySHACL re-validating the whole graph ({len(small_graph):,} triples): {whole_small:.2f} change sets/s")
    whole_large = whole_graph_in_child(args.large, args.child_timeout)
    if whole_large is None:
        print(f"baseline pySHACL re-validating the whole graph ({args.large:,} triples): did not finish "
              f"within {args.child_timeout:.0f} s (< {1 / args.child_timeout:.4f} change sets/s)")
    else:
        print(f"baseline pySHACL re-validating the whole graph ({args.large:,} triples): {whole_large:.4f} change sets/s")
    small.close(), large.close()
    print(json.dumps({
        "validated_writes_per_s_1m": round(r_large, 1),
        "validated_writes_per_s_10k": round(r_small, 1),
        "ratio_1m_10k": round(r_large / r_small, 3),
        "pyshacl_per_write_per_s": round(per_change, 2),
        "pyshacl_whole_graph_per_s_10k": round(whole_small, 3),
        "pyshacl_whole_graph_per_s_1m": None if whole_large is None else round(whole_large, 5),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "store_quads_small": size_small,
        "store_quads_large": size_large,
    }))


if __name__ == "__main__":
    main()

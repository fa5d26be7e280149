"""The differencing check against 10,000 earlier releases at a station (issue 18, target: p50 <= 50 ms).

A station's disclosure graph (station/disclosure.py, an embedded on-disk store) is filled with ``--releases``
releases over a dataset of ``--rows`` rows (bulk-loaded: each is what ``record_release`` writes, cohort RDF included),
then the check of a new cohort (``DisclosureLedger.near``: the named size-range query, then the member sets'
difference) is timed ``--checks`` times, on the store as the agent opens it: cohort sizes spread over the whole
dataset (``differencing_check_ms``), and the dense case, every release's size within 100 of the new one's
(``differencing_check_dense_ms``). ``dispatch_check_ms`` belongs to issue 18 item 5 and is not measured here.

Run: ``.venv/bin/python benchmarks/disclosure.py [--releases 10000] [--rows 10000] [--checks 200]`` (about three minutes, mostly building the releases).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from pyoxigraph import Quad

from station.cohorts import Measured, parse_cohort
from station.disclosure import DisclosureLedger, HeldCohort, open_ledger, release_quads

VERSION = "sha256:" + "ab" * 32


def _members(rng: random.Random, rows: int, size: int) -> int:
    members = 0
    for i in rng.sample(range(rows), size):
        members |= 1 << i
    return members


def _fill(ledger: DisclosureLedger, rng: random.Random, *, releases: int, rows: int, low: int, high: int) -> None:
    """Write ``releases`` releases as ``record_release`` would (``release_quads``), in one bulk load (writing them
    validated one by one takes minutes and is not what is measured)."""
    quads: list[Quad] = []
    for i in range(releases):
        size = rng.randint(low, high)
        quads += release_quads(HeldCohort(
            f"https://pht.example.org/id/executions/bench-{i}", "count (sha256:ab)",
            parse_cohort(f"age >= {i % 90} AND sex = F"), Measured(_members(rng, rows, size), size, VERSION)))
    ledger.store.oxigraph.extend(quads)


def _time_checks(ledger: DisclosureLedger, rng: random.Random, *, checks: int, rows: int, low: int,
                 high: int) -> tuple[float, float, int]:
    """p50 and p95 of ``checks`` differencing checks (ms), and how many found a near release."""
    times, hits = [], 0
    for _ in range(checks):
        size = rng.randint(low, high)
        measured = Measured(_members(rng, rows, size), size, VERSION)
        start = time.perf_counter()
        hits += bool(ledger.near(measured, 5))
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(18)
    figures: dict[str, object] = {}
    for name, (low, high) in {"spread": (0, args.rows), "dense": (2_000, 2_100)}.items():
        with tempfile.TemporaryDirectory() as tmp:
            with open_ledger(Path(tmp)) as ledger:
                start = time.perf_counter()
                _fill(ledger, rng, releases=args.releases, rows=args.rows, low=low, high=high)
                print(f"{name}: {args.releases} releases loaded in {time.perf_counter() - start:.1f} s")
            with open_ledger(Path(tmp)) as ledger:  # as the agent opens it for a check
                ledger.near(Measured(0, 0, VERSION), 5)  # warm: the query's parse, the store's caches
                p50, p95, hits = _time_checks(ledger, rng, checks=args.checks, rows=args.rows, low=low, high=high)
        print(f"{name}: differencing check p50 {p50:.2f} ms, p95 {p95:.2f} ms ({hits} of {args.checks} found one)")
        key = "differencing_check_ms" if name == "spread" else "differencing_check_dense_ms"
        figures[key], figures[key.replace("_ms", "_p95_ms")] = round(p50, 2), round(p95, 2)
    figures["dispatch_check_ms"] = None
    figures["dispatch_check_note"] = "issue 18 item 5 (dispatch-time check), not built yet"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

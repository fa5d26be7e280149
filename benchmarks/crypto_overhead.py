"""What signed trains, end-to-end encryption and station-signed records add to a hop, side by side in one run
(issue 14's benchmark), and how long ``pht verify`` takes for a 10-hop chain.

The same incremental train of ``benchmarks/sized-train`` (it reads its input and writes BYTES random bytes) runs
through a whole local platform (central service, agents, MPUs; the process runtime, so the engine's start-up does
not drown the figures) twice per repetition, alternately:

* **before**: the commit before the trust work (``--before``, default ``638c64c``: trains unsigned, outputs in
  plain text, no execution records), checked out into a temporary git worktree;
* **after**: this tree: the researcher signs the request, each station verifies it and pins the key, opens its
  input, encrypts its output to the next reader and signs its record, the central service verifies the record.

Each side runs in its own Python process (``--measure``) with that tree first on ``sys.path``. A hop's time is the
train's wall time (submit to finished) divided by its stops; ``added_per_hop_s`` is the median difference for a
small output, ``added_ratio_10mb`` the median relative difference for a 10 MB output. ``verify_10_hops_s`` is the
median time of ``pht verify``'s work (fetching the train's provenance and checking the whole chain) for a 10-stop
train, in this tree.

Run: .venv/bin/python benchmarks/crypto_overhead.py [--repeat 5] [--before 638c64c]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SMALL, LARGE = 16, 10 * 1024**2


def measure(tree: Path, stops: int, size: int, repeat: int, *, verify: bool) -> dict[str, list[float]]:
    """In this process, with ``tree`` first on sys.path: per-hop seconds of ``repeat`` trains (and verify times)."""
    sys.path.insert(0, str(tree))
    from local_platform import LocalPlatform, StationSpec
    from station.policy import StationPolicy
    from station.runtimes.process import folder_digest

    policy = StationPolicy(requires_approval=False, requires_output_review=False)
    stations = [f"s{i}" for i in range(stops)]
    hops, verifies = [], []
    with tempfile.TemporaryDirectory(prefix="pht-crypto-") as tmp:
        root = Path(tmp)
        specs = []
        for sid in stations:
            (root / "data" / sid).mkdir(parents=True)
            specs.append(StationSpec(sid, root / "data" / sid, policy))
        with LocalPlatform(root / "platform", specs, runtime="process", poll_interval_s=0.05) as platform:
            train = HERE / "sized-train"
            alice = platform.client("alice")
            alice.register_definition({"id": "sized", "title": "sized", "image_name": str(train),
                                       "image_digest": folder_digest(train), "mode": "incremental",
                                       "route": stations, "parameters": [{"name": "BYTES", "datatype": "integer"}]})
            alice.wait(alice.submit("sized", {"BYTES": str(size)}), timeout_s=300)  # warm-up
            for _ in range(repeat):
                start = time.perf_counter()
                tid = alice.submit("sized", {"BYTES": str(size)})
                final = alice.wait(tid, timeout_s=300)
                hops.append((time.perf_counter() - start) / stops)
                if final["state"] != "finished":
                    raise SystemExit(f"the benchmark train ended {final['state']}")
                if verify:
                    from datetime import datetime, timezone

                    from client.execution_records import verify_chain
                    start = time.perf_counter()
                    iri = str(alice.train(tid)["iri"])
                    verdict = verify_chain(alice.provenance(iri), iri, now=datetime.now(timezone.utc))
                    verifies.append(time.perf_counter() - start)
                    if not verdict.verified:
                        raise SystemExit(f"the benchmark train does not verify: {verdict.breaks}")
    return {"hops": hops, "verifies": verifies}


def run_side(tree: Path, stops: int, size: int, repeat: int, *, verify: bool = False) -> dict[str, list[float]]:
    """:func:`measure` in a fresh Python process for ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--measure", str(tree), "--stops", str(stops),
                          "--size", str(size), "--repeat", str(repeat)] + (["--verify"] if verify else []),
                         env=env, check=True, capture_output=True, text=True, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", default="638c64c", help="the commit before the trust work")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stops", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=SMALL, help=argparse.SUPPRESS)
    parser.add_argument("--verify", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.stops, args.size, args.repeat, verify=args.verify)))
        return
    with tempfile.TemporaryDirectory(prefix="pht-before-") as tmp:
        before = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(before), args.before], check=True,
                       capture_output=True)
        try:
            shutil.copytree(HERE / "sized-train", before / "benchmarks" / "sized-train", dirs_exist_ok=True)
            small: dict[str, list[float]] = {"before": [], "after": []}
            large: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(args.repeat):  # alternate the sides, one train each time, so drift hits both alike
                for figures, size in ((small, SMALL), (large, LARGE)):
                    figures["before"] += run_side(before, 3, size, 1)["hops"]
                    figures["after"] += run_side(REPO, 3, size, 1)["hops"]
                print(f"repetition {i + 1}/{args.repeat}: small {small['before'][-1]:.3f} -> {small['after'][-1]:.3f} "
                      f"s/hop, 10 MB {large['before'][-1]:.3f} -> {large['after'][-1]:.3f} s/hop", flush=True)
            verify = run_side(REPO, 10, SMALL, args.repeat, verify=True)["verifies"]
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(before)], check=False,
                           capture_output=True)
    added = statistics.median(a - b for a, b in zip(small["after"], small["before"], strict=True))
    ratio = statistics.median((a - b) / b for a, b in zip(large["after"], large["before"], strict=True))
    print(f"small output: {statistics.median(small['before']):.3f} s/hop before, "
          f"{statistics.median(small['after']):.3f} after (median added {added:.3f} s)")
    print(f"10 MB output: {statistics.median(large['before']):.3f} s/hop before, "
          f"{statistics.median(large['after']):.3f} after (median added {ratio:.1%})")
    print(f"pht verify, 10 hops: median {statistics.median(verify):.3f} s over {len(verify)} trains")
    print(json.dumps({"added_per_hop_s": round(added, 4), "added_ratio_10mb": round(ratio, 4),
                      "verify_10_hops_s": round(statistics.median(verify), 4),
                      "before": args.before, "repeat": args.repeat}))


if __name__ == "__main__":
    main()

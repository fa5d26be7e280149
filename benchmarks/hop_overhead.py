"""Platform overhead per hop: a 3-station incremental train of a trivial container, against 3 plain
``docker run``s of the same image, side by side in one run (issue 4's benchmark).

A hop is one station's execution: approval by policy, image check by digest, the run under the security
settings (no network, read-only, limits, output volume), packing and reviewing the output, recording it,
releasing it to the object store, and the next station fetching and verifying it. The plain baseline is
``docker run --rm --network none --tmpfs /pht/output IMAGE`` of the same image (the train needs somewhere
to write). Overhead per hop = (train wall time - 3 plain runs) / 3,
per repetition; the median over repetitions is reported.

Run: .venv/bin/python benchmarks/hop_overhead.py [--repeat 5] [--poll 0.05]
Needs a Docker engine and the base image (scripts/start-services.sh).
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from local_platform import LocalPlatform, StationSpec  # noqa: E402
from station.policy import StationPolicy  # noqa: E402

STATIONS = ("s1", "s2", "s3")


def plain_runs(image: str) -> float:
    start = time.perf_counter()
    for _ in STATIONS:
        subprocess.run(["docker", "run", "--rm", "--network", "none", "--tmpfs", "/pht/output:uid=10001,gid=10001",
                        image], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.05, help="agent poll interval (s)")
    args = parser.parse_args()
    policy = StationPolicy(requires_approval=False, requires_output_review=False)
    with tempfile.TemporaryDirectory(prefix="pht-hop-") as tmp:
        root = Path(tmp)
        specs = []
        for sid in STATIONS:
            (root / "data" / sid).mkdir(parents=True)
            specs.append(StationSpec(sid, root / "data" / sid, policy))
        with LocalPlatform(root / "platform", specs, runtime="docker", poll_interval_s=args.poll) as platform:
            image = platform.build_image(HERE / "trivial-train", "pht-bench/trivial:latest")
            alice = platform.client("alice")
            alice.register_definition({"id": "trivial", "title": "trivial", "image_name": image.name,
                                       "image_digest": image.digest, "mode": "incremental", "route": list(STATIONS)})
            plain_runs(image.name)  # warm the engine's caches for both sides
            alice.wait(alice.submit("trivial"))
            trains, plains, overheads = [], [], []
            for i in range(args.repeat):
                plain = plain_runs(image.name)
                start = time.perf_counter()
                train = alice.wait(alice.submit("trivial"))
                took = time.perf_counter() - start
                assert train["state"] == "finished", train
                trains.append(took)
                plains.append(plain)
                overheads.append((took - plain) / len(STATIONS))
                print(f"repetition {i + 1}: train {took:.2f} s, 3 plain docker runs {plain:.2f} s, "
                      f"overhead per hop {overheads[-1]:.3f} s")
    result = {"overhead_per_hop_s": round(statistics.median(overheads), 3),
              "docker_run_s": round(statistics.median(plains) / len(STATIONS), 3),
              "train_s": round(statistics.median(trains), 3), "hops": len(STATIONS), "repeat": args.repeat,
              "poll_interval_s": args.poll}
    print(f"median: train {result['train_s']} s, plain docker run {result['docker_run_s']} s per hop, "
          f"overhead {result['overhead_per_hop_s']} s per hop")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

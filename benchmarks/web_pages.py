"""Benchmark: server time of the web view's pages with 1,000 trains (embedded on-disk store, in-process).

The service is built with ``create_app`` and called through Starlette's TestClient (no network): each
request's time is token check + named queries + template rendering + the in-process ASGI hand-over.
Measured: ``GET /ui/trains`` listing all 1,000 trains on one page (an operator's view, the default page size
of 1,000), the same with a page of 50, and one train's page. The trains are made through the lifecycle
engine: a third have passed their first station, some are finished, some cancelled, the rest queued.
Last line: one JSON object.

Usage: .venv/bin/python benchmarks/web_pages.py [--trains 1000] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")

from fastapi.testclient import TestClient  # noqa: E402

from graph_store import EmbeddedStore  # noqa: E402
from orchestrator.app import create_app  # noqa: E402
from orchestrator.auth import issue_token  # noqa: E402
from orchestrator.principal import Principal, Role  # noqa: E402
from orchestrator.settings import DEMO_SECRET, Settings  # noqa: E402

KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADw+5Be8pE6f1TCQ5ILUvhMbG4vSCtzKjLvFYye8Qd6M=\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "ab" * 32
STATIONS = ("aachen", "leipzig", "cologne")
STOP = [("waiting-for-approval", Role.STATION), ("approved", Role.STATION_ADMIN), ("pulling", Role.STATION),
        ("running", Role.STATION), ("output-under-review", Role.STATION), ("released", Role.STATION_ADMIN)]


def auth(subject: str, role: Role) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(DEMO_SECRET, subject=subject, roles=[role], ttl_s=36000)}


def register(client: TestClient, ops: dict[str, str], alice: dict[str, str]) -> None:
    for sid in STATIONS:
        r = client.post("/api/stations", headers=ops, json={"id": sid, "title": f"{sid} station", "owner": sid,
                                                            "public_keys": [KEY]})
        assert r.status_code == 201, r.text
    for body in ({"id": "count", "title": "Cohort count", "image_name": "pht/count", "image_digest": DIGEST,
                  "mode": "incremental", "route": list(STATIONS)},
                 {"id": "fedavg", "title": "FedAvg", "image_name": "pht/fedavg", "image_digest": DIGEST,
                  "mode": "federated", "route": ["aachen", "leipzig"], "rounds": 2, "aggregator": "cologne"}):
        r = client.post("/api/definitions", headers=alice, json=body)
        assert r.status_code == 201, r.text


def make_trains(client: TestClient, n: int) -> str:
    """``n`` trains in a mix of states; returns the id of a finished one (for the train page)."""
    life = client.app.state.services.lifecycle  # type: ignore[attr-defined]
    alice = Principal("alice", frozenset({Role.RESEARCHER}))

    def at(sid: str, role: Role) -> Principal:
        return Principal(f"{role.value}-{sid}", frozenset({role}), sid)

    finished = ""
    for i in range(n):
        tid = life.submit(alice, definition_id="count" if i % 2 else "fedavg", parameters={})
        if i % 10 == 9:
            life.cancel(alice, train_id=tid, reason="not needed any more")
            continue
        stations = STATIONS if i % 20 == 1 else STATIONS[:1] if i % 3 == 0 else ()
        for k, sid in enumerate(stations):
            for to, role in STOP:
                life.step(at(sid, role), execution_id=f"{tid}.r1-s{k}", to=to)
        if len(stations) == 3:
            finished = tid
    return finished


def timed(client: TestClient, url: str, headers: dict[str, str], n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(url, headers=headers)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[-500:]
    return times


def pct(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trains", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    ops, alice = auth("ops", Role.OPERATOR), auth("alice", Role.RESEARCHER)
    # the pages over the lifecycle engine's trains (Lifecycle.submit, no stations): unsigned
    settings = Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False)
    with tempfile.TemporaryDirectory(prefix="bench-web-") as folder, \
            EmbeddedStore(Path(folder) / "store") as store, TestClient(create_app(settings, store=store)) as client:
        t0 = time.perf_counter()
        register(client, ops, alice)
        finished = make_trains(client, args.trains)
        print(f"{args.trains} trains made in {time.perf_counter() - t0:.1f} s; store holds {len(store):,} quads")
        page = client.get("/ui/trains", headers=ops)
        listed = page.text.count("<tr data-train=")
        assert listed == args.trains, f"the page lists {listed} trains, not {args.trains}"
        print(f"GET /ui/trains lists {listed} trains on one page ({len(page.content) / 1024:.0f} KiB of HTML)")
        timed(client, "/ui/trains", ops, 3)  # warm-up
        full = timed(client, "/ui/trains", ops, args.requests)
        small = timed(client, "/ui/trains?limit=50", ops, args.requests)
        train = timed(client, f"/ui/trains/{finished}", ops, args.requests)
        services = client.app.state.services  # type: ignore[attr-defined]
        from orchestrator.web.views import train_rows

        who = Principal("ops", frozenset({Role.OPERATOR}))
        data = []
        for _ in range(args.requests):
            t0 = time.perf_counter()
            train_rows(services, who, None)
            data.append((time.perf_counter() - t0) * 1000)
    result = {
        "trains_page_ms_1000": round(statistics.median(full), 1),
        "trains_page_p95_ms_1000": round(pct(full, 0.95), 1),
        "trains_query_ms_1000": round(statistics.median(data), 1),
        "trains_page_50_ms": round(statistics.median(small), 1),
        "train_page_ms": round(statistics.median(train), 1),
        "trains": args.trains,
        "requests": args.requests,
    }
    print(f"GET /ui/trains (all {args.trains}): median {result['trains_page_ms_1000']} ms, "
          f"p95 {result['trains_page_p95_ms_1000']} ms; of which the three queries (trains_overview, list_definitions, "
          f"list_stations) and shaping: median {result['trains_query_ms_1000']} ms")
    print(f"GET /ui/trains?limit=50: median {result['trains_page_50_ms']} ms (the query still reads every train)")
    print(f"GET /ui/trains/<finished train>: median {result['train_page_ms']} ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

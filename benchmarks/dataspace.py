"""Benchmark: two dataspace connectors on loopback (uvicorn, embedded in-memory stores).

Measured: ``negotiate_and_pull_s``, a consumer's whole negotiation (contract request, agreement, verification,
finalized) and pull transfer (transfer request, start with a single-use token, GET of the data, completion) of
a 10 MB published result, median of ``--repeat`` runs; ``catalog_p50_ms``, a catalog request (identity token
checked, message validated, catalog of ``--results`` published results answered) as the consumer times it,
median of ``--requests``; and the first catalog request after a publish (built from the graph and checked
against the Catalog schema: ``catalog_first_ms``). Last line: one JSON object.

Usage: .venv/bin/python benchmarks/dataspace.py [--repeat 5] [--results 1000] [--requests 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataspace import (  # noqa: E402
    Connector,
    ConnectorSettings,
    IdentityIssuer,
    Policy,
    TrustedIssuers,
    connector_app,
)
from graph_store import EmbeddedStore, tune_garbage_collection  # noqa: E402
from local_platform.platform import Served, serve_in_thread  # noqa: E402

PURPOSE, CONSORTIUM = "cancer-research", "urn:consortium:bench"


def connector(work: Path, name: str, issuer: IdentityIssuer, **claims: tuple[str, ...]) -> tuple[Connector, Served]:
    store = EmbeddedStore(None)
    store.load_vocabulary()
    token = issuer.issue(f"urn:participant:{name}", **claims)
    c = Connector(ConnectorSettings(participant_id=f"urn:participant:{name}", base_url="http://unset",
                                    data_dir=work / name, base_iri=f"https://{name}.example.org/id/"),
                  store, trusted=TrustedIssuers({issuer.issuer: issuer.key.public_key()}),
                  identity_token=lambda: token)
    served = serve_in_thread(connector_app(c), name)
    c.serving_at(served.url)
    return c, served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    tune_garbage_collection()
    issuer = IdentityIssuer.generate("urn:issuer:bench")
    policy = Policy.parse(f"purpose={PURPOSE},member={CONSORTIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        provider, p_served = connector(work, "provider", issuer)
        consumer, c_served = connector(work, "consumer", issuer, memberships=(CONSORTIUM,), purposes=(PURPOSE,))
        big = work / "result.bin"
        big.write_bytes(os.urandom(10_000_000))
        result = provider.provider.publish(train="https://pht.example.org/id/trains/bench", title="10 MB",
                                           data=big, policy=policy)
        catalog = consumer.consumer.request_catalog(p_served.url)
        dataset = next(d for d in catalog["dataset"] if d["@id"] == result.iri.value)
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            agreement = consumer.consumer.negotiate(p_served.url, dataset, provider_id=catalog["participantId"])
            data = consumer.consumer.pull(p_served.url, agreement, sha256=result.sha256)
            times.append(time.perf_counter() - start)
            assert len(data) == 10_000_000
        print(f"negotiate + pull 10 MB: {', '.join(f'{t:.3f}' for t in times)} s")
        small = work / "small.bin"
        t0 = time.perf_counter()
        for i in range(args.results - 1):
            small.write_bytes(i.to_bytes(4, "big"))
            provider.provider.publish(train=f"https://pht.example.org/id/trains/t{i}", title=f"result {i}",
                                      data=small, policy=policy)
        print(f"published {args.results - 1} more results in {time.perf_counter() - t0:.1f} s")
        start = time.perf_counter()
        catalog = consumer.consumer.request_catalog(p_served.url)
        first_ms = (time.perf_counter() - start) * 1000
        assert len(catalog["dataset"]) == args.results
        latencies = []
        for _ in range(args.requests):
            start = time.perf_counter()
            consumer.consumer.request_catalog(p_served.url)
            latencies.append((time.perf_counter() - start) * 1000)
        print(f"catalog of {args.results}: first {first_ms:.0f} ms, then p50 {statistics.median(latencies):.1f} ms")
        p_served.stop()
        c_served.stop()
    print(json.dumps({"negotiate_and_pull_s": round(statistics.median(times), 3),
                      "catalog_p50_ms": round(statistics.median(latencies), 1),
                      "catalog_first_ms": round(first_ms, 1), "results": args.results}))


if __name__ == "__main__":
    main()

"""The differencing check against 10,000 earlier releases at a station (issue 18, target: p50 <= 50 ms).

A station's disclosure graph (station/disclosure.py, an embedded on-disk store) is filled with ``--releases``
releases over a dataset of ``--rows`` rows (bulk-loaded: each is what ``record_release`` writes, cohort RDF included),
then the check of a new cohort (``DisclosureLedger.near``: the named size-range query, then the member sets'
difference) is timed ``--checks`` times, on the store as the agent opens it: cohort sizes spread over the whole
dataset (``differencing_check_ms``), and the dense case, every release's size within 100 of the new one's
(``differencing_check_dense_ms``).

"Will it run?" before dispatch (issue 18 item 5, target: <= 100 ms for a 50-station route): ``--stations`` stations
each publish a dataset of ``--variables`` variables into their own graph (what their MPUs' signed pushes write), a
definition routes through all of them with input shapes requiring 5 variables, and ``dispatch_refusal`` (the named
query ``route_dataset_variables``, then the set lookup of ``client/input_shapes.py``) is timed ``--checks`` times
(``dispatch_check_ms``). Side by side, the same question asked of pySHACL with the same shapes over the same
descriptions (``dispatch_check_pyshacl_ms``: one validation of the 50 datasets' merged graph, the query not included),
and the registration-time check of the shapes graph against SHACL-for-SHACL (``input_shapes_check_ms``).

Run: ``.venv/bin/python benchmarks/disclosure.py [--releases 10000] [--rows 10000] [--checks 200]`` (about three
minutes, mostly building the releases); ``--only dispatch`` runs the dispatch check alone (seconds).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the project's packages before benchmarks/ (its dataspace.py names a package too)

import pyshacl  # noqa: E402
import rdflib  # noqa: E402
from pyoxigraph import Literal, NamedNode, Quad  # noqa: E402

from client.input_shapes import parse_input_shapes  # noqa: E402
from graph_store import PHT, RDF_TYPE, XSD, ChangeSet, EmbeddedStore, station_graph  # noqa: E402
from orchestrator.dispatch_check import dispatch_refusal  # noqa: E402
from orchestrator.naming import Iris  # noqa: E402
from orchestrator.principal import Principal, Role  # noqa: E402
from orchestrator.registry import DatasetSpec, DefinitionSpec, Registry, StationSpec  # noqa: E402
from station.cohorts import Measured, parse_cohort  # noqa: E402
from station.disclosure import DisclosureLedger, HeldCohort, open_ledger, release_quads  # noqa: E402

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


def _input_shapes(names: list[str]) -> str:
    head = ("@prefix sh: <http://www.w3.org/ns/shacl#> . @prefix dcat: <http://www.w3.org/ns/dcat#> .\n"
            "@prefix pht: <https://w3id.org/pht-kg/vocab#> . @prefix xsd: <http://www.w3.org/2001/XMLSchema#> .\n")
    return head + "".join(
        f"<urn:inputs:{n}> a sh:NodeShape ; sh:targetClass dcat:Dataset ; sh:property [ sh:path pht:variable ; "
        f"sh:qualifiedMinCount 1 ; sh:qualifiedValueShape [ sh:property [ sh:path pht:variableName ; "
        f'sh:hasValue "{n}" ] , [ sh:path pht:variableDatatype ; sh:hasValue xsd:integer ] ] ] .\n' for n in names)


def _dispatch_check(*, stations: int, variables: int, checks: int) -> dict[str, object]:
    """p50/p95 of the check before dispatch for a route of ``stations`` stations, and pySHACL's on the same data."""
    store = EmbeddedStore()
    store.load_vocabulary()
    iris = Iris("https://pht.example.org/id/")
    registry = Registry(store, iris)
    operator = Principal(subject="bench", roles=frozenset({Role.OPERATOR}))
    ids = [f"station-{i:02d}" for i in range(stations)]
    merged = rdflib.Graph()
    for sid in ids:
        registry.station(operator, StationSpec(sid, sid, sid))
        dataset = registry.dataset(operator, DatasetSpec(f"{sid}-data", "data", sid))
        g, quads = station_graph(sid), [Quad(dataset, RDF_TYPE, NamedNode("http://www.w3.org/ns/dcat#Dataset"),
                                             station_graph(sid))]
        for j in range(variables):
            v = NamedNode(f"{dataset.value}/variables/v{j}")
            quads += [Quad(dataset, PHT.variable, v, g), Quad(v, RDF_TYPE, PHT.Variable, g),
                      Quad(v, PHT.variableName, Literal(f"v{j}"), g), Quad(v, PHT.variableDatatype, XSD.integer, g)]
        store.apply(ChangeSet(insert=quads[1:]))
        for q in quads:
            merged.add((rdflib.URIRef(str(q.subject)[1:-1]), rdflib.URIRef(q.predicate.value),
                        rdflib.Literal(q.object.value) if isinstance(q.object, Literal) else rdflib.URIRef(str(q.object)[1:-1])))
    text = _input_shapes([f"v{j}" for j in range(0, variables, max(1, variables // 5))][:5])
    start = time.perf_counter()
    parse_input_shapes(text)
    registration = (time.perf_counter() - start) * 1000
    spec = DefinitionSpec("bench", "bench", "pht/bench", "sha256:" + "0" * 64, "incremental", ids, inputs=text)
    definition = registry.definition(Principal(subject="alice", roles=frozenset({Role.RESEARCHER})), spec).iri
    assert dispatch_refusal(store, definition, ids) is None  # warm: the query's parse, the shapes' cache
    times = []
    for _ in range(checks):
        begin = time.perf_counter()
        dispatch_refusal(store, definition, ids)
        times.append((time.perf_counter() - begin) * 1000)
    times.sort()
    shapes = rdflib.Graph().parse(data=text, format="turtle")
    pyshacl_times = []
    for _ in range(max(3, checks // 20)):
        begin = time.perf_counter()
        conforms, _, _ = pyshacl.validate(merged, shacl_graph=shapes, inference="none")
        pyshacl_times.append((time.perf_counter() - begin) * 1000)
        assert conforms
    print(f"dispatch check, {stations} stations x {variables} variables: p50 {statistics.median(times):.2f} ms, "
          f"p95 {times[int(len(times) * 0.95) - 1]:.2f} ms; pySHACL on the same descriptions "
          f"{statistics.median(pyshacl_times):.1f} ms; the shapes' SHACL-for-SHACL check {registration:.1f} ms")
    return {"dispatch_check_ms": round(statistics.median(times), 2),
            "dispatch_check_p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            "dispatch_check_pyshacl_ms": round(statistics.median(pyshacl_times), 1),
            "input_shapes_check_ms": round(registration, 1),
            "dispatch_check_route": f"{stations} stations x {variables} variables, 5 required"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--variables", type=int, default=30)
    parser.add_argument("--only", choices=("differencing", "dispatch"))
    args = parser.parse_args()
    rng = random.Random(18)
    figures: dict[str, object] = {}
    for name, (low, high) in ({} if args.only == "dispatch" else {"spread": (0, args.rows),
                                                                  "dense": (2_000, 2_100)}).items():
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
    if args.only != "differencing":
        figures.update(_dispatch_check(stations=args.stations, variables=args.variables, checks=args.checks))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

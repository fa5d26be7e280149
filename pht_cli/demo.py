"""``pht demo``: what the platform does today, end to end on the embedded default store.

Steps: open an on-disk embedded Oxigraph store in a fresh directory, load the vocabulary and shapes from
the repository, write the demo registry (stations, datasets, a train definition, a train) as ONE validated
change set, show a refused invalid write leaving the store unchanged, advance the train one lifecycle step
with a guarded compare-and-set (and show that replaying it loses), and answer two named queries.
The directory is removed at the end unless ``--keep DIR`` is given, so the demo can run again and again.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from pyoxigraph import Literal, NamedNode, Quad
from rich.console import Console
from rich.table import Table

from graph_store import (
    CENTRAL_GRAPH,
    PHT,
    ChangeSet,
    ConflictError,
    EmbeddedStore,
    ValidationFailed,
    parse_rdf,
)
from graph_store._paths import REPO_ROOT

REGISTRY = REPO_ROOT / "examples" / "registry.ttl"
DEMO = "https://pht.example.org/demo/"
RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
PROV_ASSOC = NamedNode("http://www.w3.org/ns/prov#wasAssociatedWith")
XSD_DATETIME = NamedNode("http://www.w3.org/2001/XMLSchema#dateTime")

BROKEN_DEFINITION = """
@prefix pht: <https://w3id.org/pht-kg/vocab#> .
@prefix demo: <https://pht.example.org/demo/> .
demo:def-broken a pht:TrainDefinition ;
    pht:imageName "pht/broken" ;
    pht:imageDigest "latest" ;
    pht:mode pht:Incremental ;
    pht:rounds 0 .
"""


def run(console: Console, *, keep: Path | None = None) -> None:
    """Run the demo, printing each step; raises GraphStoreError if the platform misbehaves."""
    directory = keep or Path(tempfile.mkdtemp(prefix="pht-demo-"))
    if keep is not None and keep.exists():
        shutil.rmtree(keep)
    try:
        with EmbeddedStore(directory / "store") as store:
            _steps(console, store, directory)
    finally:
        if keep is None:
            shutil.rmtree(directory, ignore_errors=True)
    console.print("\n[bold]Done.[/bold] " + (f"Store kept in {keep / 'store'}" if keep else "Demo store removed."))


def _steps(console: Console, store: EmbeddedStore, directory: Path) -> None:
    console.rule("[bold]PHT-KG demo: the knowledge graph is the system of record")
    store.load_vocabulary()
    console.print(f"1. Embedded Oxigraph store at {directory / 'store'}: loaded "
                  f"{len(store.schema.ontology_quads)} ontology and {len(store.schema.shapes_quads)} shapes triples "
                  "from ontology/ and shapes/ (never downloaded).")

    registry = parse_rdf(REGISTRY.read_bytes(), "text/turtle", CENTRAL_GRAPH)
    t0 = time.perf_counter()
    report = store.apply(ChangeSet(insert=registry))
    console.print(f"2. Wrote {REGISTRY.relative_to(REPO_ROOT)} ({len(registry)} triples: 3 stations, 3 datasets, "
                  f"a train definition, a train) as one validated change set: {report.focus_nodes_checked} focus "
                  f"nodes checked in {(time.perf_counter() - t0) * 1000:.1f} ms.")

    before = len(store)
    try:
        store.apply(ChangeSet(insert=parse_rdf(BROKEN_DEFINITION, "text/turtle", CENTRAL_GRAPH)))
        raise AssertionError("the broken definition was accepted")  # pragma: no cover
    except ValidationFailed as refused:
        console.print("3. A broken train definition is refused with the SHACL report; nothing is written "
                      f"(store size {before} -> {len(store)}):")
        for result in refused.report.results:
            console.print(f"   - {_short(result.path)}: {result.message}", highlight=False)

    train = NamedNode(DEMO + "train-1")
    step = _queue(train)
    store.apply(step)
    console.print("4. Lifecycle step submitted -> queued, guarded by the current state, with a PROV event.")
    try:
        store.apply(_queue(train))
    except ConflictError as lost:
        console.print(f"   Replaying the same step loses the compare-and-set: {lost}", highlight=False)

    console.print("5. Named queries (sparql_queries/*.rq, parameters bound as RDF terms):")
    _table(console, "trains_by_state", store.run_query("trains_by_state"), ["stateLabel", "trains"])
    _table(console, "resources_by_identifier(identifier='leipzig')",
           store.run_query("resources_by_identifier", identifier=Literal("leipzig")), ["resource", "class", "graph"])
    console.print("The central service runs on such a store with `pht serve --store DIR`: REST API under /api "
                  "(OpenAPI at /docs), SPARQL 1.1 endpoint at /sparql, Graph Store Protocol at /rdf-graphs, "
                  "tokens from `pht token issue`. Not in this build yet: station agents running trains in "
                  "containers, the MPU and its metrics, web pages (issues 4-7).")


def _queue(train: NamedNode) -> ChangeSet:
    """The submitted -> queued step of ``train`` as a guarded change set with its state-change event."""
    g = CENTRAL_GRAPH
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    event = NamedNode(f"{DEMO}event-{train.value.rsplit('/', 1)[-1]}-queued-{now}")
    central = NamedNode(DEMO + "central")
    return ChangeSet(
        guard=[Quad(train, PHT.state, PHT.Submitted, g)],
        delete=[Quad(train, PHT.state, PHT.Submitted, g)],
        insert=[
            Quad(train, PHT.state, PHT.Queued, g),
            Quad(event, RDF_TYPE, PHT.StateChangeEvent, g),
            Quad(event, PHT.eventTime, Literal(now, datatype=XSD_DATETIME), g),
            Quad(event, PHT.aboutTrain, train, g),
            Quad(event, PHT.emittedBy, central, g),
            Quad(event, PHT.fromState, PHT.Submitted, g),
            Quad(event, PHT.toState, PHT.Queued, g),
            Quad(event, PROV_ASSOC, central, g),
            Quad(event, PHT.actingRole, PHT.Operator, g),
        ],
    )


def _table(console: Console, title: str, rows: object, columns: list[str]) -> None:
    table = Table(*columns, title=title, title_justify="left")
    for row in rows:  # type: ignore[attr-defined]
        table.add_row(*(_text(row[c]) for c in columns))
    console.print(table)


def _short(term: object) -> str:
    """The local name of an IRI (after the last '#' or '/'), for printing."""
    text = str(getattr(term, "value", term))
    return text.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _text(term: object) -> str:
    return "" if term is None else str(getattr(term, "value", term))

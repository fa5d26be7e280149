"""``pht``: the command line of the platform. Thin: it parses arguments, calls the packages, prints.

Nothing imports this package; every command's logic lives in ``graph_store`` / ``orchestrator`` /
``station_mpu`` so that notebooks and services can do the same without the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from graph_store import (
    CENTRAL_GRAPH,
    ChangeSet,
    EmbeddedStore,
    GraphStoreError,
    named_query,
    parse_rdf,
)

from . import demo as demo_module

app = typer.Typer(
    help="Knowledge-graph-centric Personal Health Train platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print one sentence to stderr and return the exit to raise (code 1)."""
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(1)


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the demo store in this directory instead of a temporary one.")] = None,
) -> None:
    """Run the demo on the embedded default store.

    Example: pht demo
    """
    try:
        demo_module.run(console, keep=keep)
    except GraphStoreError as e:
        raise fail(str(e)) from None


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="RDF file (Turtle .ttl, JSON-LD .jsonld, N-Triples .nt).")],
) -> None:
    """Validate an RDF file against the project's shapes, as a write of it into an empty store would be.

    Example: pht validate examples/registry.ttl
    Exit code 0 if it conforms, 1 with the SHACL report if not.
    """
    if not file.is_file():
        raise fail(f"{file} is not a file")
    suffix = file.suffix.lstrip(".").lower()
    try:
        quads = parse_rdf(file.read_bytes(), suffix, CENTRAL_GRAPH)
        with EmbeddedStore() as store:
            report = store.validate(ChangeSet(insert=quads))
    except GraphStoreError as e:
        raise fail(f"{file}: {e}") from None
    if not report.conforms:
        errors.print(report.text(), highlight=False)
        raise fail(f"{file} does not conform to the shapes ({len(report.results)} result(s))")
    console.print(f"{file}: conforms ({len(quads)} triples, {report.focus_nodes_checked} focus nodes checked)")


@app.command()
def query(
    name: Annotated[str, typer.Argument(help="Name of a query in sparql_queries/ (without .rq).")],
    store_dir: Annotated[Path, typer.Option("--store", help="Directory of an embedded store.")],
) -> None:
    """Run a named read-only query against an embedded store and print a table.

    Example: pht query trains_by_state --store var/store
    """
    if not store_dir.is_dir():
        raise fail(f"no store at {store_dir}")
    try:
        q = named_query(name)
        if q.parameters:
            raise fail(f"{name} needs parameters ({', '.join(sorted(q.parameters))}); not supported here yet")
        with EmbeddedStore(store_dir) as store:
            print_rows(store.run_query(name))
    except GraphStoreError as e:
        raise fail(str(e)) from None


def print_rows(result: object) -> None:
    """Print SELECT results as a table (or ASK as yes/no)."""
    if isinstance(result, bool) or type(result).__name__ == "QueryBoolean":
        console.print("yes" if bool(result) else "no")
        return
    variables = [v.value for v in result.variables]  # type: ignore[attr-defined]
    table = Table(*variables)
    for row in result:  # type: ignore[attr-defined]
        table.add_row(*(_cell(row[v]) for v in variables))
    console.print(table)


def _cell(term: object) -> str:
    if term is None:
        return ""
    return getattr(term, "value", str(term))


if __name__ == "__main__":  # pragma: no cover
    app()


__all__ = ["app"]

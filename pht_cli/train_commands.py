"""``pht train ...`` and ``pht ask``: what a researcher does, through the central service's API."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pyoxigraph import Literal, NamedNode
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from client import CentralClient, ClientError
from station.archive import ArchiveError
from station.objects import ObjectStoreError, fetch_unpacked, object_store_from_url

from .output import console, errors, fail

train_app = typer.Typer(help="Submit, watch and fetch trains (researchers).", no_args_is_help=True)

CentralUrl = Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="URL of the central service.")]
Token = Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Bearer token.")]
#: how far along an execution is, for the progress bars
PROGRESS = {"queued": 0, "waiting-for-approval": 1, "approved": 2, "pulling": 3, "running": 4,
            "output-under-review": 5, "released": 6, "withheld": 6, "rejected": 6, "failed": 6, "cancelled": 6}



def _print_report(report: Any) -> None:
    results = report.get("results", []) if isinstance(report, dict) else report or []
    for r in results:
        if isinstance(r, dict):
            errors.print(f"  - {r.get('message')} (focus {r.get('focus_node')}, path {r.get('path')})",
                         highlight=False)


@train_app.command("submit")
def submit(file: Annotated[Path, typer.Argument(help="Train file (JSON): definition (id or object) and parameters.")],
           central: CentralUrl, token: Token) -> None:
    """Submit a train described by a JSON file; registers its definition first if the file contains one.

    The file: {"definition": "count" | {...definition...}, "parameters": {"NAME": "value"}}.
    Example: pht train submit trains/cohort-count/train.json --central http://127.0.0.1:8080 --token $T
    """
    try:
        document = json.loads(file.read_text())
    except OSError as e:
        raise fail(f"cannot read {file}: {e.strerror}") from None
    except ValueError as e:
        raise fail(f"{file} is not valid JSON: {e}") from None
    if not isinstance(document, dict) or "definition" not in document:
        raise fail(f"{file} needs a \"definition\" (an id or a definition object)")
    definition, parameters = document["definition"], document.get("parameters", {})
    try:
        with CentralClient(central, token) as client:
            if isinstance(definition, dict):
                known = {d["id"] for d in client.definitions()}
                if definition.get("id") not in known:
                    client.register_definition(definition)
                definition = definition.get("id")
            train_id = client.submit(str(definition), {k: str(v) for k, v in parameters.items()})
    except ClientError as e:
        if e.report:
            _print_report(e.report)
        raise fail(f"{file}: {e}") from None
    console.print(train_id)


@train_app.command("list")
def list_trains(central: CentralUrl, token: Token,
                state: Annotated[str | None, typer.Option(help="Only trains in this state.")] = None) -> None:
    """List your trains (operators: all), newest first.

    Example: pht train list --state running --central http://127.0.0.1:8080 --token $T
    """
    try:
        with CentralClient(central, token) as client:
            trains = client.trains(state)
    except ClientError as e:
        raise fail(str(e)) from None
    table = Table("train", "definition", "state", "created")
    for t in trains:
        table.add_row(t["id"], t["definition"], t["state"], t["created"])
    console.print(table)


@train_app.command("watch")
def watch(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token,
          timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
          interval: Annotated[float, typer.Option(help="Seconds between updates.")] = 0.5) -> None:
    """Watch a train live: one progress bar per station and round, until it ends.

    Exit code 0 if it finished, 1 otherwise. Example: pht train watch 6f0c... --central URL --token $T
    """
    try:
        with CentralClient(central, token) as client:
            state = watch_trains(client, {"": train_id}, console, timeout_s=timeout, interval_s=interval)[
                train_id]["state"]
            failures = [e for e in client.events(train_id)
                        if e["to_state"] in ("failed", "rejected", "withheld") and e["reason"]]
    except (ClientError, TimeoutError) as e:
        raise fail(str(e)) from None
    for e in failures[:3]:
        console.print(f"[red]{e['to_state']}[/red] {e['execution'] or 'train'}: {e['reason']}", highlight=False)
    if state != "finished":
        raise fail(f"train {train_id} ended {state}")


def watch_trains(client: CentralClient, trains: Mapping[str, str], out: Console, *, timeout_s: float = 3600,
                 interval_s: float = 0.5) -> dict[str, dict[str, Any]]:
    """One progress bar per execution (station and round) of each train, labelled with the ``trains`` key,
    until every train is terminal; returns ``{train id: train}`` (used by ``pht demo`` too)."""
    label = {tid: f"{name}: " if name else "" for name, tid in trains.items()}
    final: dict[str, dict[str, Any]] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[state]}"),
                  console=out) as progress:
        tasks: dict[str, Any] = {}
        for final in client.watch(list(trains.values()), timeout_s=timeout_s, interval_s=interval_s):
            for tid, train in final.items():
                for e in train["executions"]:
                    where = f"round {e['round']} {e['station']}" + ("" if e["stop"] is not None else " (aggregate)")
                    if e["id"] not in tasks:
                        tasks[e["id"]] = progress.add_task(label[tid] + where, total=6, state=e["state"])
                    progress.update(tasks[e["id"]], completed=PROGRESS.get(e["state"], 0), state=e["state"])
    return final


@train_app.command("results")
def results(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token,
            out: Annotated[Path, typer.Option(help="Folder to unpack the result into (must not exist).")],
            objects: Annotated[str, typer.Option("--objects", envvar="PHT_OBJECTS_URL", help="Object store URL.")],
            ) -> None:
    """Fetch a finished train's result by the digest the graph records, verify it, unpack it safely.

    Example: pht train results 6f0c... --out result/ --objects file:///var/pht/objects --central URL --token $T
    """
    if out.exists():
        raise fail(f"{out} exists; give a new folder")
    try:
        with CentralClient(central, token) as client:
            digest = client.result_digest(train_id)
        fetch_unpacked(object_store_from_url(objects), digest, out, max_bytes=1024**3, max_files=100_000)
    except (ClientError, ObjectStoreError, ArchiveError) as e:
        raise fail(str(e)) from None
    console.print(f"result of {train_id} (sha256 {digest}, verified) in {out}:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        console.print(f"  {path.relative_to(out)} ({path.stat().st_size} bytes)")


@train_app.command("cancel")
def cancel(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token,
           reason: Annotated[str, typer.Option(help="Why (recorded in the graph).")] = "") -> None:
    """Cancel your train.

    Example: pht train cancel 6f0c... --reason "wrong parameters" --central URL --token $T
    """
    try:
        with CentralClient(central, token) as client:
            console.print(client.cancel(train_id, reason))
    except ClientError as e:
        raise fail(str(e)) from None


def ask(name: Annotated[str | None, typer.Argument(help="Named query in sparql_queries/ (without .rq).")] = None,
        central: CentralUrl = "", token: Token = "",
        file: Annotated[Path | None, typer.Option("--file", help="A SPARQL query file instead of a name.")] = None,
        param: Annotated[list[str] | None, typer.Option(
            "--param", help="NAME=VALUE; IRIs as-is, a train id for 'train', anything else a string.")] = None,
        columns: Annotated[str | None, typer.Option(help="Comma-separated columns to show (default: all).")] = None,
        ) -> None:
    """Run a named provenance query or a SPARQL file at the central service and print a table.

    Example: pht ask train_history --param train=6f0c... --columns time,stationId,to,reason --central URL --token $T
    """
    if (name is None) == (file is None):
        raise fail("give a query name or --file, not both or neither")
    try:
        with CentralClient(central, token) as client:
            if file is not None:
                try:
                    answer = client.sparql(file.read_text())
                except OSError as e:
                    raise fail(f"cannot read {file}: {e.strerror}") from None
            else:
                answer = client.named_query(name or "", **_parameters(client, param or []))
    except ClientError as e:
        raise fail(str(e)) from None
    print_sparql_json(answer, console, columns=[c.strip() for c in columns.split(",")] if columns else None)


def _parameters(client: CentralClient, pairs: list[str]) -> dict[str, NamedNode | Literal]:
    values: dict[str, NamedNode | Literal] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--param {pair!r} is not NAME=VALUE")
        if value.startswith(("http://", "https://", "urn:")):
            values[key] = NamedNode(value)
        elif key == "train":
            values[key] = NamedNode(client.train(value)["iri"])
        else:
            values[key] = Literal(value)
    return values


def print_sparql_json(answer: dict[str, Any], out: Console, *, columns: Sequence[str] | None = None,
                      only_with: str | None = None) -> None:
    """A SPARQL JSON result as a table (ASK as yes/no): IRIs shortened to their last segment, times to the
    second, optionally only some ``columns`` and only rows that bind ``only_with``."""
    if "boolean" in answer:
        out.print("yes" if answer["boolean"] else "no")
        return
    variables = [v for v in (columns or answer["head"]["vars"]) if v in answer["head"]["vars"]]
    table = Table()
    for v in variables:
        table.add_column(v, overflow="fold")  # wrap long values, never cut them
    for row in answer["results"]["bindings"]:
        if only_with is not None and only_with not in row:
            continue
        table.add_row(*(_cell(row.get(v)) for v in variables))
    out.print(table)


def _cell(term: dict[str, Any] | None) -> str:
    if term is None:
        return ""
    value = str(term["value"])
    if term["type"] == "uri":
        return value.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    if term.get("datatype", "").endswith("#dateTime"):
        return value[:19]
    return value

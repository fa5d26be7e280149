"""``pht train ...`` and ``pht ask``: what a researcher does, through the central service's API."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pyoxigraph import Literal, NamedNode
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from client import CentralClient, ClientError
from station import ArchiveError, extract
from trust import KeyFormatError, load_keys
from trust.keys import ENCRYPTION_KEY_FILE, SIGNING_KEY_FILE

from .key_commands import DEFAULT_DIR
from .output import console, errors, fail, print_report, print_table
from .train_scaffold import PLACEHOLDER_DIGEST

train_app = typer.Typer(help="Submit, watch and fetch trains (researchers).", no_args_is_help=True)

CentralUrl = Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="URL of the central service.")]
Token = Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Bearer token.")]
KeysDir = Annotated[Path, typer.Option("--keys", envvar="PHT_KEYS_DIR",
                                       help="Your key directory, as pht keys init wrote it; no keys: unsigned.")]
KEY_FILES = (SIGNING_KEY_FILE, ENCRYPTION_KEY_FILE)
#: how far along an execution is, for the progress bars
PROGRESS = {"queued": 0, "waiting-for-approval": 1, "approved": 2, "pulling": 3, "running": 4,
            "output-under-review": 5, "released": 6, "withheld": 6, "rejected": 6, "failed": 6, "cancelled": 6}



@train_app.command("submit")
def submit(file: Annotated[Path, typer.Argument(help="Train file (JSON): definition (id or object) and parameters.")],
           central: CentralUrl, token: Token, keys: KeysDir = DEFAULT_DIR) -> None:
    """Submit a train described by a train file, signed with your keys; a definition given whole is registered in
    the same write.

    The file (docs/train-definition.md; JSON Schema at /api/schemas/train-file):
    {"definition": "ID" | {...definition...}, "parameters": {"NAME": "value"}}. Nothing is written if the
    definition or the train is refused; a definition's id cannot be reused for other content. With keys in
    --keys (pht keys init creates and registers them) the train request is signed and the service verifies it;
    without any, the train is submitted unsigned (said on stderr), which a service requiring signed trains refuses.
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
    definition = document["definition"]
    if isinstance(definition, dict) and definition.get("image_digest") == PLACEHOLDER_DIGEST:
        raise fail(f"{file}: image_digest is still the placeholder pht train new wrote; put there the digest that "
                   "pht station build-image FOLDER --tag NAME prints (see docs/train-definition.md)")
    try:
        researcher_keys = load_keys(keys) if any((keys / name).exists() for name in KEY_FILES) else None
    except (OSError, KeyFormatError) as e:
        raise fail(f"cannot read your keys in {keys}: {e}") from None
    try:
        with CentralClient(central, token) as client:
            train_id = client.submit_train(document, researcher_keys)
    except ClientError as e:
        print_report(e.report)
        raise fail(f"{file}: {e}") from None
    if researcher_keys is None:  # said after the answer, so that a refusal stays one sentence
        errors.print(f"no keys in {keys}: submitted unsigned (pht keys init creates and registers your keys)",
                     highlight=False)
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
    print_table(console, ("train", "definition", "state", "created"),
                [(t["id"], t["definition"], t["state"], _when(t["created"])) for t in trains])


@train_app.command("watch")
def watch(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token,
          timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 3600,
          interval: Annotated[float, typer.Option(help="Seconds between updates.")] = 0.5) -> None:
    """Watch a train live: one progress bar per station and round, until it ends.

    Exit code 0 if it finished, 1 otherwise. Example: pht train watch 6f0c... --central URL --token $T
    """
    try:
        with CentralClient(central, token) as client:
            train = watch_trains(client, {"": train_id}, console, timeout_s=timeout, interval_s=interval)[train_id]
            events = client.events(train_id)
    except (ClientError, TimeoutError) as e:
        raise fail(str(e)) from None
    for line in _failures(train, events)[:3]:
        console.print(line, highlight=False, soft_wrap=False)  # wrapped at the terminal's width
    if train["state"] != "finished":
        raise fail(f"train {train_id} ended {train['state']}")


def _failures(train: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why a train ended badly, one line per execution that failed, was rejected or withheld, naming its station
    and round; the train's own event (which repeats the execution's reason) only when no execution's explains it."""
    where = {e["id"]: f"{e['station']}, round {e['round']}" for e in train["executions"]}
    bad = [e for e in events if e["to_state"] in ("failed", "rejected", "withheld") and e["reason"]]
    lines = [f"[red]{e['to_state']}[/red] at {escape(where.get(e['execution'], e['execution']))}: {escape(e['reason'])}"
             for e in bad if e["execution"]]
    return lines or [f"[red]{e['to_state']}[/red] train: {escape(e['reason'])}" for e in bad]


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
            execution: Annotated[str | None, typer.Option(help=(
                "An execution of the train whose released output you want (default: the finished train's "
                "result)."))] = None,
            keys: KeysDir = DEFAULT_DIR) -> None:
    """Fetch your finished train's result, verify it against the digest the graph records, decrypt it with your key,
    unpack it safely.

    The central service hands you (its requester) a link that reads that one result for a few minutes; no
    object store settings are needed. The result is encrypted to the encryption key your signed train request
    named: --keys is the key directory pht keys init wrote. Example: pht train results 6f0c... --out result/
    --central URL --token $T
    """
    if out.exists():
        raise fail(f"{out} exists; give a new folder")
    try:
        researcher_keys = load_keys(keys) if any((keys / name).exists() for name in KEY_FILES) else None
    except (OSError, KeyFormatError) as e:
        raise fail(f"cannot read your keys in {keys}, which the result is encrypted to: {e}") from None
    try:
        with CentralClient(central, token, keys=researcher_keys) as client:
            digest = fetch_result(client, train_id, out, execution=execution)
    except (ClientError, ArchiveError, OSError) as e:
        raise fail(str(e)) from None
    console.print(f"result of {train_id} (ciphertext sha256 {digest}, verified, decrypted) in {out}:")
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        console.print(f"  {path.relative_to(out)} ({path.stat().st_size} bytes)")


def fetch_result(client: CentralClient, train_id: str, out: Path, *, execution: str | None = None) -> str:
    """Download a released output of the train through its result link (verified), decrypt it with the client's
    keys and unpack it safely into the new folder ``out``; returns its ciphertext's digest (used by ``pht demo``
    too)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    packed = out.with_name(out.name + ".tar.gz")
    try:
        digest = client.open_result(train_id, packed, execution=execution)
        extract(packed, out, max_bytes=1024**3, max_files=100_000)
    finally:
        packed.unlink(missing_ok=True)
    return digest


@train_app.command("export")
def export(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token,
           ro_crate: Annotated[Path | None, typer.Option("--ro-crate", help=(
               "Write the finished train's Five Safes RO-Crate into this new folder."))] = None,
           padme: Annotated[Path | None, typer.Option("--padme", help=(
               "Write the train's events in PADME's metadata terms (JSON-LD) to this file."))] = None,
           with_files: Annotated[bool, typer.Option("--with-files", help=(
               "Put your decrypted result into the crate (requester only; needs --keys)."))] = False,
           keys: KeysDir = DEFAULT_DIR) -> None:
    """Export a finished train: an RO-Crate (Five Safes RO-Crate 0.5, Provenance Run Crate 0.5) of its signed
    definition, route, each station's approval and output review, its released outputs and its signed provenance;
    and/or its events in PADME's metadata schema (docs/export.md).

    Example: pht train export 6f0c... --ro-crate crate/ --padme events.jsonld --central URL --token $T
    """
    from client.padme_export import padme_document
    from client.ro_crate_export import ExportError, export_ro_crate
    if ro_crate is None and padme is None:
        raise fail("give --ro-crate DIR, --padme FILE or both")
    try:
        researcher_keys = load_keys(keys) if with_files else None
    except (OSError, KeyFormatError) as e:
        raise fail(f"cannot read your keys in {keys}, which the result is encrypted to: {e}") from None
    try:
        with CentralClient(central, token, keys=researcher_keys) as client:
            if ro_crate is not None:
                export_ro_crate(client, train_id, ro_crate, with_files=with_files)
                console.print(f"RO-Crate of train {train_id} in {ro_crate}")
            if padme is not None:
                document = padme_document(client.train(train_id), client.events(train_id))
                padme.write_text(json.dumps(document, indent=1))
                console.print(f"{len(document['@graph'])} events of train {train_id} in PADME's terms in {padme}")
    except (ClientError, ExportError, ValueError, OSError) as e:
        raise fail(str(e)) from None


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
    wanted = [c.strip() for c in columns.split(",")] if columns else None
    known = answer.get("head", {}).get("vars", [])
    unknown = [c for c in wanted or () if c not in known]
    if unknown and "boolean" not in answer:
        raise fail(f"the query has no column {', '.join(unknown)}; its columns are {', '.join(known)}")
    print_sparql_json(answer, console, columns=wanted)


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
    """A SPARQL JSON result within the terminal's width (:func:`print_table`; ASK as yes/no): IRIs shortened to
    their last segment, times to the second; optionally only some ``columns`` and only rows that bind
    ``only_with``. Without ``columns``, columns empty in every row are left out."""
    if "boolean" in answer:
        out.print("yes" if answer["boolean"] else "no")
        return
    variables = [v for v in (columns or answer["head"]["vars"]) if v in answer["head"]["vars"]]
    rows = [[_cell(row.get(v)) for v in variables] for row in answer["results"]["bindings"]
            if only_with is None or only_with in row]
    print_table(out, variables, rows, drop_empty=columns is None, hint="choose them with --columns")


def _cell(term: dict[str, Any] | None) -> str:
    if term is None:
        return ""
    value = str(term["value"])
    if term["type"] == "uri":
        return value.rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1]
    if term.get("datatype", "").endswith("#dateTime"):
        return _when(value)
    return value


def _when(value: str) -> str:
    """An xsd:dateTime to the second, date and time apart (a narrow column wraps it between the two)."""
    return value[:19].replace("T", " ")

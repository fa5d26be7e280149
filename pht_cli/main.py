"""``pht``: the command line of the platform. Thin: it parses arguments, calls the packages, prints.

Nothing imports this package; every command's logic lives in ``graph_store`` / ``orchestrator`` /
``station_mpu`` so that notebooks and services can do the same without the CLI.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pyoxigraph import QueryBoolean, QuerySolutions
from rich.table import Table

from client import CentralClient, ClientError
from graph_store import (
    CENTRAL_GRAPH,
    ChangeSet,
    EmbeddedStore,
    GraphStoreError,
    named_query,
    parse_rdf,
    tune_garbage_collection,
)
from orchestrator import DEMO_SECRET, Role, Settings, SettingsError, create_app, issue_token

from . import demo as demo_module
from .key_commands import keys_app
from .mpu_commands import mpu_app
from .output import console, fail, print_report
from .push_command import push
from .result_commands import result_app
from .setup_commands import setup
from .station_commands import station_app
from .train_commands import ask, train_app
from .train_scaffold import new_train
from .verify_command import verify

app = typer.Typer(
    help="Knowledge-graph-centric Personal Health Train platform.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(
        help="Keep the demo's files (store, station folders, object store) in this directory.")] = None,
    serve: Annotated[bool, typer.Option(
        help="Keep the central service (SPARQL, web pages, metrics) up after the trains, until Ctrl-C.")] = False,
    runtime: Annotated[str | None, typer.Option(
        help="docker or process (default: Docker when an engine and the base image are there).")] = None,
) -> None:
    """Run the whole platform here: central service, three stations and an aggregator, three trains on the
    breast cancer data, results next to the pooled computation, two provenance queries.

    Example: pht demo
    """
    try:
        if runtime not in (None, "docker", "process"):
            raise fail(f"unknown runtime {runtime!r}; use docker or process")
        demo_module.run(console, keep=keep, serve=serve, runtime=runtime)
    except (GraphStoreError, ClientError, TimeoutError, RuntimeError, OSError) as e:
        raise fail(f"the demo failed: {e}") from None


app.add_typer(station_app, name="station")
train_app.command("new")(new_train)
train_app.command("push")(push)
app.add_typer(train_app, name="train")
app.add_typer(mpu_app, name="mpu")
app.add_typer(keys_app, name="keys")
app.add_typer(result_app, name="result")
app.command("ask")(ask)
app.command("verify")(verify)
app.command("setup")(setup)

token_app = typer.Typer(help="Local bearer tokens for the embedded default (HS256).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("issue")
def token_issue(
    subject: Annotated[str, typer.Option("--sub", help="Who the token is for (JWT sub).")],
    role: Annotated[list[str], typer.Option(
        "--role", help="researcher, station, station-admin or operator; repeatable.")],
    station: Annotated[str | None, typer.Option(help="Station id, for station and station-admin tokens.")] = None,
    ttl: Annotated[int | None, typer.Option(help=(
        "Lifetime in seconds (default 3600; station tokens PHT_STATION_TOKEN_TTL_S, 12 hours, which is also "
        "their maximum: the agent renews its own)."))] = None,
) -> None:
    """Print a bearer token signed with PHT_JWT_SECRET (the demo secret under PHT_DEMO=1).

    Example: PHT_DEMO=1 pht token issue --sub alice --role researcher
    """
    env = dict(os.environ)
    if env.get("PHT_DEMO") == "1":
        env.setdefault("PHT_JWT_SECRET", DEMO_SECRET)
    try:
        settings = Settings.from_env(env)
        roles = [Role(r) for r in role]
        if not settings.jwt_secret:
            raise SettingsError("local tokens need PHT_JWT_SECRET")
        limit = settings.station_token_ttl_s
        if Role.STATION in roles and ttl is not None and ttl > limit:
            raise ValueError(f"station tokens live at most {limit} seconds (PHT_STATION_TOKEN_TTL_S); "
                             "the agent renews its own")
        lifetime = ttl if ttl is not None else (limit if Role.STATION in roles else 3600)
        token = issue_token(settings.jwt_secret, subject=subject, roles=roles, station=station, ttl_s=lifetime,
                            issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    except (SettingsError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(token, soft_wrap=True)


@token_app.command("revoke")
def token_revoke(
    central: Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="Central service URL.")],
    token: Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Operator token.")],
    station: Annotated[str | None, typer.Option(
        help="Revoke every token of this station issued before --before (a compromised station).")] = None,
    before: Annotated[str | None, typer.Option(
        help="With --station: the cut-off, ISO 8601 with a time zone (default now).")] = None,
    token_id: Annotated[str | None, typer.Option("--token-id", help="Revoke the one token with this id (jti).")]
    = None,
    reason: Annotated[str | None, typer.Option(help="Why, for people.")] = None,
) -> None:
    """Revoke tokens before they expire: one by its id, or all of a station's issued before a time. Every
    instance of the central service refuses them within seconds.

    Example: pht token revoke --station aachen --reason "host compromised" --central http://127.0.0.1:8080
    """
    body = {k: v for k, v in {"token_id": token_id, "station": station, "issued_before": before,
                              "reason": reason}.items() if v is not None}
    try:
        with CentralClient(central, token) as client:
            done = client.revoke_tokens(body)
    except ClientError as e:
        raise fail(str(e)) from None
    what = f"token {done['token_id']}" if done.get("token_id") else \
        f"the tokens of station {done['station']} issued before {done['issued_before']}"
    console.print(f"revoked {what} ({done['iri']})")


@app.command()
def serve(
    store_dir: Annotated[Path, typer.Option("--store", help="Directory of the embedded store.")] = Path("var/store"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    in_memory: Annotated[bool, typer.Option(
        "--in-memory", help="Keep the store in memory only: everything is lost when the service stops.")] = False,
) -> None:
    """Start the central service (REST API under /api, SPARQL at /sparql, OpenAPI at /docs).

    Settings from PHT_* variables (docs/architecture.md), e.g. PHT_RESULTS_STORE_URL: the object store the
    stations release results to, read by the service only (a train's requester gets expiring links).
    Example: PHT_JWT_SECRET=$(openssl rand -hex 32) pht serve --store var/store --port 8080
    """
    env = dict(os.environ)
    if in_memory:
        env["PHT_STORE_IN_MEMORY"] = "1"
    elif not env.get("PHT_STORE_QUERY_URL") and env.get("PHT_STORE_IN_MEMORY") != "1":
        env.setdefault("PHT_STORE_PATH", str(store_dir))
    if env.get("PHT_DEMO") == "1":
        env.setdefault("PHT_JWT_SECRET", DEMO_SECRET)
    try:
        settings = Settings.from_env(env)
        application = create_app(settings)
    except (SettingsError, GraphStoreError) as e:
        raise fail(str(e)) from None
    where = settings.store_path or settings.store_query_url or "in memory: lost when the service stops"
    console.print(f"central service on http://{host}:{port} (store {where})")
    tune_garbage_collection()
    uvicorn.run(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


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
        print_report(report)
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


def print_rows(result: QuerySolutions | QueryBoolean | bool) -> None:
    """Print SELECT results as a table (or ASK as yes/no)."""
    if isinstance(result, (bool, QueryBoolean)):
        console.print("yes" if bool(result) else "no")
        return
    variables = [v.value for v in result.variables]
    table = Table(*variables)
    for row in result:
        table.add_row(*(_cell(row[v]) for v in variables))
    console.print(table)


def _cell(term: object) -> str:
    if term is None:
        return ""
    return getattr(term, "value", str(term))


if __name__ == "__main__":  # pragma: no cover
    app()


__all__ = ["app"]

"""``pht mpu``: the station's metadata processing unit -- check and preview filter policies, run the MPU.

Registered in ``pht_cli.main`` as ``app.add_typer(mpu_app, name="mpu")``. Thin: the logic is ``station_mpu``'s.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from pydantic import ValidationError
from rich.table import Table

from graph_store import DEFAULT_BASE_IRI, PREFIXES, tune_garbage_collection
from station_mpu import (
    DEFAULT_POLICY,
    EventAdapter,
    EventTriples,
    Filtered,
    InvalidEvents,
    MpuSettings,
    MpuSettingsError,
    Naming,
    Outbox,
    OutboxError,
    Policy,
    PolicyError,
    StationDescription,
    apply_policy,
    description_triples,
    event_triples,
    read_policy,
    validated,
)

from .output import console, fail, print_report

__all__ = ["mpu_app"]

mpu_app = typer.Typer(help="The station's metadata processing unit (MPU): what a station publishes.",
                      no_args_is_help=True)
policy_app = typer.Typer(help="Metadata filter policies (Turtle): check one, preview what it lets leave.",
                         no_args_is_help=True)
mpu_app.add_typer(policy_app, name="policy")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


StationOption = Annotated[str | None, typer.Option(
    "--station", help="The station's id (default: PHT_MPU_STATION); a policy naming another station is refused.")]
BaseOption = Annotated[str | None, typer.Option(
    "--base-iri", help=f"The deployment's base IRI (default: PHT_MPU_BASE_IRI or {DEFAULT_BASE_IRI}).")]


def _naming(station: str | None, base_iri: str | None, *, required: bool) -> Naming | None:
    sid = station or _env("PHT_MPU_STATION")
    if sid is None:
        if required:
            raise fail("name the station with --station ID (or set PHT_MPU_STATION)")
        return None
    try:
        return Naming(base_iri or _env("PHT_MPU_BASE_IRI") or DEFAULT_BASE_IRI, sid, _env("PHT_MPU_STATION_IRI") or "")
    except ValueError as e:
        raise fail(str(e)) from None


def _load(path: Path, naming: Naming | None) -> Policy:
    try:
        return read_policy(path, station=naming.station if naming is not None else None)
    except PolicyError as e:
        if e.report is not None:
            print_report(e.report)
        raise fail(str(e)) from None


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy, a Turtle file with one pht:FilterPolicy.")],
    station: StationOption = None,
    base_iri: BaseOption = None,
) -> None:
    """Validate a filter policy (Turtle syntax, the policy shapes, patterns, classes) and show how it decides.

    Example: pht mpu policy check station_mpu/default-policy.ttl --station aachen
    Exit code 0 if the policy can be used, 1 with the reason (and the SHACL report) if not.
    """
    naming = _naming(station, base_iri, required=False)
    policy = _load(file, naming)
    table = Table(title=f"{file}: rules in evaluation order (default: {_short(policy.default_effect)})")
    for column in ("#", "priority", "decision", "rule"):
        table.add_column(column)
    for i, rule in enumerate(policy.rules, 1):
        table.add_row(str(i), str(rule.priority), rule.describe(), rule.label or rule.name)
    console.print(table)
    sample = _samples(naming or Naming(DEFAULT_BASE_IRI, "example-station"))
    kinds = Table(title="what leaves of an example event of each kind")
    for column in ("kind", "leaves", "why not all"):
        kinds.add_column(column)
    for f in apply_policy(validated(sample), policy):
        left, total = len(f.leaving), len(f.event.quads)
        why = f.dropped_whole or "; ".join(sorted({f"{_short(d.quad.predicate)}: {d.reason}" for d in f.decisions
                                                    if d.leaves != d.quad}))
        kinds.add_row(f.event.kind, "nothing" if not left else f"{left} of {total} triples", why)
    console.print(kinds)
    where = f" for station {naming.station_id}" if naming is not None else ""
    applies = f"; it applies to {policy.station.value}" if policy.station is not None else ""
    console.print(f"{file}: a valid filter policy{where} ({len(policy.rules)} rules{applies})")


@policy_app.command("preview")
def policy_preview(
    policy_file: Annotated[Path | None, typer.Option(
        "--policy", help="The policy to try (default: PHT_MPU_POLICY, else the MPU's safe default).")] = None,
    events: Annotated[Path | None, typer.Option(
        "--events", help="A JSON file with a list of events (the POST /events schema) instead of the MPU's data.")]
    = None,
    data_dir: Annotated[Path | None, typer.Option(
        "--data-dir", help="The MPU's data directory, whose latest events are used (default: PHT_MPU_DATA_DIR "
                           "or var/mpu).")] = None,
    limit: Annotated[int, typer.Option(help="How many of the latest events to preview.")] = 200,
    station: StationOption = None,
    base_iri: BaseOption = None,
) -> None:
    """Show exactly which triples would leave the station under a policy, and which would be dropped and why.

    Example: pht mpu policy preview --station aachen --policy station_mpu/default-policy.ttl --data-dir var/mpu
    Reads the events the MPU received last (or --events FILE); sends nothing. Exit 1 with a sentence on error.
    """
    naming = _naming(station, base_iri, required=True)
    assert naming is not None
    policy = _load(policy_file or Path(_env("PHT_MPU_POLICY") or DEFAULT_POLICY), naming)
    units = _units_from_file(events, naming) if events is not None else _units_from_outbox(data_dir, naming, limit)
    try:
        filtered = apply_policy(validated(units), policy)
    except InvalidEvents as e:
        raise fail(str(e)) from None
    _print_preview(filtered, naming)


def _units_from_file(path: Path, naming: Naming) -> list[EventTriples]:
    try:
        models = EventAdapter.validate_json(path.read_bytes())
    except OSError as e:
        raise fail(f"cannot read {path}: {e.strerror or e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise fail(f"{path} is not a JSON list of events: {where}: {first.get('msg')}") from None
    return [event_triples(m, naming) for m in models]


def _units_from_outbox(data_dir: Path | None, naming: Naming, limit: int) -> list[EventTriples]:
    directory = data_dir or Path(_env("PHT_MPU_DATA_DIR") or "var/mpu")
    if not (directory / "outbox.sqlite3").is_file():
        raise fail(f"no MPU data in {directory} (give --data-dir, or --events FILE)")
    try:
        outbox = Outbox(directory)
        received = outbox.received(limit)
        outbox.close()
    except OutboxError as e:
        raise fail(str(e)) from None
    units: list[EventTriples] = []
    for r in received:
        if r.kind == "event":
            units += [event_triples(m, naming) for m in EventAdapter.validate_json(f"[{r.data}]")]
        else:
            units += description_triples(StationDescription.model_validate_json(r.data), naming,
                                         at=datetime.now(timezone.utc))
    return units


def _print_preview(filtered: list[Filtered], naming: Naming) -> None:
    leaving = Table(title="triples that would leave the station")
    dropped = Table(title="triples that would stay at the station")
    for table in (leaving, dropped):
        for column in ("subject", "predicate", "object"):
            table.add_column(column, overflow="fold")
        table.add_column("why", overflow="fold")
    n_leave = n_drop = 0
    for f in filtered:
        for d in f.decisions:
            subject = _subject(_short(d.quad.subject), naming)
            if f.dropped_whole is None and d.leaves is not None:
                leaving.add_row(subject, _short(d.quad.predicate), _short(d.leaves.object), d.reason)
                n_leave += 1
            else:
                dropped.add_row(subject, _short(d.quad.predicate), _short(d.quad.object), f.dropped_whole or d.reason)
                n_drop += 1
    console.print(leaving)
    console.print(dropped)
    console.print(f"{len(filtered)} event(s): {n_leave} triple(s) would leave, {n_drop} would stay")


def _subject(iri: str, naming: Naming) -> str:
    return iri.removeprefix(naming.event_prefix) if iri.startswith(naming.event_prefix) else iri


def _short(term: Any) -> str:
    value = getattr(term, "value", str(term))
    if type(term).__name__ == "NamedNode":
        for prefix, ns in PREFIXES.items():
            if value.startswith(ns):
                return f"{prefix}:{value[len(ns):]}"
        return value
    datatype = getattr(term, "datatype", None)
    suffix = f"^^{_short(datatype)}" if datatype is not None and not datatype.value.endswith("#string") else ""
    return json.dumps(value, ensure_ascii=False) + suffix


def _samples(naming: Naming) -> list[EventTriples]:
    """One example event of each kind (what ``policy check`` shows the policy's effect on)."""
    common = {"time": "2026-11-27T10:42:13Z", "train": "example-train", "execution": "example-train.r1-s0"}
    raw: list[dict[str, Any]] = [
        {"kind": "state-change", "from_state": "waiting-for-approval", "to_state": "approved", "actor": "admin",
         "role": "station-admin", "reason": "checked"},
        {"kind": "rejection", "reason": "No anonymity"}, {"kind": "error", "message": "exit code 1"},
        {"kind": "log", "log_sha256": "0" * 64, "message": "counted 42 patients"},
        {"kind": "started-transmission"}, {"kind": "finished-transmission"}, {"kind": "started-running"},
        {"kind": "finished-running", "success": True}, {"kind": "cpu-usage", "value": 87.5},
        {"kind": "memory-usage", "value": 314572800}, {"kind": "network-usage", "value": 1200.0, "direction": "in"}]
    units = [event_triples(m, naming) for m in EventAdapter.validate_python([{**common, **r} for r in raw])]
    return units + description_triples(StationDescription(description="Oncology data of an example hospital"),
                                       naming, at=datetime.now(timezone.utc))


@mpu_app.command("serve")
def serve(
    station: StationOption = None,
    central: Annotated[str | None, typer.Option(
        help="The central service's URL (default: PHT_MPU_CENTRAL_URL); without it events only queue up.")] = None,
    key: Annotated[Path | None, typer.Option(
        help="The station's Ed25519 private key, PEM (default: PHT_MPU_PRIVATE_KEY).")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="File holding the station's bearer token, re-read when it changes (default: PHT_MPU_TOKEN_FILE; "
             "or set PHT_MPU_TOKEN).")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="The filter policy, Turtle; reloaded when the file changes (default: PHT_MPU_POLICY, else the "
             "safe default).")] = None,
    data_dir: Annotated[Path | None, typer.Option(
        help="Where the outbox lives (default: PHT_MPU_DATA_DIR or var/mpu).")] = None,
    sample_interval: Annotated[float | None, typer.Option(
        help="Seconds between Docker stats samples, 0 for none (default: PHT_MPU_SAMPLE_INTERVAL_S or 10).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback: the station agent is local).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PHT_MPU_PORT", help="Port to listen on.")] = 8181,
) -> None:
    """Run the MPU for one station: POST /events, GET /metrics, GET /status (settings from PHT_MPU_* too).

    Example: pht mpu serve --station aachen --central http://central:8080 --key /etc/pht/aachen.pem \\
    --token-file /etc/pht/aachen.token --policy /etc/pht/policy.ttl
    """
    from station_mpu import Mpu, create_mpu_app

    try:
        settings = MpuSettings.from_env(station_id=station, central_url=central, private_key_path=key,
                                        token_file=token_file, policy_path=policy, data_dir=data_dir,
                                        sample_interval_s=sample_interval)
        mpu = Mpu(settings)
    except (MpuSettingsError, PolicyError, OutboxError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"MPU of station {settings.station_id} on http://{host}:{port} (policy {mpu.policy.source}, "
                  f"outbox {settings.data_dir}, pushing to {settings.central_url or 'nowhere: queue only'})")
    tune_garbage_collection()
    uvicorn.run(create_mpu_app(mpu), host=host, port=port, log_level="warning")

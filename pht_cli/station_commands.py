"""``pht station ...``: run the station agent, and the station admin's decisions."""

import logging
import os
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from client import CentralClient, ClientError, WorkItem
from client.key_claims import keys_in
from graph_store import DEFAULT_BASE_IRI, GraphStoreError, ResourceIris
from station import (
    ApprovalLedger,
    Holding,
    LeaseLost,
    LeaseRefused,
    ObjectStoreError,
    PolicyError,
    RecordSigner,
    RuntimeFailure,
    StationAgent,
    StationSettings,
    StationSettingsError,
    build_train_image,
    differences,
    folder_digest,
    load_policy,
    make_runtime,
    object_store_from_url,
    open_consent_ledger,
    quiet_request_logs,
    release,
)
from trust import KeyFormatError

from .output import console, errors, fail, print_table

station_app = typer.Typer(help="Station agent and the station admin's decisions.", no_args_is_help=True)

CentralUrl = Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="URL of the central service.")]
Token = Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Bearer token (station-admin role).")]



@station_app.command("run")
def run_agent(
    once: Annotated[bool, typer.Option(help="Poll once and exit (for cron or tests).")] = False,
) -> None:
    """Run the station agent: poll the central service (outbound only) and drive this station's executions.

    Configured by environment variables (docs/station.md): PHT_STATION_ID, PHT_CENTRAL_URL,
    PHT_STATION_TOKEN or PHT_STATION_TOKEN_FILE (a short-lived station token the agent renews, in the file
    if given), PHT_STATION_DATASETS (id=/folder,...), PHT_STATION_STATE_DIR, PHT_OBJECTS_URL,
    PHT_STATION_RUNTIME (docker, podman, process, kubernetes), PHT_STATION_POLICY (Turtle file); PHT_PODMAN_URL
    for podman, PHT_K8S_NAMESPACE and PHT_K8S_IMAGE_REFS for kubernetes.

    One agent per station: it holds the station's lease at the central service while it runs (PHT_STATION_LEASE_S,
    default 30 s, renewed every third of it); a second agent for the station exits 1 naming the first.

    Example: PHT_STATION_ID=aachen PHT_CENTRAL_URL=http://127.0.0.1:8080 ... pht station run
    """
    logging.basicConfig(level=os.environ.get("PHT_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s %(message)s")
    quiet_request_logs()
    try:
        settings = StationSettings.from_env()
        agent = StationAgent(settings, runtime=make_runtime(
            settings.runtime, podman_url=settings.podman_url, kubernetes_namespace=settings.kubernetes_namespace,
            kubernetes_image_refs=settings.kubernetes_image_refs, kubeconfig=settings.kubeconfig))
        if settings.policy_file is not None:
            load_policy(settings.policy_file)  # refuse to start on an invalid policy
    except (StationSettingsError, PolicyError, RuntimeFailure, ObjectStoreError) as e:
        raise fail(str(e)) from None
    if once:
        try:
            agent.publish_description(unless_unchanged=True)  # what run() does at its start, once per change
            moved = agent.poll_once()
        except (ClientError, LeaseRefused, LeaseLost) as e:
            raise fail(str(e)) from None
        finally:
            agent.close()  # releases the lease
        console.print(f"station {settings.station_id}: {moved} step(s) taken")
        return
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    console.print(f"station {settings.station_id} polling {settings.central_url} every {settings.poll_interval_s} s")
    try:
        agent.run()
    except KeyboardInterrupt:
        agent.stop()
    except (LeaseRefused, LeaseLost) as e:
        raise fail(str(e)) from None
    finally:
        agent.close()


@station_app.command("pending")
def pending(
    station: Annotated[str, typer.Argument(help="Station id.")],
    central: CentralUrl, token: Token,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", envvar="PHT_STATION_STATE_DIR",
        help="The agent's state folder: on the station host, also show what stays there (each held output's "
             "size and checks, the code each approval is for).")] = None,
) -> None:
    """List the executions waiting for the station admin: approvals and output reviews.

    The central service knows only that they wait; an output's size and checks, and the code the station recorded
    for an approval, are shown from the station's own state folder (--state-dir, on the station host).
    Example: pht station pending aachen --central http://127.0.0.1:8080 --token $ADMIN_TOKEN --state-dir var/aachen
    """
    try:
        with CentralClient(central, token) as client:
            work = [w for w in client.work(station) if w.state in ("waiting-for-approval", "output-under-review")]
    except ClientError as e:
        raise fail(str(e)) from None
    approvals = ApprovalLedger(state_dir / "approvals.jsonl") if state_dir is not None else None
    print_table(console, ("execution", "state", "definition", "requester", "image digest", "at the station"),
                [(w.execution, w.state, w.definition, w.requester.rsplit("/", 1)[-1], w.image_digest[:19] + "...",
                  _local_view(w, state_dir, approvals)) for w in work])


def _local_view(work: WorkItem, state_dir: Path | None, approvals: ApprovalLedger | None) -> str:
    """What the station's state folder says about a pending execution (never sent to the central service)."""
    if state_dir is None or approvals is None:
        return "(--state-dir on the station host shows it)"
    if work.state == "waiting-for-approval":
        recorded = approvals.get(work.execution)
        if recorded is None:
            return "no request recorded yet (the agent records it when it asks)"
        changed = differences(recorded, work)
        entry = recorded.entrypoint or "the image's own command"
        return (f"approving runs {entry}" + (f"; CHANGED since the request: {', '.join(changed)}" if changed else ""))
    held = Holding(state_dir, work.execution).held()
    if held is None:
        return "no held output in this state folder"
    _, size, checks = held
    lines = [f"{size} bytes packed and sealed to its readers"]
    lines += [f"{'passed' if c['passed'] else 'FAILED'}: {c['name']} - {c['detail']}" for c in checks]
    return "\n".join(lines)


def _decide(central: str, token: str, execution: str, to: str, reason: str) -> None:
    try:
        with CentralClient(central, token) as client:
            state = client.step(execution, to, reason=reason)
    except ClientError as e:
        raise fail(str(e)) from None
    console.print(f"{execution}: {state}")


@station_app.command("approve")
def approve(execution: Annotated[str, typer.Argument(help="Execution id.")], central: CentralUrl, token: Token,
            reason: Annotated[str, typer.Option(help="Why (recorded in the graph).")] = "approved by the station admin",
            ) -> None:
    """Approve an execution that waits for approval.

    Example: pht station approve 6f0c...r1-s0 --central http://127.0.0.1:8080 --token $ADMIN_TOKEN
    """
    _decide(central, token, execution, "approved", reason)


@station_app.command("reject")
def reject(execution: Annotated[str, typer.Argument(help="Execution id.")], central: CentralUrl, token: Token,
           reason: Annotated[str, typer.Option(help="Why: the requester reads this.")]) -> None:
    """Reject an execution; the reason reaches the requester through the graph.

    Example: pht station reject 6f0c...r1-s0 --reason "cohort too small" --central ... --token $ADMIN_TOKEN
    """
    if not reason.strip():
        raise fail("a rejection needs a reason (--reason)")
    _decide(central, token, execution, "rejected", reason)


@station_app.command("withhold")
def withhold(execution: Annotated[str, typer.Argument(help="Execution id.")], central: CentralUrl, token: Token,
             reason: Annotated[str, typer.Option(help="Why the output may not leave.")]) -> None:
    """Withhold an output under review: it never leaves the station.

    Example: pht station withhold 6f0c...r1-s0 --reason "small cells" --central ... --token $ADMIN_TOKEN
    """
    if not reason.strip():
        raise fail("withholding needs a reason (--reason)")
    _decide(central, token, execution, "withheld", reason)


@station_app.command("review")
def show_review(execution: Annotated[str, typer.Argument(help="Execution id.")],
                state_dir: Annotated[Path, typer.Option("--state-dir", envvar="PHT_STATION_STATE_DIR",
                                                        help="The agent's state folder.")]) -> None:
    """Show the held output's automatic checks and files (run on the station host).

    Example: pht station review 6f0c...r1-s0 --state-dir var/station-aachen
    """
    hold = Holding(state_dir, execution)
    held = hold.held()
    if held is None:
        raise fail(f"no held output of {execution} under {state_dir}")
    sha256, size, checks = held
    console.print(f"output sealed to its readers: sha256 {sha256}, {size} bytes (what a release sends); the plain "
                  f"files, which these checks read, in {hold.output}")
    table = Table("check", "passed", "detail")
    for c in checks:
        table.add_row(c["name"], "yes" if c["passed"] else "[red]no[/red]", c["detail"])
    console.print(table)


@station_app.command("release")
def release_output(
    execution: Annotated[str, typer.Argument(help="Execution id.")], central: CentralUrl, token: Token,
    state_dir: Annotated[Path, typer.Option("--state-dir", envvar="PHT_STATION_STATE_DIR",
                                            help="The agent's state folder.")],
    objects: Annotated[str, typer.Option("--objects", envvar="PHT_OBJECTS_URL", help="Object store URL.")],
    reason: Annotated[str, typer.Option(help="Recorded in the graph.")] = "released by the station admin",
    policy: Annotated[Path | None, typer.Option(
        "--policy", envvar="PHT_STATION_POLICY",
        help="The station policy (whether the release names the output checks, pht:sharesCheckNames).")] = None,
    station: Annotated[str | None, typer.Option("--station", envvar="PHT_STATION_ID", help=(
        "This station's id (with --keys: the release carries the station's signed record)."))] = None,
    keys: Annotated[Path | None, typer.Option("--keys", envvar="PHT_STATION_KEYS_DIR", help=(
        "The station's key folder (pht station enroll wrote it): signs the record of the execution."))] = None,
) -> None:
    """Release a held output: stage it in the object store, mark it released with its digest and size and the
    station's signed record of the execution, then make it readable by its digest (a refused release leaves nothing
    readable). station.env sets --station and --keys.

    Example: pht station release 6f0c...r1-s0 --state-dir var/station-aachen --objects file:///var/pht/objects ...
    """
    try:
        share = load_policy(policy).shares_check_names if policy is not None else False
        with CentralClient(central, token) as client:
            records = RecordSigner(client, station, keys) if station is not None and keys is not None else None
            state = release(client, object_store_from_url(objects), Holding(state_dir, execution), execution,
                            reason=reason, share_check_names=share, records=records)
    except (ClientError, ObjectStoreError, PolicyError) as e:
        raise fail(str(e)) from None
    console.print(f"{execution}: {state}")


@station_app.command("budget")
def show_budget(state_dir: Annotated[Path, typer.Option("--state-dir", envvar="PHT_STATION_STATE_DIR",
                                                        help="The agent's state folder.")],
                policy: Annotated[Path | None, typer.Option(
                    "--policy", envvar="PHT_STATION_POLICY",
                    help="The station policy: its permissions' privacy budgets (pht:epsilonBudget).")] = None) -> None:
    """Show the privacy budget ledger: the ε each researcher spent per project and dataset at this station, and
    with --policy the budget each permission sets (run on the station host; the researchers see only their own).

    Example: pht station budget --state-dir var/station-aachen --policy $PHT_STATION_POLICY
    """
    try:
        budgets = [(r.iri, r.epsilon_budget) for r in load_policy(policy).consent.rules
                   if r.epsilon_budget is not None] if policy is not None else []
        with open_consent_ledger(state_dir) as ledger:
            rows = ledger.ledger()
    except (PolicyError, GraphStoreError) as e:
        raise fail(str(e)) from None
    table = Table("researcher", "project", "dataset", "ε spent", "releases")
    for row in rows:
        table.add_row(row.researcher, row.project or "(none)", row.dataset, str(row.spent), str(row.releases))
    console.print(table if rows else "no differentially private release yet")
    for rule, budget in budgets:
        console.print(f"permission {rule}: ε budget {budget} per researcher, project and dataset")


@station_app.command("build-image")
def build_image(folder: Annotated[Path, typer.Argument(help="Train folder with a Dockerfile.")],
                tag: Annotated[str, typer.Option(help="Image name to give it.")],
                process: Annotated[bool, typer.Option(
                    "--process", help="Print the folder digest for the process runtime instead.")] = False) -> None:
    """Build a train image from a folder without any registry and print its digest (what definitions name).

    The Dockerfile starts FROM pht/python-base:bookworm (scripts/build-base-image.sh builds it offline).
    Example: pht station build-image trains/cohort-count --tag pht-trains/cohort-count:1
    """
    if not (folder / "Dockerfile").is_file():
        raise fail(f"{folder} has no Dockerfile")
    try:
        if process:
            console.print(folder_digest(folder))
            return
        console.print(build_train_image(folder, tag))
    except RuntimeFailure as e:
        raise fail(str(e)) from None


@station_app.command("enrollment-token")
def enrollment_token(station: Annotated[str, typer.Argument(help="Station id.")], central: CentralUrl,
                     token: Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Operator token.")],
                     hours: Annotated[float, typer.Option(
                         help="How long the token is accepted, in hours (at most 168).")] = 24) -> None:
    """Issue a one-time enrollment token for a station (operator) and print it: it is shown only now (the service
    keeps only its SHA-256). Give it to the station's admin over a channel you trust; they run pht station enroll.

    Example: pht station enrollment-token aachen --central http://127.0.0.1:8080 --token $OPS_TOKEN
    """
    try:
        with CentralClient(central, token) as client:
            issued = client.enrollment_token(station, valid_for_s=round(hours * 3600))
    except ClientError as e:
        raise fail(str(e)) from None
    console.print(issued["token"], highlight=False, soft_wrap=True)
    errors.print(f"one-time enrollment token of station {station}, valid until {issued['expires']}; on the station "
                 f"admin's machine: pht station enroll {station} --token TOKEN --keys DIR --central {central}",
                 highlight=False)


@station_app.command("enroll")
def enroll(station: Annotated[str, typer.Argument(help="Station id.")], central: CentralUrl,
           token: Annotated[str, typer.Option("--token", envvar="PHT_ENROLLMENT_TOKEN",
                                              help="The one-time enrollment token an operator issued.")],
           keys: Annotated[Path, typer.Option(
               "--keys", help="The station's key directory: its keys are created there unless they are there "
                              "(0700, files 0600); the MPU signs with KEYS/signing.pem.")],
           base_iri: Annotated[str, typer.Option(
               "--base-iri", envvar="PHT_MPU_BASE_IRI",
               help="The central service's base IRI (as the station's MPU has it).")] = DEFAULT_BASE_IRI) -> None:
    """Enroll the station's public keys at the central service with a one-time enrollment token (no other
    credential), proving that the station holds them; the station's previous keys are rotated out.

    Example: pht station enroll aachen --token $ENROLLMENT_TOKEN --keys /etc/pht/aachen-keys --central https://pht.example.org
    """
    try:
        party_keys, new = keys_in(keys)
        station_iri = ResourceIris(base_iri).station(station).value
        with CentralClient(central, None) as client:
            answer = client.enroll(station, token, party_keys, station_iri=station_iri)
    except (ClientError, OSError, KeyFormatError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"station {station} enrolled with {'new' if new else 'the'} keys in {keys}; its MPU signs with "
                  f"{keys / 'signing.pem'}", highlight=False)
    for key in answer["keys"]:
        if not key.get("expires") and not key.get("revoked"):
            console.print(f"{key['use']:<10} {key['iri']}", highlight=False)

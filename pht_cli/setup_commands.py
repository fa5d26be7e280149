"""``pht setup``: the breast cancer example's stations, in one command (operators)."""

import os
from pathlib import Path
from typing import Annotated

import typer

from client import CentralClient, ClientError
from local_platform import setup_stations
from orchestrator import DEMO_SECRET, STATION_TOKEN_TTL_S, Role, issue_token

from .output import console, fail


def setup(out: Annotated[Path, typer.Argument(help="New folder for the stations' data and settings.")],
          central: Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="Central service URL.")],
          token: Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Operator token.")],
          stations: Annotated[str, typer.Option(help="Comma-separated station ids.")] = "aachen,leipzig,cologne",
          objects: Annotated[str | None, typer.Option(
              "--objects", help="Object store URL (default: a folder under OUT).")] = None,
          runtime: Annotated[str, typer.Option(help="docker, podman or process.")] = "docker",
          automatic: Annotated[bool, typer.Option(
              help="Station policies that approve every train and release outputs passing the checks "
                   "(default: the admin decides everything).")] = False,
          mpu_port: Annotated[int, typer.Option(
              "--mpu-port", help="Port of the first station's MPU on 127.0.0.1; the next station's is one more.")]
          = 8181) -> None:
    """Split the breast cancer data across stations, register them and their datasets, write their settings.

    Each station gets OUT/<id>/data/patients.csv, new keys enrolled with a one-time token (OUT/<id>/keys), its
    agent's and its MPU's policies, OUT/<id>/station.token (a station token when PHT_JWT_SECRET or PHT_DEMO=1 is
    set here; short-lived, the
    agent renews it there) and OUT/<id>/station.env with the settings of both; source it, then start the MPU
    and the agent: pht mpu serve & pht station run.
    Example: PHT_DEMO=1 pht setup var/stations --central http://127.0.0.1:8080 --token $OPS_TOKEN
    """
    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} is not empty; give a new folder")
    ids = [s.strip() for s in stations.split(",") if s.strip()]
    if not 1 <= mpu_port <= 65536 - len(ids):
        raise fail(f"--mpu-port {mpu_port} leaves no port for {len(ids)} MPU(s); give 1 to {65536 - len(ids)}")
    secret = os.environ.get("PHT_JWT_SECRET") or (DEMO_SECRET if os.environ.get("PHT_DEMO") == "1" else None)
    try:
        ttl = int(os.environ.get("PHT_STATION_TOKEN_TTL_S", STATION_TOKEN_TTL_S))
    except ValueError:
        raise fail("PHT_STATION_TOKEN_TTL_S must be a number of seconds") from None
    tokens = {sid: issue_token(secret, subject=f"station-{sid}", roles=[Role.STATION], station=sid, ttl_s=ttl)
              for sid in ids} if secret else {}  # short-lived: each agent renews its own (docs/station.md)
    try:
        with CentralClient(central, token) as client:
            homes = setup_stations(client, out, ids, objects_url=objects or f"file://{(out / 'objects').resolve()}",
                                   station_tokens=tokens, runtime=runtime, automatic=automatic, mpu_port=mpu_port)
    except (ClientError, OSError) as e:
        raise fail(str(e)) from None
    for sid, home in homes.items():
        console.print(f"station {sid}: registered; start its MPU and agent with: source {home / 'station.env'}; "
                      "pht mpu serve & pht station run")

"""Set up stations for the breast cancer example in one step: split the data, register each station and its
dataset at the central service, enroll the station's fresh keys with a one-time enrollment token (as a station's
admin would: ``pht station enroll``), and write everything each station runs with: the settings, keys and policy
of its agent and of its metadata processing unit (MPU)."""

import secrets
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from client import CentralClient
from client.key_claims import keys_in
from graph_store import PHT_NS
from station import CONTAINER_ENGINES
from station_mpu import DEFAULT_POLICY
from trust import SIGNING_KEY_FILE

from .data import split_breast_cancer


def enroll_station(client: CentralClient, sid: str, key_dir: Path, *, runtime: str = "docker") -> str:
    """Register station ``sid`` and its dataset ``{sid}-data`` (``client``: an operator's), then enroll the
    station's keys, created in ``key_dir``, with a one-time enrollment token and no other credential, as the
    station's admin would; returns the station's IRI. Its MPU signs with ``key_dir/signing.pem``. Both `pht setup`
    and the in-process platform (``LocalPlatform``, the demo) set stations up this way."""
    station = client.register_station({"id": sid, "title": f"{sid} station", "owner": f"{sid} hospital",
                                       "runtimes": [runtime]})
    client.register_dataset({"id": f"{sid}-data", "title": f"patients at {sid}", "station": sid})
    token = client.enrollment_token(sid)["token"]
    keys, _ = keys_in(key_dir)
    with CentralClient(client.base_url, None) as admin:  # the token is the credential
        admin.enroll(sid, token, keys, station_iri=station["iri"])
    return station["iri"]


POLICY = """@prefix pht: <{pht}> .
# The station admin's policy (docs/station.md); edits apply without restarting the agent.
<{station}/policy> a pht:StationPolicy ;
    pht:appliesToStation <{station}> ;
    pht:requiresApproval {manual} ;
    pht:requiresOutputReview {manual} ;
    pht:maxOutputBytes 10000000 ;
    pht:minCellCount 5 ;
    # what the central service hears of a train's failure: pht:FailureCategory (only that it failed),
    # pht:FailureExitCode or pht:FailureMessage (the exit code and error text are the train's to choose)
    pht:sharesFailureDetail pht:FailureCategory ;
    # whether a release names the output checks and their results (their details always stay here)
    pht:sharesCheckNames false .
    # auto-approving images (pht:autoApproveImage) covers only their own commands, unless listed:
    # pht:autoApproveCommand "python /train/train.py" .
"""


def setup_stations(client: CentralClient, out: Path, stations: Sequence[str], *, objects_url: str,
                   station_tokens: dict[str, str] | None = None, runtime: str = "docker",
                   automatic: bool = False, mpu_port: int = 8181) -> dict[str, Path]:
    """Split the data into ``out/<station>/data``, register everything, and write per station:
    ``policy.ttl`` (the admin decides everything, unless ``automatic``: approve and release after the checks),
    ``mpu-policy.ttl`` (the MPU's safe default filter policy, to edit), ``keys/`` (the station's enrolled
    signing and encryption keys, 0700 / 0600), ``station.token`` (mode 0600: the
    station token from ``station_tokens``, which the agent renews and rewrites there and the MPU re-reads) and
    ``station.env`` (mode 0600: it holds the ingest token), the settings of both the agent and the MPU (listening
    on ``mpu_port``, the next station's on the next port), which share a fresh ingest token. Source it, then
    ``pht mpu serve & pht station run``. Returns station -> its folder."""
    folders = split_breast_cancer(out / "_split", stations)
    result = {}
    for i, sid in enumerate(stations):
        home = out / sid
        data = home / "data"
        home.mkdir(parents=True, exist_ok=True)
        if data.exists():
            raise FileExistsError(f"{data} exists; set up into a new folder")
        folders[sid].rename(data)
        keys = home / "keys"
        station_iri = enroll_station(client, sid, keys, runtime=runtime)
        manual = "false" if automatic else "true"
        (home / "policy.ttl").write_text(POLICY.format(pht=PHT_NS, station=station_iri, manual=manual))
        shutil.copyfile(DEFAULT_POLICY, home / "mpu-policy.ttl")
        token = (station_tokens or {}).get(sid, "")
        token_file = home.resolve() / "station.token"  # short-lived: the agent renews it here, the MPU re-reads it
        token_file.touch(mode=0o600)
        token_file.write_text(token + "\n" if token else "")
        settings = {
            # the agent (docs/station.md)
            "PHT_STATION_ID": sid, "PHT_CENTRAL_URL": client.base_url, "PHT_STATION_TOKEN_FILE": token_file,
            "PHT_STATION_DATASETS": f"{sid}-data={data.resolve()}", "PHT_STATION_STATE_DIR": home.resolve() / "state",
            "PHT_OBJECTS_URL": objects_url, "PHT_STATION_RUNTIME": runtime,
            "PHT_STATION_POLICY": (home / "policy.ttl").resolve(), "PHT_MPU_URL": f"http://127.0.0.1:{mpu_port + i}",
            "PHT_STATION_KEYS_DIR": keys.resolve(),
            # both: the agent sends it with every event, the MPU refuses events without it
            "PHT_MPU_INGEST_TOKEN": secrets.token_urlsafe(32),
            # the MPU's /metrics answers only with it (give it to the Prometheus that scrapes the station)
            "PHT_MPU_METRICS_TOKEN": secrets.token_urlsafe(32),
            # the MPU (docs/mpu.md): it signs with the station's signing key enrolled above
            "PHT_MPU_STATION": sid, "PHT_MPU_PORT": mpu_port + i, "PHT_MPU_CENTRAL_URL": client.base_url,
            "PHT_MPU_TOKEN_FILE": token_file, "PHT_MPU_PRIVATE_KEY": (keys / SIGNING_KEY_FILE).resolve(),
            "PHT_MPU_POLICY": (home / "mpu-policy.ttl").resolve(), "PHT_MPU_DATA_DIR": home.resolve() / "mpu",
            "PHT_MPU_BASE_IRI": station_iri.removesuffix(f"stations/{quote(sid, safe='')}"),
            # only containers have stats to sample
            "PHT_MPU_SAMPLE_INTERVAL_S": 10 if runtime in CONTAINER_ENGINES else 0,
        }
        env = home / "station.env"
        env.touch(mode=0o600)
        env.write_text("\n".join([
            f"# station {sid}: source this file, then start its MPU and its agent: pht mpu serve & pht station run",
            *(f"export {name}={shlex.quote(str(value))}" + (
                f"  # write a station token for {sid} into it (pht token issue --role station --station {sid})"
                if name == "PHT_STATION_TOKEN_FILE" and not token else "") for name, value in settings.items()),
            "",
        ]))
        result[sid] = home
    (out / "_split").rmdir()
    return result

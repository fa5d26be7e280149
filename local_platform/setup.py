"""Set up stations for the breast cancer example in one step: split the data, register each station
(with a fresh Ed25519 key pair) and its dataset at the central service, and write each station's settings."""

from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from client import CentralClient

from .data import split_breast_cancer


def new_station_key(private_key_file: Path) -> str:
    """Write a fresh Ed25519 private key (PEM, mode 0600) and return the public key PEM to register."""
    key = Ed25519PrivateKey.generate()
    private_key_file.parent.mkdir(parents=True, exist_ok=True)
    private_key_file.touch(mode=0o600)
    private_key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def register_station(client: CentralClient, sid: str, key_file: Path, *, runtime: str = "docker") -> str:
    """Register station ``sid`` with a new key and its dataset ``{sid}-data`` (operator token); returns
    the station's IRI."""
    station = client.register_station({"id": sid, "title": f"{sid} station", "owner": f"{sid} hospital",
                             "public_keys": [new_station_key(key_file)], "runtimes": [runtime]})
    client.register_dataset({"id": f"{sid}-data", "title": f"patients at {sid}", "station": sid})
    return station["iri"]


POLICY = """@prefix pht: <https://w3id.org/pht-kg/vocab#> .
# The station admin's policy (docs/station.md); edits apply without restarting the agent.
<{station}/policy> a pht:StationPolicy ;
    pht:appliesToStation <{station}> ;
    pht:requiresApproval {manual} ;
    pht:requiresOutputReview {manual} ;
    pht:maxOutputBytes 10000000 ;
    pht:minCellCount 5 .
"""


def setup_stations(client: CentralClient, out: Path, stations: Sequence[str], *, objects_url: str,
                   station_tokens: dict[str, str] | None = None, runtime: str = "docker",
                   automatic: bool = False) -> dict[str, Path]:
    """Split the data into ``out/<station>/data``, register everything, write ``out/<station>/policy.ttl``
    (the admin decides everything, unless ``automatic``: approve and release after the checks) and
    ``out/<station>/station.env`` (source it, then ``pht station run``). Returns station -> its folder."""
    folders = split_breast_cancer(out / "_split", stations)
    result = {}
    for sid in stations:
        home = out / sid
        data = home / "data"
        home.mkdir(parents=True, exist_ok=True)
        if data.exists():
            raise FileExistsError(f"{data} exists; set up into a new folder")
        folders[sid].rename(data)
        station_iri = register_station(client, sid, home / "station-key.pem", runtime=runtime)
        (home / "policy.ttl").write_text(POLICY.format(station=station_iri, manual="false" if automatic else "true"))
        token = (station_tokens or {}).get(sid, "")
        (home / "station.env").write_text("\n".join([
            f"export PHT_STATION_ID={sid}",
            f"export PHT_CENTRAL_URL={client.base_url}",
            f"export PHT_STATION_TOKEN={token}" + ("" if token else "  # a station token for " + sid),
            f"export PHT_STATION_DATASETS={sid}-data={data.resolve()}",
            f"export PHT_STATION_STATE_DIR={(home / 'state').resolve()}",
            f"export PHT_OBJECTS_URL={objects_url}",
            f"export PHT_STATION_RUNTIME={runtime}",
            f"export PHT_STATION_POLICY={(home / 'policy.ttl').resolve()}",
            "",
        ]))
        result[sid] = home
    (out / "_split").rmdir()
    return result

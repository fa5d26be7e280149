"""Issue 14's "Done when": a compromised central service learns no result. The demo's three trains run through the
whole platform (``LocalPlatform``: central service, three hospital stations and an aggregator, the object store;
Docker when it is there, as the demo chooses, else local processes); then the test plays the attacker who holds
everything the central side holds -- a dump of the central store (every quad), every file under the object store
folder, every record the central service logged, its ``/metrics`` -- and searches it for every plain result and
intermediate value, which it learns first by playing each output's proper reader (decrypting with that reader's
key). It finds none, and every object is an age ciphertext that exactly its next readers open.

The search could fail: the same needles are all found in the stations' state folders, where the plain outputs
stay (a positive control). The agents' clean-up of finished executions' folders is switched off for that, nothing
else.
"""

from __future__ import annotations

import io
import json
import logging
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import servers
from conftest import in_ci, require_component
from pyoxigraph import RdfFormat
from rich.console import Console

from local_platform import LocalPlatform, StationSpec, split_breast_cancer
from orchestrator import Role
from pht_cli import demo
from station.agent import StationAgent
from trust import SealError, load_keys, open_sealed

AGE_HEADER = b"age-encryption.org/v1\n"
#: what the central service logs under (its modules, its store, its HTTP server)
CENTRAL_LOGGERS = ("orchestrator", "pht.watchdog", "graph_store", "uvicorn", "fastapi", "starlette")
#: a number as a train prints it, distinctive enough to be found only where the output is: 5 decimals or more
NUMBER = re.compile(rb"-?\d+\.\d{5,}(?:e-?\d+)?")


class Captured(logging.Handler):
    """Every record of the central service's loggers, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._loggers: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CENTRAL_LOGGERS) and record not in self.records:
            self.records.append(record)

    def attach(self) -> None:
        """Listen at DEBUG on the root logger and on the central loggers themselves (uvicorn's access log does not
        propagate, and uvicorn sets its loggers' levels when a server is configured: call this after)."""
        for logger in [logging.getLogger(), *(logging.getLogger(n) for n in (*CENTRAL_LOGGERS, "uvicorn.access",
                                                                             "uvicorn.error"))]:
            self._loggers.append((logger, logger.level))
            if logger.name != "root":
                logger.setLevel(logging.DEBUG)
            logger.addHandler(self)

    def detach(self) -> None:
        for logger, level in reversed(self._loggers):  # the first saved levels are the originals
            logger.removeHandler(self)
            logger.setLevel(level)


@pytest.fixture()
def central_logs() -> Iterator[Captured]:
    handler = Captured()
    handler.attach()
    try:
        yield handler
    finally:
        handler.detach()


def runtime() -> str:
    """Docker when it is usable here (required under CI), else the process runtime, as ``pht demo`` chooses."""
    if in_ci() or servers.available("docker") is None:
        require_component("docker")
        return "docker"
    return "process"


def expected_readers(train: dict, execution: dict, stations: list[str]) -> set[str]:
    """The rule, restated by the test: the next station, the aggregator, the next round's stations, or alice."""
    rounds = max(e["round"] for e in train["executions"])
    last_round = execution["round"] == rounds
    if execution["stop"] is None:  # an aggregation
        return {"alice"} if last_round else set(stations)
    if any(e["stop"] is None for e in train["executions"]):  # federated: a station's update
        return {"aggregator"}
    return {"alice"} if execution["stop"] == len(stations) - 1 else {stations[execution["stop"] + 1]}


def needles_of(plain: bytes) -> set[bytes]:
    """What would give a plain output away: the SHA-256 of its archive, each file's bytes, each number printed."""
    import hashlib
    found = {hashlib.sha256(plain).hexdigest().encode()}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile():
                content = archive.extractfile(member).read()  # type: ignore[union-attr]
                found.add(content)
                found.update(NUMBER.findall(content))
    return found


def folder_bytes(root: Path) -> bytes:
    """Every file under ``root`` and its path, as one blob to search."""
    return b"\n".join(str(p).encode() + b"\n" + p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_a_compromised_central_service_finds_no_result_or_intermediate_value(
        tmp_path: Path, central_logs: Captured, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(StationAgent, "_forget_finished", lambda self, current: None)  # keep the positive control
    folders = split_breast_cancer(tmp_path / "data", demo.HOSPITALS)
    (tmp_path / "data" / "aggregator").mkdir()
    specs = [StationSpec(s, folders[s]) for s in demo.HOSPITALS] + [StationSpec("aggregator", tmp_path / "data" / "aggregator")]
    stations = list(demo.HOSPITALS)
    with LocalPlatform(tmp_path / "platform", specs, runtime=runtime()) as platform:
        central_logs.attach()  # again: starting the servers reset uvicorn's loggers
        demo._run_trains(Console(file=io.StringIO(), width=200), platform)  # the demo's trains, results fetched
        alice = platform.client("alice")
        trains = [alice.train(t["id"]) for t in alice.trains()]
        assert len(trains) >= 2 and all(t["state"] == "finished" for t in trains), trains
        metrics = httpx.get(platform.url + "/metrics", timeout=30,
                            headers={"Authorization": "Bearer " + platform.token("ops", Role.OPERATOR)})
        assert metrics.status_code == 200, metrics.text
        assert platform.store is not None
        dump = platform.store.oxigraph.dump(format=RdfFormat.N_QUADS)
        workdir = platform.workdir

    keys = {sid: load_keys(workdir / "keys" / sid).encryption for sid in [*stations, "aggregator"]}
    keys["alice"] = load_keys(workdir / "keys" / "researchers" / "alice").encryption
    needles: set[bytes] = set()
    released = 0
    for train in trains:
        for execution in train["executions"]:
            assert execution["state"] == "released", execution
            ciphertext = platform.objects.path_for(execution["output_sha256"]).read_bytes()
            assert ciphertext.startswith(AGE_HEADER), f"the output of {execution['id']} is not an age ciphertext"
            opened = {}
            for who, key in keys.items():
                try:
                    opened[who] = open_sealed(ciphertext, key)
                except SealError:
                    continue
            assert set(opened) == expected_readers(train, execution, stations), execution["id"]
            needles |= needles_of(next(iter(opened.values())))
            released += 1
    assert released >= 6

    objects = workdir / "objects"
    object_files = [p for p in objects.rglob("*") if p.is_file()]
    assert object_files and all(p.read_bytes().startswith(AGE_HEADER) for p in object_files)
    logs = "\n".join(f"{r.name} {r.getMessage()}" for r in central_logs.records).encode()
    assert central_logs.records, "the central service's log records were captured"
    central = {"the central store": dump, "the object store": folder_bytes(objects), "the central logs": logs,
               "the central metrics": metrics.content}
    assert len(needles) > 50, "enough distinctive values to search for"
    for where, blob in central.items():
        leaked = [n[:80] for n in needles if n in blob]
        assert leaked == [], f"{where} holds plain result values: {leaked[:5]}"
    at_stations = folder_bytes(workdir / "stations")
    assert [n[:80] for n in needles if n not in at_stations] == [], "the positive control finds every needle"
    assert b"sha256" in dump and json.dumps(trains[0]["executions"][0]["output_sha256"]).strip('"').encode() in dump

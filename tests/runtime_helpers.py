"""Helpers for the runtime tests: run specs for the probe train, host-side TCP listeners, report parsing."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from station import contract
from station.runtimes.base import Limits, RunResult, RunSpec

DATASET_FILE = "sample.csv"
DATASET_TEXT = "id,age\n1,42\n2,57\n"


def make_spec(tmp_path: Path, *, name: str, image: str, digest: str, params: dict[str, str],
              limits: Limits | None = None, with_input: bool = False,  # with an input and a data-space input
              entrypoint: list[str] | None = None) -> RunSpec:
    """A RunSpec with a small dataset whose file is world-writable on the host: only the read-only mount
    can stop the train from writing it, so an EROFS from inside proves the mount. ``name`` gets the pid
    appended, so two test sessions on one engine do not discard each other's containers."""
    name = f"{name}-{os.getpid()}"
    dataset = tmp_path / "dataset"
    dataset.mkdir(mode=0o755)
    dataset.chmod(0o777)
    (dataset / DATASET_FILE).write_text(DATASET_TEXT)
    (dataset / DATASET_FILE).chmod(0o666)
    input_dir = None
    dataspace_dir = None
    if with_input:
        input_dir = tmp_path / "input"
        (input_dir / "0").mkdir(parents=True)
        (input_dir / "0" / "result.json").write_text("{}")
        for path in (input_dir, input_dir / "0"):
            path.chmod(0o777)
        dataspace_dir = tmp_path / "dataspace"  # a data-space input, world-writable: only the mount protects it
        (dataspace_dir / "cohort").mkdir(parents=True)
        (dataspace_dir / "cohort" / "data").write_text("id\n1\n")
        (dataspace_dir / "cohort" / "data").chmod(0o666)
        for path in (dataspace_dir, dataspace_dir / "cohort"):
            path.chmod(0o777)
    params_file = tmp_path / "params.json"
    params_file.write_text(json.dumps(params))
    params_file.chmod(0o666)
    return RunSpec(
        name=name, image=image, image_digest=digest, dataset_dir=dataset, input_dir=input_dir,
        params_file=params_file, output_dir=tmp_path / "output",
        environment=contract.run_environment(role=contract.ROLE_STATION, round_=1, station="test-station",
                                             input_count=1 if with_input else 0),
        entrypoint=entrypoint, limits=limits or Limits(timeout_s=60), dataspace_dir=dataspace_dir)


def python_train(code: str) -> list[str]:
    """An entrypoint that runs ``code`` with the image's Python (the probe image's), instead of the probe."""
    return ["python3", "-c", code]


def report_from_logs(result: RunResult) -> dict:
    """The probe's report as it printed it (also available when the output was not copied)."""
    for line in result.logs.decode(errors="replace").splitlines():
        if line.startswith("PROBE-REPORT "):
            return json.loads(line.removeprefix("PROBE-REPORT "))
    raise AssertionError(f"no PROBE-REPORT line in the logs: {result.logs[-2000:]!r}")


def host_address() -> str | None:
    """A non-loopback address of this host (the one its default route uses), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # UDP connect sends nothing; it only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


@contextlib.contextmanager
def tcp_listener() -> Iterator[list[str]]:
    """Listen on every host address; yield ``host:port`` targets a connected train *could* reach: loopback,
    the host's own address and (if any) Docker's bridge gateway. Each is checked to accept from the host."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", 0))
    server.listen(16)
    port = server.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = server.accept()
                conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    addresses = ["127.0.0.1"] + [a for a in (host_address(), "172.17.0.1") if a]
    targets = []
    for address in dict.fromkeys(addresses):
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            targets.append(f"{address}:{port}")
    assert f"127.0.0.1:{port}" in targets, "the host cannot reach its own listener"
    try:
        yield targets
    finally:
        stop.set()
        thread.join()
        server.close()


def output_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def processes_with_argument(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (to prove a killed train is really gone)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found

"""The process runtime: train folders as bubblewrap-sandboxed processes (and, loudly, without a sandbox).

The behavioural tests run the same probe train folder the Docker tests build into an image.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PROBE_TRAIN_DIR
from runtime_helpers import (
    DATASET_FILE,
    DATASET_TEXT,
    make_spec,
    output_size,
    processes_with_argument,
    report_from_logs,
    tcp_listener,
)

from station.runtimes.base import ImageRefused, Limits
from station.runtimes.process import (
    DEFAULT_PATH,
    IsolationWarning,
    ProcessRuntime,
    folder_digest,
    host_argv,
    train_command,
    train_uid_can_run_python,
)

PROBE = Path(PROBE_TRAIN_DIR)
EXTERNAL = "1.1.1.1:443"

bwrap = pytest.mark.real_component("bubblewrap")


@pytest.fixture
def train_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    shutil.copytree(PROBE, folder)
    return folder


@pytest.fixture
def sandbox(tmp_path: Path) -> ProcessRuntime:
    from conftest import require_component

    require_component("bubblewrap")
    return ProcessRuntime(work_root=tmp_path / "work")


# ---------------------------------------------------------------------------- digests and commands


def test_folder_digest_covers_content_names_and_exec_bit_only(train_folder: Path) -> None:
    digest = folder_digest(train_folder)
    assert digest.startswith("sha256:") and len(digest) == 71
    assert folder_digest(PROBE) == digest  # another copy, other mtimes and inode order: same digest
    os.utime(train_folder / "probe.py", (0, 0))
    assert folder_digest(train_folder) == digest
    (train_folder / "probe.py").chmod(0o755)
    assert folder_digest(train_folder) != digest
    (train_folder / "probe.py").chmod(0o644)
    assert folder_digest(train_folder) == digest
    with open(train_folder / "probe.py", "a") as f:
        f.write("\n")
    assert folder_digest(train_folder) != digest


def test_folder_digest_refuses_links(train_folder: Path) -> None:
    (train_folder / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ImageRefused, match="neither a file nor a folder"):
        folder_digest(train_folder)


def test_check_image(train_folder: Path) -> None:
    runtime = ProcessRuntime(bwrap=shutil.which("bwrap") or "/usr/bin/bwrap")
    runtime.check_image(str(train_folder), folder_digest(train_folder))
    with pytest.raises(ImageRefused, match="not the approved"):
        runtime.check_image(str(train_folder), "sha256:" + "0" * 64)
    with pytest.raises(ImageRefused, match="does not exist"):
        runtime.check_image(str(train_folder / "missing"), folder_digest(train_folder))


def test_train_command_from_dockerfile(train_folder: Path) -> None:
    assert train_command(train_folder).workdir == "/app"
    assert train_command(train_folder).argv == ["python3", "probe.py"]
    (train_folder / "Dockerfile").write_text("FROM x\nWORKDIR /app\nENTRYPOINT python3 probe.py\n")
    with pytest.raises(ImageRefused, match="exec form"):
        train_command(train_folder)
    (train_folder / "Dockerfile").write_text('FROM x\nWORKDIR /pht\nENTRYPOINT ["python3"]\n')
    with pytest.raises(ImageRefused, match="cannot hold"):
        train_command(train_folder)


# ---------------------------------------------------------------------------- with bubblewrap


@bwrap
def test_sandboxed(sandbox: ProcessRuntime, tmp_path: Path) -> None:
    """No network, read-only dataset/inputs/root, uid 10001 without capabilities, output copied, logs kept."""
    digest = folder_digest(PROBE)
    with tcp_listener() as reachable_from_host:
        spec = make_spec(tmp_path, name="pht-test-proc", image=str(PROBE), digest=digest, with_input=True,
                         params={"connect": ",".join([*reachable_from_host, EXTERNAL]), "actions": "files:2"})
        sandbox.check_image(spec.image, digest)
        result = sandbox.run(spec)
    assert result.ok, (result.failure, result.logs)
    report = report_from_logs(result)
    for target, outcome in report["connect"].items():
        assert outcome in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH"}, f"{target}: {outcome}"
    assert set(report["connect"]) == {*reachable_from_host, EXTERNAL}
    assert report["data_first_line"] == "id,age"
    assert report["write_data_existing"] == report["write_data_new"] == "EROFS"
    assert (spec.dataset_dir / DATASET_FILE).read_text() == DATASET_TEXT
    assert report["inputs"] == ["0"] and report["write_input"] == "EROFS"
    assert report["dataspace"] == ["cohort"] and report["write_dataspace"] == "EROFS"
    assert report["write_dataspace_existing"] == "EROFS"
    assert report["write_root"] == report["write_etc"] == report["write_app"] == "EROFS"
    assert report["write_params"] in {"EROFS", "EACCES"}
    assert report["write_tmp"] == "written"
    assert (report["uid"], report["gid"]) == (10001, 10001)
    assert report["cap_eff"] == "0000000000000000"
    assert report["docker_socket"] is False
    assert report["env"]["PHT_DATA_DIR"] == "/pht/data"
    assert sorted(p.name for p in spec.output_dir.iterdir()) == ["file-0.txt", "file-1.txt", "report.json"]
    assert b"probe: done" in result.logs
    assert sandbox.leftovers() == []


@bwrap
def test_time_limit_kills_everything(sandbox: ProcessRuntime, tmp_path: Path) -> None:
    marker = f"--pht-test-marker-{os.getpid()}-{time.monotonic_ns()}"
    spec = make_spec(tmp_path, name="pht-test-proc-time", image=str(PROBE), digest=folder_digest(PROBE),
                     params={"actions": "sleep:60"}, limits=Limits(timeout_s=2),
                     entrypoint=["python3", "probe.py", marker])
    started = time.monotonic()
    result = sandbox.run(spec)
    assert time.monotonic() - started < 10
    assert not result.ok and result.exit_code is None
    assert "time limit of 2 s" in result.failure
    assert b"probe: sleep:60" in result.logs
    assert processes_with_argument(marker) == []
    assert sandbox.leftovers() == []


@bwrap
def test_exit_code(sandbox: ProcessRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, name="pht-test-proc-crash", image=str(PROBE), digest=folder_digest(PROBE),
                     params={"actions": "exit:3"})
    result = sandbox.run(spec)
    assert result.exit_code == 3 and result.failure == "The train exited with code 3."
    assert list(spec.output_dir.iterdir()) == []


@bwrap
def test_output_limit(sandbox: ProcessRuntime, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, name="pht-test-proc-output", image=str(PROBE), digest=folder_digest(PROBE),
                     params={"actions": "bigfile:20000000"}, limits=Limits(output_bytes=1024**2))
    result = sandbox.run(spec)
    assert not result.ok
    assert "larger than the limit of 1048576 bytes" in result.failure
    assert b"EFBIG" in result.logs  # RLIMIT_FSIZE stopped the writer
    assert output_size(spec.output_dir) == 0
    assert sandbox.leftovers() == []


@bwrap
def test_changed_folder_is_refused(sandbox: ProcessRuntime, train_folder: Path, tmp_path: Path) -> None:
    """Approved, then changed: the run checks the digest of the copy it runs, so the change cannot run."""
    digest = folder_digest(train_folder)
    sandbox.check_image(str(train_folder), digest)
    (train_folder / "probe.py").write_text("print('not the approved train')\n")
    spec = make_spec(tmp_path, name="pht-test-proc-changed", image=str(train_folder), digest=digest, params={})
    with pytest.raises(ImageRefused, match="not the approved"):
        sandbox.run(spec)
    assert sandbox.leftovers() == []


# ---------------------------------------------------------------------------- without bubblewrap


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A folder uid 10001 can traverse (pytest's tmp folders are 0700 root): the unisolated train runs as 10001
    when the tests run as root, and then needs to reach its dataset and work folder by path."""
    root = Path(tempfile.mkdtemp(prefix="pht-test-unisolated-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_without_bubblewrap_warns_and_still_limits(open_root: Path) -> None:
    with pytest.warns(IsolationWarning, match="NO ISOLATION"):  # the system's Python: one uid 10001 can run
        runtime = ProcessRuntime(bwrap=None, work_root=open_root / "work", unisolated_path=DEFAULT_PATH)
    assert not runtime.isolated
    spec = make_spec(open_root, name="pht-test-unisolated", image=str(PROBE), digest=folder_digest(PROBE),
                     params={"actions": "files:1"})
    result = runtime.run(spec)
    assert result.ok, (result.failure, result.logs)
    report = report_from_logs(result)
    assert report["data_first_line"] == "id,age"
    assert report["env"]["PHT_DATA_DIR"] == str(spec.dataset_dir)  # host paths: the contract's do not exist
    if os.geteuid() == 0:
        assert report["uid"] == 10001  # root drops to the train uid even without a sandbox
    assert sorted(p.name for p in spec.output_dir.iterdir()) == ["file-0.txt", "report.json"]

    (open_root / "timed").mkdir()
    timed = make_spec(open_root / "timed", name="pht-test-unisolated-time", image=str(PROBE),
                      digest=folder_digest(PROBE), params={"actions": "sleep:60"}, limits=Limits(timeout_s=1))
    result = runtime.run(timed)
    assert "time limit of 1 s" in result.failure
    assert runtime.leftovers() == []


def test_unisolated_trains_run_with_the_station_python_and_reach_their_folder(open_root: Path) -> None:
    """Without bubblewrap the contract's paths do not exist: an argument naming the WORKDIR runs the host copy,
    and ``python3`` is the station's own Python (numpy included), so the demo's trains run on a bare machine.
    As root the train drops to uid 10001 exactly when that user can run this Python (not under pyenv's /root)."""
    assert host_argv(["python3", "/app/probe.py", "/app", "/apple", "x"], "/app", Path("/w/train")) == [
        "python3", "/w/train/probe.py", "/w/train", "/apple", "x"]
    with pytest.warns(IsolationWarning):
        runtime = ProcessRuntime(bwrap=None, work_root=open_root / "work")
    code = ("import json, os, sys, numpy; json.dump({'prefix': sys.prefix, 'uid': os.getuid()}, "
            "open(os.path.join(os.environ['PHT_OUTPUT_DIR'], 'who.json'), 'w'))")
    (open_root / "train").mkdir()
    folder = open_root / "train"
    (folder / "Dockerfile").write_text('FROM pht/python-base:bookworm\nWORKDIR /app\nENTRYPOINT ["python3", "/app/who.py"]\n')
    (folder / "who.py").write_text(code + "\n")
    spec = make_spec(open_root, name="pht-test-unisolated-python", image=str(folder), digest=folder_digest(folder),
                     params={})
    result = runtime.run(spec)
    assert result.ok, (result.failure, result.logs)
    who = json.loads((spec.output_dir / "who.json").read_text())
    assert who["prefix"] == sys.prefix
    if os.geteuid() == 0:
        assert runtime.drop_to_train_uid == train_uid_can_run_python(runtime.host_path)
        assert who["uid"] == (10001 if runtime.drop_to_train_uid else 0)

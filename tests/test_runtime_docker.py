"""The Docker runtime against the REAL engine (and Podman's Docker-compatible API): what a train cannot do.

Every run uses the probe train (tests/fixtures/trains/probe), which reports from inside what it could and
could not do; the assertions are on that report and on the host's side (files, containers, volumes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest
from conftest import require_component
from runtime_helpers import (
    DATASET_FILE,
    DATASET_TEXT,
    make_spec,
    output_size,
    processes_with_argument,
    python_train,
    report_from_logs,
    tcp_listener,
)

from station.images import build_train_image
from station.runtimes.base import ImageRefused, Limits, RuntimeFailure
from station.runtimes.docker import LABEL, DockerRuntime
from station.runtimes.podman import service_command

pytestmark = pytest.mark.real_component("docker")

EXTERNAL = "1.1.1.1:443"
WRONG_DIGEST = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def docker_runtime(docker_client: docker.DockerClient) -> DockerRuntime:
    return DockerRuntime(client=docker_client)


@pytest.fixture(scope="module")
def podman_runtime(probe_image: tuple[str, str], docker_client: docker.DockerClient,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRuntime]:
    """A throw-away ``podman system service`` (own storage under a temp folder) with the probe image loaded."""
    require_component("podman")
    root = tmp_path_factory.mktemp("podman")
    socket_path = root / "podman.sock"
    storage = ["--root", str(root / "storage"), "--runroot", str(root / "run"), "--tmpdir", str(root / "tmp"),
               "--storage-driver", "overlay"]
    podman = shutil.which("podman")
    assert podman is not None
    log = open(root / "service.log", "wb")  # noqa: SIM115 - closed in the finally below
    # cwd: Podman's conmon writes an empty "oom" file into its working folder when a container runs out of memory
    service = subprocess.Popen(service_command(f"unix://{socket_path}", podman=podman, global_args=storage),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root)
    client: docker.DockerClient | None = None
    try:
        deadline = time.monotonic() + 30
        while not _accepts(socket_path):
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not start: {(root / 'service.log').read_text()[-2000:]}")
            time.sleep(0.2)
        client = docker.DockerClient(base_url=f"unix://{socket_path}", timeout=120)
        client.images.load(docker_client.images.get(probe_image[1]).save())
        yield DockerRuntime(client=client)
    finally:
        if client is not None:
            client.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        log.close()
        _kill_exec_monitors(root)
        subprocess.run([podman, *storage, "system", "reset", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _kill_exec_monitors(root: Path) -> None:
    """Podman keeps the ``conmon`` of every finished exec for ``exit_command_delay`` (300 s), then runs
    ``podman --root <root> container cleanup --exec``. With this throw-away storage gone by then, that command
    creates it anew and leaves its overlay folder mounted (undeletable tmp folders, seen here). So the
    monitors of *this* service's storage (their command lines name ``root``) are killed before it is removed."""
    for pid in processes_with_argument(str(root)):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "conmon":
                os.kill(pid, signal.SIGKILL)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@pytest.fixture(params=["docker", pytest.param("podman", marks=pytest.mark.real_component("podman"))])
def engine(request: pytest.FixtureRequest) -> DockerRuntime:
    return request.getfixturevalue(f"{request.param}_runtime")


def labelled(client: docker.DockerClient, name: str) -> tuple[list[str], list[str]]:
    """Containers and volumes the engine still has for execution ``name``."""
    selector = {"label": f"{LABEL}={name}"}
    return ([c.name for c in client.containers.list(all=True, filters=selector)],
            [v.name for v in client.volumes.list(filters=selector)])


def test_locked_down(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """No network, read-only dataset/inputs/params/root file system, uid 10001 without capabilities, no Docker
    socket; the output is copied out, the logs captured, and nothing is left behind."""
    tag, image_id = probe_image
    with tcp_listener() as reachable_from_host:
        spec = make_spec(tmp_path, name="pht-test-locked-down", image=tag, digest=image_id, with_input=True,
                         params={"connect": ",".join([*reachable_from_host, EXTERNAL]), "actions": "files:3"})
        engine.check_image(image_id, image_id)
        result = engine.run(spec)
    assert result.ok, (result.failure, result.logs)
    assert result.exit_code == 0
    report = report_from_logs(result)

    assert report["interfaces"] == ["lo"]  # network "none": nothing but its own loopback
    assert set(report["connect"]) == {*reachable_from_host, EXTERNAL}
    for target, outcome in report["connect"].items():
        assert outcome != "connected", f"the train reached {target}"
        assert outcome in {"ECONNREFUSED", "ENETUNREACH", "EHOSTUNREACH", "ETIMEDOUT", "timeout"}, outcome

    assert report["data_first_line"] == "id,age"  # it can read the dataset ...
    assert report["write_data_existing"] == "EROFS"  # ... but not change it (the file is 0666 on the host)
    assert report["write_data_new"] == "EROFS"
    assert (spec.dataset_dir / DATASET_FILE).read_text() == DATASET_TEXT
    assert sorted(p.name for p in spec.dataset_dir.iterdir()) == [DATASET_FILE]
    assert report["inputs"] == ["0"] and report["write_input"] == "EROFS"
    assert report["dataspace"] == ["cohort"] and report["write_dataspace"] == "EROFS"
    assert report["write_dataspace_existing"] == "EROFS"
    assert report["write_params"] in {"EROFS", "EACCES"}
    assert report["write_root"] == report["write_etc"] == report["write_app"] == "EROFS"
    assert report["write_tmp"] == "written"

    assert (report["uid"], report["euid"], report["gid"]) == (10001, 10001, 10001)
    assert report["groups"] in ([], [10001])
    assert report["cap_eff"] == "0000000000000000"
    assert report["cap_bnd"] == "0000000000000000"
    assert report["no_new_privs"] == "1"
    assert report["docker_socket"] is False
    if not engine.is_podman:  # Podman 4.3's compatible API ignores ipc_mode="none" (docs/runtimes.md)
        assert report["dev_shm"] is False
    assert report["env"]["PHT_STATION"] == "test-station" and report["env"]["PHT_DATA_DIR"] == "/pht/data"

    assert sorted(p.name for p in spec.output_dir.iterdir()) == ["file-0.txt", "file-1.txt", "file-2.txt",
                                                                 "report.json"]
    assert (spec.output_dir / "file-2.txt").read_text() == "file 2\n"
    assert b"probe: done" in result.logs
    assert spec.name not in engine.leftovers()
    assert labelled(engine.client, spec.name) == ([], [])


def test_memory_limit(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    tag, image_id = probe_image
    spec = make_spec(tmp_path, name="pht-test-memory", image=tag, digest=image_id, params={"actions": "alloc:300"},
                     limits=Limits(memory_bytes=64 * 1024**2, timeout_s=60))
    result = engine.run(spec)
    assert not result.ok
    assert "memory" in result.failure and "64 MiB" in result.failure
    if not engine.is_podman:  # Docker's "oom" event; Podman 4.3 on cgroup v1 reports nothing (docs/runtimes.md)
        assert result.failure == "The train ran out of memory (limit 64 MiB)."
    assert result.exit_code == 137
    assert list(spec.output_dir.iterdir()) == []
    assert spec.name not in engine.leftovers()


def test_time_limit(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    tag, image_id = probe_image
    spec = make_spec(tmp_path, name="pht-test-time", image=tag, digest=image_id, params={"actions": "sleep:60"},
                     limits=Limits(timeout_s=2))
    started = time.monotonic()
    result = engine.run(spec)
    assert time.monotonic() - started < 20
    assert not result.ok and result.exit_code is None
    assert "time limit of 2 s" in result.failure
    assert b"probe: sleep:60" in result.logs
    assert labelled(engine.client, spec.name) == ([], [])  # the container is gone, and its volume
    assert spec.name not in engine.leftovers()


def test_output_limit(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """The train tries to write 20 MB with a 1 MiB limit: refused, and the host receives nothing."""
    tag, image_id = probe_image
    spec = make_spec(tmp_path, name="pht-test-output", image=tag, digest=image_id,
                     params={"actions": "bigfile:20000000"}, limits=Limits(output_bytes=1024**2, timeout_s=60))
    result = engine.run(spec)
    assert not result.ok
    assert "larger than the limit of 1048576 bytes" in result.failure
    assert b"ENOSPC" in result.logs  # the tmpfs stopped the writer inside the container
    assert output_size(spec.output_dir) == 0
    assert spec.name not in engine.leftovers()


def test_exit_code(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    tag, image_id = probe_image
    spec = make_spec(tmp_path, name="pht-test-crash", image=tag, digest=image_id, params={"actions": "exit:3"})
    result = engine.run(spec)
    assert result.exit_code == 3
    assert result.failure == "The train exited with code 3."
    assert list(spec.output_dir.iterdir()) == []
    assert spec.name not in engine.leftovers()


def test_one_container_keeper_is_pid_1(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """The train runs (exec) in the run's one container, whose PID 1 is the keeper; the image's working folder,
    the environment and uid 10001 apply to it as they would to a container of its own."""
    tag, image_id = probe_image
    code = ("import json, os; print('TRAIN', json.dumps({'pid': os.getpid(), 'pid1': open('/proc/1/cmdline').read(), "
            "'cwd': os.getcwd(), 'uid': os.getuid(), 'station': os.environ['PHT_STATION'], "
            "'cgroup_same': open('/proc/1/cgroup').read() == open('/proc/self/cgroup').read()}))")
    spec = make_spec(tmp_path, name="pht-test-pid1", image=tag, digest=image_id, params={}, entrypoint=python_train(code))
    result = engine.run(spec)
    assert result.ok, (result.failure, result.logs)
    seen = json.loads(result.logs.decode().split("TRAIN ", 1)[1])
    assert seen["pid1"] == "sleep\x00infinity\x00" and seen["pid"] != 1
    assert seen["cwd"] == "/app" and seen["uid"] == 10001 and seen["station"] == "test-station"
    assert seen["cgroup_same"]  # the keeper's cgroup: the train's limits
    assert labelled(engine.client, spec.name) == ([], [])


def test_leftover_processes_are_killed(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """A train whose main process exits while a child still runs (holding stdout): the run ends, the output is
    collected, and the child is gone afterwards (it dies with the container)."""
    marker = f"{os.getpid()}7"
    code = (f"import subprocess; subprocess.Popen(['sleep', '{marker}']); "
            "open('/pht/output/result.txt', 'w').write('done'); print('main done')")
    spec = make_spec(tmp_path, name="pht-test-orphan", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=python_train(code))
    started = time.monotonic()
    result = engine.run(spec)
    assert result.ok, (result.failure, result.logs)
    assert time.monotonic() - started < 15  # Docker closes the exec's output 2 s after its process exited
    assert (spec.output_dir / "result.txt").read_text() == "done"
    assert b"main done" in result.logs
    assert processes_with_argument(marker) == []
    assert labelled(engine.client, spec.name) == ([], [])


def test_exit_awaited_after_output_closed(engine: DockerRuntime, probe_image: tuple[str, str],
                                          tmp_path: Path) -> None:
    """The train's output ending is not the train ending: a train that closes stdout and stderr and goes on
    is waited for (its exit code and later output count)."""
    code = ("import os, time; print('closing', flush=True); os.close(1); os.close(2); time.sleep(1.5); "
            "open('/pht/output/late.txt', 'w').write('late'); raise SystemExit(0)")
    spec = make_spec(tmp_path, name="pht-test-closed", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=python_train(code))
    result = engine.run(spec)
    assert result.ok, (result.failure, result.logs)
    assert (spec.output_dir / "late.txt").read_text() == "late"


def test_time_limit_kills_every_process(engine: DockerRuntime, probe_image: tuple[str, str],
                                        tmp_path: Path) -> None:
    """Over the time limit, the train and its children are killed, even when it closed its output."""
    marker = f"{os.getpid()}9"
    code = (f"import os, subprocess, time; subprocess.Popen(['sleep', '{marker}']); print('started', flush=True); "
            "os.close(1); os.close(2); time.sleep(3600)")
    spec = make_spec(tmp_path, name="pht-test-time-all", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=python_train(code), limits=Limits(timeout_s=2))
    started = time.monotonic()
    result = engine.run(spec)
    assert time.monotonic() - started < 20
    assert result.exit_code is None and "time limit of 2 s" in result.failure
    assert b"started" in result.logs
    assert processes_with_argument(marker) == []
    assert labelled(engine.client, spec.name) == ([], [])


def test_log_tail(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """stdout and stderr both come back, and only the last ``log_bytes`` of them. (They are two pipes: their
    order is kept only as far as the engine reads them apart in time, hence the pause.)"""
    code = ("import sys, time\nfor i in range(20000): print(f'line {i:05d}', flush=i % 1000 == 0)\n"
            "sys.stdout.flush(); time.sleep(0.3); print('to stderr', file=sys.stderr, flush=True); time.sleep(0.3); "
            "print('LAST', flush=True)")
    spec = make_spec(tmp_path, name="pht-test-logs", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=python_train(code), limits=Limits(log_bytes=1000, timeout_s=60))
    result = engine.run(spec)
    assert result.ok, result.failure
    assert len(result.logs) == 1000
    assert result.logs.endswith(b"line 19999\nto stderr\nLAST\n")


def test_process_limit(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """``Limits.pids`` bounds the train's processes (the keeper has one more of its own)."""
    code = ("import errno, subprocess\nchildren = []\ntry:\n    for _ in range(200): "
            "children.append(subprocess.Popen(['sleep', '30']))\nexcept OSError as exc:\n"
            "    print('FORK', errno.errorcode[exc.errno], len(children), flush=True)\n    raise SystemExit(5)")
    spec = make_spec(tmp_path, name="pht-test-pids", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=python_train(code), limits=Limits(pids=20, timeout_s=60))
    result = engine.run(spec)
    assert result.exit_code == 5, (result.failure, result.logs)
    fork = result.logs.decode().split("FORK ", 1)[1].split()
    assert fork[0] == "EAGAIN" and int(fork[1]) < 20
    assert labelled(engine.client, spec.name) == ([], [])


def test_unknown_command_fails_the_run(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """A command the image does not have is the train's failure (exit 126/127, the engine's words in the logs)."""
    spec = make_spec(tmp_path, name="pht-test-nocmd", image=probe_image[0], digest=probe_image[1], params={},
                     entrypoint=["pht-no-such-command"])
    result = engine.run(spec)
    assert result.exit_code in (126, 127) and result.failure == f"The train exited with code {result.exit_code}."
    assert b"pht-no-such-command" in result.logs or b"not found" in result.logs
    assert labelled(engine.client, spec.name) == ([], [])


def test_leftover_container_of_the_same_name(engine: DockerRuntime, probe_image: tuple[str, str],
                                            tmp_path: Path) -> None:
    """A container an earlier, crashed attempt left under the execution's name does not stop the run."""
    spec = make_spec(tmp_path, name="pht-test-rerun", image=probe_image[0], digest=probe_image[1], params={})
    engine.client.containers.create(probe_image[1], name=spec.name, labels={LABEL: spec.name}, network_mode="none")
    result = engine.run(spec)
    assert result.ok, (result.failure, result.logs)
    assert labelled(engine.client, spec.name) == ([], [])


def test_keeper_missing(engine: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    """An image without the keeper's command cannot run here: a station-side RuntimeFailure that says why."""
    runtime = DockerRuntime(client=engine.client, keeper_command=("pht-no-such-keeper", "infinity"))
    spec = make_spec(tmp_path, name="pht-test-keeper", image=probe_image[0], digest=probe_image[1], params={})
    with pytest.raises(RuntimeFailure, match="pht-no-such-keeper infinity"):
        runtime.run(spec)
    assert labelled(engine.client, spec.name) == ([], [])


def test_image_without_command_refused(docker_runtime: DockerRuntime, docker_client: docker.DockerClient,
                                       tmp_path: Path) -> None:
    base_id = docker_client.images.get("pht/python-base:bookworm").id  # no ENTRYPOINT, no CMD
    spec = make_spec(tmp_path, name="pht-test-no-command", image="pht/python-base:bookworm", digest=base_id,
                     params={})
    with pytest.raises(ImageRefused, match="has no command"):
        docker_runtime.run(spec)
    assert spec.name not in docker_runtime.leftovers()


def test_wrong_digest_refused(docker_runtime: DockerRuntime, probe_image: tuple[str, str], tmp_path: Path) -> None:
    tag, image_id = probe_image
    docker_runtime.check_image(tag, image_id)
    with pytest.raises(ImageRefused, match="not the approved"):
        docker_runtime.check_image(tag, WRONG_DIGEST)
    with pytest.raises(ImageRefused, match="not an image digest"):
        docker_runtime.check_image(tag, image_id[:19])  # a prefix would be resolved by Docker: refused
    spec = make_spec(tmp_path, name="pht-test-wrong", image=tag, digest=WRONG_DIGEST, params={})
    with pytest.raises(ImageRefused, match="No image with ID"):
        docker_runtime.run(spec)
    assert spec.name not in docker_runtime.leftovers()


def test_missing_image_refused(docker_runtime: DockerRuntime, probe_image: tuple[str, str]) -> None:
    with pytest.raises(ImageRefused, match="not present"):
        docker_runtime.check_image("pht-test/no-such-image:1", probe_image[1])


def test_retag_cannot_swap_the_image(docker_runtime: DockerRuntime, docker_client: docker.DockerClient,
                                     probe_image: tuple[str, str], tmp_path: Path) -> None:
    """Approved by tag, then the tag is moved to another image: the run still uses the approved image ID."""
    _, image_id = probe_image
    tag = "pht-test/retag:approved"
    docker_client.images.get(image_id).tag(tag)
    try:
        docker_runtime.check_image(tag, image_id)
        docker_client.images.get("pht/python-base:bookworm").tag(tag)  # the swap
        with pytest.raises(ImageRefused):
            docker_runtime.check_image(tag, image_id)
        result = docker_runtime.run(make_spec(tmp_path, name="pht-test-retag", image=tag, digest=image_id,
                                              params={}))
        assert result.ok and b"PROBE-REPORT" in result.logs  # the probe ran, not the base image
    finally:
        docker_client.images.remove(tag)


def test_discard_removes_leftovers(docker_runtime: DockerRuntime, docker_client: docker.DockerClient,
                                   probe_image: tuple[str, str]) -> None:
    """What a crashed agent left (labelled container and volume) is found and removed."""
    name = "pht-test-crashed-agent"
    volume = docker_client.volumes.create(name=f"{name}-output", labels={LABEL: name})
    container = docker_client.containers.create(probe_image[1], name=name, labels={LABEL: name},
                                                network_mode="none")
    try:
        assert name in docker_runtime.leftovers()
        docker_runtime.discard(name)
        assert name not in docker_runtime.leftovers()
        assert labelled(docker_client, name) == ([], [])
        docker_runtime.discard(name)  # nothing there: no error
    finally:
        for remove in (lambda: container.remove(force=True), lambda: volume.remove(force=True)):
            with contextlib.suppress(docker.errors.NotFound):
                remove()


def test_build_never_pulls_a_missing_base(docker_client: docker.DockerClient, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM pht-test/absent-base:1\nCMD [\"true\"]\n")
    with pytest.raises(RuntimeFailure, match="base image pht-test/absent-base:1 is missing and is never pulled"):
        build_train_image(tmp_path, "pht-test/never-built:1", docker_client)

"""The ``pht`` command line: the README's demo command, and clear one-sentence errors with exit code 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from docker import DockerClient

REPO = Path(__file__).resolve().parent.parent
PHT = [sys.executable, "-m", "pht_cli.main"]


def pht(*args: str, cwd: Path = REPO, timeout: float = 120, tmpdir: Path | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """``pht`` as a user runs it; ``tmpdir``: its temporary directory (TMPDIR), for a test that looks inside."""
    env = {**os.environ, "COLUMNS": "200", **({"TMPDIR": str(tmpdir)} if tmpdir is not None else {})}
    return subprocess.run([*PHT, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def test_demo_runs_twice_in_a_row_cleans_up_and_keeps_on_request(tmp_path: Path) -> None:
    """The README's first command: the whole platform, three trains, results equal to the pooled ones."""
    private_tmp = tmp_path / "tmp"  # its own temporary directory: a demo another test run starts meanwhile is not seen
    private_tmp.mkdir()
    done = pht("demo", timeout=300, tmpdir=private_tmp)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "Traceback" not in done.stderr
    out = " ".join(done.stdout.split())
    assert "Demo files removed." in out and not list(private_tmp.iterdir())
    count = re.search(r"(\d+) patients with mean_radius > 15 │ (\d+)", out)
    assert count and count.group(1) == count.group(2), "the platform's count equals the pooled count"
    accuracy = re.search(r"accuracy (0\.\d+) after 6 .*?accuracy (0\.\d+)", out)
    assert accuracy and abs(float(accuracy.group(1)) - float(accuracy.group(2))) <= 0.02
    assert "train_history" in out and "station_durations" in out and "/sparql" in out and "/metrics" in out
    kept = tmp_path / "demo"
    again = pht("demo", "--keep", str(kept), timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    done = pht("query", "trains_by_state", "--store", str(kept / "platform" / "store"))
    assert done.returncode == 0, done.stderr
    assert "finished" in done.stdout


def test_demo_without_docker_runs_the_trains_as_local_processes() -> None:
    done = pht("demo", "--runtime", "process", timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    out = " ".join(done.stdout.split())
    assert "runtime: process" in out
    count = re.search(r"(\d+) patients with mean_radius > 15 │ (\d+)", out)
    assert count and count.group(1) == count.group(2)
    assert "accuracy" in out and "failed" not in out


#: Run inside a private mount namespace: hides the Docker engine and clients, Podman, bubblewrap and the system
#: numpy by mounting over them, proves they are hidden, then runs the command given.
HIDE_INSTALLED = r"""
set -eu
for dir in $(echo "$PATH" | tr ':' ' ') /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin; do
  for program in bwrap docker dockerd podman; do
    if [ -f "$dir/$program" ]; then mount --bind /dev/null "$dir/$program"; fi
  done
done
for socket in /var/run/docker.sock /run/docker.sock /run/podman/podman.sock; do
  if [ -e "$socket" ]; then mount --bind /dev/null "$socket"; fi
done
# Debian's python3-numpy has parts in both /usr/lib/python3/ and /usr/lib/python3.X/dist-packages
for packages in /usr/lib/python3/dist-packages /usr/lib/python3*/dist-packages /usr/local/lib/python3*/dist-packages; do
  if [ -d "$packages" ]; then mount -t tmpfs -o size=1m,mode=0755 none "$packages"; fi
done
if /usr/bin/python3 -c "import numpy; numpy.ndarray" 2>/dev/null; then
  echo "the system numpy is still visible" >&2; exit 97
fi
if command -v bwrap >/dev/null || command -v docker >/dev/null; then echo "bwrap or docker still visible" >&2; exit 97; fi
exec "$@"
"""


def test_the_readme_demo_runs_all_three_trains_on_a_bare_machine(tmp_path: Path) -> None:
    """A fresh machine of the project's kind has no Docker engine, no bubblewrap and no system numpy: the demo
    still runs all three trains (the unisolated process runtime, with the station's own Python), prints results
    equal to the pooled computation, and says which runtime it used, why, and what to install for isolation."""
    from conftest import require_component
    require_component("mount-namespace")
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "PHT_PODMAN_URL")}
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_INSTALLED, "sh",
                           *PHT, "demo"], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**env, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = " ".join((done.stdout + done.stderr).split())
    assert "no Docker engine" in out and "runtime: process" in out
    assert "NO ISOLATION" in out and "apt-get install bubblewrap" in out
    count = re.search(r"(\d+) patients with mean_radius > 15 │ (\d+)", out)
    assert count and count.group(1) == count.group(2), "the platform's count equals the pooled count"
    means = re.findall(r"mean_radius: mean (\d+\.\d+), variance (\d+\.\d+) │ mean (\d+\.\d+), variance (\d+\.\d+)", out)
    assert means and means[0][:2] == means[0][2:], "incremental mean and variance equal the pooled ones"
    accuracy = re.search(r"accuracy (0\.\d+) after 6 .*?accuracy (0\.\d+)", out)
    assert accuracy and abs(float(accuracy.group(1)) - float(accuracy.group(2))) <= 0.02
    assert "failed" not in out and "Traceback" not in out


def test_validate_accepts_the_demo_registry() -> None:
    done = pht("validate", "examples/registry.ttl")
    assert done.returncode == 0, done.stderr
    assert "conforms" in done.stdout


@pytest.mark.parametrize("content,expected", [
    ("@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n<https://x.org/s> a pht:Station .\n",
     "does not conform to the shapes"),
    ("<https://x.org/s> <https://x.org/p> \"unterminated .\n", "malformed Turtle: Parser error"),
    ("@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n<https://x.org/s> a pht:Statoin .\n",
     "does not conform to the shapes"),
])
def test_validate_refuses_bad_files_with_a_sentence(tmp_path: Path, content: str, expected: str) -> None:
    f = tmp_path / "bad.ttl"
    f.write_text(content)
    done = pht("validate", str(f))
    assert done.returncode == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_term_is_named(tmp_path: Path) -> None:
    f = tmp_path / "typo.ttl"
    f.write_text("@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n<https://x.org/s> a pht:Statoin .\n")
    done = pht("validate", str(f))
    assert "unknown class https://w3id.org/pht-kg/vocab#Statoin" in done.stderr


def test_missing_file_and_unknown_query_fail_cleanly(tmp_path: Path) -> None:
    done = pht("validate", str(tmp_path / "nope.ttl"))
    assert done.returncode == 1 and "is not a file" in done.stderr
    (tmp_path / "store").mkdir()
    done = pht("query", "no_such_query", "--store", str(tmp_path / "store"))
    assert done.returncode == 1 and "no SPARQL query named 'no_such_query'" in done.stderr
    assert "Traceback" not in done.stderr


COMMANDS = [("demo",), ("validate",), ("query",), ("serve",), ("ask",), ("token", "issue"),
            *[("station", c) for c in ("run", "pending", "approve", "reject", "withhold", "review", "release",
                                        "build-image")],
            *[("train", c) for c in ("submit", "list", "watch", "results", "cancel", "new")],
            *[("result", c) for c in ("publish", "withdraw")]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: tuple[str, ...]) -> None:
    done = pht(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Example: " in done.stdout and "pht " in done.stdout.split("Example: ", 1)[1]


def test_token_issue_prints_a_token_the_service_accepts() -> None:
    import os

    from orchestrator.auth import TokenVerifier
    from orchestrator.principal import Role
    from orchestrator.settings import DEMO_SECRET, Settings

    env = dict(os.environ, PHT_DEMO="1")
    done = subprocess.run([*PHT, "token", "issue", "--sub", "st", "--role", "station", "--station", "aachen"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    principal = TokenVerifier(Settings(jwt_secret=DEMO_SECRET, demo=True)).verify(done.stdout.strip())
    assert principal.roles == frozenset({Role.STATION}) and principal.station == "aachen"
    bad = subprocess.run([*PHT, "token", "issue", "--sub", "x", "--role", "station"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and "station" in bad.stderr and "Traceback" not in bad.stderr


def test_serve_refuses_a_missing_secret_with_a_sentence(tmp_path: Path) -> None:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    done = subprocess.run([*PHT, "serve", "--store", str(tmp_path / "s")], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert "set PHT_JWT_SECRET or PHT_JWKS_URL" in done.stderr


@pytest.mark.real_component("docker")
def test_build_image_prints_the_digest_the_engine_reports(tmp_path: Path, docker_client: DockerClient) -> None:
    done = pht("station", "build-image", "trains/cohort-count", "--tag", "pht-test/cli-build:1", timeout=300)
    assert done.returncode == 0, done.stderr
    digest = done.stdout.strip()
    assert digest.startswith("sha256:") and docker_client.images.get("pht-test/cli-build:1").id == digest
    missing = pht("station", "build-image", str(tmp_path), "--tag", "x:1")
    assert missing.returncode == 1 and "has no Dockerfile" in missing.stderr


def test_station_commands_fail_with_one_sentence_when_the_service_is_unreachable() -> None:
    done = pht("station", "approve", "x.r1-s0", "--central", "http://127.0.0.1:9", "--token", "t")
    assert done.returncode == 1 and "cannot reach the central service" in done.stderr
    assert "Traceback" not in done.stderr
    done = pht("train", "submit", "README.md", "--central", "http://127.0.0.1:9", "--token", "t")
    assert done.returncode == 1 and "is not valid JSON" in done.stderr
    done = subprocess.run([*PHT, "station", "run", "--once"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PHT_")})
    assert done.returncode == 1 and "PHT_STATION_DATASETS is not set" in done.stderr


def test_demo_without_numpy_on_the_host_runs_the_incremental_trains_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    from pht_cli import demo
    monkeypatch.setattr(demo, "_train_python_has_numpy", lambda: False)
    out = io.StringIO()
    demo.run(Console(file=out, width=200), runtime="process")
    text = out.getvalue()
    assert "the federated train needs numpy" in text and "python3-numpy" in text
    assert "patients with mean_radius > 15" in text and "mean_radius: mean" in text
    assert "accuracy" not in text and "Demo files removed." in text


def test_without_a_docker_engine_the_demo_chooses_the_process_runtime_and_says_why(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from local_platform import detect_runtime
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    runtime, why = detect_runtime()
    assert runtime == "process" and why is not None and "no Docker engine socket" in why


def test_the_demos_data_is_readable_by_the_trains_uid() -> None:
    """Without bubblewrap or Docker, and as root, the demo's trains run unisolated as uid 10001 and read each
    station's folder at its host path; the demo's folder comes from ``tempfile.mkdtemp`` (root only). On a bare
    machine every train failed with "Permission denied" on that folder (found from the station's log, session 18)."""
    import shutil
    import tempfile

    from pht_cli.demo import _readable_by_trains
    from station import contract

    work = Path(tempfile.mkdtemp(prefix="pht-demo-test-"))  # in /tmp, as the demo's (pytest's tmp_path is root's)
    try:
        data = work / "data" / "aachen" / "data.csv"
        data.parent.mkdir(parents=True)
        data.write_text("mean_radius\n15\n")
        data.chmod(0o600)
        _readable_by_trains(work)
        python = shutil.which("python3", path="/usr/bin:/bin")  # the system's, as a train's (not root's venv)
        if os.geteuid() == 0 and python:  # as the process runtime runs a train without isolation
            def drop() -> None:
                os.setgid(contract.TRAIN_UID)
                os.setuid(contract.TRAIN_UID)
            reader = [python, "-c", "import sys; print(open(sys.argv[1]).read(), end='')", str(data)]
            done = subprocess.run(reader, preexec_fn=drop, capture_output=True, text=True, cwd="/")
            assert done.returncode == 0 and done.stdout == "mean_radius\n15\n", done.stderr
        else:
            assert work.stat().st_mode & 0o005 == 0o005 and data.stat().st_mode & 0o004
    finally:
        shutil.rmtree(work, ignore_errors=True)

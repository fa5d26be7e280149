"""`pht setup` writes everything a station runs with, its metadata processing unit (MPU) included, and the
README's deployment by hand works as written: real `pht mpu serve` and `pht station run` processes started
from the written `station.env`, a real central service, events delivered into the station's graph."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from api_helpers import ALICE, DIGEST, OPS, SETTINGS, holding_keys
from central_thread import central_service
from polling import wait_for
from servers import free_port

from client import CentralClient
from client.key_claims import keys_in
from graph_store import PHT, station_graph
from orchestrator.naming import Iris

REPO = Path(__file__).resolve().parent.parent
PHT_CLI = [sys.executable, "-m", "pht_cli.main"]


def sourced(env_file: Path) -> dict[str, str]:
    """The environment a shell has after ``source env_file`` (how the README uses it)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    done = subprocess.run(["bash", "-c", 'source "$1" && env -0', "_", str(env_file)], env=clean,
                          capture_output=True, check=True)
    return dict(item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_the_settings_pht_setup_writes_start_a_real_mpu_and_agent_whose_events_need_the_ingest_token(
        tmp_path: Path) -> None:
    out, mpu_port = tmp_path / "stations", free_port()
    with central_service() as central:
        done = subprocess.run([*PHT_CLI, "setup", str(out), "--central", central.url, "--stations", "aachen",
                               "--runtime", "process", "--mpu-port", str(mpu_port)], cwd=REPO, capture_output=True,
                              text=True, timeout=120,
                              env={**os.environ, "PHT_DEMO": "1", "PHT_TOKEN": OPS["Authorization"][7:]})
        assert done.returncode == 0, done.stderr
        assert "pht mpu serve & pht station run" in done.stdout
        home = out / "aachen"
        assert stat.S_IMODE((home / "station.env").stat().st_mode) == 0o600, "it holds the tokens"
        env = sourced(home / "station.env")
        assert env["PHT_MPU_URL"] == f"http://127.0.0.1:{mpu_port}" and env["PHT_MPU_PORT"] == str(mpu_port)
        assert len(env["PHT_MPU_INGEST_TOKEN"]) >= 32
        assert len(env["PHT_MPU_METRICS_TOKEN"]) >= 32 and env["PHT_MPU_METRICS_TOKEN"] != env["PHT_MPU_INGEST_TOKEN"]
        # one short-lived station token, in a file the agent renews and the MPU re-reads
        assert env["PHT_MPU_TOKEN_FILE"] == env["PHT_STATION_TOKEN_FILE"]
        assert stat.S_IMODE(Path(env["PHT_STATION_TOKEN_FILE"]).stat().st_mode) == 0o600
        assert "PHT_STATION_TOKEN" not in env and "PHT_MPU_TOKEN" not in env
        assert Path(env["PHT_MPU_POLICY"]).is_file() and Path(env["PHT_MPU_PRIVATE_KEY"]).is_file()

        logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("mpu", "agent")}
        mpu = subprocess.Popen([*PHT_CLI, "mpu", "serve"], cwd=tmp_path, env=env, stdout=logs["mpu"],
                               stderr=subprocess.STDOUT)
        agent: subprocess.Popen[bytes] | None = None
        alice = holding_keys(CentralClient(central.url, ALICE["Authorization"][7:]))
        try:
            wait_for("the MPU answers", lambda: answers(env["PHT_MPU_URL"] + "/health"), timeout_s=60, interval_s=0.2)
            alice.register_definition({"id": "count", "title": "count", "image_name": "pht/count",
                                       "image_digest": DIGEST, "mode": "incremental", "route": ["aachen"]})
            refused_train = alice.submit("count")
            # without the ingest token the MPU refuses the agent's events (the agent carries on: they are not fatal)
            without = {k: v for k, v in env.items() if k != "PHT_MPU_INGEST_TOKEN"}
            once = subprocess.run([*PHT_CLI, "station", "run", "--once"], cwd=tmp_path, env=without,
                                  capture_output=True, text=True, timeout=120)
            assert once.returncode == 0, once.stdout + once.stderr
            assert "the MPU refused an event (401)" in once.stderr
            assert alice.train(refused_train)["executions"][0]["state"] == "waiting-for-approval"
            accepted_train = alice.submit("count")
            # with the settings as written: the agent's events are accepted, filtered, signed and delivered
            agent = subprocess.Popen([*PHT_CLI, "station", "run"], cwd=tmp_path, env=env, stdout=logs["agent"],
                                     stderr=subprocess.STDOUT)
            iris = Iris(SETTINGS.base_iri)
            graph = station_graph("aachen")

            def events_about(train: str) -> list[object]:
                return central.store.quads(None, PHT.aboutTrain, iris.train(train), graph)

            wait_for("the agent's event reaches the station graph", lambda: events_about(accepted_train), timeout_s=60, interval_s=0.2)
            assert not events_about(refused_train), "a refused event was never stored"
            status = httpx.get(env["PHT_MPU_URL"] + "/status", timeout=10).json()
            assert status["outbox"]["delivered"] >= 1 and status["outbox"]["refused"] == 0, status
            # the MPU's metrics only for whoever holds its metrics token
            assert httpx.get(env["PHT_MPU_URL"] + "/metrics", timeout=10).status_code == 401
            assert httpx.get(env["PHT_MPU_URL"] + "/metrics", timeout=10, headers={
                "Authorization": f"Bearer {env['PHT_MPU_METRICS_TOKEN']}"}).status_code == 200
        finally:
            alice.close()
            if agent is not None:
                stop(agent)
            stop(mpu)
            for f in logs.values():
                f.close()
        said = (tmp_path / "agent.log").read_text()
        assert "refused" not in said and "unreachable" not in said and "Traceback" not in said, said


def readme_deployment() -> str:
    text = (REPO / "README.md").read_text()
    block = re.search(r"A whole deployment by hand.*?```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no deployment by hand"
    return block.group(1)


def test_the_readme_deployment_by_hand_runs_a_train_through_every_station_and_its_mpu(tmp_path: Path) -> None:
    """Run the README's block, changed only where this machine differs: free ports, the process runtime (no
    base image here) and its folder digest instead of an image build; then a train visits all three stations,
    whose MPUs deliver their events to the central graph."""
    script = readme_deployment()
    assert "pht mpu serve & pht station run" in script
    port, mpu_port = free_port(), free_port()
    script = script.replace("8080", str(port))
    script = script.replace("--automatic", f"--automatic --runtime process --mpu-port {mpu_port}")
    script = script.replace("--tag pht-trains/cohort-count:1", "--tag pht-trains/cohort-count:1 --process")
    script += 'echo "researcher token: $ALICE"\n'
    (tmp_path / "trains").symlink_to(REPO / "trains")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHT_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    with (tmp_path / "deployment.log").open("wb") as log_file:
        shell = subprocess.Popen(["bash", "-e", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=log_file, start_new_session=True)
    # a service that never answers would keep the README's `until curl` loop, and this read, waiting forever
    def kill() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)

    deadline = threading.Timer(180, kill)
    deadline.start()
    try:
        lines: list[str] = []
        assert shell.stdout is not None
        for raw in shell.stdout:  # the foreground part ends with the echo; the services stay in the background
            lines.append(raw.decode())
            if lines[-1].startswith("researcher token: "):
                break
        out = "".join(lines)
        deadline.cancel()
        assert "researcher token: " in out, out + (tmp_path / "deployment.log").read_text()
        alice = lines[-1].removeprefix("researcher token: ").strip()
        digest = re.search(r"^sha256:[0-9a-f]{64}$", out, re.M)
        assert digest, out
        for i in range(3):
            wait_for(f"MPU {i} answers", lambda: answers(f"http://127.0.0.1:{mpu_port + i}/health"), timeout_s=60, interval_s=0.2)
        stations = ("aachen", "leipzig", "cologne")
        keys, _ = keys_in(tmp_path / "alice-keys")  # she signs: the result is sealed to her encryption key
        with CentralClient(f"http://127.0.0.1:{port}", alice, keys=keys) as client:
            client.register_keys(keys)
            client.register_definition({
                "id": "count", "title": "count", "image_name": str(tmp_path / "trains" / "cohort-count"),
                "image_digest": digest.group(0), "mode": "incremental", "route": list(stations),
                "parameters": [{"name": n, "required": True} for n in ("COLUMN", "OP", "VALUE", "MIN_CELL")]})
            train = client.submit("count", {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"})
            assert client.wait(train, timeout_s=240)["state"] == "finished"

            def delivered() -> set[str]:
                rows = client.named_query("train_history", train=Iris(SETTINGS.base_iri).train(train))["results"]
                return {row["graph"]["value"] for row in rows["bindings"]}

            wait_for("every station's MPU delivered events about the train",
                     lambda: {station_graph(s).value for s in stations} <= delivered(), timeout_s=60, interval_s=0.2)
    finally:
        deadline.cancel()
        assert shell.stdout is not None
        shell.stdout.close()
        os.killpg(shell.pid, signal.SIGTERM)  # the shell's session: the service, the MPUs and the agents
        try:
            shell.wait(timeout=30)
            time.sleep(2)
        finally:
            try:
                os.killpg(shell.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log = (tmp_path / "deployment.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "refused an event" not in log and "already has a running agent" not in log, log[-3000:]

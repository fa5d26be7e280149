"""The central service as its own process for the benchmarks that measure it over loopback HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.auth import issue_token  # noqa: E402
from orchestrator.principal import Role  # noqa: E402
from orchestrator.settings import DEMO_SECRET  # noqa: E402


def auth(subject: str, role: Role, station: str | None = None) -> dict[str, str]:
    """Authorization header of a demo token valid for ten hours."""
    return {"Authorization": "Bearer " + issue_token(DEMO_SECRET, subject=subject, roles=[role], station=station,
                                                     ttl_s=36000)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(store: Path | None, port: int, **settings: str) -> subprocess.Popen[bytes]:
    """``python -m orchestrator`` on ``store`` (None: ``settings`` name a remote store's URLs; ``settings``: more
    ``PHT_*`` variables), returned once ``/health`` answers."""
    env = dict(os.environ, PHT_PORT=str(port), PHT_DEMO="1", PHT_JWT_SECRET=DEMO_SECRET, **settings)
    if store is not None:
        env["PHT_STORE_PATH"] = str(store)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator"], cwd=ROOT, env=env)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the central service did not start within 60 s")

"""The images' HEALTHCHECK: ``python /opt/pht/healthcheck.py central-service|station-agent|mpu``.

Exit 0 when healthy, else 1 with one sentence on stderr (Docker keeps it in ``docker inspect``'s health log).
The central service and the MPU answer ``GET /health`` on loopback (the central service's also asks its store).
The station agent accepts no connection, so its check tests what it needs to work: its central service answers
``/health`` from here (name, route, TLS trust: the agent's own HTTP client, httpx with certifi's roots) and its
state folder is writable. It cannot tell whether the agent's poll loop is stuck (the agent publishes nothing).
"""

from __future__ import annotations

import os
import sys
import urllib.request


def local(port_variable: str, default_port: str, host_variable: str | None = None) -> str:
    host = os.environ.get(host_variable, "") if host_variable else ""
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    return f"http://{host}:{os.environ.get(port_variable, default_port)}/health"


def answers(url: str) -> str | None:
    """None if ``url`` answers 200 within 4 s, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=4) as r:  # loopback, plain HTTP: no TLS roots needed
            return None if r.status == 200 else f"{url} answered {r.status}"
    except OSError as e:
        return f"{url} does not answer: {e}"


def agent() -> str | None:
    import httpx  # the agent's own client: the same roots (certifi) and proxies as the agent

    central = os.environ.get("PHT_CENTRAL_URL", "").rstrip("/")
    if not central:
        return "PHT_CENTRAL_URL is not set"
    try:
        r = httpx.get(f"{central}/health", timeout=6)
    except httpx.HTTPError as e:
        return f"the central service {central} does not answer: {e}"
    if r.status_code != 200:
        return f"the central service {central} answered {r.status_code} to /health"
    state = os.environ.get("PHT_STATION_STATE_DIR", "/var/lib/pht/station")
    if not os.access(state, os.W_OK):
        return f"the state folder {state} is not writable"
    return None


def main(which: str) -> int:
    if which == "central-service":
        problem = answers(local("PHT_PORT", "8080", "PHT_HOST"))
    elif which == "mpu":
        problem = answers(local("PHT_MPU_PORT", "8181"))
    elif which == "station-agent":
        problem = agent()
    else:
        problem = f"unknown service {which!r} (central-service, station-agent or mpu)"
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))

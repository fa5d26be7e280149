"""The MPU's filter has no side channels: nothing that leaves the station lets anyone confirm a guess of what the
policy keeps there, and the station's ``/metrics`` need a token and carry nothing the policy denies.

Before: an event without an id got the IRI ``sha256(its JSON)`` (denied fields included), ``pht:logDigest`` was
the plain SHA-256 of the log the train wrote and ``pht:HashValue`` a plain SHA-256, so a denied log excerpt and
an error message were recovered by hashing guesses; the MPU's unauthenticated ``/metrics`` served per-execution
CPU and memory series that the policy denies, and the shipped Prometheus job scraped them. Each test plays the
attacker: it reads what leaves (the signed batches on the wire, the metrics) and tries the guesses.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import servers
import yaml
from conftest import require_component
from fastapi.testclient import TestClient
from mpu_helpers import METRICS, METRICS_TOKEN, StationKeys

from station_mpu import DEFAULT_POLICY, Mpu, MpuSettings, UsageReading, create_mpu_app, load_policy

REPO = Path(__file__).resolve().parents[2]
EXECUTION = "t1.r1-s0"
LOG = "reading cohort...\ncounted 42 patients with stage III\n"
"""What the train printed; the default policy keeps log excerpts at the station."""
ERROR = "patient 17 has no age"
"""An error message; the default policy lets it leave only hashed."""


class Wire(httpx.BaseTransport):
    """The central service as far as the MPU can tell: records every request and acknowledges it."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.sent.append(request)
        return httpx.Response(200, json={})


@pytest.fixture()
def pushing(tmp_path: Path) -> Iterator[tuple[Mpu, Wire]]:
    """An MPU with the default policy pushing to a recording wire."""
    keys = StationKeys(tmp_path)
    wire = Wire()
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path / "mpu", central_url="http://central",
                          private_key_path=keys.path("aachen"), token="t", sample_interval_s=0),
              http=httpx.Client(transport=wire))
    yield mpu, wire
    mpu.close()


def agent_events() -> list[dict[str, Any]]:
    """What the station agent posts when a train ends (``station/events.py``): no ids, the log's SHA-256."""
    common = {"time": "2026-12-03T10:00:00Z", "train": "t1", "execution": EXECUTION}
    return [{**common, "kind": "log", "log_sha256": hashlib.sha256(LOG.encode()).hexdigest(), "message": LOG[-1000:]},
            {**common, "kind": "error", "message": ERROR}]


def leaked(wire: Wire, guesses: dict[str, str]) -> list[str]:
    """The guesses whose digest appears anywhere in what left (bodies and headers)."""
    seen = b"".join(r.content + json.dumps(dict(r.headers)).encode() for r in wire.sent).decode()
    return [guess for guess, digest in guesses.items() if digest in seen]


def test_no_digest_that_leaves_confirms_a_guess_of_a_denied_log_or_error(pushing: tuple[Mpu, Wire]) -> None:
    mpu, wire = pushing
    mpu.ingest(agent_events())
    assert mpu.flush()
    assert wire.sent and LOG.splitlines()[1] not in b"".join(r.content for r in wire.sent).decode()  # denied
    # the attacker knows the train's code: it prints "counted N patients with stage III"; try every N
    logs = {str(n): LOG.replace("42", str(n)) for n in range(200)}
    assert leaked(wire, {n: hashlib.sha256(text.encode()).hexdigest() for n, text in logs.items()}) == []
    assert leaked(wire, {n: hashlib.sha256(text.encode()).hexdigest()[:32] for n, text in logs.items()}) == []
    errors = {str(n): f"patient {n} has no age" for n in range(200)}
    assert leaked(wire, {n: hashlib.sha256(text.encode()).hexdigest() for n, text in errors.items()}) == []


def test_no_event_iri_is_a_digest_of_the_event_with_its_denied_fields(pushing: tuple[Mpu, Wire]) -> None:
    mpu, wire = pushing
    events = agent_events()
    mpu.ingest(events)
    assert mpu.flush()
    digests = []  # how events without an id were named: the first 32 hex digits of the SHA-256 of their JSON
    for n in range(200):
        log = LOG.replace("42", str(n))
        guess = {**events[0], "log_sha256": hashlib.sha256(log.encode()).hexdigest(), "message": log[-1000:]}
        digests.append(hashlib.sha256(json.dumps(guess, sort_keys=True).encode()).hexdigest()[:32])
    sent = b"".join(r.content for r in wire.sent).decode()
    assert not [d for d in digests if d in sent], "an event IRI confirms the denied log excerpt"
    # and posting the same events again is still a no-op: the outbox knows them by a key that stays here
    assert mpu.ingest(events).queued == 0


def test_the_station_secret_is_private_and_survives_restarts(tmp_path: Path) -> None:
    first = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0))
    digest = first.secret.digest("log", "a" * 64)
    first.close()
    secret = tmp_path / "station-secret.key"
    assert secret.stat().st_mode & 0o777 == 0o600
    again = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0))
    assert again.secret.digest("log", "a" * 64) == digest  # the admin can match digests made before a restart
    again.close()
    secret.chmod(0o644)
    with pytest.raises(ValueError, match="may be read by others"):
        Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0))


# -- /metrics -------------------------------------------------------------------------------------------------


def reading(memory: int = 52_428_800) -> UsageReading:
    return UsageReading(execution=EXECUTION, time=datetime.now(timezone.utc), memory_bytes=memory, cpu_percent=87.5,
                        rx_bytes_per_s=1000.0, tx_bytes_per_s=10.0)


@pytest.mark.parametrize("token", [None, "", "Bearer wrong-token-of-a-stranger", f"Basic {METRICS_TOKEN}"])
def test_the_mpu_metrics_need_its_metrics_token(tmp_path: Path, token: str | None) -> None:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0, metrics_token=METRICS_TOKEN,
                          ingest_token="the-agents-ingest-token"))
    with TestClient(create_mpu_app(mpu, background=False)) as client:
        r = client.get("/metrics", headers={"Authorization": token} if token is not None else {})
        assert r.status_code == 401 and "metrics token" in r.json()["detail"]
        # the agent's ingest token does not open the metrics either
        assert client.get("/metrics", headers={"Authorization": "Bearer the-agents-ingest-token"}).status_code == 401
        assert client.get("/metrics", headers=METRICS).status_code == 200
        assert client.get("/health").status_code == 200  # the MPU keeps serving
    mpu.close()


def test_without_a_metrics_token_set_the_metrics_are_off(tmp_path: Path) -> None:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0))
    with TestClient(create_mpu_app(mpu, background=False)) as client:
        r = client.get("/metrics", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 401 and "PHT_MPU_METRICS_TOKEN" in r.json()["detail"]
    mpu.close()


def metrics_of(tmp_path: Path, policy: bytes | None, *readings: UsageReading) -> str:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0, metrics_token=METRICS_TOKEN),
              policy=load_policy(policy) if policy is not None else None)
    with TestClient(create_mpu_app(mpu, background=False)) as client:
        mpu.record_usage(readings)
        mpu.ingest([{"kind": "error", "time": "2026-12-03T10:00:00Z", "train": "t1", "execution": EXECUTION,
                     "message": ERROR}])
        text = client.get("/metrics", headers=METRICS).text
    mpu.close()
    return text


def series(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name``: labels -> value."""
    return {line.split(" ")[0].removeprefix(name): float(line.split(" ")[-1]) for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")}


def test_the_default_policy_keeps_usage_samples_out_of_the_metrics_too(tmp_path: Path) -> None:
    text = metrics_of(tmp_path, None, reading())
    assert EXECUTION not in text, "a per-execution series the policy denies is exposed"
    for name in ("pht_station_train_cpu_percent", "pht_station_train_memory_bytes",
                 "pht_station_train_network_bytes_per_second"):
        assert series(text, name) == {}, name
    received = series(text, "pht_mpu_events_received_total")
    assert not any(kind in labels for labels in received for kind in ("cpu-usage", "memory-usage", "network-usage"))
    assert received['{kind="withheld"}'] == 4.0  # counted, but not by a kind of which nothing leaves
    assert received['{kind="error"}'] == 1.0  # errors leave (their message hashed)
    assert series(text, "pht_station_running_train_containers") == {"": 1.0}  # no identities, no usage


USAGE_BUCKETED = (b"@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n<urn:p> a pht:FilterPolicy ; "
                  b"pht:defaultEffect pht:Allow ; pht:rule "
                  b"[ a pht:FilterRule ; pht:effect pht:Allow ; pht:priority 10 ; pht:eventClass pht:MemoryUsageSample ;"
                  b" pht:property pht:value ; pht:coarsen pht:BucketMemory ] , "
                  b"[ a pht:FilterRule ; pht:effect pht:Deny ; pht:priority 10 ; pht:eventClass pht:CPUUsageSample ] , "
                  b"[ a pht:FilterRule ; pht:effect pht:Deny ; pht:priority 10 ; pht:property pht:direction ] .")


def test_per_execution_series_show_only_what_the_policy_lets_leave_as_it_leaves(tmp_path: Path) -> None:
    text = metrics_of(tmp_path, USAGE_BUCKETED, reading(memory=52_428_800))
    # memory leaves bucketed: the gauge shows the bucket, never the reading (50 MiB -> 32 MiB)
    assert series(text, "pht_station_train_memory_bytes") == {f'{{execution="{EXECUTION}"}}': 33_554_432.0}
    assert "52428800" not in text and "5.24288e+07" not in text
    assert series(text, "pht_station_train_cpu_percent") == {}  # CPU samples are denied whole
    assert series(text, "pht_station_train_network_bytes_per_second") == {}  # the direction label is denied


def test_a_policy_that_stops_publishing_usage_ends_the_series_at_the_next_sample(tmp_path: Path) -> None:
    policy = tmp_path / "policy.ttl"
    policy.write_bytes(b"@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n"
                       b"<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:Allow .")
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path / "mpu", sample_interval_s=0, policy_path=policy,
                          metrics_token=METRICS_TOKEN))
    with TestClient(create_mpu_app(mpu, background=False), headers=METRICS) as client:
        mpu.record_usage([reading()])
        assert series(client.get("/metrics").text, "pht_station_train_cpu_percent") == {
            f'{{execution="{EXECUTION}"}}': 87.5}
        policy.write_bytes(DEFAULT_POLICY.read_bytes())  # the admin switches to the default
        assert client.post("/policy/reload").status_code == 200
        mpu.record_usage([reading()])
        assert EXECUTION not in client.get("/metrics").text
    mpu.close()


# -- the shipped Prometheus job sends the token -------------------------------------------------------------------


def shipped_mpu_job() -> dict[str, Any]:
    config = yaml.safe_load((REPO / "dashboards/prometheus/prometheus.yml").read_text())
    return next(j for j in config["scrape_configs"] if j["job_name"] == "pht-mpu")


def test_the_shipped_prometheus_job_authenticates_to_the_mpus() -> None:
    job = shipped_mpu_job()
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    compose = yaml.safe_load((REPO / "dashboards/docker-compose.yml").read_text())
    mounted = [v.rsplit(":", 2)[1] for v in compose["services"]["prometheus"]["volumes"] if v.count(":") >= 2]
    assert job["authorization"]["credentials_file"] in mounted, "the compose file does not mount the token file"


@pytest.mark.real_component("prometheus")
def test_a_real_prometheus_scrapes_an_mpu_only_with_the_shipped_jobs_token(tmp_path: Path) -> None:
    require_component("prometheus")
    from local_platform.platform import serve_in_thread

    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path / "mpu", sample_interval_s=0,
                          metrics_token=METRICS_TOKEN))
    served = serve_in_thread(create_mpu_app(mpu, background=False), "mpu-metrics-test")
    token_file = tmp_path / "mpu-metrics.token"
    token_file.write_text(METRICS_TOKEN + "\n")
    with_token = shipped_mpu_job()
    with_token.update(scrape_interval="1s", static_configs=[
        {"targets": [served.url.removeprefix("http://")], "labels": {"station": "aachen"}}])
    with_token["authorization"] = {**with_token["authorization"], "credentials_file": str(token_file)}
    without = {k: v for k, v in with_token.items() if k != "authorization"} | {"job_name": "no-token"}
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [with_token, without]}
    try:
        with servers.prometheus_server(yaml.safe_dump(config)) as prometheus:
            deadline, up = time.monotonic() + 30, {}
            while time.monotonic() < deadline and len(up) < 2:
                r = httpx.get(f"{prometheus.base_url}/api/v1/query", params={"query": "up"}, timeout=10)
                up = {s["metric"]["job"]: s["value"][1] for s in r.json()["data"]["result"]}
                time.sleep(0.5)
        assert up == {"pht-mpu": "1", "no-token": "0"}, up
    finally:
        served.server.should_exit = True
        served.thread.join(timeout=10)
        mpu.close()

"""The MPU's usage sampling against the real Docker engine: a train container labelled ``pht.execution`` that
holds 50 MB and burns CPU is found, measured (memory in bytes, CPU in percent, network in bytes per second),
shown in the station's metrics while it runs, forgotten when it ends, and published (to the central graph and in
the metrics) only as the policy says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from fastapi.testclient import TestClient
from mpu_helpers import METRICS, METRICS_TOKEN
from pyoxigraph import RdfFormat, parse

from station_mpu import EXECUTION_LABEL, Mpu, MpuSettings, load_policy
from station_mpu.app import create_mpu_app

pytestmark = pytest.mark.real_component("docker")

IMAGE = "pht/python-base:bookworm"
EXECUTION = "mputest.r1-s0"
ALLOW_ALL = (b"@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n"
             b"<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:Allow .")
PROGRAM = "import time; x = bytearray(50_000_000); end = time.time() + 20\nwhile time.time() < end: sum(range(10000))"


@pytest.fixture()
def train_container(docker_client: Any) -> Iterator[Any]:
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound as e:
        pytest.skip(f"image {IMAGE} missing ({e}); run scripts/build-base-image.sh")
    container = docker_client.containers.run(IMAGE, ["python3", "-c", PROGRAM], labels={EXECUTION_LABEL: EXECUTION},
                                             detach=True, network_mode="bridge")
    try:
        deadline = time.monotonic() + 20
        while docker_client.api.stats(container.id, stream=False, one_shot=True)["memory_stats"].get("usage", 0) \
                < 50_000_000:
            assert time.monotonic() < deadline, "the train container did not allocate its memory"
            time.sleep(0.2)
        yield container
    finally:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass  # the test removed it already


def test_running_train_containers_are_sampled(docker_client: Any, train_container: Any, tmp_path: Path) -> None:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0, metrics_token=METRICS_TOKEN),
              docker_client=docker_client, policy=load_policy(ALLOW_ALL))
    with TestClient(create_mpu_app(mpu, background=False), headers=METRICS) as agent:
        # other tests may run labelled containers at the same time: look only at this one's execution
        assert mpu.sample_once() is not None
        assert [k for k, n in _published(mpu).items() if n] == ["MemoryUsageSample"]  # rates need two readings
        time.sleep(1.0)
        assert mpu.sample_once() is not None
        metrics = agent.get("/metrics").text
        memory = _gauge(metrics, f'pht_station_train_memory_bytes{{execution="{EXECUTION}"}}')
        cpu = _gauge(metrics, f'pht_station_train_cpu_percent{{execution="{EXECUTION}"}}')
        assert memory >= 50_000_000 and cpu > 10.0, (memory, cpu)
        assert f'pht_station_train_network_bytes_per_second{{direction="in",execution="{EXECUTION}"}}' in metrics
        assert _gauge(metrics, "pht_station_running_train_containers") >= 1
        published = _published(mpu)
        assert {k: len(v) for k, v in published.items()} == {"MemoryUsageSample": 2, "CPUUsageSample": 1,
                                                             "NetworkUsageSample": 2}
        memory_sample = published["MemoryUsageSample"][-1]
        assert float(memory_sample["value"].value) >= 50_000_000
        assert memory_sample["unit"].value == "http://qudt.org/vocab/unit/BYTE"
        assert memory_sample["aboutTrain"].value.endswith("/trains/mputest")
        assert published["CPUUsageSample"][0]["unit"].value == "http://qudt.org/vocab/unit/PERCENT"
        assert {s["direction"].value.rsplit("#")[-1] for s in published["NetworkUsageSample"]} == {"Inbound",
                                                                                                 "Outbound"}
        train_container.remove(force=True)
        mpu.sample_once()
        assert EXECUTION not in agent.get("/metrics").text  # the container's series ended with it
    mpu.close()


def test_the_sampler_runs_on_its_interval_and_the_default_policy_keeps_samples_home(
        docker_client: Any, train_container: Any, tmp_path: Path) -> None:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0.3, metrics_token=METRICS_TOKEN),
              docker_client=docker_client)
    with TestClient(create_mpu_app(mpu), headers=METRICS) as agent:  # the app starts the sampler thread
        deadline = time.monotonic() + 20
        while 'pht_station_usage_samples_total{kind="cpu"}' not in agent.get("/metrics").text:
            assert time.monotonic() < deadline, "the sampler did not sample"
            time.sleep(0.1)
        assert mpu.outbox.depth() == 0  # measured at the station, not published: the default denies samples
        metrics = agent.get("/metrics").text
        assert 'pht_mpu_events_dropped_total{reason="policy"}' in metrics
        assert EXECUTION not in metrics  # nor in the metrics: no per-execution series the policy denies
    mpu.close()


def _published(mpu: Mpu) -> dict[str, list[dict[str, Any]]]:
    """The queued samples about this test's execution, by class."""
    found: dict[str, list[dict[str, Any]]] = {}
    for p in mpu.outbox.next_batch(max_items=1000, max_bytes=10**8):
        triples = {t.predicate.value.rsplit("#", 1)[-1]: t.object for t in parse(p.body, format=RdfFormat.N_TRIPLES)}
        if triples["aboutExecution"].value.endswith(f"/executions/{EXECUTION}"):
            found.setdefault(triples["type"].value.rsplit("#", 1)[-1], []).append(triples)
    return found


def _gauge(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{series} not in the metrics")

"""Resource usage of running train containers, read from the Docker stats API.

Train containers are found by the label ``pht.execution=<execution id>`` that the station's Docker runtime
sets (the train id is the execution id up to its first ``.``). Each call of :meth:`DockerSampler.sample` reads
every such container's stats once (``one-shot``: no two-second wait per container) and computes, against the
previous reading of the same container:

* CPU in percent of one core (Docker's formula: container CPU time / host CPU time x online CPUs x 100; may
  exceed 100 on several cores);
* memory in bytes: usage minus the inactive page cache, as ``docker stats`` shows it;
* network throughput in bytes per second, received (in) and sent (out), summed over the interfaces.

The first reading of a container gives memory only (rates need two readings).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

__all__ = ["DockerSampler", "UsageReading", "EXECUTION_LABEL"]

EXECUTION_LABEL = "pht.execution"


@dataclass(frozen=True)
class UsageReading:
    """One container's usage at ``time``; a rate is None when there was no previous reading to compare with."""

    execution: str
    time: datetime
    memory_bytes: int
    cpu_percent: float | None = None
    rx_bytes_per_s: float | None = None
    tx_bytes_per_s: float | None = None

    @property
    def train(self) -> str:
        return self.execution.split(".", 1)[0]


@dataclass
class _Previous:
    cpu_total: int
    system_total: int
    rx: int
    tx: int
    at: float


class DockerSampler:
    """Reads the stats of the labelled train containers of one Docker engine (a ``docker.DockerClient``)."""

    def __init__(self, client: Any, *, label: str = EXECUTION_LABEL) -> None:
        self._client = client
        self._label = label
        self._previous: dict[str, _Previous] = {}

    def sample(self) -> list[UsageReading]:
        """One reading of every running train container; raises ``docker.errors.DockerException`` (or OSError)
        if the engine cannot be asked."""
        readings: list[UsageReading] = []
        seen: set[str] = set()
        for container in self._client.containers.list(filters={"label": self._label}):
            execution = (container.labels or {}).get(self._label, "")
            if not execution:
                continue
            try:
                stats = self._client.api.stats(container.id, stream=False, one_shot=True)
            except Exception:  # noqa: BLE001 - the container ended between list and stats: skip it
                continue
            seen.add(container.id)
            reading = self._reading(container.id, execution, stats)
            if reading is not None:
                readings.append(reading)
        for gone in set(self._previous) - seen:
            del self._previous[gone]
        return readings

    def _reading(self, cid: str, execution: str, stats: dict[str, Any]) -> UsageReading | None:
        memory = stats.get("memory_stats") or {}
        if "usage" not in memory:
            return None  # not running (any more)
        extra = memory.get("stats") or {}
        cache = extra.get("total_inactive_file", extra.get("inactive_file", 0))
        used = max(0, int(memory["usage"]) - int(cache))
        cpu = stats.get("cpu_stats") or {}
        cpu_total = int((cpu.get("cpu_usage") or {}).get("total_usage", 0))
        system_total = int(cpu.get("system_cpu_usage", 0))
        cores = int(cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1)
        networks = (stats.get("networks") or {}).values()
        rx, tx = sum(int(n.get("rx_bytes", 0)) for n in networks), sum(int(n.get("tx_bytes", 0)) for n in networks)
        now = time.monotonic()
        previous = self._previous.get(cid)
        self._previous[cid] = _Previous(cpu_total, system_total, rx, tx, now)
        reading = UsageReading(execution=execution, time=datetime.now(timezone.utc), memory_bytes=used)
        if previous is None:
            return reading
        system_delta, cpu_delta, elapsed = system_total - previous.system_total, cpu_total - previous.cpu_total, \
            now - previous.at
        cpu_percent = max(0.0, cpu_delta / system_delta * cores * 100.0) if system_delta > 0 else 0.0
        return UsageReading(execution=execution, time=reading.time, memory_bytes=used, cpu_percent=cpu_percent,
                            rx_bytes_per_s=max(0.0, (rx - previous.rx) / elapsed) if elapsed > 0 else None,
                            tx_bytes_per_s=max(0.0, (tx - previous.tx) / elapsed) if elapsed > 0 else None)

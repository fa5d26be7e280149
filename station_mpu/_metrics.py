"""The station's Prometheus metrics (``GET /metrics`` of the MPU), in a registry of their own.

Names follow the Prometheus conventions (``_total`` counters, base units in the name). Labels are bounded:
states, kinds, outcomes and reasons are closed sets; the per-container usage gauges carry the execution id but
exist only while the container runs (removed when it ends), so their number is the number of trains running at
this station now, not the number of trains ever run.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["MpuMetrics"]

_DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)


class MpuMetrics:
    """Every metric of one MPU; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self, *, outbox_depth: Callable[[], float], outbox_oldest_s: Callable[[], float],
                 registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        # -- the station's trains
        self.executions = Gauge("pht_station_executions", "Executions at this station by their last reported "
                                "lifecycle state (since the MPU started)", ["state"], registry=r)
        self.run_duration = Histogram("pht_station_train_run_duration_seconds", "How long train containers ran, "
                                      "from started-running to finished-running", ["outcome"],
                                      buckets=_DURATION_BUCKETS, registry=r)
        self.cpu = Gauge("pht_station_train_cpu_percent", "CPU use of a running train container, percent of one "
                         "core", ["execution"], registry=r)
        self.memory = Gauge("pht_station_train_memory_bytes", "Memory used by a running train container",
                            ["execution"], registry=r)
        self.network = Gauge("pht_station_train_network_bytes_per_second", "Network throughput of a running "
                             "train container", ["execution", "direction"], registry=r)
        self.running = Gauge("pht_station_running_train_containers", "Train containers running now (pht.execution "
                             "label)", registry=r)
        self.samples = Counter("pht_station_usage_samples", "Usage samples taken from the container engine",
                               ["kind"], registry=r)
        self.sampler_errors = Counter("pht_station_sampler_errors", "Failed attempts to read container stats",
                                      registry=r)
        # -- events and the filter
        self.events_received = Counter("pht_mpu_events_received", "Events the MPU accepted, by kind", ["kind"],
                                       registry=r)
        self.events_invalid = Counter("pht_mpu_events_invalid", "Events refused as malformed (HTTP 422)",
                                      registry=r)
        self.events_dropped = Counter("pht_mpu_events_dropped", "Events of which nothing leaves the station",
                                      ["reason"], registry=r)
        self.triples = Counter("pht_mpu_triples", "Event triples by the policy's decision", ["decision"],
                               registry=r)
        self.policy_reloads = Counter("pht_mpu_policy_reloads", "Attempts to load a changed policy", ["outcome"],
                                      registry=r)
        self.policy_ok = Gauge("pht_mpu_policy_last_load_ok", "1 if the last policy load succeeded, 0 if the "
                               "policy file is invalid (the previous policy stays active)", registry=r)
        self.policy_rules = Gauge("pht_mpu_policy_rules", "Rules of the active filter policy", registry=r)
        # -- the outbox and the push
        self.outbox_depth = Gauge("pht_mpu_outbox_depth", "Events waiting in the outbox for delivery", registry=r)
        self.outbox_depth.set_function(outbox_depth)
        self.outbox_oldest = Gauge("pht_mpu_outbox_oldest_age_seconds", "How long the oldest waiting event has "
                                   "waited", registry=r)
        self.outbox_oldest.set_function(outbox_oldest_s)
        self.outbox_write_failures = Counter("pht_mpu_outbox_write_failures", "Posts the outbox could not store "
                                             "(answered 507 or 503)", ["reason"], registry=r)
        self.pushes = Counter("pht_mpu_pushes", "Batches sent to the central service, by outcome", ["outcome"],
                              registry=r)
        self.push_failures = Counter("pht_mpu_push_failures", "Batches to retry, by reason", ["reason"],
                                     registry=r)
        self.pushed_events = Counter("pht_mpu_pushed_events", "Events the central service acknowledged",
                                     registry=r)
        self.pushed_triples = Counter("pht_mpu_pushed_triples", "Triples the central service acknowledged",
                                      registry=r)
        self.events_refused = Counter("pht_mpu_events_refused", "Events the central service refused for good "
                                      "(set aside, see /status)", registry=r)
        self.push_duration = Histogram("pht_mpu_push_duration_seconds", "Time to push one batch", registry=r)

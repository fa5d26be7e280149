"""The MPU itself: events in, filtered triples out, at least once, never more than the policy allows.

Threads: the caller's (``ingest``: validate, filter, queue -- the HTTP handlers run it), one pusher (takes
batches from the outbox, signs and sends them, backs off while the central service is down, and watches the
policy file for changes) and, if sampling is on, one sampler (Docker stats every ``sample_interval_s``, fed
back into ``ingest`` as usage samples). The policy is swapped atomically (one reference assignment): an
``ingest`` uses the policy it started with from start to end.

Nothing here raises into the station for what the network, the central service or the disk does: a full
disk is :class:`OutboxFull` for the one call that could not be stored, and the MPU keeps running.

The station metrics (``/metrics``) obey the policy too: a series about the station's trains is fed only by
what the policy lets leave (an execution's usage gauges only if its samples' value and execution leave, the
value as it leaves; executions by state only from state changes whose target state leaves; run durations only
from times and outcomes that leave), and an event kind of which nothing leaves is counted as ``withheld``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from pyoxigraph import NamedNode, Quad

from graph_store import PHT, ChangeSet, ValidationReport, validate_unstored

from ._events import (
    Event,
    EventAdapter,
    EventTriples,
    FinishedRunning,
    StateChange,
    StationDescription,
    Usage,
    description_triples,
    event_triples,
    state_tokens,
)
from ._metrics import MpuMetrics
from ._naming import Naming
from ._outbox import Outbox, OutboxError, OutboxFull, OutboxItem, Received
from ._policy import Filtered, Policy, PolicyError, read_policy
from ._push import BatchSequence, Pusher, PushResult, TokenFile, load_private_key
from ._sampler import DockerSampler, UsageReading
from ._secret import StationSecret
from ._settings import MpuSettings

__all__ = ["Mpu", "IngestResult", "InvalidEvents", "validated", "apply_policy"]

log = logging.getLogger("station_mpu")
_INVALID_AFTER_FILTER = "what the policy lets leave would violate the shapes"


class InvalidEvents(ValueError):
    """Events that are not valid metadata (the shapes refuse them); nothing of the call was stored.

    ``problems`` lists ``(event IRI, message)``; ``report`` is the SHACL report.
    """

    def __init__(self, problems: list[tuple[str, str]], report: ValidationReport) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"event {first[0]} is not valid: {first[1]}{more}")
        self.problems = problems
        self.report = report


@dataclass(frozen=True)
class IngestResult:
    """What one call did: events accepted, newly queued, already known (posted before), dropped whole by the
    policy (with why), and the triples that will leave and that stay."""

    events: int
    queued: int
    duplicates: int
    dropped: list[tuple[str, str]] = field(default_factory=list)
    triples_leaving: int = 0
    triples_dropped: int = 0


class Mpu:
    """One station's metadata processing unit. Use :meth:`start` / :meth:`stop` for the background threads
    (the app does), or drive it by hand with :meth:`push_once` / :meth:`flush` (tests, benchmarks)."""

    def __init__(self, settings: MpuSettings, *, http: httpx.Client | None = None, docker_client: Any = None,
                 policy: Policy | None = None) -> None:
        self.settings = settings
        self.naming = Naming(settings.base_iri, settings.station_id, settings.station_iri or "")
        self.secret = StationSecret.load_or_create(settings.secret_path)  # first: a refusal leaves nothing open
        self.outbox = Outbox(settings.data_dir, max_bytes=settings.outbox_max_bytes,
                             keep_received=settings.keep_received)
        self.metrics = MpuMetrics(outbox_depth=self.outbox.depth, outbox_oldest_s=self.outbox.oldest_age_s)
        self._policy_stamp = self._stamp()
        self._policy = policy if policy is not None else read_policy(settings.policy_path, station=self.naming.station)
        self.policy_error: str | None = None
        self.metrics.policy_ok.set(1)
        self.metrics.policy_rules.set(len(self._policy.rules))
        self._reload_lock = threading.Lock()
        self._next_check = 0.0
        self.pusher: Pusher | None = None
        if settings.central_url is not None:
            assert settings.private_key_path is not None  # checked by MpuSettings
            token: Any = TokenFile(settings.token_file) if settings.token_file is not None \
                else (lambda: settings.token or "")
            self.pusher = Pusher(central_url=settings.central_url, station_id=settings.station_id,
                                 private_key=load_private_key(settings.private_key_path), token=token, client=http,
                                 timeout_s=settings.push_timeout_s,
                                 sequence=BatchSequence(self.outbox.reserve_sequences))
        self._docker = docker_client
        self._sampler: DockerSampler | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._batch_items = settings.batch_max_events
        self._isolate_until: int | None = None
        self._executions: dict[str, str] = {}
        self._running_since: dict[str, datetime] = {}
        self._state_lock = threading.Lock()
        self._series: set[tuple[str, tuple[str, ...]]] = set()

    # -- the policy ---------------------------------------------------------------------------------------

    @property
    def policy(self) -> Policy:
        """The active filter policy."""
        return self._policy

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.settings.policy_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def reload_policy(self, *, force: bool = False) -> bool:
        """Load the policy file if it changed (or ``force``); returns True if a new policy is now active.

        An invalid file leaves the active policy in place: ``policy_error`` says why, the metric
        ``pht_mpu_policy_last_load_ok`` is 0, and the error is logged once per change of the file.
        """
        with self._reload_lock:
            stamp = self._stamp()
            if stamp == self._policy_stamp and not force:
                return False
            self._policy_stamp = stamp
            try:
                policy = read_policy(self.settings.policy_path, station=self.naming.station)
            except PolicyError as e:
                self.policy_error = str(e)
                self.metrics.policy_reloads.labels("invalid").inc()
                self.metrics.policy_ok.set(0)
                log.error("the new policy is not used, the previous one stays active: %s", e)
                return False
            self._policy = policy  # atomic: ingest calls use the policy they started with
            self.policy_error = None
            self.metrics.policy_reloads.labels("ok").inc()
            self.metrics.policy_ok.set(1)
            self.metrics.policy_rules.set(len(policy.rules))
            log.info("policy %s loaded (%d rules, sha256 %s)", policy.source, len(policy.rules), policy.digest[:12])
            return True

    def _maybe_reload(self) -> None:
        now = _monotonic()
        if now >= self._next_check:
            self._next_check = now + self.settings.policy_check_interval_s
            self.reload_policy()

    # -- events in ----------------------------------------------------------------------------------------

    def ingest(self, events: Sequence[Event] | Sequence[dict[str, Any]]) -> IngestResult:
        """Validate, filter and queue events (models, or dicts in the JSON schema). All or nothing.

        Raises pydantic.ValidationError (malformed JSON), InvalidEvents (the shapes refuse an event),
        OutboxFull / OutboxError (the disk); nothing was stored then.
        """
        return self._ingest(events)[0]

    def _ingest(self, events: Sequence[Event] | Sequence[dict[str, Any]],
                ) -> tuple[IngestResult, list[tuple[Event, Filtered]]]:
        """``ingest``, and what the policy did with each event."""
        models = EventAdapter.validate_python(events) if events and isinstance(events[0], dict) \
            else [_model(e) for e in events]
        pairs = [(m, event_triples(m, self.naming, self.secret)) for m in models]
        units = _unique(u for _, u in pairs)
        result, filtered = self._process(units, [Received(u.key, "event", u.source) for u in units])
        by_key = {f.event.key: f for f in filtered}
        decided = [(m, by_key[u.key]) for m, u in pairs if u.key in by_key]
        self._observe(decided)
        return result, decided

    def describe(self, description: StationDescription) -> IngestResult:
        """Queue the station's description (it replaces the one published before)."""
        units = description_triples(description, self.naming, at=datetime.now(timezone.utc))
        key = f"{self.naming.station_iri}#description-{datetime.now(timezone.utc).timestamp():.6f}"
        return self._process(units, [Received(key, "description", description.model_dump_json())])[0]

    def preview(self, units: Sequence[EventTriples], policy: Policy | None = None) -> list[Filtered]:
        """What the policy (the active one by default) does with each unit; nothing is stored or sent."""
        return apply_policy(validated(units), policy or self._policy, self.secret)

    def _process(self, units: list[EventTriples], received: list[Received]) -> tuple[IngestResult, list[Filtered]]:
        self._maybe_reload()
        policy = self._policy
        canonical = self._canonical(units)
        filtered = apply_policy(canonical, policy, self.secret)
        items = [OutboxItem(f.event.key, _ntriples(f.leaving), len(f.leaving)) for f in filtered if f.leaving]
        try:
            added = self.outbox.add(items, received)
        except OutboxFull as e:
            self.metrics.outbox_write_failures.labels("disk_full").inc()
            log.error("%s; the events of this call were not stored", e)
            raise
        except OutboxError as e:
            self.metrics.outbox_write_failures.labels("error").inc()
            log.error("%s; the events of this call were not stored", e)
            raise
        self._wake.set()
        dropped = [(f.event.key, f.dropped_whole or "nothing of it may leave") for f in filtered if not f.leaving]
        leaving = sum(len(f.leaving) for f in filtered)
        total = sum(len(f.event.quads) for f in filtered)
        for kind, n in Counter(f.event.kind if f.leaving else "withheld" for f in filtered).items():
            self.metrics.events_received.labels(kind).inc(n)
        for reason, n in Counter("invalid_after_filter" if why.startswith(_INVALID_AFTER_FILTER) else "policy"
                                 for _, why in dropped).items():
            self.metrics.events_dropped.labels(reason).inc(n)
        self.metrics.triples.labels("leaving").inc(leaving)
        self.metrics.triples.labels("dropped").inc(total - leaving)
        return IngestResult(events=len(units), queued=added, duplicates=len(items) - added, dropped=dropped,
                            triples_leaving=leaving, triples_dropped=total - leaving), filtered

    def _canonical(self, units: Sequence[EventTriples]) -> list[EventTriples]:
        try:
            return validated(units)
        except InvalidEvents as e:
            self.metrics.events_invalid.inc(len({k for k, _ in e.problems}))
            raise

    def _observe(self, events: Iterable[tuple[Event, Filtered]]) -> None:
        """Station metrics from the events, as far as the policy lets them leave: executions by state (the
        target state leaves unchanged), run durations (from the times as they leave, if the outcome leaves)."""
        with self._state_lock:
            for e, f in events:
                leaves = {q.predicate: q.object for q in f.leaving}
                if isinstance(e, StateChange) and e.execution is not None:
                    if leaves.get(PHT.toState) != state_tokens()[e.to_state]:
                        continue  # the policy keeps the state at the station: so do the metrics
                    old = self._executions.get(e.execution)
                    if old == e.to_state:
                        continue
                    if old is not None:
                        self.metrics.executions.labels(old).dec()
                    self._executions[e.execution] = e.to_state
                    self.metrics.executions.labels(e.to_state).inc()
                elif e.kind == "started-running" and e.execution is not None:
                    at = _time(leaves.get(PHT.eventTime))
                    if at is not None:
                        self._running_since[e.execution] = at
                elif isinstance(e, FinishedRunning) and e.execution is not None:
                    started = self._running_since.pop(e.execution, None)
                    at = _time(leaves.get(PHT.eventTime))
                    success = getattr(leaves.get(PHT.success), "value", None)
                    if started is not None and at is not None and success in ("true", "false"):
                        self.metrics.run_duration.labels("success" if success == "true" else "failure").observe(
                            max(0.0, (at - started).total_seconds()))

    # -- usage samples --------------------------------------------------------------------------------------

    def record_usage(self, readings: Sequence[UsageReading]) -> IngestResult | None:
        """Usage-sample events through the policy, and the station's per-execution gauges from what of them
        leaves: a series exists only while its container runs and only if the policy lets the sample's value
        and execution (and, for the network, its direction) leave; its value is the value as it leaves."""
        self.metrics.running.set(len({r.execution for r in readings}))
        events: list[Usage] = []
        for r in readings:
            common = {"time": r.time, "train": r.train, "execution": r.execution}
            # model_validate: the same validation as Usage(...), from a dict (the readings are floats, not Decimals)
            events.append(Usage.model_validate({"kind": "memory-usage", "value": r.memory_bytes, **common}))
            self.metrics.samples.labels("memory").inc()
            if r.cpu_percent is not None:
                events.append(Usage.model_validate({"kind": "cpu-usage", "value": round(r.cpu_percent, 3), **common}))
                self.metrics.samples.labels("cpu").inc()
            for direction, rate in (("in", r.rx_bytes_per_s), ("out", r.tx_bytes_per_s)):
                if rate is not None:
                    events.append(Usage.model_validate({"kind": "network-usage", "value": round(rate, 3),
                                                        "direction": direction, **common}))
                    self.metrics.samples.labels("network").inc()
        result: IngestResult | None = None
        decided: list[tuple[Event, Filtered]] = []
        if events:
            try:
                result, decided = self._ingest(events)
            except (OutboxError, InvalidEvents) as e:
                log.error("usage samples not stored: %s", e)
        self._gauge_usage(decided)
        return result

    def _gauge_usage(self, decided: Sequence[tuple[Event, Filtered]]) -> None:
        """Set the per-execution gauges from what leaves of the usage samples; end every other series (a
        container that ended, or a policy that no longer lets its samples leave)."""
        gauges = {"memory-usage": self.metrics.memory, "cpu-usage": self.metrics.cpu,
                  "network-usage": self.metrics.network}
        wanted: dict[tuple[str, tuple[str, ...]], float] = {}
        for e, f in decided:
            if not isinstance(e, Usage) or e.execution is None:
                continue
            leaves = {q.predicate: q.object for q in f.leaving}
            value = leaves.get(PHT.value)
            if value is None or leaves.get(PHT.aboutExecution) != self.naming.execution(e.execution):
                continue
            labels: tuple[str, ...] = (e.execution,)
            if e.kind == "network-usage":
                leaving_direction = leaves.get(PHT.direction)
                direction = {PHT.Inbound.value: "in", PHT.Outbound.value: "out"}.get(
                    leaving_direction.value if isinstance(leaving_direction, NamedNode) else "")
                if direction is None or direction != e.direction:
                    continue
                labels = (e.execution, str(direction))
            try:
                wanted[(e.kind, labels)] = float(getattr(value, "value", ""))
            except ValueError:
                continue
        for kind, labels in self._series - set(wanted):
            try:
                gauges[kind].remove(*labels)
            except KeyError:
                pass  # that series was never set
        for (kind, labels), number in wanted.items():
            gauges[kind].labels(*labels).set(number)
        self._series = set(wanted)

    def sample_once(self) -> IngestResult | None:
        """Read the train containers' usage once (Docker) and record it."""
        if self._sampler is None:
            if self._docker is None:
                import docker  # only a station that samples needs the engine

                self._docker = docker.from_env()
            self._sampler = DockerSampler(self._docker)
        return self.record_usage(self._sampler.sample())

    # -- events out ---------------------------------------------------------------------------------------

    def push_once(self) -> tuple[int, bool]:
        """Send one batch from the outbox: (events delivered, whether the attempt failed and should back off)."""
        if self.pusher is None:
            return 0, False
        batch = self.outbox.next_batch(max_items=self._batch_items, max_bytes=self.settings.batch_max_bytes)
        if not batch:
            return 0, False
        if self._isolate_until is not None and batch[0].seq <= self._isolate_until:
            batch = batch[:1]  # a refused batch named no event: find the bad ones one by one
        else:
            self._isolate_until = None
        with self.metrics.push_duration.time():
            result = self.pusher.push(batch)
        if result.outcome == "delivered":
            self.outbox.delivered([p.seq for p in batch])
            self.metrics.pushes.labels("delivered").inc()
            self.metrics.pushed_events.inc(len(batch))
            self.metrics.pushed_triples.inc(sum(p.triples for p in batch))
            self._batch_items = min(self.settings.batch_max_events, self._batch_items * 2)
            return len(batch), False
        if result.outcome == "refused":
            self.metrics.pushes.labels("refused").inc()
            return 0, self._set_aside(batch, result)
        self.metrics.pushes.labels("failed").inc()
        self.metrics.push_failures.labels(_failure_reason(result)).inc()
        if result.smaller and len(batch) > 1:
            self._batch_items = max(1, len(batch) // 2)
            return 0, False
        log.warning("push of %d events failed, will retry: %s %s", len(batch), result.status or "", result.detail)
        return 0, True

    def _set_aside(self, batch: list[Any], result: PushResult) -> bool:
        """Events the central side refused for good go aside with its reason; the rest is retried."""
        notes = {p.seq: result.refused[_subject(p.body)] for p in batch if _subject(p.body) in result.refused}
        if not notes and len(batch) == 1:
            notes = {batch[0].seq: f"HTTP {result.status}: {result.detail}"}
        if not notes:
            self._isolate_until = batch[-1].seq
            return False
        self.outbox.refused(notes)
        self.metrics.events_refused.inc(len(notes))
        for seq, note in notes.items():
            log.error("the central service refused event %s for good: %s",
                      next(p.key for p in batch if p.seq == seq), note)
        return False

    def flush(self, *, timeout_s: float = 30.0) -> bool:
        """Push until the outbox is empty (True) or ``timeout_s`` passes (False); for tests and benchmarks."""
        deadline = _monotonic() + timeout_s
        while _monotonic() < deadline:
            delivered, failed = self.push_once()
            if delivered == 0 and not failed and self.outbox.depth() == 0:
                return True
            if failed:
                self._stop.wait(0.05)
        return self.outbox.depth() == 0

    # -- threads ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pusher (if a central service is configured) and the sampler (if sampling is on)."""
        self._stop.clear()
        if self.pusher is not None:
            self._threads.append(threading.Thread(target=self._push_loop, name="mpu-push", daemon=True))
        if self.settings.sample_interval_s > 0:
            self._threads.append(threading.Thread(target=self._sample_loop, name="mpu-sample", daemon=True))
        for t in self._threads:
            t.start()

    def _push_loop(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            self._maybe_reload()
            self._wake.clear()
            try:
                delivered, failed = self.push_once()
            except OutboxError as e:
                log.error("%s", e)
                delivered, failed = 0, True
            if failed:
                backoff = min(self.settings.max_backoff_s, max(0.25, backoff * 2))
                self._stop.wait(backoff * random.uniform(0.8, 1.2))
            elif delivered == 0:
                backoff = 0.0
                self._wake.wait(min(1.0, self.settings.policy_check_interval_s))
            else:
                backoff = 0.0

    def _sample_loop(self) -> None:
        failures = 0
        while not self._stop.wait(self.settings.sample_interval_s):
            try:
                self.sample_once()
                failures = 0
            except Exception as e:  # noqa: BLE001 - the engine may be down; the station keeps running
                self.metrics.sampler_errors.inc()
                failures += 1
                if failures == 1 or failures % 60 == 0:
                    log.warning("cannot read container stats (%d time(s)): %s", failures, e)

    def stop(self) -> None:
        """Stop the background threads (what is queued stays in the outbox)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=max(5.0, self.settings.push_timeout_s + 1))
        self._threads.clear()

    def close(self) -> None:
        self.stop()
        if self.pusher is not None:
            self.pusher.close()
        self.outbox.close()

    def status(self) -> dict[str, Any]:
        """Policy, outbox and refusals, for ``GET /status``."""
        p = self._policy
        return {"station": self.settings.station_id, "station_iri": self.naming.station_iri,
                "policy": {"source": p.source, "sha256": p.digest, "rules": len(p.rules),
                           "default_effect": p.default_effect.value.rsplit("#", 1)[-1], "error": self.policy_error},
                "outbox": {**self.outbox.counts(), "oldest_pending_age_s": round(self.outbox.oldest_age_s(), 3)},
                "refused": [{"event": k, "reason": n} for k, n in self.outbox.refusals()],
                "pushing_to": self.pusher.url if self.pusher is not None else None}


def validated(units: Sequence[EventTriples]) -> list[EventTriples]:
    """The units validated against the shapes, their literals as the store will keep them (canonical).

    Raises InvalidEvents naming each refused event; the central service would refuse them too.
    """
    change = ChangeSet(insert=[q for u in units for q in u.quads])
    report = validate_unstored(change)
    if not report.conforms:
        raise InvalidEvents([(str(getattr(r.focus_node, "value", r.focus_node)), r.message)
                             for r in report.results], report)
    by_subject: dict[Any, list[Quad]] = {}
    for q in change.insert:
        by_subject.setdefault(q.subject, []).append(q)
    # a unit's subjects: the event or described resource, and for a dataset its variables
    return [EventTriples(u.iri, u.cls, tuple(sorted((q for s in dict.fromkeys(q.subject for q in u.quads)
                                                     for q in by_subject.get(s, ())), key=str)),
                         u.kind, u.source, u.key)
            for u in units]


def apply_policy(units: Sequence[EventTriples], policy: Policy, secret: StationSecret | None = None) -> list[Filtered]:
    """Apply the policy to validated units (``secret``: the station's key for ``pht:HashValue``). An event the
    filtering leaves invalid (a required property denied, a value blurred into something the shapes refuse) is
    dropped whole: fail closed, never half an event."""
    filtered = [policy.filter(u, secret) for u in units]
    changed = [i for i, f in enumerate(filtered) if f.changed and f.leaving]
    if changed:
        change = ChangeSet(insert=[q for i in changed for q in filtered[i].leaving])
        report = validate_unstored(change)
        if not report.conforms:
            why = {r.focus_node: r.message for r in report.results}
            for i in changed:
                f = filtered[i]
                focus = next((q.subject for q in f.leaving if q.subject in why), None)
                if focus is not None:
                    filtered[i] = f.dropped_whole_as(f"{_INVALID_AFTER_FILTER} ({why[focus]}), so nothing "
                                                     "of it leaves")
    return filtered


def _ntriples(quads: Iterable[Quad]) -> bytes:
    return "".join(f"{q.triple} .\n" for q in quads).encode()


def _model(event: Event | dict[str, Any]) -> Event:
    """An event of a list that starts with an event model: all of it must be models."""
    if isinstance(event, dict):
        raise TypeError("ingest() takes event models or dicts, not both in one list")
    return event


def _unique(units: Iterable[EventTriples]) -> list[EventTriples]:
    """Drop exact repeats within one call (same key, same content); a different event with a used id stays,
    and the shapes refuse the pair (two times, two trains...)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for u in units:
        if (u.key, u.source) not in seen:
            seen.add((u.key, u.source))
            out.append(u)
    return out


def _subject(body: bytes) -> str:
    """The subject IRI of a queued unit's N-Triples (all its triples share it)."""
    return body[1:body.index(b">")].decode()


def _time(term: object) -> datetime | None:
    """An xsd:dateTime literal's instant, or None."""
    try:
        return datetime.fromisoformat(getattr(term, "value", "").replace("Z", "+00:00"))
    except ValueError:
        return None


def _failure_reason(result: PushResult) -> str:
    if result.status is None:
        return "unreachable"
    return {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large"}.get(
        result.status, "server_error" if result.status >= 500 else "other")


def _monotonic() -> float:
    return time.monotonic()

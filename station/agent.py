"""The station agent: polls the central service for this station's work and drives each execution.

Outbound only (hospital firewalls allow nothing in): every step is a call to the central service, which
checks it against the lifecycle chart. The agent holds no state that matters only in memory: what it
needs after a crash is in the graph (the execution's state) or under ``state_dir`` (inputs, the held
output and its review, the count of interrupted runs), so a restarted agent carries on from the state
the graph says, re-running an interrupted run at most ``max_attempts`` times and then failing it
explicitly, never leaving it hanging.

One agent per station: the agent works only while it holds its station's lease at the central service
(``station/lease.py``); a second agent started for the same station refuses to start, naming the first.
"""

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client import CentralClient, ClientError, WorkItem

from . import archive, contract
from .events import EventSink
from .lease import LeaseLost, LeaseRefused, StationLease
from .objects import ObjectStore, ObjectStoreError, fetch_unpacked, object_store_from_url
from .policy import PolicyError, StationPolicy, load_policy
from .review import review
from .runtimes.base import ImageRefused, RunSpec, Runtime, RuntimeFailure
from .settings import StationSettings

log = logging.getLogger("pht.station")

__all__ = ["StationAgent", "Holding", "release", "quiet_request_logs", "LeaseLost", "LeaseRefused"]

MAX_INPUT_FILES = 10_000


class Holding:
    """The folder of one execution under ``state_dir``: inputs, output, the held archive and its review."""

    def __init__(self, state_dir: Path, execution: str) -> None:
        self.root = state_dir / "executions" / execution

    @property
    def inputs(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def params(self) -> Path:
        return self.root / "params.json"

    @property
    def archive(self) -> Path:
        return self.root / "output.tar.gz"

    @property
    def review(self) -> Path:
        return self.root / "review.json"

    def attempts(self) -> int:
        try:
            return int((self.root / "attempts").read_text())
        except (OSError, ValueError):
            return 0

    def count_attempt(self) -> int:
        n = self.attempts() + 1
        _write_atomic(self.root / "attempts", str(n).encode())
        return n

    def held(self) -> tuple[str, int, list[dict[str, Any]]] | None:
        """(sha256, size, checks) of the held output, or None if there is none (complete) on disk."""
        try:
            meta = json.loads(self.review.read_text())
        except (OSError, ValueError):
            return None
        return (meta["sha256"], meta["byte_size"], meta["checks"]) if self.archive.is_file() else None


class StationAgent:
    """Drives this station's executions. ``poll_once`` does one round; ``run`` loops until stopped."""

    def __init__(self, settings: StationSettings, *, runtime: Runtime, client: CentralClient | None = None,
                 objects: ObjectStore | None = None, events: EventSink | None = None,
                 policy_loader: Callable[[], StationPolicy] | None = None) -> None:
        settings.check()
        self.settings = settings
        self.runtime = runtime
        self.client = client or CentralClient(settings.central_url, settings.token)
        self.objects = objects or object_store_from_url(settings.objects_url)
        self.events = events or EventSink(settings.mpu_url, settings.station_id,
                                          ingest_token=settings.mpu_ingest_token)
        self.lease = StationLease(self.client, settings.station_id, period_s=settings.lease_s)
        self._policy_cache: tuple[object, StationPolicy] | None = None
        self._policy_loader = policy_loader or self._load_policy_file
        self._stop = threading.Event()
        settings.state_dir.mkdir(parents=True, exist_ok=True)

    def _load_policy_file(self) -> StationPolicy:
        """The policy file, read again whenever it changed (size or modification time), so the admin's
        edits apply without a restart; an invalid file raises, so nothing is decided on a broken policy."""
        if self.settings.policy_file is None:
            return StationPolicy()
        try:
            stat = self.settings.policy_file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except OSError:
            stamp = None
        if stamp is None or self._policy_cache is None or self._policy_cache[0] != stamp:
            self._policy_cache = (stamp, load_policy(self.settings.policy_file))
        return self._policy_cache[1]

    @property
    def policy(self) -> StationPolicy:
        """The current policy (see ``_load_policy_file``)."""
        return self._policy_loader()

    # -- the loop -----------------------------------------------------------------------------------------

    def run(self) -> None:
        """Poll until :meth:`stop`, holding the station's lease meanwhile (renewed by a thread of its own, so a
        long run does not let it expire) and releasing it at the end; a failed poll (central service down) is
        logged and retried. Raises :class:`LeaseRefused` at start if another agent holds the lease, and
        :class:`LeaseLost` if another agent took it over (this one stops taking work)."""
        keeper = threading.Thread(target=self._keep_lease, name=f"lease-{self.settings.station_id}", daemon=True)
        keeper.start()
        try:
            while not self._stop.is_set():
                try:
                    self.poll_once()
                except ClientError as e:
                    log.warning("poll failed, retrying: %s", e)
                except PolicyError as e:
                    log.error("the station policy is invalid, so nothing is decided until it is fixed: %s", e)
                except (ObjectStoreError, OSError) as e:  # e.g. the object store or the disk: retried, never fatal
                    log.error("the station could not complete a step, retrying: %s", e)
                self._stop.wait(self.settings.poll_interval_s)
            if self.lease.lost is not None:
                raise LeaseLost(self.lease.lost)
        except LeaseLost as e:
            log.error("%s", e)
            raise
        finally:
            self._stop.set()
            keeper.join()
            self.lease.release()

    def _keep_lease(self) -> None:
        """Renew the lease while :meth:`run` runs, also while a train runs; stop the agent if it was lost."""
        while not self._stop.wait(self.settings.lease_s / 6):
            try:
                self.lease.renew()
            except LeaseLost:
                self._stop.set()  # run() says so
                return
            except ClientError as e:  # the lease ran out and the central service cannot be asked: steps wait
                log.warning("the lease of station %s ran out and cannot be renewed now: %s",
                            self.settings.station_id, e)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Release the lease if this agent still holds it (after :meth:`poll_once` without :meth:`run`) and
        close the connections (central service, MPU)."""
        self.lease.release()
        self.client.close()
        self.events.close()

    def poll_once(self) -> int:
        """Take or renew the station's lease, then advance every work item by as many steps as the station can
        take now; returns how many moved. Raises :class:`LeaseRefused` / :class:`LeaseLost` (see :meth:`run`)."""
        self.lease.ensure()
        items = self.client.work(self.settings.station_id)
        moved = 0
        for work in items:
            try:
                moved += self.advance(work)
            except ClientError as e:
                if e.status == 409:  # someone else moved it (cancelled, admin): the next poll sees the new state
                    log.info("%s: %s", work.execution, e)
                else:
                    raise
        self._forget_finished({w.execution for w in items})
        # every poll at DEBUG; INFO is for what happens (each step, decision and result is logged where taken)
        log.debug("station %s polled: %d work item(s), %d step(s) taken", self.settings.station_id, len(items), moved)
        return moved

    def advance(self, work: WorkItem) -> int:
        """Take the steps this station can take for one execution; returns how many it took."""
        steps = 0
        state = work.state
        while True:
            if not self.lease.held():  # lost, or ran out while a train ran: no step without it
                log.warning("%s: waiting, this agent does not hold the lease of station %s now", work.execution,
                            self.settings.station_id)
                return steps
            nxt = self._step(work, state)
            if nxt is None:
                return steps
            state, steps = nxt, steps + 1

    def _step(self, work: WorkItem, state: str) -> str | None:
        """One step from ``state``; returns the new state, or None when the station must wait."""
        if state == "queued":
            reason = self.policy.auto_approval(image_digest=work.image_digest, requester=work.requester,
                                               definition=work.definition)
            if reason is None:
                return self._fire(work, "queued", "waiting-for-approval", "held for the station admin's approval")
            return self._fire(work, "queued", "approved", reason)
        if state == "approved":
            return self._fire(work, "approved", "pulling", "")
        if state == "pulling":
            return self._pull(work)
        if state == "running":
            return self._run(work)
        if state == "output-under-review":
            return self._maybe_release(work)
        return None  # waiting-for-approval: the admin decides

    def _fire(self, work: WorkItem, frm: str, to: str, reason: str, used: tuple[str, ...] = ()) -> str:
        self.client.step(work.execution, to, reason=reason, used=used)
        self.events.state_change(work, to, reason, from_state=frm)
        log.info("%s -> %s %s", work.execution, to, reason)
        return to

    def _fail(self, work: WorkItem, frm: str, reason: str) -> str:
        self.events.error(work, reason)
        return self._fire(work, frm, "failed", reason)

    # -- pulling: image and inputs ------------------------------------------------------------------------

    def _pull(self, work: WorkItem) -> str:
        try:
            self.runtime.check_image(work.image_name, work.image_digest)
        except ImageRefused as e:
            return self._fail(work, "pulling", str(e))
        problem = self._fetch_inputs(work)
        if problem is not None:
            return self._fail(work, "pulling", problem)
        return self._fire(work, "pulling", "running", "", used=tuple(self.settings.datasets))

    def _fetch_inputs(self, work: WorkItem) -> str | None:
        """Fetch, verify and safely unpack the inputs; None on success, else the reason to fail."""
        hold = Holding(self.settings.state_dir, work.execution)
        done = hold.root / "inputs-complete"
        if done.exists():
            return None
        shutil.rmtree(hold.inputs, ignore_errors=True)
        hold.inputs.mkdir(parents=True)
        for i, digest in enumerate(work.input_digests):
            try:
                fetch_unpacked(self.objects, digest, hold.inputs / str(i), max_bytes=self.settings.limits.output_bytes,
                               max_files=MAX_INPUT_FILES)
            except (ObjectStoreError, archive.ArchiveError) as e:
                return f"input {i} (sha256 {digest[:12]}...) cannot be used: {e}"
        done.touch()
        return None

    # -- running --------------------------------------------------------------------------------------------

    def _run(self, work: WorkItem) -> str | None:
        hold = Holding(self.settings.state_dir, work.execution)
        if hold.held() is not None:  # ran before a crash; the output is recorded again (same digest)
            return self._hand_over(work, hold)
        attempt = hold.count_attempt()
        if attempt > self.settings.max_attempts:
            return self._fail(work, "running", f"the run was interrupted {attempt - 1} time(s) by a station "
                                               "restart; giving up instead of retrying forever")
        self.runtime.discard(work.execution)
        problem = self._fetch_inputs(work)
        if problem is not None:
            return self._fail(work, "running", problem)
        dataset = next(iter(self.settings.datasets.values()))
        _write_atomic(hold.params, json.dumps(dict(work.parameters), sort_keys=True).encode())
        shutil.rmtree(hold.output, ignore_errors=True)
        hold.output.mkdir(parents=True)
        role = contract.ROLE_STATION if work.stop is not None else contract.ROLE_AGGREGATOR
        spec = RunSpec(name=work.execution, image=work.image_name, image_digest=work.image_digest,
                       dataset_dir=dataset, input_dir=hold.inputs, params_file=hold.params, output_dir=hold.output,
                       environment=contract.run_environment(role=role, round_=work.round,
                                                            station=self.settings.station_id,
                                                            input_count=len(work.input_digests)),
                       entrypoint=work.entrypoint.split() if work.entrypoint else None, limits=self.settings.limits)
        self.events.started_running(work)
        try:
            result = self.runtime.run(spec)
        except ImageRefused as e:
            return self._fail(work, "running", str(e))
        except RuntimeFailure as e:  # the station's engine, not the train: retried, bounded by max_attempts
            log.warning("%s: the runtime failed, retrying at the next poll: %s", work.execution, e)
            return None
        self.events.finished_running(work, result)
        if not result.ok:
            return self._fail(work, "running",
                              f"the train failed at station {self.settings.station_id}: {result.failure}")
        checks = review(hold.output, self.policy)
        try:
            sha256, size = archive.pack_to(hold.output, hold.archive)
        except archive.ArchiveError as e:
            return self._fail(work, "running", f"the output cannot be packed: {e}")
        _write_atomic(hold.review, json.dumps({"sha256": sha256, "byte_size": size,
                                               "checks": [c.as_json() for c in checks]}).encode())
        return self._hand_over(work, hold)

    def _hand_over(self, work: WorkItem, hold: Holding) -> str:
        held = hold.held()
        assert held is not None
        sha256, size, checks = held
        self.client.add_output(work.execution, sha256=sha256, byte_size=size, title=f"output of {work.execution}",
                               checks=checks)
        failed = [c["name"] for c in checks if not c["passed"]]
        return self._fire(work, "running", "output-under-review",
                          "output checks failed: " + ", ".join(failed) if failed else "every output check passed")

    # -- release --------------------------------------------------------------------------------------------

    def _maybe_release(self, work: WorkItem) -> str | None:
        hold = Holding(self.settings.state_dir, work.execution)
        held = hold.held()
        if held is None:
            return self._fail(work, "output-under-review",
                              "the held output is missing at the station (its state folder was lost)")
        policy = self.policy
        if policy.requires_output_review or not all(c["passed"] for c in held[2]):
            return None  # the admin decides
        reason = "released automatically: every output check passed and the station policy does not require a review"
        release(self.client, self.objects, hold, work.execution, reason=reason)
        self.events.state_change(work, "released", "released automatically", from_state="output-under-review")
        log.info("%s -> released %s", work.execution, reason)
        return "released"

    def _forget_finished(self, current: set[str]) -> None:
        """Delete the folders of executions that are no longer this station's work (finished elsewhere)."""
        root = self.settings.state_dir / "executions"
        if not root.is_dir():
            return
        for folder in root.iterdir():
            if folder.name not in current:
                shutil.rmtree(folder, ignore_errors=True)


def quiet_request_logs() -> None:
    """Log HTTP requests only from WARNING up: httpx logs each one at INFO, which for an agent polling every
    second buries what happens (work taken, decisions, results) under its polls. For the agent's entry point."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def release(client: CentralClient, objects: ObjectStore, hold: Holding, execution: str, *, reason: str) -> str:
    """Upload the held output to the object store (verified by digest), then fire ``released``.

    The upload comes first: a crash in between leaves the output stored but not yet released, and
    releasing again is idempotent (the object store is content-addressed).
    """
    held = hold.held()
    if held is None:
        raise ClientError(f"execution {execution} has no held output at this station")
    stored = objects.put_file(hold.archive)
    if stored != held[0]:
        raise ClientError(f"the held output of {execution} changed on disk (sha256 {stored} is not {held[0]})")
    return client.step(execution, "released", reason=reason)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


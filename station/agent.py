"""The station agent: polls the central service for this station's work and drives each execution.

Outbound only (hospital firewalls allow nothing in): every step is a call to the central service, which
checks it against the lifecycle chart. The agent holds no state that matters only in memory: what it
needs after a crash is in the graph (the execution's state) or under ``state_dir`` (inputs, the held
output and its review, the count of interrupted runs), so a restarted agent carries on from the state
the graph says, re-running an interrupted run at most ``max_attempts`` times and then failing it
explicitly, never leaving it hanging.

One agent per station: the agent works only while it holds its station's lease at the central service
(``station/lease.py``); a second agent started for the same station refuses to start, naming the first.

Three promises are kept here (docs/station.md): nothing about an output leaves before its release (the review stays
in ``state_dir``; the output's digest and size go with the release step; a failure says only what the policy lets
it say); the station runs only the code it approved (``station/approvals.py``); and what leaves is encrypted to
exactly its next readers, inputs are opened with the station's own key (``station/encryption.py``).
"""

import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from client import CentralClient, CheckIn, ClientError, OutputIn, WorkItem
from client.execution_records import How
from client.public_keys import PublicKeyRecord
from graph_store import GraphStoreError, ResourceIris
from trust import SealError

from dataspace import DataspaceConsumer

from . import archive, contract
from .approvals import ApprovalLedger, differences
from .dataspace_inputs import declared_inputs, obtain_inputs
from .cohorts import CohortRefused, cohort_of, dataset_version, materialise, measure
from .consent import Decision, Declared, decide, declared_terms
from .consent_ledger import Spend, open_consent_ledger
from .disclosure import HeldCohort, differencing_check, load_cohort, open_ledger, save_cohort
from .encryption import EncryptionRefused, fetch_opened, readers_for, seal_output, station_identity
from .events import EventSink
from .files import write_atomic
from .image_registry import RegistryError, parse_reference, registry_credentials
from .input_check import describe_station, input_problem, publish_description
from .lease import LeaseLost, LeaseRefused, StationLease
from .objects import ObjectStore, ObjectStoreError, new_staging_key, object_store_from_url
from .policy import PolicyError, StationPolicy, load_policy
from .privacy_budget import (BudgetExceeded, HeldSpend, budget_problem, consent_rules, load_spend, save_spend,
                             spend_on_release)
from .records import RecordSigner, SignerUnavailable, disclosure_control, draft_record, load_draft, save_draft
from .review import Check, review
from .runtimes.base import ImageRefused, RunSpec, Runtime, RuntimeFailure
from .settings import StationSettings
from .signed_requests import PINNED_KEYS_FILE, KeyPins, RequestRefused, SignedRequest, keys_from_wire, verify_work
from .token import TokenRenewal

log = logging.getLogger("pht.station")

__all__ = ["StationAgent", "Holding", "release", "resume_release", "quiet_request_logs", "LeaseLost", "LeaseRefused"]

MAX_INPUT_FILES = 10_000


class Holding:
    """The folder of one execution under ``state_dir``: inputs, the plain output (what the admin reviews), the held
    archive (the packed output encrypted to its readers: what leaves) and its review."""

    def __init__(self, state_dir: Path, execution: str) -> None:
        self.root = state_dir / "executions" / execution

    @property
    def inputs(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def cohort_data(self) -> Path:
        """The rows of the train's declared cohort, which the station selected from its dataset: the train's data."""
        return self.root / "cohort-data"

    @property
    def params(self) -> Path:
        return self.root / "params.json"

    @property
    def archive(self) -> Path:
        """The held output as it leaves: the packed output sealed to its readers (age)."""
        return self.root / "output.tar.gz.age"

    @property
    def packed(self) -> Path:
        """The plain packed output, only while it is sealed (deleted after): it never leaves the station."""
        return self.root / "output.tar.gz"

    @property
    def review(self) -> Path:
        return self.root / "review.json"

    @property
    def releasing(self) -> Path:
        """Written before a release stages the output: its staging key, so that an interrupted release is
        resumed (promoted if the release step went through, discarded if it was refused), never forgotten."""
        return self.root / "release.json"

    def staging_key(self) -> str | None:
        try:
            return str(json.loads(self.releasing.read_text())["staging_key"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def attempts(self) -> int:
        try:
            return int((self.root / "attempts").read_text())
        except (OSError, ValueError):
            return 0

    def count_attempt(self) -> int:
        n = self.attempts() + 1
        write_atomic(self.root / "attempts", str(n).encode())
        return n

    def held(self) -> tuple[str, int, list[dict[str, Any]]] | None:
        """(sha256, size, checks) of the held output, the digest and size of its ciphertext, or None if there is
        none (complete) on disk."""
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
        self.approvals = ApprovalLedger(settings.state_dir / "approvals.jsonl")
        self.records = RecordSigner(self.client, settings.station_id, settings.keys_dir)
        self.token = TokenRenewal(self.client, settings.token, settings.token_file)  # station tokens are short-lived
        self._policy_cache: tuple[object, StationPolicy] | None = None
        self._policy_loader = policy_loader or self._load_policy_file
        self._stop = threading.Event()
        self._dataspace: DataspaceConsumer | None = None  # started at the first data-space train
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
        self.publish_description()
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

    def publish_description(self, *, unless_unchanged: bool = False) -> bool:
        """Publish the datasets' variables through the MPU (``input_check.py``), for the check before dispatch.

        ``unless_unchanged``: skip it when this description is the one last published (a cron-driven ``--once``
        station publishes at its first poll and after a change, not at every tick); :meth:`run` always publishes,
        so a central store that lost it gets it back at the agent's next start."""
        try:
            body = describe_station(self.settings.datasets, self.settings.description_file)
        except ValueError as e:
            log.error("%s; the station's description was not published", e)
            return False
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest().encode("ascii")
        published = self.settings.state_dir / "published-description.sha256"
        if unless_unchanged and published.is_file() and published.read_bytes() == digest:
            return True
        if not publish_description(self.settings.mpu_url, body, ingest_token=self.settings.mpu_ingest_token):
            return False
        write_atomic(published, digest)
        return True

    def _keep_lease(self) -> None:
        """Renew the lease while :meth:`run` runs, also while a train runs; stop the agent if it was lost. Renew
        the station token too when it is half through its life (``token.py``)."""
        while not self._stop.wait(self.settings.lease_s / 6):
            self.token.renew_if_due()
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
        close the connections (central service, MPU, and the runtime's own engine connection)."""
        self.lease.release()
        self.client.close()
        self.events.close()
        self.runtime.close()
        if self._dataspace is not None:
            self._dataspace.close()

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
            try:  # before any decision: is this exactly what the researcher signed?
                signed = self._verified(work)
            except RequestRefused as e:
                return self._fail(work, "queued", str(e))
            problem = self._uninterpretable_cohort(work)
            if problem is not None:
                return self._fail(work, "queued", problem)
            consent = self._consent(work, signed)  # purpose, project, researcher, function, ε budget
            if consent is not None and not consent.permitted:
                return self._fail(work, "queued", consent.reason)
            told = f"; {consent.reason}" if consent is not None else ""
            # the requester the policy matches is the verified signer
            reason = self.policy.auto_approval(image_digest=work.image_digest, requester=signed.requester,
                                               definition=work.definition, entrypoint=work.entrypoint)
            # the code is recorded before the step: the admin approves what was recorded, nothing else runs
            if reason is None:
                self.approvals.record(work, how="requested")
                return self._fire(work, "queued", "waiting-for-approval",
                                  "held for the station admin's approval" + told)
            self.approvals.record(work, how="auto", reason=reason)
            return self._fire(work, "queued", "approved", reason + told)
        if state == "waiting-for-approval":
            if self.approvals.get(work.execution) is None:  # e.g. a new state folder: what the admin sees now
                try:
                    self._verified(work)
                except RequestRefused as e:
                    return self._fail(work, state, str(e))
                self.approvals.record(work, how="requested")
            return None  # the admin decides
        if state in ("approved", "pulling", "running"):
            problem = self._unapproved(work)
            if problem is not None:
                return self._fail(work, state, problem)
        if state == "approved":
            return self._fire(work, "approved", "pulling", "")
        if state == "pulling":
            return self._pull(work)
        if state == "running":
            return self._run(work)
        if state == "output-under-review":
            return self._maybe_release(work)
        return None

    def _verified(self, work: WorkItem) -> SignedRequest:
        """``work``'s signed request, verified (``station/signed_requests.py``) and not used for another train.

        :raises RequestRefused: unsigned, not what was signed, an untrusted key, or a replayed request.
        """
        signed = verify_work(work, station=self.settings.station_id, keys=self._registered_keys,
                             pins=KeyPins(self.settings.state_dir / PINNED_KEYS_FILE))
        used_for = self.approvals.train_of(signed.request)
        if used_for is not None and used_for != work.train:  # the rounds of one train are not a replay
            raise RequestRefused(f"the signed request {signed.request} was already used for train {used_for}; a "
                                 "request is good for one train")
        return signed

    def _consent(self, work: WorkItem, signed: SignedRequest) -> Decision | None:
        """The consent policy's decision on ``work`` (``station/consent.py``) and, for a permitted train that
        declares an ε, the privacy budget's (``station/privacy_budget.py``; the spend is held for the release),
        recorded in the station's own graph; None if the policy has no consent rules and the train declares no ε."""
        station = self.settings.station_id
        declared: Declared | None = None
        try:
            declared = declared_terms(work.request, requester=signed.requester, definition=work.definition,
                                      image=work.image_digest)
        except RequestRefused as e:
            decision = Decision(False, f"station {station} refuses the train: {e}")
        else:
            if not self.policy.consent.active and declared.epsilon is None:
                return None
            decision = decide(self.policy.consent, declared, station=station)
        execution = ResourceIris(signed.requester[:signed.requester.rindex("agents/")]).execution(work.execution).value
        try:
            with open_consent_ledger(self.settings.state_dir) as ledger:
                rule = decision.rule
                if decision.permitted and declared is not None and work.stop is not None and (
                        declared.epsilon is not None or (rule is not None and rule.epsilon_budget is not None)):
                    dataset = next(iter(self.settings.datasets))
                    spent = ledger.spent(signed.requester, declared.project or "", dataset)
                    problem = budget_problem(rule, declared, spent, station=station) if rule is not None else None
                    if problem is not None:
                        decision = Decision(False, problem, rule)
                    elif declared.epsilon is not None:
                        held = HeldSpend(Spend(execution, signed.requester, declared.project or "", dataset,
                                               declared.epsilon), rule.epsilon_budget if rule is not None else None,
                                         rule.iri if rule is not None else "")
                        save_spend(Holding(self.settings.state_dir, work.execution).root, held)
                        decision = Decision(True, f"{decision.reason}; {held.remaining(spent)} before this train",
                                            rule)
                ledger.record_decision(execution, decision)
        except GraphStoreError as e:
            return Decision(False, f"station {station} cannot record its consent decision in its own graph, so it "
                                   f"does not run the train: {e}")
        log.info("%s: consent %s: %s", work.execution, "permit" if decision.permitted else "refuse", decision.reason)
        return decision

    def _uninterpretable_cohort(self, work: WorkItem) -> str | None:
        """Why this station cannot interpret the cohort the train declares (``station/cohorts.py``), or None."""
        if work.stop is None:  # an aggregation reads the stations' outputs, not a dataset: no cohort of its own
            return None
        try:
            cohort_of(dict(work.parameters), next(iter(self.settings.datasets.values())))
        except CohortRefused as e:
            return f"station {self.settings.station_id} refuses the train: {e}"
        except OSError as e:
            return f"station {self.settings.station_id} cannot read its dataset to interpret the cohort: {e}"
        return None

    def _registered_keys(self, researcher: str) -> list[PublicKeyRecord]:
        """``researcher``'s public keys as the central registry lists them; a refusal if it lists none."""
        subject = unquote(researcher.rsplit("agents/", 1)[-1])
        try:
            body = self.client.keys(researcher=subject)
        except ClientError as e:
            if e.status is not None and 400 <= e.status < 500:
                raise RequestRefused(f"the central registry lists no keys of the requester {researcher} ({e})") \
                    from None
            raise
        return keys_from_wire(body)

    def _unapproved(self, work: WorkItem) -> str | None:
        """Why ``work`` may not run (it is not what this station approved), or None if it is."""
        approved = self.approvals.get(work.execution)
        station = self.settings.station_id
        if approved is None:
            return (f"station {station} has no record of approving execution {work.execution}, and it runs only "
                    "what it approved")
        changed = differences(approved, work)
        if changed:
            named = ", ".join(changed[:-1]) + " and " + changed[-1] if len(changed) > 1 else changed[0]
            return (f"the {named} changed after station {station} approved execution {work.execution}; "
                    "the station runs only what it approved")
        return None

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
        try:  # a registry image is fetched by its signed digest only; then, either way, its ID must be the approved
            reference = parse_reference(work.image_name)
            if reference is not None:
                auth = registry_credentials(self.settings.registry_auth_file, reference.host)
                self.runtime.pull(str(reference), auth)
            self.runtime.check_image(work.image_name, work.image_digest)
        except (ImageRefused, RegistryError) as e:
            return self._fail(work, "pulling", str(e))
        problem = self._fetch_inputs(work) or self._obtain_dataspace_inputs(work)
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
        if not work.input_digests:
            done.touch()
            return None
        try:  # inputs are encrypted to this station: opened with its own key
            identity = station_identity(self.settings.keys_dir, self.settings.station_id)
        except EncryptionRefused as e:
            return str(e)
        for i, digest in enumerate(work.input_digests):
            try:
                fetch_opened(self.objects, digest, hold.inputs / str(i), identity,
                             max_bytes=self.settings.limits.output_bytes, max_files=MAX_INPUT_FILES)
            except (ObjectStoreError, SealError, archive.ArchiveError) as e:
                shutil.rmtree(hold.inputs, ignore_errors=True)  # nothing decrypted stays behind
                return f"input {i} (sha256 {digest[:12]}...) cannot be used: {e}"
        done.touch()
        return None

    def _obtain_dataspace_inputs(self, work: WorkItem) -> str | None:
        """The train's data-space inputs, obtained with the station's own identity (``dataspace_inputs.py``)."""
        try:
            declared = declared_inputs(work)
        except RequestRefused as e:
            return str(e)
        if declared and self._dataspace is None and self.settings.dataspace is not None:
            self._dataspace = DataspaceConsumer(self.settings.dataspace)
        folder = Holding(self.settings.state_dir, work.execution).root / "dataspace"
        return obtain_inputs(work, self._dataspace, folder, self.settings.station_id)

    # -- running --------------------------------------------------------------------------------------------

    def _run(self, work: WorkItem) -> str | None:
        hold = Holding(self.settings.state_dir, work.execution)
        if hold.held() is not None:  # ran before a crash; the output is recorded again (same digest)
            return self._hand_over(work, hold)
        attempt = hold.count_attempt()
        if attempt > self.settings.max_attempts:
            return self._fail(work, "running", f"the run was interrupted {attempt - 1} time(s) by a station "
                                               "restart; giving up instead of retrying forever")
        try:  # who the output will be encrypted to, checked before the train runs
            readers = readers_for(work, state_dir=self.settings.state_dir, registry=self.client)
        except EncryptionRefused as e:
            return self._fail(work, "running", str(e))
        try:  # the record's signer, asked before the run (a ClientError, the service unreachable, retries)
            station_iri = self.records.station_iri()
        except SignerUnavailable as e:
            return self._fail(work, "running", str(e))
        self.runtime.discard(work.execution)
        problem = self._fetch_inputs(work) or self._obtain_dataspace_inputs(work)
        if problem is not None:
            return self._fail(work, "running", problem)
        dataspace_dir = hold.root / "dataspace"
        dataset = next(iter(self.settings.datasets.values()))
        problem = input_problem(work, dataset, self.settings.station_id)  # the signed input shapes vs the real data
        if problem is not None:
            return self._fail(work, "running", problem)
        try:  # a declared cohort: the station selects its rows and measures it; the train sees those rows only
            cohort = cohort_of(dict(work.parameters), dataset) if work.stop is not None else None
            if cohort is not None:
                shutil.rmtree(hold.cohort_data, ignore_errors=True)
                materialise(cohort, dataset, hold.cohort_data)
                save_cohort(hold.root, HeldCohort(
                    execution=_execution_iri(station_iri, work.execution),
                    statistic=f"{work.definition} ({work.image_digest})", cohort=cohort,
                    measured=measure(cohort, dataset)))  # rows as the dataset numbers them
                dataset = hold.cohort_data
        except CohortRefused as e:  # e.g. the dataset changed since the train was queued
            return self._fail(work, "running", f"station {self.settings.station_id} refuses the train: {e}")
        write_atomic(hold.params, json.dumps(dict(work.parameters), sort_keys=True).encode())
        shutil.rmtree(hold.output, ignore_errors=True)
        hold.output.mkdir(parents=True)
        role = contract.ROLE_STATION if work.stop is not None else contract.ROLE_AGGREGATOR
        spec = RunSpec(name=work.execution, image=work.image_name, image_digest=work.image_digest,
                       dataset_dir=dataset, input_dir=hold.inputs, params_file=hold.params, output_dir=hold.output,
                       environment=contract.run_environment(role=role, round_=work.round,
                                                            station=self.settings.station_id,
                                                            input_count=len(work.input_digests)),
                       entrypoint=work.entrypoint.split() if work.entrypoint else None, limits=self.settings.limits,
                       dataspace_dir=dataspace_dir if dataspace_dir.is_dir() else None)
        self.events.started_running(work)
        started = datetime.now(timezone.utc)
        try:
            result = self.runtime.run(spec)
        except ImageRefused as e:
            return self._fail(work, "running", str(e))
        except RuntimeFailure as e:  # the station's engine, not the train: retried, bounded by max_attempts
            log.warning("%s: the runtime failed, retrying at the next poll: %s", work.execution, e)
            return None
        ended = datetime.now(timezone.utc)
        self.events.finished_running(work, result)
        policy = self.policy
        if not result.ok:
            # the whole sentence and the output's last lines stay here, in the station's own log
            log.warning("%s: the train failed: %s%s", work.execution, result.failure, _last_lines(result.logs))
            return self._fail(work, "running", policy.failure_reason(self.settings.station_id, result.exit_code,
                                                                     result.failure or "unknown failure"))
        checks = review(hold.output, policy)  # the admin reviews the plain output; what leaves is sealed
        differencing = self._differencing(hold, policy)
        if differencing is not None:
            checks.append(differencing)
        try:
            plain_sha256, _ = archive.pack_to(hold.output, hold.packed)
            sha256, size = seal_output(hold.packed, hold.archive, readers)
        except archive.ArchiveError as e:  # the train chose the files, so the message is the train's too
            log.warning("%s: the output cannot be packed: %s", work.execution, e)
            return self._fail(work, "running", policy.failure_reason(self.settings.station_id, result.exit_code,
                                                                     f"the output cannot be packed: {e}"))
        finally:
            hold.packed.unlink(missing_ok=True)
        approved = self.approvals.get(work.execution)
        held_cohort = load_cohort(hold.root) if cohort is not None else None
        version = held_cohort.measured.dataset_version if held_cohort is not None else (
            dataset_version(dataset) if work.stop is not None else None)
        shown = [c.as_json() for c in checks]
        save_draft(hold.root, draft_record(
            work, station_iri=station_iri, signed_hash=approved.signed_hash if approved is not None else "",
            approved_how="auto" if self.approvals.how(work.execution) == "auto" else "admin", output_digest=sha256,
            input_record_hashes=list(work.input_record_hashes), started=started, ended=ended,
            disclosure=disclosure_control(shown, policy, stage="local-result" if work.stop is not None else "aggregate",
                                          dataset_version=version, applied=consent_rules(
                                              self.settings.state_dir, hold.root,
                                              _execution_iri(station_iri, work.execution)))))
        write_atomic(hold.review, json.dumps({"sha256": sha256, "byte_size": size, "plain_sha256": plain_sha256,
                                               "checks": shown}).encode())
        return self._hand_over(work, hold)

    def _hand_over(self, work: WorkItem, hold: Holding) -> str:
        """The output is held for review: the central service learns that, and nothing about the output (its digest,
        size, files and checks stay in ``hold`` until a release)."""
        held = hold.held()
        assert held is not None
        failed = [c["name"] for c in held[2] if not c["passed"]]
        log.info("%s: output held for review at the station (%s)", work.execution,
                 "checks failed: " + ", ".join(failed) if failed else "every check passed")
        return self._fire(work, "running", "output-under-review", "the output awaits review at the station")

    # -- release --------------------------------------------------------------------------------------------

    def _maybe_release(self, work: WorkItem) -> str | None:
        hold = Holding(self.settings.state_dir, work.execution)
        held = hold.held()
        if held is None:
            return self._fail(work, "output-under-review",
                              "the held output is missing at the station (its state folder was lost)")
        policy = self.policy
        spend = load_spend(hold.root)
        if spend is not None:  # a release since the run may have spent the rest of the budget
            try:
                spend_on_release(self.settings.state_dir, spend, record=False)
            except BudgetExceeded as e:
                return self._fire(work, "output-under-review", "withheld", f"withheld by the station policy: {e}")
        automatic = not policy.requires_output_review and all(c["passed"] for c in held[2])
        if automatic or policy.withholds_differencing:  # again: a release since the run may be too close now
            differencing = self._differencing(hold, policy)
            if differencing is not None and not differencing.passed:
                if policy.withholds_differencing:
                    log.info("%s: %s", work.execution, differencing.detail)  # the detail stays at the station
                    return self._fire(work, "output-under-review", "withheld",
                                      "withheld by the station policy: the output's cohort differs from the cohort of "
                                      "an earlier release by fewer people than the minimum cell count")
                return None  # the admin decides, with the check in the review
        if not automatic:
            return None  # the admin decides
        reason = "released automatically: every output check passed and the station policy does not require a review"
        release(self.client, self.objects, hold, work.execution, reason=reason,
                share_check_names=policy.shares_check_names, records=self.records, released_how="auto")
        self.events.state_change(work, "released", "released automatically", from_state="output-under-review")
        log.info("%s -> released %s", work.execution, reason)
        return "released"

    def _differencing(self, hold: Holding, policy: StationPolicy) -> Check | None:
        """The differencing check of the held output's cohort against this station's earlier releases
        (``station/disclosure.py``), or None if the policy does not ask for it or the train declared no cohort."""
        minimum = policy.differencing_minimum
        held = load_cohort(hold.root) if minimum is not None else None
        if minimum is None or held is None:
            return None
        with open_ledger(self.settings.state_dir) as ledger:
            near = ledger.near(held.measured, minimum, exclude=held.execution)
        return differencing_check(near, minimum)

    def _forget_finished(self, current: set[str]) -> None:
        """Delete the folders of executions that are no longer this station's work (finished elsewhere), after
        finishing a release that was interrupted (:func:`resume_release`)."""
        root = self.settings.state_dir / "executions"
        if not root.is_dir():
            return
        for folder in root.iterdir():
            if folder.name not in current:
                if not resume_release(self.client, self.objects, Holding(self.settings.state_dir, folder.name),
                                      folder.name, records=self.records):
                    continue  # the central service or the object store cannot be reached now: next poll
                shutil.rmtree(folder, ignore_errors=True)


def _last_lines(logs: bytes, lines: int = 8, max_chars: int = 1000) -> str:
    """The end of a failed train's output for the station's own log (what a station admin reads first), or ""."""
    text = logs.decode("utf-8", "replace").strip()
    if not text:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])[-max_chars:]
    return "; its last output lines:\n" + tail


def quiet_request_logs() -> None:
    """Log HTTP requests only from WARNING up: httpx logs each one at INFO, which for an agent polling every
    second buries what happens (work taken, decisions, results) under its polls. For the agent's entry point."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


_SHARED_DETAIL = {True: "The check passed at the station.",
                  False: "The check failed at the station; its admin released the output nonetheless."}


def release(client: CentralClient, objects: ObjectStore, hold: Holding, execution: str, *, reason: str,
            share_check_names: bool = False, records: RecordSigner | None = None, released_how: How = "admin") -> str:
    """Release the held output (its ciphertext, sealed to its readers when it was packed), atomically from the
    readers' view: stage it in the object store under a random key (readable by no digest), fire ``released``
    carrying the ciphertext's digest and size (and, if
    ``share_check_names``, the checks' names and results, never their details), then promote the staged copy to
    its digest. A refused step (4xx: cancelled, withheld meanwhile) discards the staged copy, so nothing is left
    readable; an unanswered one leaves it staged, and the release is resumed (:func:`resume_release`). With
    ``records`` (the station's signer), the step carries the station's signed record of the execution (drafted when
    the output was held, ``station/records.py``), released ``released_how``.
    """
    held = hold.held()
    if held is None:
        raise ClientError(f"execution {execution} has no held output at this station")
    sha256, size, checks = held
    draft = load_draft(hold.root) if records is not None else None
    try:
        signed = records.sign(draft, released_how=released_how) if records is not None and draft is not None else None
    except SignerUnavailable as e:  # nothing staged yet: the release is simply not made
        raise ClientError(str(e)) from None
    cohort = load_cohort(hold.root)
    if cohort is not None:  # remembered before the step: a crash after it must not leave a release unremembered
        try:
            with open_ledger(hold.root.parent.parent) as ledger:
                ledger.record_release(cohort)
        except GraphStoreError as e:  # nothing staged yet: the release is simply not made
            raise ClientError(f"station cannot remember the release of {execution} in its disclosure graph, so it "
                              f"does not release it: {e}") from None
    spend = load_spend(hold.root)
    if spend is not None:  # checked and remembered before the step, like the cohort
        try:
            reason = f"{reason}; {spend_on_release(hold.root.parent.parent, spend)}"
        except (BudgetExceeded, GraphStoreError) as e:
            raise ClientError(f"{execution} is not released: {e}") from None
    key = hold.staging_key()
    if key is None:
        key = new_staging_key()
        write_atomic(hold.releasing, json.dumps({"staging_key": key}).encode())  # before anything is staged
    stored = objects.stage_file(hold.archive, key)
    if stored != sha256:
        _discard(objects, hold, key)
        raise ClientError(f"the held output of {execution} changed on disk (sha256 {stored} is not {sha256})")
    shared = [CheckIn(name=c["name"], passed=c["passed"], detail=_SHARED_DETAIL[bool(c["passed"])])
              for c in checks] if share_check_names else []
    output = OutputIn(sha256=sha256, byte_size=size, title=f"output of {execution}", checks=shared, record=signed)
    try:
        state = client.step(execution, "released", reason=reason, output=output)
    except ClientError as e:
        if e.status is not None and 400 <= e.status < 500:  # refused: this output is not released
            _discard(objects, hold, key)
        raise
    objects.promote(key, sha256)
    hold.releasing.unlink(missing_ok=True)
    return state


def resume_release(client: CentralClient, objects: ObjectStore, hold: Holding, execution: str, *,
                   records: RecordSigner | None = None) -> bool:
    """Finish a release that was interrupted (its staging key is still recorded) of an execution that left the
    station's work: the same release again is a no-op at the central service if it went through, so the staged copy
    is promoted; if it was refused, it is discarded. True when nothing is left to do, False to try again later."""
    key = hold.staging_key()
    if key is None:
        return True
    try:
        if hold.held() is None:
            _discard(objects, hold, key)
        else:
            release(client, objects, hold, execution, reason="release resumed after an interruption", records=records)
    except ClientError as e:
        return e.status is not None and 400 <= e.status < 500  # refused: release() discarded the staged copy
    except ObjectStoreError as e:
        log.warning("%s: the interrupted release cannot be finished now: %s", execution, e)
        return False
    return True


def _discard(objects: ObjectStore, hold: Holding, key: str) -> None:
    objects.discard(key)
    hold.releasing.unlink(missing_ok=True)


def _execution_iri(station_iri: str, execution: str) -> str:
    """The execution's IRI, under the same base as the station's."""
    return ResourceIris(station_iri[:station_iri.rindex("stations/")]).execution(execution).value

"""The lifecycle engine: submit, step, cancel — each one atomic, validated write of the graph.

Every state change runs ``sparql_queries/fire_transition.rq`` (guarded by the current state, checked against
the chart's transition and role, recording a ``pht:StateChangeEvent``). A step of an execution and every
step it causes (its train moving on, the next stop's or round's executions being created, siblings being
cancelled when the train ends) are committed together with ``GraphStore.apply_updates``: a crash leaves either
all of it or none, so no train is ever in an impossible state. Steps of clients acting at once
(:meth:`Lifecycle.step_many`) are each such a write, sent to the store as one group (``GraphStore.apply_writes``).

Incremental mode: the stops in route order (and the route again for each further round); the released output
of one execution is ``prov:used`` by the next. Federated mode: each round sends the train to every stop at
once; when all are released the aggregator station aggregates; then the next round, until the rounds are done.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pyoxigraph import Literal, NamedNode, Quad

from client.train_request import RequestSignature, RequestTerms
from graph_store import (
    CENTRAL_GRAPH,
    DCTERMS,
    PHT,
    PHT_NS,
    PROV,
    RDF_TYPE,
    XSD,
    ChangeSet,
    ConflictError,
    GraphStore,
    UpdateWrite,
    is_well_typed,
    named_query,
)

from .chart import Chart, load_chart
from .dispatch_check import dispatch_refusal
from .errors import Forbidden, IllegalTransition, InvalidValue, LifecycleError, NotFound
from .execution_records import record_quads
from .keys import KeyDirectory
from .list_positions import TRAINS, position_quad
from .naming import Iris
from .principal import Principal, Role
from .settings import Settings
from .signed_requests import check_terms, definition_content, signed_request_quads

__all__ = ["Lifecycle", "DefinitionWrite", "InputsLacking", "OutputRecord", "StepRequest"]

G = CENTRAL_GRAPH
log = logging.getLogger("pht.watchdog")


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Lifecycle, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return wrapper


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _time(t: datetime) -> Literal:
    return Literal(t.isoformat(timespec="microseconds").replace("+00:00", "Z"), datatype=XSD.dateTime)


def _int(term: Any) -> int:
    return int(term.value)


_CONTEXTS_CACHED = 10_000
"""Executions whose context the engine keeps (a few hundred bytes each); the cache restarts when full."""

_CONTEXT_PREDICATES = frozenset(
    [PHT.ofTrain, PHT.atStation, PHT.round, PHT.forStop, PHT.stopIndex, PHT.definition, PHT.mode, PHT.rounds,
     PHT.aggregator, PHT.routeStop, PHT.station, DCTERMS.identifier])
"""What ``execution_context.rq`` and ``route.rq`` read besides states: a commit writing one of these for a cached
node makes the engine forget its caches."""


class InputsLacking(LifecycleError):
    """A route station lacks a variable the train's input shapes require: the train failed before dispatch (422)."""

    status = 422


@dataclass(frozen=True)
class DefinitionWrite:
    """A train definition as it is to be written (made by ``Registry.prepare_definition``), so that it can be
    committed in the same change set as the train that uses it."""

    iri: NamedNode
    insert: tuple[Quad, ...]
    """Its quads; empty when the same definition is registered already (registering it again changes nothing)."""
    parameters: Mapping[str, tuple[NamedNode, NamedNode, bool]]
    """Its parameters by name: (parameter IRI, datatype IRI, required), as ``definition_parameters.rq`` reads them."""
    content: tuple[Quad, ...] = ()
    """Its content quads (``client.train_request.definition_triples``), registered or not: what a signed train
    request signs of it."""


@dataclass(frozen=True)
class OutputRecord:
    """An output as the central graph records it: its object store address and size, and optionally the
    station's check results (name, passed, detail). Sent with the release step, never before (docs/station.md)."""

    sha256: str
    byte_size: int
    title: str = ""
    checks: Sequence[tuple[str, bool, str]] = ()
    record: str | None = None
    """The station's signed execution record (N-Triples of the record and its proof), stored with the release."""


@dataclass(frozen=True)
class StepRequest:
    """One call of :meth:`Lifecycle.step`, as :meth:`Lifecycle.step_many` takes it."""

    principal: Principal
    execution_id: str
    to: str
    reason: str = ""
    used: Sequence[str] = ()
    output: OutputRecord | None = None


@dataclass
class _Step:
    """One transition to fire as part of a combined write."""

    resource: NamedNode
    frm: NamedNode
    to: NamedNode
    role: NamedNode
    agent: NamedNode
    reason: str = ""


@dataclass(frozen=True)
class _Decision:
    """A step decided (:meth:`Lifecycle._decide`): the transitions to fire and what they add, in one write."""

    steps: list[_Step]
    change: ChangeSet
    to: str


@dataclass
class Lifecycle:
    """Advances trains and executions; every method is one atomic, validated, guarded write."""

    store: GraphStore
    settings: Settings
    chart: Chart = field(default_factory=load_chart)
    clock: Callable[[], datetime] = _now
    step_observer: Callable[[str, str], None] | None = None
    """Told ("train" or "execution", new state's token) of every step committed (the metrics' counter)."""

    def __post_init__(self) -> None:
        self.iris = Iris(self.settings.base_iri)
        self._fire = named_query("fire_transition").text
        # Read-decide-commit of one request at a time in this process (the guards keep other processes
        # honest; this lock only spares clients of one service needless conflicts).
        self._lock = threading.RLock()
        self._contexts: dict[NamedNode, dict[str, Any]] = {}  # see _execution_row
        self._routes: dict[NamedNode, list[tuple[NamedNode, NamedNode]]] = {}  # see _route
        self._stop_indices: dict[NamedNode, int] = {}  # the index of each stop of the routes cached, see _stop_index
        self._cached_nodes: set[Any] = set()  # every node the two caches hold, see _forget_edited_contexts
        self._known_states: dict[Any, Any] = {}  # see _states: the states this process last read or committed
        self.store.on_commit(self._forget_edited_contexts)
        self.store.on_commit(self._note_states)
        self.store.on_bypass(self._known_states.clear)

    # -- trains -----------------------------------------------------------------------------------------

    @_serialised
    def submit(self, principal: Principal, *, definition_id: str, parameters: Mapping[str, str],
               new_definition: DefinitionWrite | None = None, signature: RequestSignature | None = None,
               terms: RequestTerms = RequestTerms()) -> str:
        """Create a train of a definition for the calling researcher and queue it; returns its id.

        The definition is a registered one, or ``new_definition``, whose quads are written in the same validated
        change set as the train: if either is refused, nothing is written. ``signature``: the researcher's signed
        train request, verified here and stored with the train (``orchestrator.signed_requests``); without one the
        submission is refused if ``Settings.require_signed_trains``. ``terms``: the purpose, project and
        differential-privacy terms the researcher declared, part of the signed request (so refused without one);
        a purpose that is not a vetted DUO term (``ontology/duo.ttl``) is refused.
        """
        if not principal.has(Role.RESEARCHER, Role.OPERATOR):
            raise Forbidden("only researchers (and operators) submit trains")
        definition = self.iris.definition(definition_id)
        if new_definition is not None and new_definition.iri != definition:
            raise ValueError(f"new_definition is not the definition {definition_id!r}")
        params = (self._parameters(definition, definition_id) if new_definition is None
                  else new_definition.parameters)
        values = self._parameter_values(params, parameters)
        if signature is None and self.settings.require_signed_trains:
            raise Forbidden("this service accepts signed trains only (and stations run no other): create your keys "
                            "with pht keys init, then submit with pht train submit")
        check_terms(terms, signed=signature is not None)
        train_id = str(uuid.uuid4())
        train = self.iris.train(train_id)
        agent = self.iris.agent(principal.subject)
        now = self.clock()
        signed: list[Quad] = []
        if signature is not None:
            content = (definition_content(self.store, definition, with_server_added=False) if new_definition is None
                       else new_definition.content)
            signed = signed_request_quads(
                self.store, self.iris, train=train, requester=agent, definition=content,
                definition_id=definition_id, parameters=parameters, signature=signature, now=now, terms=terms,
                datatypes={name: dt.value.rsplit("#", 1)[-1] for name, (_, dt, _) in params.items()})
        quads = [
            Quad(train, RDF_TYPE, PHT.Train, G),
            Quad(train, DCTERMS.identifier, Literal(train_id), G),
            Quad(train, PHT.definition, definition, G),
            Quad(train, PROV.wasAttributedTo, agent, G),
            Quad(train, DCTERMS.created, _time(now), G),
            Quad(train, PHT.state, PHT.Submitted, G),
            position_quad(self.store, train, TRAINS),  # the newest position and one, read under this method's lock
        ]
        for i, (param, value) in enumerate(values):
            pv = NamedNode(f"{train.value}/parameters/{i}")
            quads += [Quad(pv, RDF_TYPE, PHT.ParameterValue, G), Quad(pv, PHT.forParameter, param, G),
                      Quad(pv, PHT.literalValue, value, G), Quad(train, PHT.parameterValue, pv, G)]
        event = self.iris.event()
        quads += [Quad(event, RDF_TYPE, PHT.StateChangeEvent, G), Quad(event, PHT.eventTime, _time(now), G),
                  Quad(event, PHT.aboutTrain, train, G), Quad(event, PHT.emittedBy, self.iris.central, G),
                  Quad(event, PHT.toState, PHT.Submitted, G),
                  Quad(event, PROV.wasAssociatedWith, agent, G),
                  Quad(event, PHT.actingRole, PHT.Researcher, G)]
        if new_definition is not None:
            quads += new_definition.insert
        self.store.apply(ChangeSet(insert=quads + signed))
        self._queue(train)
        return train_id

    def _queue(self, train: NamedNode) -> None:
        """submitted -> queued, creating the first stop's (or round's) executions in the same write; or
        submitted -> failed, with the reason, if a route station lacks a variable of the train's input shapes
        (``dispatch_check.py``; :class:`InputsLacking`)."""
        (ctx,) = self._train_row(train)
        definition = ctx["definition"]
        stops = self._route(definition)
        refusal = dispatch_refusal(self.store, definition, [self.iris.local(s, "stations") for _, s in stops])
        if refusal is not None:
            self._commit([_Step(train, PHT.Submitted, PHT.Failed, PHT.Operator, self.iris.central, refusal)],
                         ChangeSet())
            raise InputsLacking(f"train {self.iris.local(train, 'trains')} was not dispatched: {refusal}")
        mode = ctx["mode"]
        first = stops if mode == PHT.Federated else stops[:1]
        extra = self._new_executions(train, first, round_=1, used=[])
        self._commit([_Step(train, PHT.Submitted, PHT.Queued, PHT.Operator, self.iris.central)], extra)

    def expire_stale(self, timeout_s: float) -> list[str]:
        """Fail executions their station has not moved for ``timeout_s`` (the station went away), with a
        reason that names the station; the train fails with them. Returns the failed execution ids.

        Each execution is handled on its own: one that cannot be failed (whatever the error) is logged with its
        train and execution, and the others are still failed; the next round tries it again."""
        before = _time(self.clock() - timedelta(seconds=timeout_s))
        failed = []
        operator = Principal(subject="station-watchdog", roles=frozenset({Role.OPERATOR}))
        for r in list(self.store.run_query("stale_executions", before=before)):
            eid = self.iris.local(r["execution"], "executions")
            reason = (f"station {r['stationId'].value} did not move execution {eid} on from "
                      f"{self.chart.token(r['state'])} for {timeout_s:g} s (since {r['since'].value}); "
                      "the station may be offline")
            try:
                self.step(operator, execution_id=eid, to="failed", reason=reason)
            except (ConflictError, IllegalTransition):
                continue  # the station moved it meanwhile
            except Exception:  # one train's failure must not leave the others running
                log.exception("the station watchdog could not fail execution %s of train %s; trying the others",
                              eid, self.iris.local(r["train"], "trains"))
                continue
            failed.append(eid)
        return failed

    @_serialised
    def recover(self) -> int:
        """Queue trains a crash left ``submitted`` (start-up); returns how many."""
        rows = list(self.store.select(
            f"PREFIX pht: <{PHT_NS}> "
            "SELECT ?t WHERE { GRAPH $g { ?t a pht:Train ; pht:state pht:Submitted } }", bindings={"g": G}))
        for row in rows:
            try:
                self._queue(row["t"])
            except (ConflictError, InputsLacking):
                pass  # queued meanwhile by someone else, or failed before dispatch (the reason is recorded)
        return len(rows)

    @_serialised
    def cancel(self, principal: Principal, *, train_id: str, reason: str = "") -> str:
        """Cancel a train (its requester or an operator) and every execution of it still active."""
        train = self.iris.train(train_id)
        rows = self._train_row(train)
        if not rows:
            raise NotFound(f"no train {train_id}")
        state, requester = rows[0]["state"], rows[0]["requester"]
        if principal.has(Role.OPERATOR):
            role = PHT.Operator
        elif principal.has(Role.RESEARCHER) and requester == self.iris.agent(principal.subject):
            role = PHT.Researcher
        else:
            raise Forbidden("only the train's requester or an operator may cancel it")
        self._check("train", train_id, state, PHT.Cancelled, role)
        steps = [_Step(train, state, PHT.Cancelled, role, self.iris.agent(principal.subject), reason)]
        steps += self._cancel_siblings(train, exclude=None, reason=reason or "train cancelled")
        self._commit(steps, ChangeSet())
        return "cancelled"

    # -- executions -------------------------------------------------------------------------------------

    @_serialised
    def step(self, principal: Principal, *, execution_id: str, to: str, reason: str = "",
             used: Sequence[str] = (), output: OutputRecord | None = None) -> str:
        """Move an execution to state ``to`` (a chart token) and apply what follows for its train.

        ``output`` (only with ``to="released"``) is recorded in the same write as the release, so the central
        graph learns an output's digest and size only when it is released; releasing again with the same
        output is a no-op answered ``released`` (a station retrying after a lost answer).

        Decided first on the states this process last read or committed (no read of them); a step that this
        refuses, or whose commit finds them changed (another replica's write), is decided again on the
        store's."""
        execution = self.iris.execution(execution_id)
        known = self._knows_states(execution)
        try:
            return self._step(principal, execution, execution_id, to, reason, used, output, known=known)
        except LifecycleError:
            if not known:  # decided on the store's states already
                raise
            self._forget_states(execution)
            return self._step(principal, execution, execution_id, to, reason, used, output, known=False)

    @_serialised
    def step_many(self, requests: Sequence[StepRequest]) -> list[str | Exception]:
        """Steps of clients acting at once: for each, what :meth:`step` returns or raises for it, as if the steps
        were called one by one (those written in the group first, in their order). They are decided one after the
        other and go to the store as one group of writes (``GraphStore.apply_writes``: on a remote store, the
        round trips of one write); those refused on the states this process knew, and those the group found
        changed (by a step before them in the group, or by another replica), are then stepped one by one."""
        results: list[str | Exception | None] = [None] * len(requests)
        decided: list[tuple[int, _Decision]] = []
        alone: list[int] = []
        for i, r in enumerate(requests):
            execution = self.iris.execution(r.execution_id)
            known = self._knows_states(execution)
            try:
                decision = self._decide(r.principal, execution, r.execution_id, r.to, r.reason, r.used, r.output,
                                        known=known)
            except LifecycleError as e:
                if known:  # perhaps refused on stale states: decided again on the store's, alone
                    alone.append(i)
                else:
                    results[i] = e
                continue
            except Exception as e:
                results[i] = e
                continue
            if isinstance(decision, str):
                results[i] = decision
            else:
                decided.append((i, decision))
        outcomes = self.store.apply_writes([UpdateWrite(self._fires(d.steps), d.change, require_match=True)
                                            for _, d in decided])
        for (i, decision), outcome in zip(decided, outcomes, strict=True):
            if isinstance(outcome, ConflictError):
                self._forget_states(decision.steps[0].resource)
                alone.append(i)
            elif isinstance(outcome, Exception):
                results[i] = outcome
            else:
                self._observe(decision.steps)
                results[i] = decision.to
        for i in sorted(alone):
            r = requests[i]
            try:
                results[i] = self.step(r.principal, execution_id=r.execution_id, to=r.to, reason=r.reason,
                                       used=r.used, output=r.output)
            except Exception as e:
                results[i] = e
        return [result if result is not None else RuntimeError("a step was left undecided") for result in results]

    def _step(self, principal: Principal, execution: NamedNode, execution_id: str, to: str, reason: str,
              used: Sequence[str], output: OutputRecord | None, *, known: bool) -> str:
        """:meth:`step` decided on the states known to this process (``known``) or read from the store."""
        decision = self._decide(principal, execution, execution_id, to, reason, used, output, known=known)
        if isinstance(decision, str):
            return decision
        self._commit(decision.steps, decision.change)
        return to

    def _decide(self, principal: Principal, execution: NamedNode, execution_id: str, to: str, reason: str,
                used: Sequence[str], output: OutputRecord | None, *, known: bool) -> _Decision | str:
        """What :meth:`_step` writes, or the state ``to`` if nothing is to be written (the same release again);
        raises what the step is refused with."""
        ctx = self._execution_row(execution, known=known)
        if ctx is None:
            raise NotFound(f"no execution {execution_id}")
        station_id = ctx["stationId"].value
        if principal.has(Role.STATION, Role.STATION_ADMIN) and not principal.has(Role.OPERATOR) \
                and principal.station != station_id:
            raise Forbidden(f"execution {execution_id} runs at station {station_id!r}, not at {principal.station!r}")
        try:
            target = self.chart.state(to)
        except KeyError as e:
            raise LifecycleError(str(e.args[0])) from None
        state = ctx["state"]
        if output is not None and target != PHT.Released:
            raise LifecycleError(f"an output is recorded only with the release step, not with {to!r}")
        if output is not None and state == PHT.Released and self._released_sha256(execution) == output.sha256:
            return to  # the same release again: already done
        role = self.chart.role_for("execution", state, target, principal.roles)
        self._check("execution", execution_id, state, target, role)
        assert role is not None
        # a station acts as itself; an admin or operator is recorded as the person who decided
        agent = ctx["station"] if role == PHT.StationRole else self.iris.agent(principal.subject)
        steps = [_Step(execution, state, target, role, agent, reason)]
        now = _time(self.clock())
        inserts: list[Quad] = []
        if target == PHT.Running:
            inserts.append(Quad(execution, PROV.startedAtTime, now, G))
            for dataset in self._own_datasets(ctx, used):
                inserts.append(Quad(execution, PROV.used, dataset, G))
        if target in self.chart.terminal:
            inserts.append(Quad(execution, PROV.endedAtTime, now, G))
        if output is not None:
            inserts += self._output_quads(execution_id, output)
            if output.record is not None:
                inserts += record_quads(KeyDirectory(self.store), execution=execution, train=ctx["train"],
                                        station=ctx["station"], output_sha256=output.sha256, ntriples=output.record,
                                        now=self.clock())
        follow_steps, follow_change = self._consequences(execution, ctx, target, reason,
                                                         output_recorded=output is not None)
        # what the step was decided on, both states, holds when it is written (or nothing is written)
        decided_on = [Quad(execution, PHT.state, state, G), Quad(ctx["train"], PHT.state, ctx["trainState"], G)]
        return _Decision(steps + follow_steps, ChangeSet(insert=inserts + list(follow_change.insert),
                                                         guard=[*follow_change.guard, *decided_on]), to)

    @_serialised
    def add_output(self, principal: Principal, *, execution_id: str, sha256: str, byte_size: int,
                   title: str = "", checks: Sequence[tuple[str, bool, str]] = ()) -> str:
        """Record the output an execution generated (before it is released) and the station's automatic
        review of it (``checks``: name, passed, detail); returns the output's IRI."""
        execution = self.iris.execution(execution_id)
        ctx = self._execution_row(execution)
        if ctx is None:
            raise NotFound(f"no execution {execution_id}")
        if not principal.has(Role.OPERATOR) and principal.station != ctx["stationId"].value:
            raise Forbidden(f"only station {ctx['stationId'].value!r} hands over outputs of {execution_id}")
        if ctx["state"] not in (PHT.Running, PHT.OutputUnderReview):
            raise IllegalTransition(f"execution {execution_id} is {self.chart.token(ctx['state'])}: outputs are "
                                    "handed over while running or under review")
        quads = self._output_quads(execution_id, OutputRecord(sha256, byte_size, title, checks))
        self.store.apply(ChangeSet(insert=quads, guard=[Quad(execution, PHT.state, ctx["state"], G)]))
        return self.iris.output(execution_id).value

    def _output_quads(self, execution_id: str, record: OutputRecord) -> list[Quad]:
        """The quads of an execution's output (``pht:Output``) and of its review if it has check results."""
        execution, output = self.iris.execution(execution_id), self.iris.output(execution_id)
        quads = [Quad(output, RDF_TYPE, PHT.Output, G), Quad(output, PROV.wasGeneratedBy, execution, G),
                 Quad(output, PHT.sha256, Literal(record.sha256), G),
                 Quad(output, PHT.byteSize, Literal(str(record.byte_size), datatype=XSD.integer), G)]
        if record.title:
            quads.append(Quad(output, DCTERMS.title, Literal(record.title), G))
        if record.checks:
            review = NamedNode(output.value + "/review")
            quads += [Quad(review, RDF_TYPE, PHT.OutputReview, G), Quad(review, PHT.reviewOf, output, G)]
            for name, passed, detail in record.checks:
                check = NamedNode(f"{review.value}/{name}")
                quads += [Quad(review, PHT.checkResult, check, G), Quad(check, RDF_TYPE, PHT.CheckResult, G),
                          Quad(check, DCTERMS.identifier, Literal(name), G),
                          Quad(check, PHT.passed, Literal("true" if passed else "false",
                                                          datatype=XSD.boolean), G),
                          Quad(check, PHT.detail, Literal(detail), G)]
        return quads

    def _released_sha256(self, execution: NamedNode) -> str | None:
        """The SHA-256 the graph records for the execution's output, if any."""
        output = self.iris.output(self.iris.local(execution, "executions"))
        found = [q.object.value for q in self.store.quads(output, PHT.sha256, None, G) if isinstance(q.object, Literal)]
        return found[0] if len(found) == 1 else None

    def _own_datasets(self, ctx: Mapping[str, Any], used: Sequence[str]) -> list[NamedNode]:
        """The datasets a step to running reports as used, each checked to be held by the execution's station:
        a station may claim only its own data (422 for an unknown dataset, 403 for another station's)."""
        datasets = []
        for did in used:
            dataset = self.iris.dataset(did)
            holders = [q.object for q in self.store.quads(dataset, PHT.heldBy, None, G)]
            if not holders:
                raise InvalidValue(f"no dataset {did!r} is registered; a step may report only registered datasets "
                                   "of its station as used")
            if holders != [ctx["station"]]:
                raise Forbidden(f"dataset {did!r} is not held by station {ctx['stationId'].value!r}; a station may "
                                "report only its own datasets as used")
            datasets.append(dataset)
        return datasets

    # -- what follows a step ----------------------------------------------------------------------------

    def _consequences(self, execution: NamedNode, ctx: Mapping[str, Any], target: NamedNode,
                      reason: str, *, output_recorded: bool = False) -> tuple[list[_Step], ChangeSet]:
        train, train_state = ctx["train"], ctx["trainState"]
        central = self.iris.central
        steps: list[_Step] = []
        if target in (PHT.WaitingForApproval, PHT.Approved) and train_state == PHT.Queued:
            steps.append(_Step(train, PHT.Queued, PHT.Running, PHT.StationRole, ctx["station"]))
        elif target in (PHT.Rejected, PHT.Withheld, PHT.Failed, PHT.Cancelled):
            train_target = {PHT.Rejected: PHT.Rejected, PHT.Withheld: PHT.Withheld, PHT.Failed: PHT.Failed,
                            PHT.Cancelled: PHT.Cancelled}[target]
            if self.chart.allows("train", train_state, train_target):
                steps.append(_Step(train, train_state, train_target, PHT.Operator, central,
                                   reason or f"execution {self.iris.local(execution, 'executions')} "
                                             f"{self.chart.token(target)}"))
            elif train_state not in self.chart.terminal:
                steps.append(_Step(train, train_state, PHT.Failed, PHT.Operator, central,
                                   reason or f"execution {self.chart.token(target)}"))
            steps += self._cancel_siblings(train, exclude=execution, reason="another execution of the train ended it")
        elif target == PHT.Released:
            return self._after_release(execution, ctx, output_recorded=output_recorded)
        return steps, ChangeSet()

    def _after_release(self, execution: NamedNode, ctx: Mapping[str, Any], *,
                       output_recorded: bool = False) -> tuple[list[_Step], ChangeSet]:
        train, central = ctx["train"], self.iris.central
        stops = self._route(ctx["definition"])
        round_, rounds = _int(ctx["round"]), _int(ctx["rounds"])
        outputs = [NamedNode(self.iris.output(self.iris.local(execution, "executions")).value)]
        outputs = [o for o in outputs if output_recorded or self.store.contains(Quad(o, RDF_TYPE, PHT.Output, G))]
        if ctx["mode"] == PHT.Incremental:
            index = _int(ctx["stopIndex"])
            if index + 1 < len(stops):
                nxt, next_round = [stops[index + 1]], round_
            elif round_ < rounds:
                nxt, next_round = [stops[0]], round_ + 1
            else:
                return [_Step(train, PHT.Running, PHT.Finished, PHT.Operator, central)], ChangeSet()
            return ([_Step(train, PHT.Running, PHT.Queued, PHT.Operator, central)],
                    self._new_executions(train, nxt, next_round, outputs))
        # federated
        siblings = [r for r in self.store.run_query("train_executions", train=train)
                    if _int(r["round"]) == round_ and r["execution"] != execution and r["stopIndex"] is not None]
        if ctx["stopIndex"] is not None:  # a station of the round finished
            # The decision depends on the siblings' states: guard on them, so that of two stations releasing
            # at once the second commit fails (409, retry) instead of both concluding "not everyone is done".
            guard = [Quad(r["execution"], PHT.state, r["state"], G) for r in siblings]
            if any(r["state"] != PHT.Released for r in siblings):
                return [], ChangeSet(guard=guard)
            round_outputs = outputs + [r["output"] for r in siblings if r["output"] is not None]
            new = self._new_executions(train, [(None, ctx["aggregator"])], round_, round_outputs)
            return ([_Step(train, PHT.Running, PHT.Aggregating, PHT.Operator, central)],
                    ChangeSet(insert=new.insert, guard=guard))
        if round_ < rounds:  # the aggregator finished a round
            return ([_Step(train, PHT.Aggregating, PHT.Queued, PHT.Operator, central)],
                    self._new_executions(train, stops, round_ + 1, outputs))
        return [_Step(train, PHT.Aggregating, PHT.Finished, PHT.Operator, central)], ChangeSet()

    def _cancel_siblings(self, train: NamedNode, *, exclude: NamedNode | None, reason: str) -> list[_Step]:
        steps = []
        for r in self.store.run_query("train_executions", train=train):
            if r["execution"] != exclude and r["state"] not in self.chart.terminal:
                steps.append(_Step(r["execution"], r["state"], PHT.Cancelled, PHT.Operator, self.iris.central, reason))
        return steps

    def _new_executions(self, train: NamedNode, stops: Sequence[tuple[NamedNode | None, NamedNode]], round_: int,
                        used: Sequence[NamedNode]) -> ChangeSet:
        """Executions (state queued) for ``stops`` — (route stop or None for the aggregation, station)."""
        train_id = self.iris.local(train, "trains")
        quads: list[Quad] = []
        for stop, station in stops:
            label = f"r{round_}-agg" if stop is None else f"r{round_}-s{self._stop_index(stop)}"
            e = self.iris.execution(f"{train_id}.{label}")
            quads += [Quad(e, RDF_TYPE, PHT.Execution, G), Quad(e, PHT.ofTrain, train, G),
                      Quad(e, PHT.atStation, station, G), Quad(e, PHT.state, self.chart.initial["execution"], G),
                      Quad(e, PHT.round, Literal(str(round_), datatype=XSD.integer), G)]
            if stop is not None:
                quads.append(Quad(e, PHT.forStop, stop, G))
            quads += [Quad(e, PROV.used, u, G) for u in used]
        return ChangeSet(insert=quads)

    def _stop_index(self, stop: NamedNode) -> int:
        """The stop's index, as its route was read (:meth:`_route`) or else from the store."""
        if (index := self._stop_indices.get(stop)) is not None:
            return index
        (q,) = self.store.quads(stop, PHT.stopIndex, None, G)
        if not isinstance(q.object, Literal):  # the shapes make it an xsd:integer
            raise ValueError(f"{stop} has a pht:stopIndex that is not a literal: {q.object}")
        return int(q.object.value)

    # -- reading and writing helpers -------------------------------------------------------------------

    def _commit(self, steps: Sequence[_Step], extra: ChangeSet) -> None:
        try:
            self.store.apply_updates(self._fires(steps), extra=extra, require_match=True)
        except ConflictError:
            raise IllegalTransition("the train changed concurrently; read its state and try again") from None
        self._observe(steps)

    def _fires(self, steps: Sequence[_Step]) -> list[tuple[str, Mapping[str, Any]]]:
        """The ``fire_transition.rq`` updates of ``steps``, each with its new event."""
        time = _time(self.clock())
        return [(self._fire, {"graph": G, "resource": s.resource, "from": s.frm, "to": s.to, "role": s.role,
                              "agent": s.agent, "event": self.iris.event(), "time": time,
                              "reason": Literal(s.reason)}) for s in steps]

    def _observe(self, steps: Sequence[_Step]) -> None:
        """Tell the step observer (the metrics' counter) of committed steps."""
        if self.step_observer is not None:
            trains = f"{self.iris.base}trains/"
            for s in steps:
                self.step_observer("train" if s.resource.value.startswith(trains) else "execution",
                                   self.chart.token(s.to))

    def _check(self, kind: str, rid: str, state: NamedNode, target: NamedNode, role: NamedNode | None) -> None:
        if self.chart.allows(kind, state, target) is None:
            allowed = ", ".join(self.chart.next_states(kind, state)) or "none (it is finished)"
            raise IllegalTransition(f"{kind} {rid} is {self.chart.token(state)}; it cannot become "
                                    f"{self.chart.token(target)} (allowed next: {allowed})")
        if role is None:
            roles = ", ".join(sorted(r.value.rsplit('#', 1)[-1] for r in self.chart.allows(kind, state, target) or ()))
            raise Forbidden(f"{kind} {rid}: {self.chart.token(state)} -> {self.chart.token(target)} may only be "
                            f"fired by: {roles}")

    def _execution_row(self, execution: NamedNode, *, known: bool = False) -> dict[str, Any] | None:
        """The execution's context (``execution_context.rq``) with its and its train's current ``state`` and
        ``trainState`` (with ``known``, those this process last read or committed, if it knows both); None if
        there is no such execution.

        The engine never changes a context once the execution exists (it creates executions, trains, stations
        and definitions, never edits them), so it is cached, and forgotten when another writer changes what it
        was read from (:meth:`_forget_edited_contexts`); the two states are read for every step.
        """
        ctx = self._contexts.get(execution)
        if ctx is None:
            result = self.store.run_query("execution_context", execution=execution)
            names = [v.value for v in result.variables]
            rows = [{name: row[name] for name in names} for row in result]
            if not rows:
                return None
            ctx = rows[0]
            self._keep(self._contexts, execution, ctx, [v for v in ctx.values() if isinstance(v, NamedNode)])
        state, train_state = self._states(execution, ctx["train"], known=known)
        if state is None or train_state is None:
            return None
        return {**ctx, "state": state, "trainState": train_state}

    def _forget_edited_contexts(self, change: ChangeSet) -> None:
        """After any commit to the store: if it changed what a cached context or route was read from (an
        operator's edit through SPARQL Update or the Graph Store Protocol: the engine itself only adds new
        resources), forget both caches."""
        if not self._cached_nodes:
            return
        for q in change.delete | change.insert:
            if q.predicate in _CONTEXT_PREDICATES and q.subject in self._cached_nodes:
                self._forget_contexts()
                return

    def _forget_contexts(self) -> None:
        self._contexts.clear()
        self._routes.clear()
        self._stop_indices.clear()
        self._cached_nodes.clear()

    def _states(self, execution: NamedNode, train: NamedNode, *, known: bool = False
                ) -> tuple[NamedNode | None, NamedNode | None]:
        """The execution's and its train's current state, in one request (``execution_states.rq``); None for a
        resource with no state or more than one. With ``known``, the states this process last read or committed
        if it knows both: no request (a remote store's round trip of four a step), and possibly stale if another
        process wrote since, which the step's guard finds (:meth:`step`)."""
        if known and (state := self._known_states.get(execution)) and (train_state := self._known_states.get(train)):
            return state, train_state
        found: dict[NamedNode, list[Any]] = {execution: [], train: []}
        for row in self.store.run_query("execution_states", execution=execution, train=train):
            found.setdefault(row["resource"], []).append(row["state"])

        def one(states: list[Any]) -> NamedNode | None:
            # a state is an IRI (the shapes say so)
            return states[0] if len(states) == 1 and isinstance(states[0], NamedNode) else None
        states = one(found[execution]), one(found[train])
        self._keep_states({execution: states[0], train: states[1]})
        return states

    def _note_states(self, change: ChangeSet) -> None:
        """After any commit to the store: the central graph's states it wrote are the ones this process knows
        (what it deleted, it no longer knows). A station's graph may say what it likes: it decides nothing here."""
        def central_states(quads: frozenset[Quad]) -> list[Quad]:
            return [q for q in quads if q.predicate == PHT.state and q.graph_name == G]
        written: dict[Any, Any] = {q.subject: None for q in central_states(change.delete)}
        written.update({q.subject: q.object for q in central_states(change.insert)})
        if written:
            self._keep_states(written)

    def _keep_states(self, states: Mapping[Any, Any]) -> None:
        """Remember states read or committed (None: forget it), in a cache that restarts when full."""
        if len(self._known_states) >= _CONTEXTS_CACHED:
            self._known_states.clear()
        for resource, state in states.items():
            if state is None:
                self._known_states.pop(resource, None)
            else:
                self._known_states[resource] = state

    def _knows_states(self, execution: NamedNode) -> bool:
        """Whether this process knows the execution's context and its and its train's states (:meth:`_states`)."""
        ctx = self._contexts.get(execution)
        return ctx is not None and execution in self._known_states and ctx["train"] in self._known_states

    def _forget_states(self, execution: NamedNode) -> None:
        """Forget the execution's and its train's known states."""
        ctx = self._contexts.get(execution)
        self._known_states.pop(execution, None)
        if ctx is not None:
            self._known_states.pop(ctx["train"], None)

    def _train_row(self, train: NamedNode) -> list[Any]:
        return list(self.store.run_query("train_context", train=train))

    def _route(self, definition: NamedNode) -> list[tuple[NamedNode, NamedNode]]:
        """The definition's stops and their stations, in order (cached like the contexts of
        :meth:`_execution_row`: a definition is created with its route)."""
        route = self._routes.get(definition)
        if route is None:
            rows = list(self.store.run_query("route", definition=definition))
            route = [(r["stop"], r["station"]) for r in rows]
            if not route:
                return route
            self._keep(self._routes, definition, route, [node for pair in route for node in pair])
            self._stop_indices.update((r["stop"], _int(r["stopIndex"])) for r in rows)
        return list(route)

    def _keep(self, cache: dict[NamedNode, Any], key: NamedNode, value: Any, nodes: Sequence[Any]) -> None:
        """Cache ``value`` (read from ``key`` and ``nodes``) in one of the engine's two caches."""
        if len(cache) >= _CONTEXTS_CACHED:
            self._forget_contexts()
        cache[key] = value
        self._cached_nodes.add(key)
        self._cached_nodes.update(nodes)

    def _parameters(self, definition: NamedNode, definition_id: str) -> dict[str, tuple[NamedNode, NamedNode, bool]]:
        rows = list(self.store.run_query("definition_parameters", definition=definition))
        if not rows:
            raise NotFound(f"no train definition {definition_id!r}")
        return {r["name"].value: (r["parameter"], r["datatype"], r["required"].value == "true")
                for r in rows if r["parameter"] is not None}

    @staticmethod
    def _parameter_values(params: Mapping[str, tuple[NamedNode, NamedNode, bool]],
                          given: Mapping[str, str]) -> list[tuple[NamedNode, Literal]]:
        unknown = sorted(set(given) - set(params))
        if unknown:
            raise LifecycleError(f"unknown parameter(s) {', '.join(unknown)}; the definition has: "
                                 f"{', '.join(sorted(params)) or 'none'}")
        missing = sorted(n for n, (_, _, required) in params.items() if required and n not in given)
        if missing:
            raise LifecycleError(f"missing required parameter(s): {', '.join(missing)}")
        values = [(params[n][0], Literal(str(v), datatype=params[n][1])) for n, v in sorted(given.items())]
        for (name, _), (_, value) in zip(sorted(given.items()), values):
            if not is_well_typed(value):
                raise InvalidValue(f"parameter {name}: {value.value!r} is not a valid "
                                   f"{value.datatype.value.rsplit('#', 1)[-1]}")
        return values

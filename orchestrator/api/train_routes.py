"""Trains: submit, list, inspect, cancel, and their events.

The handlers are ``async`` although the engine blocks: lifecycle steps are serialised anyway (one lock, one
store writer), and running them on the event loop spares each request a hand-over to the thread pool.
Each call takes a few milliseconds; the SPARQL endpoint, whose queries may be long, runs in its own workers.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pyoxigraph import NamedNode, QuerySolution

from graph_store import DCTERMS, NO_FILTER

from ..lifecycle import Forbidden, NotFound
from ..principal import Principal, Role
from .deps import Services, page, text
from .models import (
    CancelIn,
    Created,
    DefinitionIn,
    EventOut,
    ExecutionOut,
    Page,
    Problem,
    StepOut,
    TrainIn,
    TrainOut,
)
from .registry_routes import definition_spec

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ANY_ROLE = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def train_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["trains"], responses=ERRORS)
    life, iris, chart = s.lifecycle, s.lifecycle.iris, s.lifecycle.chart

    def executions(train: NamedNode) -> list[ExecutionOut]:
        return [ExecutionOut(id=iris.local(r["execution"], "executions"), state=chart.token(r["state"]),
                             station=text(r["stationId"]) or "", round=int(r["round"].value),
                             stop=None if r["stopIndex"] is None else int(r["stopIndex"].value),
                             started=text(r["started"]), ended=text(r["ended"]), output=text(r["output"]),
                             output_sha256=text(r["outputSha256"]))
                for r in s.store.run_query("train_executions", train=train)]

    def visible_train(principal: Principal, train_id: str) -> tuple[NamedNode, QuerySolution, list[ExecutionOut]]:
        """The train if the caller may see it: its requester, operators, and stations it visits."""
        train = iris.train(train_id)
        rows = list(s.store.run_query("train_context", train=train))
        if not rows:
            raise NotFound(f"no train {train_id}")
        execs = executions(train)
        mine = principal.has(Role.RESEARCHER) and rows[0]["requester"] == iris.agent(principal.subject)
        visits = principal.station is not None and any(e.station == principal.station for e in execs)
        if not (principal.has(Role.OPERATOR) or mine or visits):
            raise Forbidden(f"train {train_id} belongs to another requester")
        return train, rows[0], execs

    @router.post("/trains", status_code=status.HTTP_201_CREATED, response_model=Created)
    async def submit_train(body: TrainIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> Created:
        """Submit a train of a registered definition, or of a whole definition registered with it in one write
        (nothing is written if either is refused; the same definition again is reused, other content under a
        registered id is 409); it is queued at once."""
        if isinstance(body.definition, DefinitionIn):
            new = s.registry.prepare_definition(principal, definition_spec(body.definition))
            train_id = life.submit(principal, definition_id=body.definition.id, parameters=body.parameters,
                                   new_definition=new)
        else:
            train_id = life.submit(principal, definition_id=body.definition, parameters=body.parameters)
        return Created(id=train_id, iri=iris.train(train_id).value)

    @router.get("/trains", response_model=Page[TrainOut])
    async def list_trains(principal: Annotated[Principal, Depends(s.require(Role.RESEARCHER, Role.OPERATOR))],
                    state: Annotated[str | None, Query(pattern=r"^[a-z-]{1,40}$")] = None,
                    limit: Limit = 50, offset: Offset = 0) -> dict[str, Any]:
        """Trains, newest first: a researcher sees their own, an operator all. Filter by ``state``."""
        requester = NO_FILTER if principal.has(Role.OPERATOR) else iris.agent(principal.subject)
        if state is not None and state not in chart.state_by_token:
            raise NotFound(f"unknown state {state!r}; known: {', '.join(sorted(chart.state_by_token))}")
        state_iri = chart.state(state) if state else NO_FILTER
        rows = [TrainOut(id=text(r["id"]) or "", iri=r["train"].value, state=chart.token(r["state"]),
                         requester=iris.local(r["requester"], "agents"), definition=text(r["definitionId"]) or "",
                         created=text(r["created"]) or "")
                for r in s.store.run_query("list_trains", onlyRequester=requester, onlyState=state_iri)]
        return page(rows, limit, offset)

    @router.get("/trains/{train_id}", response_model=TrainOut)
    async def get_train(train_id: str, principal: Annotated[Principal, Depends(s.require(*ANY_ROLE))]) -> TrainOut:
        """A train's state and its executions (route, rounds, outputs)."""
        train, row, execs = visible_train(principal, train_id)
        created = [q.object for q in s.store.quads(train, DCTERMS.created)]
        return TrainOut(id=train_id, iri=train.value, state=chart.token(row["state"]),
                        requester=iris.local(row["requester"], "agents"),
                        definition=iris.local(row["definition"], "definitions"),
                        created=(text(created[0]) or "") if created else "", executions=execs)

    @router.get("/trains/{train_id}/events", response_model=Page[EventOut])
    async def train_events(train_id: str, principal: Annotated[Principal, Depends(s.require(*ANY_ROLE))],
                     limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """A train's events, oldest first: every state change with who, when, from, to and why."""
        train, _, _ = visible_train(principal, train_id)
        rows = [EventOut(event=r["event"].value, type=(text(r["type"]) or "").rsplit("#", 1)[-1],
                         time=text(r["time"]) or "",
                         execution=None if r["execution"] is None else iris.local(r["execution"], "executions"),
                         from_state=None if r["from"] is None else chart.token(r["from"]),
                         to_state=None if r["to"] is None else chart.token(r["to"]),
                         agent=text(r["agent"]), role=None if r["role"] is None else r["role"].value.rsplit("#", 1)[-1],
                         reason=text(r["reason"]))
                for r in s.store.run_query("train_events", train=train)]
        return page(rows, limit, offset)

    @router.post("/trains/{train_id}/cancel", response_model=StepOut)
    async def cancel_train(train_id: str, body: CancelIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> StepOut:
        """Cancel a train (its requester or an operator); 409 if it already ended."""
        visible_train(principal, train_id)
        return StepOut(execution=train_id, state=life.cancel(principal, train_id=train_id, reason=body.reason))

    return router

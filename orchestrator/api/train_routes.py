"""Trains: submit, list, inspect, cancel, and their events.

The handlers are ``async`` although the engine blocks: lifecycle steps are serialised anyway (one lock, one
store writer), and running them on the event loop spares each request a hand-over to the thread pool.
Each call takes a few milliseconds; the SPARQL endpoint, whose queries may be long, runs in its own workers.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pyoxigraph import NamedNode

from client.train_request import RequestTerms, epsilon_lexical

from ..errors import NotFound
from ..page_tokens import FIRST, decode, encode
from ..principal import Principal, Role
from .deps import After, Limit, Offset, Services, page
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
ANY_ROLE = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def train_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["trains"], responses=ERRORS)
    life, iris, chart, reads = s.lifecycle, s.lifecycle.iris, s.lifecycle.chart, s.reads

    @router.post("/trains", status_code=status.HTTP_201_CREATED, response_model=Created)
    async def submit_train(body: TrainIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> Created:
        """Submit a train of a registered definition, or of a whole definition registered with it in one write
        (nothing is written if either is refused; the same definition again is reused, other content under a
        registered id is 409); it is queued at once. With ``signature`` the researcher's signed train request is
        verified and stored with the train: a key that is not the caller's (403), revoked or rotated out (403), an
        altered document (400), a request used already (409) or naming another requester (403) write nothing."""
        if isinstance(body.definition, DefinitionIn):
            new = s.registry.prepare_definition(principal, definition_spec(body.definition))
            train_id = life.submit(principal, definition_id=body.definition.id, parameters=body.parameters,
                                   new_definition=new, signature=body.signature, terms=_terms(body))
        else:
            train_id = life.submit(principal, definition_id=body.definition, parameters=body.parameters,
                                   signature=body.signature, terms=_terms(body))
        return Created(id=train_id, iri=iris.train(train_id).value)

    @router.get("/trains", response_model=Page[TrainOut])
    async def list_trains(principal: Annotated[Principal, Depends(s.require(Role.RESEARCHER, Role.OPERATOR))],
                    state: Annotated[str | None, Query(pattern=r"^[a-z-]{1,40}$")] = None,
                    limit: Limit = 50, after: After = None) -> dict[str, Any]:
        """Trains, newest first (in the order they were submitted, then by id): a researcher sees their own, an
        operator all. Filter by ``state``. Pages are keyset pages: pass the answer's ``next`` as ``after`` for
        the page that follows; ``next`` is null on the last page only: an operator's page may hold fewer trains
        than ``limit``, even none, with more below (a rare ``state``), so follow ``next`` until it is null.
        ``total`` counts the whole list."""
        if state is not None and state not in chart.state_by_token:
            raise NotFound(f"unknown state {state!r}; known: {', '.join(sorted(chart.state_by_token))}")
        found = reads.trains(principal, chart.state(state) if state else None,
                             after=FIRST if after is None else decode(after), limit=limit)
        rows = [TrainOut(id=t.id, iri=t.iri, state=t.state, requester=t.requester, definition=t.definition,
                         created=t.created, signed=signed_by is not None, signed_by=signed_by)
                for t in found.items
                for signed_by in [reads.signed_by(NamedNode(t.iri))]]
        return {"items": rows, "total": found.total, "limit": limit, "offset": 0,
                "next": None if found.next is None else encode(found.next)}

    @router.get("/trains/{train_id}", response_model=TrainOut)
    async def get_train(train_id: str, principal: Annotated[Principal, Depends(s.require(*ANY_ROLE))]) -> TrainOut:
        """A train's state and its executions (route, rounds, outputs)."""
        return train_out(s, principal, train_id)

    @router.get("/trains/{train_id}/events", response_model=Page[EventOut])
    async def train_events(train_id: str, principal: Annotated[Principal, Depends(s.require(*ANY_ROLE))],
                     limit: Limit = 100, offset: Offset = 0) -> dict[str, Any]:
        """A train's events, oldest first: every state change with who, when, from, to and why."""
        train = reads.train(principal, train_id)
        return page(event_outs(s, train.iri), limit, offset)

    @router.post("/trains/{train_id}/cancel", response_model=StepOut)
    async def cancel_train(train_id: str, body: CancelIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> StepOut:
        """Cancel a train (its requester or an operator); 409 if it already ended."""
        reads.train(principal, train_id)  # 404 or 403 before the engine says more
        return StepOut(execution=train_id, state=life.cancel(principal, train_id=train_id, reason=body.reason))

    return router


def train_out(s: Services, principal: Principal, train_id: str) -> TrainOut:
    """``GET /trains/{id}``'s answer: the train if the caller may read it (NotFound, Forbidden otherwise); the web
    view's RO-Crate download reads the same."""
    train, chart = s.reads.train(principal, train_id), s.lifecycle.chart
    terms = s.reads.declared_terms(train.iri)
    return TrainOut(id=train_id, iri=train.iri.value, state=chart.token(train.state), requester=train.requester,
                    definition=s.lifecycle.iris.local(train.definition, "definitions"), created=train.created,
                    signed=train.signed_by is not None, signed_by=train.signed_by, purpose=terms.purpose,
                    project=terms.project, dp_mechanism=terms.dp_mechanism, epsilon=terms.epsilon,
                    executions=[ExecutionOut(id=e.id, state=e.state, station=e.station, round=e.round, stop=e.stop,
                                             started=e.started, ended=e.ended, output=e.output,
                                             output_sha256=e.output_sha256)
                                for e in train.executions])


def event_outs(s: Services, train: NamedNode) -> list[EventOut]:
    """``GET /trains/{id}/events``'s rows, oldest first (the caller's right to read the train checked before)."""
    return [EventOut(event=e.iri, type=e.type, time=e.time, execution=e.execution, from_state=e.from_state,
                     to_state=e.to_state, agent=e.agent, role=e.role, reason=e.reason, source=e.source)
            for e in s.reads.events(train)]


def _terms(body: TrainIn) -> RequestTerms:
    """The purpose, project and differential-privacy terms the train file declares (signed with the request)."""
    return RequestTerms(purpose=body.purpose, project=body.project, dp_mechanism=body.dp_mechanism,
                        epsilon=epsilon_lexical(body.epsilon) if body.epsilon is not None else None)

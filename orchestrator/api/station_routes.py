"""The calls a station makes: hold its lease, fetch its work, report each step, hand over outputs.

``async`` handlers on purpose: see ``train_routes``. A step is queued and written with the steps of other
clients that arrive meanwhile, off the event loop (``step_batches.py``).
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status

from ..errors import NotFound
from ..leases import Lease, StationLeases
from ..lifecycle import OutputRecord, StepRequest
from ..principal import Principal, Role
from ..step_batches import StepBatches
from .deps import Services
from .models import LeaseIn, LeaseOut, OutputIn, Problem, StepIn, StepOut, WorkItem

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}
STATION_SIDE = (Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def station_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["station"], responses=ERRORS)
    life, iris, reads = s.lifecycle, s.lifecycle.iris, s.reads
    leases = StationLeases(s.store, iris, clock=life.clock)
    steps = StepBatches(life)  # off the event loop, grouped with the steps of other clients

    def _lease_out(lease: Lease) -> LeaseOut:
        return LeaseOut(station=lease.station, holder=lease.holder,
                        expires=lease.expires.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        held=lease.held_at(life.clock()))

    @router.put("/stations/{station_id}/lease", response_model=LeaseOut)
    async def take_lease(station_id: str, body: LeaseIn,
                         principal: Annotated[Principal, Depends(s.require(*STATION_SIDE))]) -> LeaseOut:
        """Take the station's lease, or renew it (same ``holder``): one running agent per station. 409 names the
        agent that holds it and until when; only the station's own token may take it (403)."""
        return _lease_out(leases.take(principal, station_id, holder=body.holder, period_s=body.period_s))

    @router.delete("/stations/{station_id}/lease", status_code=status.HTTP_204_NO_CONTENT,
                   response_class=Response)
    async def release_lease(station_id: str, holder: Annotated[str, Query(min_length=1, max_length=200)],
                            principal: Annotated[Principal, Depends(s.require(*STATION_SIDE))]) -> Response:
        """Release the lease ``holder`` holds (an agent stopping cleanly), so that another may start at once."""
        leases.release(principal, station_id, holder=holder)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.get("/stations/{station_id}/lease", response_model=LeaseOut)
    async def read_lease(station_id: str,
                         principal: Annotated[Principal, Depends(s.require(*STATION_SIDE))]) -> LeaseOut:
        """Which agent holds (or last held) the station's lease, and until when; 404 if none ever took it."""
        lease = leases.current(principal, station_id)
        if lease is None:
            raise NotFound(f"no agent has taken the lease of station {station_id!r} yet")
        return _lease_out(lease)

    @router.get("/stations/{station_id}/work", response_model=list[WorkItem])
    async def station_work(station_id: str,
                     principal: Annotated[Principal, Depends(s.require(*STATION_SIDE))]) -> list[WorkItem]:
        """The station's executions that are not finished, oldest train first (poll this, outbound)."""
        return reads.station_work(principal, station_id)

    @router.post("/executions/{execution_id}/steps", response_model=StepOut)
    async def step_execution(execution_id: str, body: StepIn,
                       principal: Annotated[Principal, Depends(s.require(*STATION_SIDE))]) -> StepOut:
        """Move an execution to the next state of the chart; 409 says which state it is in."""
        output = None if body.output is None else OutputRecord(
            body.output.sha256, body.output.byte_size, body.output.title,
            [(c.name, c.passed, c.detail) for c in body.output.checks], body.output.record)
        state = await steps.step(StepRequest(principal, execution_id, body.to, body.reason, body.used, output))
        return StepOut(execution=execution_id, state=state)

    @router.post("/executions/{execution_id}/outputs", status_code=status.HTTP_201_CREATED, response_model=StepOut)
    async def hand_over_output(execution_id: str, body: OutputIn,
                         principal: Annotated[Principal, Depends(s.require(Role.STATION, Role.OPERATOR))]) -> StepOut:
        """Record an output (SHA-256 digest and size) before it is reviewed. The station agent never does: it sends
        its output with the release step, so the central service learns nothing about an unreleased output."""
        life.add_output(principal, execution_id=execution_id, sha256=body.sha256, byte_size=body.byte_size,
                        title=body.title, checks=[(c.name, c.passed, c.detail) for c in body.checks])
        return StepOut(execution=execution_id, state="output-recorded")

    return router

"""The MPU's HTTP interface for the station agent (loopback): ``create_mpu_app(mpu)``.

======================  ============================================================================================
``POST /events``        a JSON list of events (``docs/mpu.md``): 202 with what was queued and dropped; 422 for a
                        malformed event (Pydantic's or the shapes' reason); 507 if the disk is full, 503 if the
                        outbox cannot be written (nothing of the call was stored; the station keeps running)
``POST /description``   the station's and its datasets' description (202; replaces the previous one)
``POST /policy/reload`` load the policy file now (200), or 422 with why (the previous policy stays active)
``GET /status``         active policy, outbox counts, events the central service refused and why
``GET /metrics``        Prometheus metrics of the station and the MPU, as far as the filter policy lets them leave;
                        needs ``Authorization: Bearer <metrics token>`` (``PHT_MPU_METRICS_TOKEN``; unset: 401)
``GET /health``         liveness
======================  ============================================================================================

The MPU listens on loopback for its own station; ``MpuSettings.ingest_token`` makes the ``POST`` calls need
``Authorization: Bearer <token>`` where the loopback is shared. ``/metrics`` has a token of its own
(``MpuSettings.metrics_token``): whoever scrapes the station's metrics (often a Prometheus outside the station)
must not be able to post events, and the agent need not be able to read metrics.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ._events import Event, StationDescription
from ._mpu import IngestResult, InvalidEvents, Mpu
from ._outbox import OutboxError, OutboxFull
from ._settings import MpuSettings

__all__ = ["create_mpu_app"]


class Accepted(BaseModel):
    """What a post did."""

    events: int = Field(description="events accepted (valid)")
    queued: int = Field(description="newly queued for the central service")
    duplicates: int = Field(description="already queued or delivered before (posting again is a no-op)")
    dropped: list[dict[str, str]] = Field(description="events of which nothing leaves, with the policy's reason")
    triples_leaving: int
    triples_dropped: int


def _accepted(r: IngestResult) -> Accepted:
    return Accepted(events=r.events, queued=r.queued, duplicates=r.duplicates,
                    dropped=[{"event": k, "reason": why} for k, why in r.dropped],
                    triples_leaving=r.triples_leaving, triples_dropped=r.triples_dropped)


def create_mpu_app(mpu: Mpu | MpuSettings, *, background: bool = True) -> FastAPI:
    """The MPU app; ``background`` starts the pusher and sampler threads with the app (off in some tests)."""
    the_mpu = mpu if isinstance(mpu, Mpu) else Mpu(mpu)
    owned = not isinstance(mpu, Mpu)  # made here from settings: nobody else can close its HTTP client and outbox
    token = the_mpu.settings.ingest_token

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background:
            the_mpu.start()
        yield
        if owned:
            the_mpu.close()
        else:
            the_mpu.stop()

    app = FastAPI(title="PHT-KG station MPU", version="0.1.0", lifespan=lifespan,
                  description="The station's metadata processing unit: events in, filtered metadata to the "
                              "central graph. See docs/mpu.md.")
    app.state.mpu = the_mpu

    def authorised(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "this MPU needs Authorization: Bearer <its ingest token>",
                                headers={"WWW-Authenticate": "Bearer"})

    metrics_token = the_mpu.settings.metrics_token

    def scraper(authorization: Annotated[str | None, Header()] = None) -> None:
        if metrics_token is None:
            raise HTTPException(401, "this MPU's metrics are off: set PHT_MPU_METRICS_TOKEN and send it as "
                                     "Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), metrics_token.encode()):
            raise HTTPException(401, "this MPU's metrics need Authorization: Bearer <its metrics token>",
                                headers={"WWW-Authenticate": "Bearer"})

    refusals: dict[int | str, dict[str, Any]] = {
        401: {"description": "missing or wrong ingest token"},
        413: {"description": "too many events in one post"},
        422: {"description": "a malformed event (nothing of the post was stored)"},
        503: {"description": "the outbox cannot be written (nothing was stored)"},
        507: {"description": "the disk or the outbox quota is full (nothing was stored)"}}

    @app.post("/events", status_code=202, response_model=Accepted, responses=refusals,
              dependencies=[Depends(authorised)])
    async def post_events(events: list[Event]) -> Accepted:
        """Validate, filter and queue events for the central service (all or nothing)."""
        if len(events) > the_mpu.settings.max_events_per_post:
            raise HTTPException(413, f"at most {the_mpu.settings.max_events_per_post} events per post, "
                                     f"got {len(events)}")
        return _accepted(await run_in_threadpool(the_mpu.ingest, events))

    @app.post("/description", status_code=202, response_model=Accepted, responses=refusals,
              dependencies=[Depends(authorised)])
    async def post_description(description: StationDescription) -> Accepted:
        """Publish the station's and its datasets' description (replaces what was published before)."""
        return _accepted(await run_in_threadpool(the_mpu.describe, description))

    @app.post("/policy/reload", dependencies=[Depends(authorised)], responses={422: {"description": "invalid"}})
    async def reload_policy() -> dict[str, Any]:
        """Load the policy file now; an invalid file is refused and the active policy stays."""
        await run_in_threadpool(the_mpu.reload_policy, force=True)
        if the_mpu.policy_error is not None:
            raise HTTPException(422, f"{the_mpu.policy_error}; the previous policy stays active")
        return {"policy": the_mpu.policy.source, "rules": len(the_mpu.policy.rules), "sha256": the_mpu.policy.digest}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        """The active policy (and a refused new one), the outbox, and what the central service refused."""
        return await run_in_threadpool(the_mpu.status)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(scraper)])
    def metrics() -> Response:
        return Response(generate_latest(the_mpu.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = jsonable_encoder(exc.errors())
        if request.url.path == "/events":
            the_mpu.metrics.events_invalid.inc()
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the request"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return JSONResponse({"detail": f"invalid request: {where}: {first.get('msg', 'not valid')}{more}; "
                                       "nothing was stored", "errors": errors}, status_code=422)

    @app.exception_handler(InvalidEvents)
    async def invalid(_: Request, exc: InvalidEvents) -> JSONResponse:
        return JSONResponse({"detail": f"{exc}; nothing was stored", "report": exc.report.to_dict()},
                            status_code=422)

    @app.exception_handler(OutboxError)
    async def outbox_error(_: Request, exc: OutboxError) -> JSONResponse:
        return JSONResponse({"detail": f"{exc}; nothing of this post was stored, post it again later"},
                            status_code=507 if isinstance(exc, OutboxFull) else 503)

    return app

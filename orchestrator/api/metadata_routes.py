"""The route a station's MPU pushes its metadata to: ``POST /api/stations/{station_id}/metadata``.

Only the station itself (``station`` role, the token's station equal to the path's) may push, and only a batch
signed with one of its registered keys; ``orchestrator.metadata`` checks and writes it. Thin on purpose.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from graph_store import (
    BATCH_HEADER,
    BATCH_MEDIA_TYPE,
    CREATED_HEADER,
    KEY_ID_HEADER,
    SEQUENCE_HEADER,
    SIGNATURE_HEADER,
    ValidationFailed,
)

from ..errors import Forbidden, LifecycleError
from ..metadata import BatchReplayed, MetadataIntake, MetadataRefused
from ..principal import Principal, Role
from ..sparql_http import HttpError, read_body
from .deps import Services
from .models import Problem


class MetadataOut(BaseModel):
    batch: str
    events: int
    described: int
    triples: int
    graph: str


class Refusal(BaseModel):
    detail: str
    refused: list[dict[str, str]] = []
    report: dict[str, Any] | None = None


class Replayed(BaseModel):
    detail: str
    already_accepted: bool
    """True if this is the very batch last accepted (everything in it is written): count it as delivered."""
    last_sequence: int
    """The sequence of the last batch accepted from the station: sign the next one with a greater one."""


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "missing signature headers, or not N-Triples"},
    401: {"model": Problem, "description": "no valid token, or the batch's signature does not verify"},
    403: {"model": Problem, "description": "not this station's token, or the station has no key"},
    404: {"model": Problem, "description": "no such station"},
    409: {"model": Replayed, "description": "a replayed or older batch: its sequence is not greater than the last "
                                            "accepted one's, or its id is that batch's"},
    413: {"model": Problem}, 415: {"model": Problem},
    422: {"model": Refusal, "description": "triples that are not this station's to write, or the shapes refuse"},
    503: {"model": Problem}}

BODY = {"parameters": [{"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
                       for h in (BATCH_HEADER, SEQUENCE_HEADER, CREATED_HEADER, SIGNATURE_HEADER, KEY_ID_HEADER)]}
"""The signature headers, documented. The body (N-Triples) is read raw, like the Graph Store Protocol's, and
described in the operation's text rather than as a requestBody (OpenAPI tools cannot generate N-Triples)."""


def metadata_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["station"], responses=ERRORS)
    intake = MetadataIntake(s.store, s.lifecycle.iris)

    @router.post("/stations/{station_id}/metadata", response_model=MetadataOut, openapi_extra=BODY)
    async def push_metadata(station_id: str, request: Request,
                            principal: Annotated[Principal, Depends(s.require(Role.STATION))]) -> Any:
        """Write a signed batch of the station's metadata to its own graph, validated and atomic.

        Body: the batch as ``application/n-triples`` (the station's events and description); headers
        ``X-PHT-Batch`` (batch id), ``X-PHT-Sequence`` (greater than the last accepted batch's),
        ``X-PHT-Created`` (when it was signed), ``X-PHT-Signature`` (base64 Ed25519 signature) and
        ``X-PHT-Key-Id``; see docs/mpu.md for what is signed.
        """
        metrics = getattr(request.app.state, "metrics", None)
        station_id_label = principal.station or "?"  # the token's station: labels stay bounded
        try:
            if principal.station != station_id:
                raise Forbidden(f"a token of station {principal.station!r} cannot push metadata of {station_id!r}")
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != BATCH_MEDIA_TYPE:
                raise HttpError(415, f"send the batch as {BATCH_MEDIA_TYPE}, not {kind or 'a body without type'}")
            body = await read_body(request, s.settings.max_body_bytes)
            done = await run_in_threadpool(
                intake.accept, station_id=station_id, batch_id=request.headers.get(BATCH_HEADER, ""),
                signature=request.headers.get(SIGNATURE_HEADER), key_id=request.headers.get(KEY_ID_HEADER),
                body=body, sequence=request.headers.get(SEQUENCE_HEADER), created=request.headers.get(CREATED_HEADER))
        except HttpError as e:
            return _refusal(metrics, station_id_label, e.status, {"detail": e.detail})
        except MetadataRefused as e:
            report = getattr(e, "report", None)
            return _refusal(metrics, station_id_label, 422, {
                "detail": str(e), "refused": [{"subject": k, "reason": v} for k, v in sorted(e.refused.items())],
                **({"report": report.to_dict()} if report is not None else {})})
        except BatchReplayed as e:
            return _refusal(metrics, station_id_label, 409, {"detail": str(e), "already_accepted": e.already_accepted,
                                                             "last_sequence": e.last_sequence})
        except ValidationFailed as e:  # pragma: no cover - MetadataIntake turns it into MetadataRefused
            return _refusal(metrics, station_id_label, 422, {"detail": str(e), "report": e.report.to_dict()})
        except LifecycleError as e:
            headers = {"WWW-Authenticate": 'PHT-Signature realm="station metadata"'} if e.status == 401 else None
            return _refusal(metrics, station_id_label, e.status, {"detail": str(e)}, headers)
        if metrics is not None:
            metrics.metadata_pushed(station_id_label, done.events, done.triples)
        return MetadataOut(batch=done.batch, events=done.events, described=done.described, triples=done.triples,
                           graph=done.graph)

    return router


def _refusal(metrics: Any, station_id: str, status: int, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> JSONResponse:
    if metrics is not None:
        metrics.metadata_refused(station_id, status)
    return JSONResponse(body, status_code=status, headers=headers)

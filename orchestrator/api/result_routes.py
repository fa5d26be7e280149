"""Results: a train's requester asks for a link to a released output and reads it through the link.

``GET /api/trains/{id}/result`` answers the requester (or an operator) with a link that reads that one object
for ``PHT_RESULT_LINK_TTL_S`` seconds; ``GET /api/results/{sha256}`` serves a valid link's object from the
object store, whose credentials never leave the service (``orchestrator/results.py``). The link is the
credential of the second route, as a presigned URL would be, so a download needs no bearer token.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ..principal import Principal, Role
from ..results import Link, ResultAccess
from .deps import Services
from .models import Problem

ANY_ROLE = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)
DIGEST = r"^[0-9a-f]{64}$"


class ResultLinkOut(BaseModel):
    train: str
    execution: str = Field(description="The execution that released the output")
    sha256: str = Field(description="SHA-256 of the released output, an age ciphertext of the packed output sealed to "
                                    "its readers: verify the download against it, then open it with your key")
    url: str = Field(description="GET it (no token needed) for the released output, until it expires")
    expires: datetime = Field(description="When the link stops reading the object (UTC)")


def result_router(s: Services) -> APIRouter:
    access = ResultAccess.from_settings(s.settings)
    router = APIRouter(tags=["results"])

    @router.get("/trains/{train_id}/result", response_model=ResultLinkOut, responses={
        status: {"model": Problem} for status in (401, 403, 404, 409, 422, 503)})
    async def result_link(train_id: str, request: Request,
                          principal: Annotated[Principal, Depends(s.require(*ANY_ROLE))],
                          execution: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,200}$", description=(
                              "An execution of the train whose released output is wanted (default: the finished "
                              "train's result, its last execution's output)"))] = None) -> ResultLinkOut:
        """A link that reads one released output of your train (its requester's and operators' only; 409 until
        it is released), valid for a few minutes."""
        output = s.reads.released_output(principal, train_id, execution)
        link = access.link(output.sha256)
        url = request.url_for("result_content", sha256=link.sha256).include_query_params(
            expires=link.expires, signature=link.signature)
        return ResultLinkOut(train=train_id, execution=output.execution, sha256=output.sha256, url=str(url),
                             expires=datetime.fromtimestamp(link.expires, UTC))

    ok: dict[int | str, dict[str, Any]] = {200: {"description": "The released output: an age ciphertext "
                                                                "(age-encryption.org/v1) of the packed output",
                                                 "content": {"application/octet-stream": {}}}}
    refusals: dict[int | str, dict[str, Any]] = {status: {"model": Problem} for status in (403, 404, 422, 503)}

    @router.get("/results/{sha256}", name="result_content", response_class=StreamingResponse,
                responses={**ok, **refusals})
    def result_content(sha256: Annotated[str, Path(pattern=DIGEST)],
                       expires: Annotated[int, Query(ge=0, le=2**40)],
                       signature: Annotated[str, Query(pattern=DIGEST)]) -> StreamingResponse:
        """The object a result link names, while the link is valid (403 for a link changed in any way or
        expired). Runs in the thread pool: reading the store blocks."""
        found = access.open(Link(sha256, expires, signature))
        headers = {"Cache-Control": "no-store", "X-Content-SHA256": sha256}
        if found.size is not None:
            headers["Content-Length"] = str(found.size)
        return StreamingResponse(found.chunks, media_type="application/octet-stream", headers=headers)

    return router

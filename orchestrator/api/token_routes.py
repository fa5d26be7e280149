"""Tokens: an operator revokes them (one by id, or a station's issued before a cut-off); a station's agent renews
its own before it expires (station tokens are short-lived, ``Settings.station_token_ttl_s``).

``async`` handlers on purpose: see ``train_routes``.
"""

from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import AwareDatetime, BaseModel, Field

from ..auth import issue_token
from ..errors import IllegalTransition, InvalidValue
from ..principal import Principal, Role
from ..revocations import Revocations
from .deps import Services
from .models import Identifier, Problem, Strict

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}


EPOCH = datetime(1970, 1, 2, tzinfo=timezone.utc)
"""No token was issued before (a day late, so that any time zone's offset stays in range)."""


class RevocationIn(Strict):
    token_id: str | None = Field(default=None, min_length=1, max_length=200,
                                 description="the id (jti claim) of the one token to revoke")
    station: Identifier | None = Field(default=None, description=(
        "revoke every token naming this station (station and station-admin tokens) issued before issued_before"))
    issued_before: AwareDatetime | None = Field(default=None, description=(
        "with station: the cut-off (default now), between 1970 and now"))
    reason: str | None = Field(default=None, max_length=500, description="why, for people")


class RevocationOut(BaseModel):
    iri: str
    revoked_at: str
    token_id: str | None
    station: str | None
    issued_before: str | None


class TokenOut(BaseModel):
    token: str = Field(description="the new bearer token; use it instead of the old one")
    expires_at: int = Field(description="when it expires (Unix seconds); renew it before, e.g. at half its life")


def _text(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def token_router(s: Services, revocations: Revocations) -> APIRouter:
    router = APIRouter(tags=["tokens"], responses=ERRORS)

    @router.post("/tokens/revocations", response_model=RevocationOut, status_code=status.HTTP_201_CREATED)
    async def revoke(body: RevocationIn,
                     principal: Annotated[Principal, Depends(s.require(Role.OPERATOR))]) -> RevocationOut:
        """Revoke one token (``token_id``) or every token of a station issued before a cut-off (``station``,
        ``issued_before``, default now: what to do when a station is compromised; then issue its agent a new
        token). Recorded in the graph as a ``pht:TokenRevocation``; every instance of the service refuses those
        tokens within ``PHT_REVOCATION_CACHE_S`` seconds (at most 5)."""
        if body.issued_before is not None and not EPOCH <= body.issued_before <= datetime.now(timezone.utc):
            raise InvalidValue("issued_before must lie between 1970 and now")
        done = revocations.revoke(principal, token_id=body.token_id, station=body.station,
                                  issued_before=body.issued_before, reason=body.reason)
        return RevocationOut(iri=done.iri, revoked_at=_text(done.revoked_at) or "", token_id=done.token_id,
                             station=done.station, issued_before=_text(done.issued_before))

    @router.post("/tokens/renew", response_model=TokenOut)
    async def renew(principal: Annotated[Principal, Depends(s.require(Role.STATION))]) -> TokenOut:
        """A new station token for the caller's station, valid for ``PHT_STATION_TOKEN_TTL_S`` seconds: a running
        agent renews its token before it expires. Only a valid, unrevoked station token renews (a revoked or
        expired one is refused with 401), and the new token has the station role only."""
        settings = s.settings
        if not settings.jwt_secret:
            raise IllegalTransition("this service issues no tokens (PHT_JWT_SECRET is not set); ask the identity "
                                    "provider for a new one")
        token = issue_token(settings.jwt_secret, subject=principal.subject, roles=[Role.STATION],
                            station=principal.station, ttl_s=settings.station_token_ttl_s,
                            issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        return TokenOut(token=token, expires_at=int(datetime.now(timezone.utc).timestamp())
                        + settings.station_token_ttl_s)

    return router

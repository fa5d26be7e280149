"""What the central service tells every signed-in caller about the deployment, so that clients need no settings
of their own beyond its URL and a token. It names no object store and no credential: results are fetched
through links the service hands a train's requester (``result_routes.py``)."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..principal import Principal, Role
from .deps import Services
from .models import Problem


class ServiceSettingsOut(BaseModel):
    results_served: bool = Field(description=(
        "Whether this service hands out results (GET /api/trains/{id}/result; its operator set "
        "PHT_RESULTS_STORE_URL)"))
    result_link_ttl_s: float = Field(description="How many seconds a result link reads its object")


def service_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["service"], responses={401: {"model": Problem}, 403: {"model": Problem}})

    @router.get("/settings", response_model=ServiceSettingsOut)
    async def service_settings(_: Annotated[Principal, Depends(s.require(
            Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR))]) -> ServiceSettingsOut:
        """What clients of this deployment need to know: whether and for how long it hands out result links."""
        return ServiceSettingsOut(results_served=s.settings.results_store_url is not None,
                                  result_link_ttl_s=s.settings.result_link_ttl_s)

    return router

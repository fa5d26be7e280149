"""What the central service tells every signed-in caller about the deployment, so that clients need no settings
of their own beyond its URL and a token: today, where researchers fetch released results."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ..principal import Principal, Role
from .deps import Services
from .models import Problem


class ServiceSettingsOut(BaseModel):
    researcher_objects_url: str | None = Field(description=(
        "The object store researchers fetch released results from by their SHA-256 (file:///folder or an S3 URL "
        "with read-only credentials, as the operator set PHT_RESEARCHER_OBJECTS_URL); null if not set"))


def service_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["service"], responses={401: {"model": Problem}, 403: {"model": Problem}})

    @router.get("/settings", response_model=ServiceSettingsOut)
    async def service_settings(_: Annotated[Principal, Depends(s.require(
            Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR))]) -> ServiceSettingsOut:
        """What clients of this deployment need to know: where results are fetched (``pht train results``)."""
        return ServiceSettingsOut(researcher_objects_url=s.settings.researcher_objects_url)

    return router

"""Stations, datasets and train definitions: register (validated writes) and list (named queries)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from ..principal import Principal, Role
from ..registry import DatasetSpec, DefinitionSpec, ParameterSpec, StationSpec
from .deps import Services, page, text
from .models import (
    Created,
    DatasetIn,
    DatasetOut,
    DefinitionIn,
    DefinitionOut,
    Page,
    Problem,
    StationIn,
    StationOut,
)

ERRORS = {400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem}, 409: {"model": Problem},
          422: {"model": Problem}}
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ANY = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def registry_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["registry"], responses=ERRORS)

    @router.post("/stations", status_code=status.HTTP_201_CREATED, response_model=Created)
    def register_station(body: StationIn,
                         principal: Annotated[Principal, Depends(s.require(Role.OPERATOR))]) -> Created:
        """Register a station (operator)."""
        iri = s.registry.station(principal, StationSpec(body.id, body.title, body.owner, body.public_keys,
                                                        body.runtimes))
        return Created(id=body.id, iri=iri.value)

    @router.get("/stations", response_model=Page[StationOut])
    def list_stations(principal: Annotated[Principal, Depends(s.require(*ANY))], limit: Limit = 50,
                      offset: Offset = 0) -> dict:  # type: ignore[type-arg]
        """Registered stations, by identifier."""
        rows = [StationOut(id=text(r["id"]) or "", title=text(r["title"]), owner=text(r["owner"]),
                           runtimes=sorted((text(r["runtimes"]) or "").split()))
                for r in s.store.run_query("list_stations")]  # type: ignore[union-attr]
        return page(rows, limit, offset)

    @router.post("/datasets", status_code=status.HTTP_201_CREATED, response_model=Created)
    def register_dataset(body: DatasetIn, principal: Annotated[Principal, Depends(
            s.require(Role.OPERATOR, Role.STATION_ADMIN))]) -> Created:
        """Register a dataset held by a station (operator, or the station's admin)."""
        iri = s.registry.dataset(principal, DatasetSpec(body.id, body.title, body.station))
        return Created(id=body.id, iri=iri.value)

    @router.get("/datasets", response_model=Page[DatasetOut])
    def list_datasets(principal: Annotated[Principal, Depends(s.require(*ANY))], limit: Limit = 50,
                      offset: Offset = 0) -> dict:  # type: ignore[type-arg]
        """Registered datasets and the stations that hold them."""
        rows = [DatasetOut(id=text(r["id"]) or "", title=text(r["title"]), station=text(r["stationId"]) or "")
                for r in s.store.run_query("list_datasets")]  # type: ignore[union-attr]
        return page(rows, limit, offset)

    @router.post("/definitions", status_code=status.HTTP_201_CREATED, response_model=Created)
    def register_definition(body: DefinitionIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> Created:
        """Register a train definition; 422 with the SHACL report if it is not valid."""
        spec = DefinitionSpec(body.id, body.title, body.image_name, body.image_digest, body.mode, body.route,
                              body.rounds, body.entrypoint, body.aggregator,
                              [ParameterSpec(p.name, p.datatype, p.required, p.default) for p in body.parameters])
        iri = s.registry.definition(principal, spec)
        return Created(id=body.id, iri=iri.value)

    @router.get("/definitions", response_model=Page[DefinitionOut])
    def list_definitions(principal: Annotated[Principal, Depends(s.require(*ANY))], limit: Limit = 50,
                         offset: Offset = 0) -> dict:  # type: ignore[type-arg]
        """Registered train definitions."""
        rows = [DefinitionOut(id=text(r["id"]) or "", title=text(r["title"]),
                              mode=(text(r["mode"]) or "").rsplit("#", 1)[-1].lower(),
                              rounds=int(text(r["rounds"]) or 0),
                              image_digest=text(r["imageDigest"]) or "", stops=int(text(r["stops"]) or 0))
                for r in s.store.run_query("list_definitions")]  # type: ignore[union-attr]
        return page(rows, limit, offset)

    return router

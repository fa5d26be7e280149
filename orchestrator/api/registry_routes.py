"""Stations, datasets and train definitions: register (validated writes) and list (named queries)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status
from fastapi.responses import JSONResponse

from ..errors import NotFound
from ..page_tokens import FIRST, decode, encode
from ..principal import Principal, Role
from ..reads import local_name, text
from ..registry import DatasetSpec, DataspaceInputSpec, DefinitionSpec, ParameterSpec, StationSpec
from .deps import After, Limit, Offset, Services, page
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
from .schemas import SCHEMAS, json_schema

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    409: {"model": Problem}, 422: {"model": Problem}}
ANY = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def definition_spec(body: DefinitionIn) -> DefinitionSpec:
    """The registry's spec of a definition the API received (here or inline in a submitted train)."""
    return DefinitionSpec(body.id, body.title, body.image_name, body.image_digest, body.mode, body.route,
                          body.rounds, body.entrypoint, body.aggregator,
                          [ParameterSpec(p.name, p.datatype, p.required, p.default) for p in body.parameters],
                          [DataspaceInputSpec(i.name, i.connector, i.dataset) for i in body.dataspace_inputs],
                          body.inputs)


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
                      offset: Offset = 0) -> dict[str, Any]:
        """Registered stations, by identifier."""
        rows = [StationOut(id=r.id, title=r.title, owner=r.owner, runtimes=r.runtimes) for r in s.reads.stations()]
        return page(rows, limit, offset)

    @router.post("/datasets", status_code=status.HTTP_201_CREATED, response_model=Created)
    def register_dataset(body: DatasetIn, principal: Annotated[Principal, Depends(
            s.require(Role.OPERATOR, Role.STATION_ADMIN))]) -> Created:
        """Register a dataset held by a station (operator, or the station's admin)."""
        iri = s.registry.dataset(principal, DatasetSpec(body.id, body.title, body.station))
        return Created(id=body.id, iri=iri.value)

    @router.get("/datasets", response_model=Page[DatasetOut])
    def list_datasets(principal: Annotated[Principal, Depends(s.require(*ANY))], limit: Limit = 50,
                      offset: Offset = 0) -> dict[str, Any]:
        """Registered datasets and the stations that hold them."""
        rows = [DatasetOut(id=r.id, title=r.title, station=r.station) for r in s.reads.datasets()]
        return page(rows, limit, offset)

    @router.post("/definitions", status_code=status.HTTP_201_CREATED, response_model=Created,
                 responses={200: {"model": Created, "description": "The same definition was registered already"}})
    def register_definition(body: DefinitionIn, response: Response, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.OPERATOR))]) -> Created:
        """Register a train definition; 422 with the SHACL report if it is not valid. Definitions are immutable:
        the same content again answers 200, other content under a registered id 409 naming what differs."""
        written = s.registry.definition(principal, definition_spec(body))
        if not written.insert:
            response.status_code = status.HTTP_200_OK
        return Created(id=body.id, iri=written.iri.value)

    @router.get("/schemas/{name}", response_class=JSONResponse, responses={
        200: {"content": {"application/schema+json": {}}, "description": "The JSON Schema"},
        404: {"model": Problem}})
    def get_schema(name: Annotated[str, Path(max_length=64)]) -> JSONResponse:
        """The JSON Schema of a document researchers write: ``train-definition`` or ``train-file`` (no token
        needed). Generated from the models this API validates with; its ``$id`` names the contract version."""
        if name not in SCHEMAS:
            raise NotFound(f"no schema {name!r}; there are: {', '.join(sorted(SCHEMAS))}")
        return JSONResponse(json_schema(name), media_type="application/schema+json")

    @router.get("/definitions", response_model=Page[DefinitionOut])
    def list_definitions(principal: Annotated[Principal, Depends(s.require(*ANY))], limit: Limit = 50,
                         after: After = None) -> dict[str, Any]:
        """Registered train definitions, newest first (the order they were registered, then by identifier; until
        session 15 they were listed by identifier). Pages are keyset pages: pass the answer's ``next`` as ``after``
        for the page that follows (``next`` is null on the last page; a page may be short, even empty, with
        definitions after it); ``total`` counts them all. A token from before this order is refused (422)."""
        found = s.reads.definitions(after=FIRST if after is None else decode(after), limit=limit)
        rows = [DefinitionOut(id=d.id, title=d.title, mode=local_name(text(d.mode)).lower(), rounds=d.rounds,
                              image_digest=d.image_digest, stops=d.stops)
                for d in found.items]
        return {"items": rows, "total": found.total, "limit": limit, "offset": 0,
                "next": None if found.next is None else encode(found.next)}

    return router

"""Public keys: register, list, rotate, revoke; a station's enrollment with a one-time token.

Thin: ``orchestrator.key_registry`` decides and writes, ``orchestrator.keys`` reads. Every new key comes with a
proof of possession (``client.key_claims``). The enroll route takes no bearer token: the enrollment token is the
credential (a station's admin may have no account at the central service yet).
"""

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status

from ..key_registry import KeyRegistry
from ..keys import PublicKeyRecord
from ..principal import Principal, Role
from .deps import Services
from .models import (
    EnrollIn,
    EnrollmentIn,
    EnrollmentOut,
    Identifier,
    KeyClaim,
    KeyOut,
    PartyKeysOut,
    Problem,
    RevokeIn,
    RotateIn,
    Subject,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem}, 401: {"model": Problem}, 403: {"model": Problem},
    404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}
ANY = (Role.RESEARCHER, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)


def _out(party: str, records: list[PublicKeyRecord]) -> PartyKeysOut:
    return PartyKeysOut(party=party, keys=[_key(r) for r in records])


def _key(record: PublicKeyRecord) -> KeyOut:
    return KeyOut(iri=record.iri, use=record.use, multibase=record.multibase, created=_text(record.created),
                  expires=_text(record.expires) if record.expires else None,
                  revoked=_text(record.revoked) if record.revoked else None)


def _text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def key_router(s: Services) -> APIRouter:
    router = APIRouter(tags=["keys"], responses=ERRORS)
    keys = KeyRegistry(s.store, s.lifecycle.iris)

    @router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=PartyKeysOut,
                 responses={200: {"model": PartyKeysOut, "description": "These keys were registered already"}})
    def register_keys(body: KeyClaim, response: Response,
                      principal: Annotated[Principal, Depends(s.require(Role.RESEARCHER))]) -> PartyKeysOut:
        """Register your own first keys (researcher): signing (Ed25519) and encryption (X25519) Multikeys, with a
        proof of possession by the signing key. The same keys again answer 200; other current keys 409 (rotate)."""
        records, written = keys.register(principal, body)
        if not written:
            response.status_code = status.HTTP_200_OK
        return _out(s.lifecycle.iris.agent(principal.subject).value, records)

    @router.get("/keys", response_model=PartyKeysOut)
    def list_keys(principal: Annotated[Principal, Depends(s.require(*ANY))],
                  station: Annotated[Identifier | None, Query(description="a station's keys")] = None,
                  researcher: Annotated[Subject | None, Query(description="a researcher's keys (token subject)")]
                  = None) -> PartyKeysOut:
        """A party's public keys, oldest first, with when each was rotated out or revoked (any caller: public keys
        are public). Without a party: your own (a researcher's, or a station's token's station)."""
        party = keys.party_iri(*keys.named(principal, station=station, researcher=researcher))
        return _out(party, keys.directory.party_keys(party))

    @router.post("/keys/rotate", response_model=PartyKeysOut)
    def rotate_keys(body: RotateIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.STATION_ADMIN, Role.OPERATOR))]) -> PartyKeysOut:
        """Add new keys and rotate out the party's current ones in one write: a researcher's own, a station admin's
        station's, or (operator) any party's. Rotated-out keys keep verifying what was signed before."""
        return _out(*keys.rotate(principal, body, station=body.station, researcher=body.researcher))

    @router.post("/keys/revoke", response_model=KeyOut)
    def revoke_key(body: RevokeIn, principal: Annotated[Principal, Depends(
            s.require(Role.RESEARCHER, Role.STATION_ADMIN, Role.OPERATOR))]) -> KeyOut:
        """Revoke a key from now on (its holder, or an operator): it verifies no signature any more."""
        return _key(keys.revoke(principal, body.key))

    @router.post("/stations/{station_id}/enrollments", status_code=status.HTTP_201_CREATED,
                 response_model=EnrollmentOut)
    def issue_enrollment(station_id: Annotated[str, Path(max_length=128)],
                         principal: Annotated[Principal, Depends(s.require(Role.OPERATOR))],
                         body: EnrollmentIn | None = None) -> EnrollmentOut:
        """A one-time enrollment token for the station's admin (operator); shown once, only its SHA-256 is kept."""
        valid_for = timedelta(seconds=(body or EnrollmentIn()).valid_for_s)
        issued = keys.issue_enrollment(principal, station_id, valid_for=valid_for)
        return EnrollmentOut(station=issued.station, token=issued.token, expires=_text(issued.expires))

    @router.post("/stations/{station_id}/enroll", response_model=PartyKeysOut)
    def enroll(station_id: Annotated[str, Path(max_length=128)], body: EnrollIn) -> PartyKeysOut:
        """Enroll the station's keys with a one-time enrollment token (no bearer token: the enrollment token is
        the credential), proving possession of the signing key. The station's previous keys are rotated out."""
        records = keys.enroll(station_id, body.token, body)
        return _out(s.lifecycle.iris.station(station_id).value, records)

    return router

"""How public keys get into the registry: registration, rotation, revocation, and station enrollment.

Every write is one validated ``GraphStore.apply`` of the central graph, checked completely before it is made (a
refusal writes nothing). New keys always come with a proof of possession (``client.key_claims``): a Data
Integrity proof by the new signing key over the keys' RDF for this party, made within ``PROOF_WINDOW`` of now.

* A researcher registers its own first keys (:meth:`KeyRegistry.register`); an operator registers a station's
  keys with the station (``Registry.station``, PEM or Multikey, no proof: the operator vouches) or hands its
  admin a one-time enrollment token (:meth:`KeyRegistry.issue_enrollment`): random, 256 bits, shown once; the
  graph keeps its SHA-256 and expiry only. The station's admin enrolls with it (:meth:`KeyRegistry.enroll`); the
  token is consumed in the same change set as the keys are written, and the shapes allow one use only, so of two
  racing uses one wins.
* Rotation (and enrollment, which rotates a station's keys) adds the new keys and sets ``sec:expiration`` on the
  party's current keys of the same use, in one change set. Revocation sets ``sec:revoked``. A rotated-out or
  revoked key is never registered again.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from pyoxigraph import Literal, NamedNode, Quad

from client.key_claims import (
    CONTROLLER,
    MULTIBASE,
    MULTIKEY,
    POSSESSION_PURPOSE,
    PUBLIC_KEY_MULTIBASE,
    REVOKED,
    KeyClaim,
    claim_proof,
    claim_triples,
    key_iri,
)
from client.key_claims import EXPIRES as EXPIRATION
from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, RDF_TYPE, ChangeSet, GraphStore, ValidationFailed
from trust import KeyFormatError, ProofError, decode_encryption_key, decode_signing_key, verify_proof

from .errors import Forbidden, IllegalTransition, InvalidValue, LifecycleError, NotFound
from .keys import USES, KeyDirectory, PublicKeyRecord, literal_time, parse_time
from .naming import Iris
from .principal import Principal, Role

__all__ = ["ENROLLMENT_TTL", "PROOF_WINDOW", "Enrollment", "KeyConflict", "KeyRegistry", "station_key_quads"]

G = CENTRAL_GRAPH
ENROLLMENT_TTL = timedelta(hours=24)
"""How long an enrollment token is accepted unless the operator says otherwise."""
PROOF_WINDOW = timedelta(minutes=10)
"""How far a proof of possession's ``created`` may be from the service's clock (a replayed old claim is refused)."""


class KeyConflict(LifecycleError):
    """The keys clash with what is registered (HTTP 409)."""

    status = 409


@dataclass(frozen=True)
class Enrollment:
    """An enrollment token as issued: ``token`` is shown once and stored nowhere."""

    station: str
    token: str
    expires: datetime


class KeyRegistry:
    """Writes the registry's keys; reads go through :class:`orchestrator.keys.KeyDirectory`."""

    def __init__(self, store: GraphStore, iris: Iris) -> None:
        self.store = store
        self.iris = iris
        self.directory = KeyDirectory(store)
        self._enroll_lock = threading.Lock()

    # -- whose keys ---------------------------------------------------------------------------------------

    def party(self, principal: Principal, *, station: str | None = None, researcher: str | None = None) -> str:
        """The IRI of the party whose keys ``principal`` acts on (see :meth:`named`): operators any, a station admin
        its own station, a researcher itself.

        :raises Forbidden: the principal may not act on that party's keys.
        :raises InvalidValue: as :meth:`named`. :raises NotFound: the named station is not registered.
        """
        station, researcher = self.named(principal, station=station, researcher=researcher)
        operator = principal.has(Role.OPERATOR)
        if station is not None:
            if not (operator or (principal.has(Role.STATION_ADMIN) and principal.station == station)):
                raise Forbidden(f"only station {station}'s admin or an operator manages its keys")
            iri = self.iris.station(station)
            if not self.store.contains(Quad(iri, RDF_TYPE, PHT.Station, G)):
                raise NotFound(f"station {station} is not registered")
            return iri.value
        if not (operator or (principal.has(Role.RESEARCHER) and principal.subject == researcher)):
            raise Forbidden("a researcher manages only their own keys")
        return self.party_iri(None, researcher)

    def named(self, principal: Principal, *, station: str | None = None,
              researcher: str | None = None) -> tuple[str, None] | tuple[None, str]:
        """``(station, None)`` or ``(None, researcher)``: the party named, or without a name the caller's own (a
        station's or station admin's token: its station; a researcher: itself).

        :raises InvalidValue: both named, or neither by a caller without keys of its own (an operator).
        """
        if station is not None and researcher is not None:
            raise InvalidValue("name either a station or a researcher, not both")
        if station is not None:
            return station, None
        if researcher is not None:
            return None, researcher
        if principal.has(Role.STATION, Role.STATION_ADMIN) and principal.station:
            return principal.station, None
        if principal.has(Role.RESEARCHER):
            return None, principal.subject
        raise InvalidValue("name the station or the researcher whose keys these are")

    def party_iri(self, station: str | None, researcher: str | None) -> str:
        """The IRI of a station or a researcher (as :meth:`named` gives them)."""
        return (self.iris.station(station) if station is not None else self.iris.agent(str(researcher))).value

    # -- writes -------------------------------------------------------------------------------------------

    def register(self, principal: Principal, claim: KeyClaim) -> tuple[list[PublicKeyRecord], bool]:
        """Register a researcher's first keys (``principal``'s own). Returns the party's keys and whether anything
        was written: the same keys again change nothing.

        :raises Forbidden: not a researcher.
        :raises InvalidValue: the proof of possession does not verify.
        :raises KeyConflict: the researcher has other current keys (rotate them), or a key is someone else's or
            was rotated out or revoked.
        """
        if not principal.has(Role.RESEARCHER):
            raise Forbidden("only researchers register their own keys here; stations enroll with a token")
        party = self.iris.agent(principal.subject).value
        insert = self._claimed(party, claim)
        current = [k for k in self.directory.party_keys(party)
                   if k.current and k.multibase not in (claim.signing_key, claim.encryption_key)]
        if current:
            raise KeyConflict(f"you already have a current {current[0].use} key ({current[0].iri}); rotate keys with "
                              "POST /api/keys/rotate")
        if insert:
            self.store.apply(ChangeSet(insert=insert))
        return self.directory.party_keys(party), bool(insert)

    def rotate(self, principal: Principal, claim: KeyClaim, *, station: str | None = None,
               researcher: str | None = None) -> tuple[str, list[PublicKeyRecord]]:
        """Add the claimed keys to the party's and rotate out its current keys of the same uses, in one change set;
        returns the party's IRI and keys.

        :raises Forbidden, InvalidValue, NotFound: as :meth:`party`; InvalidValue also for a bad proof.
        :raises KeyConflict: a claimed key is someone else's, or was rotated out or revoked.
        """
        party = self.party(principal, station=station, researcher=researcher)
        self._rotate(party, claim)
        return party, self.directory.party_keys(party)

    def revoke(self, principal: Principal, key: str) -> PublicKeyRecord:
        """Mark ``key`` (its IRI) revoked from now on: it verifies nothing any more.

        :raises NotFound: no such key. :raises Forbidden: neither its holder (the researcher, the station's admin)
            nor an operator. :raises IllegalTransition: it is revoked already.
        """
        record = self.directory.record(key)
        if record is None:
            raise NotFound(f"no registered key {key}")
        holder = (principal.has(Role.RESEARCHER) and record.controller == self.iris.agent(principal.subject).value) or (
            principal.has(Role.STATION_ADMIN) and principal.station is not None
            and record.controller == self.iris.station(principal.station).value)
        if not (holder or principal.has(Role.OPERATOR)):
            raise Forbidden("only the key's holder or an operator revokes it")
        if record.revoked is not None:
            raise IllegalTransition(f"the key {key} was revoked already, at {record.revoked.isoformat()}")
        self.store.apply(ChangeSet(insert=[Quad(NamedNode(key), REVOKED, literal_time(_now()), G)]))
        revoked = self.directory.record(key)
        assert revoked is not None
        return revoked

    # -- enrollment ---------------------------------------------------------------------------------------

    def issue_enrollment(self, principal: Principal, station: str, *,
                         valid_for: timedelta = ENROLLMENT_TTL) -> Enrollment:
        """A one-time token with which ``station``'s admin enrolls its keys (operators only); only its SHA-256 and
        expiry are recorded.

        :raises Forbidden: not an operator. :raises NotFound: no such station.
        """
        if not principal.has(Role.OPERATOR):
            raise Forbidden("only operators issue enrollment tokens")
        iri = self.iris.station(station)
        if not self.store.contains(Quad(iri, RDF_TYPE, PHT.Station, G)):
            raise NotFound(f"station {station} is not registered")
        token = secrets.token_urlsafe(32)  # 256 bits from the operating system
        now = _now()
        expires = now + valid_for
        enrollment = NamedNode(f"{self.iris.base}enrollments/{uuid.uuid4().hex}")
        self.store.apply(ChangeSet(insert=[
            Quad(enrollment, RDF_TYPE, PHT.StationEnrollment, G), Quad(enrollment, PHT.enrollmentOf, iri, G),
            Quad(enrollment, PHT.tokenSha256, Literal(_digest(token)), G),
            Quad(enrollment, PHT.enrollmentIssuedBy, Literal(principal.subject), G),
            Quad(enrollment, DCTERMS.created, literal_time(now), G),
            Quad(enrollment, PHT.enrollmentExpires, literal_time(expires), G)]))
        return Enrollment(station, token, expires)

    def enroll(self, station: str, token: str, claim: KeyClaim) -> list[PublicKeyRecord]:
        """Register ``station``'s keys with an enrollment token (no other credential), consuming the token; the
        station's current keys of the same uses are rotated out in the same change set.

        :raises Forbidden: the token is unknown, used, expired or for another station.
        :raises InvalidValue: the proof of possession does not verify.
        :raises KeyConflict: a claimed key is someone else's, or was rotated out or revoked.
        """
        found = self.store.quads(None, PHT.tokenSha256, Literal(_digest(token)), G)
        if not found or not isinstance(found[0].subject, NamedNode):
            raise Forbidden("the enrollment token is not valid: ask an operator for one "
                            "(pht station enrollment-token STATION)")
        enrollment = found[0].subject
        if not self.store.contains(Quad(enrollment, PHT.enrollmentOf, self.iris.station(station), G)):
            raise Forbidden(f"the enrollment token was not issued for station {station}")
        with self._enroll_lock:  # in this process one use at a time; across services the shapes allow one use
            if self.store.quads(enrollment, PHT.enrolledAt, None, G):
                raise Forbidden("the enrollment token was used already; ask an operator for a new one")
            expires = [q.object for q in self.store.quads(enrollment, PHT.enrollmentExpires, None, G)]
            if not expires or not isinstance(expires[0], Literal) or parse_time(expires[0].value) <= _now():
                raise Forbidden("the enrollment token has expired; ask an operator for a new one")
            party = self.iris.station(station).value
            used = [Quad(enrollment, PHT.enrolledAt, literal_time(_now()), G)] + [
                Quad(enrollment, PHT.enrolledKey, NamedNode(key_iri(party, multibase)), G)
                for multibase in (claim.signing_key, claim.encryption_key)]
            try:
                self._rotate(party, claim, also=used)
            except ValidationFailed as e:
                if any(r.focus_node == enrollment for r in e.report.results):
                    raise Forbidden("the enrollment token was used already; ask an operator for a new one") from None
                raise
        return self.directory.party_keys(party)

    # -- the parts ----------------------------------------------------------------------------------------

    def _rotate(self, party: str, claim: KeyClaim, *, also: Sequence[Quad] = ()) -> None:
        insert = self._claimed(party, claim)
        claimed = {claim.signing_key, claim.encryption_key}
        now = literal_time(_now())
        expire = [Quad(NamedNode(k.iri), EXPIRATION, now, G) for k in self.directory.party_keys(party)
                  if k.current and k.multibase not in claimed]
        if insert or expire or also:
            self.store.apply(ChangeSet(insert=[*insert, *expire, *also]))

    def _claimed(self, party: str, claim: KeyClaim) -> list[Quad]:
        """The quads of the claimed keys not yet registered, after checking the proof and that neither key is
        someone else's or was rotated out or revoked."""
        self._check_possession(party, claim)
        now = _now()
        quads: list[Quad] = []
        for multibase, use in ((claim.signing_key, "signing"), (claim.encryption_key, "encryption")):
            _refuse_foreign(self.store, party, multibase)
            record = self.directory.record(key_iri(party, multibase))
            if record is None:
                quads += _key_quads(party, multibase, use, now)
            elif not record.current:
                raise KeyConflict(f"the key {record.iri} was {'revoked' if record.revoked else 'rotated out'}; "
                                  "a key never comes back: generate new keys")
        return quads

    def _check_possession(self, party: str, claim: KeyClaim) -> None:
        proof = claim_proof(party, claim)
        try:
            created = parse_time(proof.created)
        except ValueError:
            raise InvalidValue(f"the proof's created time {proof.created!r} is not an xsd:dateTime with a time "
                               "zone") from None
        if abs(_now() - created) > PROOF_WINDOW:
            raise InvalidValue(f"the proof of possession was made at {proof.created}, more than "
                               f"{int(PROOF_WINDOW.total_seconds() // 60)} minutes from now: make a new one")
        try:
            signing = decode_signing_key(claim.signing_key)
            decode_encryption_key(claim.encryption_key)
        except KeyFormatError as e:
            raise InvalidValue(str(e)) from None
        document = claim_triples(party, signing_key=claim.signing_key, encryption_key=claim.encryption_key)
        try:
            verify_proof(document, proof, lambda iri: signing if iri == proof.verification_method else None,
                         expected_purpose=POSSESSION_PURPOSE)
        except ProofError as e:
            raise InvalidValue(f"the proof of possession does not verify: {e}") from None



def station_key_quads(station: NamedNode, keys: Sequence[tuple[str, str]]) -> list[Quad]:
    """The quads registering a new station's keys (``(multikey, use)`` pairs, see ``keys.multikey_of``), with no
    proof: the operator registering the station vouches for them (as before enrollment existed, one key may be
    given to several stations; a claimed key, :meth:`KeyRegistry.register`, must be the claimant's alone)."""
    now = _now()
    return [q for multibase, use in dict.fromkeys(keys) for q in _key_quads(station.value, multibase, use, now)]


def _refuse_foreign(store: GraphStore, party: str, multibase: str) -> None:
    for quad in store.quads(None, PUBLIC_KEY_MULTIBASE, Literal(multibase, datatype=MULTIBASE), G):
        if not store.contains(Quad(quad.subject, CONTROLLER, NamedNode(party), G)):
            raise KeyConflict("that public key is registered to another party; generate your own keys")


def _key_quads(party: str, multibase: str, use: str, now: datetime) -> list[Quad]:
    key, holder = NamedNode(key_iri(party, multibase)), NamedNode(party)
    return [Quad(holder, USES[use], key, G), Quad(key, RDF_TYPE, MULTIKEY, G), Quad(key, CONTROLLER, holder, G),
            Quad(key, PUBLIC_KEY_MULTIBASE, Literal(multibase, datatype=MULTIBASE), G),
            Quad(key, DCTERMS.created, literal_time(now), G)]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)

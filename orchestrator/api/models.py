"""Request and response bodies of the REST API (separate models per use, documented in OpenAPI)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StringConstraints, Tag

# the body with which a party claims its keys (and proves it holds them), defined once for client and service
from client.key_claims import KeyClaim, PossessionProof

# a signed train request's values, defined once for the researcher's client (which signs) and the service (which
# verifies)
from client.train_request import RequestSignature

# the station <-> central wire (the station routes' bodies), defined once in client/wire.py for the station's
# client too, and re-exported here (in __all__) with the other models
from client.wire import (CheckIn, DataspaceInputIn, Identifier, LeaseIn, LeaseOut, OutputIn, StepIn, StepOut, Strict,
                         WorkItem)

__all__ = [
    "CancelIn",
    "CheckIn",
    "Created",
    "DatasetIn",
    "DatasetOut",
    "DefinitionIn",
    "DefinitionOut",
    "EnrollIn",
    "EnrollmentIn",
    "EnrollmentOut",
    "EventOut",
    "ExecutionOut",
    "Identifier",
    "KeyClaim",
    "KeyOut",
    "LeaseIn",
    "LeaseOut",
    "OutputIn",
    "Page",
    "ParameterIn",
    "PartyKeysOut",
    "PossessionProof",
    "Problem",
    "RequestSignature",
    "RevokeIn",
    "RotateIn",
    "StationIn",
    "StationOut",
    "StepIn",
    "StepOut",
    "Strict",
    "Subject",
    "Text",
    "TrainIn",
    "TrainOut",
    "WorkItem",
]

Text = Annotated[str, StringConstraints(min_length=1, max_length=500)]
T = TypeVar("T")


class StationIn(Strict):
    id: Identifier
    title: Text
    owner: Text = Field(description="Name of the organisation that runs the station")
    public_keys: list[Annotated[str, StringConstraints(max_length=10_000)]] = Field(
        default=[], max_length=10,
        description="the station's public keys, if the operator vouches for them: Ed25519 (its MPU signs metadata "
                    "batches with it) and X25519 (results are encrypted to it), each a Multikey (z6Mk..., z6LS...) or "
                    "PEM; usually none: the station's admin enrolls its keys with a one-time token "
                    "(POST /api/stations/{id}/enrollments, then /enroll)")
    runtimes: list[Literal["docker", "podman", "kubernetes", "process"]] = Field(default=["docker"], min_length=1)


class StationOut(BaseModel):
    id: str
    title: str | None
    owner: str | None
    runtimes: list[str]


Subject = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class KeyOut(BaseModel):
    """One registered public key (public keys are public: any authenticated caller reads them)."""

    iri: str = Field(description="the key's IRI: {party}/keys/{first 24 hex digits of SHA-256 of the Multikey}")
    use: Literal["signing", "encryption"] = Field(
        description="signing: Ed25519, sec:assertionMethod; encryption: X25519, sec:keyAgreement")
    multibase: str = Field(description="the Multikey (sec:publicKeyMultibase)")
    created: str
    expires: str | None = Field(default=None, description="when it was rotated out: it verifies only signatures "
                                                          "made before")
    revoked: str | None = Field(default=None, description="when it was revoked: it verifies nothing since")


class PartyKeysOut(BaseModel):
    party: str = Field(description="the IRI of the researcher ({base}agents/{subject}) or station")
    keys: list[KeyOut]


class RotateIn(KeyClaim):
    """New keys for a party, whose current keys are rotated out (they keep verifying older signatures)."""

    station: Identifier | None = Field(default=None, description="the station whose keys these are (its admin or "
                                                                 "an operator)")
    researcher: Subject | None = Field(default=None, description="the researcher (token subject) whose keys these "
                                                                 "are (themselves or an operator)")


class RevokeIn(Strict):
    key: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(description="the key's IRI")


class EnrollmentIn(Strict):
    valid_for_s: int = Field(default=86_400, ge=60, le=7 * 86_400,
                             description="how long the token is accepted, in seconds (default 24 hours)")


class EnrollmentOut(BaseModel):
    station: str
    token: str = Field(description="the one-time enrollment token: shown once, stored nowhere (the service keeps "
                                   "its SHA-256); hand it to the station's admin over a channel you trust")
    expires: str


class EnrollIn(KeyClaim):
    """A station's keys, enrolled with the one-time token an operator issued (no bearer token needed)."""

    token: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class DatasetIn(Strict):
    id: Identifier
    title: Text
    station: Identifier


class DatasetOut(BaseModel):
    id: str
    title: str | None
    station: str


class ParameterIn(Strict):
    """A typed parameter of a train definition; a train gives its value as a string of that datatype."""

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] = Field(
        description="usable as an environment variable name: letters, digits and '_', not starting with a digit")
    datatype: Literal["integer", "decimal", "string", "boolean", "double", "dateTime", "anyURI"] = Field(
        default="string", description="the XML Schema datatype a value must be valid for (xsd:...)")
    required: bool = Field(default=False, description="whether a train must give a value")
    default: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="recorded for people; the train receives only the values a train gives")


class DefinitionIn(Strict):
    """A train definition: which image runs, where (route), how (mode, rounds) and with which parameters.
    Immutable once registered: registering other content under a known id is refused (409)."""

    model_config = ConfigDict(json_schema_extra={
        # What the registry checks besides the fields (orchestrator/registry.py), stated for schema users too.
        "if": {"properties": {"mode": {"const": "federated"}}, "required": ["mode"]},
        "then": {"required": ["aggregator"], "properties": {"route": {"uniqueItems": True}}},
    })

    id: Identifier = Field(description="the definition's identifier; a new one for every change")
    title: Text
    image_name: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="Docker/Podman: the image's name, either local (e.g. pht-trains/cohort-count:1, built at the "
                    "station) or a registry reference by manifest digest (registry/repository@sha256:<64 hex>, as "
                    "pht train push prints it), which stations pull by that digest; process runtime: the absolute "
                    "path of the train folder on the stations' machine. No spaces",
        json_schema_extra={"pattern": r"^[^\s@]+(@sha256:[0-9a-f]{64})?$"})
    image_digest: Annotated[str, StringConstraints(max_length=100)] = Field(
        description="sha256:<64 hex digits>; images are referenced by digest, never by tag. Docker/Podman: the image "
                    "ID (pht station build-image FOLDER --tag NAME prints it); process runtime: the folder digest "
                    "(pht station build-image FOLDER --tag NAME --process)",
        json_schema_extra={"pattern": "^sha256:[0-9a-f]{64}$"})
    mode: Literal["incremental", "federated"] = Field(
        description="incremental: the stations in route order, each getting the previous output; federated: every "
                    "station at once, then the aggregator combines their outputs")
    route: list[Identifier] = Field(min_length=1, max_length=100, description="station ids in route order")
    rounds: int = Field(default=1, ge=1, le=1000, description="how often the route is travelled")
    entrypoint: Annotated[str, StringConstraints(max_length=500)] | None = Field(
        default=None, description="a command replacing the image's ENTRYPOINT, split at spaces")
    aggregator: Identifier | None = Field(
        default=None, description="federated mode: the id of the station that combines each round's outputs")
    parameters: list[ParameterIn] = Field(default=[], max_length=100)
    dataspace_inputs: list[DataspaceInputIn] = Field(
        default=[], max_length=20, description="datasets of data-space providers the train reads (docs/dataspace.md): "
                                               "each station obtains them with its own identity before the run")
    inputs: Annotated[str, StringConstraints(min_length=1, max_length=64_000)] | None = Field(
        default=None, description="the variables the train reads, as SHACL input shapes in Turtle over a station's "
                                  "dataset description (docs/train-definition.md, 'Inputs'): the central service "
                                  "dispatches only to stations whose published description conforms, and each station "
                                  "re-checks its real data before the run")


class DefinitionOut(BaseModel):
    id: str
    title: str | None
    mode: str
    rounds: int
    image_digest: str
    stops: int


def _definition_kind(value: object) -> str:
    return "id" if isinstance(value, str) else "object"


class TrainIn(Strict):
    """A train to submit, and the format of the train file ``pht train submit FILE`` reads."""

    definition: Annotated[Annotated[Identifier, Tag("id")] | Annotated[DefinitionIn, Tag("object")],
                          Discriminator(_definition_kind)] = Field(
        description="the id of a registered definition, or a whole definition: registered in the same write as the "
                    "train (nothing is written if either is refused); the same content under a known id is reused")
    parameters: dict[Annotated[str, StringConstraints(max_length=64)],
                     Annotated[str, StringConstraints(max_length=1000)]] = Field(
        default={}, max_length=100, description="the train's parameter values by name, each a string")
    purpose: Annotated[str, StringConstraints(pattern=r"^http://purl\.obolibrary\.org/obo/DUO_[0-9]{7}$")] | None = Field(
        default=None, description="what the train is for: a Data Use Ontology term IRI (ontology/duo.ttl lists the ones "
                                  "accepted, e.g. http://purl.obolibrary.org/obo/DUO_0000007, disease specific "
                                  "research); signed with the request, and stations' consent policies decide on it")
    project: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")] | None = Field(
        default=None, description="the project the train belongs to, a short id (letters, digits, '.', '_', '-'); "
                                  "signed with the request")
    dp_mechanism: Literal["laplace", "gaussian"] | None = Field(
        default=None, description="the differentially private mechanism of the train's release, as opendp names it; "
                                  "signed with the request")
    epsilon: Annotated[float, Field(gt=0, le=1000)] | None = Field(
        default=None, description="the privacy loss ε of one release (positive); signed with the request, and "
                                  "stations with a privacy budget count it against the requester's budget")
    signature: RequestSignature | None = Field(
        default=None, description="the researcher's signed train request (pht train submit adds it when it finds "
                                  "your keys): the service rebuilds the signed document from this definition and "
                                  "these parameters, verifies the proof with your registered signing key and stores "
                                  "it with the train; refused (4xx, nothing written) if it does not verify. Without "
                                  "it the train is unsigned: refused unless PHT_REQUIRE_SIGNED_TRAINS=0, and "
                                  "stations never run it")


class Created(BaseModel):
    id: str
    iri: str


class ExecutionOut(BaseModel):
    id: str
    state: str
    station: str
    round: int
    stop: int | None
    started: str | None = None
    ended: str | None = None
    output: str | None = None
    output_sha256: str | None = Field(default=None, description="SHA-256 of the output: its object store address")


class TrainOut(BaseModel):
    id: str
    iri: str
    state: str
    requester: str
    definition: str
    created: str
    signed: bool = Field(default=False, description="whether the train was submitted with a signed train request "
                                                    "the service verified (its request and proof are in the graph)")
    signed_by: str | None = Field(default=None, description="the verification method (signing key IRI) of the "
                                                            "signed request's proof")
    purpose: str | None = Field(default=None, description="the DUO purpose the signed request declares (one train's "
                                                         "answer only; null in the list)")
    project: str | None = Field(default=None, description="the project the signed request declares")
    dp_mechanism: str | None = Field(default=None, description="the differentially private mechanism it declares")
    epsilon: str | None = Field(default=None, description="the ε per release it declares (xsd:decimal lexical form)")
    executions: list[ExecutionOut] = []


class EventOut(BaseModel):
    event: str
    type: str
    time: str
    execution: str | None
    from_state: str | None
    to_state: str | None
    agent: str | None
    role: str | None
    reason: str | None
    source: str = Field(description="Who emitted the event, as the graph it was recorded in says (never the event's "
                                    "own claim): 'central' (the central lifecycle) or 'station:<id>' (that station's "
                                    "MPU). A station's account of a state change is never listed here.")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
    next: str | None = Field(default=None, description=(
        "Keyset-paged lists (GET /trains, GET /definitions): pass it as `after` for the next page; null on the last "
        "page (and on lists paged by `offset`)."))


class CancelIn(Strict):
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""


class Problem(BaseModel):
    """Every refusal: one sentence; a SHACL refusal adds the validation ``report``, an invalid request (path,
    query or body not matching this schema) the list of ``errors`` (Pydantic's, one per wrong value)."""

    detail: str
    report: dict[str, Any] | None = None
    errors: list[dict[str, Any]] | None = None

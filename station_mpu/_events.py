"""The events a station reports to its MPU (JSON, ``POST /events``) and the triples each one becomes.

One Pydantic model per kind, told apart by ``kind``; every field is checked here so that a malformed event is
refused with a sentence naming the field, before any triple exists. The triples use the project vocabulary
(``ontology/pht.ttl``, section 5) with explicit QUDT units, and are validated against the shapes by the MPU.

The JSON schema is documented for the station agent's author in ``docs/mpu.md``.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal, Union

import rdflib
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pyoxigraph import Literal as RdfLiteral
from pyoxigraph import NamedNode, Quad

from graph_store import DCAT, DCTERMS, PHT, PHT_NS, PROV, RDF_TYPE, UNIT, XSD, load_schema

from ._naming import Naming
from ._secret import StationSecret, process_secret

__all__ = [
    "DatasetDescription",
    "VariableDescription",
    "Event",
    "EventAdapter",
    "EventTriples",
    "StationDescription",
    "event_kinds",
    "event_triples",
    "log_digest",
    "description_triples",
    "state_tokens",
    "xsd_datetime",
]


Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=4000, pattern=r"\S")]


@lru_cache(maxsize=1)
def state_tokens() -> dict[str, NamedNode]:
    """Lifecycle state tokens (``"waiting-for-approval"``) to their IRIs, read from ``ontology/lifecycle.ttl``."""
    g = load_schema().ontology
    ident = rdflib.URIRef(DCTERMS.identifier.value)
    return {str(g.value(s, ident)): NamedNode(str(s))
            for s in g.subjects(rdflib.RDF.type, rdflib.URIRef(PHT_NS + "State"))}


ROLES = {"researcher": PHT.Researcher, "station": PHT.StationRole, "station-admin": PHT.StationAdmin,
         "operator": PHT.Operator}


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Identifier | None = Field(default=None, description="Your unique id of the event (letters, digits, '.', "
                                  "'_', '-'); posting the same id again is a no-op. Default: a random id (posting "
                                  "the same content again is a no-op too).")
    time: AwareDatetime = Field(description="When it happened, RFC 3339 with a time zone, e.g. 2026-11-27T10:00:00Z")
    train: Identifier = Field(description="The train's id as the central service knows it")
    execution: Identifier | None = Field(default=None, description="The execution's id (train id, '.', visit), "
                                         "e.g. 3f2c...9a.r1-s0")

    @field_validator("execution")
    @classmethod
    def _belongs_to_train(cls, v: str | None, info: ValidationInfo) -> str | None:
        train = info.data.get("train")
        if v is not None and train is not None and v.split(".", 1)[0] != train:
            raise ValueError(f"execution {v!r} is not an execution of train {train!r} (its id starts with the "
                             "train's id and a '.')")
        return v


class StateChange(_Base):
    kind: Literal["state-change"]
    from_state: str | None = Field(default=None, description="Lifecycle state token before the change")
    to_state: str = Field(description="Lifecycle state token after the change, e.g. approved")
    actor: Identifier | None = Field(default=None, description="Who fired it (token subject); default the station")
    role: Literal["researcher", "station", "station-admin", "operator"] | None = None
    reason: Text | None = None

    @field_validator("from_state", "to_state")
    @classmethod
    def _known_state(cls, v: str | None) -> str | None:
        if v is not None and v not in state_tokens():
            raise ValueError(f"unknown state {v!r}; known: {', '.join(sorted(state_tokens()))}")
        return v


class Rejection(_Base):
    kind: Literal["rejection"]
    reason: Text = Field(description="Why, in words the requester understands, e.g. 'No anonymity'")


class Error(_Base):
    kind: Literal["error"]
    message: Text = Field(description="What went wrong")


class Log(_Base):
    kind: Literal["log"]
    log_sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="SHA-256 of the complete log (64 lower-case hex digits); the log stays at the station, and this "
                    "digest too: what leaves is its HMAC under the station's secret (pht:logDigest)")
    message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="A short excerpt (at most 1024 characters)")


class Milestone(_Base):
    kind: Literal["started-transmission", "finished-transmission", "started-running"]


class FinishedRunning(_Base):
    kind: Literal["finished-running"]
    success: bool = Field(description="True if the train exited with code 0")


class Usage(_Base):
    kind: Literal["cpu-usage", "memory-usage", "network-usage"]
    value: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Field(
        description="cpu-usage: percent of one core; memory-usage: bytes; network-usage: bytes per second")
    direction: Literal["in", "out"] | None = Field(default=None, description="network-usage only: received (in) "
                                                   "or sent (out); absent: both")

    @field_validator("direction")
    @classmethod
    def _network_only(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("kind") != "network-usage":
            raise ValueError("only network-usage events have a direction")
        return v


AnyEvent = Union[StateChange, Rejection, Error, Log, Milestone, FinishedRunning, Usage]
Event = Annotated[AnyEvent, Field(discriminator="kind")]
"""One station event; ``kind`` selects the model."""

EventAdapter: TypeAdapter[list[Event]] = TypeAdapter(list[Event])
"""Parses a JSON list of events (``EventAdapter.validate_json(body)``)."""

_CLASSES = {
    "state-change": PHT.StateChangeEvent, "rejection": PHT.RejectionEvent, "error": PHT.ErrorEvent,
    "log": PHT.LogEvent, "started-transmission": PHT.StartedTransmissionEvent,
    "finished-transmission": PHT.FinishedTransmissionEvent, "started-running": PHT.StartedRunningEvent,
    "finished-running": PHT.FinishedRunningEvent, "cpu-usage": PHT.CPUUsageSample,
    "memory-usage": PHT.MemoryUsageSample, "network-usage": PHT.NetworkUsageSample,
}
_UNITS = {"cpu-usage": UNIT.PERCENT, "memory-usage": UNIT.BYTE, "network-usage": UNIT["BYTE-PER-SEC"]}


def event_kinds() -> dict[str, NamedNode]:
    """Every event ``kind`` and the class its events get."""
    return dict(_CLASSES)


class VariableDescription(BaseModel):
    """One variable (column) of a dataset: name, datatype, unit, code system; never a value (ontology/variables.ttl)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
    datatype: Literal["integer", "decimal", "boolean", "date", "dateTime", "string"] = Field(
        description="the XSD datatype every value parses as")
    unit: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None, description="a UCUM code, e.g. a (years) or mm[Hg]")
    code_system: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*:[^\s<>\"{}|\\^`]{1,500}$")] | None = Field(
        default=None, description="the IRI of the code system the values are codes of, e.g. http://loinc.org")


class DatasetDescription(BaseModel):
    """What a station publishes about one of its registered datasets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Identifier
    description: Text | None = None
    keywords: list[Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(default=[],
                                                                                           max_length=50)
    variables: list[VariableDescription] = Field(default=[], max_length=1000)


class StationDescription(BaseModel):
    """What a station publishes about itself and its datasets (replaces what it published before)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    description: Text | None = None
    datasets: list[DatasetDescription] = Field(default=[], max_length=1000)


@dataclass(frozen=True)
class EventTriples:
    """An event as RDF: its stable IRI, its class, its quads (in the station graph) and where it came from."""

    iri: NamedNode
    cls: NamedNode
    quads: tuple[Quad, ...]
    kind: str
    source: str
    """The event as canonical JSON (kept at the station for ``pht mpu policy preview``)."""
    key: str = ""
    """Its key in the outbox, which never leaves the station: the event's IRI if it has an ``id``, else a keyed
    digest of its content (so that posting it again is a no-op); a description unit: the resource IRI and
    when it was described."""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.iri.value)


def xsd_datetime(t: datetime) -> RdfLiteral:
    """An aware datetime as an xsd:dateTime in UTC ("Z")."""
    return RdfLiteral(t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


def _decimal(v: Decimal) -> RdfLiteral:
    text = format(v.normalize() if v == v.to_integral_value() else v, "f")
    return RdfLiteral(text if "." in text else text + ".0", datatype=XSD.decimal)


LOCAL_KEY_PREFIX = "urn:pht:mpu:content:"
"""Outbox keys of events without an ``id`` start with this (they never leave the station)."""


def event_triples(event: AnyEvent, naming: Naming, secret: StationSecret | None = None) -> EventTriples:
    """The triples of one event. Its IRI is its ``id`` or, without one, random: never derived from content the
    policy may deny (a digest of it would let anyone confirm a guess of a denied field). Its outbox key, which
    stays at the station, is then the content's HMAC under ``secret`` (default: this process's random key).
    The log digest that may leave is the HMAC of the log's SHA-256 under ``secret`` too."""
    secret = secret or process_secret()
    source = event.model_dump_json(exclude_none=True)
    if event.id is not None:
        e, key = naming.event(event.id), ""
    else:
        canonical = json.dumps(json.loads(source), sort_keys=True)
        e, key = naming.event(secrets.token_hex(16)), LOCAL_KEY_PREFIX + secret.digest("event-key", canonical)[:32]
    kind: str = event.kind
    g = naming.graph
    cls = _CLASSES[kind]
    quads = [Quad(e, RDF_TYPE, cls, g), Quad(e, PHT.eventTime, xsd_datetime(event.time), g),
             Quad(e, PHT.aboutTrain, naming.train(event.train), g), Quad(e, PHT.emittedBy, naming.station, g)]
    if event.execution is not None:
        quads.append(Quad(e, PHT.aboutExecution, naming.execution(event.execution), g))
    if isinstance(event, StateChange):
        tokens = state_tokens()
        quads.append(Quad(e, PHT.toState, tokens[event.to_state], g))
        if event.from_state is not None:
            quads.append(Quad(e, PHT.fromState, tokens[event.from_state], g))
        agent = naming.agent(event.actor) if event.actor is not None else naming.station
        quads.append(Quad(e, PROV.wasAssociatedWith, agent, g))
        role = event.role or ("station" if event.actor is None else None)
        if role is not None:
            quads.append(Quad(e, PHT.actingRole, ROLES[role], g))
        if event.reason is not None:
            quads.append(Quad(e, PHT.reason, RdfLiteral(event.reason), g))
    elif isinstance(event, Rejection):
        quads.append(Quad(e, PHT.reason, RdfLiteral(event.reason), g))
    elif isinstance(event, Error):
        quads.append(Quad(e, PHT.errorMessage, RdfLiteral(event.message), g))
    elif isinstance(event, Log):
        quads.append(Quad(e, PHT.logDigest, RdfLiteral(log_digest(event.log_sha256, secret)), g))
        if event.message is not None:
            quads.append(Quad(e, PHT.logMessage, RdfLiteral(event.message), g))
    elif isinstance(event, FinishedRunning):
        quads.append(Quad(e, PHT.success, RdfLiteral("true" if event.success else "false", datatype=XSD.boolean), g))
    elif isinstance(event, Usage):
        quads += [Quad(e, PHT.value, _decimal(event.value), g), Quad(e, PHT.unit, _UNITS[kind], g)]
        if event.direction is not None:
            quads.append(Quad(e, PHT.direction, PHT.Inbound if event.direction == "in" else PHT.Outbound, g))
    return EventTriples(e, cls, tuple(quads), kind, source, key)


def log_digest(log_sha256: str, secret: StationSecret) -> str:
    """What leaves as ``pht:logDigest``: the HMAC of the log's SHA-256 (hex) under the station's secret. The
    admin finds the log it names by computing this for the logs kept at the station."""
    return secret.digest("log", log_sha256)


def description_triples(description: StationDescription, naming: Naming, *, at: datetime) -> list[EventTriples]:
    """The station's description as one unit per described resource (the station, each dataset); each unit's
    IRI is the resource itself, its ``cls`` the resource's class (``pht:Station``, ``dcat:Dataset``), its outbox
    key the IRI and ``at`` (a later description replaces an earlier one, even with the same content)."""
    g = naming.graph
    units: list[EventTriples] = []
    parts: list[tuple[NamedNode, NamedNode, str | None, Sequence[str], Sequence[VariableDescription], str]] = [
        (naming.station, PHT.Station, description.description, (), (), "station")]
    parts += [(naming.dataset(d.id), DCAT.Dataset, d.description, d.keywords, d.variables, "dataset")
              for d in description.datasets]
    for iri, cls, text, keywords, variables, kind in parts:
        quads = [Quad(iri, DCTERMS.description, RdfLiteral(text), g)] if text else []
        quads += [Quad(iri, DCAT.keyword, RdfLiteral(k), g) for k in sorted(set(keywords))]
        quads += [q for v in variables for q in _variable_quads(iri, v, g)]
        if quads:
            units.append(EventTriples(iri, cls, tuple(quads), f"{kind}-description",
                                      json.dumps({"description": text, "keywords": sorted(set(keywords)),
                                                  "variables": [v.model_dump(exclude_none=True) for v in variables]}),
                                      key=f"{iri.value}#described-{at.timestamp():.6f}"))
    return units


def _variable_quads(dataset: NamedNode, variable: VariableDescription, g: NamedNode) -> list[Quad]:
    """A dataset's variable as the station publishes it, named ``{dataset}/variables/{name}``."""
    v = NamedNode(f"{dataset.value}/variables/{variable.name}")
    quads = [Quad(dataset, PHT.variable, v, g), Quad(v, RDF_TYPE, PHT.Variable, g),
             Quad(v, PHT.variableName, RdfLiteral(variable.name), g),
             Quad(v, PHT.variableDatatype, XSD[variable.datatype], g)]
    if variable.unit is not None:
        quads.append(Quad(v, PHT.variableUnit, RdfLiteral(variable.unit), g))
    if variable.code_system is not None:
        quads.append(Quad(v, PHT.codeSystem, NamedNode(variable.code_system), g))
    return quads

"""The station <-> central wire: the bodies both sides exchange, defined once.

The central service's REST API validates and documents them (``orchestrator/api/models.py`` imports them, so
they appear in its OpenAPI document under these names); :class:`~client.CentralClient` builds what it sends from
them and checks what it receives against them, and the station agent works on :class:`WorkItem` itself. A
change here changes both sides at once.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = ["CheckIn", "DataspaceInputIn", "Identifier", "LeaseIn", "LeaseOut", "OutputIn", "Reader", "StepIn", "StepOut", "Strict",
           "WorkItem"]

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataspaceInputIn(Strict):
    """A dataset of a data-space provider a train definition reads (pht:DataspaceInput): each station on the route
    negotiates for it with its own data-space identity, pulls it before the run and mounts it read-only at
    ``/pht/dataspace/{name}``. It names no credential; it is part of the definition, so the signed request and the
    station's approval cover it."""
    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = Field(
        description="the folder under /pht/dataspace the train finds the dataset in; unique within the definition")
    connector: Annotated[str, StringConstraints(pattern=r"^https?://[^\s<>\"{}|\\^`]+$", max_length=500)] = Field(
        description="the base URL of the provider's Dataspace Protocol connector")
    dataset: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*:[^\s<>\"{}|\\^`]+$", max_length=500)] = \
        Field(description="the dataset's id (@id) in the provider's catalog, an IRI")


class CheckIn(Strict):
    """One automatic output check the station ran (see pht:CheckResult)."""
    name: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
    passed: bool
    detail: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class OutputIn(Strict):
    """A released output: its object store address (SHA-256) and size, both of the ciphertext (the output is
    encrypted to its readers before it leaves the station). The station agent sends it only with the release step
    (``StepIn.output``), never before, so nothing about an output under review leaves the station."""
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    byte_size: int = Field(ge=0, le=10**13)
    title: Annotated[str, StringConstraints(max_length=500)] = ""
    checks: list[CheckIn] = Field(default=[], max_length=50,
                                  description="the station's automatic review of the output (pht:OutputReview)")
    record: Annotated[str, StringConstraints(max_length=16_384)] | None = Field(
        default=None, description="the station's signed record of the execution (pht:ExecutionRecord and its Data "
                                  "Integrity proof, as N-Triples; client/execution_records.py)")


class StepIn(Strict):
    to: Annotated[str, StringConstraints(pattern=r"^[a-z-]{1,40}$")] = Field(
        description="target state token, e.g. waiting-for-approval, approved, running, released")
    reason: Annotated[str, StringConstraints(max_length=2000)] = ""
    used: list[Identifier] = Field(default=[], max_length=50, description="dataset ids used (when running)")
    output: OutputIn | None = Field(
        default=None, description="only with to=released: the released output, recorded in the same write as the "
                                  "release (the same output again makes a repeated release a no-op)")


class StepOut(BaseModel):
    execution: str
    state: str


class Reader(BaseModel):
    """One party an execution's output is encrypted to (the rule: ``client/readers.py``, applied by the central
    service and checked by the station): the next station, the round's aggregator, the next round's stations, or
    the requester. ``key`` and
    ``multibase`` are its X25519 key (a station's current one; the requester's, the result recipient the signed
    train request names), both None when there is none; ``expires`` / ``revoked`` say when the key was rotated
    out or revoked (None if not), so the station refuses it naming the reader."""

    party: str = Field(description="IRI of the reading station or researcher")
    key: str | None = Field(default=None, description="IRI of its X25519 key (sec:keyAgreement)")
    multibase: str | None = Field(default=None, description="the key as a Multikey (z6LS...)")
    expires: str | None = Field(default=None, description="when the key was rotated out (xsd:dateTime), if it was")
    revoked: str | None = Field(default=None, description="when the key was revoked (xsd:dateTime), if it was")


class WorkItem(BaseModel):
    execution: str
    state: str
    train: str
    round: int
    stop: int | None
    image_name: str
    image_digest: str
    entrypoint: str | None
    inputs: list[str] = Field(description="IRIs of the previous outputs this execution uses, sorted")
    input_digests: list[str] = Field(default=[], description="their SHA-256 digests, in the same order")
    requester: str = Field(default="", description="IRI of the agent the train is attributed to")
    definition: str = Field(default="", description="id of the train definition")
    parameters: dict[str, str] = Field(default={}, description="the train's parameter values by name")
    request: str = Field(default="", description="the train's signed request as N-Triples, as the central graph "
                                                 "holds it: the definition's content and the request node, i.e. the "
                                                 "document the researcher signed; empty for an unsigned train")
    request_proof: str = Field(default="", description="the request's Data Integrity proof (eddsa-rdfc-2022) as "
                                                       "N-Triples of its proof node; empty for an unsigned train")
    readers: list[Reader] = Field(default=[], description="who the output is encrypted to (its next readers)")
    input_record_hashes: list[str] = Field(
        default=[], description="while running: the hashes of the signed records of the executions whose outputs are "
                                "the inputs, in the order of input_digests ('' where there is none); the station names "
                                "them in its own record (client/execution_records.py)")


class LeaseIn(Strict):
    """An agent taking or renewing its station's lease (one running agent per station)."""

    holder: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="who the agent is, for people: its process, host and a random instance id")
    period_s: float = Field(ge=1, le=3600, description="seconds the lease lasts from now unless renewed")


class LeaseOut(BaseModel):
    station: str
    holder: str
    expires: str = Field(description="when the lease ends (UTC) unless renewed")
    held: bool = Field(description="whether it has not ended yet")

"""How the MPU names things: the deployment's IRIs for trains, executions, agents and this station's events.

The central service mints train and execution IRIs as ``{base}trains/{id}`` and ``{base}executions/{id}``; the
MPU must use the very same IRIs in ``pht:aboutTrain`` / ``pht:aboutExecution``, so both mint them with
``graph_store.ResourceIris`` (``tests/test_mpu_events.py`` checks they agree with the orchestrator's). Event
IRIs are the station's, then the event's own id or a random one (never a hash of its content, which would let
anyone confirm a guess of a field the policy denies); the outbox keeps them, so pushing an event twice writes
the same triples once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from urllib.parse import quote

from pyoxigraph import NamedNode

from graph_store import ResourceIris, station_event_prefix, station_graph

__all__ = ["Naming"]


@dataclass(frozen=True)
class Naming:
    """The IRIs of one station's MPU under the deployment's base IRI (the central service's ``PHT_BASE_IRI``)."""

    base: str
    station_id: str
    station_iri: str = ""

    def __post_init__(self) -> None:
        if not self.base.endswith(("/", "#")):
            raise ValueError(f"base IRI {self.base!r} must end with '/' or '#'")
        station_graph(self.station_id)  # raises ValueError for an id that cannot name a graph
        if not self.station_iri:
            object.__setattr__(self, "station_iri", self._iris.station(self.station_id).value)

    @cached_property
    def _iris(self) -> ResourceIris:
        return ResourceIris(self.base)

    @property
    def station(self) -> NamedNode:
        return NamedNode(self.station_iri)

    @property
    def graph(self) -> NamedNode:
        return station_graph(self.station_id)

    @property
    def event_prefix(self) -> str:
        return station_event_prefix(self.base, self.station_id)

    def event(self, local_id: str) -> NamedNode:
        return NamedNode(self.event_prefix + quote(local_id, safe=""))

    def train(self, train_id: str) -> NamedNode:
        return self._iris.train(train_id)

    def execution(self, execution_id: str) -> NamedNode:
        return self._iris.execution(execution_id)

    def agent(self, subject: str) -> NamedNode:
        return self._iris.agent(subject)

    def dataset(self, dataset_id: str) -> NamedNode:
        return self._iris.dataset(dataset_id)

"""How the central service names resources: ``graph_store.ResourceIris`` (shared with the stations' MPUs) plus
its own agent and its lifecycle events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pyoxigraph import NamedNode

from graph_store import ResourceIris

__all__ = ["Iris"]


@dataclass(frozen=True)
class Iris(ResourceIris):
    """IRIs under the deployment's base IRI; see ``graph_store.ResourceIris`` for trains, executions, stations."""

    def event(self) -> NamedNode:
        """A new lifecycle event (random: two services never mint the same one)."""
        return NamedNode(f"{self.base}events/{uuid.uuid4()}")

    def graph_edit(self) -> NamedNode:
        """A new audit record of an operator's edit (random, as events are)."""
        return NamedNode(f"{self.base}audit/edits/{uuid.uuid4()}")

    @property
    def skolem_prefix(self) -> str:
        """The prefix of the IRIs that blank nodes users send become (RDF 1.1 Concepts §3.5): the store keeps
        no blank nodes, whose identity would not survive a round trip through the protocols."""
        return f"{self.base}.well-known/genid/"

    @property
    def central(self) -> NamedNode:
        return NamedNode(f"{self.base}agents/central-service")

    def task_lease(self, task: str) -> NamedNode:
        """The lease of one of the service's background tasks (one replica runs it at a time)."""
        return NamedNode(f"{self.base}agents/central-service/leases/{task}")

"""Who is calling: the authenticated principal and the platform's roles.

Roles are those of the lifecycle state chart (``ontology/lifecycle.ttl``): a transition is fired only by an
agent acting in one of its ``pht:firedBy`` roles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pyoxigraph import NamedNode

from graph_store import PHT

__all__ = ["Role", "Principal"]


class Role(str, enum.Enum):
    """A role a token grants. The value is the claim string; ``iri`` is the chart's role individual."""

    RESEARCHER = "researcher"
    STATION = "station"
    STATION_ADMIN = "station-admin"
    OPERATOR = "operator"

    @property
    def iri(self) -> NamedNode:
        return {
            Role.RESEARCHER: PHT.Researcher,
            Role.STATION: PHT.StationRole,
            Role.STATION_ADMIN: PHT.StationAdmin,
            Role.OPERATOR: PHT.Operator,
        }[self]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: ``subject`` (token ``sub``), its roles, and for station and station-admin
    tokens the station identifier they act for."""

    subject: str
    roles: frozenset[Role]
    station: str | None = None

    def has(self, *roles: Role) -> bool:
        """True if the principal holds at least one of ``roles``."""
        return bool(self.roles.intersection(roles))

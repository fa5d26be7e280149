"""Namespaces and the named-graph layout shared by every component.

One stable namespace for the project vocabulary (``PHT``), and one place that says which
named graph holds what. Nothing else in the code base spells these IRIs.
"""

from __future__ import annotations

from pyoxigraph import NamedNode

__all__ = [
    "PHT",
    "PHT_NS",
    "GRAPH_NS",
    "ONTOLOGY_GRAPH",
    "SHAPES_GRAPH",
    "CENTRAL_GRAPH",
    "station_graph",
    "RDF_TYPE",
    "RDFS_SUBCLASSOF",
    "XSD",
    "SH",
]

PHT_NS = "https://w3id.org/pht-kg/vocab#"
"""The project vocabulary; versioned in ``ontology/pht.ttl`` and never fetched at run time."""

GRAPH_NS = "https://w3id.org/pht-kg/graph/"
"""Prefix of the named graphs of the layout below."""

ONTOLOGY_GRAPH = NamedNode(GRAPH_NS + "ontology")
"""The vocabulary (``ontology/*.ttl``) including the lifecycle state chart."""

SHAPES_GRAPH = NamedNode(GRAPH_NS + "shapes")
"""The SHACL shapes (``shapes/*.ttl``); never treated as data."""

CENTRAL_GRAPH = NamedNode(GRAPH_NS + "central")
"""Trains, stations, datasets, executions, states and lifecycle events kept by the central service."""


def station_graph(station_id: str) -> NamedNode:
    """The named graph holding the metadata one station's MPU pushed (one graph per station).

    >>> station_graph("aachen").value
    'https://w3id.org/pht-kg/graph/station/aachen'
    """
    if not station_id or not all(c.isalnum() or c in "-_." for c in station_id):
        raise ValueError(f"station id {station_id!r} must be non-empty and use only letters, digits, '-', '_' or '.'")
    return NamedNode(GRAPH_NS + "station/" + station_id)


class _Namespace:
    """Attribute access to IRIs of one namespace: ``PHT.Train`` is ``NamedNode(PHT_NS + 'Train')``."""

    def __init__(self, base: str) -> None:
        self._base = base

    def __getattr__(self, name: str) -> NamedNode:
        if name.startswith("__") or name.startswith("_base"):
            raise AttributeError(name)
        term = NamedNode(self._base + name)
        setattr(self, name, term)  # found as an ordinary attribute from now on (hot paths name terms often)
        return term

    def __getitem__(self, name: str) -> NamedNode:
        return NamedNode(self._base + name)

    def __str__(self) -> str:
        return self._base


PHT = _Namespace(PHT_NS)
XSD = _Namespace("http://www.w3.org/2001/XMLSchema#")
SH = _Namespace("http://www.w3.org/ns/shacl#")
RDF_TYPE = NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
RDFS_SUBCLASSOF = NamedNode("http://www.w3.org/2000/01/rdf-schema#subClassOf")

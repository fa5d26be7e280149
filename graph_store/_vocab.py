"""Namespaces, vocabulary terms and the named-graph layout shared by every component.

One stable namespace for the project vocabulary (``PHT``), the W3C and community vocabularies the code
writes and reads (``RDF_TYPE``, ``RDFS``, ``XSD``, ``SH``, ``DCTERMS``, ``PROV``, ``DCAT``, ``ORG``,
``UNIT``), the default base IRI of a deployment's own resources, and one place that says which named
graph holds what. Nothing else in the code base spells these IRIs.

>>> XSD.dateTime.value
'http://www.w3.org/2001/XMLSchema#dateTime'
>>> str(DCTERMS)
'http://purl.org/dc/terms/'
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pyoxigraph import NamedNode

__all__ = [
    "PHT",
    "PHT_NS",
    "GRAPH_NS",
    "ONTOLOGY_GRAPH",
    "SHAPES_GRAPH",
    "CENTRAL_GRAPH",
    "AUDIT_GRAPH",
    "DEFAULT_GRAPH",
    "SIZES_GRAPH",
    "station_graph",
    "station_of_graph",
    "validation_scope",
    "RDF_TYPE",
    "RDFS_SUBCLASSOF",
    "RDF_NS",
    "RDFS_NS",
    "XSD_NS",
    "SH_NS",
    "DCTERMS_NS",
    "PROV_NS",
    "DCAT_NS",
    "ORG_NS",
    "UNIT_NS",
    "VOID_NS",
    "RDFS",
    "XSD",
    "SH",
    "DCTERMS",
    "PROV",
    "DCAT",
    "ORG",
    "UNIT",
    "VOID",
    "DEFAULT_BASE_IRI",
    "PREFIXES",
]

PHT_NS = "https://w3id.org/pht-kg/vocab#"
"""The project vocabulary; versioned in ``ontology/pht.ttl`` and never fetched at run time."""

RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
RDFS_NS = "http://www.w3.org/2000/01/rdf-schema#"
XSD_NS = "http://www.w3.org/2001/XMLSchema#"
SH_NS = "http://www.w3.org/ns/shacl#"
DCTERMS_NS = "http://purl.org/dc/terms/"
PROV_NS = "http://www.w3.org/ns/prov#"
DCAT_NS = "http://www.w3.org/ns/dcat#"
ORG_NS = "http://www.w3.org/ns/org#"
UNIT_NS = "http://qudt.org/vocab/unit/"
"""QUDT units (``unit:PERCENT``, ``unit:BYTE``, ...)."""
VOID_NS = "http://rdfs.org/ns/void#"
"""VoID: ``void:triples``, the size of each named graph the store keeps in :data:`SIZES_GRAPH`."""

PREFIXES: Mapping[str, str] = MappingProxyType({
    "pht": PHT_NS, "prov": PROV_NS, "rdf": RDF_NS, "dcterms": DCTERMS_NS, "dcat": DCAT_NS, "unit": UNIT_NS,
    "xsd": XSD_NS,
})
"""Prefix to namespace, for showing IRIs compactly (``pht:Deny``) and reading them back; each prefix is
spelt as in ``ontology/pht.ttl``.

>>> PREFIXES["dcterms"]
'http://purl.org/dc/terms/'
"""

DEFAULT_BASE_IRI = "https://pht.example.org/id/"
"""Prefix of the IRIs a deployment mints for its own resources when none is configured
(``PHT_BASE_IRI`` for the central service, ``PHT_MPU_BASE_IRI`` for a station's MPU)."""

GRAPH_NS = "https://w3id.org/pht-kg/graph/"
"""Prefix of the named graphs of the layout below."""

ONTOLOGY_GRAPH = NamedNode(GRAPH_NS + "ontology")
"""The vocabulary (``ontology/*.ttl``) including the lifecycle state chart."""

SHAPES_GRAPH = NamedNode(GRAPH_NS + "shapes")
"""The SHACL shapes (``shapes/*.ttl``); never treated as data."""

CENTRAL_GRAPH = NamedNode(GRAPH_NS + "central")
"""Trains, stations, datasets, executions, states and lifecycle events kept by the central service."""


AUDIT_GRAPH = NamedNode(GRAPH_NS + "audit")
"""The record of operators' edits (``pht:GraphEditEvent``: who, when, what, how many quads per graph), written by the
central service in the same atomic write as each edit; no SPARQL Update or Graph Store Protocol write may touch it."""

DEFAULT_GRAPH = NamedNode(GRAPH_NS + "default")
"""Where the SPARQL default graph of the Graph Store Protocol (``?default``) and of SPARQL Update's ``DEFAULT`` is
stored: every statement lives in a named graph, and queries see the union of all graphs as their default graph."""

SIZES_GRAPH = NamedNode(GRAPH_NS + "sizes")
"""The store's own bookkeeping, not data: how many quads each other graph holds (``<graph> void:triples n``), kept
by every write in the same atomic request (``graph_store/_sizes.py``). No write, update or caller's view reaches it."""

_STATION_GRAPH_NS = GRAPH_NS + "station/"


def station_graph(station_id: str) -> NamedNode:
    """The named graph holding the metadata one station's MPU pushed (one graph per station).

    >>> station_graph("aachen").value
    'https://w3id.org/pht-kg/graph/station/aachen'
    """
    if not station_id or not all(c.isalnum() or c in "-_." for c in station_id):
        raise ValueError(f"station id {station_id!r} must be non-empty and use only letters, digits, '-', '_' or '.'")
    return NamedNode(_STATION_GRAPH_NS + station_id)


def station_of_graph(graph: object) -> str | None:
    """The station whose MPU writes ``graph`` (a station graph), else None.

    >>> station_of_graph(station_graph("aachen")), station_of_graph(CENTRAL_GRAPH)
    ('aachen', None)
    """
    if isinstance(graph, NamedNode) and graph.value.startswith(_STATION_GRAPH_NS):
        return graph.value[len(_STATION_GRAPH_NS):]
    return None


def validation_scope(graph: NamedNode) -> frozenset[NamedNode]:
    """The graphs the shapes see when a change writes ``graph``: that graph and the ontology (for the lifecycle
    chart's states and roles), and for a station graph also the central graph, read-only, for the trains,
    executions and stations its events and descriptions name. Never the other way round: what a station
    writes into its graph cannot change whether a write to the central graph conforms.

    >>> sorted(g.value.rsplit("/", 1)[-1] for g in validation_scope(station_graph("aachen")))
    ['aachen', 'central', 'ontology']
    """
    if station_of_graph(graph) is not None:
        return frozenset((graph, CENTRAL_GRAPH, ONTOLOGY_GRAPH))
    return frozenset((graph, ONTOLOGY_GRAPH))


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
RDFS = _Namespace(RDFS_NS)
XSD = _Namespace(XSD_NS)
SH = _Namespace(SH_NS)
DCTERMS = _Namespace(DCTERMS_NS)
PROV = _Namespace(PROV_NS)
DCAT = _Namespace(DCAT_NS)
ORG = _Namespace(ORG_NS)
UNIT = _Namespace(UNIT_NS)
VOID = _Namespace(VOID_NS)
RDF_TYPE = NamedNode(RDF_NS + "type")
RDFS_SUBCLASSOF = RDFS.subClassOf

"""The RDF graph store: the platform's system of record, whose every write is SHACL-validated.

Use :class:`EmbeddedStore` (pyoxigraph, the default) or :class:`RemoteStore` (any SPARQL 1.1 server);
both implement :class:`GraphStore`. Write with :meth:`GraphStore.apply` and a :class:`ChangeSet`, or with a
SPARQL update run as one (:meth:`GraphStore.apply_update`; :func:`compile_update` parses and checks it once).
"""

from ._changeset import ChangeSet
from ._embedded import EmbeddedStore
from ._errors import ConflictError, GraphStoreError, InvalidInputError, StoreUnavailable, ValidationFailed
from ._queries import NamedQuery, list_named_queries, named_query
from ._rdf_input import parse_rdf
from ._remote import RemoteStore
from ._report import ValidationReport, ValidationResult
from ._schema import Schema, load_schema
from ._sparql_text import bind
from ._store import GraphStore, QueryResult, UpdateOutcome, UpdatePlan
from ._updates import CompiledUpdate, compile_update
from ._validator import is_well_typed
from ._vocab import CENTRAL_GRAPH, ONTOLOGY_GRAPH, PHT, PHT_NS, SHAPES_GRAPH, station_graph

__all__ = [
    "CENTRAL_GRAPH",
    "ChangeSet",
    "CompiledUpdate",
    "ConflictError",
    "EmbeddedStore",
    "GraphStore",
    "GraphStoreError",
    "InvalidInputError",
    "NamedQuery",
    "ONTOLOGY_GRAPH",
    "PHT",
    "PHT_NS",
    "QueryResult",
    "RemoteStore",
    "SHAPES_GRAPH",
    "Schema",
    "StoreUnavailable",
    "UpdateOutcome",
    "UpdatePlan",
    "ValidationFailed",
    "ValidationReport",
    "ValidationResult",
    "bind",
    "compile_update",
    "is_well_typed",
    "list_named_queries",
    "load_schema",
    "named_query",
    "parse_rdf",
    "station_graph",
]

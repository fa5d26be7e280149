"""The RDF graph store: the platform's system of record, whose every write is SHACL-validated.

Use :class:`EmbeddedStore` (pyoxigraph, the default) or :class:`RemoteStore` (any SPARQL 1.1 server);
both implement :class:`GraphStore`. Write with :meth:`GraphStore.apply` and a :class:`ChangeSet`, or with a
SPARQL update run as one (:meth:`GraphStore.apply_update`; :func:`compile_update` parses and checks it once).
:func:`validate_unstored` validates data that is not stored (no store needed); ``REPO_ROOT`` and the
``*_DIR`` paths say where the vocabulary, shapes and named queries are read from. :func:`read_policy_document`
reads a station-side policy file (the station's and the MPU's) and raises :class:`PolicyError`. A caller's query
text goes through :meth:`GraphStore.query_untrusted` (on a remote store, re-serialised by :func:`reserialise_query`).
"""

from ._changeset import ChangeSet
from ._embedded import EmbeddedStore
from ._errors import (
    ConflictError,
    GraphStoreError,
    InputTooLarge,
    InvalidInputError,
    StoreUnavailable,
    ValidationFailed,
)
from ._gc import tune_garbage_collection
from ._iris import ResourceIris
from ._paths import ONTOLOGY_DIR, QUERIES_DIR, REPO_ROOT, SHAPES_DIR
from ._policy_document import PolicyDocument, PolicyError, read_policy_document
from ._queries import NO_FILTER, NamedQuery, list_named_queries, named_query
from ._rdf_input import parse_rdf
from ._remote import RemoteStore
from ._report import ValidationReport, ValidationResult
from ._schema import Schema, load_schema, validate_unstored
from ._signed_batch import (
    BATCH_HEADER,
    BATCH_MEDIA_TYPE,
    CREATED_HEADER,
    KEY_ID_HEADER,
    MAX_SEQUENCE,
    SEQUENCE_HEADER,
    SIGNATURE_HEADER,
    batch_headers,
    created_now,
    key_id,
    parse_sequence,
    sign_batch,
    signing_input,
    station_event_prefix,
    verify_batch,
)
from ._sparql_text import bind
from ._store import GraphStore, QueryResult, UpdateOutcome, UpdatePlan, UpdateWrite, server_graph_refusal
from ._untrusted_query import reserialise_query
from ._updates import CompiledUpdate, GraphOperation, compile_update
from ._validator import is_well_typed
from ._vocab import (
    AUDIT_GRAPH,
    CENTRAL_GRAPH,
    DCAT,
    DCTERMS,
    DEFAULT_BASE_IRI,
    DEFAULT_GRAPH,
    ONTOLOGY_GRAPH,
    ORG,
    PHT,
    PHT_NS,
    PREFIXES,
    PROV,
    RDF_TYPE,
    RDFS,
    SHAPES_GRAPH,
    SIZES_GRAPH,
    UNIT,
    XSD,
    station_graph,
    station_of_graph,
)

__all__ = [
    "AUDIT_GRAPH",
    "BATCH_HEADER",
    "BATCH_MEDIA_TYPE",
    "CENTRAL_GRAPH",
    "CREATED_HEADER",
    "ChangeSet",
    "CompiledUpdate",
    "ConflictError",
    "DCAT",
    "DCTERMS",
    "DEFAULT_BASE_IRI",
    "DEFAULT_GRAPH",
    "EmbeddedStore",
    "GraphOperation",
    "GraphStore",
    "GraphStoreError",
    "InputTooLarge",
    "InvalidInputError",
    "KEY_ID_HEADER",
    "MAX_SEQUENCE",
    "NO_FILTER",
    "NamedQuery",
    "ONTOLOGY_DIR",
    "ONTOLOGY_GRAPH",
    "ORG",
    "PHT",
    "PHT_NS",
    "PREFIXES",
    "PROV",
    "PolicyDocument",
    "PolicyError",
    "QUERIES_DIR",
    "QueryResult",
    "RDFS",
    "RDF_TYPE",
    "REPO_ROOT",
    "RemoteStore",
    "ResourceIris",
    "SEQUENCE_HEADER",
    "SHAPES_DIR",
    "SHAPES_GRAPH",
    "SIGNATURE_HEADER",
    "SIZES_GRAPH",
    "Schema",
    "StoreUnavailable",
    "UNIT",
    "UpdateOutcome",
    "UpdatePlan",
    "UpdateWrite",
    "ValidationFailed",
    "ValidationReport",
    "ValidationResult",
    "XSD",
    "batch_headers",
    "bind",
    "compile_update",
    "created_now",
    "is_well_typed",
    "key_id",
    "list_named_queries",
    "load_schema",
    "named_query",
    "parse_rdf",
    "parse_sequence",
    "read_policy_document",
    "reserialise_query",
    "server_graph_refusal",
    "sign_batch",
    "signing_input",
    "station_event_prefix",
    "station_graph",
    "station_of_graph",
    "tune_garbage_collection",
    "validate_unstored",
    "verify_batch",
]

"""The OpenAPI description of ``/sparql`` and ``/rdf-graphs``: parameters, request bodies, media types.

Both endpoints read their parameters and bodies from the raw request (the protocols repeat parameters, mix
URL and form fields and take bodies in several media types, which FastAPI's signature-driven parsing cannot
express), so FastAPI documents nothing by itself. These ``openapi_extra`` fragments say what the handlers
read, so that a client generator or a schema-driven fuzzer (``tests/test_schemathesis.py``) can reach them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["GSP_READ", "SPARQL_GET", "SPARQL_POST", "gsp_write"]

_IRI = {"type": "string", "format": "iri", "examples": ["https://w3id.org/pht-kg/graph/central"]}
_IRIS = {"type": "array", "items": _IRI}
_QUERY = {"type": "string", "examples": ["SELECT ?s WHERE { ?s ?p ?o } LIMIT 1", "ASK { ?s ?p ?o }",
                                         "CONSTRUCT WHERE { ?s ?p ?o } LIMIT 1"]}
_UPDATE = {"type": "string", "examples": ["INSERT DATA { GRAPH <https://example.org/g> { <urn:a> <urn:b> 1 } }"]}


def _param(name: str, schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description,
            **({"style": "form", "explode": True} if schema.get("type") == "array" else {})}


_DATASET = [
    _param("default-graph-uri", _IRIS, "A graph of the query's default graph (repeatable); with "
                                       "named-graph-uri, replaces the query's FROM / FROM NAMED."),
    _param("named-graph-uri", _IRIS, "A named graph of the query's dataset (repeatable)."),
]
_USING = [
    _param("using-graph-uri", _IRIS, "A graph of the update's WHERE default graph (repeatable), like USING."),
    _param("using-named-graph-uri", _IRIS, "A named graph of the update's WHERE (repeatable), like USING NAMED."),
]

SPARQL_GET: dict[str, Any] = {
    "description": "A SPARQL 1.1 query in `query`; results are negotiated from Accept: SELECT / ASK as SPARQL "
                   "JSON (default), XML, CSV or TSV; CONSTRUCT / DESCRIBE as Turtle (default), N-Triples, "
                   "JSON-LD or RDF/XML. Without `query`, the SPARQL Service Description.",
    "parameters": [_param("query", _QUERY, "The SPARQL 1.1 query."), *_DATASET],
}
"""``openapi_extra`` of ``GET /sparql``."""

SPARQL_POST: dict[str, Any] = {
    "description": "A query (form field `query` or an `application/sparql-query` body) or an update "
                   "(operators only: form field `update` or an `application/sparql-update` body), with the "
                   "dataset in the URL or the form.",
    "parameters": [*_DATASET, *_USING],
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"query": _QUERY, "update": _UPDATE, "default-graph-uri": _IRIS,
                                   "named-graph-uri": _IRIS, "using-graph-uri": _IRIS,
                                   "using-named-graph-uri": _IRIS},
                    "description": "Exactly one of `query` and `update`.",
                },
                "encoding": {name: {"style": "form", "explode": True}
                             for name in ("default-graph-uri", "named-graph-uri", "using-graph-uri",
                                          "using-named-graph-uri")},
            },
            "application/sparql-query": {"schema": _QUERY},
            "application/sparql-update": {"schema": _UPDATE},
        },
    },
}
"""``openapi_extra`` of ``POST /sparql``."""

_TARGET = [
    _param("graph", _IRI, "The graph's IRI (indirect identification); give it or `default`."),
    {"name": "default", "in": "query", "required": False, "allowEmptyValue": True,
     "schema": {"type": "string", "enum": [""]}, "description": "Names the default graph instead of `graph`."},
]

GSP_READ: dict[str, Any] = {"parameters": _TARGET}
"""``openapi_extra`` of ``GET``, ``HEAD`` and ``DELETE /rdf-graphs``."""

GSP_READ_DIRECT: dict[str, Any] = {"parameters": []}
"""``openapi_extra`` of ``GET``, ``HEAD`` and ``DELETE /rdf-graphs/{path}`` (the path names the graph; FastAPI
documents ``path`` itself)."""

_RDF_BODY = {"type": "string", "examples": ["<urn:s> <urn:p> <urn:o> ."]}

def gsp_write(media_types: Iterable[str], *, direct: bool = False) -> dict[str, Any]:
    """``openapi_extra`` of ``PUT`` and ``POST /rdf-graphs`` (``/rdf-graphs/{path}`` if ``direct``): a body in
    one of ``media_types``, or multipart/form-data with such a graph in each part."""
    return {
        "parameters": [] if direct else _TARGET,
        "requestBody": {
            "required": True,
            "content": {
                **{media: {"schema": _RDF_BODY} for media in media_types},
                "multipart/form-data": {
                    "schema": {"type": "object", "additionalProperties": {"type": "string", "format": "binary"},
                               "description": "Each part a graph in one of the RDF media types."},
                },
            },
        },
    }

"""JSON Schemas of the documents researchers write: a train definition and a train file (docs/train-definition.md).

Generated from the request models the API validates with (``DefinitionIn``, ``TrainIn``), so the served schema,
the OpenAPI document and the API's own checks come from one source. What the models do not check themselves
(the image name and digest patterns, which the SHACL shapes enforce; a federated definition's aggregator, which
the registry checks) is declared on the models as schema-only keywords.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .models import DefinitionIn, TrainIn

__all__ = ["CONTRACT_VERSION", "SCHEMAS", "json_schema"]

CONTRACT_VERSION = 1
"""The train definition contract's version: raised when a document valid before would be refused or read
differently; the ``$id`` of every schema carries it."""

SCHEMAS: dict[str, tuple[type[BaseModel], str]] = {
    "train-definition": (DefinitionIn, "PHT-KG train definition"),
    "train-file": (TrainIn, "PHT-KG train file (the body of POST /api/trains, read by pht train submit FILE)"),
}
"""Schema name (its URL path segment) -> (model, title)."""


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) called ``name`` (a key of :data:`SCHEMAS`), with a versioned ``$id``."""
    model, title = SCHEMAS[name]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://w3id.org/pht-kg/schemas/{name}/v{CONTRACT_VERSION}",
            **model.model_json_schema(), "title": f"{title}, version {CONTRACT_VERSION}"}

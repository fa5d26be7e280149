"""The DSP JSON bodies this connector builds (compact JSON-LD under the DSP 2025-1 context)."""

from __future__ import annotations

from typing import Any

from ._records import PublishedResult
from ._vocab import DSP_CONTEXT, HTTP_ENDPOINT_TYPE, PULL, PUSH

__all__ = ["ERROR_TYPES", "PROV_DERIVED_FROM", "SHA256_KEY", "catalog", "data_address", "dataset", "error",
           "message", "offer"]

SHA256_KEY = "https://w3id.org/pht-kg/vocab#sha256"
PROV_DERIVED_FROM = "http://www.w3.org/ns/prov#wasDerivedFrom"
ERROR_TYPES = {"catalog": "CatalogError", "negotiation": "ContractNegotiationError", "transfer": "TransferError"}


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A DSP message of ``@type`` ``kind`` with ``fields`` (None values left out)."""
    return {"@context": DSP_CONTEXT, "@type": kind, **{k: v for k, v in fields.items() if v is not None}}


def offer(result: PublishedResult, *, target: bool = False) -> dict[str, Any]:
    """The ODRL offer of a published result (with ``target`` for a request message, without in a catalog)."""
    body: dict[str, Any] = {"@id": result.offer, "@type": "Offer", **result.policy.to_odrl()}
    if target:
        body["target"] = result.iri.value
    return body


def dataset(result: PublishedResult, service_id: str, *, root: bool = False) -> dict[str, Any]:
    """A published result as a DCAT Dataset with its offer, both transfer formats, size, digest and provenance."""
    body: dict[str, Any] = {
        "@id": result.iri.value, "@type": "Dataset", "title": result.title,
        "hasPolicy": [offer(result)],
        "distribution": [{"@type": "Distribution", "format": f, "accessService": service_id} for f in (PULL, PUSH)],
        "dcat:byteSize": result.size, SHA256_KEY: result.sha256, PROV_DERIVED_FROM: {"@id": result.train},
    }
    return {"@context": DSP_CONTEXT, **body} if root else body


def catalog(*, catalog_id: str, participant: str, service_id: str, endpoint: str,
            results: list[PublishedResult]) -> dict[str, Any]:
    """The connector's catalog: its data service and its published results (no ``dataset`` key when empty:
    the schema wants at least one)."""
    body = message("Catalog", participantId=participant,
                   service=[{"@id": service_id, "@type": "DataService", "endpointURL": endpoint}])
    body["@id"] = catalog_id
    if results:
        body["dataset"] = [dataset(r, service_id) for r in results]
    return body


def data_address(endpoint: str, token: str) -> dict[str, Any]:
    """An HTTP data address with a bearer token."""
    return {"@type": "DataAddress", "endpointType": HTTP_ENDPOINT_TYPE, "endpoint": endpoint,
            "endpointProperties": [{"@type": "EndpointProperty", "name": "authorization", "value": token},
                                   {"@type": "EndpointProperty", "name": "authType", "value": "bearer"}]}


def error(family: str, reason: str, *, code: str, provider_pid: str = "", consumer_pid: str = "") -> dict[str, Any]:
    """The DSP error of ``family`` (catalog, negotiation, transfer) with one reason."""
    if family == "catalog":
        return message("CatalogError", code=code, reason=[reason])
    return message(ERROR_TYPES[family], providerPid=provider_pid, consumerPid=consumer_pid, code=code,
                   reason=[reason])

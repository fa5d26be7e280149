"""Every DSP message we send or accept, checked against the Dataspace Protocol 2025-1 JSON Schemas.

The official schemas (``dataspace/dsp/``, copied unchanged from the protocol's repository, Apache-2.0) are
loaded into one registry under their ``$id``s, so their cross-file ``$ref``s resolve offline (never fetched).
Validated with ``jsonschema-rs``: the Python ``jsonschema`` took 7 s for a catalog of 1,000 datasets (the
schemas' nested ``oneOf``s), jsonschema-rs 2 ms (``docs/dataspace.md``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema_rs import Draft201909Validator, Registry

__all__ = ["DSP_DIR", "MESSAGE_SCHEMAS", "MessageInvalid", "validate_message"]

DSP_DIR = Path(__file__).parent / "dsp"

# message @type -> its schema file (relative to DSP_DIR)
MESSAGE_SCHEMAS: dict[str, str] = {
    "CatalogRequestMessage": "catalog/catalog-request-message-schema.json",
    "DatasetRequestMessage": "catalog/dataset-request-message-schema.json",
    "Catalog": "catalog/catalog-schema.json",
    "Dataset": "catalog/dataset-schema.json",
    "CatalogError": "catalog/catalog-error-schema.json",
    "ContractRequestMessage": "negotiation/contract-request-message-schema.json",
    "ContractOfferMessage": "negotiation/contract-offer-message-schema.json",
    "ContractAgreementMessage": "negotiation/contract-agreement-message-schema.json",
    "ContractAgreementVerificationMessage": "negotiation/contract-agreement-verification-message-schema.json",
    "ContractNegotiationEventMessage": "negotiation/contract-negotiation-event-message-schema.json",
    "ContractNegotiationTerminationMessage": "negotiation/contract-negotiation-termination-message-schema.json",
    "ContractNegotiation": "negotiation/contract-negotiation-schema.json",
    "ContractNegotiationError": "negotiation/contract-negotiation-error-schema.json",
    "TransferRequestMessage": "transfer/transfer-request-message-schema.json",
    "TransferStartMessage": "transfer/transfer-start-message-schema.json",
    "TransferCompletionMessage": "transfer/transfer-completion-message-schema.json",
    "TransferSuspensionMessage": "transfer/transfer-suspension-message-schema.json",
    "TransferTerminationMessage": "transfer/transfer-termination-message-schema.json",
    "TransferProcess": "transfer/transfer-process-schema.json",
    "TransferError": "transfer/transfer-error-schema.json",
}


class MessageInvalid(ValueError):
    """A message that is not the DSP message it claims (or is expected) to be; ``str()`` is one sentence."""


def _load(path: Path) -> Any:
    """A schema file, its one known defect mended: the transfer schemas write ``#definitions/X`` where a JSON
    Pointer needs ``#/definitions/X`` (the 2025-1 release as published; ``referencing`` rightly refuses it)."""
    return json.loads(path.read_text(encoding="utf-8").replace('#definitions/', '#/definitions/'))


@lru_cache(maxsize=1)
def _registry() -> Registry:
    schemas = [_load(path) for path in sorted(DSP_DIR.rglob("*-schema.json"))]
    return Registry([(schema["$id"], schema) for schema in schemas])


@lru_cache(maxsize=None)
def _validator(message_type: str) -> Draft201909Validator:
    schema = _load(DSP_DIR / MESSAGE_SCHEMAS[message_type])
    return Draft201909Validator(schema, registry=_registry(), offline=True)


def validate_message(message: object, expected: str | tuple[str, ...]) -> dict[str, Any]:
    """Return ``message`` if it is one of the ``expected`` DSP message types and valid against its schema.

    Why one gate: every message in and out passes here, so nothing unchecked reaches the state machines or
    leaves the connector.

    :raises MessageInvalid: not an object, another ``@type``, or a schema violation (the first, as a sentence).

    >>> validate_message({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
    ...                   "@type": "CatalogRequestMessage"}, "CatalogRequestMessage")["@type"]
    'CatalogRequestMessage'
    """
    allowed = (expected,) if isinstance(expected, str) else expected
    if not isinstance(message, dict):
        raise MessageInvalid("The body is not a JSON object.")
    kind = message.get("@type")
    if kind not in allowed:
        raise MessageInvalid(f"Expected a {' or '.join(allowed)}, got @type {kind!r}.")
    error = next(_validator(kind).iter_errors(message), None)
    if error is not None:
        where = "/".join(str(p) for p in error.instance_path) or "the message"
        raise MessageInvalid(f"The {kind} is invalid at {where}: {error.message[:300]}.")
    return message

"""A Dataspace Protocol (DSP 2025-1) connector: released results offered in a data space, and data obtained
from one.

A researcher publishes a result they decrypted (:meth:`Provider.publish`) under an ODRL :class:`Policy`; other
participants ask the catalog, negotiate and obtain it by pull or push (:class:`Consumer`); every message in and
out is checked against the official DSP JSON Schemas (:func:`validate_message`); every process is RDF in the
connector's graph, advanced along the charts of ``ontology/dataspace.ttl`` by guarded, SHACL-validated writes.
Serve it with :func:`connector_app`; a station obtains datasets for a train with :class:`DataspaceConsumer`.
"""

from ._admin import admin_router
from ._app import connector_app
from ._connector import Connector
from ._consumer import Consumer, TransferFailed
from ._core import ConnectorSettings, ProtocolError
from ._identity import IdentityIssuer, IdentityRefused, TrustedIssuers
from ._obtain import ConsumerSettings, DataspaceConsumer
from ._policy import Claims, Constraint, Policy, PolicyInvalid
from ._provider import Provider
from ._records import PublishedResult
from ._schemas import DSP_DIR, MESSAGE_SCHEMAS, MessageInvalid, validate_message
from ._settings import ServiceSettings
from ._vocab import DATASPACE_GRAPH, MEMBER_OF, PULL, PUSH

__all__ = [
    "Claims",
    "Connector",
    "ConnectorSettings",
    "Constraint",
    "Consumer",
    "ConsumerSettings",
    "DATASPACE_GRAPH",
    "DSP_DIR",
    "DataspaceConsumer",
    "IdentityIssuer",
    "IdentityRefused",
    "MEMBER_OF",
    "MESSAGE_SCHEMAS",
    "MessageInvalid",
    "PULL",
    "PUSH",
    "Policy",
    "PolicyInvalid",
    "ProtocolError",
    "Provider",
    "PublishedResult",
    "ServiceSettings",
    "TransferFailed",
    "TrustedIssuers",
    "admin_router",
    "connector_app",
    "validate_message",
]

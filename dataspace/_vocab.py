"""The terms a connector writes and the DSP JSON-LD context it speaks (ontology/dataspace.ttl)."""

from __future__ import annotations

from pyoxigraph import NamedNode

from graph_store import PHT

__all__ = [
    "CONSUMER", "DATASPACE_GRAPH", "DSP_CONTEXT", "MEMBER_OF", "NEGOTIATION", "ODRL", "ODRL_NS", "PROVIDER",
    "TRANSFER", "HTTP_ENDPOINT_TYPE", "PULL", "PUSH",
]

DATASPACE_GRAPH = NamedNode("https://w3id.org/pht-kg/graph/dataspace")
"""A connector's own named graph: its published results, processes, agreements and token digests."""

ODRL_NS = "http://www.w3.org/ns/odrl/2/"


class _Odrl:
    """ODRL terms as ``ODRL.permission`` (pyoxigraph NamedNodes)."""

    def __getattr__(self, name: str) -> NamedNode:
        return NamedNode(ODRL_NS + name)


ODRL = _Odrl()

DSP_CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]
MEMBER_OF = PHT.memberOf.value
"""The ODRL left operand "member of a consortium" (ODRL has none); its right operand is the consortium's IRI."""
HTTP_ENDPOINT_TYPE = "https://w3id.org/idsa/v4.1/HTTP"
PULL = "HttpData-PULL"
PUSH = "HttpData-PUSH"

NEGOTIATION = PHT.ContractNegotiation
TRANSFER = PHT.TransferProcess
PROVIDER = PHT.ProviderRole
CONSUMER = PHT.ConsumerRole

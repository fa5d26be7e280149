"""How a deployment names its resources under its base IRI: ``{base}{kind}/{id}``, the id percent-encoded.

The central service mints these IRIs and each station's MPU must write the very same ones (``pht:aboutTrain``,
``pht:aboutExecution``, ``prov:wasAssociatedWith``), so both use :class:`ResourceIris`.

>>> iris = ResourceIris("https://pht.example.org/id/")
>>> iris.train("3f2c").value
'https://pht.example.org/id/trains/3f2c'
>>> iris.agent("dora@example.org").value
'https://pht.example.org/id/agents/dora%40example.org'
>>> iris.local(iris.execution("3f2c.r1-s0"), "executions")
'3f2c.r1-s0'
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from pyoxigraph import NamedNode

__all__ = ["ResourceIris"]


@dataclass(frozen=True)
class ResourceIris:
    """The IRIs of a deployment's stations, datasets, train definitions, trains, executions, outputs and agents."""

    base: str

    def _mint(self, kind: str, local_id: str) -> NamedNode:
        return NamedNode(f"{self.base}{kind}/{quote(local_id, safe='')}")

    def station(self, sid: str) -> NamedNode:
        return self._mint("stations", sid)

    def dataset(self, did: str) -> NamedNode:
        return self._mint("datasets", did)

    def definition(self, did: str) -> NamedNode:
        return self._mint("definitions", did)

    def train(self, tid: str) -> NamedNode:
        return self._mint("trains", tid)

    def execution(self, eid: str) -> NamedNode:
        return self._mint("executions", eid)

    def output(self, eid: str) -> NamedNode:
        return self._mint("outputs", eid)

    def agent(self, subject: str) -> NamedNode:
        return self._mint("agents", subject)

    def local(self, iri: NamedNode, kind: str) -> str:
        """The identifier part of ``iri`` for ``kind`` (``"trains"``...)."""
        prefix = f"{self.base}{kind}/"
        return iri.value[len(prefix):] if iri.value.startswith(prefix) else iri.value

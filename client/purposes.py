"""The research purposes and data-use terms the platform accepts: a vetted subset of the Data Use Ontology (DUO).

``ontology/duo.ttl`` holds the DUO terms a train may declare as its purpose (``pht:purpose``) and a station may
give its dataset (``pht:dataUse``), with DUO's labels and the part of DUO's class hierarchy between them. A purpose
is allowed by a data-use term when it is that term or a narrower one (``rdfs:subClassOf``, transitively): a
dataset for general research use (DUO_0000042) allows disease specific research (DUO_0000007), not the reverse.
The central service refuses a purpose not in the list at submission; a station refuses one it does not know.

>>> duo = data_use_terms()
>>> duo.label(DUO + "0000007")
'disease specific research'
>>> duo.allows(DUO + "0000042", DUO + "0000007"), duo.allows(DUO + "0000007", DUO + "0000042")
(True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from pyoxigraph import Literal, NamedNode, RdfFormat, parse

from graph_store import ONTOLOGY_DIR

__all__ = ["DUO", "DataUseTerms", "data_use_terms"]

DUO = "http://purl.obolibrary.org/obo/DUO_"
"""The prefix of DUO's term IRIs."""

_SUBCLASS = NamedNode("http://www.w3.org/2000/01/rdf-schema#subClassOf")
_LABEL = NamedNode("http://www.w3.org/2000/01/rdf-schema#label")


@dataclass(frozen=True)
class DataUseTerms:
    """The vetted DUO terms: their labels and direct broader terms, by IRI."""

    labels: Mapping[str, str]
    broader: Mapping[str, frozenset[str]]

    def known(self, term: str) -> bool:
        """Whether ``term`` is one of the vetted DUO terms."""
        return term in self.labels

    def label(self, term: str) -> str:
        """``term``'s DUO label, or the IRI itself if it is not vetted."""
        return self.labels.get(term, term)

    def narrower_or_same(self, term: str, ancestor: str) -> bool:
        """Whether ``term`` is ``ancestor`` or, through DUO's hierarchy, a narrower term of it."""
        seen, todo = set(), [term]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current not in seen:
                seen.add(current)
                todo.extend(self.broader.get(current, ()))
        return False

    def allows(self, data_use: str, purpose: str) -> bool:
        """Whether a dataset whose data use is ``data_use`` may be used for ``purpose`` (both vetted)."""
        return self.known(purpose) and self.known(data_use) and self.narrower_or_same(purpose, data_use)


@cache
def data_use_terms() -> DataUseTerms:
    """The vetted terms, read once from ``ontology/duo.ttl``."""
    labels: dict[str, str] = {}
    broader: dict[str, set[str]] = {}
    for t in parse(path=str(ONTOLOGY_DIR / "duo.ttl"), format=RdfFormat.TURTLE):
        subject = t.subject.value
        if not subject.startswith(DUO):
            continue
        if t.predicate == _LABEL and isinstance(t.object, Literal):
            labels[subject] = t.object.value
        elif t.predicate == _SUBCLASS and isinstance(t.object, NamedNode):
            broader.setdefault(subject, set()).add(t.object.value)
    return DataUseTerms(labels, {k: frozenset(v) for k, v in broader.items()})

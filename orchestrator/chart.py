"""The lifecycle state chart, read from ``ontology/lifecycle.ttl`` (the RDF is the source of truth; this is
an index of it for quick checks and clear 409 messages before the guarded update runs)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import rdflib
from pyoxigraph import NamedNode

from graph_store import DCTERMS, PHT_NS, load_schema

from .principal import Role

__all__ = ["Chart", "Kind", "load_chart"]

Kind = str
"""``"train"`` or ``"execution"``: which chart."""

_P = rdflib.Namespace(PHT_NS)
_DCT_ID = rdflib.URIRef(DCTERMS.identifier.value)
_KINDS = {"train": _P.Train, "execution": _P.Execution}


@dataclass(frozen=True)
class Chart:
    """States by token (``"waiting-for-approval"``) and IRI, transitions with the roles that may fire them."""

    state_by_token: dict[str, NamedNode]
    token_by_state: dict[NamedNode, str]
    terminal: frozenset[NamedNode]
    initial: dict[Kind, NamedNode]
    transitions: dict[tuple[Kind, NamedNode, NamedNode], frozenset[NamedNode]]
    """(kind, from, to) -> role IRIs allowed to fire it."""

    def state(self, token: str) -> NamedNode:
        """The state IRI of a token; KeyError with the known tokens if unknown."""
        try:
            return self.state_by_token[token]
        except KeyError:
            raise KeyError(f"unknown state {token!r}; known: {', '.join(sorted(self.state_by_token))}") from None

    def token(self, state: NamedNode) -> str:
        return self.token_by_state.get(state, state.value)

    def allows(self, kind: Kind, frm: NamedNode, to: NamedNode) -> frozenset[NamedNode] | None:
        """The roles that may fire ``frm -> to`` in the ``kind`` chart, or None if there is no such transition."""
        return self.transitions.get((kind, frm, to))

    def role_for(self, kind: Kind, frm: NamedNode, to: NamedNode, roles: frozenset[Role]) -> NamedNode | None:
        """The role (IRI) in which a caller holding ``roles`` may fire the transition, or None."""
        allowed = self.allows(kind, frm, to) or frozenset()
        for role in sorted(roles, key=lambda r: r.value):
            if role.iri in allowed:
                return role.iri
        return None

    def next_states(self, kind: Kind, frm: NamedNode) -> list[str]:
        return sorted(self.token(to) for (k, f, to) in self.transitions if k == kind and f == frm)


@lru_cache(maxsize=1)
def load_chart() -> Chart:
    """Index the chart of the project's ontology (cached)."""
    g = load_schema().ontology
    by_token: dict[str, NamedNode] = {}
    for state in g.subjects(rdflib.RDF.type, _P.State):
        by_token[str(g.value(state, _DCT_ID))] = NamedNode(str(state))
    terminal = frozenset(NamedNode(str(s)) for s in g.subjects(_P.isTerminal, rdflib.Literal(True)))
    initial = {kind: NamedNode(str(g.value(None, _P.initialStateOf, cls))) for kind, cls in _KINDS.items()}
    kind_of: dict[rdflib.term.Node | None, Kind] = {cls: kind for kind, cls in _KINDS.items()}
    transitions: dict[tuple[Kind, NamedNode, NamedNode], frozenset[NamedNode]] = {}
    for t in g.subjects(rdflib.RDF.type, _P.Transition):
        key = (kind_of[g.value(t, _P.appliesTo)], NamedNode(str(g.value(t, _P["from"]))),
               NamedNode(str(g.value(t, _P.to))))
        transitions[key] = frozenset(NamedNode(str(r)) for r in g.objects(t, _P.firedBy))
    return Chart(by_token, {v: k for k, v in by_token.items()}, terminal, initial, transitions)

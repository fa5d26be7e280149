"""The result of validating a change set: SHACL results plus the vocabulary check.

A report is plain data so that the REST layer can return it as JSON (HTTP 422) and the CLI can print it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyoxigraph import BlankNode, Literal, NamedNode, Triple

from ._vocab import SH_NS

__all__ = ["ValidationResult", "ValidationReport", "PathTerm"]

PathTerm = NamedNode | tuple[str, NamedNode] | None
"""A property path: a predicate, ``("inverse", predicate)``, or None for node-shape constraints."""



def _term_text(term: object) -> str | None:
    if term is None:
        return None
    if isinstance(term, NamedNode):
        return term.value
    if isinstance(term, tuple):
        return "^" + str(term[1].value)
    if isinstance(term, (Literal, BlankNode)):
        return str(term)
    return str(term)


@dataclass(frozen=True)
class ValidationResult:
    """One violation: which node, along which path, which value, which shape and constraint, and why."""

    focus_node: NamedNode | BlankNode | Literal | Triple  # a literal when a nested shape (sh:node) checks one
    path: PathTerm
    value: NamedNode | BlankNode | Literal | Triple | None
    source_shape: NamedNode | BlankNode
    component: NamedNode
    severity: NamedNode
    message: str

    @property
    def component_name(self) -> str:
        """The constraint component's local name, e.g. ``MinCountConstraintComponent``."""
        return self.component.value.removeprefix(SH_NS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (IRIs as strings, literals in N-Triples form)."""
        return {
            "focusNode": _term_text(self.focus_node),
            "resultPath": _term_text(self.path),
            "value": _term_text(self.value),
            "sourceShape": _term_text(self.source_shape),
            "sourceConstraintComponent": self.component_name,
            "severity": self.severity.value.removeprefix(SH_NS),
            "message": self.message,
        }

    def text(self) -> str:
        """One line a person can read."""
        where = f" {_term_text(self.path)}" if self.path is not None else ""
        value = f" (value {_term_text(self.value)})" if self.value is not None else ""
        return f"<{_term_text(self.focus_node)}>{where}: {self.message}{value} [{self.component_name}]"


@dataclass(frozen=True)
class ValidationReport:
    """All results of one validation. ``conforms`` is False if any result has severity sh:Violation."""

    results: tuple[ValidationResult, ...] = ()
    focus_nodes_checked: int = 0

    @property
    def conforms(self) -> bool:
        return not any(r.severity.value == SH_NS + "Violation" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"conforms": self.conforms, "results": [r.to_dict() for r in self.results]}

    def text(self) -> str:
        if not self.results:
            return "conforms"
        lines = [f"{len(self.results)} SHACL result(s):"]
        lines += ["  " + r.text() for r in self.results]
        return "\n".join(lines)

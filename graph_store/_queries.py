"""Named SPARQL queries and updates, kept as ``.rq`` files in ``sparql_queries/`` and loaded by name.

A file's leading ``#`` comment lines are its documentation; its ``$name`` tokens are its parameters,
bound as RDF terms by :func:`._sparql_text.bind`. Whether it is a query or an update is read from its
first keyword.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pyoxigraph import NamedNode

from ._errors import InvalidInputError
from ._paths import QUERIES_DIR
from ._sparql_text import parameters_of, tokens

__all__ = ["NamedQuery", "named_query", "list_named_queries", "NO_FILTER"]

NO_FILTER = NamedNode("urn:pht:any")
"""Bound to a named query's optional filter parameter (``$onlyRequester``, ``$onlyState``): no filter."""

_QUERY_FORMS = {"SELECT", "ASK", "CONSTRUCT", "DESCRIBE"}
_UPDATE_FORMS = {"INSERT", "DELETE", "WITH", "LOAD", "CLEAR", "CREATE", "DROP", "COPY", "MOVE", "ADD"}


@dataclass(frozen=True)
class NamedQuery:
    """A ``.rq`` file: its name, text, parameters, whether it is an update, and its documentation."""

    name: str
    text: str
    parameters: frozenset[str]
    is_update: bool
    description: str


def _form(text: str, name: str) -> bool:
    for kind, s, e in tokens(text):
        if kind == "word":
            word = text[s:e].upper()
            if word in ("PREFIX", "BASE"):
                continue
            if word in _QUERY_FORMS:
                return False
            if word in _UPDATE_FORMS:
                return True
    raise InvalidInputError(f"{name}.rq is neither a SPARQL query nor an update")


def _load(path: Path) -> NamedQuery:
    text = path.read_text(encoding="utf-8")
    doc = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        doc.append(line.lstrip("#").strip())
    return NamedQuery(path.stem, text, parameters_of(text), _form(text, path.stem), "\n".join(doc).strip())


@lru_cache(maxsize=None)
def _all(directory: Path) -> dict[str, NamedQuery]:
    return {p.stem: _load(p) for p in sorted(directory.glob("*.rq"))}


def named_query(name: str, directory: Path = QUERIES_DIR) -> NamedQuery:
    """The named query ``name`` (file ``name.rq``). Raises InvalidInputError for an unknown name."""
    queries = _all(directory)
    if name not in queries:
        known = ", ".join(sorted(queries)) or "none"
        raise InvalidInputError(f"no SPARQL query named {name!r} in {directory} (known: {known})")
    return queries[name]


def list_named_queries(directory: Path = QUERIES_DIR) -> list[NamedQuery]:
    """Every named query, sorted by name."""
    return list(_all(directory).values())

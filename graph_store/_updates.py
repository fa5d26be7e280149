"""SPARQL updates as validated change sets.

The store's only write path is :meth:`GraphStore.apply` (validate, then commit atomically). A SPARQL update
(a named ``.rq`` file or an operator's request) is therefore not executed as such: its WHERE clause is run
as a SELECT, its DELETE/INSERT templates are instantiated with each solution, and the resulting concrete
quads become a :class:`ChangeSet` — validated like any other write, committed in one request, guarded by
the quads it deletes. The update text is parsed once (rdflib's SPARQL parser) and cached.

Supported: one ``DELETE {…} INSERT {…} WHERE {…}`` (either template may be absent), one ``DELETE WHERE
{…}``, or any sequence of ``INSERT DATA`` / ``DELETE DATA``. Every template quad must name its graph
(``GRAPH … { }``); blank nodes, ``WITH`` and ``USING`` are refused with a sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import rdflib
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Variable
from pyparsing import ParseException
from rdflib.plugins.sparql.algebra import translateUpdate
from rdflib.plugins.sparql.parser import parseUpdate

from ._changeset import ChangeSet
from ._convert import to_oxi
from ._errors import InvalidInputError
from ._sparql_text import parameters_of, tokens

__all__ = ["CompiledUpdate", "compile_update"]

TemplateTerm = rdflib.term.Identifier  # rdflib Variable, URIRef or Literal
Template = tuple[TemplateTerm, TemplateTerm, TemplateTerm, TemplateTerm]


@dataclass(frozen=True)
class CompiledUpdate:
    """An update reduced to: the WHERE pattern (text, or None for DATA operations) and quad templates."""

    text: str
    prologue: str
    where: str | None
    delete: tuple[Template, ...]
    insert: tuple[Template, ...]
    parameters: frozenset[str]

    def select_text(self) -> str | None:
        """``SELECT * WHERE {…}`` for the WHERE pattern, with the update's prefixes."""
        return None if self.where is None else f"{self.prologue}\nSELECT * WHERE {self.where}"

    def change_set(self, solutions: list[Callable[[str], Any]], bindings: Mapping[str, Any]) -> ChangeSet:
        """Instantiate the templates with each solution (``lookup(name) -> term | None``)."""
        delete = list(_instantiate(self.delete, solutions, bindings))
        insert = list(_instantiate(self.insert, solutions, bindings))
        return ChangeSet(delete=delete, insert=insert)


def _templates(clause: Any, what: str) -> list[Template]:
    if clause is None:
        return []
    if "triples" in clause and clause["triples"]:
        raise InvalidInputError(f"the {what} template writes the default graph; put its triples in GRAPH <…> {{ }}")
    out: list[Template] = []
    for graph, triples in (clause["quads"] if "quads" in clause else {}).items():
        for s, p, o in triples:
            for term in (s, p, o, graph):
                if isinstance(term, rdflib.BNode):
                    raise InvalidInputError(f"the {what} template uses a blank node; give the resource an IRI")
            out.append((s, p, o, graph))
    return out


def _split(text: str) -> tuple[str, str | None]:
    """The prologue (PREFIX/BASE declarations) and the text of the top-level WHERE group, if any."""
    prologue_end = None
    depth = 0
    where_start = None
    for kind, s, e in tokens(text):
        if kind == "word" and depth == 0:
            word = text[s:e].upper()
            if prologue_end is None and word not in ("PREFIX", "BASE") and not text[s:e].endswith(":"):
                if word in ("DELETE", "INSERT", "WITH"):
                    prologue_end = s
            if word == "WHERE":
                where_start = e
        elif kind == "{":
            if depth == 0 and where_start is not None and text[where_start:s].strip() == "":
                where_start = s
            depth += 1
        elif kind == "}":
            depth -= 1
            if depth == 0 and where_start is not None and text[where_start] == "{":
                return text[:prologue_end or 0], text[where_start:e]
    return text[:prologue_end or 0], None


@lru_cache(maxsize=256)
def compile_update(text: str) -> CompiledUpdate:
    """Parse ``text`` (``$name`` parameters allowed) into a :class:`CompiledUpdate`; cached by text.

    Raises InvalidInputError for malformed or unsupported updates, naming the problem.
    """
    try:
        algebra = translateUpdate(parseUpdate(text)).algebra
    except ParseException as e:
        raise InvalidInputError(f"malformed SPARQL update: {e}") from None
    except Exception as e:  # rdflib raises assorted errors for semantically invalid updates
        raise InvalidInputError(f"malformed SPARQL update: {e}") from None
    names = [op.name for op in algebra]
    prologue, where = _split(text)
    if all(n in ("InsertData", "DeleteData") for n in names):
        delete: list[Template] = []
        insert: list[Template] = []
        for op in algebra:
            quads = _templates(op, "DATA")
            if op.name == "InsertData":
                insert += quads
                delete = [q for q in delete if q not in quads]
            else:
                delete += quads
                insert = [q for q in insert if q not in quads]
        return CompiledUpdate(text, prologue, None, tuple(delete), tuple(insert), parameters_of(text))
    if len(algebra) != 1 or names[0] not in ("Modify", "DeleteWhere"):
        raise InvalidInputError(
            f"unsupported update ({', '.join(names)}): send one DELETE/INSERT … WHERE, one DELETE WHERE, "
            "or INSERT DATA / DELETE DATA operations")
    op = algebra[0]
    if "withClause" in op or "using" in op:
        raise InvalidInputError("WITH and USING are not supported: name the graphs with GRAPH <…> { } instead")
    if where is None:
        raise InvalidInputError("could not find the WHERE clause of the update")
    if op.name == "DeleteWhere":
        return CompiledUpdate(text, prologue, where, tuple(_templates(op, "DELETE WHERE")), (), parameters_of(text))
    return CompiledUpdate(text, prologue, where, tuple(_templates(op["delete"] if "delete" in op else None, "DELETE")),
                          tuple(_templates(op["insert"] if "insert" in op else None, "INSERT")), parameters_of(text))


def _instantiate(templates: tuple[Template, ...], solutions: list[Callable[[str], Any]],
                 bindings: Mapping[str, Any]) -> Iterator[Quad]:
    for lookup in solutions:
        for template in templates:
            terms = []
            for t in template:
                if isinstance(t, rdflib.Variable):
                    name = str(t)
                    value = bindings[name] if name in bindings else lookup(name)
                else:
                    value = to_oxi(t)
                if value is None:
                    break  # an unbound variable drops the triple, as SPARQL says
                terms.append(value)
            else:
                s, p, o, g = terms
                if isinstance(s, Literal) or not isinstance(p, NamedNode) or not isinstance(g, NamedNode):
                    continue  # SPARQL drops ill-formed instantiations too
                if isinstance(s, BlankNode) or isinstance(o, BlankNode):
                    raise InvalidInputError(f"the update would write a blank node ({s} {p} {o}); use IRIs")
                yield Quad(s, p, o, g)


def solution_lookup(row: Any) -> Callable[[str], Any]:
    """A ``lookup(name)`` over one pyoxigraph QuerySolution."""
    def lookup(name: str) -> Any:
        try:
            return row[Variable(name)]
        except (KeyError, IndexError):
            return None
    return lookup

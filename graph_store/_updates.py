"""SPARQL updates as validated change sets.

The store's only write path is :meth:`GraphStore.apply` (validate, then commit atomically). A SPARQL update
(a named ``.rq`` file or an operator's request) is therefore not executed as such: its WHERE clause is run
as a SELECT, its DELETE/INSERT templates are instantiated with each solution, and the resulting concrete
quads become a :class:`ChangeSet` — validated like any other write, committed in one request, guarded by
the quads it deletes. The update text is parsed once (rdflib's SPARQL parser) into a :class:`CompiledUpdate`,
cached by text for texts of up to ``_CACHED_CHARS`` characters (the named updates; not bulk data).

Supported: one ``DELETE {…} INSERT {…} WHERE {…}`` (either template may be absent; ``WITH``, ``USING`` and
``USING NAMED`` allowed), one ``DELETE WHERE {…}``, or any sequence of ``INSERT DATA`` / ``DELETE DATA``. A
WHERE operation must be the update's only operation: its WHERE is evaluated against the store as it was
before the update, so it could not see the changes of earlier operations. Every template quad must name its
graph, with ``GRAPH … { }`` or (for DELETE/INSERT … WHERE) ``WITH``: the default graph holds nothing here.
Blank nodes, terms pyoxigraph refuses (relative IRIs, bad language tags) and the graph management operations
(LOAD, CLEAR, DROP, CREATE, ADD, MOVE, COPY) are refused with a sentence (InvalidInputError).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

import rdflib
from pyoxigraph import BlankNode, DefaultGraph, Literal, NamedNode, Quad, RdfFormat, Variable, parse
from rdflib.plugins.sparql.algebra import translateUpdate
from rdflib.plugins.sparql.parser import parseUpdate

from ._changeset import ChangeSet
from ._convert import to_oxi
from ._errors import InvalidInputError
from ._sparql_text import parameters_of, tokens

__all__ = ["CompiledUpdate", "WhereDataset", "compile_update", "solution_lookup"]

TemplateTerm = NamedNode | Literal | Variable
Template = tuple[TemplateTerm, TemplateTerm, TemplateTerm, TemplateTerm]

_CACHED_CHARS = 20_000
"""Longest update text kept in the compile cache; a longer one (an operator's bulk INSERT DATA) is not kept."""

_DATA, _MODIFY, _DELETE_WHERE = "DATA", "DELETE/INSERT WHERE", "DELETE WHERE"
"""The kinds of :class:`CompiledUpdate`: INSERT DATA / DELETE DATA operations, or one WHERE operation."""


@dataclass(frozen=True)
class WhereDataset:
    """The graphs a WHERE clause is evaluated over (arguments of :meth:`GraphStore.query`).

    ``None`` means the store's own: its default graph, every named graph. An empty tuple means none.
    """

    default_graph: tuple[NamedNode, ...] | None = None
    named_graphs: tuple[NamedNode, ...] | None = None


@dataclass(frozen=True)
class CompiledUpdate:
    """An update reduced to: the WHERE pattern (text, or None for DATA operations), the dataset its WITH /
    USING / USING NAMED declare (None if none), and quad templates of pyoxigraph terms and Variables."""

    text: str
    prologue: str
    where: str | None
    delete: tuple[Template, ...]
    insert: tuple[Template, ...]
    parameters: frozenset[str]
    dataset: WhereDataset | None = None
    operation: str = _MODIFY
    """``DATA`` (a sequence of INSERT DATA / DELETE DATA), ``DELETE/INSERT WHERE`` or ``DELETE WHERE``."""

    @cached_property
    def select_text(self) -> str | None:
        """``SELECT * WHERE {…}`` for the WHERE pattern, with the update's prefixes (one string object per
        update, so that the caches keyed by query text hash it once)."""
        return None if self.where is None else f"{self.prologue}\nSELECT * WHERE {self.where}"

    def where_dataset(self, using: Sequence[NamedNode] = (), using_named: Sequence[NamedNode] = ()) -> WhereDataset:
        """The WHERE's dataset: ``using`` / ``using_named`` (the SPARQL Protocol's ``using-graph-uri`` /
        ``using-named-graph-uri``) if given, else the update's own WITH / USING, else the store's.

        Raises InvalidInputError if both the update and the arguments name graphs (SPARQL 1.1 Protocol
        §2.2.3), or if arguments are given for a DELETE WHERE. DATA operations ignore them.
        """
        if (not using and not using_named) or self.operation == _DATA:
            return self.dataset or WhereDataset()
        if self.operation == _DELETE_WHERE:
            raise InvalidInputError("using-graph-uri / using-named-graph-uri do not apply to DELETE WHERE")
        if self.dataset is not None:
            raise InvalidInputError("an update with WITH or USING may not also be sent with using-graph-uri / "
                                    "using-named-graph-uri (SPARQL 1.1 Protocol §2.2.3)")
        return WhereDataset(tuple(using), tuple(using_named))

    def change_set(self, solutions: list[Callable[[str], Any]], bindings: Mapping[str, Any]) -> ChangeSet:
        """Instantiate the templates with each solution (``lookup(name) -> term | None``)."""
        delete = list(_instantiate(self.delete, solutions, bindings))
        insert = list(_instantiate(self.insert, solutions, bindings))
        return ChangeSet(delete=delete, insert=insert)


def _member(comp: Any, key: str) -> Any:
    """``comp[key]`` of an rdflib CompValue, None if missing (its ``get`` returns the key itself then)."""
    return comp[key] if key in comp else None


def _term(term: Any, what: str) -> TemplateTerm:
    """An rdflib template term as a pyoxigraph term or Variable; blank nodes and invalid terms refused."""
    if isinstance(term, rdflib.Variable):
        return Variable(str(term))
    if isinstance(term, rdflib.BNode):
        raise InvalidInputError(f"the {what} template uses a blank node; give the resource an IRI")
    try:
        converted = to_oxi(term)
    except (ValueError, TypeError) as e:  # relative IRI, bad language tag
        raise InvalidInputError(f"{term.n3() if hasattr(term, 'n3') else term!r} is not a valid RDF term: {e}"
                                ) from None
    assert not isinstance(converted, BlankNode)
    return converted


def _iri(term: Any, what: str) -> NamedNode:
    """The IRI of a WITH / USING clause as a pyoxigraph NamedNode."""
    converted = _term(term, what)
    if not isinstance(converted, NamedNode):
        raise InvalidInputError(f"{what} takes an IRI, not {term!r}")
    return converted


def _templates(clause: Any, what: str, target: NamedNode | None) -> list[Template]:
    """The quads of an rdflib update clause; triples outside GRAPH go to ``target`` (the WITH graph)."""
    if clause is None:
        return []
    out: list[Template] = []
    triples = _member(clause, "triples") or ()
    if triples:
        if target is None:
            hint = " or name the graph with WITH <…>" if what in ("DELETE", "INSERT") else ""
            raise InvalidInputError(f"the {what} template writes the default graph, which holds nothing here: "
                                    f"put its triples in GRAPH <…> {{ }}{hint}")
        out += [(_term(s, what), _term(p, what), _term(o, what), target) for s, p, o in triples]
    for graph, quads in (_member(clause, "quads") or {}).items():
        g = _term(graph, what)
        out += [(_term(s, what), _term(p, what), _term(o, what), g) for s, p, o in quads]
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


def _data(text: str, algebra: list[Any]) -> CompiledUpdate:
    """A sequence of INSERT DATA / DELETE DATA, folded into one net deletion and insertion."""
    delete: dict[Template, None] = {}
    insert: dict[Template, None] = {}
    for op in algebra:
        quads = _templates(op, "DATA", None)
        added, removed = (insert, delete) if op.name == "InsertData" else (delete, insert)
        for q in quads:
            removed.pop(q, None)
            added[q] = None
    return CompiledUpdate(text, "", None, tuple(delete), tuple(insert), parameters_of(text), operation=_DATA)


def _data_fast(text: str) -> CompiledUpdate | None:
    """INSERT DATA / DELETE DATA sequences parsed by pyoxigraph's TriG parser, or None if ``text`` is anything
    else. rdflib's SPARQL parser takes time quadratic in the size of a DATA block (about 2 s for 100 KB, minutes
    for 1 MB, holding the GIL); a DATA block is TriG, and the update's PREFIX lines are valid TriG too."""
    if "$" in text:
        return None  # parameters: leave it to the general path
    ops: list[tuple[str, int, int]] = []
    words: list[str] = []
    depth, start, prologue_end = 0, 0, None
    for kind, s, e in tokens(text):
        if kind == "word" and depth == 0:
            word = text[s:e].upper()
            if word in ("INSERT", "DELETE"):
                prologue_end = s if prologue_end is None else prologue_end
                words = [word]
            elif word == "DATA" and words:
                words.append(word)
            elif prologue_end is not None:
                return None  # WHERE, WITH, another operation...
        elif kind == "{":
            if depth == 0:
                if words[-1:] != ["DATA"]:
                    return None
                start = e
            depth += 1
        elif kind == "}":
            depth -= 1
            if depth == 0:
                ops.append((words[0], start, s))
                words = []
    if not ops or depth != 0:
        return None
    prologue = text[:prologue_end]
    delete: dict[Template, None] = {}
    insert: dict[Template, None] = {}
    for keyword, s, e in ops:
        try:
            quads = list(parse(prologue + "\n" + text[s:e], format=RdfFormat.TRIG))
        except (SyntaxError, ValueError):
            return None  # not TriG (e.g. a default-graph triple without its final dot): the general path says why
        added, removed = (insert, delete) if keyword == "INSERT" else (delete, insert)
        for q in quads:
            if isinstance(q.graph_name, DefaultGraph):
                raise InvalidInputError("the DATA template writes the default graph; put its triples in "
                                        "GRAPH <…> { }")
            if isinstance(q.subject, BlankNode) or isinstance(q.object, BlankNode):
                raise InvalidInputError("the DATA template uses a blank node; give the resource an IRI")
            template = (q.subject, q.predicate, q.object, q.graph_name)
            removed.pop(template, None)
            added[template] = None
    return CompiledUpdate(text, "", None, tuple(delete), tuple(insert), frozenset(), operation=_DATA)


def _compile(text: str) -> CompiledUpdate:
    fast = _data_fast(text)
    if fast is not None:
        return fast
    try:
        algebra = list(translateUpdate(parseUpdate(text)).algebra)
    except Exception as e:  # pyparsing's ParseException, and assorted errors for bad IRIs / prefixes
        raise InvalidInputError(f"malformed SPARQL update: {e}") from None
    names = [op.name for op in algebra]
    for name in names:
        if name not in ("InsertData", "DeleteData", "Modify", "DeleteWhere"):
            raise InvalidInputError(
                f"unsupported update operation {name.upper()}: only INSERT DATA, DELETE DATA, DELETE/INSERT … WHERE "
                "and DELETE WHERE are run (as validated change sets); replace or drop whole graphs with the Graph "
                "Store Protocol")
    if all(n in ("InsertData", "DeleteData") for n in names):
        return _data(text, algebra)
    if len(algebra) > 1:
        raise InvalidInputError("a DELETE/INSERT … WHERE or DELETE WHERE operation must be the only operation of "
                                "its update (its WHERE would have to see the changes of the others); send it alone")
    op = algebra[0]
    prologue, where = _split(text)
    if where is None:
        raise InvalidInputError("could not find the WHERE clause of the update")
    if op.name == "DeleteWhere":
        return CompiledUpdate(text, prologue, where, tuple(_templates(op, "DELETE WHERE", None)), (),
                              parameters_of(text), operation=_DELETE_WHERE)
    with_graph = _member(op, "withClause")
    target = None if with_graph is None else _iri(with_graph, "WITH")
    using = list(_member(op, "using") or ())
    dataset = None
    if using:  # USING replaces the WHERE's dataset; WITH then only names the templates' graph
        dataset = WhereDataset(tuple(_iri(u["default"], "USING") for u in using if _member(u, "default") is not None),
                               tuple(_iri(u["named"], "USING") for u in using if _member(u, "named") is not None))
    elif target is not None:
        dataset = WhereDataset((target,), None)
    return CompiledUpdate(text, prologue, where, tuple(_templates(_member(op, "delete"), "DELETE", target)),
                          tuple(_templates(_member(op, "insert"), "INSERT", target)), parameters_of(text),
                          dataset, _MODIFY)


_compile_cached = lru_cache(maxsize=256)(_compile)


def compile_update(text: str) -> CompiledUpdate:
    """Parse ``text`` (``$name`` parameters allowed) into a :class:`CompiledUpdate`; cached by text.

    Raises InvalidInputError for malformed or unsupported updates, naming the problem.
    """
    return _compile_cached(text) if len(text) <= _CACHED_CHARS else _compile(text)


def _instantiate(templates: tuple[Template, ...], solutions: list[Callable[[str], Any]],
                 bindings: Mapping[str, Any]) -> Iterator[Quad]:
    for lookup in solutions:
        for template in templates:
            terms = []
            for t in template:
                if isinstance(t, Variable):
                    name = t.value
                    value = bindings[name] if name in bindings else lookup(name)
                    if value is None:
                        break  # an unbound variable drops the triple, as SPARQL says
                    terms.append(value)
                else:
                    terms.append(t)
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

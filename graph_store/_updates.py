"""SPARQL updates as validated change sets.

The store's only write path is :meth:`GraphStore.apply` (validate, then commit atomically). A SPARQL update
(a named ``.rq`` file or an operator's request) is therefore not executed as such: its WHERE clause is run
as a SELECT, its DELETE/INSERT templates are instantiated with each solution, and the resulting concrete
quads become a :class:`ChangeSet` — validated like any other write, committed in one request, guarded by
the quads it deletes. The update text is parsed once (rdflib's SPARQL parser) into a :class:`CompiledUpdate`,
cached by text for texts of up to ``_CACHED_CHARS`` characters (the named updates; not bulk data).

Supported: every SPARQL 1.1 Update operation but LOAD (which would fetch a URL from inside the platform's
network): ``DELETE {…} INSERT {…} WHERE {…}`` (``WITH``, ``USING``, ``USING NAMED``), ``DELETE WHERE {…}``,
``INSERT DATA`` / ``DELETE DATA``, and the graph management operations ``CLEAR``, ``DROP``, ``CREATE``, ``ADD``,
``MOVE``, ``COPY`` (``GRAPH <g>``, ``DEFAULT``, ``NAMED``, ``ALL``, ``SILENT``), several separated by ``;``. A
request of one WHERE operation, or of DATA operations only, compiles to one :class:`CompiledUpdate`; any other
request to a ``SEQUENCE`` of steps (:class:`CompiledUpdate` and :class:`GraphOperation`) that
``graph_store/_update_sequence.py`` plans one after the other, each seeing the effects of the ones before.

Every template quad must name its graph, with ``GRAPH … { }`` or (for DELETE/INSERT … WHERE) ``WITH``; the
default graph of ``DEFAULT`` is the named graph ``DEFAULT_GRAPH``. Blank nodes in INSERT templates and INSERT
DATA are kept as blank nodes here and become IRIs when a plan instantiates them with a ``skolem`` prefix (fresh
ones per solution and per request, RDF 1.1 Concepts §3.5); without one they are refused. Relative IRIs resolve
against ``base_iri`` when one is given. Terms pyoxigraph refuses (bad language tags) are refused with a sentence
(InvalidInputError).
"""

from __future__ import annotations

import uuid
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
from ._vocab import DEFAULT_GRAPH

__all__ = ["CompiledUpdate", "GraphOperation", "WhereDataset", "compile_update", "solution_lookup"]

TemplateTerm = NamedNode | Literal | Variable | BlankNode
Template = tuple[TemplateTerm, TemplateTerm, TemplateTerm, TemplateTerm]

_CACHED_CHARS = 20_000
"""Longest update text kept in the compile cache; a longer one (an operator's bulk INSERT DATA) is not kept."""

_DATA, _MODIFY, _DELETE_WHERE, SEQUENCE = "DATA", "DELETE/INSERT WHERE", "DELETE WHERE", "SEQUENCE"
"""The kinds of :class:`CompiledUpdate`: INSERT DATA / DELETE DATA operations, one WHERE operation, or a sequence
of steps."""

_GRAPH_OPERATIONS = ("Clear", "Drop", "Create", "Add", "Move", "Copy")

GraphRef = NamedNode | str
"""A graph a graph management operation names: an IRI, or ``"DEFAULT"``, ``"NAMED"`` or ``"ALL"``."""


@dataclass(frozen=True)
class GraphOperation:
    """One of CLEAR, DROP, CREATE (``target``) or ADD, MOVE, COPY (``source`` to ``target``)."""

    kind: str
    target: GraphRef
    source: GraphRef | None = None
    silent: bool = False


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
    """``DATA`` (a sequence of INSERT DATA / DELETE DATA), ``DELETE/INSERT WHERE``, ``DELETE WHERE`` or
    ``SEQUENCE`` (see ``steps``)."""
    steps: tuple[CompiledUpdate | GraphOperation, ...] = ()
    """The operations of a ``SEQUENCE``, in order."""
    base_iri: str | None = None

    @property
    def has_where(self) -> bool:
        """True if planning the update evaluates a WHERE (its own, or one of its steps')."""
        return self.where is not None or any(isinstance(s, CompiledUpdate) and s.has_where for s in self.steps)

    @cached_property
    def select_text(self) -> str | None:
        """``SELECT * WHERE {…}`` for the WHERE pattern, with the update's prefixes and base IRI (one string object
        per update, so that the caches keyed by query text hash it once)."""
        if self.where is None:
            return None
        base = "" if self.base_iri is None else f"BASE <{self.base_iri}>\n"  # an IRI checked by compile_update
        return f"{base}{self.prologue}\nSELECT * WHERE {self.where}"

    def where_bindings(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of ``values`` that :attr:`select_text` names (the templates may name more)."""
        wanted = parameters_of(self.select_text or "")
        return {k: v for k, v in values.items() if k in wanted}

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

    def change_set(self, solutions: list[Callable[[str], Any]], bindings: Mapping[str, Any],
                   skolem: str | None = None) -> ChangeSet:
        """Instantiate the templates with each solution (``lookup(name) -> term | None``); blank nodes become
        IRIs ``{skolem}{uuid}``, fresh per solution (InvalidInputError if ``skolem`` is None)."""
        delete = list(_instantiate(self.delete, solutions, bindings, None))
        insert = list(_instantiate(self.insert, solutions, bindings, skolem))
        return ChangeSet(delete=delete, insert=insert)


def _member(comp: Any, key: str) -> Any:
    """``comp[key]`` of an rdflib CompValue, None if missing (its ``get`` returns the key itself then)."""
    return comp[key] if key in comp else None


def _term(term: Any, what: str) -> TemplateTerm:
    """An rdflib template term as a pyoxigraph term or Variable; invalid terms refused."""
    if isinstance(term, rdflib.Variable):
        return Variable(str(term))
    if isinstance(term, rdflib.BNode):
        return BlankNode(str(term))
    try:
        converted = to_oxi(term)
    except (ValueError, TypeError) as e:  # relative IRI, bad language tag
        raise InvalidInputError(f"{term.n3() if hasattr(term, 'n3') else term!r} is not a valid RDF term: {e}"
                                ) from None
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
            raise InvalidInputError(f"the {what} template writes the default graph without naming it: put its "
                                    f"triples in GRAPH <…> {{ }}{hint} (the default graph of the Graph Store "
                                    f"Protocol is GRAPH <{DEFAULT_GRAPH.value}>)")
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


def _data_fast(text: str, base_iri: str | None) -> CompiledUpdate | None:
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
            quads = list(parse(prologue + "\n" + text[s:e], format=RdfFormat.TRIG, base_iri=base_iri))
        except (SyntaxError, ValueError):
            return None  # not TriG (e.g. a default-graph triple without its final dot): the general path says why
        added, removed = (insert, delete) if keyword == "INSERT" else (delete, insert)
        for q in quads:
            if isinstance(q.graph_name, DefaultGraph):
                raise InvalidInputError("the DATA template writes the default graph without naming it; put its "
                                        f"triples in GRAPH <…> {{ }} (the default graph of the Graph Store Protocol "
                                        f"is GRAPH <{DEFAULT_GRAPH.value}>)")
            if keyword == "DELETE" and (isinstance(q.subject, BlankNode) or isinstance(q.object, BlankNode)):
                raise InvalidInputError("DELETE DATA may not use blank nodes (SPARQL 1.1 Update §3.1.2)")
            template = (q.subject, q.predicate, q.object, q.graph_name)
            removed.pop(template, None)
            added[template] = None
    return CompiledUpdate(text, "", None, tuple(delete), tuple(insert), frozenset(), operation=_DATA)


def _graph_ref(value: Any) -> GraphRef:
    return value if isinstance(value, str) and value in ("DEFAULT", "NAMED", "ALL") else _iri(value, "GRAPH")


def _graph_operation(op: Any) -> GraphOperation:
    silent = _member(op, "silent") is not None
    if op.name in ("Clear", "Drop", "Create"):
        return GraphOperation(op.name.upper(), _graph_ref(op["graphiri"]), silent=silent)
    source, target = op["graph"]
    return GraphOperation(op.name.upper(), _graph_ref(target), _graph_ref(source), silent)


def _pieces(text: str) -> list[str]:
    """``text`` cut at its top-level ``;`` (outside strings, IRIs, comments and braces): one piece per operation."""
    pieces, depth, start, last = [], 0, 0, 0

    def cut(gap_start: int, gap_end: int) -> None:
        nonlocal start
        j = text.find(";", gap_start, gap_end)
        while j >= 0:
            pieces.append(text[start:j])
            start = j + 1
            j = text.find(";", j + 1, gap_end)

    for kind, s, e in tokens(text):
        if depth == 0:
            cut(last, s)
        depth += 1 if kind == "{" else -1 if kind == "}" else 0
        last = e
    if depth == 0:
        cut(last, len(text))
    pieces.append(text[start:])
    return [p for p in pieces if p.strip()]


def _prologue(piece: str) -> str:
    """The PREFIX / BASE declarations a piece starts with (they hold for the pieces after it too)."""
    end, declaring = 0, False
    for kind, s, e in tokens(piece):
        if kind == "comment":
            continue
        if declaring:  # the prefix name, then the IRI that ends the declaration
            if kind == "iri":
                declaring, end = False, e
            continue
        if kind == "word" and piece[s:e].upper() in ("PREFIX", "BASE"):
            declaring = True
            continue
        break
    return piece[:end]


def _single(text: str, op: Any, base_iri: str | None) -> CompiledUpdate:
    """One DELETE/INSERT … WHERE or DELETE WHERE operation (``text``: its prologue and itself)."""
    prologue, where = _split(text)
    if where is None:
        raise InvalidInputError("could not find the WHERE clause of the update")
    if op.name == "DeleteWhere":
        return CompiledUpdate(text, prologue, where, tuple(_templates(op, "DELETE WHERE", None)), (),
                              parameters_of(text), operation=_DELETE_WHERE, base_iri=base_iri)
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
                          dataset, _MODIFY, base_iri=base_iri)


def _compile(text: str, base_iri: str | None = None) -> CompiledUpdate:
    fast = _data_fast(text, base_iri)
    if fast is not None:
        return fast
    try:
        algebra = list(translateUpdate(parseUpdate(text), base=base_iri).algebra)
    except Exception as e:  # pyparsing's ParseException, and assorted errors for bad IRIs / prefixes
        raise InvalidInputError(f"malformed SPARQL update: {e}") from None
    names = [op.name for op in algebra]
    for name in names:
        if name not in ("InsertData", "DeleteData", "Modify", "DeleteWhere", *_GRAPH_OPERATIONS):
            raise InvalidInputError(
                f"unsupported update operation {name.upper()}: the platform does not fetch URLs (LOAD); write the "
                "data with INSERT DATA or the Graph Store Protocol")
    if all(n in ("InsertData", "DeleteData") for n in names):
        return _data(text, algebra)
    if len(algebra) == 1 and names[0] in ("Modify", "DeleteWhere"):
        return _single(text, algebra[0], base_iri)
    pieces = _pieces(text)
    if len(pieces) != len(algebra):
        raise InvalidInputError(f"could not tell the {len(algebra)} operations of the update apart; separate them "
                                "with ';' outside of any braces")
    steps: list[CompiledUpdate | GraphOperation] = []
    prologues = ""
    for piece, op in zip(pieces, algebra, strict=True):
        own = prologues + piece
        if op.name in _GRAPH_OPERATIONS:
            steps.append(_graph_operation(op))
        elif op.name in ("InsertData", "DeleteData"):
            steps.append(_data(own, [op]))
        else:
            steps.append(_single(own, op, base_iri))
        prologues += _prologue(piece) + "\n"
    return CompiledUpdate(text, "", None, (), (), parameters_of(text), operation=SEQUENCE, steps=tuple(steps),
                          base_iri=base_iri)


_compile_cached = lru_cache(maxsize=256)(_compile)


def compile_update(text: str, base_iri: str | None = None) -> CompiledUpdate:
    """Parse ``text`` (``$name`` parameters allowed) into a :class:`CompiledUpdate`; cached by text and base.

    ``base_iri`` resolves the update's relative IRIs (the SPARQL Protocol endpoint's own IRI, for instance).
    Raises InvalidInputError for malformed or unsupported updates, naming the problem.
    """
    if base_iri is not None:
        try:
            NamedNode(base_iri)
        except ValueError as e:
            raise InvalidInputError(f"the base IRI {base_iri!r} is not an absolute IRI: {e}") from None
    return _compile_cached(text, base_iri) if len(text) <= _CACHED_CHARS else _compile(text, base_iri)


def _instantiate(templates: tuple[Template, ...], solutions: list[Callable[[str], Any]],
                 bindings: Mapping[str, Any], skolem: str | None) -> Iterator[Quad]:
    for lookup in solutions:
        skolems: dict[BlankNode, NamedNode] = {}  # a template's blank nodes are fresh for each solution
        for template in templates:
            terms: list[Any] = []
            for t in template:
                if isinstance(t, BlankNode):
                    if skolem is None:
                        raise InvalidInputError("the update's template uses a blank node; give the resource an IRI")
                    terms.append(skolems.setdefault(t, NamedNode(f"{skolem}{uuid.uuid4()}")))
                elif isinstance(t, Variable):
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

"""SPARQL text helpers: serialise quads for updates and bind ``$name`` parameters as RDF terms.

Parameters are never formatted into a query as strings: a bound value is an RDF term, written in its
N-Triples form by pyoxigraph (which escapes quotes, ``>``, newlines...), and only ``$name`` tokens that
the lexer finds *outside* IRIs, string literals and comments are replaced. So a value can never end a
string, close a brace or start a comment; ``tests/test_queries.py`` feeds such values and shows they stay data.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Triple

from ._errors import InvalidInputError
from ._vocab import XSD

__all__ = ["Term", "parameters_of", "bind", "quad_block", "term_text", "tokens"]

Term = NamedNode | Literal

_IRI = re.compile(r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>')  # IRIREF, \u escapes too
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def tokens(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield ``(kind, start, end)`` for the spans of ``text`` that matter: ``param`` ($name), ``var`` (?name),
    ``iri``, ``string``, ``comment``, ``{``, ``}`` and ``word`` (keywords / prefixed names)."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            yield "comment", i, j
            i = j
        elif c == "<" and (m := _IRI.match(text, i)):
            yield "iri", i, m.end()
            i = m.end()
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise InvalidInputError(f"unterminated string literal starting at offset {i}")
            yield "string", i, j + len(quote)
            i = j + len(quote)
        elif c in "$?" and (m := _NAME.match(text, i + 1)):
            yield ("param" if c == "$" else "var"), i, m.end()
            i = m.end()
        elif c in "{}":
            yield c, i, i + 1
            i += 1
        elif c.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] in "_-:."):
                j += 1
            yield "word", i, j
            i = j
        else:
            i += 1


@dataclass(frozen=True)
class _Parsed:
    """A query text cut at its ``$name`` tokens: ``chunks[0] $params[0] chunks[1] ... chunks[-1]``."""

    chunks: tuple[str, ...]
    params: tuple[str, ...]
    variables: frozenset[str]


@lru_cache(maxsize=1024)
def _parse(text: str) -> _Parsed:
    """Lex ``text`` once (query texts recur: named queries, the transition update)."""
    chunks, params, variables = [], [], set()
    last = 0
    for kind, s, e in tokens(text):
        if kind == "param":
            chunks.append(text[last:s])
            params.append(text[s + 1:e])
            last = e
        elif kind == "var":
            variables.add(text[s + 1:e])
    chunks.append(text[last:])
    return _Parsed(tuple(chunks), tuple(params), frozenset(variables))


def parameters_of(text: str) -> frozenset[str]:
    """The ``$name`` parameters a query text expects."""
    return frozenset(_parse(text).params)


def _term_text(name: str, term: object) -> str:
    if isinstance(term, BlankNode):
        raise InvalidInputError(f"parameter ${name}: blank nodes cannot be bound; use an IRI")
    if not isinstance(term, (NamedNode, Literal)):
        raise InvalidInputError(
            f"parameter ${name} must be an RDF term (pyoxigraph NamedNode or Literal), got {type(term).__name__}"
        )
    return term_text(term)


_XSD_DECIMAL = XSD.decimal


def term_text(term: NamedNode | BlankNode | Literal | Triple) -> str:
    """The N-Triples form of ``term``, except that an ``xsd:decimal`` is always written with a decimal point.

    Oxigraph's canonical form of the decimal 5.0 is ``"5"^^xsd:decimal``; Virtuoso 7 stores a decimal
    whose lexical form has no point as an ``xsd:integer`` (the datatype would be lost, and ``sh:datatype
    xsd:decimal`` would fail on the stored data), but keeps ``"5.0"^^xsd:decimal`` a decimal. Both are the
    same value, which every store (Oxigraph too) reads back as ``"5"^^xsd:decimal``.
    """
    if isinstance(term, Literal) and term.datatype == _XSD_DECIMAL and "." not in term.value:
        return str(Literal(term.value.strip() + ".0", datatype=_XSD_DECIMAL))
    return str(term)


def bind(text: str, bindings: Mapping[str, object]) -> str:
    """Replace every ``$name`` token by the N-Triples form of ``bindings[name]``.

    Raises InvalidInputError if a parameter has no value or a value has no parameter.

    >>> bind('SELECT * WHERE { $s ?p "$s" }', {"s": NamedNode("https://example.org/a")})
    'SELECT * WHERE { <https://example.org/a> ?p "$s" }'
    """
    wanted = parameters_of(text)
    missing = wanted - bindings.keys()
    if missing:
        raise InvalidInputError(f"missing value for parameter(s): {', '.join('$' + m for m in sorted(missing))}")
    unknown = bindings.keys() - wanted
    if unknown:
        raise InvalidInputError(f"unknown parameter(s): {', '.join('$' + u for u in sorted(unknown))}")
    parsed = _parse(text)
    clash = parsed.variables & wanted
    if clash:
        raise InvalidInputError(f"?{min(clash)} and ${min(clash)} are the same SPARQL variable: rename one")
    out: list[str] = [parsed.chunks[0]]
    for name, chunk in zip(parsed.params, parsed.chunks[1:]):
        out.append(_term_text(name, bindings[name]))
        out.append(chunk)
    return "".join(out)


def quad_block(quads: Iterable[Quad]) -> str:
    """``GRAPH <g> { s p o . ... }`` blocks for a DELETE DATA / INSERT DATA / template."""
    by_graph: dict[str, list[str]] = defaultdict(list)
    for q in quads:
        by_graph[str(q.graph_name)].append(f"{q.subject} {q.predicate} {term_text(q.object)} .")
    return " ".join(f"GRAPH {g} {{ {' '.join(lines)} }}" for g, lines in by_graph.items())

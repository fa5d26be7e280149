"""A caller's SPARQL query, rewritten by the platform before a remote server sees it.

A remote server (Virtuoso above all) understands more than SPARQL 1.1: ``DEFINE input:default-graph-uri <g>``
pragmas widen the dataset a query runs over, ``bif:`` / ``sql:`` functions reach the server's SQL layer and the
network (``bif:http_get`` made Virtuoso fetch a loopback URL for a researcher), ``define get:soft`` makes its
sponger fetch the graphs a query names. Passing the caller's text through would let any of them in, so
:func:`reserialise_query` sends only what the platform has parsed and understood:

1. the text is cut into SPARQL 1.1 tokens by :func:`_lex`; a character no SPARQL token starts with is refused;
2. it must parse as a SPARQL 1.1 query with rdflib's grammar (``DEFINE`` and every other extension fail here),
   nested at most :data:`MAX_NESTING` brackets deep (checked on the tokens first: the parser recurses);
3. every function it calls must be a SPARQL built-in (a keyword: no IRI) or an XSD constructor (``xsd:integer``);
   an IRI in the ``bif:`` or ``sql:`` scheme is refused wherever it appears (Virtuoso's magic predicates);
   SERVICE is refused (federation is not run for callers);
4. the text sent is rebuilt from the tokens: comments dropped (no pragma can hide in one), every prefixed name
   and relative IRI written as an absolute ``<IRI>`` (so no server-side predefined prefix is ever used),
   ``\\u`` escapes in IRIs decoded and the IRI checked, PREFIX / BASE declarations left out, and with
   ``drop_dataset`` the query's FROM / FROM NAMED clauses left out (the platform then names the dataset
   itself, as the SPARQL Protocol's ``default-graph-uri`` / ``named-graph-uri`` do).

Tokens are written back unchanged otherwise (strings, numbers, variables, keywords, punctuation), so the
query means what it meant; ``tests/test_untrusted_query.py`` compares answers for every named query and a
corpus of typical queries. What cannot be rewritten faithfully is refused with InvalidInputError (400).

Where it is used: :meth:`GraphStore.query_untrusted` and ``GraphStore.plan_update(..., untrusted=True)`` run
a caller's query / update WHERE through it on a RemoteStore (the embedded store parses the text itself and
has no extensions to abuse).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any
from urllib.parse import urljoin, urlsplit

from pyoxigraph import NamedNode
from pyparsing import ParseException
from rdflib.plugins.sparql.parser import parseQuery
from rdflib.plugins.sparql.parserutils import CompValue

from ._errors import InvalidInputError
from ._vocab import XSD

__all__ = ["MAX_NESTING", "dataset_iris", "reserialise_query"]

MAX_NESTING = 64
"""Deepest nesting of ``{`` ``(`` ``[`` accepted in a caller's query sent to a remote server."""

_XSD_NS = XSD.string.value.removesuffix("string")
_FORBIDDEN_SCHEMES = ("bif", "sql")

_PN_CHARS_BASE = r"A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u02FF\u0370-\u037D\u037F-\u1FFF\u200C-\u200D" \
                 r"\u2070-\u218F\u2C00-\u2FEF\u3001-\uD7FF\uF900-\uFDCF\uFDF0-\uFFFD\U00010000-\U000EFFFF"
_PN_CHARS_U = _PN_CHARS_BASE + "_"
_PN_CHARS = _PN_CHARS_U + r"\-0-9\u00B7\u0300-\u036F\u203F-\u2040"
_PLX = r"%[0-9A-Fa-f]{2}|\\[_~.\-!$&'()*+,;=/?#@%]"
# Possessive (never backtracking: the lexer stays linear on "a.a.a..."); the grammar's "not ending with a dot"
# is applied by _lex, which gives trailing dots back as "." tokens.
_PN_PREFIX = rf"[{_PN_CHARS_BASE}][{_PN_CHARS}.]*+(?<!\.)"
_PN_LOCAL = rf"(?:[{_PN_CHARS_U}:0-9]|{_PLX})(?:[{_PN_CHARS}.:]|{_PLX})*+"
_EXPONENT = r"[eE][+-]?[0-9]+"

_TOKEN_PATTERNS = [
    ("ws", r"[ \t\r\n]+"),
    ("comment", r"#[^\r\n]*"),
    ("iri", r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>'),
    ("pname", rf"(?:{_PN_PREFIX})?:(?:{_PN_LOCAL})?"),
    ("bnode", rf"_:[{_PN_CHARS_U}0-9][{_PN_CHARS}.]*+"),
    ("var", rf"[?$][{_PN_CHARS_U}0-9][{_PN_CHARS_U}0-9\u00B7\u0300-\u036F\u203F-\u2040]*"),
    ("string", r'"""(?:(?:"|"")?(?:[^"\\]|\\.))*"""|' r"'''(?:(?:'|'')?(?:[^'\\]|\\.))*'''|"
               r'"(?:[^"\\\n\r]|\\.)*"|' r"'(?:[^'\\\n\r]|\\.)*'"),
    ("langtag", r"@[a-zA-Z]+(?:-[a-zA-Z0-9]+)*"),
    ("number", rf"[+-]?(?:[0-9]+\.[0-9]*{_EXPONENT}|\.[0-9]+{_EXPONENT}|[0-9]+{_EXPONENT}|[0-9]*\.[0-9]+|[0-9]+)"),
    ("word", r"[A-Za-z_][A-Za-z0-9_]*"),
    ("punct", r"\^\^|&&|\|\||!=|<=|>=|[{}()\[\],;.*=<>!+\-/^|?]"),
]
_TOKENS = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _TOKEN_PATTERNS), re.DOTALL)
_TOKENS_BUT_PNAME = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _TOKEN_PATTERNS
                                        if name != "pname"), re.DOTALL)
_NAME_RUN = re.compile(rf"[{_PN_CHARS}.]*+")
""":func:`_lex` tries a prefixed name only where the run of name characters ends with ``:``: trying it at every
letter of ``a.a.a.…`` would scan the run again each time (quadratic)."""

_OPEN, _CLOSE = frozenset("{(["), frozenset("})]")


def _lex(text: str) -> Iterator[tuple[str, str]]:
    """``(kind, text)`` of each token of ``text``, whitespace and comments left out."""
    i, n = 0, len(text)
    run_end = 0
    while i < n:
        if i >= run_end:
            run_end = _NAME_RUN.match(text, i).end()  # type: ignore[union-attr]  # (always matches)
        pname_here = text[i] == ":" or (run_end > i and text[run_end:run_end + 1] == ":"
                                          and text[run_end - 1] != ".")
        m = (_TOKENS if pname_here else _TOKENS_BUT_PNAME).match(text, i)
        if m is None or m.end() == i:
            raise InvalidInputError(f"unexpected character {text[i]!r} at offset {i}: not SPARQL 1.1")
        kind, end = m.lastgroup or "", m.end()
        if kind in ("pname", "bnode"):
            while text[end - 1] == "." and not text[end - 2:end] == "\\.":  # a name never ends with a bare dot
                end -= 1
        if kind not in ("ws", "comment"):
            yield kind, text[i:end]
        i = end


def reserialise_query(text: str, *, drop_dataset: bool = False, confined: bool = False) -> str:
    """``text`` (a caller's SPARQL 1.1 query) as the platform rewrites it for a remote server (see the module).

    ``confined``: the platform restricts the query's named graphs (a station's own graph): GRAPH is refused,
    because Virtuoso 7 ignores a restricted named-graph set once a graph is fixed by a constant (``GRAPH <g>``
    in an ASK or under COUNT, ``VALUES ?g``, ``BIND``, ``FILTER(?g = <g>)`` all counted another station's data
    in ``tests/test_untrusted_query.py``); the restricted default graph it honours, so such a caller queries
    that.

    Raises InvalidInputError (one sentence) for anything that is not plain SPARQL 1.1, for functions other
    than the built-ins and XSD constructors, for SERVICE, ``bif:`` / ``sql:`` IRIs and undeclared prefixes.
    """
    return _reserialise(text, drop_dataset, confined)


@lru_cache(maxsize=256)
def _reserialise(text: str, drop_dataset: bool, confined: bool) -> str:
    tokens = list(_lex(text))
    if confined and any(k == "word" and t.upper() == "GRAPH" for k, t in tokens):
        raise InvalidInputError("GRAPH is refused in a query confined to one graph on this store (its server "
                                "does not keep named graphs apart reliably): query the default graph, which "
                                "is that graph")
    _check_nesting(tokens)
    first = next((t for k, t in tokens if k == "word"), "")
    if first.upper() == "DEFINE":
        raise InvalidInputError("DEFINE pragmas are a Virtuoso extension, not SPARQL: they are refused (they could "
                                "change the graphs a query reads)")
    if any(k == "word" and t.upper() == "SERVICE" for k, t in tokens):
        raise InvalidInputError("federated queries (SERVICE) are not run on a caller's behalf")
    try:
        tree = parseQuery(text)
    except ParseException as e:
        raise InvalidInputError(f"not a SPARQL 1.1 query: {e.msg} at line {e.lineno}, column {e.column}") from None
    except RecursionError:
        raise InvalidInputError("the query is nested too deeply to be parsed") from None
    prefixes, base, out = _rewrite(tokens, drop_dataset)
    for iri in _function_iris(tree, prefixes, base):
        if not iri.startswith(_XSD_NS):
            raise InvalidInputError(f"function <{iri}> is refused: only SPARQL 1.1 built-in functions and XSD "
                                    "constructors (xsd:integer(...)) may be called")
    return _joined(out)


def dataset_iris(text: str) -> list[str]:
    """The graphs the FROM and FROM NAMED clauses of a query as :func:`reserialise_query` wrote it name (absolute
    IRIs), read from its tokens (never from inside a string)."""
    tokens = list(_lex(text))
    found = []
    for i, (kind, t) in enumerate(tokens):
        if kind == "word" and t.upper() == "FROM":
            j = i + 2 if i + 1 < len(tokens) and tokens[i + 1][1].upper() == "NAMED" else i + 1
            if j < len(tokens) and tokens[j][0] == "iri":
                found.append(tokens[j][1][1:-1])
    return found


_SPACED = frozenset({"A", "AS", "ASK", "BY", "CONSTRUCT", "DESCRIBE", "DISTINCT", "GRAPH", "HAVING", "IN", "MINUS",
                     "OPTIONAL", "REDUCED", "SELECT", "UNION", "VALUES", "WHERE"})
"""Keywords after which ``(`` opens an expression or a list, not an argument list: a space stays there."""


def _joined(out: list[str]) -> str:
    """The tokens separated by spaces, except that a call's ``(`` follows its function name directly (Oxigraph
    0.5 refuses ``CONCAT ("a")``: a space before the argument list of some built-ins)."""
    parts: list[str] = []
    for i, t in enumerate(out):
        if i and not (t == "(" and out[i - 1][:1].isalpha() and out[i - 1].upper() not in _SPACED):
            parts.append(" ")
        parts.append(t)
    return "".join(parts)


def _check_nesting(tokens: list[tuple[str, str]]) -> None:
    depth = 0
    for kind, t in tokens:
        if kind == "punct" and t in _OPEN:
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidInputError(f"the query nests brackets more than {MAX_NESTING} deep")
        elif kind == "punct" and t in _CLOSE:
            depth -= 1


def _rewrite(tokens: list[tuple[str, str]], drop_dataset: bool) -> tuple[dict[str, str], str | None, list[str]]:
    """The declared prefixes, the last BASE, and the output tokens (see the module's step 4)."""
    prefixes: dict[str, str] = {}
    base: str | None = None
    out: list[str] = []
    i = 0
    while i < len(tokens):
        kind, t = tokens[i]
        word = t.upper() if kind == "word" else ""
        if word == "PREFIX" and i + 2 < len(tokens) and tokens[i + 1][0] == "pname" and tokens[i + 2][0] == "iri":
            prefixes[tokens[i + 1][1].split(":", 1)[0]] = _absolute(tokens[i + 2][1], base)
            i += 3
        elif word == "BASE" and i + 1 < len(tokens) and tokens[i + 1][0] == "iri":
            base = _absolute(tokens[i + 1][1], base)
            i += 2
        elif word == "FROM" and drop_dataset:
            i += 3 if i + 1 < len(tokens) and tokens[i + 1][1].upper() == "NAMED" else 2
        elif kind == "iri":
            out.append(f"<{_absolute(t, base)}>")
            i += 1
        elif kind == "pname":
            out.append(f"<{_expand(t, prefixes)}>")
            i += 1
        else:
            out.append(t)
            i += 1
    return prefixes, base, out


_UCHAR = re.compile(r"\\u([0-9A-Fa-f]{4})|\\U([0-9A-Fa-f]{8})")
_LOCAL_ESCAPE = re.compile(r"\\(.)")


def _absolute(token: str, base: str | None) -> str:
    """The absolute IRI an IRIREF token names (escapes decoded, resolved against ``base``), checked."""
    iri = _UCHAR.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), token[1:-1])
    if not urlsplit(iri).scheme:
        if base is None:
            raise InvalidInputError(f"relative IRI <{iri}> without a BASE: write the absolute IRI")
        iri = _resolve(base, iri)
    return _checked(iri)


def _resolve(base: str, reference: str) -> str:
    """RFC 3986 resolution by urljoin, which drops an empty fragment or query (``<vocab#>``): put back."""
    resolved = urljoin(base, reference)
    for mark in ("#", "?"):
        if reference.endswith(mark) and not resolved.endswith(mark) and (mark == "#" or "#" not in reference):
            resolved += mark
    return resolved


def _expand(pname: str, prefixes: dict[str, str]) -> str:
    prefix, local = pname.split(":", 1)
    if prefix not in prefixes:
        raise InvalidInputError(f"prefix {prefix}: is not declared (PREFIX {prefix}: <...>); the server's own "
                                "prefixes are not used")
    return _checked(prefixes[prefix] + _LOCAL_ESCAPE.sub(r"\1", local))


def _checked(iri: str) -> str:
    try:
        NamedNode(iri)
    except ValueError as e:
        raise InvalidInputError(f"<{iri}> is not a valid IRI: {e}") from None
    if urlsplit(iri).scheme.lower() in _FORBIDDEN_SCHEMES:
        raise InvalidInputError(f"<{iri}> is refused: {urlsplit(iri).scheme}: IRIs name a server's internal "
                                "functions, not data")
    return iri


def _function_iris(tree: Any, prefixes: dict[str, str], base: str | None) -> Iterator[str]:
    """The IRI of every function call in rdflib's parse tree, absolute."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, CompValue):
            if node.name == "Function":
                iri = node.get("iri")
                if isinstance(iri, CompValue) and iri.name == "pname":
                    yield _expand(f"{iri.get('prefix') or ''}:{iri.get('localname') or ''}", prefixes)
                else:
                    yield _absolute(f"<{iri}>", base)
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)) or type(node).__name__ == "ParseResults":
            stack.extend(node)

"""Checks on a caller's SPARQL text before any parser sees it: SERVICE refused, ``$var`` as ``?var``, FROM found,
and a bound on its size and nesting (pyoxigraph 0.5.13's parser and evaluator recurse: ``ASK {{{...}}}`` 2,500
deep, or a chain of about 10,000 ``+`` / ``UNION`` / ``OPTIONAL``, overflows the stack and kills the process).

The text is scanned with its IRIs, strings and comments blanked out (:func:`code_only`), so that keywords found
are syntax, not data.
"""

import re

from .sparql_http import HttpError

__all__ = ["MAX_NESTING", "MAX_OPERATORS", "MAX_TEXT_CHARS", "check_structure", "checked_query_text", "code_only",
           "has_dataset_clause", "with_base", "without_base_line"]

MAX_NESTING = 64
"""Deepest nesting of ``{``, ``(`` and ``[`` together that a query or update may have. pyoxigraph crashes between
300 and 2,500 braces deep; hand-written and generated queries stay far below 64."""
MAX_OPERATORS = 2_000
"""Most operators a query or update may hold: the keywords UNION, OPTIONAL, MINUS and the characters
``{ ( + - * / | & = < > ! ^`` outside IRIs, strings, comments and language tags. Each builds one level of a
left-deep tree, and pyoxigraph crashes on chains of about 10,000 (6,000 pass); the bound leaves a factor of 3."""
MAX_TEXT_CHARS = 1_000_000
"""Longest query or update text, whichever way it came (a GET parameter is not bounded by the body limit)."""

_OPAQUE_START = re.compile(r"[#<\"']")
_COMMENT = re.compile(r"#[^\r\n]*")
_STRING_BODY = {q: re.compile(body, re.DOTALL) for q, body in [
    ('"', r'(?:[^"\\]|\\.)*'), ("'", r"(?:[^'\\]|\\.)*"),
    ('"""', r'(?:[^"\\]|\\.|"(?!""))*'), ("'''", r"(?:[^'\\]|\\.|'(?!''))*")]}
_IRIREF = re.compile(r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>')
_SERVICE = re.compile(r"(?<![\w:?$\-])SERVICE(?![\w:\-])", re.IGNORECASE)
_FROM = re.compile(r"(?<![\w:?$\-.])FROM(?![\w:\-.])", re.IGNORECASE)
_NESTING = re.compile(r"[{}()\[\]]")
_LANGUAGE_TAG = re.compile(r"@[A-Za-z]+(?:-[A-Za-z0-9]+)*")
_OPERATOR = re.compile(r"(?<![\w:?$\-])(?:UNION|OPTIONAL|MINUS)(?![\w:\-])|\^\^|[{(+\-*/|&=<>!^]", re.IGNORECASE)


def code_only(text: str) -> str:
    """``text`` with its IRIs, string literals and comments blanked out (same length, same offsets), so that
    keywords, braces and ``$`` found in the rest are SPARQL syntax, not data.

    Deliberately conservative where it matters for security (the SERVICE check): IRIs may hold ``\\u``
    escapes (as pyoxigraph accepts), a comment ends at the first line break, an unterminated string runs to
    the end (pyoxigraph refuses such a query anyway).

    >>> code_only('SELECT * WHERE { <http://a#b> ?p "x } #" } # SERVICE')
    'SELECT * WHERE {              ?p         }          '
    """
    out: list[str] = []
    i, last, n = 0, 0, len(text)
    while (start := _OPAQUE_START.search(text, i)) is not None:
        i = start.start()
        c = text[i]
        if c == "#":
            j = comment.end() if (comment := _COMMENT.match(text, i)) else n  # always matches at a "#"
        elif c == "<" and (m := _IRIREF.match(text, i)):
            j = m.end()
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            body = _STRING_BODY[quote].match(text, i + len(quote))  # always matches (possibly empty)
            j = body.end() if body else n
            j = j + len(quote) if text.startswith(quote, j) else n
        else:
            i += 1
            continue
        out += [text[last:i], " " * (j - i)]
        i = last = j
    out.append(text[last:])
    return "".join(out)


def check_structure(text: str, code: str | None = None) -> None:
    """Refuse (400) a query or update longer than MAX_TEXT_CHARS, nested deeper than MAX_NESTING or holding more
    than MAX_OPERATORS operators, before any parser sees it: pyoxigraph's recursive parser would crash the process.

    ``code`` is ``code_only(text)`` if the caller has it already.

    >>> check_structure("ASK " + "{" * 64 + "}" * 64)
    >>> check_structure("ASK " + "{" * 65 + "}" * 65)
    Traceback (most recent call last):
    ...
    orchestrator.sparql_http.HttpError: the query nests braces, parentheses and brackets 65 deep; at most 64 are allowed
    """
    if len(text) > MAX_TEXT_CHARS:
        raise HttpError(400, f"the query is {len(text)} characters long; at most {MAX_TEXT_CHARS} are allowed")
    code = code_only(text) if code is None else code
    depth = deepest = 0
    for m in _NESTING.finditer(code):
        if m.group() in "{([":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    if deepest > MAX_NESTING:
        raise HttpError(400, f"the query nests braces, parentheses and brackets {deepest} deep; at most "
                             f"{MAX_NESTING} are allowed")
    operators = sum(1 for m in _OPERATOR.finditer(_LANGUAGE_TAG.sub(" ", code)) if m.group() != "^^")
    if operators > MAX_OPERATORS:
        raise HttpError(400, f"the query holds {operators} operators (UNION, OPTIONAL, MINUS, groups, expression "
                             f"and path operators); at most {MAX_OPERATORS} are allowed: split it")


def checked_query_text(text: str) -> str:
    """A caller's query or update made ready for GraphStore: size and nesting bounded (:func:`check_structure`),
    SERVICE refused, ``$name`` variables as ``?name``.

    pyoxigraph evaluates SERVICE by fetching the named URL: the central service would send requests anywhere a
    caller asks (its own network included). ``$name`` and ``?name`` are the same SPARQL variable, but
    GraphStore.query reads ``$name`` as a parameter to bind.
    """
    code = code_only(text)
    check_structure(text, code)
    if _SERVICE.search(code):
        raise HttpError(400, "federated queries (SERVICE) are not run here: the central service does not send "
                             "requests to other servers on a caller's behalf")
    dollars = [m.start() for m in re.finditer(r"\$", code)]
    if not dollars:
        return text
    parts, last = [], 0
    for k in dollars:
        parts += [text[last:k], "?"]
        last = k + 1
    return "".join(parts) + text[last:]


def has_dataset_clause(text: str) -> bool:
    """True if the query has FROM / FROM NAMED."""
    return _FROM.search(code_only(text)) is not None


def with_base(text: str, base: str | None) -> str:
    """``text`` with ``BASE <base>`` ahead of its own prologue (which may override it): relative IRIs resolve
    against the endpoint's URL (SPARQL 1.1 Protocol §2.1.4). ``base`` must be an IRI already checked."""
    return text if base is None else f"BASE <{base}>\n{text}"


_POSITION = re.compile(r"(\d+):(\d+)")


def without_base_line(e: HttpError) -> HttpError:
    """``e`` with the parser's positions counted in the query as sent, not with the BASE line put ahead of it."""
    head, found, tail = e.detail.partition("error at ")
    if e.status != 400 or not found:
        return e
    position, sep, rest = tail.partition(": ")
    fixed = _POSITION.sub(lambda m: f"{int(m[1]) - 1}:{m[2]}", position)
    return HttpError(400, f"{head}error at {fixed}{sep}{rest}", headers=e.headers, **e.extra)

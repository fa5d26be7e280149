"""Checks on a caller's SPARQL text before any parser sees it: SERVICE refused, ``$var`` as ``?var``, FROM found.

The text is scanned with its IRIs, strings and comments blanked out (:func:`code_only`), so that keywords found
are syntax, not data.
"""

import re

from .sparql_http import HttpError

__all__ = ["checked_query_text", "code_only", "has_dataset_clause"]

_OPAQUE_START = re.compile(r"[#<\"']")
_COMMENT = re.compile(r"#[^\r\n]*")
_STRING_BODY = {q: re.compile(body, re.DOTALL) for q, body in [
    ('"', r'(?:[^"\\]|\\.)*'), ("'", r"(?:[^'\\]|\\.)*"),
    ('"""', r'(?:[^"\\]|\\.|"(?!""))*'), ("'''", r"(?:[^'\\]|\\.|'(?!''))*")]}
_IRIREF = re.compile(r'<(?:[^<>"{}|^`\\\x00-\x20]|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8})*>')
_SERVICE = re.compile(r"(?<![\w:?$\-])SERVICE(?![\w:\-])", re.IGNORECASE)
_FROM = re.compile(r"(?<![\w:?$\-.])FROM(?![\w:\-.])", re.IGNORECASE)


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


def checked_query_text(text: str) -> str:
    """A caller's query made ready for GraphStore.query: SERVICE refused, ``$name`` variables as ``?name``.

    pyoxigraph evaluates SERVICE by fetching the named URL: the central service would send requests anywhere a
    caller asks (its own network included). ``$name`` and ``?name`` are the same SPARQL variable, but
    GraphStore.query reads ``$name`` as a parameter to bind.
    """
    code = code_only(text)
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

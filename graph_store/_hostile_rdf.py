"""Bounds on what an RDF body may make the parser do, checked around :func:`parse_rdf` (bodies come from any
authenticated caller: the Graph Store Protocol, the MPU's metadata batches).

Each bound answers a measured failure of pyoxigraph 0.5.13's parsers:

* **Entities.** Its RDF/XML parser expands internal entities: 541 bytes of nested ``<!ENTITY>`` declarations
  became a 100,000,000-character literal (the service reached 633 MB). An RDF/XML body with a document type
  declaration or an entity declaration is refused before parsing. The check reads the body with expat, the
  standard XML parser, so a DOCTYPE is found in every encoding XML allows (UTF-16 with a byte order mark too),
  not just where a byte search would see it.
* **Nesting.** JSON-LD nested 30,000 objects deep made the parser use 14 GB and crash (signal 11); 2,000 deep
  took 350 MB. RDF/XML nesting costs quadratic time (20,000 levels: 3 s, 100,000: over a minute). Both are
  refused beyond :data:`MAX_NESTING` levels, counted by a scan that never recurses. Turtle's ``[`` / ``(``
  nesting parsed 100,000 levels in a fraction of a second: not bounded.
* **Expansion.** Prefixed names and JSON-LD ``@context`` terms expand a short body into long IRIs: the terms
  parsed may total at most ``max(EXPANSION_FLOOR, EXPANSION_FACTOR × body bytes)`` characters. The parse is
  streamed and stopped at the bound (:class:`InputTooLarge`, answered 413), so memory stays bounded too.
"""

from __future__ import annotations

import re
import xml.parsers.expat
from collections.abc import Iterable, Iterator
from typing import Any

from pyoxigraph import Literal, Quad, RdfFormat, Triple

from ._errors import InputTooLarge, InvalidInputError

__all__ = ["EXPANSION_FACTOR", "EXPANSION_FLOOR", "MAX_NESTING", "bounded_expansion", "refuse_hostile_structure"]

MAX_NESTING = 64
"""Deepest nesting of JSON-LD objects/arrays or RDF/XML elements accepted (real documents nest about 10 deep)."""

EXPANSION_FACTOR = 32
EXPANSION_FLOOR = 1_000_000
"""The parsed terms of a body of n bytes total at most max(EXPANSION_FLOOR, EXPANSION_FACTOR × n) characters."""

_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)|[\[\]{}]', re.DOTALL)
"""A JSON string (an unterminated one runs to the end, so the scan stays linear) or a bracket."""


class _Refused(Exception):
    """Raised inside expat's callbacks to stop the scan at the first refused construct."""


def refuse_hostile_structure(data: bytes, fmt: RdfFormat) -> None:
    """Raise InvalidInputError if ``data`` has a DTD or entity declaration (RDF/XML) or nests deeper than
    :data:`MAX_NESTING` (RDF/XML, JSON-LD), before any RDF parser sees it."""
    if fmt == RdfFormat.RDF_XML:
        _check_xml(data)
    elif fmt == RdfFormat.JSON_LD:
        _check_json_depth(data)


def _check_xml(data: bytes) -> None:
    parser = xml.parsers.expat.ParserCreate()
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0

    def doctype(*_: Any) -> None:
        raise _Refused("RDF/XML with a document type declaration (<!DOCTYPE>) is refused: DTDs and entities "
                       "can expand a small body without bound")

    def entity(*_: Any) -> None:
        raise _Refused("RDF/XML with an entity declaration (<!ENTITY>) is refused: entities can expand a small "
                       "body without bound")

    def start(*_: Any) -> None:
        nonlocal depth
        depth += 1
        if depth > MAX_NESTING:
            raise _Refused(f"RDF/XML nested more than {MAX_NESTING} elements deep is refused")

    def end(*_: Any) -> None:
        nonlocal depth
        depth -= 1

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(data, True)
    except _Refused as e:
        raise InvalidInputError(str(e)) from None
    except ValueError as e:  # expat knows UTF-8, UTF-16, ISO-8859-1, US-ASCII only
        raise InvalidInputError(f"RDF/XML in this encoding cannot be read ({e}); send it as UTF-8") from None
    except xml.parsers.expat.ExpatError as e:
        raise InvalidInputError(f"malformed RDF_XML: {xml.parsers.expat.errors.messages[e.code]} at line "
                                f"{e.lineno}, column {e.offset}") from None


def _check_json_depth(data: bytes) -> None:
    depth = 0
    for m in _JSON_TOKEN.finditer(data):
        c = m.group()
        if c in (b"{", b"["):
            depth += 1
            if depth > MAX_NESTING:
                raise InvalidInputError(f"JSON-LD nested more than {MAX_NESTING} objects or arrays deep is refused")
        elif c in (b"}", b"]"):
            depth -= 1


def bounded_expansion(triples: Iterable[Quad], body_bytes: int) -> Iterator[Quad]:
    """``triples`` as they are parsed, stopped with InputTooLarge once their terms exceed the expansion bound
    for a body of ``body_bytes`` bytes."""
    limit = max(EXPANSION_FLOOR, EXPANSION_FACTOR * body_bytes)
    total = 0
    for t in triples:
        total += _size(t.triple)
        if total > limit:
            raise InputTooLarge(f"the body expands to more than {limit} characters of RDF terms ({EXPANSION_FACTOR} "
                                f"times its {body_bytes} bytes, at least {EXPANSION_FLOOR}); send it in parts")
        yield t


def _size(term: Any) -> int:
    """Characters of a term (of a triple: of its three terms), as stored."""
    if isinstance(term, Triple):
        return _size(term.subject) + _size(term.predicate) + _size(term.object)
    if isinstance(term, Literal):
        return len(term.value) + len(term.datatype.value)
    return len(term.value)

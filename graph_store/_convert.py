"""Conversions between rdflib terms (used to read shapes and by pySHACL) and pyoxigraph terms (used everywhere else).

Plain literals are normalised the RDF 1.1 way: ``"x"`` and ``"x"^^xsd:string`` are the same term.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import overload

import rdflib
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, Store, Triple

from ._vocab import RDF_NS, XSD_NS

__all__ = ["to_oxi", "to_rdflib", "canonical", "canonical_all", "XSD_STRING", "RDF_LANGSTRING"]

XSD_STRING = XSD_NS + "string"
RDF_LANGSTRING = RDF_NS + "langString"

OxiTerm = NamedNode | BlankNode | Literal
ObjectTerm = NamedNode | BlankNode | Literal | Triple
"""What a quad's object may be (pyoxigraph also holds RDF 1.2 triple terms); only literals are canonicalised."""


def to_oxi(term: rdflib.term.Node) -> OxiTerm:
    """rdflib term -> pyoxigraph term."""
    if isinstance(term, rdflib.URIRef):
        return NamedNode(str(term))
    if isinstance(term, rdflib.BNode):
        return BlankNode(str(term))
    if isinstance(term, rdflib.Literal):
        if term.language:
            return Literal(str(term), language=term.language)
        if term.datatype is not None:
            return Literal(str(term), datatype=NamedNode(str(term.datatype)))
        return Literal(str(term))
    raise TypeError(f"cannot convert {term!r} to a pyoxigraph term")


@overload
def to_rdflib(term: Literal) -> rdflib.Literal: ...
@overload
def to_rdflib(term: OxiTerm) -> rdflib.term.Identifier: ...
def to_rdflib(term: OxiTerm) -> rdflib.term.Identifier:
    """pyoxigraph term -> rdflib term (``xsd:string`` literals become plain literals, as rdflib parses them)."""
    if isinstance(term, NamedNode):
        return rdflib.URIRef(term.value)
    if isinstance(term, BlankNode):
        return rdflib.BNode(term.value)
    if isinstance(term, Literal):
        if term.language:
            return rdflib.Literal(term.value, lang=term.language)
        dt = term.datatype.value
        if dt == XSD_STRING:
            return rdflib.Literal(term.value)
        return rdflib.Literal(term.value, datatype=rdflib.URIRef(dt))
    raise TypeError(f"cannot convert {term!r} to an rdflib term")


class _QuietIllTypedLiterals:
    """rdflib logs a warning with a traceback for every ill-typed literal it converts; for us an ill-typed
    literal is an ordinary validation result (sh:datatype), reported to the writer, not a log event."""

    @staticmethod
    def filter(record: object) -> bool:
        return not str(getattr(record, "msg", "")).startswith("Failed to convert Literal lexical form")


logging.getLogger("rdflib.term").addFilter(_QuietIllTypedLiterals())


_P, _G = NamedNode("urn:x-canonical:p"), NamedNode("urn:x-canonical:g")
_known: dict[ObjectTerm, ObjectTerm] = {}
_known_lock = threading.Lock()


def _needs_canonical(term: ObjectTerm) -> bool:
    return isinstance(term, Literal) and not term.language and term.datatype.value.startswith(XSD_NS) \
        and term.datatype.value != XSD_STRING


def canonical(term: ObjectTerm) -> ObjectTerm:
    """The term as an Oxigraph store will hand it back.

    Oxigraph stores typed literals by value: ``"01"^^xsd:integer`` reads back as ``"1"``, ``xsd:int`` and
    ``xsd:positiveInteger`` as ``xsd:integer``, ``"1"^^xsd:boolean`` as ``"true"``. Validating a change set
    must see the values as they will be stored, or a later deletion would not match the stored quad.
    """
    if not _needs_canonical(term):
        return term
    return canonical_all([term])[term]


_XSD_DATETIME = XSD_NS + "dateTime"
_UTC_DATETIME = re.compile(
    r"([1-9][0-9]{3}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])"
    r"(?:\.([0-9]{1,9}))?Z")


def _canonical_utc_datetime(term: Literal) -> Literal | None:
    """Oxigraph's form of a UTC ``xsd:dateTime`` written the common way (``2026-11-28T01:35:16.294180Z``: the
    fraction loses its trailing zeros), computed without a round trip; None for any other form. Every
    lifecycle step writes new timestamps, so they would otherwise never come from the cache below.
    ``tests/test_store_contract.py`` compares it with the round trip."""
    m = _UTC_DATETIME.fullmatch(term.value)
    if m is None:
        return None
    try:
        datetime.fromisoformat(m.group(1))  # a day that exists (no 30 February)
    except ValueError:
        return None
    fraction = (m.group(2) or "").rstrip("0")
    value = f"{m.group(1)}.{fraction}Z" if fraction else f"{m.group(1)}Z"
    return term if value == term.value else Literal(value, datatype=term.datatype)


def canonical_all(terms: Iterable[ObjectTerm]) -> dict[ObjectTerm, ObjectTerm]:
    """:func:`canonical` of many terms at once (what a change set needs): the literals not seen recently make
    one round trip through a fresh scratch store together.

    A fresh store each time: pyoxigraph's in-memory store gets slower with every ``clear()`` (measured: a
    round trip went from 30 to 200 microseconds over 12,000 reuses), so a long-running writer must not reuse one.
    """
    result: dict[ObjectTerm, ObjectTerm] = {}
    todo: list[ObjectTerm] = []
    with _known_lock:
        for t in terms:
            if not _needs_canonical(t) or not isinstance(t, Literal):
                result[t] = t
            elif t.datatype.value == _XSD_DATETIME and (fast := _canonical_utc_datetime(t)) is not None:
                result[t] = fast
            elif t in _known:
                result[t] = _known[t]
            elif t not in result:
                result[t] = t  # placeholder, replaced below
                todo.append(t)
    if todo:
        scratch = Store()
        subjects = [NamedNode(f"urn:x-canonical:s{i}") for i in range(len(todo))]
        scratch.extend([Quad(s, _P, t, _G) for s, t in zip(subjects, todo)])
        stored = {q.subject: q.object for q in scratch}
        with _known_lock:
            if len(_known) + len(todo) > 65_536:
                _known.clear()
            for s, t in zip(subjects, todo):
                result[t] = _known[t] = stored[s]
    return result

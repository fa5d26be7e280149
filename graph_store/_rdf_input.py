"""Parse RDF that users send (Turtle, JSON-LD, N-Triples...) into quads of one named graph, with errors a
person can act on instead of a parser traceback."""

from __future__ import annotations

import uuid

from pyoxigraph import BlankNode, Literal, NamedNode, Quad, RdfFormat, parse

from ._errors import InvalidInputError
from ._hostile_rdf import bounded_expansion, refuse_hostile_structure

__all__ = ["parse_rdf", "FORMATS"]

FORMATS: dict[str, RdfFormat] = {
    "text/turtle": RdfFormat.TURTLE,
    "application/ld+json": RdfFormat.JSON_LD,
    "application/n-triples": RdfFormat.N_TRIPLES,
    "application/rdf+xml": RdfFormat.RDF_XML,
    "turtle": RdfFormat.TURTLE,
    "json-ld": RdfFormat.JSON_LD,
    "ttl": RdfFormat.TURTLE,
    "jsonld": RdfFormat.JSON_LD,
    "nt": RdfFormat.N_TRIPLES,
}


def parse_rdf(data: bytes | str, media_type: str, graph: NamedNode, *, base_iri: str | None = None,
              skolemise: str | None = None) -> list[Quad]:
    """Parse ``data`` (a document in ``media_type``) into quads of ``graph``.

    With ``skolemise`` (an IRI prefix such as ``{base}.well-known/genid/``), each blank node becomes the IRI
    ``{skolemise}{random UUID}`` (RDF 1.1 Concepts §3.5), one IRI per blank node of the document: the store keeps
    no blank nodes, whose identity would not survive a round trip through the protocols. Without it, blank nodes
    are refused.

    Raises InvalidInputError naming the format and the parser's message (with line and column) for
    malformed input, an unsupported media type, or blank nodes (without ``skolemise``); also for a body
    built to hurt the parser (entities, deep nesting: see :mod:`._hostile_rdf`), and InputTooLarge (a subclass)
    for one that expands far beyond its size.
    """
    key = media_type.split(";")[0].strip().lower()
    fmt = FORMATS.get(key)
    if fmt is None:
        raise InvalidInputError(f"unsupported RDF media type {media_type!r}; use one of {', '.join(sorted(FORMATS))}")
    raw = data.encode() if isinstance(data, str) else data
    refuse_hostile_structure(raw, fmt)
    try:
        triples = list(bounded_expansion(parse(raw, format=fmt, base_iri=base_iri, without_named_graphs=True),
                                         len(raw)))
        if fmt == RdfFormat.JSON_LD:
            _refuse_dropped_statements(raw, base_iri, kept=triples)
    except InvalidInputError:
        raise
    except SyntaxError as e:
        raise InvalidInputError(f"malformed {fmt.name}: {e}") from None
    except ValueError as e:
        raise InvalidInputError(f"invalid {fmt.name}: {e}") from None
    quads = []
    skolems: dict[BlankNode, NamedNode] = {}
    for t in triples:
        subject, obj = t.subject, t.object
        if isinstance(subject, BlankNode) or isinstance(obj, BlankNode):
            if skolemise is None:
                raise InvalidInputError(f"blank node in {t}: give every resource an IRI")
            if isinstance(subject, BlankNode):
                subject = skolems.setdefault(subject, NamedNode(f"{skolemise}{uuid.uuid4()}"))
            if isinstance(obj, BlankNode):
                obj = skolems.setdefault(obj, NamedNode(f"{skolemise}{uuid.uuid4()}"))
        quads.append(Quad(subject, t.predicate, obj, graph))
    return quads


def _refuse_dropped_statements(data: bytes, base_iri: str | None, *, kept: list[Quad]) -> None:
    """Raise InvalidInputError if JSON-LD silently lost statements (``kept``: what the strict parse gave).

    A JSON-LD processor drops, without any error, every statement whose subject, property or object does
    not expand to an absolute IRI (``"@id": "not an iri"``, a relative ``@id`` without a base IRI, a key that
    no ``@context`` term or ``@vocab`` maps) or whose literal has an invalid language tag. For a system of
    record that is silent data loss. Parsed leniently (no such checks), those statements are kept, so the
    bad "IRI" can be named in the error.
    """
    lenient = list(bounded_expansion(parse(data, format=RdfFormat.JSON_LD, base_iri=base_iri,
                                           without_named_graphs=True, lenient=True), len(data)))
    for q in lenient:
        terms = [q.subject, q.predicate, q.object]
        if isinstance(q.object, Literal):
            terms.append(q.object.datatype)
        for term in terms:
            if isinstance(term, NamedNode):
                try:
                    NamedNode(term.value)
                except ValueError as e:
                    raise InvalidInputError(
                        f"invalid JSON-LD: {term.value!r} is not an absolute IRI ({e}); JSON-LD would silently "
                        "drop the statement using it (give full IRIs, or map the term in @context)") from None
    if len(lenient) > len(kept):
        dropped = set(lenient) - set(kept)
        example = f", e.g. {min(map(str, dropped))}" if dropped else ""
        raise InvalidInputError(f"invalid JSON-LD: {len(lenient) - len(kept)} statement(s) would be silently "
                                f"dropped{example} (an invalid language tag or value?)")

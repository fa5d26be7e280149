"""Parse RDF that users send (Turtle, JSON-LD, N-Triples...) into quads of one named graph, with errors a
person can act on instead of a parser traceback."""

from __future__ import annotations

from pyoxigraph import BlankNode, NamedNode, Quad, RdfFormat, parse

from ._errors import InvalidInputError

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


def parse_rdf(data: bytes | str, media_type: str, graph: NamedNode, *, base_iri: str | None = None) -> list[Quad]:
    """Parse ``data`` (a document in ``media_type``) into quads of ``graph``.

    Raises InvalidInputError naming the format and the parser's message (with line and column) for
    malformed input, an unsupported media type, or blank nodes (resources need IRIs here).
    """
    key = media_type.split(";")[0].strip().lower()
    fmt = FORMATS.get(key)
    if fmt is None:
        raise InvalidInputError(f"unsupported RDF media type {media_type!r}; use one of {', '.join(sorted(FORMATS))}")
    try:
        triples = list(parse(data.encode() if isinstance(data, str) else data, format=fmt, base_iri=base_iri,
                             without_named_graphs=True))
    except SyntaxError as e:
        raise InvalidInputError(f"malformed {fmt.name}: {e}") from None
    except ValueError as e:
        raise InvalidInputError(f"invalid {fmt.name}: {e}") from None
    quads = []
    for t in triples:
        if isinstance(t.subject, BlankNode) or isinstance(t.object, BlankNode):
            raise InvalidInputError(f"blank node in {t}: give every resource an IRI")
        quads.append(Quad(t.subject, t.predicate, t.object, graph))
    return quads

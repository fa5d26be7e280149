"""Read a station-side policy file -- the station's ``pht:StationPolicy``, the MPU's ``pht:FilterPolicy`` -- the
one way both use: read the file, parse it, find the one policy, check that it is this station's, validate it
against the shapes. Every refusal is a :class:`PolicyError` of one sentence; what the policy *means* is left to
its reader (``station.policy``, ``station_mpu._policy``).

The policy file is validated as if written into a store that knows the stations it names (``?s a pht:Station``):
the station itself is described in the central graph, not in the file, so the shapes' ``sh:class pht:Station``
of ``pht:appliesToStation`` can only be met that way; which station it must be is checked against ``station``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pyoxigraph import BlankNode, Literal, NamedNode, Quad, RdfFormat, Triple, parse

from ._changeset import ChangeSet
from ._errors import InvalidInputError
from ._rdf_input import FORMATS, _refuse_dropped_statements
from ._report import ValidationReport
from ._schema import validate_unstored
from ._vocab import PHT, PHT_NS, RDF_TYPE

__all__ = ["PolicyDocument", "PolicyError", "read_policy_document"]

Term = NamedNode | BlankNode | Literal | Triple
"""A subject or object of a policy's triples (blank nodes only if the reader keeps them)."""

_GRAPH = NamedNode("urn:pht:policy")
_CONTEXT = NamedNode("urn:pht:policy:context")
_LISTED_RESULTS = 3
_FORMAT_NAMES = {RdfFormat.TURTLE: "Turtle", RdfFormat.JSON_LD: "JSON-LD", RdfFormat.N_TRIPLES: "N-Triples",
                 RdfFormat.RDF_XML: "RDF/XML"}


class PolicyError(ValueError):
    """A policy that cannot be used; ``str()`` is one sentence, ``report`` the SHACL report if the shapes refused."""

    def __init__(self, message: str, report: ValidationReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class PolicyDocument:
    """One parsed, validated policy: its subject, its triples and their objects by subject and predicate."""

    subject: NamedNode
    """The one resource of the policy class."""
    quads: tuple[Quad, ...]
    properties: Mapping[Term, Mapping[NamedNode, tuple[Term, ...]]]
    """Objects by subject, then predicate, in the file's order."""
    stations: tuple[NamedNode, ...]
    """The policy's ``pht:appliesToStation`` (at most one, the shapes say; none: any station)."""
    source: str
    """How messages name the file (its path, or the name given)."""
    digest: str
    """SHA-256 (hex) of the bytes it was read from: tells which policy produced what."""
    base_iri: str | None = None

    def values(self, predicate: NamedNode, subject: Term | None = None) -> tuple[Term, ...]:
        """The objects of ``predicate`` on ``subject`` (default: the policy), in the file's order."""
        return self.properties.get(self.subject if subject is None else subject, {}).get(predicate, ())

    def name(self, term: object) -> str:
        """How messages name a term: its IRI (relative to the base IRI if under it) or lexical form."""
        return _name(term, self.base_iri)


def read_policy_document(source: Path | bytes, *, policy_class: NamedNode, station: NamedNode | None = None,
                         name: str | None = None, media_type: str | None = None, base_iri: str | None = None,
                         blank_node_prefix: str | None = None) -> PolicyDocument:
    """Read, parse and validate the policy in ``source`` (a file, or its bytes); raise :class:`PolicyError`.

    ``policy_class``: the document must describe exactly one resource of it. ``station``: the station reading
    the policy; a policy naming another one in ``pht:appliesToStation`` is refused (one naming none applies to
    any). ``name``: how messages name the source (default: the path, or ``policy``). ``media_type``: the
    format (a key of ``graph_store``'s RDF formats, e.g. ``ttl``, ``jsonld``, ``nt``; default: the file's suffix,
    else Turtle). ``base_iri`` resolves relative IRIs (none: they are refused) and is left out where messages
    name a term. ``blank_node_prefix``: blank nodes become the IRIs ``<prefix>1``, ``<prefix>2``... in the
    order they appear; without it a blank node is refused (give every resource an IRI).
    """
    if isinstance(source, Path):
        shown = name or str(source)
        try:
            data = source.read_bytes()
        except OSError as e:
            raise PolicyError(f"cannot read the policy {source}: {e.strerror or e}") from None
        media_type = media_type or source.suffix.lstrip(".").lower() or "ttl"
    else:
        shown, data = name or "policy", source
    quads = _parsed(data, media_type or "ttl", shown, base_iri, blank_node_prefix)
    subjects = sorted({q.subject for q in quads if q.predicate == RDF_TYPE and q.object == policy_class
                       and isinstance(q.subject, NamedNode)}, key=lambda s: s.value)
    if len(subjects) != 1:
        raise PolicyError(f"{shown} must hold exactly one {_curie(policy_class)}, it holds {len(subjects)}")
    found: dict[Term, dict[NamedNode, list[Term]]] = {}
    for q in quads:
        found.setdefault(q.subject, {}).setdefault(q.predicate, []).append(q.object)
    properties = {s: {p: tuple(objects) for p, objects in by_predicate.items()} for s, by_predicate in found.items()}
    applies = properties[subjects[0]].get(PHT.appliesToStation, ())
    if station is not None and applies and applies != (station,):
        raise PolicyError(f"{shown} is not this station's policy: it applies to "
                          f"{', '.join(_name(a, base_iri) for a in applies)}, not to this station {station.value}")
    stations = tuple(a for a in applies if isinstance(a, NamedNode))
    report = validate_unstored(ChangeSet(insert=quads),
                               context=[Quad(s, RDF_TYPE, PHT.Station, _CONTEXT) for s in stations])
    if not report.conforms:
        results = report.results
        listed = "; ".join(f"{r.message} ({_name(r.focus_node, base_iri)})" for r in results[:_LISTED_RESULTS])
        more = f", and {len(results) - _LISTED_RESULTS} more" if len(results) > _LISTED_RESULTS else ""
        raise PolicyError(f"{shown} violates the policy shapes: {listed}{more}", report)
    return PolicyDocument(subject=subjects[0], quads=tuple(quads), properties=properties, stations=stations,
                          source=shown, digest=hashlib.sha256(data).hexdigest(), base_iri=base_iri)


def _parsed(data: bytes, media_type: str, shown: str, base_iri: str | None,
            blank_node_prefix: str | None) -> list[Quad]:
    """The document's triples as quads of one scratch graph, blank nodes named (or refused)."""
    fmt = FORMATS.get(media_type.split(";")[0].strip().lower())
    if fmt is None:
        raise PolicyError(f"{shown}: unsupported RDF format {media_type!r}; use one of {', '.join(sorted(FORMATS))}")
    try:
        triples = list(parse(data, format=fmt, base_iri=base_iri, without_named_graphs=True))
        if fmt == RdfFormat.JSON_LD:
            _refuse_dropped_statements(data, base_iri, kept=triples)
    except InvalidInputError as e:
        raise PolicyError(f"{shown}: {e}") from None
    except (SyntaxError, ValueError) as e:
        raise PolicyError(f"{shown} is not valid {_FORMAT_NAMES.get(fmt, fmt.name)}: {e}") from None
    return list(_named(triples, shown, blank_node_prefix))


def _named(triples: Iterable[Quad], shown: str, prefix: str | None) -> Iterator[Quad]:
    names: dict[str, NamedNode] = {}

    def iri(term: BlankNode, triple: Quad) -> NamedNode:
        if prefix is None:
            raise PolicyError(f"{shown}: blank node in {triple}: give every resource an IRI")
        return names.setdefault(term.value, NamedNode(f"{prefix}{len(names) + 1}"))

    for t in triples:
        s, o = t.subject, t.object
        yield Quad(iri(s, t) if isinstance(s, BlankNode) else s, t.predicate,
                   iri(o, t) if isinstance(o, BlankNode) else o, _GRAPH)


def _name(term: object, base_iri: str | None) -> str:
    value: str = getattr(term, "value", str(term))
    return value.removeprefix(base_iri) if base_iri else value


def _curie(term: NamedNode) -> str:
    return "pht:" + term.value.removeprefix(PHT_NS) if term.value.startswith(PHT_NS) else term.value

"""The metadata filter policy: read from Turtle, validated by the shapes, applied to every triple that leaves.

Semantics (``ontology/pht.ttl``, ``pht:FilterPolicy`` and ``pht:FilterRule``), per triple (s p o) of an event:

1. the rules that match it -- every condition the rule states holds: the event is an instance of
   ``pht:eventClass`` (subclasses included), ``p`` is ``pht:property``, the lexical form of ``o`` matches the
   regular expression ``pht:valuePattern`` (searched, not anchored, as ``sh:pattern``) -- are taken highest
   ``pht:priority`` first, ties in favour of ``pht:Deny`` (then a coarsening rule before one without, so a tie
   never publishes more precision than one of the tied rules asks for);
2. the first one decides: ``pht:Allow`` publishes the triple (its value blurred by ``pht:coarsen``, if given),
   ``pht:Deny`` drops it -- and a Deny rule without ``pht:property`` drops the whole event;
3. if no rule matches, ``pht:defaultEffect`` decides.

Fail-closed details the ontology leaves open, decided here: a coarsening that cannot apply to the value (a
timestamp rounding of a number, a bucket of a text) drops the triple -- the policy asked for less precision
than can be given, so nothing is given; an event whose ``rdf:type`` triple does not leave unchanged is dropped
whole (an event without its class means nothing). The MPU drops an event the filtering leaves invalid (a
required property denied) as well: it validates what leaves against the shapes.

Station descriptions (``POST /description``) go through the same filter, their resource's class
(``pht:Station``, ``dcat:Dataset``) standing for the event class.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path

import rdflib
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    DCAT,
    PHT,
    PREFIXES,
    RDF_TYPE,
    RDFS,
    XSD,
    PolicyDocument,
    PolicyError,
    load_schema,
    read_policy_document,
)

from ._events import EventTriples
from ._secret import StationSecret, process_secret

__all__ = ["Policy", "PolicyError", "Rule", "TripleDecision", "Filtered", "load_policy", "read_policy",
           "event_classes", "class_closure", "coarsen"]

_BASE = "urn:pht:mpu:policy/"
"""Base of the policy's relative IRIs; its blank nodes (``pht:rule [ ... ]``) become ``<_BASE>rule-1``..."""
_NUMERIC = {XSD[t].value for t in ("decimal", "integer", "double", "float", "long", "int", "short", "byte",
                                      "nonNegativeInteger", "positiveInteger", "unsignedLong", "unsignedInt")}
_DATETIME = XSD.dateTime.value


@lru_cache(maxsize=1)
def class_closure() -> dict[NamedNode, frozenset[NamedNode]]:
    """Every class of the ontology to itself and its superclasses (``rdfs:subClassOf``, transitively)."""
    g = load_schema().ontology
    sub = rdflib.RDFS.subClassOf
    classes = set(g.subjects(sub, None)) | set(g.objects(None, sub)) \
        | set(g.subjects(rdflib.RDF.type, rdflib.OWL.Class))
    return {NamedNode(str(c)): frozenset(NamedNode(str(x)) for x in g.transitive_objects(c, sub)
                                         if isinstance(x, rdflib.URIRef))
            for c in classes if isinstance(c, rdflib.URIRef)}


@lru_cache(maxsize=1)
def event_classes() -> frozenset[NamedNode]:
    """``pht:Event`` and its subclasses: what ``pht:eventClass`` may name (plus the described resources)."""
    return frozenset(c for c, supers in class_closure().items() if PHT.Event in supers)


DESCRIBED_CLASSES = frozenset({PHT.Station, DCAT.Dataset})
"""Classes of the resources a station description talks about; a rule may name them as its event class."""


@dataclass(frozen=True)
class Rule:
    """One ``pht:FilterRule``; ``name`` is its IRI (or ``rule #n`` for a blank node) for messages."""

    name: str
    effect: NamedNode
    priority: int
    event_class: NamedNode | None = None
    predicate: NamedNode | None = None
    """``pht:property``: the predicate the rule is about."""
    value_pattern: str | None = None
    coarsen: NamedNode | None = None
    label: str = ""
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    @property
    def denies(self) -> bool:
        return self.effect == PHT.Deny

    def matches(self, classes: frozenset[NamedNode], predicate: NamedNode, value: object) -> bool:
        """True if every condition the rule states holds for the triple (event of ``classes``, p, value)."""
        if self.predicate is not None and predicate != self.predicate:
            return False
        if self.event_class is not None and self.event_class not in classes:
            return False
        if self._regex is not None and self._regex.search(getattr(value, "value", "")) is None:
            return False
        return True

    def reference(self) -> str:
        """How messages name the rule: ``rule rule-3 ("error messages leave only as their hash")``."""
        return f'rule {self.name}' + (f' ("{self.label}")' if self.label else "")

    def describe(self) -> str:
        what = [f"class {_short(self.event_class)}" if self.event_class else "",
                f"property {_short(self.predicate)}" if self.predicate else "",
                f"value ~ /{self.value_pattern}/" if self.value_pattern is not None else ""]
        cond = ", ".join(w for w in what if w) or "every triple"
        how = f", coarsen {_short(self.coarsen)}" if self.coarsen else ""
        whole = " (whole event)" if self.denies and self.predicate is None else ""
        return f"{_short(self.effect)}{whole} {cond}{how}"


@dataclass(frozen=True)
class TripleDecision:
    """What the policy did with one triple: ``leaves`` is what is published (None: dropped) and ``reason`` why."""

    quad: Quad
    leaves: Quad | None
    rule: Rule | None
    reason: str


@dataclass(frozen=True)
class Filtered:
    """One event after the filter: the decision for each of its triples, or why it was dropped whole."""

    event: EventTriples
    decisions: tuple[TripleDecision, ...]
    dropped_whole: str | None = None

    @property
    def leaving(self) -> tuple[Quad, ...]:
        if self.dropped_whole is not None:
            return ()
        return tuple(d.leaves for d in self.decisions if d.leaves is not None)

    @property
    def changed(self) -> bool:
        """True if what leaves differs from the event (a triple dropped or coarsened)."""
        return self.dropped_whole is not None or any(d.leaves != d.quad for d in self.decisions)

    def dropped_whole_as(self, reason: str) -> Filtered:
        return Filtered(self.event, self.decisions, reason)


@dataclass(frozen=True)
class Policy:
    """A loaded filter policy: rules in evaluation order and the default effect."""

    iri: str
    default_effect: NamedNode
    rules: tuple[Rule, ...]
    station: NamedNode | None = None
    source: str = ""
    digest: str = ""
    """SHA-256 of the Turtle it was read from (tells which policy produced what)."""

    def decide(self, classes: frozenset[NamedNode], quad: Quad) -> tuple[Rule | None, bool]:
        """The deciding rule (None: the default effect) and whether the triple is allowed."""
        predicate, obj = quad.predicate, quad.object  # read once: each read makes a new Python object
        for rule in self.rules:
            if rule.matches(classes, predicate, obj):
                return rule, not rule.denies
        return None, self.default_effect == PHT.Allow

    def filter(self, event: EventTriples, secret: StationSecret | None = None) -> Filtered:
        """Apply the policy to every triple of ``event`` (``secret`` keys ``pht:HashValue``, see :func:`coarsen`)."""
        classes = class_closure().get(event.cls, frozenset((event.cls,)))
        decisions: list[TripleDecision] = []
        whole: str | None = None
        for quad in event.quads:
            rule, allowed = self.decide(classes, quad)
            name = rule.reference() if rule is not None else f"the default effect {_short(self.default_effect)}"
            if not allowed:
                if rule is not None and rule.predicate is None and whole is None:
                    whole = f"{name} denies the whole event"
                decisions.append(TripleDecision(quad, None, rule, f"denied by {name}"))
                continue
            if rule is None or rule.coarsen is None:
                decisions.append(TripleDecision(quad, quad, rule, f"allowed by {name}"))
                continue
            blurred = coarsen(rule.coarsen, quad.object, secret)
            if blurred is None:
                decisions.append(TripleDecision(quad, None, rule, f"{name} asks for {_short(rule.coarsen)}, which "
                                                f"cannot apply to this value: dropped"))
            else:
                decisions.append(TripleDecision(quad, Quad(quad.subject, quad.predicate, blurred, quad.graph_name),
                                                rule, f"allowed by {name}, {_short(rule.coarsen)}"))
        if whole is None:
            for d in decisions:
                if d.quad.predicate == RDF_TYPE and d.leaves != d.quad:
                    whole = f"its class {_short(d.quad.object)} may not leave ({d.reason}), so nothing of it does"
        return Filtered(event, tuple(decisions), whole)


# -- coarsenings -----------------------------------------------------------------------------------------


def coarsen(how: NamedNode, value: object, secret: StationSecret | None = None) -> Literal | None:
    """``value`` blurred by the coarsening ``how``, or None if it does not apply to such a value.

    ``pht:HashValue`` is the HMAC-SHA-256 of the lexical form (or IRI) under the station's ``secret`` (default:
    this process's random key), never a plain hash: that would let anyone confirm a guess of the value.

    >>> dt = XSD.dateTime
    >>> coarsen(PHT.RoundToHour, Literal("2026-11-27T10:42:13.5+01:00", datatype=dt)).value
    '2026-11-27T09:00:00Z'
    >>> coarsen(PHT.BucketMemory, Literal("314572800.0", datatype=XSD.decimal)).value
    '268435456.0'
    """
    if how == PHT.HashValue:
        if not isinstance(value, Literal | NamedNode):
            return None
        return Literal((secret or process_secret()).digest("hash-value", value.value))
    if not isinstance(value, Literal):
        return None
    datatype = value.datatype.value if value.datatype is not None else ""
    if how in (PHT.RoundToMinute, PHT.RoundToHour, PHT.RoundToDay):
        if datatype != _DATETIME:
            return None
        try:
            t = datetime.fromisoformat(value.value)
        except ValueError:
            return None
        if t.tzinfo is None:
            return None  # no time zone: the instant is unknown, so it cannot be rounded in UTC
        t = t.astimezone(timezone.utc)
        text = {PHT.RoundToMinute: f"{t:%Y-%m-%dT%H:%M}:00Z", PHT.RoundToHour: f"{t:%Y-%m-%dT%H}:00:00Z",
                PHT.RoundToDay: f"{t:%Y-%m-%d}T00:00:00Z"}[how]
        return Literal(text, datatype=value.datatype)
    if how in (PHT.BucketMemory, PHT.BucketPercent):
        if datatype not in _NUMERIC:
            return None
        try:
            number = Decimal(value.value.strip())
        except InvalidOperation:
            return None
        if not number.is_finite() or number < 0:
            return None
        if how == PHT.BucketMemory:
            bucket = 0 if number < 1 else 1 << (int(number).bit_length() - 1)
        else:
            bucket = int(math.floor(number / 10)) * 10
        return _number(bucket, value.datatype)
    return None


def _number(n: int, datatype: NamedNode) -> Literal:
    if datatype == XSD.decimal:
        return Literal(f"{n}.0", datatype=datatype)
    if datatype in (XSD.double, XSD.float):
        return Literal(f"{n}.0E0", datatype=datatype)
    return Literal(str(n), datatype=datatype)


# -- loading ---------------------------------------------------------------------------------------------


def read_policy(path: Path, *, station: NamedNode | None = None) -> Policy:
    """Load the policy in the Turtle file ``path`` (see :func:`load_policy`)."""
    return _compiled(Path(path), station=station, name=None)


def load_policy(data: bytes, *, source: str = "policy", station: NamedNode | None = None) -> Policy:
    """Parse, validate and compile a filter policy written in Turtle.

    ``station``: the station the MPU serves; a policy naming another one in ``pht:appliesToStation`` is
    refused. Raises PolicyError (one sentence; ``report`` holds the SHACL report) if the file is not Turtle,
    violates the shapes, holds no or several ``pht:FilterPolicy``, or a rule's pattern or class is unusable.
    Reading, parsing and validating are :func:`graph_store.read_policy_document`'s; the rules are this module's.
    """
    return _compiled(data, station=station, name=source)


def _compiled(source: Path | bytes, *, station: NamedNode | None, name: str | None) -> Policy:
    document = read_policy_document(source, policy_class=PHT.FilterPolicy, station=station, name=name,
                                    media_type="ttl", base_iri=_BASE, blank_node_prefix=_BASE + "rule-")
    rules = []
    for node in document.values(PHT.rule):
        assert isinstance(node, NamedNode)  # the shape's sh:class pht:FilterRule (and blank nodes are named)
        rules.append(_rule(document, node))
    order = {id(r): i for i, r in enumerate(rules)}  # the file's order breaks the remaining ties
    rules.sort(key=lambda r: (-r.priority, not r.denies, r.coarsen is None, order[id(r)]))
    default = document.values(PHT.defaultEffect)[0]
    assert isinstance(default, NamedNode)  # the shape's sh:in guarantees it
    return Policy(iri=document.name(document.subject), default_effect=default, rules=tuple(rules),
                  station=document.stations[0] if document.stations else None, source=document.source,
                  digest=document.digest)


def _rule(document: PolicyDocument, node: NamedNode) -> Rule:
    def one(p: NamedNode) -> object | None:
        values = document.values(p, node)
        return values[0] if values else None

    source, name = document.source, document.name(node)
    pattern = one(PHT.valuePattern)
    regex = None
    if pattern is not None:
        try:
            regex = re.compile(getattr(pattern, "value", ""))
        except re.error as e:
            raise PolicyError(f"{source}: rule {name} has a value pattern that is not a regular expression "
                              f"({getattr(pattern, 'value', '')!r}: {e})") from None
    event_class = one(PHT.eventClass)
    if event_class is not None and event_class not in event_classes() | DESCRIBED_CLASSES:
        raise PolicyError(f"{source}: rule {name} names {_short(event_class)} as its event class, which is neither "
                          "pht:Event nor one of its subclasses (nor pht:Station / dcat:Dataset for descriptions)")
    label = one(RDFS.label) or one(RDFS.comment)

    def named(p: NamedNode) -> NamedNode | None:  # the shapes (validated above) make these IRIs
        value = one(p)
        return value if isinstance(value, NamedNode) else None

    effect = named(PHT.effect)
    if effect is None:
        raise PolicyError(f"{source}: rule {name} has no pht:effect")
    return Rule(name=name, effect=effect, priority=int(getattr(one(PHT.priority), "value", "0")),
                event_class=named(PHT.eventClass), predicate=named(PHT.property),
                value_pattern=getattr(pattern, "value", None), coarsen=named(PHT.coarsen),
                label=getattr(label, "value", ""), _regex=regex)


_SHOWN_PREFIXES = {prefix: ns for prefix, ns in PREFIXES.items() if prefix != "xsd"}
"""The MPU's messages have always spelt XSD IRIs out in full (the CLI's tables use ``PREFIXES`` whole)."""


def _short(term: object) -> str:
    """A term in a compact, readable form (``pht:Deny``)."""
    value = getattr(term, "value", str(term))
    for prefix, ns in _SHOWN_PREFIXES.items():
        if isinstance(term, NamedNode) and value.startswith(ns):
            return f"{prefix}:{value[len(ns):]}"
    return str(term) if not isinstance(term, NamedNode) else value

"""A train's events in the terms of PADME's metadata schema, so PADME's metadata consumers can read our history.

Why: PADME (the platform this one follows) records trains as events of its schema (production namespace
``http://schema.padme-analytics.de#``; schema v1 ``https://github.com/LaurenzNeumann/PHTMetadata#``). The ontology
maps every event class of ours to PADME's with ``skos:closeMatch``; :func:`padme_class` reads that mapping (the one
definition of it) and walks up ``rdfs:subClassOf`` for a class PADME has no counterpart of (a lifecycle state
change becomes PADME's general ``ExecutionEvent``), preferring the production schema. :func:`padme_document` writes
the events as JSON-LD with PADME's event properties; our own terms ride along so nothing is lost.

>>> padme_class("StartedRunningEvent")
'http://schema.padme-analytics.de#StartedRunningEvent'
>>> padme_class("StateChangeEvent")
'https://github.com/LaurenzNeumann/PHTMetadata#ExecutionEvent'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from pyoxigraph import NamedNode, RdfFormat, parse

from graph_store import ONTOLOGY_DIR, PHT

__all__ = ["PADME", "PADME_V1", "event_types", "padme_class", "padme_document"]

PADME = "http://schema.padme-analytics.de#"
PADME_V1 = "https://github.com/LaurenzNeumann/PHTMetadata#"
_SKOS_CLOSE = NamedNode("http://www.w3.org/2004/02/skos/core#closeMatch")
_NS = PHT.Event.value[:-len("Event")]
_SUBCLASS = NamedNode("http://www.w3.org/2000/01/rdf-schema#subClassOf")


@cache
def _ontology() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(closeMatches by our class's local name, superclass by local name) from ontology/pht.ttl."""
    matches: dict[str, list[str]] = {}
    parents: dict[str, str] = {}
    for quad in parse(path=str(ONTOLOGY_DIR / "pht.ttl"), format=RdfFormat.TURTLE):
        subject = quad.subject
        if not isinstance(subject, NamedNode) or not subject.value.startswith(_NS):
            continue
        name = subject.value.rsplit("#", 1)[1]
        if quad.predicate == _SKOS_CLOSE and isinstance(quad.object, NamedNode):
            matches.setdefault(name, []).append(quad.object.value)
        elif quad.predicate == _SUBCLASS and isinstance(quad.object, NamedNode) \
                and quad.object.value.startswith(_NS):
            parents[name] = quad.object.value.rsplit("#", 1)[1]
    return matches, parents


def event_types() -> list[str]:
    """Every event class of ours: ``pht:Event`` and its subclasses, by local name."""
    _, parents = _ontology()
    found = {"Event"}
    while True:
        more = {c for c, p in parents.items() if p in found} - found
        if not more:
            return sorted(found)
        found |= more


def padme_class(event_type: str) -> str | None:
    """PADME's class for our event class ``event_type`` (local name): its own closeMatch in PADME's production
    schema, else in schema v1, else its nearest superclass's; None for a name that is no event class of ours."""
    matches, parents = _ontology()
    current: str | None = event_type
    while current is not None:
        found = matches.get(current, [])
        for namespace in (PADME, PADME_V1):
            hit = sorted(m for m in found if m.startswith(namespace))
            if hit:
                return hit[0]
        current = parents.get(current)
    return None


def padme_document(train: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The train's ``events`` (as ``GET /api/trains/{id}/events`` gives them) as a JSON-LD document in PADME's terms.

    :raises ValueError: an event of a type with no PADME class (none today: every event class maps).
    """
    graph = []
    for event in events:
        kind = padme_class(str(event["type"]))
        if kind is None:
            raise ValueError(f"the event type {event['type']} has no PADME counterpart")
        node: dict[str, Any] = {
            "@id": event["event"], "@type": [kind, _NS + str(event["type"])],
            "padme:eventTimestamp": {"@value": event["time"], "@type": "xsd:dateTime"},
            "padme:eventAssociatedWithTrain": {"@id": train["iri"]}}
        if event.get("agent"):
            node["padme:eventEmittedByInformationalAuthority"] = {"@id": event["agent"]}
        elif str(event.get("source", "")).startswith("station:"):
            node["padme:eventEmittedByInformationalAuthority"] = {"@id": str(event["source"])}
        if event.get("reason"):
            key = "padme:rejectMessageHumanReadable" if event.get("to_state") == "rejected" else "pht:reason"
            node[key] = event["reason"]
        for ours in ("execution", "from_state", "to_state", "role"):
            if event.get(ours):
                node[f"pht:{ours}"] = event[ours]
        graph.append(node)
    return {"@context": {"padme": PADME, "padme1": PADME_V1, "pht": _NS,
                         "xsd": "http://www.w3.org/2001/XMLSchema#"},
            "@graph": graph}

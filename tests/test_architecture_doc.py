"""docs/architecture.md stays true to the state chart in ontology/lifecycle.ttl."""

from __future__ import annotations

from pathlib import Path

import rdflib

REPO = Path(__file__).resolve().parent.parent
P = rdflib.Namespace("https://w3id.org/pht-kg/vocab#")


def test_every_transition_of_the_chart_is_in_the_architecture_doc() -> None:
    g = rdflib.Graph().parse(REPO / "ontology" / "lifecycle.ttl")
    doc = (REPO / "docs" / "architecture.md").read_text()
    transitions = list(g.subjects(rdflib.RDF.type, P.Transition))
    assert len(transitions) > 20
    for t in transitions:
        line = f"{str(g.value(t, P['from'])).split('#')[1]} --> {str(g.value(t, P.to)).split('#')[1]}:"
        assert line in doc, f"{t} ({line}) is missing from the state chart in docs/architecture.md"

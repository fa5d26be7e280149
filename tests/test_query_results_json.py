"""The SPARQL JSON results writer (``query_eval._results_json``) writes terms as text: it must write exactly what
``json.dumps`` writes for the standard form of each term, and pyoxigraph must read the terms back."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pyoxigraph import (
    BaseDirection,
    BlankNode,
    Literal,
    NamedNode,
    QueryResultsFormat,
    QuerySolutions,
    Triple,
    parse_query_results,
)

from graph_store import XSD
from orchestrator.query_eval import QueryAnswer, answer_response

TERMS: dict[str, Any] = {
    "an IRI": NamedNode("https://pht.example.org/id/trains/t?q=1&x=é/漢"),
    "a blank node": BlankNode("b0"),
    "a plain string": Literal("line one\nline \"two\"\t\\ \u0001 é 漢 😀"),
    "a typed literal": Literal("42", datatype=XSD.integer),
    "a language string": Literal("Zug", language="de"),
    "a directional string": Literal("قطار", language="ar", direction=BaseDirection.RTL),
    "a triple term": Triple(NamedNode("urn:s"), NamedNode("urn:p"), Literal("o\u2028", language="en")),
}


def standard(term: Any) -> dict[str, Any]:
    """The term as the SPARQL 1.1 / 1.2 JSON results format spells it (the test's oracle)."""
    if isinstance(term, NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, Triple):
        return {"type": "triple", "value": {"subject": standard(term.subject), "predicate": standard(term.predicate),
                                            "object": standard(term.object)}}
    out: dict[str, Any] = {"type": "literal", "value": term.value}
    if term.language:
        out["xml:lang"] = term.language
        if term.direction is not None:
            out["its:dir"] = str(term.direction)
    elif term.datatype != XSD.string:
        out["datatype"] = term.datatype.value
    return out


@pytest.mark.parametrize("name", sorted(TERMS))
def test_each_term_is_written_as_json_dumps_writes_its_standard_form(name: str) -> None:
    term = TERMS[name]
    answer = QueryAnswer(variables=("x", "é"), rows=((term, None), (None, term), (term, term)))
    body = answer_response(answer, "application/sparql-results+json", 10).body
    rows = [{"x": standard(term)}, {"é": standard(term)}, {"x": standard(term), "é": standard(term)}]
    expected = json.dumps({"head": {"vars": ["x", "é"]}, "results": {"bindings": rows}}, ensure_ascii=False,
                          separators=(",", ":")).encode()
    assert body == expected
    parsed = parse_query_results(bytes(body), format=QueryResultsFormat.JSON)
    assert isinstance(parsed, QuerySolutions)
    assert [tuple(solution) for solution in parsed] == [(term, None), (None, term), (term, term)]


def test_an_answer_without_rows_is_written_too() -> None:
    body = answer_response(QueryAnswer(variables=("s",)), "application/sparql-results+json", 10).body
    assert json.loads(body) == {"head": {"vars": ["s"]}, "results": {"bindings": []}}

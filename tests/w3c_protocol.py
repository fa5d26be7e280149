"""A runner for the W3C SPARQL 1.1 Protocol and Graph Store Protocol test manifests (w3c/rdf-tests).

The manifests (``tests/fixtures/w3c-protocol/``, copied unchanged) describe each test as HTTP requests sent in
order (``ht:Request``: method, absolute path, headers, body) and what each response must be
(``mf:expectedStatus``, ``mf:expectedBoolean``, ``mf:expectedFormat``, response headers and an RDF body compared
by graph isomorphism, ``mf:expectedLocation`` naming a template variable). They are read with an RDF parser
(rdflib), never by pattern matching on the text.

Paths starting with ``/sparql/`` go to the service's ``/sparql``; paths starting with ``/gsp`` to its
``/rdf-graphs``. ``ut:graphData`` is loaded through the platform's own write path (Graph Store Protocol PUT).

Blank nodes: the platform skolemises every blank node it is sent into an IRI under ``/.well-known/genid/``
(RDF 1.1 Concepts §3.5), so a graph read back names them by IRI. An expected body with blank nodes is
therefore compared with the response after each skolem IRI is replaced by a blank node (one per IRI): that
is what skolemisation means, and the comparison is still a full isomorphism check.

The Graph Store Protocol manifests list 13 tests in their ``mf:entries``; ``manifest-direct.ttl`` defines a
14th (``head_non_existing_direct``) that its entries omit. Both are run: the entries in order, then every
``mf:GraphStoreProtocolTest`` the entries omit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pyoxigraph import QueryBoolean, QueryResultsFormat, QuerySolutions, parse_query_results
from rdflib import BNode, Graph, Literal, Namespace, URIRef
from rdflib.collection import Collection
from rdflib.compare import isomorphic
from rdflib.namespace import RDF, RDFS
from rdflib.term import Node

FIXTURES = Path(__file__).parent / "fixtures" / "w3c-protocol"
PROTOCOL_MANIFEST = FIXTURES / "protocol" / "manifest.ttl"
GSP_MANIFEST = FIXTURES / "graph-store-protocol" / "manifest.ttl"

MF = Namespace("http://www.w3.org/2001/sw/DataAccess/tests/test-manifest#")
HT = Namespace("http://www.w3.org/2011/http#")
HTS = "http://www.w3.org/2011/http-statusCodes#"
CNT = Namespace("http://www.w3.org/2011/content#")
UT = Namespace("http://www.w3.org/2009/sparql/tests/test-update#")
GENID = "/.well-known/genid/"

_NAMED_STATUS = {"OK": 200, "Created": 201, "NoContent": 204, "NotFound": 404, "BadRequest": 400}
_RESULTS = {"application/sparql-results+json": QueryResultsFormat.JSON,
            "application/sparql-results+xml": QueryResultsFormat.XML,
            "text/csv": QueryResultsFormat.CSV, "text/tab-separated-values": QueryResultsFormat.TSV}
_RDF = {"text/turtle": "turtle", "application/n-triples": "nt", "application/rdf+xml": "xml",
        "application/ld+json": "json-ld", "application/trig": "trig"}


@dataclass(frozen=True)
class Expected:
    statuses: tuple[str, ...]
    boolean: bool | None = None
    format: str | None = None
    location_variable: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: str | None
    expected: Expected


@dataclass(frozen=True)
class W3CTest:
    id: str
    name: str
    graph_data: tuple[tuple[Path, str], ...]
    steps: tuple[Step, ...]
    listed: bool = True
    """False for a test the manifest defines but leaves out of its ``mf:entries``."""


@dataclass
class Outcome:
    test: W3CTest
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _one(g: Graph, s: Node, p: URIRef) -> Node | None:
    return next(iter(g.objects(s, p)), None)


def _items(g: Graph, head: Node | None) -> list[Node]:
    return [] if head is None else list(Collection(g, head))


def _headers(g: Graph, node: Node) -> tuple[tuple[str, str], ...]:
    return tuple((str(_one(g, h, HT.fieldName)).lower(), str(_one(g, h, HT.fieldValue)))
                 for h in _items(g, _one(g, node, HT.headers)))


def _body(g: Graph, node: Node) -> str | None:
    body = _one(g, node, HT.body)
    return None if body is None else str(_one(g, body, CNT.chars))


def _step(g: Graph, req: Node) -> Step:
    resp = _one(g, req, HT.resp)
    assert resp is not None, f"request {req} has no ht:resp"
    boolean = _one(g, resp, MF.expectedBoolean)
    fmt = _one(g, resp, MF.expectedFormat)
    location = _one(g, resp, MF.expectedLocation)
    expected = Expected(
        statuses=tuple(sorted(str(s) for s in g.objects(resp, MF.expectedStatus))),
        boolean=None if boolean is None else bool(isinstance(boolean, Literal) and boolean.toPython()),
        format=None if fmt is None else str(fmt),
        location_variable=None if location is None else str(location),
        headers=_headers(g, resp), body=_body(g, resp))
    return Step(str(_one(g, req, HT.methodName)), str(_one(g, req, HT.absolutePath)), _headers(g, req),
                _body(g, req), expected)


def _test(g: Graph, node: URIRef, base: Path, listed: bool) -> W3CTest:
    data = []
    for gd in g.objects(node, UT.graphData):
        file = _one(g, gd, UT.graph)
        data.append((base / Path(str(file)).name, str(_one(g, gd, RDFS.label))))
    action = _one(g, node, MF.action)
    assert action is not None, f"test {node} has no mf:action"
    steps = tuple(_step(g, r) for r in _items(g, _one(g, action, HT.requests)))
    return W3CTest(str(node).rsplit("#", 1)[-1], str(_one(g, node, MF.name)), tuple(sorted(data)), steps, listed)


def load_manifest(path: Path) -> list[W3CTest]:
    """The tests of a manifest and of the manifests it ``mf:include``s: ``mf:entries`` in order, then the
    tests of the manifest's type that no entries list names."""
    g = Graph().parse(path, format="turtle", publicID=path.as_uri())
    manifest = URIRef(path.as_uri())
    tests: list[W3CTest] = []
    for included in _items(g, _one(g, manifest, MF.include)):
        tests += load_manifest(path.parent / Path(str(included)).name)
    entries = [e for e in _items(g, _one(g, manifest, MF.entries)) if isinstance(e, URIRef)]
    tests += [_test(g, e, path.parent, True) for e in entries]
    for kind in (MF.ProtocolTest, MF.GraphStoreProtocolTest):
        defined = sorted(t for t in g.subjects(RDF.type, kind) if isinstance(t, URIRef))
        tests += [_test(g, t, path.parent, False) for t in defined if t not in entries]
    return tests


def endpoint_path(path: str) -> str:
    """The manifest's ``/sparql/…`` and ``/gsp…`` paths on this service (``/sparql``, ``/rdf-graphs``)."""
    if path.startswith("/sparql/"):
        return "/sparql" + path[len("/sparql/"):] if path[len("/sparql/"):][:1] in ("", "?") else \
            "/sparql/" + path[len("/sparql/"):]
    if path.startswith("/gsp"):
        return "/rdf-graphs" + path[len("/gsp"):]
    raise ValueError(f"unexpected absolute path {path!r}")


def _status_ok(code: int, expected: tuple[str, ...]) -> bool:
    for iri in expected:
        name = iri.removeprefix(HTS)
        if name.startswith("StatusCode") and name.endswith("xx"):
            if code // 100 == int(name[len("StatusCode")]):
                return True
        elif _NAMED_STATUS.get(name) == code:
            return True
    return False


def _media(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _norm(value: str) -> str:
    return ";".join(part.strip().lower() for part in value.split(";"))


def deskolemised(graph: Graph) -> Graph:
    """``graph`` with each IRI under ``/.well-known/genid/`` replaced by a blank node (one per IRI)."""
    nodes: dict[URIRef, BNode] = {}

    def term(t: Node) -> Node:
        if isinstance(t, URIRef) and GENID in str(t):
            return nodes.setdefault(t, BNode())
        return t
    out = Graph()
    for s, p, o in graph:
        out.add((term(s), p, term(o)))
    return out


def _check_response(r: httpx.Response, expected: Expected, method: str) -> list[str]:
    problems = []
    if not _status_ok(r.status_code, expected.statuses):
        wanted = ", ".join(s.removeprefix(HTS) for s in expected.statuses)
        problems.append(f"status {r.status_code} (expected {wanted}): {r.text[:300]}")
        return problems
    for name, value in expected.headers:
        if _norm(r.headers.get(name, "")) != _norm(value):
            problems.append(f"header {name}: {r.headers.get(name)!r} (expected {value!r})")
    media = _media(r.headers.get("content-type"))
    if expected.format in ("boolean", "tabular"):
        fmt = _RESULTS.get(media)
        if fmt is None:
            problems.append(f"{media!r} is not a SPARQL results format")
            return problems
        try:
            parsed = parse_query_results(r.content, format=fmt)
        except (SyntaxError, ValueError) as e:
            return [*problems, f"unparseable {media} results: {e}"]
        if expected.format == "boolean" and not isinstance(parsed, QueryBoolean):
            problems.append(f"expected a boolean result, got {type(parsed).__name__}")
        if expected.format == "tabular" and not isinstance(parsed, QuerySolutions):
            problems.append(f"expected a table of solutions, got {type(parsed).__name__}")
        if expected.boolean is not None and isinstance(parsed, QueryBoolean) and bool(parsed) != expected.boolean:
            problems.append(f"boolean {bool(parsed)} (expected {expected.boolean})")
    elif expected.format == "RDF":
        if media not in _RDF:
            problems.append(f"{media!r} is not an RDF format")
        else:
            try:
                Graph().parse(data=r.content, format=_RDF[media])
            except Exception as e:  # rdflib's parsers raise assorted errors
                problems.append(f"unparseable {media}: {e}")
    if expected.body is not None and method != "HEAD":
        kind = _media(dict(expected.headers).get("content-type", "text/turtle"))
        want = Graph().parse(data=expected.body, format=_RDF[kind])
        if media not in _RDF:
            return [*problems, f"expected an RDF body, got {media!r}"]
        got = deskolemised(Graph().parse(data=r.content, format=_RDF[media]))
        if not isomorphic(want, got):
            problems.append("body not isomorphic to the expected graph; got:\n" + got.serialize(format="nt"))
    return problems


def run_test(test: W3CTest, client: httpx.Client, auth: Mapping[str, str],
             load: Callable[[Path, str], None]) -> Outcome:
    """Load the test's graph data with ``load(file, graph_iri)``, then send its requests in order with ``client``
    (``auth`` added to each) and check each response; the first failing step ends the test."""
    outcome = Outcome(test)
    for file, graph in test.graph_data:
        load(file, graph)
    variables: dict[str, str] = {}
    for i, step in enumerate(test.steps, 1):
        path, body = step.path, step.body
        for name, value in variables.items():
            path = path.replace(name, value)
            body = None if body is None else body.replace(name, value)
        headers = {**dict(step.headers), **auth}
        r = client.request(step.method, endpoint_path(path), headers=headers,
                           content=None if body is None else body.encode("utf-8"))
        problems = _check_response(r, step.expected, step.method)
        if step.expected.location_variable is not None:
            location = r.headers.get("location")
            if location is None:
                problems.append("no Location header")
            else:
                variables[step.expected.location_variable] = location
        if problems:
            outcome.failures += [f"request {i} ({step.method} {step.path[:80]}): {p}" for p in problems]
            break
    return outcome


def all_tests() -> Iterator[tuple[str, W3CTest]]:
    """Every test of both suites, as (suite, test)."""
    for suite, manifest in (("protocol", PROTOCOL_MANIFEST), ("graph-store-protocol", GSP_MANIFEST)):
        for test in load_manifest(manifest):
            yield suite, test

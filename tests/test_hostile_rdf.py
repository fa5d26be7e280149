"""RDF bodies built to hurt the service: entity expansion, deep nesting, expansion by prefixes and contexts, and
compressed bodies. Each is refused with one sentence before it costs memory, and nothing is stored.

The nesting cases run the parse in a child process with a memory cap: without the bound, pyoxigraph 0.5.13's
JSON-LD parser crashes with signal 11 after using gigabytes, which must not take the test run down with it.
"""

from __future__ import annotations

import gzip
import http.server
import json
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator

from central_store import new_central_store
import pytest
from api_helpers import OPS, SETTINGS, station
from fastapi.testclient import TestClient
from pyoxigraph import NamedNode

from graph_store import GraphStore, InputTooLarge, InvalidInputError, parse_rdf, station_graph
from graph_store._hostile_rdf import EXPANSION_FACTOR, MAX_NESTING
from orchestrator.app import create_app

pytestmark = pytest.mark.central_stores

GRAPH = station_graph("bonn")
LABEL = "http://www.w3.org/2000/01/rdf-schema#label"

ENTITY_BOMB = """<?xml version="1.0"?>
<!DOCTYPE rdf:RDF [
<!ENTITY a "aaaaaaaaaa">
<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
<!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
<!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
<!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
<!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
<!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#">
<rdf:Description rdf:about="https://example.org/a"><rdfs:label>&h;</rdfs:label></rdf:Description></rdf:RDF>
"""
"""About 700 bytes that an entity-expanding parser turns into a 100,000,000-character literal."""

XML_HEAD = ('<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            'xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#">')


@pytest.fixture()
def client() -> Iterator[tuple[GraphStore, TestClient]]:
    store = new_central_store()
    with TestClient(create_app(SETTINGS, store=store)) as c:
        yield store, c
    store.close()


def put(c: TestClient, body: bytes, media_type: str, headers: dict[str, str] = OPS) -> tuple[int, str]:
    r = c.put("/rdf-graphs", params={"graph": GRAPH.value}, content=body,
              headers={**headers, "Content-Type": media_type})
    return r.status_code, r.json().get("detail", "") if r.content else ""


def stored(store: GraphStore) -> int:
    return len(store.quads(g=GRAPH))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_entity_bomb_is_refused_before_parsing_and_costs_no_memory(client: tuple[GraphStore, TestClient]) -> None:
    store, c = client
    before = peak_rss_mb()
    started = time.monotonic()
    for headers in (OPS, station("aachen")):
        status, detail = put(c, ENTITY_BOMB.encode(), "application/rdf+xml", headers)
        assert 400 <= status < 500, (status, detail)
        assert stored(store) == 0
    status, detail = put(c, ENTITY_BOMB.encode(), "application/rdf+xml")
    assert status == 400 and "document type declaration" in detail and detail.count(". ") == 0, detail
    assert time.monotonic() - started < 5
    assert peak_rss_mb() - before < 50, "the expansion must never happen"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-8-sig", "iso-8859-1"])
def test_a_dtd_is_found_in_every_encoding_xml_allows(encoding: str) -> None:
    declared = "UTF-16" if encoding == "utf-16-be" else encoding.upper()  # with a big-endian byte order mark
    body = ENTITY_BOMB.replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{declared}"?>')
    data = body.encode(encoding.replace("-be", "") if encoding == "utf-16-be" else encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + body.encode("utf-16-be")
    with pytest.raises(InvalidInputError, match="document type declaration"):
        parse_rdf(data, "application/rdf+xml", GRAPH)


@pytest.mark.parametrize("declared", ["", ' encoding="UTF-32"'])
def test_rdf_xml_in_an_encoding_the_check_cannot_read_is_refused(declared: str) -> None:
    body = ENTITY_BOMB.replace('<?xml version="1.0"?>', f'<?xml version="1.0"{declared}?>').encode("utf-32")
    with pytest.raises(InvalidInputError):
        parse_rdf(body, "application/rdf+xml", GRAPH)


def test_an_entity_declaration_without_use_and_an_internal_subset_alone_are_refused() -> None:
    for doc in ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + XML_HEAD + "</rdf:RDF>",
                '<?xml version="1.0"?><!DOCTYPE rdf:RDF SYSTEM "http://127.0.0.1:1/x.dtd">' + XML_HEAD + "</rdf:RDF>"):
        with pytest.raises(InvalidInputError, match="document type declaration"):
            parse_rdf(doc, "application/rdf+xml", GRAPH)


def test_ordinary_rdf_xml_still_parses() -> None:
    doc = ('<?xml version="1.0" encoding="UTF-8"?><!-- a comment -->' + XML_HEAD +
           '<rdf:Description rdf:about="https://example.org/a"><rdfs:label xml:lang="en">A &amp; B</rdfs:label>'
           "</rdf:Description></rdf:RDF>")
    [quad] = parse_rdf(doc, "application/rdf+xml", GRAPH)
    assert quad.object.value == "A & B" and quad.graph_name == GRAPH


def _parse_in_child(body: bytes, media_type: str) -> subprocess.CompletedProcess[str]:
    """parse_rdf in a child capped at 1 GB of address space and 30 s: a crash or a blow-up shows as its exit."""
    code = ("import resource, sys\n"
            "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            "from pyoxigraph import NamedNode\n"
            "from graph_store import parse_rdf, InvalidInputError\n"
            "try:\n"
            f"    parse_rdf(sys.stdin.buffer.read(), {media_type!r}, NamedNode('urn:g'))\n"
            "    print('parsed')\n"
            "except InvalidInputError as e:\n"
            "    print('refused:', e)\n")
    return subprocess.run([sys.executable, "-c", code], input=body.decode(), capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("media_type,body", [
    ("application/ld+json", '{"@id": "urn:a", "urn:p": ' * 5000 + '"x"' + "}" * 5000),
    ("application/ld+json", '{"@id": "urn:a", "urn:p": ' + "[" * 5000 + '"x"' + "]" * 5000 + "}"),
    ("application/rdf+xml", '<?xml version="1.0"?>' + XML_HEAD + '<rdf:Description rdf:about="urn:a">'
     + '<rdfs:seeAlso><rdf:Description rdf:about="urn:b">' * 50_000 + "<rdfs:label>x</rdfs:label>"
     + "</rdf:Description></rdfs:seeAlso>" * 50_000 + "</rdf:Description></rdf:RDF>"),
], ids=["json-ld-objects", "json-ld-arrays", "rdf-xml"])
def test_deep_nesting_is_refused_before_the_parser_sees_it(media_type: str, body: str) -> None:
    started = time.monotonic()
    child = _parse_in_child(body.encode(), media_type)
    assert child.returncode == 0, f"the parser died (exit {child.returncode}): {child.stderr[-500:]}"
    assert child.stdout.startswith("refused:") and f"more than {MAX_NESTING}" in child.stdout, child.stdout
    assert time.monotonic() - started < 10


def test_the_nesting_scan_stays_linear_on_unterminated_strings() -> None:
    """Every escaped quote once started a scan to the end of the body (8,000 of them: 1.6 s, quadratic)."""
    started = time.monotonic()
    with pytest.raises(InvalidInputError):
        parse_rdf(b'"' + b'\\"' * 300_000, "application/ld+json", GRAPH)
    assert time.monotonic() - started < 2


def test_nesting_within_the_bound_parses() -> None:
    depth = MAX_NESTING // 2 - 1
    doc = '{"@id": "urn:a0", "urn:p": ' + "".join(f'{{"@id": "urn:a{i}", "urn:p": ' for i in range(1, depth)) \
        + '"x"' + "}" * depth
    assert len(parse_rdf(doc, "application/ld+json", GRAPH)) == depth


def test_a_deeply_nested_turtle_body_parses_without_harm() -> None:
    """Measured: pyoxigraph's Turtle parser takes 100,000 levels of ``[`` in stride; Turtle is not bounded."""
    child = _parse_in_child(("<urn:a> <urn:p> " + "[ <urn:p> " * 100_000 + "1" + " ]" * 100_000 + " .").encode(),
                            "text/turtle")
    assert child.returncode == 0 and "blank node" in child.stdout, child.stdout + child.stderr[-300:]


def _prefix_bomb(n: int) -> bytes:
    """Turtle whose prefix expands every 6-byte object to a 2,000-character IRI."""
    return (f"@prefix p: <https://example.org/{'x' * 2000}/> .\n<https://example.org/a> <{LABEL}> "
            + ", ".join(f"p:{i:04d}" for i in range(n)) + " .").encode()


def test_a_body_that_expands_far_beyond_its_size_is_413_and_nothing_is_stored(
        client: tuple[GraphStore, TestClient]) -> None:
    store, c = client
    body = _prefix_bomb(2000)
    assert len(body) < 20_000
    status, detail = put(c, body, "text/turtle")
    assert status == 413 and f"{EXPANSION_FACTOR} times" in detail, detail
    assert stored(store) == 0
    context = {"@context": {"l": {"@id": LABEL}, "x": f"https://example.org/{'y' * 3000}/"}}
    doc = json.dumps({**context, "@id": "https://example.org/a", "l": [{"@id": f"x:{i}"} for i in range(2000)]})
    status, detail = put(c, doc.encode(), "application/ld+json")
    assert status == 413, detail
    assert stored(store) == 0


def test_the_expansion_bound_leaves_ordinary_prefixed_turtle_alone() -> None:
    assert len(parse_rdf(_prefix_bomb(300), "text/turtle", GRAPH)) == 300  # 600 KB of terms: under the floor


def test_the_expansion_bound_stops_the_parse_early() -> None:
    with pytest.raises(InputTooLarge, match="expands to more than"):
        parse_rdf(_prefix_bomb(5000), "text/turtle", NamedNode("urn:g"))


@pytest.mark.parametrize("coding,compress", [("gzip", gzip.compress), ("deflate", zlib.compress),
                                             ("br", lambda b: b), ("gzip, identity", gzip.compress)])
def test_compressed_request_bodies_are_415_on_every_route(client: tuple[GraphStore, TestClient], coding: str,
                                                          compress: object) -> None:
    store, c = client
    turtle = f'<https://example.org/a> <{LABEL}> "a" .'.encode()
    body = compress(turtle)  # type: ignore[operator]
    for method, path, params, media_type in (
            ("put", "/rdf-graphs", {"graph": GRAPH.value}, "text/turtle"),
            ("post", "/sparql", {}, "application/sparql-query"),
            ("post", "/api/stations", {}, "application/json")):
        r = c.request(method, path, params=params, content=body,
                      headers={**OPS, "Content-Type": media_type, "Content-Encoding": coding})
        assert r.status_code == 415, (path, r.status_code, r.text)
        assert r.headers["accept-encoding"] == "identity" and "uncompressed" in r.json()["detail"]
    assert stored(store) == 0
    r = c.put("/rdf-graphs", params={"graph": GRAPH.value}, content=turtle,
              headers={**OPS, "Content-Type": "text/turtle", "Content-Encoding": "identity"})
    assert r.status_code in (200, 201, 204), r.text


def test_a_json_ld_remote_context_is_never_fetched() -> None:
    """pyoxigraph has no document loader set: a remote @context is an error, never a request to the URL."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"@context": {"x": "urn:x#"}}')

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        doc = json.dumps({"@context": f"http://127.0.0.1:{server.server_address[1]}/ctx", "@id": "urn:a", "x:p": "v"})
        with pytest.raises(InvalidInputError, match="remote contexts"):
            parse_rdf(doc, "application/ld+json", GRAPH)
        time.sleep(0.2)
        assert seen == []
    finally:
        server.shutdown()
        server.server_close()

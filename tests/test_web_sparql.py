"""The SPARQL page's endpoint for YASGUI (``/ui/sparql/query``), its prefixes, the vendored YASGUI files and
the page's Content-Security-Policy, without a browser (``test_web_browser.py`` drives the page itself).

The endpoint is ``/sparql``'s query side behind the login cookie: the page's script never holds the token,
and the API's ``/sparql`` keeps accepting bearer tokens only.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_helpers import ALICE, BOB, OPS, service, signed, station

from orchestrator.web.routes import STATIC

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parent.parent
ORIGIN = {"Origin": "http://testserver"}
TRAINS = "SELECT ?t WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> }"


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with service() as c:
        yield c


def submit(client: TestClient, who: dict[str, str]) -> str:
    r = client.post("/api/trains", headers=who, json=signed(client, who, {"definition": "count",
                                                                          "parameters": {"MIN": "5"}}))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def log_in(client: TestClient, who: dict[str, str]) -> None:
    """The login cookie, as the login form sets it (the requests below carry no Authorization header)."""
    client.cookies.clear()
    r = client.post("/ui/login", headers=ORIGIN, data={"token": who["Authorization"].split()[1], "next": "/ui/"},
                    follow_redirects=False)
    assert r.status_code == 303 and "pht_token" in r.cookies


def test_yasgui_endpoint_answers_like_sparql_with_the_cookie(client: TestClient) -> None:
    alices, bobs = submit(client, ALICE), submit(client, BOB)
    log_in(client, ALICE)
    r = client.post("/ui/sparql/query", headers=ORIGIN, data={"query": TRAINS})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/sparql-results+json")
    seen = [b["t"]["value"] for b in r.json()["results"]["bindings"]]
    assert any(alices in t for t in seen) and not any(bobs in t for t in seen)  # the caller's graphs only
    r = client.get("/ui/sparql/query", params={"query": "ASK { ?s ?p ?o }"}, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and r.text == "_askResult\r\ntrue\r\n"
    r = client.get("/ui/sparql/query", params={"query": "CONSTRUCT WHERE { ?s a ?c } LIMIT 1"},
                   headers={"Accept": "text/turtle,*/*;q=0.9"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/turtle")
    r = client.post("/ui/sparql/query", headers=ORIGIN, data={"query": "SELECT ?x WHERE { ?x ?y }"})
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed SPARQL query: error at 1:")
    r = client.post("/ui/sparql/query", headers=ORIGIN,
                    data={"query": "SELECT * WHERE { SERVICE <http://127.0.0.1:1/> { ?s ?p ?o } }"})
    assert r.status_code == 400 and "SERVICE" in r.json()["detail"]


def test_a_station_is_confined_to_its_own_graph_there_too(client: TestClient) -> None:
    log_in(client, station("aachen"))
    r = client.post("/ui/sparql/query", headers=ORIGIN,
                    data={"query": "SELECT * FROM <https://w3id.org/pht-kg/graph/central> WHERE { ?s ?p ?o }"})
    assert r.status_code == 403 and "its own graph" in r.json()["detail"]


def test_the_endpoint_is_read_only_and_refuses_cross_site_posts(client: TestClient) -> None:
    log_in(client, OPS)
    before = len(client.app.state.services.store)  # type: ignore[attr-defined]
    insert = "INSERT DATA { GRAPH <https://pht.example.org/g> { <urn:a> <urn:b> <urn:c> } }"
    r = client.post("/ui/sparql/query", headers=ORIGIN, data={"update": insert})
    assert r.status_code == 403 and "read-only" in r.json()["detail"]  # even an operator's cookie
    r = client.post("/ui/sparql/query", headers={"Origin": "https://evil.example"}, data={"query": TRAINS})
    assert r.status_code == 403 and "this site" in r.json()["detail"]
    r = client.post("/ui/sparql/query", data={"query": TRAINS})  # neither Origin nor Referer
    assert r.status_code == 403
    r = client.post("/ui/sparql/query", headers=ORIGIN, files={"query": ("q.rq", TRAINS.encode())})
    assert r.status_code == 415 and "x-www-form-urlencoded" in r.json()["detail"]
    r = client.get("/ui/sparql/query", params=[("query", TRAINS), ("query", TRAINS)])
    assert r.status_code == 400 and r.json()["detail"] == "give exactly one query parameter"
    assert len(client.app.state.services.store) == before  # type: ignore[attr-defined]


def test_without_a_login_the_endpoint_answers_401_not_a_redirect(client: TestClient) -> None:
    client.cookies.clear()
    r = client.get("/ui/sparql/query", params={"query": TRAINS}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    client.cookies.set("pht_token", "not-a-token", path="/ui")
    assert client.get("/ui/sparql/query", params={"query": TRAINS}, follow_redirects=False).status_code == 401
    # the API's /sparql never takes the cookie (a cross-site form could otherwise send an operator's update)
    log_in(client, OPS)
    assert client.get("/sparql", params={"query": TRAINS}).status_code == 401


def test_prefixes_are_our_ontologys(client: TestClient) -> None:
    log_in(client, ALICE)
    prefixes = client.get("/ui/sparql/prefixes.json").json()
    declared: dict[str, str] = {}
    for path in [REPO / "ontology" / "pht.ttl", *sorted((REPO / "shapes").glob("*.ttl"))]:
        declared.update(re.findall(r"@prefix (\w+):\s+<([^>]+)>", path.read_text()))
    assert prefixes["pht"] == "https://w3id.org/pht-kg/vocab#" and prefixes["prov"] == "http://www.w3.org/ns/prov#"
    assert {p: declared.get(p) for p in prefixes} == prefixes  # each spelt as the ontology declares it


def test_the_page_loads_yasgui_from_the_service_under_a_strict_policy(client: TestClient) -> None:
    page = client.get("/ui/sparql", headers=ALICE)
    assert page.status_code == 200
    for asset in ('src="/ui/static/yasgui.min.js"', 'href="/ui/static/yasgui.min.css"', 'src="/ui/static/sparql.js"',
                  'src="/ui/static/chart.umd.min.js"', 'src="/ui/static/yasr-chart.js"'):
        assert asset in page.text
    assert "<script>" not in page.text and "//cdn" not in page.text and "https://" not in page.text.split("<main>")[0]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "connect-src 'self'" in policy and "unsafe-inline" not in policy
    assert "style-src-elem 'self' 'sha256-" in policy and "unsafe-eval" not in policy
    for name in ("yasgui.min.js", "yasgui.min.css", "yasgui-LICENSE.txt", "sparql.js", "yasr-chart.js",
                 "chart.umd.min.js", "chartjs-LICENSE.txt"):
        r = client.get(f"/ui/static/{name}")
        path, media = STATIC[name]
        assert r.status_code == 200 and r.headers["content-type"] == media
        assert r.content == (REPO / "orchestrator" / "web" / "static" / path).read_bytes()
    assert "MIT License" in client.get("/ui/static/yasgui-LICENSE.txt").text
    assert "MIT License" in client.get("/ui/static/chartjs-LICENSE.txt").text


def test_the_vendored_yasgui_and_chartjs_are_the_pinned_npm_builds() -> None:
    """The committed files have the SHA-256 digests ``scripts/vendor-yasgui.sh`` pins for the npm packages."""
    result = subprocess.run(["bash", str(REPO / "scripts" / "vendor-yasgui.sh"), "--check"], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    script = (REPO / "scripts" / "vendor-yasgui.sh").read_text()
    static = REPO / "orchestrator" / "web" / "static"
    for pinned, served in (("build/yasgui.min.js", "yasgui/yasgui.min.js"),
                           ("build/yasgui.min.css", "yasgui/yasgui.min.css"),
                           ("dist/chart.umd.min.js", "chartjs/chart.umd.min.js"),
                           ("LICENSE.md", "chartjs/LICENSE.md")):
        assert f"[{pinned}]={hashlib.sha256((static / served).read_bytes()).hexdigest()}" in script

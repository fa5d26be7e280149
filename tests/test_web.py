"""The built-in web view (/ui) rendered in-process: content, login, roles, live stream, refusals as 4xx pages.

The browser itself (a real headless Chromium) is in test_web_browser.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import jwt
import pytest
from api_helpers import ALICE, BOB, OPS, SETTINGS, admin, service, signed, station
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_api import walk
from test_role_matrix import app_routes

from orchestrator.app import create_app
from orchestrator.auth import issue_token
from orchestrator.principal import Role
from orchestrator.settings import DEMO_SECRET
from orchestrator.web import web_router

ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture()
def client() -> Iterator[TestClient]:
    with service() as c:
        yield c


def submit(client: TestClient, definition: str = "count", who: dict[str, str] = ALICE) -> str:
    body = {"definition": definition, "parameters": {"MIN": "5"} if definition == "count" else {}}
    r = client.post("/api/trains", headers=who, json=signed(client, who, body))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def events_of(text: str) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(event name, JSON data) of each server-sent event in a stream body."""
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


# -- logging in ----------------------------------------------------------------------------------------------


def test_pages_send_a_browser_without_token_to_the_login_page(client: TestClient) -> None:
    r = client.get("/ui/trains", params={"state": "queued"}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=/ui/trains%3Fstate%3Dqueued"
    page = client.get(r.headers["location"])
    assert page.status_code == 200 and 'name="token"' in page.text
    assert 'value="/ui/trains?state=queued"' in page.text


def test_login_keeps_the_token_in_a_strict_httponly_cookie_for_the_web_view_only(client: TestClient) -> None:
    raw = ALICE["Authorization"].split()[1]
    r = client.post("/ui/login", data={"token": raw, "next": "/ui/datasets"}, headers=ORIGIN, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/datasets"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("pht_token=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/ui" in cookie and "Secure" not in cookie  # plain http here; https sets Secure
    page = client.get("/ui/trains")  # the client keeps the cookie
    assert page.status_code == 200 and "alice (researcher)" in page.text
    assert client.get("/api/trains").status_code == 401  # the cookie is not a credential of the API
    out = client.post("/ui/logout", headers=ORIGIN, follow_redirects=False)
    assert out.status_code == 303 and 'pht_token=""' in out.headers["set-cookie"]
    client.cookies.clear()
    assert client.get("/ui/trains", follow_redirects=False).status_code == 303


def test_login_refuses_bad_tokens_foreign_forms_and_foreign_redirects(client: TestClient) -> None:
    r = client.post("/ui/login", data={"token": "nonsense", "next": "/ui/trains"}, headers=ORIGIN)
    assert r.status_code == 401 and "Token refused: token is malformed" in r.text and "set-cookie" not in r.headers
    wrong = issue_token("another-secret-of-at-least-32-characters!", subject="eve", roles=[Role.OPERATOR])
    r = client.post("/ui/login", data={"token": wrong}, headers=ORIGIN)
    assert r.status_code == 401 and "token signature is invalid" in r.text
    raw = OPS["Authorization"].split()[1]
    r = client.post("/ui/login", data={"token": raw}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "must be sent from this site" in r.text and "set-cookie" not in r.headers
    assert client.post("/ui/login", data={"token": raw}).status_code == 403  # neither Origin nor Referer
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/trains", "/ui\\evil"):
        r = client.post("/ui/login", data={"token": raw, "next": target}, headers=ORIGIN, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/", target
    assert client.post("/ui/logout", headers={"Origin": "https://evil.example"}).status_code == 403


def test_an_expired_cookie_sends_back_to_login_and_a_bad_header_gets_401(client: TestClient) -> None:
    old = jwt.encode({"sub": "alice", "roles": ["researcher"], "iat": 1, "exp": 2}, DEMO_SECRET, algorithm="HS256")
    client.cookies.set("pht_token", old, path="/ui")
    r = client.get("/ui/trains", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("&expired=1")
    assert 'pht_token=""' in r.headers["set-cookie"]  # the dead cookie is dropped
    assert "token was refused" in client.get(r.headers["location"]).text
    client.cookies.clear()
    tampered = ALICE["Authorization"] + "x"
    r = client.get("/ui/trains", headers={"Authorization": tampered})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "token signature is invalid" in r.text


# -- the pages ------------------------------------------------------------------------------------------------


def test_trains_list_shows_state_progress_and_where_each_train_is(client: TestClient) -> None:
    moved = submit(client)
    walk(client, f"{moved}.r1-s0", "aachen")
    fed = submit(client, "fedavg")
    cancelled = submit(client)
    assert client.post(f"/api/trains/{cancelled}/cancel", headers=ALICE, json={}).status_code == 200
    bobs = submit(client, who=BOB)
    page = client.get("/ui/trains", headers=ALICE)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "3 trains" in text and bobs not in text
    row = text.split(f'data-train="{moved}"')[1].split("</tr>")[0]
    assert 's-queued">queued' in row and "1/3" in row and "<td>leipzig</td>" in row and "count" in row
    row = text.split(f'data-train="{fed}"')[1].split("</tr>")[0]
    assert "0/6" in row and "aachen, leipzig" in row  # 2 rounds x (2 stops + aggregation)
    row = text.split(f'data-train="{cancelled}"')[1].split("</tr>")[0]
    assert "cancelled" in row and "0/3" in row and "<td></td>" in row  # no station works on it any more
    assert text.index(cancelled) < text.index(fed) < text.index(moved)  # newest first
    everything = client.get("/ui/trains", headers=OPS).text
    assert "4 trains" in everything and bobs in everything
    only = client.get("/ui/trains", headers=ALICE, params={"state": "cancelled"}).text
    assert "1 train<" in only and cancelled in only and moved not in only
    first = client.get("/ui/trains", headers=ALICE, params={"limit": 2}).text
    assert "showing 2" in first and 'rel="next"' in first and cancelled in first and moved not in first
    after = first.split('after=')[1].split('"')[0]
    second = client.get("/ui/trains", headers=ALICE, params={"limit": 2, "after": after}).text
    assert moved in second and cancelled not in second and 'rel="first"' in second and 'rel="next"' not in second


def test_train_page_shows_route_timeline_events_and_progress(client: TestClient) -> None:
    tid = submit(client)
    walk(client, f"{tid}.r1-s0", "aachen")
    page = client.get(f"/ui/trains/{tid}", headers=ALICE)
    assert page.status_code == 200
    text = page.text
    assert 'id="train-state" class="state s-queued">queued' in text
    assert 'id="progress" max="3" value="1"' in text and 'id="current">leipzig<' in text
    for slot, station_id, state in (("r1-s0", "aachen", "released"), ("r1-s1", "leipzig", "queued"),
                                    ("r1-s2", "cologne", "planned")):
        cell = text.split(f'data-slot="{slot}"')[1].split("</td>")[0]
        assert station_id in cell and f's-{state}">{state}' in cell
    timeline = text.split(f'data-timeline="{tid}.r1-s0"')[1].split("data-timeline=")[0]
    states = [chunk.split('"')[0] for chunk in timeline.split('class="state s-')[1:]]
    assert states == ["queued", "waiting-for-approval", "approved", "pulling", "running", "output-under-review",
                      "released"]
    api_events = client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500}).json()
    assert text.count("<tr data-event=") == api_events["total"]
    assert f'id="event-count" class="count">{api_events["total"]}<' in text
    assert 'src="/ui/static/train.js"' in text and f'data-stream="/ui/trains/{tid}/events/stream"' in text
    fed = client.get(f"/ui/trains/{submit(client, 'fedavg')}", headers=ALICE).text
    assert 'data-slot="r2-agg"' in fed and "cologne (aggregation)" in fed and "0/6" in fed


def test_train_page_shows_the_purpose_project_and_epsilon_the_request_signed(client: TestClient) -> None:
    body = {"definition": "count", "parameters": {"MIN": "5"}, "project": "cardio", "epsilon": "0.5",
            "dp_mechanism": "laplace", "purpose": "http://purl.obolibrary.org/obo/DUO_0000007"}
    r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, body))
    assert r.status_code == 201, r.text
    text = client.get(f"/ui/trains/{r.json()['id']}", headers=ALICE).text
    assert 'class="declared-purpose">disease specific research (http://purl.obolibrary.org/obo/DUO_0000007)<' in text
    assert 'class="declared-project">cardio<' in text and 'class="declared-privacy">laplace, ε 0.5 per release<' in text
    plain = client.get(f"/ui/trains/{submit(client)}", headers=ALICE).text
    assert "declared-purpose" not in plain and "declared-project" not in plain  # nothing declared, nothing shown


def test_train_pages_follow_the_apis_visibility_rules(client: TestClient) -> None:
    tid = submit(client)
    assert client.get(f"/ui/trains/{tid}", headers=OPS).status_code == 200
    assert client.get(f"/ui/trains/{tid}", headers=station("aachen")).status_code == 200  # it is there
    assert client.get(f"/ui/trains/{tid}", headers=admin("aachen")).status_code == 200
    for who in (BOB, station("cologne"), admin("cologne")):
        r = client.get(f"/ui/trains/{tid}", headers=who)
        assert r.status_code == 403 and "belongs to another requester" in r.text and "data-event" not in r.text
    assert client.get("/ui/trains", headers=station("aachen")).status_code == 403  # as GET /api/trains


def test_unknown_and_malformed_trains_get_4xx_pages(client: TestClient) -> None:
    r = client.get("/ui/trains/0d9f7b4c-0000-4000-8000-000000000000", headers=ALICE)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "there is no train 0d9f7b4c-0000-4000-8000-000000000000" in r.text
    for bad in ("a%20b", "x" * 65, "%3Cscript%3E"):
        r = client.get(f"/ui/trains/{bad}", headers=ALICE)
        assert r.status_code == 400 and "is not a train identifier" in r.text and "<script>" not in r.text
    assert client.get("/ui/trains/nope/events/stream", headers=ALICE).status_code == 404
    assert client.get("/ui/no-such-page", headers=ALICE).status_code == 404
    assert client.get("/ui/trains", headers=ALICE, params={"state": "sleeping"}).status_code == 400
    for params in ({"limit": "abc"}, {"limit": 0}, {"after": "not-a-token"}, {"limit": 10**6}):
        r = client.get("/ui/trains", headers=ALICE, params=params)
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), params
    assert client.get("/ui/station/a%20b/pending", headers=OPS).status_code == 400


def test_stations_and_datasets_pages(client: TestClient) -> None:
    for who in (ALICE, station("aachen"), OPS):
        text = client.get("/ui/stations", headers=who).text
        assert "3 registered" in text and "<td>leipzig</td><td>leipzig station</td><td>leipzig hospital</td>" in text
        text = client.get("/ui/datasets", headers=who).text
        assert "<td>cologne-data</td><td>data</td><td>cologne</td>" in text


def test_pending_page_lists_approvals_and_reviews_without_what_stays_at_the_station(client: TestClient) -> None:
    waiting, reviewed = submit(client), submit(client)
    assert client.post(f"/api/executions/{waiting}.r1-s0/steps", headers=station("aachen"),
                       json={"to": "waiting-for-approval"}).status_code == 200
    eid = f"{reviewed}.r1-s0"
    for to in ("approved", "pulling", "running", "output-under-review"):
        assert client.post(f"/api/executions/{eid}/steps", headers=station("aachen"), json={"to": to}).status_code == 200
    text = client.get("/ui/station/aachen/pending", headers=admin("aachen")).text
    assert 'id="approval-count">1<' in text and 'id="review-count">1<' in text
    approval = text.split(f'<tr data-execution="{waiting}.r1-s0">')[1].split("</tr>")[0]
    assert f"pht station approve {waiting}.r1-s0 --central http://testserver" in approval
    assert "pht/count@sha256:" in approval
    review = text.split(f'<tr data-execution="{eid}">')[1].split("</tr>")[0]
    assert "held at the station" in review and "sha256" not in review  # the digest and checks stay there
    assert f"pht station review {eid}" in review
    assert f"pht station release {eid}" in review and f"pht station withhold {eid}" in review
    assert client.get("/ui/station/aachen/pending", headers=OPS).status_code == 200
    assert client.get("/ui/station/aachen/pending", headers=station("aachen")).status_code == 200
    for who in (admin("cologne"), ALICE):
        assert client.get("/ui/station/aachen/pending", headers=who).status_code == 403
    assert 'id="approval-count">0<' in client.get("/ui/station/cologne/pending", headers=admin("cologne")).text


# -- SPARQL ---------------------------------------------------------------------------------------------------


def test_sparql_page_runs_queries_and_shows_the_parsers_message(client: TestClient) -> None:
    tid = submit(client)
    form = client.get("/ui/sparql", headers=ALICE).text
    assert "<textarea" in form and "trains_by_state" in form
    query = ("PREFIX pht: <https://w3id.org/pht-kg/vocab#> SELECT ?train ?state WHERE { GRAPH ?g { ?train a pht:Train ; "
             "pht:state ?state } }")
    r = client.post("/ui/sparql", headers=ALICE, data={"query": query})
    assert r.status_code == 200
    assert 'id="result-count">1 row<' in r.text and f'<a href="/ui/trains/{tid}">' in r.text
    assert "https://w3id.org/pht-kg/vocab#Queued" in r.text
    assert client.get("/ui/sparql", headers=ALICE, params={"query": "ASK { ?s ?p ?o }"}).text.count("true") >= 1
    r = client.post("/ui/sparql", headers=ALICE, data={"query": "SELECT ?x WHERE { ?x ?y }"})
    assert r.status_code == 400 and 'id="problem">malformed SPARQL query: error at 1:' in r.text
    assert "SELECT ?x WHERE { ?x ?y }" in r.text  # the query stays in the form for fixing
    r = client.post("/ui/sparql", headers=ALICE, data={"query": "SELECT * WHERE { SERVICE <http://x/> { ?s ?p ?o } }"})
    assert r.status_code == 400 and "federated queries (SERVICE) are not run here" in r.text
    r = client.post("/ui/sparql", headers=station("aachen"),
                    data={"query": "SELECT * FROM <https://w3id.org/pht-kg/graph/central> WHERE { ?s ?p ?o }"})
    assert r.status_code == 403 and "a station&#39;s queries always run over its own graph" in r.text
    r = client.post("/ui/sparql", headers=ALICE, data={"query": "INSERT DATA { <urn:a> <urn:b> <urn:c> }"})
    assert r.status_code == 400  # the page is read-only: an update is not a query
    example = client.get("/ui/sparql", headers=ALICE, params={"example": "trains_by_state"}).text
    assert "How many trains are in each lifecycle state" in example
    assert client.get("/ui/sparql", headers=ALICE, params={"example": "route"}).status_code == 404  # has parameters
    escaped = client.post("/ui/sparql", headers=ALICE, data={"query": 'SELECT ("<b>x</b>" AS ?v) {}'}).text
    assert "<b>x</b>" not in escaped and "&lt;b&gt;x&lt;/b&gt;" in escaped


# -- the live stream ------------------------------------------------------------------------------------------


def test_stream_of_an_ended_train_sends_everything_then_ends(client: TestClient) -> None:
    tid = submit(client)
    for i, sid in enumerate(("aachen", "leipzig", "cologne")):
        walk(client, f"{tid}.r1-s{i}", sid)
    r = client.get(f"/ui/trains/{tid}/events/stream", headers=ALICE)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("retry: ")
    messages = events_of(r.text)
    kinds = [k for k, _ in messages]
    assert kinds[0] == "snapshot" and kinds[-1] == "end" and kinds.count("snapshot") == 1
    snapshot = messages[0][1]
    assert snapshot["state"] == "finished" and snapshot["terminal"] and (snapshot["released"], snapshot["planned"]) == (3, 3)
    api_events = client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500}).json()["items"]
    sent = [d for k, d in messages if k == "event"]
    assert [e["event"] for e in sent] == [e["event"] for e in api_events]
    assert any(e["execution"] == "" and (e["from_state"], e["to_state"]) == ("running", "finished") for e in sent)
    assert messages[-1][1] == {"state": "finished"}


def test_stream_of_a_running_train_ends_after_its_lifetime_and_follows_the_rules(client: TestClient) -> None:
    tid = submit(client)
    services = client.app.state.services  # type: ignore[attr-defined]
    short = FastAPI()
    short.include_router(web_router(services, poll_s=0.05, stream_lifetime_s=0.4))
    with TestClient(short) as other:
        started = time.monotonic()
        r = other.get(f"/ui/trains/{tid}/events/stream", headers=ALICE)
        assert 0.3 < time.monotonic() - started < 5
        kinds = [k for k, _ in events_of(r.text)]
        assert kinds[0] == "snapshot" and "end" not in kinds  # the browser reconnects by itself
        assert other.get(f"/ui/trains/{tid}/events/stream", headers=BOB).status_code == 403
        r = other.get(f"/ui/trains/{tid}/events/stream", headers={"Accept": "text/event-stream"})
        assert r.status_code == 401  # no redirect to a form for an EventSource


# -- roles, headers, assets -----------------------------------------------------------------------------------

CALLERS = ("anon", "bad", "r-own", "r-oth", "s-own", "s-oth", "a-own", "a-oth", "op")
HEADERS = {"anon": {}, "bad": {"Authorization": "Bearer " + issue_token("x" * 40, subject="ops", roles=[Role.OPERATOR])},
           "r-own": ALICE, "r-oth": BOB, "s-own": station("aachen"), "s-oth": station("cologne"),
           "a-own": admin("aachen"), "a-oth": admin("cologne"), "op": OPS}

# fmt: off
#   Y: the page (200; 303 for the start page), .: refused (anon: 303 to the login page, bad token: 401, others 403)
#   -: open to everyone (login form, assets, the 404 page)               anon bad r-own r-oth s-own s-oth a-own a-oth op
WEB_MATRIX: dict[tuple[str, str], str] = {
    ("GET",  "/ui"):                                 "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/"):                                "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/trains"):                          "  .   .   Y     Y     .     .     .     .    Y",
    ("GET",  "/ui/trains/{train_id}"):               "  .   .   Y     .     Y     .     Y     .    Y",
    ("GET",  "/ui/trains/{train_id}/events/stream"): "  .   .   Y     .     Y     .     Y     .    Y",
    ("GET",  "/ui/trains/{train_id}/ro-crate.zip"):  "  .   .   Y     .     Y     .     Y     .    Y",
    ("GET",  "/ui/stations"):                        "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/datasets"):                        "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/sparql"):                          "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST", "/ui/sparql"):                          "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/sparql/query"):                    "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("POST", "/ui/sparql/query"):                    "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/sparql/prefixes.json"):            "  .   .   Y     Y     Y     Y     Y     Y    Y",
    ("GET",  "/ui/station/{station_id}/pending"):    "  .   .   .     .     Y     .     Y     .    Y",
    ("GET",  "/ui/login"):                           "  -   -   -     -     -     -     -     -    -",
    ("POST", "/ui/login"):                           "  -   -   -     -     -     -     -     -    -",
    ("POST", "/ui/logout"):                          "  -   -   -     -     -     -     -     -    -",
    ("GET",  "/ui/static/{name}"):                   "  -   -   -     -     -     -     -     -    -",
    ("GET",  "/ui/{rest:path}"):                     "  -   -   -     -     -     -     -     -    -",
}
# fmt: on


def test_the_web_matrix_covers_every_page() -> None:
    served = {(m, p) for m, p in app_routes(create_app(SETTINGS)) if p == "/ui" or p.startswith("/ui/")}
    assert served == set(WEB_MATRIX)


def _url(path: str, train: str) -> str:
    return path.replace("{train_id}", train).replace("{station_id}", "aachen")


@pytest.mark.parametrize("key", [k for k, marks in WEB_MATRIX.items() if "-" not in marks.split()], ids=str)
def test_web_role_matrix(client: TestClient, key: tuple[str, str]) -> None:
    method, path = key
    tid = submit(client)
    client.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={})  # an ended train: its stream ends at once
    for caller, mark in zip(CALLERS, WEB_MATRIX[key].split()):
        data = {"query": "ASK {}"} if method == "POST" else None
        params = {"query": "ASK {}"} if (method, path) == ("GET", "/ui/sparql/query") else None
        origin = {"origin": "http://testserver"} if method == "POST" else {}  # YASGUI's fetch sends its origin
        r = client.request(method, _url(path, tid), headers={**HEADERS[caller], **origin}, data=data, params=params,
                           follow_redirects=False)
        if mark == "Y":
            expected = 303 if path in ("/ui", "/ui/") else 200
            if path.endswith("/ro-crate.zip"):  # the train is cancelled: who may read it hears it has not finished
                expected = 409
            assert r.status_code == expected, f"{caller}: {r.status_code} {r.text[-300:]}"
        elif caller == "anon" and path == "/ui/sparql/query":  # a script's request: no redirect to a form
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", caller
        elif caller == "anon":
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next="), caller
        elif caller == "bad":
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", caller
        else:
            assert r.status_code == 403 and r.headers["content-type"].startswith("text/html"), caller


def test_start_page_sends_each_role_where_it_works(client: TestClient) -> None:
    assert client.get("/ui/", headers=ALICE, follow_redirects=False).headers["location"] == "/ui/trains"
    assert client.get("/ui/", headers=admin("aachen"), follow_redirects=False).headers["location"] == \
        "/ui/station/aachen/pending"


def test_pages_carry_security_headers_and_assets_are_ours(client: TestClient) -> None:
    r = client.get("/ui/stations", headers=ALICE)
    policy = r.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in client.get(f"/ui/trains/{submit(client)}", headers=ALICE).text  # no inline script
    css = client.get("/ui/static/style.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    js = client.get("/ui/static/train.js")
    assert js.status_code == 200 and "EventSource" in js.text
    for name in ("nope.js", "..%2Fviews.py", "%2Fetc%2Fpasswd"):
        assert client.get(f"/ui/static/{name}").status_code == 404
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ui")]

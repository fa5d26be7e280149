"""The REST API over HTTP (TestClient): a train through its route, and every refusal as a clear 4xx."""

from __future__ import annotations

from datetime import datetime

import pytest
from api_helpers import ALICE, BOB, DIGEST, OPS, admin, service, signed, station
from fastapi.testclient import TestClient

pytestmark = pytest.mark.central_stores


@pytest.fixture()
def client() -> TestClient:
    with service() as c:
        yield c  # type: ignore[misc]


def walk(client: TestClient, eid: str, sid: str) -> None:
    for to, who in (("waiting-for-approval", station), ("approved", admin), ("pulling", station),
                    ("running", station)):
        r = client.post(f"/api/executions/{eid}/steps", headers=who(sid), json={"to": to, "used": []})
        assert r.status_code == 200, r.text
    r = client.post(f"/api/executions/{eid}/outputs", headers=station(sid), json={"sha256": "0" * 64, "byte_size": 3})
    assert r.status_code == 201, r.text
    for to, who in (("output-under-review", station), ("released", admin)):
        r = client.post(f"/api/executions/{eid}/steps", headers=who(sid), json={"to": to})
        assert r.status_code == 200, r.text


def test_a_train_travels_its_route_through_the_api(client: TestClient) -> None:
    r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}}))
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    for i, sid in enumerate(("aachen", "leipzig", "cologne")):
        work = client.get(f"/api/stations/{sid}/work", headers=station(sid)).json()
        assert [w["execution"] for w in work] == [f"{tid}.r1-s{i}"]
        assert work[0]["image_digest"] == DIGEST
        walk(client, f"{tid}.r1-s{i}", sid)
    train = client.get(f"/api/trains/{tid}", headers=ALICE).json()
    assert train["state"] == "finished"
    assert [e["state"] for e in train["executions"]] == ["released"] * 3
    events = client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500}).json()
    transitions = [(e["from_state"], e["to_state"]) for e in events["items"] if e["type"] == "StateChangeEvent"]
    assert (None, "submitted") in transitions and ("running", "finished") in transitions
    assert events["total"] == len(events["items"]) > 20


def test_work_carries_what_the_station_needs_and_the_output_arrives_with_its_release(client: TestClient) -> None:
    tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "7"}})).json()["id"]
    first = client.get("/api/stations/aachen/work", headers=station("aachen")).json()[0]
    assert first["parameters"] == {"MIN": "7"}
    assert first["definition"] == "count" and first["requester"].endswith("/alice")
    assert first["inputs"] == [] and first["input_digests"] == []
    for to in ("approved", "pulling", "running", "output-under-review"):
        assert client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"), json={"to": to}).status_code == 200
    checks = [{"name": "max-output-bytes", "passed": True, "detail": "The check passed at the station."},
              {"name": "min-cell-count", "passed": False, "detail": "The check failed at the station."}]
    output = {"sha256": "1" * 64, "byte_size": 3, "checks": checks}
    r = client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"),
                    json={"to": "withheld", "output": output})
    assert r.status_code == 400 and "only with the release step" in r.json()["detail"], r.text
    r = client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"), json={"to": "released", "output": output})
    assert r.status_code == 200, r.text
    query = """PREFIX pht: <https://w3id.org/pht-kg/vocab#> PREFIX dcterms: <http://purl.org/dc/terms/>
        SELECT ?name ?passed WHERE { ?review pht:reviewOf/pht:sha256 "%s" ; pht:checkResult ?c .
        ?c dcterms:identifier ?name ; pht:passed ?passed } ORDER BY ?name""" % ("1" * 64)
    rows = client.post("/sparql", headers={**OPS, "Accept": "application/sparql-results+json"},
                       data={"query": query}).json()["results"]["bindings"]
    assert [(b["name"]["value"], b["passed"]["value"]) for b in rows] == [("max-output-bytes", "true"),
                                                                        ("min-cell-count", "false")]
    # the same release again (a station retrying after a lost answer) is a no-op; another output is refused
    r = client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"), json={"to": "released", "output": output})
    assert r.status_code == 200 and r.json()["state"] == "released", r.text
    r = client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"),
                    json={"to": "released", "output": {**output, "sha256": "2" * 64}})
    assert r.status_code == 409, r.text
    second = client.get("/api/stations/leipzig/work", headers=station("leipzig")).json()[0]
    assert second["input_digests"] == ["1" * 64] and second["inputs"][0].endswith(f"/outputs/{tid}.r1-s0")


def test_illegal_step_is_409_naming_the_state(client: TestClient) -> None:
    tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}})).json()["id"]
    r = client.post(f"/api/executions/{tid}.r1-s0/steps", headers=admin("aachen"), json={"to": "released"})
    assert r.status_code == 409
    assert "is queued" in r.json()["detail"]


def test_invalid_definition_gets_the_shacl_report(client: TestClient) -> None:
    r = client.post("/api/definitions", headers=ALICE, json={
        "id": "bad", "title": "Bad", "image_name": "x", "image_digest": "latest", "mode": "incremental",
        "route": ["nowhere"]})
    assert r.status_code == 422
    body = r.json()
    components = {x["sourceConstraintComponent"] for x in body["report"]["results"]}
    assert {"PatternConstraintComponent", "ClassConstraintComponent"} <= components
    assert client.get("/api/definitions", headers=ALICE).json()["total"] == 2  # nothing written


def test_unknown_resources_are_404(client: TestClient) -> None:
    assert client.get("/api/trains/nope", headers=OPS).status_code == 404
    assert client.post("/api/executions/nope/steps", headers=OPS, json={"to": "failed"}).status_code == 404
    r = client.post("/api/trains", headers=ALICE, json={"definition": "nope", "parameters": {}})
    assert r.status_code == 404 and "no train definition 'nope'" in r.json()["detail"]


def test_someone_elses_train_is_refused(client: TestClient) -> None:
    tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}})).json()["id"]
    assert client.get(f"/api/trains/{tid}", headers=BOB).status_code == 403
    assert client.post(f"/api/trains/{tid}/cancel", headers=BOB, json={}).status_code == 403
    assert client.get("/api/trains", headers=BOB).json()["total"] == 0
    assert client.get(f"/api/trains/{tid}", headers=station("aachen")).status_code == 200  # it visits aachen
    assert client.get(f"/api/trains/{tid}", headers=station("cologne")).status_code == 403  # not yet


def test_cancel_then_cancel_again_is_409(client: TestClient) -> None:
    tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "fedavg"})).json()["id"]
    assert client.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={"reason": "oops"}).status_code == 200
    r = client.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={})
    assert r.status_code == 409 and "is cancelled" in r.json()["detail"]


def _epoch(when: str) -> float:
    return datetime.fromisoformat(when).timestamp()


def test_pagination(client: TestClient) -> None:
    ids = [client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "fedavg"})).json()["id"] for _ in range(5)]
    first = client.get("/api/trains", headers=ALICE, params={"limit": 2}).json()
    second = client.get("/api/trains", headers=ALICE, params={"limit": 2, "after": first["next"]}).json()
    rest = client.get("/api/trains", headers=ALICE, params={"limit": 2, "after": second["next"]}).json()
    seen = [t["id"] for t in first["items"] + second["items"] + rest["items"]]
    assert seen == sorted(ids, key=lambda i: seen.index(i)) and sorted(seen) == sorted(ids)  # no repeats, none lost
    assert len(seen) == 5 and first["total"] == rest["total"] == 5 and rest["next"] is None
    created = [(t["created"], t["id"]) for t in first["items"] + second["items"] + rest["items"]]
    assert created == sorted(created, key=lambda c: (-_epoch(c[0]), c[1]))  # newest first, then by id
    assert client.get("/api/trains", headers=BOB, params={"after": first["next"]}).json()["items"] == []
    for token in ("x", "bm90IGpzb24", first["next"] + "A" * 9, "WyIyMDI2IiwgMV0"):
        r = client.get("/api/trains", headers=ALICE, params={"after": token})
        assert r.status_code == 422 and "page token" in r.json()["detail"], token
    spec = client.get("/openapi.json").json()
    listed = next(v["get"] for k, v in spec["paths"].items() if k.endswith("/trains") and "get" in v)
    assert "after" in {p["name"] for p in listed["parameters"]} and "offset" not in {p["name"] for p in listed["parameters"]}
    assert "next" in spec["components"]["schemas"]["Page_TrainOut_"]["properties"]
    assert client.get("/api/trains", headers=ALICE, params={"limit": 0}).status_code == 422
    queued = client.get("/api/trains", headers=ALICE, params={"state": "queued"}).json()
    assert queued["total"] == 5


def test_bad_bodies_are_4xx_never_500(client: TestClient) -> None:
    assert client.post("/api/trains", headers=ALICE, content=b"{not json").status_code == 422
    assert client.post("/api/trains", headers=ALICE, json={"definition": "count", "extra": 1}).status_code == 422
    big = {"definition": "count", "parameters": {"MIN": "x" * 1000}, "pad": "y" * 300_000}
    assert client.post("/api/trains", headers=ALICE, json=big).status_code == 413
    r = client.post("/api/trains", headers=ALICE, json={"definition": "count", "parameters": {"MIN": "five"}})
    assert r.status_code == 422  # ill-typed xsd:integer parameter value
    r = client.post("/api/stations", headers=OPS, json={"id": "aachen", "title": "again", "owner": "x",
                                                        "public_keys": ["k"]})
    assert r.status_code == 409


def test_no_or_bad_token_is_401(client: TestClient) -> None:
    assert client.get("/api/stations").status_code == 401
    r = client.get("/api/stations", headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers


def test_the_definitions_list_is_keyset_pages_newest_first(client: TestClient) -> None:
    everything = client.get("/api/definitions", headers=ALICE).json()
    ids = [d["id"] for d in everything["items"]]
    assert ids == ["fedavg", "count"] == ids[:everything["total"]] and everything["next"] is None  # as registered
    seen, after = [], None
    while True:
        body = client.get("/api/definitions", headers=ALICE,
                          params={"limit": 1, **({"after": after} if after else {})}).json()
        assert len(body["items"]) == 1 and body["total"] == len(ids)
        seen += [d["id"] for d in body["items"]]
        after = body["next"]
        if after is None:
            break
    assert seen == ids and everything["items"][0]["stops"] > 0 and everything["items"][0]["mode"]
    # not base64 JSON, not a list, a list of a string and a number, a token of the list by identifier (["count"])
    for token in ("x", "bm90IGpzb24", "WyIyMDI2IiwgMV0", "WyJjb3VudCJd"):
        r = client.get("/api/definitions", headers=ALICE, params={"after": token})
        assert r.status_code == 422 and "page token" in r.json()["detail"], token
    listed = {p["name"] for p in client.get("/openapi.json").json()["paths"]["/api/definitions"]["get"]["parameters"]}
    assert "after" in listed and "offset" not in listed

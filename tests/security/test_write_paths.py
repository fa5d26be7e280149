"""One write path per actor (issue 13, item 3) and operators' edits recorded (item 6), each attack played.

* A station token cannot write graphs through the Graph Store Protocol: its metadata arrives only as signed MPU
  batches, whose subjects the central service checks.
* Facts in a station's graph never change the validity or the state of central resources: the shapes see a
  change to the central graph with the central graph and the ontology only.
* Every event the lifecycle history shows says who emitted it (from the graph it was recorded in), and a
  station's claim of a transition or a role is not part of that history.
* A station may report only its own datasets as used.
* The watchdog handles each stale train on its own.
* Every operator SPARQL Update and Graph Store Protocol write is recorded, in the same atomic write, in the audit
  graph, which no edit may change; operators read it with the named query ``graph_edits``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import principals
from central_store import current, new_central_store
import pytest
from api_helpers import ALICE, BOB, OPS, admin, service, signed, station
from fastapi.testclient import TestClient
from pyoxigraph import Literal, NamedNode, Quad, RdfFormat, parse

from graph_store import (
    AUDIT_GRAPH,
    CENTRAL_GRAPH,
    PHT,
    PROV,
    RDF_TYPE,
    REPO_ROOT,
    XSD,
    ChangeSet,
    EmbeddedStore,
    GraphStore,
    RemoteStore,
    ValidationFailed,
    named_query,
    station_graph,
)
from graph_store._sparql_text import quad_block
from orchestrator.lifecycle import Lifecycle
from orchestrator.naming import Iris
from orchestrator.registry import DatasetSpec, DefinitionSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings

pytestmark = pytest.mark.central_stores

BASE = "https://pht.example.org/id/"
IRIS = Iris(BASE)
AACHEN_GRAPH = station_graph("aachen")
TURTLE = {"Content-Type": "text/turtle"}
UPDATE = {"Content-Type": "application/sparql-update"}
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "shapes" / "valid"


@dataclass
class Platform:
    client: TestClient
    store: GraphStore

    def train(self) -> str:
        r = self.client.post("/api/trains", headers=ALICE, json=signed(self.client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}}))
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def step(self, eid: str, to: str, who: dict[str, str], **body: Any) -> httpx.Response:
        return self.client.post(f"/api/executions/{eid}/steps", headers=who, json={"to": to, **body})

    def walk(self, eid: str, *states: str) -> None:
        for to in states:
            r = self.step(eid, to, station("aachen"), **({"used": ["aachen-data"]} if to == "running" else {}))
            assert r.status_code == 200, r.text

    def graph(self, graph: NamedNode) -> set[Quad]:
        return set(self.store.quads(g=graph))

    def edits(self) -> list[dict[str, str | None]]:
        """The audit graph as operators read it: the named query through /sparql."""
        r = self.client.post("/sparql", headers={**OPS, "Accept": "application/sparql-results+json"},
                             data={"query": named_query("graph_edits").text})
        assert r.status_code == 200, r.text
        return [{k: v["value"] for k, v in row.items()} for row in r.json()["results"]["bindings"]]


@pytest.fixture()
def platform() -> Iterator[Platform]:
    store = new_central_store()
    with service(store) as client:
        yield Platform(client, store)


# -- a station writes only through its signed MPU path ------------------------------------------------------


def test_a_station_token_cannot_write_its_graph_through_the_graph_store_protocol(platform: Platform) -> None:
    """The attack: a station PUTs / POSTs / DELETEs its own graph, skipping the MPU's signature and subject checks."""
    c, tid = platform.client, platform.train()
    forged = (f'<{BASE}stations/aachen/events/forged> a <{PHT.StateChangeEvent.value}> ; '
              f'<{PHT.aboutTrain.value}> <{IRIS.train(tid).value}> .').encode()
    params = {"graph": AACHEN_GRAPH.value}
    before = platform.graph(AACHEN_GRAPH)
    for method in ("PUT", "POST", "DELETE"):
        r = c.request(method, "/rdf-graphs", params=params, headers={**station("aachen"), **TURTLE},
                      content=b"" if method == "DELETE" else forged)
        assert r.status_code == 403, (method, r.text)
        detail = r.json()["detail"]
        assert "signed" in detail and "/api/stations/{id}/metadata" in detail and detail.count(". ") == 0
    assert platform.graph(AACHEN_GRAPH) == before, "nothing written"
    assert c.get("/api/stations", headers=ALICE).status_code == 200, "the service keeps serving"
    r = c.put("/rdf-graphs", params=params, headers={**OPS, **TURTLE},
              content=f'<{BASE}notes/1> <http://www.w3.org/2000/01/rdf-schema#label> "note" .'.encode())
    assert r.status_code in (201, 204), "operators keep their write access"


# -- validation is scoped per graph ----------------------------------------------------------------------


def test_a_fact_in_a_station_graph_cannot_block_the_owners_cancel(platform: Platform) -> None:
    """The attack: ``<T> pht:state pht:Running`` in the station's graph, while T is running (so that it conforms
    then); every later step of T used to fail with 422 because the shapes saw the union of all graphs."""
    tid = platform.train()
    eid = f"{tid}.r1-s0"
    platform.walk(eid, "approved")
    train = IRIS.train(tid)
    assert platform.store.quads(train, PHT.state, None, CENTRAL_GRAPH)[0].object == PHT.Running
    platform.store.apply(ChangeSet(insert=[Quad(train, PHT.state, PHT.Running, AACHEN_GRAPH)]))
    r = platform.client.post(f"/api/trains/{tid}/cancel", headers=ALICE, json={"reason": "changed my mind"})
    assert r.status_code == 200, r.text
    assert platform.client.get(f"/api/trains/{tid}", headers=ALICE).json()["state"] == "cancelled"
    assert [q.object for q in platform.store.quads(train, PHT.state, None, CENTRAL_GRAPH)] == [PHT.Cancelled]


def test_station_graph_facts_do_not_make_central_steps_fail(platform: Platform) -> None:
    """The same with an execution: a station-graph copy of its state does not stop the station's next steps."""
    tid = platform.train()
    eid = f"{tid}.r1-s0"
    platform.walk(eid, "approved")
    execution = IRIS.execution(eid)
    platform.store.apply(ChangeSet(insert=[Quad(execution, PHT.state, PHT.Approved, AACHEN_GRAPH)]))
    platform.walk(eid, "pulling", "running")
    assert platform.client.get(f"/api/trains/{tid}", headers=ALICE).json()["executions"][0]["state"] == "running"


@pytest.fixture(params=[
    pytest.param("embedded", id="embedded"),
    pytest.param("oxigraph", id="oxigraph", marks=pytest.mark.real_component("oxigraph")),
    pytest.param("virtuoso", id="virtuoso", marks=pytest.mark.real_component("virtuoso")),
])
def scenario(request: pytest.FixtureRequest) -> Iterator[GraphStore]:
    """Each back-end with the vocabulary and the valid fixture scenario in the central graph, nothing else."""
    store: GraphStore
    if request.param == "embedded":
        store = EmbeddedStore()
    elif request.param == "oxigraph":
        ox = request.getfixturevalue("oxigraph_endpoint")
        store = RemoteStore(ox.query_url, ox.update_url, timeout=20)
    else:
        vt = request.getfixturevalue("virtuoso_endpoint")
        store = RemoteStore(vt.query_url, vt.update_url, user=vt.user, password=vt.password, timeout=20)
    store.load_vocabulary()
    # a raw update on purpose: apply() never drops graphs, and the test needs a clean slate on a shared server
    drop = [f"DROP SILENT GRAPH <{g}>" for g in (CENTRAL_GRAPH.value, AACHEN_GRAPH.value, AUDIT_GRAPH.value)]
    store._update(" ; ".join(drop))  # noqa: SLF001
    store.apply(ChangeSet(insert=[Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH)
                                  for f in sorted(FIXTURES.glob("*.ttl"))
                                  for t in parse(path=f, format=RdfFormat.TURTLE)]))
    yield store
    store._update(" ; ".join(drop))  # noqa: SLF001
    store.close()


@pytest.mark.central_stores_except("oxigraph", "virtuoso", reason=(
    "runs on every back-end through its own parameter"))
def test_station_graph_facts_never_change_central_validity_on_any_back_end(scenario: GraphStore) -> None:
    """The shapes see a central change with the central graph and the ontology only, on every back-end; a station
    graph's own write is still checked against the central graph it names (so it cannot contradict it)."""
    train = NamedNode(BASE + "train-0002")
    scenario.apply(ChangeSet(insert=[Quad(train, PHT.state, PHT.Running, AACHEN_GRAPH)]))  # conforms: same state
    report = scenario.apply(ChangeSet(delete=[Quad(train, PHT.state, PHT.Running, CENTRAL_GRAPH)],
                                      insert=[Quad(train, PHT.state, PHT.Cancelled, CENTRAL_GRAPH)]))
    assert report.conforms
    assert [q.object for q in scenario.quads(train, PHT.state, None, CENTRAL_GRAPH)] == [PHT.Cancelled]
    with pytest.raises(ValidationFailed) as refused:  # the station graph may not give it a second state
        scenario.apply(ChangeSet(insert=[Quad(train, PHT.state, PHT.Failed, AACHEN_GRAPH)]))
    assert {r.component_name for r in refused.value.report.results} == {"MaxCountConstraintComponent"}
    assert not scenario.contains(Quad(train, PHT.state, PHT.Failed, AACHEN_GRAPH))


# -- events say who emitted them; station claims are not lifecycle history ---------------------------------


def _forge(platform: Platform, tid: str) -> tuple[NamedNode, NamedNode]:
    """What a station's graph may hold after a malicious MPU: a 'finished by an operator' claim with a link, and an
    honest error event."""
    g, train = AACHEN_GRAPH, IRIS.train(tid)
    forged, error = (NamedNode(f"{BASE}stations/aachen/events/{name}") for name in ("forged", "error"))
    now = Literal(datetime.now(UTC).isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)
    platform.store.apply(ChangeSet(insert=[
        Quad(forged, RDF_TYPE, PHT.StateChangeEvent, g), Quad(forged, PHT.eventTime, now, g),
        Quad(forged, PHT.aboutTrain, train, g), Quad(forged, PHT.emittedBy, IRIS.central, g),
        Quad(forged, PHT.fromState, PHT.Running, g), Quad(forged, PHT.toState, PHT.Finished, g),
        Quad(forged, PHT.actingRole, PHT.Operator, g), Quad(forged, PROV.wasAssociatedWith, IRIS.agent("ops"), g),
        Quad(forged, PHT.reason, Literal("results ready: https://evil.example/results"), g),
        Quad(error, RDF_TYPE, PHT.ErrorEvent, g), Quad(error, PHT.eventTime, now, g),
        Quad(error, PHT.aboutTrain, train, g), Quad(error, PHT.emittedBy, IRIS.station("aachen"), g),
        Quad(error, PHT.errorMessage, Literal("disk full"), g),
    ]))
    return forged, error


@pytest.mark.central_stores_except("virtuoso", reason=(
    "train_history.rq fails on Virtuoso 7.2 ('transitive start not given'; VIRTUOSO_DIFFERS in "
    "tests/test_remote_queries.py)"))
def test_a_forged_station_event_is_not_in_the_owners_lifecycle_history(platform: Platform) -> None:
    tid = platform.train()
    platform.walk(f"{tid}.r1-s0", "approved")
    forged, error = _forge(platform, tid)
    r = platform.client.get(f"/api/trains/{tid}/events", headers=ALICE)
    assert r.status_code == 200, r.text
    events = r.json()["items"]
    assert forged.value not in {e["event"] for e in events}
    assert not any(e["to_state"] == "finished" or "evil" in (e["reason"] or "") for e in events)
    assert all(e["source"] in ("central", "station:aachen") for e in events), events
    by_iri = {e["event"]: e for e in events}
    assert by_iri[error.value]["source"] == "station:aachen"
    assert {e["source"] for e in events if e["to_state"]} == {"central"}, "transitions are the lifecycle's"
    # the station's claims stay in the provenance history, with the graph that says who made them
    history = list(platform.store.run_query("train_history", train=IRIS.train(tid)))
    assert {r["graph"] for r in history if r["event"] == forged} == {AACHEN_GRAPH}


def test_the_web_timeline_says_who_emitted_each_event(platform: Platform) -> None:
    tid = platform.train()
    platform.walk(f"{tid}.r1-s0", "approved")
    forged, error = _forge(platform, tid)
    page = platform.client.get(f"/ui/trains/{tid}", headers=ALICE)
    assert page.status_code == 200, page.text
    assert "emitted by" in page.text
    row = next(line for line in page.text.splitlines() if f'data-event="{error.value}"' in line)
    assert "station:aachen" in row
    assert forged.value not in page.text and "evil.example" not in page.text
    central_rows = [line for line in page.text.splitlines() if "data-event=" in line and "ErrorEvent" not in line]
    assert central_rows and all('class="source">central<' in line for line in central_rows)


# -- a station claims only its own datasets ----------------------------------------------------------------


def test_a_station_may_report_only_its_own_datasets_as_used(platform: Platform) -> None:
    tid = platform.train()
    eid = f"{tid}.r1-s0"
    platform.walk(eid, "approved", "pulling")
    execution = IRIS.execution(eid)
    for used, status, named in ((["aachen-data", "leipzig-data"], 403, "leipzig-data"),
                                (["no-such-data"], 422, "no-such-data")):
        r = platform.step(eid, "running", station("aachen"), used=used)
        assert r.status_code == status, r.text
        assert named in r.json()["detail"]
        assert not platform.store.quads(execution, PROV.used, None, None), "nothing written"
        assert platform.store.quads(execution, PHT.state, None, CENTRAL_GRAPH)[0].object == PHT.Pulling
    assert platform.step(eid, "running", station("aachen"), used=["aachen-data"]).status_code == 200
    assert [q.object for q in platform.store.quads(execution, PROV.used, None, None)] == [IRIS.dataset("aachen-data")]


# -- the watchdog handles each train on its own -------------------------------------------------------------


def test_one_train_the_watchdog_cannot_fail_does_not_leave_another_running(caplog: pytest.LogCaptureFixture
                                                                           ) -> None:
    """Two stale trains; the older one cannot be failed (its state was broken by a bulk load that bypassed
    validation: two states). The round used to abort on it (only conflicts were caught)."""
    store = new_central_store()
    store.load_vocabulary()
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    clock = [t0]
    # the lifecycle engine's watchdog, no stations: unsigned trains (signing: test_signed_submissions.py)
    life = Lifecycle(store, Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False),
                     clock=lambda: clock[0])
    alice, ops = principals.ALICE, principals.OPERATOR
    reg = Registry(store, life.iris)
    reg.station(ops, StationSpec("aachen", "aachen station", "aachen hospital", [principals.KEY]))
    reg.dataset(ops, DatasetSpec("aachen-data", "data", "aachen"))
    reg.definition(alice, DefinitionSpec("count", "Cohort count", "pht/count", principals.DIGEST, "incremental",
                                         ["aachen"]))
    unfailable = life.submit(alice, definition_id="count", parameters={})
    clock[0] = t0 + timedelta(seconds=1)
    failable = life.submit(alice, definition_id="count", parameters={})
    broken = Quad(life.iris.train(unfailable), PHT.state, PHT.Running, CENTRAL_GRAPH)
    if isinstance(store, EmbeddedStore):
        store.oxigraph.add(broken)
    else:  # the same bulk load on a server: a raw update that no validation sees
        store._update(f"INSERT DATA {{ {quad_block([broken])} }}")  # noqa: SLF001
    clock[0] = t0 + timedelta(hours=1)
    with caplog.at_level(logging.ERROR, logger="pht.watchdog"):
        failed = life.expire_stale(60)
    assert failed == [f"{failable}.r1-s0"]
    assert [q.object for q in store.quads(life.iris.train(failable), PHT.state, None, CENTRAL_GRAPH)] == [PHT.Failed]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert unfailable in logged and f"{unfailable}.r1-s0" in logged, logged


# -- operators' edits are recorded ----------------------------------------------------------------------------


def test_an_operator_deleting_an_approval_event_is_recorded(platform: Platform) -> None:
    """The attack: an operator's ``DELETE WHERE`` erases an approval event; it used to leave no trace."""
    tid = platform.train()
    platform.walk(f"{tid}.r1-s0", "approved")
    text = ("PREFIX pht: <https://w3id.org/pht-kg/vocab#> DELETE WHERE { GRAPH <https://w3id.org/pht-kg/graph/central>"
            f" {{ ?e pht:aboutExecution <{IRIS.execution(tid + '.r1-s0').value}> ; pht:toState pht:Approved ; ?p ?o }} }}")
    r = platform.client.post("/sparql", headers={**OPS, **UPDATE}, content=text.encode())
    assert r.status_code == 200, r.text
    deleted = r.json()["deleted"]
    assert deleted > 0
    (edit,) = platform.edits()
    assert edit["operator"] == IRIS.agent("ops").value and edit["kind"] == "sparql-update"
    assert edit["requestSha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert (edit["graph"], edit["inserted"], edit["deleted"]) == (CENTRAL_GRAPH.value, "0", str(deleted))
    assert datetime.fromisoformat(str(edit["time"])) > datetime.now(UTC) - timedelta(minutes=1)


def test_graph_store_protocol_writes_are_recorded_per_graph(platform: Platform) -> None:
    c = platform.client
    graph = {"graph": f"{BASE}graphs/notes"}
    body = f'<{BASE}notes/1> <http://www.w3.org/2000/01/rdf-schema#label> "one" .'.encode()
    assert c.put("/rdf-graphs", params=graph, headers={**OPS, **TURTLE}, content=body).status_code == 201
    assert c.post("/rdf-graphs", params=graph, headers={**OPS, **TURTLE},
                  content=body.replace(b"notes/1", b"notes/2")).status_code == 204
    assert c.delete("/rdf-graphs", params=graph, headers=OPS).status_code == 204
    edits = platform.edits()
    assert sorted((e["kind"], e["graph"], e["inserted"], e["deleted"]) for e in edits) == [
        ("graph-delete", graph["graph"], "0", "2"), ("graph-post", graph["graph"], "1", "0"),
        ("graph-put", graph["graph"], "1", "0")]
    assert {e["requestSha256"] for e in edits if e["kind"] == "graph-put"} == {hashlib.sha256(body).hexdigest()}


def test_a_refused_edit_records_nothing(platform: Platform) -> None:
    """The record is committed with the edit or not at all: a 422 leaves neither."""
    text = (f'INSERT DATA {{ GRAPH <https://w3id.org/pht-kg/graph/central> {{ <{BASE}stations/aachen> '
            '<http://purl.org/dc/terms/identifier> "aachen-2" } }')
    r = platform.client.post("/sparql", headers={**OPS, **UPDATE}, content=text.encode())
    assert r.status_code == 422, r.text
    assert platform.edits() == [] and not platform.graph(AUDIT_GRAPH)


@pytest.mark.parametrize("text", [
    "DELETE WHERE { GRAPH <https://w3id.org/pht-kg/graph/audit> { ?s ?p ?o } }",
    "DELETE WHERE { GRAPH ?g { ?s a <https://w3id.org/pht-kg/vocab#GraphEdit> ; ?p ?o } }",
    "INSERT DATA { GRAPH <https://w3id.org/pht-kg/graph/audit> { <urn:x:a> <urn:x:b> <urn:x:c> } }",
])
def test_no_edit_may_change_the_audit_graph(platform: Platform, text: str) -> None:
    c = platform.client
    first = "INSERT DATA { GRAPH <https://pht.example.org/id/graphs/notes> { <urn:x:n> <urn:x:p> \"n\" } }"
    assert c.post("/sparql", headers={**OPS, **UPDATE}, content=first.encode()).status_code == 200
    before = platform.graph(AUDIT_GRAPH)
    assert before, "the first edit is recorded"
    r = c.post("/sparql", headers={**OPS, **UPDATE}, content=text.encode())
    assert r.status_code == 403, r.text
    assert "records operators' edits" in r.json()["detail"]
    params = {"graph": AUDIT_GRAPH.value}
    for method in ("PUT", "POST", "DELETE"):
        r = c.request(method, "/rdf-graphs", params=params, headers={**OPS, **TURTLE},
                      content=b"" if method == "DELETE" else b"<urn:x:a> <urn:x:b> <urn:x:c> .")
        assert r.status_code == 403, (method, r.text)
    assert platform.graph(AUDIT_GRAPH) == before


@pytest.mark.parametrize("who", [ALICE, BOB, admin("aachen"), station("aachen")], ids=["r-own", "r-oth", "admin",
                                                                                      "station"])
def test_the_audit_graph_is_read_by_operators_only(platform: Platform, who: dict[str, str]) -> None:
    c = platform.client
    first = "INSERT DATA { GRAPH <https://pht.example.org/id/graphs/notes> { <urn:x:n> <urn:x:p> \"n\" } }"
    assert c.post("/sparql", headers={**OPS, **UPDATE}, content=first.encode()).status_code == 200
    assert c.get("/rdf-graphs", params={"graph": AUDIT_GRAPH.value}, headers=OPS).status_code == 200
    assert c.get("/rdf-graphs", params={"graph": AUDIT_GRAPH.value}, headers=who).status_code == 403
    query = f"SELECT ?s WHERE {{ GRAPH <{AUDIT_GRAPH.value}> {{ ?s ?p ?o }} }}"
    accept = {"Accept": "application/sparql-results+json"}
    assert c.get("/sparql", params={"query": query}, headers={**OPS, **accept}).json()["results"]["bindings"]
    r = c.get("/sparql", params={"query": query}, headers={**who, **accept})
    if r.status_code == 400 and current() != "embedded":  # a station's query is confined to its own graph
        assert "GRAPH is refused in a query confined to one graph" in r.text, r.text  # on a server: no GRAPH
        return
    assert r.status_code == 403 or r.json()["results"]["bindings"] == [], r.text

"""The central service's own SPARQL on a remote store: every named query answers on a REAL Oxigraph server and a
REAL Virtuoso exactly as on the embedded store (same data), each is sent as a query (never guessed to be an
update from a word in its comment), and the service itself runs on a remote store: trains are submitted, the
service restarts over the stored executions, the watchdog fails a train whose station went away.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import servers
from api_helpers import ALICE, SETTINGS, register_world, signed, station
from fastapi.testclient import TestClient
from pyoxigraph import BlankNode, Literal, NamedNode, Quad, QuerySolutions

from graph_store import (
    CENTRAL_GRAPH,
    NO_FILTER,
    ONTOLOGY_GRAPH,
    PHT,
    RDF_TYPE,
    SHAPES_GRAPH,
    XSD,
    ChangeSet,
    EmbeddedStore,
    GraphStore,
    GraphStoreError,
    RemoteStore,
    list_named_queries,
    station_graph,
)
from graph_store._sparql_text import quad_block
from orchestrator.app import create_app
from orchestrator.list_positions import position_literal
from orchestrator.page_tokens import FIRST, REJECTIONS_FIRST
from orchestrator.settings import Settings

BASE = "https://pht.example.org/id/"
REMOTES = [pytest.param("oxigraph", marks=pytest.mark.real_component("oxigraph")),
           pytest.param("virtuoso", marks=pytest.mark.real_component("virtuoso"))]


@dataclasses.dataclass(frozen=True)
class World:
    store: EmbeddedStore
    train: NamedNode
    execution: NamedNode


def _world_on(store: GraphStore, client: TestClient) -> tuple[str, str]:
    """Register the api_helpers world, submit a count train and take its first execution to running."""
    register_world(client)
    r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count",
                                                                            "parameters": {"MIN": "5"}}))
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    eid = f"{tid}.r1-s0"
    for to in ("approved", "pulling", "running"):
        r = client.post(f"/api/executions/{eid}/steps", headers=station("aachen"), json={"to": to})
        assert r.status_code == 200, r.text
    return tid, eid


def without_blank_nodes(quads: list[Quad]) -> list[Quad]:
    """Blank nodes as ``urn:test:bnode:`` IRIs: Virtuoso refuses blank nodes in INSERT DATA."""
    def term(t: Any) -> Any:
        return NamedNode(f"urn:test:bnode:{t.value}") if isinstance(t, BlankNode) else t
    return [Quad(term(q.subject), q.predicate, term(q.object), q.graph_name) for q in quads]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """The world as the service wrote it, copied without blank nodes (so every back-end can hold the same data)."""
    written = EmbeddedStore()
    with TestClient(create_app(SETTINGS, store=written)) as client:
        tid, eid = _world_on(written, client)
    for sid, units in (("aachen", ("a", None)), ("leipzig", (None, "http://loinc.org"))):  # route_dataset_variables
        dataset, g = NamedNode(f"{BASE}datasets/{sid}-data"), station_graph(sid)
        age = NamedNode(f"{dataset.value}/variables/age")
        unit, code = units
        written.apply(ChangeSet(insert=[
            Quad(dataset, PHT.variable, age, g), Quad(age, RDF_TYPE, PHT.Variable, g),
            Quad(age, PHT.variableName, Literal("age"), g), Quad(age, PHT.variableDatatype, XSD.integer, g),
            *([Quad(age, PHT.variableUnit, Literal(unit), g)] if unit else []),
            *([Quad(age, PHT.codeSystem, NamedNode(code), g)] if code else [])]))
    revocations = [  # token_revocations: one token, and two cut-offs of aachen (the later one the smaller text)
        (f"{BASE}token-revocations/1", PHT.revokesToken, Literal("revoked-jti")),
        *((f"{BASE}token-revocations/{n}", p, o) for n, before in ((2, "2026-11-27T11:00:00+01:00"),
                                                                     (3, "2026-11-27T10:30:00Z"))
          for p, o in ((PHT.revokesStation, NamedNode(f"{BASE}stations/aachen")),
                       (PHT.revokesIssuedBefore, Literal(before, datatype=XSD.dateTime))))]
    written.apply(ChangeSet(insert=[
        *(Quad(NamedNode(r), p, o, CENTRAL_GRAPH) for r, p, o in revocations),
        *(q for r in {r for r, _, _ in revocations} for q in (
            Quad(NamedNode(r), RDF_TYPE, PHT.TokenRevocation, CENTRAL_GRAPH),
            Quad(NamedNode(r), PHT.revokedAt, Literal("2026-11-27T10:31:00Z", datatype=XSD.dateTime), CENTRAL_GRAPH),
            Quad(NamedNode(r), PHT.revokedBy, Literal("ops"), CENTRAL_GRAPH)))]))
    store = EmbeddedStore()
    quads = without_blank_nodes(written.quads())
    for i in range(0, len(quads), 400):
        store._update(f"INSERT DATA {{ {quad_block(quads[i:i + 400])} }}")  # noqa: SLF001
    written.close()
    yield World(store, NamedNode(f"{BASE}trains/{tid}"), NamedNode(f"{BASE}executions/{eid}"))
    store.close()


def _remote(request: pytest.FixtureRequest, name: str) -> RemoteStore:
    """A client of the session's server, closed when the test ends (conftest's ``closing``)."""
    if name == "oxigraph":
        ox: servers.OxigraphServer = request.getfixturevalue("oxigraph_endpoint")
        store = RemoteStore(ox.query_url, ox.update_url, timeout=20)
    else:
        vt: servers.VirtuosoServer = request.getfixturevalue("virtuoso_endpoint")
        store = RemoteStore(vt.query_url, vt.update_url, user=vt.user, password=vt.password, timeout=20)
    return request.getfixturevalue("closing")(store)  # type: ignore[no-any-return]


def drop_data_graphs(store: RemoteStore, *, vocabulary: bool = False) -> None:
    """Drop every graph of the platform's layout (with ``vocabulary``, the ontology and shapes graphs too) that
    other tests of the session left."""
    rows = store.query("SELECT DISTINCT ?g WHERE { GRAPH ?g { ?s ?p ?o } FILTER(STRSTARTS(STR(?g), $ns)) }",
                       bindings={"ns": Literal("https://w3id.org/pht-kg/graph/")})
    graphs = {row["g"] for row in rows} - (set() if vocabulary else {ONTOLOGY_GRAPH, SHAPES_GRAPH})  # type: ignore[index]
    if graphs:
        store._update(" ; ".join(f"DROP SILENT GRAPH {g}" for g in sorted(graphs, key=str)))  # noqa: SLF001


def copy_into(source: GraphStore, target: RemoteStore) -> None:
    """The same data on ``target``: raw INSERT DATA (already validated on ``source``), 400 quads a request."""
    drop_data_graphs(target, vocabulary=True)  # loaded by a RemoteStore, its literals may be written differently
    quads: list[Quad] = source.quads()
    for i in range(0, len(quads), 400):
        target._update(f"INSERT DATA {{ {quad_block(quads[i:i + 400])} }}")  # noqa: SLF001


def bindings_for(name: str, parameters: frozenset[str], w: World) -> dict[str, Any]:
    """A value for each parameter of a named query, taken from the world (each names something that exists)."""
    values: dict[str, Any] = {
        "definition": NamedNode(f"{BASE}definitions/count"),
        "execution": w.execution,
        "train": w.train,
        "station": NamedNode(f"{BASE}stations/aachen"),
        "graph": station_graph("aachen"),
        "onlyRequester": NO_FILTER,
        "onlyState": NO_FILTER,
        "researcher": NamedNode(f"{BASE}agents/alice"),
        "afterPosition": position_literal(FIRST.position), "afterId": Literal(""),  # the trains list's first page:
        "lowestPosition": position_literal(0),  # every position below (an operator's window)
        **REJECTIONS_FIRST,  # the first page of rejections.rq
        "party": NamedNode(f"{BASE}agents/alice"),
        "identifier": Literal("aachen"),
        "output": NamedNode(f"{BASE}outputs/none"),
        "before": Literal((datetime.now(timezone.utc) + timedelta(days=1)).isoformat(), datatype=XSD.dateTime),
        "stationId": Literal("aachen"),
        "tokenId": Literal("revoked-jti"),
        # the dataspace connector's queries (dataspace/): over its own graph, which this world does not have
        "agreementId": Literal("agreement-1"),
        "role": NamedNode("https://w3id.org/pht-kg/vocab#ProviderRole"),
        "class": NamedNode("https://w3id.org/pht-kg/vocab#ContractNegotiation"),
        "pidProperty": NamedNode("https://w3id.org/pht-kg/vocab#providerPid"),
        "pid": Literal("urn:uuid:0"),
        "digest": Literal("00" * 32),
        "result": NamedNode(f"{BASE}results/none"),
        # a station's disclosure ledger (station/disclosure.py): a cohort size range, over a graph this world lacks
        "low": Literal("1", datatype=XSD.integer),
        "high": Literal("10", datatype=XSD.integer),
        # a station's privacy-budget ledger (station/consent_ledger.py), over a graph this world lacks
        "project": Literal("p1"), "dataset": Literal("patients"),
    }
    if "key" in parameters:
        keys = w.store.select("SELECT ?k WHERE { GRAPH ?g { ?k a <https://w3id.org/security#Multikey> } } LIMIT 1")
        values["key"] = [row["k"] for row in keys][0]  # all read here: pyoxigraph's results stay in their thread
    missing = parameters - values.keys()
    assert not missing, f"{name}.rq: give the test a value for {missing}"
    return {p: values[p] for p in parameters}


def answers(store: GraphStore, text: str, bindings: dict[str, Any]) -> Counter[tuple[tuple[str, str], ...]]:
    """The answer as a multiset (rows of (variable, term) pairs; a CONSTRUCT's triples): orders may differ on ties."""
    result = store.query(text, bindings=bindings)
    try:
        if not isinstance(result, QuerySolutions):
            return Counter((("triple", str(t)),) for t in result)  # type: ignore[union-attr]
        names = [v.value for v in result.variables]
        return Counter(tuple((n, str(row[n])) for n in names if row[n] is not None) for row in result)
    finally:
        del result  # pyoxigraph's results must be dropped by the thread that made them


VIRTUOSO_DIFFERS = {
    "station_durations": "subtracts xsd:dateTime values (an Oxigraph extension, not SPARQL 1.1): Virtuoso answers "
                         "a number unrelated to the duration, and 0 instead of unbound for a missing time",
    "station_work": "Virtuoso's CONCAT treats an unbound argument as \"\" (GROUP_CONCAT of no input gives \"=\", "
                    "where SPARQL's error leaves ?inputDigests unbound; reads.py skips the empty pair)",
    "train_history": "Virtuoso 7.2 drops the rows of the UNION branches whose OPTIONALs are unbound",
}
"""Named queries measured to answer differently on Virtuoso 7.2 (reported, not yet rewritten to be portable); the
test requires them to still differ, so a fix shows up here and its entry is removed."""


@pytest.mark.parametrize("remote", REMOTES)
def test_every_named_query_answers_on_a_real_server_as_on_the_embedded_store(
        request: pytest.FixtureRequest, world: World, remote: str) -> None:
    store = _remote(request, remote)
    copy_into(world.store, store)
    queries = [q for q in list_named_queries() if not q.is_update]
    assert len(queries) > 30
    nonempty, differ, known = 0, [], set()
    for q in queries:
        values = bindings_for(q.name, q.parameters, world)
        expected = answers(world.store, q.text, values)
        try:
            got = answers(store, q.text, values)
        except GraphStoreError as e:
            got = Counter({(("error", str(e)),): 1})
        if got != expected and remote == "virtuoso" and q.name in VIRTUOSO_DIFFERS:
            known.add(q.name)
        elif got != expected:
            differ.append(f"{q.name}.rq: {sorted(got - expected)} instead of {sorted(expected - got)}")
        nonempty += bool(expected)
    assert not differ, "\n".join(differ)
    assert known == (set(VIRTUOSO_DIFFERS) if remote == "virtuoso" else set()), "fixed? update VIRTUOSO_DIFFERS"
    assert nonempty >= 25, "the world makes most named queries answer something"


@pytest.mark.parametrize("remote", REMOTES)
def test_a_query_whose_comment_names_an_update_is_still_sent_as_a_query(
        request: pytest.FixtureRequest, world: World, remote: str) -> None:
    """stale_executions.rq's comment says "created": SPARQLWrapper guessed an update and sent it as
    ``update=`` to the query URL (refused there). Here the wording is worse still."""
    store = _remote(request, remote)
    copy_into(world.store, store)
    stale = store.run_query("stale_executions", before=bindings_for("stale_executions", frozenset({"before"}),
                                                                       world)["before"])
    assert [row["execution"] for row in stale] == [world.execution]
    text = "# INSERT DATA { } ; DELETE WHERE { } created\nPREFIX x: <urn:x:>\n# DROP ALL\nASK { GRAPH ?g { ?s ?p ?o } }"
    assert store.ask(text) is True


@pytest.mark.parametrize("remote", REMOTES)
def test_an_update_that_starts_with_with_is_sent_as_an_update(request: pytest.FixtureRequest, remote: str) -> None:
    """The other direction: an update whose first keyword is not in SPARQLWrapper's list (WITH) was guessed to be
    a SELECT and sent as ``query=``."""
    store = _remote(request, remote)
    g = NamedNode("https://w3id.org/pht-kg/graph/test-remote-with")
    store._update(f"DROP SILENT GRAPH {g}")  # noqa: SLF001
    store._update(f"INSERT DATA {{ GRAPH {g} {{ <urn:a> <urn:p> 1 }} }}")  # noqa: SLF001
    store._update(f"# a comment\nWITH {g} DELETE {{ ?s ?p ?o }} INSERT {{ ?s ?p 2 }} WHERE {{ ?s ?p ?o }}")  # noqa: SLF001
    assert [q.object for q in store.quads(g=g)] == [Literal("2", datatype=XSD.integer)]
    store._update(f"DROP SILENT GRAPH {g}")  # noqa: SLF001


def _service_settings(store: RemoteStore, **changes: Any) -> Settings:
    user, password = store._auth if store._auth is not None else (None, None)  # noqa: SLF001
    return dataclasses.replace(SETTINGS, store_in_memory=False, store_query_url=store.query_url,
                               store_update_url=store.update_url, store_user=user, store_password=password,
                               **changes)


@pytest.mark.parametrize("remote", REMOTES)
def test_the_service_runs_on_a_remote_store_restarts_over_it_and_its_watchdog_fails_a_lost_train(
        request: pytest.FixtureRequest, remote: str) -> None:
    """As an operator runs it (PHT_STORE_QUERY_URL / PHT_STORE_UPDATE_URL): the lifecycle's guarded updates, a
    restart over a store holding executions, and the watchdog's stale_executions query, all on the server."""
    store = _remote(request, remote)
    drop_data_graphs(store)
    with TestClient(create_app(_service_settings(store))) as client:
        tid, eid = _world_on(store, client)
        assert client.get(f"/api/trains/{tid}", headers=ALICE).json()["executions"][0]["state"] == "running"
        [work] = client.get("/api/stations/aachen/work", headers=station("aachen")).json()
        assert work["inputs"] == [] and work["input_digests"] == [], work  # Virtuoso answered "=" (one input "")
    # aachen goes away; the service restarts with a short station timeout over the same server
    with TestClient(create_app(_service_settings(store, station_timeout_s=1.0))) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and \
                client.get(f"/api/trains/{tid}", headers=ALICE).json()["state"] != "failed":
            time.sleep(0.3)
        train = client.get(f"/api/trains/{tid}", headers=ALICE).json()
        assert train["state"] == "failed", train
        assert [e["state"] for e in train["executions"]] == ["failed"]
        events = client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500}).json()["items"]
        reasons = [e["reason"] for e in events if e["to_state"] == "failed" and e["execution"] == eid]
        assert reasons and "station aachen" in reasons[0], events
    drop_data_graphs(store)

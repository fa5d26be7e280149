"""Station events as the MPU takes them: the JSON schema and its refusals, the triples (vocabulary, units,
the central service's IRIs; an event's own IRI its id, or random), the MPU's HTTP interface and its docstrings. The rule that the MPU,
the station software and the orchestrator never import each other is in test_dependencies.py."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mpu_helpers import METRICS, METRICS_TOKEN
from pydantic import ValidationError

import station_mpu
from graph_store import PHT_NS
from orchestrator.naming import Iris
from station_mpu import EventAdapter, InvalidEvents, Mpu, MpuSettings, Naming, event_kinds, validated
from station_mpu._events import event_triples
from station_mpu.app import create_mpu_app

UNIT = "http://qudt.org/vocab/unit/"
NAMING = Naming("https://pht.example.org/id/", "aachen")
COMMON = {"time": "2026-11-27T10:00:00+02:00", "train": "3f2c", "execution": "3f2c.r1-s0"}
EVERY_KIND = [
    {"kind": "state-change", "from_state": "queued", "to_state": "waiting-for-approval"},
    {"kind": "state-change", "to_state": "approved", "actor": "dora", "role": "station-admin", "reason": "fine"},
    {"kind": "rejection", "reason": "No anonymity"}, {"kind": "error", "message": "exit code 3"},
    {"kind": "log", "log_sha256": "f" * 64}, {"kind": "log", "log_sha256": "e" * 64, "message": "done"},
    {"kind": "started-transmission"}, {"kind": "finished-transmission"}, {"kind": "started-running"},
    {"kind": "finished-running", "success": False}, {"kind": "cpu-usage", "value": 180.5},
    {"kind": "memory-usage", "value": 52428800}, {"kind": "network-usage", "value": 10.5, "direction": "out"},
    {"kind": "network-usage", "value": 0}]


def triples_of(raw: dict[str, Any]) -> dict[str, list[str]]:
    (unit,) = validated([event_triples(m, NAMING) for m in EventAdapter.validate_python([{**COMMON, **raw}])])
    out: dict[str, list[str]] = {}
    for q in unit.quads:
        out.setdefault(q.predicate.value.rsplit("#", 1)[-1].rsplit("/", 1)[-1], []).append(q.object.value)
    return out


def test_every_kind_becomes_valid_triples_of_the_vocabulary() -> None:
    units = validated([event_triples(m, NAMING) for m in EventAdapter.validate_python([{**COMMON, **r}
                                                                                      for r in EVERY_KIND])])
    assert {u.cls.value.removeprefix(PHT_NS) for u in units} == {c.value.removeprefix(PHT_NS)
                                                                 for c in event_kinds().values()}
    assert all(q.graph_name.value == "https://w3id.org/pht-kg/graph/station/aachen" for u in units for q in u.quads)


def test_units_are_explicit_and_times_are_utc() -> None:
    assert triples_of({"kind": "cpu-usage", "value": 180.5})["unit"] == [UNIT + "PERCENT"]
    memory = triples_of({"kind": "memory-usage", "value": 52428800})
    assert memory["unit"] == [UNIT + "BYTE"] and memory["value"] == ["52428800"]  # xsd:decimal, canonical form
    network = triples_of({"kind": "network-usage", "value": 10.5, "direction": "out"})
    assert network["unit"] == [UNIT + "BYTE-PER-SEC"] and network["direction"] == [PHT_NS + "Outbound"]
    assert memory["eventTime"] == ["2026-11-27T08:00:00Z"]


def test_state_changes_name_who_and_in_which_role() -> None:
    by_station = triples_of({"kind": "state-change", "to_state": "pulling"})
    assert by_station["wasAssociatedWith"] == ["https://pht.example.org/id/stations/aachen"]
    assert by_station["actingRole"] == [PHT_NS + "StationRole"]
    by_admin = triples_of({"kind": "state-change", "to_state": "approved", "actor": "dora", "role": "station-admin"})
    assert by_admin["wasAssociatedWith"] == ["https://pht.example.org/id/agents/dora"]
    assert by_admin["actingRole"] == [PHT_NS + "StationAdmin"]


def test_iris_are_the_central_services_and_an_events_own_is_its_id_or_random() -> None:
    iris = Iris("https://pht.example.org/id/")
    assert NAMING.train("3f2c").value == iris.train("3f2c").value
    assert NAMING.execution("3f2c.r1-s0").value == iris.execution("3f2c.r1-s0").value
    assert NAMING.station.value == iris.station("aachen").value
    assert NAMING.agent("dora").value == iris.agent("dora").value
    assert NAMING.dataset("d-1").value == iris.dataset("d-1").value
    (a,) = EventAdapter.validate_python([{**COMMON, "kind": "started-running"}])
    (b,) = EventAdapter.validate_python([{**COMMON, "kind": "started-running"}])
    (c,) = EventAdapter.validate_python([{**COMMON, "kind": "started-running", "time": "2026-11-27T10:00:01Z"}])
    # without an id: a random IRI (never a hash of content a policy may deny), one outbox key per content
    ta, tb, tc = (event_triples(e, NAMING) for e in (a, b, c))
    assert len({ta.iri, tb.iri, tc.iri}) == 3 and ta.key == tb.key != tc.key
    assert ta.iri.value.startswith("https://pht.example.org/id/stations/aachen/events/")
    (d,) = EventAdapter.validate_python([{**COMMON, "kind": "started-running", "id": "agent-42"}])
    assert event_triples(d, NAMING).iri.value == "https://pht.example.org/id/stations/aachen/events/agent-42"


@pytest.mark.parametrize(("raw", "words"), [
    ({"kind": "rejection"}, "reason"),
    ({"kind": "rejection", "reason": "   "}, "reason"),
    ({"kind": "error", "message": ""}, "message"),
    ({"kind": "state-change", "to_state": "teleported"}, "unknown state 'teleported'"),
    ({"kind": "log", "log_sha256": "ABC"}, "log_sha256"),
    ({"kind": "log", "log_sha256": "a" * 64, "message": "x" * 1025}, "1024"),
    ({"kind": "memory-usage", "value": -1}, "greater than or equal to 0"),
    ({"kind": "cpu-usage", "value": "NaN"}, "value"),
    ({"kind": "cpu-usage", "value": 1, "direction": "in"}, "only network-usage"),
    ({"kind": "finished-running"}, "success"),
    ({"kind": "started-running", "execution": "other.r1-s0"}, "not an execution of train"),
    ({"kind": "started-running", "time": "2026-11-27T10:00:00"}, "timezone"),
    ({"kind": "started-running", "train": "bad id"}, "train"),
    ({"kind": "started-running", "colour": "blue"}, "colour"),
    ({"kind": "teleport"}, "does not match any of the expected tags"),
])
def test_malformed_events_are_refused_naming_the_field(raw: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        EventAdapter.validate_python([{**COMMON, **raw}])


def test_the_same_id_for_two_different_events_is_refused_by_the_shapes() -> None:
    pair = EventAdapter.validate_python([{**COMMON, "kind": "started-running", "id": "x"},
                                         {**COMMON, "kind": "started-running", "id": "x", "time": "2026-11-28T10:00:00Z"}])
    with pytest.raises(InvalidEvents, match="is not valid: An event needs exactly one time"):
        validated([event_triples(m, NAMING) for m in pair])


# -- the HTTP interface -----------------------------------------------------------------------------------------


@pytest.fixture()
def agent(tmp_path: Path) -> Any:
    m = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0, max_events_per_post=3,
                        metrics_token=METRICS_TOKEN))
    with TestClient(create_mpu_app(m, background=False), headers=METRICS) as client:  # the scraper's token
        yield client
    m.close()


def test_post_events_answers_what_was_queued_and_dropped(agent: TestClient) -> None:
    body = [{**COMMON, **EVERY_KIND[2]}, {**COMMON, **EVERY_KIND[10]}]
    r = agent.post("/events", json=body)
    assert r.status_code == 202
    assert r.json()["queued"] == 1 and r.json()["dropped"][0]["reason"].startswith("rule rule-1")
    again = agent.post("/events", json=body).json()
    assert again["queued"] == 0 and again["duplicates"] == 1  # posting again is a no-op
    assert agent.get("/status").json()["outbox"]["pending"] == 1
    metrics = agent.get("/metrics").text
    assert 'pht_mpu_events_received_total{kind="rejection"} 2.0' in metrics
    assert 'pht_mpu_events_dropped_total{reason="policy"} 2.0' in metrics


def test_post_events_refusals_are_one_sentence_and_store_nothing(agent: TestClient) -> None:
    r = agent.post("/events", json=[{**COMMON, "kind": "rejection", "reason": ""}])
    assert r.status_code == 422 and r.json()["detail"].startswith("invalid request: body.0.rejection.reason")
    assert r.json()["detail"].endswith("nothing was stored")
    r = agent.post("/events", json=[{**COMMON, "kind": "started-running"}] * 4)
    assert r.status_code == 413 and "at most 3 events per post" in r.json()["detail"]
    r = agent.post("/events", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert agent.get("/status").json()["outbox"]["pending"] == 0
    assert "pht_mpu_events_invalid_total 2.0" in agent.get("/metrics").text


def test_an_ingest_token_guards_the_posts(tmp_path: Path) -> None:
    m = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path, sample_interval_s=0, ingest_token="s3cret-token",
                        metrics_token=METRICS_TOKEN))
    with TestClient(create_mpu_app(m, background=False)) as client:
        body = [{**COMMON, "kind": "started-running"}]
        assert client.post("/events", json=body).status_code == 401
        assert client.post("/events", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/events", json=body, headers={"Authorization": "Bearer s3cret-token"}).status_code == 202
        assert client.get("/metrics", headers=METRICS).status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer s3cret-token"}).status_code == 401
        assert client.get("/health").json() == {"status": "ok"}
    m.close()


def test_state_changes_feed_the_station_metrics(agent: TestClient) -> None:
    steps = [("pulling", "2026-11-27T10:00:00Z"), ("running", "2026-11-27T10:00:01Z")]
    for to, at in steps:
        assert agent.post("/events", json=[{**COMMON, "time": at, "kind": "state-change", "to_state": to}]
                          ).status_code == 202
    agent.post("/events", json=[{**COMMON, "kind": "started-running", "time": "2026-11-27T10:00:02Z"},
                                {**COMMON, "kind": "finished-running", "time": "2026-11-27T10:01:02Z", "success": True}])
    metrics = agent.get("/metrics").text
    assert 'pht_station_executions{state="running"} 1.0' in metrics
    assert 'pht_station_executions{state="pulling"} 0.0' in metrics
    assert 'pht_station_train_run_duration_seconds_sum{outcome="success"} 60.0' in metrics


# -- code rules ----------------------------------------------------------------------------------------------------


def test_docstring_examples_of_the_mpu_run() -> None:
    names = [m.name for m in pkgutil.walk_packages(station_mpu.__path__, "station_mpu.")]
    attempted = 0
    for name in names:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"
        attempted += result.attempted
    assert attempted >= 2


def test_the_package_exports_what_it_declares() -> None:
    assert sorted(station_mpu.__all__) == station_mpu.__all__
    for name in station_mpu.__all__:
        assert hasattr(station_mpu, name), name


def test_canonical_forms_in_bulk_equal_one_by_one() -> None:
    """The store canonicalises a change set's literals in one scratch store (graph_store._convert.canonical_all);
    each comes out as it would alone, repeats and non-literals included."""
    from pyoxigraph import Literal, NamedNode

    from graph_store._convert import canonical, canonical_all

    xsd = "http://www.w3.org/2001/XMLSchema#"
    terms = [Literal("01", datatype=NamedNode(xsd + "integer")), Literal("1", datatype=NamedNode(xsd + "boolean")),
             Literal("2026-11-27T10:00:00.500+00:00", datatype=NamedNode(xsd + "dateTime")),
             Literal("5.50", datatype=NamedNode(xsd + "decimal")), Literal("x"), Literal("y", language="en"),
             Literal("nonsense", datatype=NamedNode(xsd + "integer")), NamedNode("urn:a"),
             Literal("01", datatype=NamedNode(xsd + "integer"))]
    bulk = canonical_all(terms)
    assert [bulk[t] for t in terms] == [canonical(t) for t in terms]
    assert bulk[terms[0]].value == "1" and bulk[terms[1]].value == "true" and bulk[terms[3]].value == "5.5"
    assert bulk[terms[6]] == terms[6]  # ill-typed: kept as written

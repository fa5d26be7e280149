"""Pushing station metadata: the central side's checks (signature, station, subjects, trains, shapes), delivery
at least once with idempotent writes (each event exactly once in the graph), the outbox when the central service
or the disk fails, and the metrics of both sides."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_helpers import ALICE, OPS, admin, station
from fastapi.testclient import TestClient
from mpu_helpers import (
    BASE,
    METRICS,
    PHT,
    CountingClient,
    StationKeys,
    central,
    event_quads,
    event_subjects,
    events,
    mpu,
    mpu_settings,
    new_train,
    register,
    token_of,
)
from pyoxigraph import NamedNode, RdfFormat, parse

from graph_store import EmbeddedStore, batch_headers, sign_batch, station_graph
from orchestrator.settings import DEMO_SECRET
from station_mpu import Mpu, MpuSettings, MpuSettingsError, StationDescription
from station_mpu.app import create_mpu_app

REPO = Path(__file__).resolve().parent.parent
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
NT = "application/n-triples"
CREATED = "2026-12-03T10:00:00Z"
_SEQUENCE = count(1)  # every push a new batch: a greater sequence number than the one before


@pytest.fixture()
def keys(tmp_path: Path) -> StationKeys:
    return StationKeys(tmp_path)


@pytest.fixture()
def world(keys: StationKeys) -> Iterator[tuple[TestClient, EmbeddedStore, dict[str, str]]]:
    store = EmbeddedStore()
    with central(store) as client:
        yield client, store, register(client, keys)


def event_body(event: str, train: str, *, execution: str | None = None, emitter: str = "aachen",
               extra: str = "") -> bytes:
    lines = [f"<{event}> <{RDF_TYPE}> <{PHT}StartedTransmissionEvent> .",
             f'<{event}> <{PHT}eventTime> "2026-11-27T10:00:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime> .',
             f"<{event}> <{PHT}aboutTrain> <{BASE}trains/{train}> .",
             f"<{event}> <{PHT}emittedBy> <{BASE}stations/{emitter}> ."]
    if execution:
        lines.append(f"<{event}> <{PHT}aboutExecution> <{BASE}executions/{execution}> .")
    return ("\n".join(lines) + "\n" + extra).encode()


def push(client: TestClient, keys: StationKeys, body: bytes, *, sid: str = "aachen", signer: str | None = None,
         path_station: str | None = None, batch: str | None = None, headers: dict[str, str] | None = None,
         ) -> httpx.Response:
    """A batch signed as the MPU signs it, with the next sequence number (and a batch id made of it)."""
    sequence = next(_SEQUENCE)
    signed = batch_headers(keys.keys[signer or sid], sid, batch or f"b{sequence}", body, sequence=sequence)
    return client.post(f"/api/stations/{path_station or sid}/metadata", content=body, headers={
        "Authorization": f"Bearer {token_of(sid)}", **signed, **(headers or {})})


# -- the central side --------------------------------------------------------------------------------------


def test_a_signed_batch_lands_in_the_station_graph_and_in_the_trains_events(world: Any, keys: StationKeys,
                                                                             tmp_path: Path) -> None:
    client, store, ids = world
    m = mpu(tmp_path, keys, client)
    m.ingest([{"id": "rej-1", "kind": "rejection", "time": "2026-11-27T10:00:00Z", "train": ids["train"],
               "execution": ids["aachen"], "reason": "No anonymity"}])
    assert m.flush()
    event = f"{BASE}stations/aachen/events/rej-1"
    assert event_subjects(store) == [event]
    listed = client.get(f"/api/trains/{ids['train']}/events", headers=ALICE).json()["items"]
    assert {"event": event, "type": "RejectionEvent", "reason": "No anonymity"}.items() <= next(
        e for e in listed if e["event"] == event).items()
    m.close()


@pytest.mark.parametrize("forgery", ["other key", "altered body", "other station's batch", "unregistered key"])
def test_forged_or_altered_batches_are_refused_and_nothing_is_written(world: Any, keys: StationKeys,
                                                                      forgery: str) -> None:
    client, store, ids = world
    body = event_body(f"{BASE}stations/aachen/events/x1", ids["train"])
    if forgery == "other key":
        r = push(client, keys, body, signer="leipzig")
    elif forgery == "altered body":
        signature = sign_batch(keys.keys["aachen"], "aachen", "b1", body, sequence=1, created=CREATED)
        r = client.post("/api/stations/aachen/metadata", content=body.replace(b"10:00:00", b"11:00:00"), headers={
            "Authorization": f"Bearer {token_of('aachen')}", "Content-Type": NT, "X-PHT-Batch": "b1",
            "X-PHT-Sequence": "1", "X-PHT-Created": CREATED, "X-PHT-Signature": signature})
    elif forgery == "other station's batch":  # aachen's signed batch replayed by leipzig as its own
        signature = sign_batch(keys.keys["aachen"], "aachen", "b1", body, sequence=1, created=CREATED)
        r = client.post("/api/stations/leipzig/metadata", content=body, headers={
            "Authorization": f"Bearer {token_of('leipzig')}", "Content-Type": NT, "X-PHT-Batch": "b1",
            "X-PHT-Sequence": "1", "X-PHT-Created": CREATED, "X-PHT-Signature": signature})
    else:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        keys.keys["aachen"] = Ed25519PrivateKey.generate()
        r = push(client, keys, body)
    assert r.status_code == 401, r.text
    assert "does not verify" in r.json()["detail"]
    assert event_subjects(store) == [] and event_subjects(store, "leipzig") == []


@pytest.mark.parametrize(("headers", "status", "words"), [
    ({"X-PHT-Signature": ""}, 400, "needs the headers"),
    ({"X-PHT-Signature": "not base64!"}, 400, "not base64"),
    ({"X-PHT-Signature": "AAAA"}, 400, "64 bytes"),
    ({"X-PHT-Batch": "no spaces allowed"}, 400, "batch id"),
    ({"X-PHT-Sequence": ""}, 400, "X-PHT-Sequence"),
    ({"X-PHT-Sequence": "-1"}, 400, "X-PHT-Sequence"),
    ({"X-PHT-Sequence": "0"}, 400, "sequence"),
    ({"X-PHT-Created": "yesterday"}, 400, "creation time"),
    ({"Content-Type": "text/turtle"}, 415, "application/n-triples"),
])
def test_malformed_pushes_get_one_sentence(world: Any, keys: StationKeys, headers: dict[str, str], status: int,
                                           words: str) -> None:
    client, store, ids = world
    r = push(client, keys, event_body(f"{BASE}stations/aachen/events/x1", ids["train"]), headers=headers)
    assert r.status_code == status and words in r.json()["detail"], r.text
    assert event_subjects(store) == []


def test_only_the_station_itself_pushes_to_its_graph(world: Any, keys: StationKeys) -> None:
    client, _, ids = world
    body = event_body(f"{BASE}stations/aachen/events/x1", ids["train"])
    r = client.post("/api/stations/aachen/metadata", content=body, headers={
        **station("leipzig"), "Content-Type": NT, "X-PHT-Batch": "b", "X-PHT-Signature": "x"})
    assert r.status_code == 403 and "cannot push metadata of 'aachen'" in r.json()["detail"]
    for who in (OPS, admin("aachen"), ALICE):
        assert client.post("/api/stations/aachen/metadata", content=body, headers={**who, "Content-Type": NT}
                           ).status_code == 403
    r = client.post("/api/stations/nowhere/metadata", content=body, headers={
        **station("nowhere"), "Content-Type": NT, "X-PHT-Batch": "b", "X-PHT-Signature": "x"})
    assert r.status_code == 404 and "no station 'nowhere'" in r.json()["detail"]


@pytest.mark.parametrize(("case", "reason"), [
    ("unknown train", "unknown train"),
    ("foreign subject", "neither an event of station 'aachen'"),
    ("other emitter", "only events it emitted itself"),
    ("not an event class", "typed with pht:Event"),
    ("not an event property", "not an event property"),
    ("foreign execution", "the train"),
    ("other station's dataset", "neither an event"),
    ("other station's variable", "neither an event"),
    ("a variable under another dataset", "a dataset's variables are named under"),
    ("a value of a variable", "a variable is described only by"),
])
def test_triples_that_are_not_the_stations_to_write_are_refused_by_subject(world: Any, keys: StationKeys, case: str,
                                                                           reason: str) -> None:
    client, store, ids = world
    good = f"{BASE}stations/aachen/events/good"
    bad = f"{BASE}stations/aachen/events/bad"
    body = event_body(good, ids["train"], execution=ids["aachen"])
    if case == "unknown train":
        body += event_body(bad, "no-such-train")
    elif case == "foreign subject":
        bad = f"{BASE}stations/leipzig/events/bad"
        body += event_body(bad, ids["train"], emitter="leipzig")
    elif case == "other emitter":
        body += event_body(bad, ids["train"], emitter="leipzig")
    elif case == "not an event class":
        body += f"<{bad}> <{RDF_TYPE}> <{PHT}Train> .\n".encode()
    elif case == "not an event property":
        body += event_body(bad, ids["train"], extra=f'<{bad}> <http://purl.org/dc/terms/title> "x" .\n')
    elif case == "foreign execution":  # leipzig reports about aachen's execution
        body = event_body(bad := f"{BASE}stations/leipzig/events/bad", ids["train"], execution=ids["aachen"],
                          emitter="leipzig")
        r = push(client, keys, body, sid="leipzig")
        assert r.status_code == 422 and r.json()["refused"][0]["subject"] == bad
        assert reason in r.json()["refused"][0]["reason"]
        return
    elif case == "other station's variable":  # aachen describes a variable of leipzig's dataset
        bad = f"{BASE}datasets/leipzig-data/variables/age"
        body += f'<{bad}> <{PHT}variableName> "age" .\n'.encode()
    elif case == "a variable under another dataset":
        bad = f"{BASE}datasets/aachen-data"
        body += f'<{bad}> <{PHT}variable> <{BASE}datasets/leipzig-data/variables/age> .\n'.encode()
    elif case == "a value of a variable":  # names, types, units, code systems leave; values never
        bad = f"{BASE}datasets/aachen-data/variables/age"
        body += f'<{bad}> <{PHT}variableName> "age" .\n<{bad}> <{PHT}value> "42"^^<http://www.w3.org/2001/XMLSchema#decimal> .\n'.encode()
    else:
        bad = f"{BASE}datasets/leipzig-data"
        body += f'<{bad}> <http://purl.org/dc/terms/description> "mine now" .\n'.encode()
    r = push(client, keys, body)
    assert r.status_code == 422, r.text
    refused = r.json()["refused"]
    assert [x["subject"] for x in refused] == [bad] and reason in refused[0]["reason"]
    assert event_subjects(store) == [] and event_subjects(store, "leipzig") == []  # not even the good event


def test_a_batch_the_shapes_refuse_gets_the_report_and_writes_nothing(world: Any, keys: StationKeys) -> None:
    client, store, ids = world
    event = f"{BASE}stations/aachen/events/no-time"
    body = b"\n".join(line for line in event_body(event, ids["train"]).split(b"\n") if b"eventTime" not in line)
    r = push(client, keys, body)
    assert r.status_code == 422
    assert r.json()["report"]["conforms"] is False
    assert r.json()["refused"][0]["subject"] == event and "time" in r.json()["refused"][0]["reason"]
    assert event_subjects(store) == []


def test_pushing_the_same_batch_again_writes_nothing_new(world: Any, keys: StationKeys) -> None:
    client, store, ids = world
    body = event_body(f"{BASE}stations/aachen/events/again", ids["train"])
    assert push(client, keys, body).status_code == 200
    before = event_quads(store)
    assert push(client, keys, body).status_code == 200  # a new batch (sequence, id) with the same events
    assert event_quads(store) == before and len(before) == 4


def test_a_new_description_replaces_the_previous_one(world: Any, keys: StationKeys, tmp_path: Path) -> None:
    client, store, _ = world
    m = mpu(tmp_path, keys, client)
    m.describe(StationDescription(description="first", datasets=[{"id": "aachen-data", "keywords": ["a", "b"]}]))
    assert m.flush()
    m.describe(StationDescription(description="second", datasets=[{"id": "aachen-data", "keywords": ["c"]}]))
    assert m.flush()
    g = station_graph("aachen")
    assert [q.object.value for q in store.quads(NamedNode(f"{BASE}stations/aachen"), None, None, g)] == ["second"]
    assert [q.object.value for q in store.quads(NamedNode(f"{BASE}datasets/aachen-data"), None, None, g)] == ["c"]
    m.close()


def test_a_datasets_variables_reach_the_central_graph_and_a_new_description_replaces_them(
        world: Any, keys: StationKeys, tmp_path: Path) -> None:
    """Names, datatypes, units and code systems leave through the signed push (ontology/variables.ttl); a later
    description of the dataset replaces its variables, so a column the station dropped is no longer claimed."""
    client, store, _ = world
    m = mpu(tmp_path, keys, client)
    m.describe(StationDescription(datasets=[{"id": "aachen-data", "variables": [
        {"name": "age", "datatype": "integer", "unit": "a"},
        {"name": "diagnosis", "datatype": "string", "code_system": "http://snomed.info/sct"}]}]))
    assert m.flush()
    g, dataset = station_graph("aachen"), NamedNode(f"{BASE}datasets/aachen-data")
    age = NamedNode(f"{BASE}datasets/aachen-data/variables/age")
    assert {q.object for q in store.quads(dataset, NamedNode(f"{PHT}variable"), None, g)} == {
        age, NamedNode(f"{BASE}datasets/aachen-data/variables/diagnosis")}
    assert [q.object.value for q in store.quads(age, NamedNode(f"{PHT}variableUnit"), None, g)] == ["a"]
    m.describe(StationDescription(datasets=[{"id": "aachen-data", "variables": [
        {"name": "diagnosis", "datatype": "string"}]}]))
    assert m.flush()
    assert store.quads(age, None, None, g) == []
    assert len(store.quads(dataset, NamedNode(f"{PHT}variable"), None, g)) == 1
    m.close()


# -- delivery: at least once, written once -------------------------------------------------------------------


def test_nothing_acknowledged_is_sent_again(world: Any, keys: StationKeys, tmp_path: Path) -> None:
    client, store, ids = world
    wire = CountingClient(client)
    m = mpu(tmp_path, keys, wire, batch_max_events=7)
    for start in (0, 20, 40):
        m.ingest(events(ids["train"], ids["aachen"], 20, start=start))
        m.ingest(events(ids["train"], ids["aachen"], 20, start=start))  # the agent posts again: a no-op
        assert m.flush()
    assert m.push_once() == (0, False)  # an empty outbox sends nothing
    acknowledged: dict[str, int] = {}
    for body, status in wire.requests:
        assert status == 200
        for t in parse(body, format=RdfFormat.N_TRIPLES):
            if t.predicate.value == RDF_TYPE:
                acknowledged[t.subject.value] = acknowledged.get(t.subject.value, 0) + 1
    assert len(acknowledged) == 60 and set(acknowledged.values()) == {1}, "an acknowledged event was sent again"
    assert len(wire.requests) == 3 * 3  # 20 events in batches of at most 7
    assert sorted(event_subjects(store)) == sorted(acknowledged)
    m.close()


def test_a_lost_acknowledgement_means_sending_again_and_the_graph_holds_each_event_once(
        world: Any, keys: StationKeys, tmp_path: Path) -> None:
    client, store, ids = world
    wire = CountingClient(client)
    wire.lose_next_ack = 1
    m = mpu(tmp_path, keys, wire)
    m.ingest(events(ids["train"], ids["aachen"], 30))
    assert m.flush()
    assert [status for _, status in wire.requests] == [None, 200]  # written, answer lost, sent again
    assert wire.requests[0][0] == wire.requests[1][0]
    subjects = event_subjects(store)
    assert len(subjects) == len(set(subjects)) == 30
    times = store.quads(None, NamedNode(PHT + "eventTime"), None, station_graph("aachen"))
    assert len(times) == 30
    m.close()


def test_while_the_central_service_is_down_the_outbox_grows_and_a_metric_shows_it(world: Any, keys: StationKeys,
                                                                                    tmp_path: Path) -> None:
    client, store, ids = world
    wire = CountingClient(client)
    m = mpu(tmp_path, keys, wire)
    app = create_mpu_app(m, background=False)
    with TestClient(app) as agent:
        wire.down = True
        assert agent.post("/events", json=events(ids["train"], ids["aachen"], 12)).status_code == 202
        assert m.push_once() == (0, True)
        metrics = agent.get("/metrics", headers=METRICS).text
        assert "pht_mpu_outbox_depth 12.0" in metrics
        assert 'pht_mpu_push_failures_total{reason="unreachable"} 1.0' in metrics
        assert agent.get("/status").json()["outbox"]["pending"] == 12
        wire.down = False
        assert m.flush()
        assert "pht_mpu_outbox_depth 0.0" in agent.get("/metrics", headers=METRICS).text
        assert "pht_mpu_pushed_events_total 12.0" in agent.get("/metrics", headers=METRICS).text
    assert len(event_subjects(store)) == 12
    m.close()


def test_refused_events_are_set_aside_with_the_reason_and_the_rest_is_delivered(world: Any, keys: StationKeys,
                                                                                tmp_path: Path) -> None:
    client, store, ids = world
    m = mpu(tmp_path, keys, client)
    m.ingest(events(ids["train"], ids["aachen"], 5) + [
        {"id": "ghost", "kind": "started-running", "time": "2026-11-27T10:00:00Z", "train": "ghost-train"}])
    assert m.flush()
    assert len(event_subjects(store)) == 5
    status = m.status()
    assert status["outbox"] == {"pending": 0, "delivered": 5, "refused": 1, "oldest_pending_age_s": 0.0}
    (refusal,) = status["refused"]
    assert refusal["event"].endswith("/events/ghost") and "unknown train" in refusal["reason"]
    m.close()


def test_a_refusal_that_names_no_event_is_resolved_one_event_at_a_time(keys: StationKeys, tmp_path: Path) -> None:
    seen: list[int] = []

    def central_side(request: httpx.Request) -> httpx.Response:
        seen.append(request.content.count(b"\n"))
        if b"/events/ev-3>" in request.content:
            return httpx.Response(422, json={"detail": "something in there is wrong"})
        return httpx.Response(200, json={})

    m = mpu(tmp_path, keys, httpx.Client(transport=httpx.MockTransport(central_side)))
    m.ingest(events("t1", "t1.r1-s0", 6))
    assert m.flush()
    assert m.outbox.counts() == {"pending": 0, "delivered": 5, "refused": 1}
    assert m.outbox.refusals()[0][1] == "HTTP 422: something in there is wrong"
    m.close()


def test_a_batch_too_large_for_the_central_service_is_split(keys: StationKeys, tmp_path: Path) -> None:
    sizes: list[int] = []

    def central_side(request: httpx.Request) -> httpx.Response:
        n = request.content.count(b"rdf-syntax-ns#type")
        sizes.append(n)
        return httpx.Response(413 if n > 4 else 200, json={"detail": "too large"})

    m = mpu(tmp_path, keys, httpx.Client(transport=httpx.MockTransport(central_side)))
    m.ingest(events("t1", "t1.r1-s0", 12))
    assert m.flush()
    assert sizes[:3] == [12, 6, 3] and m.outbox.counts()["delivered"] == 12
    m.close()


# -- a real central service stopped and started again ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service_process(store: Path, port: int, log: Path) -> Iterator[str]:
    """``python -m orchestrator`` on an on-disk store; stopped with SIGTERM (the lifespan closes the store)."""
    env = {**os.environ, "PHT_DEMO": "1", "PHT_JWT_SECRET": DEMO_SECRET, "PHT_STORE_PATH": str(store),
           "PHT_HOST": "127.0.0.1", "PHT_PORT": str(port), "PHT_LOG_LEVEL": "warning",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "orchestrator"], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"the service exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the service did not start: {log.read_text()[-2000:]}"
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(condition: Any, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_central_service_stopped_events_produced_restarted_every_event_exactly_once(keys: StationKeys,
                                                                                    tmp_path: Path) -> None:
    store_dir, port, log = tmp_path / "store", free_port(), tmp_path / "service.log"
    settings = mpu_settings(tmp_path, keys, central=f"http://127.0.0.1:{port}", max_backoff_s=0.2,
                            push_timeout_s=2.0)
    m = Mpu(settings)
    with TestClient(create_mpu_app(m)) as agent:  # the MPU's threads run: it pushes by itself
        with service_process(store_dir, port, log) as url:
            with httpx.Client(base_url=url) as client:
                ids = register(client, keys)
            first = events(ids["train"], ids["aachen"], 40)
            assert agent.post("/events", json=first).status_code == 202
            assert wait_for(lambda: m.outbox.depth() == 0), "the first events were not delivered"
        # the central service is down now
        second = events(ids["train"], ids["aachen"], 60, start=40)
        for chunk in (second[:30], second[30:]):
            assert agent.post("/events", json=chunk).status_code == 202
        assert wait_for(lambda: 'pht_mpu_push_failures_total{reason="unreachable"}' in agent.get("/metrics", headers=METRICS).text)
        assert m.outbox.depth() == 60
        assert "pht_mpu_outbox_depth 60.0" in agent.get("/metrics", headers=METRICS).text
        with service_process(store_dir, port, log):
            assert wait_for(lambda: m.outbox.depth() == 0), "the queued events were not delivered after the restart"
    m.close()
    with EmbeddedStore(store_dir) as store:
        subjects = event_subjects(store)
        assert len(subjects) == len(set(subjects)) == 100
        assert {s.rsplit("/", 1)[-1] for s in subjects} == {f"ev-{i}" for i in range(100)}
        assert len(store.quads(None, NamedNode(PHT + "eventTime"), None, station_graph("aachen"))) == 100


# -- the disk ---------------------------------------------------------------------------------------------------


def test_a_full_outbox_refuses_the_post_with_507_and_the_mpu_keeps_running(keys: StationKeys,
                                                                           tmp_path: Path) -> None:
    m = Mpu(mpu_settings(tmp_path, keys, central=None, outbox_max_bytes=300_000))
    with TestClient(create_mpu_app(m, background=False)) as agent:
        answers = [agent.post("/events", json=[{**e, "reason": "x" * 3000} if e["kind"] == "rejection" else e
                                               for e in events("t1", "t1.r1-s0", 30, start=30 * i)])
                   for i in range(20)]
        statuses = [a.status_code for a in answers]
        assert statuses[0] == 202 and 507 in statuses, statuses
        full = answers[statuses.index(507)].json()["detail"]
        assert "full" in full and "nothing of this post was stored" in full
        assert 'pht_mpu_outbox_write_failures_total{reason="disk_full"}' in agent.get("/metrics", headers=METRICS).text
        assert agent.get("/health").status_code == 200
        queued = m.outbox.depth()
        assert queued == 30 * statuses.index(507)  # every accepted post is there in full, no refused one
    m.close()


def test_pushing_needs_a_key_and_a_token() -> None:
    with pytest.raises(MpuSettingsError, match="needs the station's private key"):
        MpuSettings(station_id="aachen", central_url="http://central:8080", token="t")
    with pytest.raises(MpuSettingsError, match="needs a station token"):
        MpuSettings(station_id="aachen", central_url="http://central:8080", private_key_path=Path("k.pem"))
    with pytest.raises(MpuSettingsError, match="PHT_MPU_STATION"):
        MpuSettings(station_id="bad id!")


# -- the central service's metrics ------------------------------------------------------------------------------


def test_central_metrics_count_trains_steps_and_latency_by_route_template(world: Any, keys: StationKeys) -> None:
    client, store, ids = world
    text = client.get("/metrics", headers=OPS).text
    assert 'pht_trains{state="queued"} 1.0' in text and 'pht_trains{state="finished"} 0.0' in text
    assert 'pht_executions{state="queued"} 1.0' in text and "pht_store_up 1.0" in text
    central = "https://w3id.org/pht-kg/graph/central"
    assert f'pht_store_triples{{graph="{central}"}} {len(list(store.quads(None, None, None, NamedNode(central))))}.0' in text
    r = client.post(f"/api/executions/{ids['aachen']}/steps", headers=station("aachen"),
                    json={"to": "waiting-for-approval"})
    assert r.status_code == 200, r.text
    client.get(f"/api/trains/{ids['train']}", headers=ALICE)
    client.get(f"/api/trains/{new_train(client)['train']}", headers=ALICE)
    assert push(client, keys, event_body(f"{BASE}stations/aachen/events/m1", ids["train"])).status_code == 200
    time.sleep(5.1)  # the state gauges are cached for 5 s
    text = client.get("/metrics", headers=OPS).text
    assert 'pht_lifecycle_steps_total{kind="execution",to="waiting-for-approval"} 1.0' in text
    assert 'pht_lifecycle_steps_total{kind="train",to="running"} 1.0' in text
    assert 'pht_trains{state="running"} 1.0' in text
    assert ('pht_http_request_duration_seconds_count{method="GET",route="/api/trains/{train_id}",status="200"} 2.0'
            in text)
    assert ids["train"] not in text  # no per-train series
    assert 'pht_metadata_batches_total{outcome="accepted",station="aachen"} 1.0' in text
    assert 'pht_metadata_triples_total{station="aachen"} 4.0' in text


def test_a_really_full_disk_is_a_507_too(tmp_path: Path) -> None:
    """The quota above stands in for a full disk; here a real one (a 256 KiB tmpfs, where mounting is allowed)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root and the mount capability")
    try:
        m = Mpu(MpuSettings(station_id="aachen", data_dir=mount / "mpu", sample_interval_s=0))
        with TestClient(create_mpu_app(m, background=False)) as agent:
            statuses = [agent.post("/events", json=[{**e, "reason": "x" * 2000} if e["kind"] == "rejection" else e
                                                    for e in events("t1", "t1.r1-s0", 30, start=30 * i)]).status_code
                        for i in range(30)]
            assert 507 in statuses, statuses
            assert agent.get("/health").status_code == 200
            assert m.outbox.depth() == 30 * statuses.count(202)
        m.close()
    finally:
        subprocess.run(["umount", str(mount)], check=False)

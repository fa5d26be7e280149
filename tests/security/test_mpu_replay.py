"""Signed MPU batches cannot be replayed, nor sent after a newer one; the outbox still never loses a batch.

Before: a batch was signed over the station, its id and its body only, and the central service recorded nothing
of it, so anyone holding a captured batch (a proxy, a log of requests) could send it again at any time: an
older description replayed after a newer one rolled the station's description back. Now every batch carries a
sequence number and its creation time under the signature, the central service keeps the last accepted
sequence per station in the graph (written in the same atomic write as the batch) and answers 409 to a batch
whose sequence is not greater; the MPU numbers its batches on, also across restarts, and a lost acknowledgement
or a crash between send and acknowledgement still delivers everything exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from mpu_helpers import BASE, StationKeys, central, event_subjects, events, mpu, register
from pyoxigraph import NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, EmbeddedStore, station_graph
from station_mpu import StationDescription

STATION = NamedNode(f"{BASE}stations/aachen")


class Recorder(httpx.Client):
    """Forwards the MPU's pushes to the central service (a TestClient) and keeps each request as sent."""

    def __init__(self, target: TestClient) -> None:
        super().__init__(base_url="http://testserver")
        self.target = target
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []
        self.lose_answers = 0
        self.deliver_twice = False

    def post(self, url: Any, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        self.sent.append((str(url), kwargs["content"], dict(kwargs["headers"])))
        response = self.target.post(url, **kwargs)
        if self.deliver_twice:  # a proxy that sends the request on twice, and returns the second answer
            response = self.target.post(url, **kwargs)
        if self.lose_answers and response.status_code < 300:
            self.lose_answers -= 1
            raise httpx.ReadError("connection reset before the answer arrived")
        return response

    def replay(self, index: int) -> httpx.Response:
        """Send a captured request again, byte for byte (the attacker's move)."""
        url, body, headers = self.sent[index]
        return self.target.post(url, content=body, headers=headers)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[tuple[TestClient, EmbeddedStore, dict[str, str], StationKeys]]:
    keys = StationKeys(tmp_path)
    store = EmbeddedStore()
    with central(store) as client:
        yield client, store, register(client, keys), keys


def graph(store: EmbeddedStore) -> set[Quad]:
    return set(store.quads(g=station_graph("aachen"))) | set(store.quads(g=CENTRAL_GRAPH))


def description(store: EmbeddedStore) -> list[str]:
    return [q.object.value for q in store.quads(STATION, None, None, station_graph("aachen"))]


def test_a_replayed_or_older_batch_is_refused_and_writes_nothing(world: Any, tmp_path: Path) -> None:
    client, store, _, keys = world
    wire = Recorder(client)
    m = mpu(tmp_path, keys, wire)
    m.describe(StationDescription(description="first: oncology data of 2019"))
    assert m.flush()
    m.describe(StationDescription(description="second: oncology data of 2019-2026"))
    assert m.flush()
    assert description(store) == ["second: oncology data of 2019-2026"]
    before = graph(store)

    again = wire.replay(1)  # the newest batch, sent again
    assert again.status_code == 409, again.text
    assert again.json()["already_accepted"] is True and "already accepted" in again.json()["detail"]
    older = wire.replay(0)  # the older batch after the newer: a rollback
    assert older.status_code == 409, older.text
    assert older.json()["already_accepted"] is False and "not greater" in older.json()["detail"]
    assert "\n" not in older.json()["detail"]
    assert graph(store) == before and description(store) == ["second: oncology data of 2019-2026"]

    m.describe(StationDescription(description="third"))  # the station keeps pushing
    assert m.flush() and description(store) == ["third"]
    m.close()


def test_the_sequence_and_the_time_are_under_the_signature(world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    wire = Recorder(client)
    m = mpu(tmp_path, keys, wire)
    m.ingest(events(ids["train"], ids["aachen"], 3))
    assert m.flush()
    m.close()
    url, body, headers = wire.sent[0]
    before = graph(store)
    for name, value in (("X-PHT-Sequence", str(10**12)), ("X-PHT-Created", "2030-01-01T00:00:00Z")):
        r = client.post(url, content=body, headers={**headers, name: value})  # a replay made to look new
        assert r.status_code == 401 and "does not verify" in r.json()["detail"], r.text
    assert graph(store) == before


def test_the_receipt_is_written_with_the_batch(world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    wire = Recorder(client)
    m = mpu(tmp_path, keys, wire)
    for start in (0, 3):
        m.ingest(events(ids["train"], ids["aachen"], 3, start=start))
        assert m.flush()
    m.close()
    station_graph = NamedNode("https://w3id.org/pht-kg/graph/station/aachen")
    receipts = {q.subject for q in store.quads(None, PHT.receiptOf, STATION, station_graph)}
    assert len(receipts) == len(wire.sent) == 2  # one per accepted batch, never replaced
    for _, _, headers in wire.sent:
        receipt = NamedNode(f"{STATION.value}/batches/{headers['X-PHT-Sequence']}")
        assert receipt in receipts
        assert [q.object.value for q in store.quads(receipt, PHT.batchId, None, station_graph)] == [
            headers["X-PHT-Batch"]]
    assert not store.quads(None, PHT.receiptOf, None, CENTRAL_GRAPH)  # the central graph holds none


def test_an_mpu_restart_continues_the_sequence(world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    wire = Recorder(client)
    first = mpu(tmp_path, keys, wire)
    first.ingest(events(ids["train"], ids["aachen"], 3))
    assert first.flush()
    first.close()
    second = mpu(tmp_path, keys, wire)  # the same data directory: the same outbox
    second.ingest(events(ids["train"], ids["aachen"], 3, start=3))
    assert second.flush()
    second.close()
    numbers = [int(headers["X-PHT-Sequence"]) for _, _, headers in wire.sent]
    assert len(numbers) == 2 and numbers[1] > numbers[0]
    assert len(event_subjects(store)) == 6


def test_a_crash_between_send_and_acknowledgement_loses_nothing_and_writes_each_event_once(
        world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    wire = Recorder(client)
    wire.lose_answers = 1  # the central service writes the batch; the MPU never hears so
    crashed = mpu(tmp_path, keys, wire)
    crashed.ingest(events(ids["train"], ids["aachen"], 30))
    assert crashed.push_once() == (0, True)
    assert crashed.outbox.depth() == 30  # not acknowledged: still queued
    crashed.close()  # the MPU stops before it tries again
    restarted = mpu(tmp_path, keys, wire)
    assert restarted.flush() and restarted.outbox.depth() == 0
    restarted.close()
    subjects = event_subjects(store)
    assert len(subjects) == len(set(subjects)) == 30
    assert len(wire.sent) == 2  # the batch, and the same events again in a newer batch


def test_a_batch_refused_as_already_accepted_counts_as_delivered(world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    wire = Recorder(client)
    wire.deliver_twice = True  # the first copy is written, the second is refused as a replay of it
    m = mpu(tmp_path, keys, wire)
    m.ingest(events(ids["train"], ids["aachen"], 5))
    assert m.push_once() == (5, False)  # delivered: not retried for ever
    assert m.outbox.depth() == 0 and m.outbox.counts()["refused"] == 0
    m.close()


def test_an_outbox_that_starts_numbering_again_catches_up_and_delivers(world: Any, tmp_path: Path) -> None:
    client, store, ids, keys = world
    old = mpu(tmp_path / "old", keys, Recorder(client))
    for start in (0, 3, 6):
        old.ingest(events(ids["train"], ids["aachen"], 3, start=start))
        assert old.flush()
    old.close()
    wire = Recorder(client)
    fresh = mpu(tmp_path / "new", keys, wire)  # a lost data directory: the numbering starts at 1 again
    fresh.ingest(events(ids["train"], ids["aachen"], 3, start=9))
    assert fresh.flush() and fresh.outbox.depth() == 0
    fresh.close()
    assert len(wire.sent) == 2  # refused as older once, then signed above the central service's last sequence

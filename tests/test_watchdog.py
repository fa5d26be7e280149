"""A station that goes away mid-route: the train waits, then fails with a reason naming the station."""

from __future__ import annotations

import dataclasses
import time

import pytest
from central_store import new_central_store
from api_helpers import ALICE, SETTINGS, admin, register_world, signed, station
from fastapi.testclient import TestClient

from orchestrator.app import create_app

pytestmark = pytest.mark.central_stores


def test_a_train_whose_next_station_never_comes_fails_naming_that_station() -> None:
    settings = dataclasses.replace(SETTINGS, station_timeout_s=1.0)
    with TestClient(create_app(settings, store=new_central_store())) as client:
        register_world(client)
        tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}})).json()["id"]
        eid = f"{tid}.r1-s0"
        for to, who in (("approved", station), ("pulling", station), ("running", station)):
            assert client.post(f"/api/executions/{eid}/steps", headers=who("aachen"), json={"to": to}).status_code == 200
        assert client.post(f"/api/executions/{eid}/outputs", headers=station("aachen"),
                           json={"sha256": "2" * 64, "byte_size": 1}).status_code == 201
        for to, who in (("output-under-review", station), ("released", admin)):
            assert client.post(f"/api/executions/{eid}/steps", headers=who("aachen"), json={"to": to}).status_code == 200
        # aachen is done; leipzig never polls
        assert client.get(f"/api/trains/{tid}", headers=ALICE).json()["state"] == "queued", "it waits first"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and client.get(f"/api/trains/{tid}", headers=ALICE).json()["state"] != "failed":
            time.sleep(0.2)
        train = client.get(f"/api/trains/{tid}", headers=ALICE).json()
        assert train["state"] == "failed"
        assert [e["state"] for e in train["executions"]] == ["released", "failed"]
        events = client.get(f"/api/trains/{tid}/events", headers=ALICE, params={"limit": 500}).json()["items"]
        reasons = [e["reason"] for e in events if e["to_state"] == "failed" and e["execution"]]
        assert reasons and "station leipzig" in reasons[0] and "offline" in reasons[0]


def test_waiting_for_a_person_never_expires() -> None:
    settings = dataclasses.replace(SETTINGS, station_timeout_s=0.5)
    with TestClient(create_app(settings, store=new_central_store())) as client:
        register_world(client)
        tid = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "5"}})).json()["id"]
        assert client.post(f"/api/executions/{tid}.r1-s0/steps", headers=station("aachen"),
                           json={"to": "waiting-for-approval"}).status_code == 200
        time.sleep(2.0)
        assert client.get(f"/api/trains/{tid}", headers=ALICE).json()["executions"][0]["state"] == "waiting-for-approval"

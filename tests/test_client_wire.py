"""The station <-> central wire (``client/wire.py``): one definition both sides use, and the client's calls send
and accept exactly those bodies (an in-process fake of the central service records what was sent)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import client
from client import CentralClient, CheckIn, ClientError, WorkItem
from orchestrator.api import models

ITEM: dict[str, Any] = {
    "execution": "t1.r1-s0", "state": "queued", "train": "t1", "round": 1, "stop": 0,
    "image_name": "pht-trains/count:1", "image_digest": "sha256:" + "a" * 64, "entrypoint": None,
    "inputs": ["https://example.org/outputs/o1"], "input_digests": ["b" * 64],
    "requester": "https://example.org/agents/alice", "definition": "count", "parameters": {"MIN": "3"},
}


class FakeCentral:
    """Answers every request with ``answer`` and keeps (method, path, JSON body) of each."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.sent: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path, json.loads(request.content) if request.content else None))
        return httpx.Response(200, json=self.answer)

    def client(self) -> CentralClient:
        return CentralClient("http://central.test", "token", transport=httpx.MockTransport(self))


def test_the_server_and_the_client_share_one_definition() -> None:
    for name in ("WorkItem", "StepIn", "StepOut", "CheckIn", "OutputIn", "LeaseIn", "LeaseOut"):
        assert getattr(models, name) is getattr(client, name), name


def test_work_items_are_validated_work_item_models() -> None:
    central = FakeCentral([ITEM])
    with central.client() as c:
        [work] = c.work("aachen")
    assert isinstance(work, WorkItem)
    assert work == WorkItem(**ITEM)
    assert (work.execution, work.stop, work.input_digests, work.parameters) == ("t1.r1-s0", 0, ["b" * 64], {"MIN": "3"})
    assert central.sent == [("GET", "/api/stations/aachen/work", None)]


def test_a_malformed_work_item_is_one_sentence_not_a_traceback() -> None:
    broken = {k: v for k, v in ITEM.items() if k != "image_digest"} | {"round": "first"}
    with FakeCentral([ITEM, broken]).client() as c, pytest.raises(ClientError) as e:
        c.work("aachen")
    message = str(e.value)
    assert message.startswith("the central service answered GET /api/stations/aachen/work with a malformed work "
                              "item (item 1, "), message
    assert "\n" not in message and "round" in message and "1 more" in message, message


def test_the_station_bodies_are_the_wire_models_dumped() -> None:
    central = FakeCentral({"execution": "t1.r1-s0", "state": "running", "station": "aachen", "holder": "me",
                           "expires": "2030-01-01T00:00:00Z", "held": True})
    check = {"name": "file-listing", "passed": True, "detail": "1 file"}
    with central.client() as c:
        assert c.step("t1.r1-s0", "running", reason="go", used=("aachen-data",)) == "running"
        c.add_output("t1.r1-s0", sha256="c" * 64, byte_size=10, title="output", checks=[check, CheckIn(**check)])
        assert c.take_lease("aachen", "me", 30)["held"] is True
    assert central.sent == [
        ("POST", "/api/executions/t1.r1-s0/steps", {"to": "running", "reason": "go", "used": ["aachen-data"]}),
        ("POST", "/api/executions/t1.r1-s0/outputs",
         {"sha256": "c" * 64, "byte_size": 10, "title": "output", "checks": [check, check]}),
        ("PUT", "/api/stations/aachen/lease", {"holder": "me", "period_s": 30.0}),
    ]


@pytest.mark.parametrize("call", [
    lambda c: c.step("t1.r1-s0", "Not A State"),
    lambda c: c.add_output("t1.r1-s0", sha256="not hex", byte_size=10),
    lambda c: c.add_output("t1.r1-s0", sha256="c" * 64, byte_size=10, checks=[{"name": "x", "passed": True}]),
    lambda c: c.take_lease("aachen", "", 30),
])
def test_a_body_the_service_would_refuse_is_not_sent(call: Any) -> None:
    central = FakeCentral({})
    with central.client() as c, pytest.raises(ClientError) as e:
        call(c)
    assert "was not sent: it is invalid (" in str(e.value) and e.value.status is None, str(e.value)
    assert central.sent == []

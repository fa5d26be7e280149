"""The definitions list's order and pages (``orchestrator/list_positions.py``, ``reads.py``): every definition once,
newest first by list position then identifier, through keyset pages found by a window of positions, short or
empty pages included; a registration takes the newest position and one; start-up numbers the rest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from api_helpers import ALICE, DIGEST, OPS, SETTINGS, service
from fastapi.testclient import TestClient
from page_helpers import ids, token_of
from page_helpers import follow as follow_pages
from pyoxigraph import Literal, NamedNode, Quad

from client.train_request import DefinitionSpec, definition_triples
from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, PROV, XSD, ChangeSet, GraphStore
from orchestrator.api.deps import Services
from orchestrator.app import create_app
from orchestrator.list_positions import DEFINITIONS, newest_position, position_literal
from orchestrator.page_tokens import ListKey, encode

WORLD = [(2, "fedavg"), (1, "count")]
"""The definitions the test service registers (``api_helpers.register_world``), as (position, id)."""


def services(client: TestClient) -> Services:
    s: Services = client.app.state.services  # type: ignore[attr-defined]
    return s


def definition_quads(s: Services, *, number: int, position: int | None, identified: bool = True) -> list[Quad]:
    """A valid definition written by hand: ``d-<number>`` (zero-padded, so ids sort as numbers do)."""
    spec = DefinitionSpec(id=f"d-{number:05d}", title=f"definition {number}", image_name="pht/count",
                          image_digest=DIGEST, mode="incremental", route=("aachen",))
    d = s.lifecycle.iris.definition(spec.id)
    created = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=number)
    quads = [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in definition_triples(s.lifecycle.iris, spec)
             if identified or t.predicate != DCTERMS.identifier]
    quads += [Quad(d, DCTERMS.created, Literal(created.isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime),
                   CENTRAL_GRAPH), Quad(d, PROV.wasAttributedTo, s.lifecycle.iris.agent("alice"), CENTRAL_GRAPH)]
    if position is not None:
        quads.append(Quad(d, PHT.definitionListPosition, position_literal(position), CENTRAL_GRAPH))
    return quads


@pytest.fixture(scope="module")
def many() -> Iterator[tuple[TestClient, list[tuple[int, str]]]]:
    """A service whose store holds 700 more definitions written in one change set: positions 3..702 but three
    share position 400 (two replicas registering at once), those at positions 101..250 have no identifier (a
    stretch of the list with nothing to show). Also the expected list: (position, id), in the list's order."""
    with service() as client:
        s = services(client)
        quads: list[Quad] = []
        listed = list(WORLD)
        for number in range(3, 703):
            position = 400 if number in (401, 402) else number
            identified = not 101 <= number <= 250
            quads += definition_quads(s, number=number, position=position, identified=identified)
            if identified:
                listed.append((position, f"d-{number:05d}"))
        s.store.apply(ChangeSet(insert=quads))
        listed.sort(key=lambda row: (-row[0], row[1]))
        yield client, listed


def follow(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    """Every page of ``GET /api/definitions`` as Alice sees it."""
    return follow_pages(client, "/api/definitions", ALICE, **params)

@pytest.mark.parametrize("limit", [500, 60, 7])
def test_every_definition_is_listed_once_newest_first(many: tuple[TestClient, list[tuple[int, str]]],
                                                       limit: int) -> None:
    client, listed = many
    pages = follow(client, limit=limit)
    assert ids(pages) == [d[1] for d in listed]  # each once, newest first, equal positions by identifier
    assert pages[0]["total"] == 702  # the total counts the unidentified ones
    # the first page: the listed ones of a window of limit + 1 positions (short when it reaches 101..250)
    assert ids(pages[:1]) == [d[1] for d in listed if d[0] > 702 - (limit + 1)][:limit]
    assert len(pages[0]["items"]) == (limit if limit < 450 else 452)
    assert all(len(page["items"]) <= limit for page in pages)
    # positions 101..250 hold no listed definition: a window there gives an empty page, which still leads on
    assert any(not page["items"] and page["next"] for page in pages) == (limit < 150)
    assert {"title", "mode", "rounds", "image_digest", "stops"} <= set(pages[0]["items"][0])


def test_a_page_boundary_between_equal_positions_loses_and_repeats_none(
        many: tuple[TestClient, list[tuple[int, str]]]) -> None:
    client, _ = many
    after, seen = encode(ListKey(400, "d-00400")), []  # three definitions share position 400 (racing replicas)
    for _ in range(3):
        body = client.get("/api/definitions", headers=ALICE, params={"limit": 1, "after": after}).json()
        seen += [d["id"] for d in body["items"]]
        after = body["next"]
    assert seen == ["d-00401", "d-00402", "d-00399"]


def test_a_token_the_service_did_not_hand_out_is_refused_with_one_sentence(
        many: tuple[TestClient, list[tuple[int, str]]]) -> None:
    client, _ = many
    # the list by identifier's tokens (one identifier), a negative or oversized position, a number for the id
    for parts in (["d-00005"], ["-1", ""], [str(2**63), ""], ["12", 5]):
        r = client.get("/api/definitions", headers=ALICE, params={"after": token_of(parts)})
        assert r.status_code == 422 and "page token" in r.json()["detail"], parts


def test_a_registered_definition_takes_the_newest_position_and_one() -> None:
    with service() as client:
        s = services(client)
        s.store.apply(ChangeSet(insert=definition_quads(s, number=9, position=41)))
        body = {"title": "new", "image_name": "pht/count", "image_digest": DIGEST, "mode": "incremental",
                "route": ["aachen"]}
        first = client.post("/api/definitions", headers=ALICE, json={"id": "zz-first", **body})
        second = client.post("/api/definitions", headers=ALICE, json={"id": "aa-second", **body})
        again = client.post("/api/definitions", headers=ALICE, json={"id": "zz-first", **body})
        assert first.status_code == second.status_code == 201 and again.status_code == 200, again.text
        positions = [position_of(s.store, s.lifecycle.iris.definition(d)) for d in ("zz-first", "aa-second")]
        assert positions == [42, 43] and newest_position(s.store, DEFINITIONS) == 43  # the same again: no new one
        listed = client.get("/api/definitions", headers=ALICE, params={"limit": 3}).json()["items"]
        assert [d["id"] for d in listed] == ["aa-second", "zz-first", "d-00009"]


def position_of(store: GraphStore, definition: NamedNode) -> int:
    (quad,) = store.quads(definition, PHT.definitionListPosition, None, CENTRAL_GRAPH)
    assert isinstance(quad.object, Literal)
    return int(quad.object.value)


def test_start_up_numbers_the_definitions_without_a_position_oldest_first_above_the_newest() -> None:
    with service() as client:
        s = services(client)
        store = s.store
        quads = definition_quads(s, number=5, position=10)
        for number in (3, 1, 2):  # registered before positions existed: no position
            quads += definition_quads(s, number=number, position=None)
        store.apply(ChangeSet(insert=quads))
        assert [d["id"] for d in client.get("/api/definitions", headers=ALICE).json()["items"]] == [
            "d-00005", "fedavg", "count"]
    with TestClient(create_app(SETTINGS, store=store)) as again:  # the next start-up
        listed = again.get("/api/definitions", headers=OPS).json()["items"]
        assert [d["id"] for d in listed] == ["d-00003", "d-00002", "d-00001", "d-00005", "fedavg", "count"]
        assert [position_of(store, s.lifecycle.iris.definition(f"d-0000{n}")) for n in (1, 2, 3)] == [11, 12, 13]

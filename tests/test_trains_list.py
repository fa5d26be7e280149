"""The trains list's order and pages (``orchestrator/list_positions.py``, ``reads.py``): every train once, newest
first by list position then identifier, through keyset pages an operator's list finds by a window of positions,
short or empty pages included; a submission takes the newest position and one; start-up numbers the rest."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from api_helpers import ALICE, BOB, OPS, SETTINGS, service, signed
from fastapi.testclient import TestClient
from page_helpers import ids, token_of
from page_helpers import follow as follow_pages
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, PROV, RDF_TYPE, XSD, ChangeSet, GraphStore
from orchestrator import reads
from orchestrator.api.deps import Services
from orchestrator.app import create_app
from orchestrator.list_positions import TRAINS, newest_position, position_literal
from orchestrator.page_tokens import ListKey, decode, encode

STATES = {"queued": PHT.Queued, "cancelled": PHT.Cancelled, "finished": PHT.Finished}


def services(client: TestClient) -> Services:
    s: Services = client.app.state.services  # type: ignore[attr-defined]
    return s


def train_quads(s: Services, *, number: int, position: int | None, state: str = "finished",
                requester: str = "alice", identified: bool = True) -> list[Quad]:
    """A valid train written by hand: ``t-<number>`` (zero-padded, so ids sort as numbers do)."""
    train = s.lifecycle.iris.train(f"t-{number:05d}")
    created = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=number)
    quads = [Quad(train, RDF_TYPE, PHT.Train, CENTRAL_GRAPH),
             Quad(train, PHT.definition, s.lifecycle.iris.definition("count"), CENTRAL_GRAPH),
             Quad(train, PROV.wasAttributedTo, s.lifecycle.iris.agent(requester), CENTRAL_GRAPH),
             Quad(train, PHT.state, STATES[state], CENTRAL_GRAPH),
             Quad(train, DCTERMS.created, Literal(created.isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime),
                  CENTRAL_GRAPH)]
    if identified:
        quads.append(Quad(train, DCTERMS.identifier, Literal(f"t-{number:05d}"), CENTRAL_GRAPH))
    if position is not None:
        quads.append(Quad(train, PHT.listPosition, position_literal(position), CENTRAL_GRAPH))
    return quads


@pytest.fixture(scope="module")
def many() -> Iterator[tuple[TestClient, list[tuple[int, str, str, str]]]]:
    """A service whose store holds 1,300 trains written in one change set: positions 1..1,300 but three trains
    share position 700 (two replicas submitting at once), the trains at positions 301..500 have no identifier (a
    stretch of the list with nothing to show), every 97th is cancelled (a rare state), Bob's every 5th. Also the
    expected list: (position, id, state, requester) of the listed trains, in the list's order."""
    with service() as client:
        s = services(client)
        quads: list[Quad] = []
        listed: list[tuple[int, str, str, str]] = []
        for number in range(1, 1301):
            position = 700 if number in (701, 702) else number
            state = "cancelled" if number % 97 == 0 else "finished"
            requester = "bob" if number % 5 == 0 else "alice"
            identified = not 301 <= number <= 500
            quads += train_quads(s, number=number, position=position, state=state, requester=requester,
                                 identified=identified)
            if identified:
                listed.append((position, f"t-{number:05d}", state, requester))
        s.store.apply(ChangeSet(insert=quads))
        listed.sort(key=lambda row: (-row[0], row[1]))
        yield client, listed


def follow(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of ``GET /api/trains`` as ``headers``' caller sees it."""
    return follow_pages(client, "/api/trains", headers, **params)

@pytest.mark.parametrize("limit", [500, 100, 7])
def test_an_operator_pages_through_every_train_once_in_position_order(
        many: tuple[TestClient, list[tuple[int, str, str, str]]], limit: int) -> None:
    client, listed = many
    pages = follow(client, OPS, limit=limit)
    assert ids(pages) == [t[1] for t in listed]  # each once, newest first, equal positions by identifier
    assert pages[0]["total"] == 1300 and len(pages[0]["items"]) == limit  # the total counts unidentified ones
    assert all(len(page["items"]) <= limit for page in pages)
    # positions 301..500 hold no listed train: a window there gives an empty page, which still leads on
    assert any(not page["items"] and page["next"] for page in pages) == (limit < 200)


@pytest.mark.parametrize("state", ["cancelled", "finished"])
def test_a_state_filter_reaches_every_matching_train_though_pages_may_be_short(
        many: tuple[TestClient, list[tuple[int, str, str, str]]], state: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client, listed = many
    monkeypatch.setattr(reads, "FILTERED_WINDOW", 150)  # windows smaller than the list: many short pages
    pages = follow(client, OPS, limit=50, state=state)
    expected = [t[1] for t in listed if t[2] == state]
    assert ids(pages) == expected and {t["state"] for page in pages for t in page["items"]} == {state}
    assert len(pages) >= 1300 // 150  # the windows go down to the oldest train, and stop there
    in_state = sum(1 for n in range(1, 1301) if (n % 97 == 0) == (state == "cancelled"))
    assert pages[0]["total"] == in_state  # the total counts the unidentified ones too (trains_count.rq)


def test_a_researcher_pages_through_their_own_trains_in_the_same_order(
        many: tuple[TestClient, list[tuple[int, str, str, str]]]) -> None:
    client, listed = many
    assert ids(follow(client, BOB, limit=40)) == [t[1] for t in listed if t[3] == "bob"]
    token = client.get("/api/trains", headers=OPS, params={"limit": 3}).json()["next"]
    theirs = client.get("/api/trains", headers=BOB, params={"limit": 3, "after": token})
    assert theirs.status_code == 200  # a token of either list works with the other
    key = decode(token)
    assert [t["id"] for t in theirs.json()["items"]] == [
        t[1] for t in listed if t[3] == "bob" and (t[0] < key.position or (t[0] == key.position and t[1] > key.id))][:3]


def test_the_web_view_leads_on_from_an_empty_page(many: tuple[TestClient, list[tuple[int, str, str, str]]]) -> None:
    client, _ = many
    pages = follow(client, OPS, limit=100)
    empty = next(i for i, page in enumerate(pages) if not page["items"])
    page = client.get("/ui/trains", headers=OPS, params={"limit": 100, "after": pages[empty - 1]["next"]})
    assert page.status_code == 200 and 'id="none-here"' in page.text
    for _ in range(5):  # the "older" links lead past the stretch without listed trains
        older = re.search(r'rel="next" href="([^"]+)"', page.text)
        assert older is not None, "an empty page without an older link"
        page = client.get(older.group(1).replace("&amp;", "&"), headers=OPS)
        if "t-00300" in page.text:
            break
    assert page.status_code == 200 and 'data-train="t-00300"' in page.text


def test_a_token_from_before_list_positions_is_refused_with_one_sentence(
        many: tuple[TestClient, list[tuple[int, str, str, str]]]) -> None:
    client, _ = many
    for parts in (["2026-11-27T10:00:00Z", "t-00001"], ["-1", ""], ["1" * 20, ""], ["12", 3]):
        r = client.get("/api/trains", headers=OPS, params={"after": token_of(parts)})
        assert r.status_code == 422 and "page token" in r.json()["detail"], parts


def test_a_submitted_train_takes_the_newest_position_and_one() -> None:
    with service() as client:
        s = services(client)
        s.store.apply(ChangeSet(insert=train_quads(s, number=1, position=41)))
        first = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "fedavg"}))
        second = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "fedavg"}))
        assert first.status_code == second.status_code == 201, first.text
        positions = [position_of(s.store, NamedNode(r.json()["iri"])) for r in (first, second)]
        assert positions == [42, 43] and newest_position(s.store, TRAINS) == 43
        listed = client.get("/api/trains", headers=ALICE).json()["items"]
        assert [t["id"] for t in listed] == [second.json()["id"], first.json()["id"], "t-00001"]


def position_of(store: GraphStore, train: NamedNode) -> int:
    (quad,) = store.quads(train, PHT.listPosition, None, CENTRAL_GRAPH)
    assert isinstance(quad.object, Literal)
    return int(quad.object.value)


def test_start_up_numbers_the_trains_without_a_position_oldest_first_above_the_newest() -> None:
    with service() as client:
        store = services(client).store
        s = services(client)
        quads = train_quads(s, number=5, position=10)
        for number in (3, 1, 2):  # written before positions existed: no position
            quads += train_quads(s, number=number, position=None)
        store.apply(ChangeSet(insert=quads))
        assert [t["id"] for t in client.get("/api/trains", headers=OPS).json()["items"]] == ["t-00005"]
    with TestClient(create_app(SETTINGS, store=store)) as again:  # the next start-up
        listed = again.get("/api/trains", headers=OPS).json()["items"]
        assert [t["id"] for t in listed] == ["t-00003", "t-00002", "t-00001", "t-00005"]
        assert [position_of(store, s.lifecycle.iris.train(f"t-0000{n}")) for n in (1, 2, 3)] == [11, 12, 13]


def test_a_page_boundary_between_equal_positions_loses_and_repeats_none(
        many: tuple[TestClient, list[tuple[int, str, str, str]]]) -> None:
    client, _ = many
    after, seen = encode(ListKey(700, "t-00700")), []  # three trains share position 700 (racing replicas)
    for _ in range(3):
        body = client.get("/api/trains", headers=OPS, params={"limit": 1, "after": after}).json()
        seen += [t["id"] for t in body["items"]]
        after = body["next"]
    assert seen == ["t-00701", "t-00702", "t-00699"]
    researchers = client.get("/api/trains", headers=BOB, params={"after": encode(ListKey(700, "t-00700"))}).json()
    assert [t["id"] for t in researchers["items"]][:2] == ["t-00695", "t-00690"]  # Bob's: every 5th, below 700

"""``rejections.rq`` pages through a history longer than a page, with many rejections at one time.

Everyone's page is found from the 500 newest distinct event times and the events at them (not by sorting every
rejection with its train), so the pages must still be exactly the list sorted by (time, newest first; train
identifier; execution). Here: 1,600 rejections, most at a time of their own and a quarter at 20 crowded older
times (so page boundaries fall inside a time); state changes into other states at the same times; trains without
an identifier; one requester's pages beside everyone's; on the embedded store and on a real Oxigraph server and
Virtuoso (whose SPARQL has its own quirks: it ignores a FILTER of a group that ends with a BIND). The expected
order is computed in Python from the written quads.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pyoxigraph import Literal, NamedNode, Quad
from test_remote_queries import REMOTES, _remote, drop_data_graphs

from graph_store import CENTRAL_GRAPH, DCTERMS, NO_FILTER, PHT, PROV, RDF_TYPE, XSD, EmbeddedStore, GraphStore
from graph_store._sparql_text import quad_block
from orchestrator.page_tokens import REJECTIONS_FIRST

EX = "https://pht.example.org/rejections/"
G = CENTRAL_GRAPH
ENDED = (PHT.Rejected, PHT.Withheld, PHT.Failed)
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
Row = tuple[datetime, str, str]
"""(time, train identifier or "", execution IRI or "")."""


def _time(minute: int) -> Literal:
    return Literal((START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"), datatype=XSD.dateTime)


@pytest.fixture(scope="module")
def written() -> tuple[EmbeddedStore, list[Quad], dict[NamedNode, list[Row]]]:
    """A store of rejections at few distinct times, its quads, and each requester's rows (``NO_FILTER``:
    everyone's)."""
    rng = random.Random(7)
    store = EmbeddedStore()
    store.load_vocabulary()
    requesters = [NamedNode(f"{EX}alice"), NamedNode(f"{EX}bob")]
    quads: list[Quad] = []
    rows: dict[NamedNode, list[Row]] = {NO_FILTER: [], **{r: [] for r in requesters}}
    own_minutes = iter(rng.sample(range(1000, 3000), 1200))
    for n in range(1600):
        # most at a time of their own (the newest ones), every fourth at one of 20 older times (about 20 at each)
        minute = next(own_minutes) if n % 4 else 50 * rng.randrange(20)
        train = NamedNode(f"{EX}train-{n:04d}")
        requester = requesters[n % 2]
        identifier = "" if n % 13 == 0 else f"t-{rng.randrange(10_000):04d}-{n}"
        quads += [Quad(train, RDF_TYPE, PHT.Train, G), Quad(train, PROV.wasAttributedTo, requester, G)]
        if identifier:
            quads.append(Quad(train, DCTERMS.identifier, Literal(identifier), G))
        execution = NamedNode(f"{EX}exec-{n:04d}") if n % 3 else None
        event = NamedNode(f"{EX}event-{n:04d}")
        quads += [Quad(event, RDF_TYPE, PHT.StateChangeEvent, G), Quad(event, PHT.eventTime, _time(minute), G),
                  Quad(event, PHT.aboutTrain, train, G), Quad(event, PHT.toState, ENDED[n % 3], G),
                  Quad(event, PHT.reason, Literal(f"reason {n}"), G)]
        if execution is not None:
            quads.append(Quad(event, PHT.aboutExecution, execution, G))
        # a state change at the same time into a state the list leaves out
        other = NamedNode(f"{EX}event-{n:04d}-running")
        quads += [Quad(other, RDF_TYPE, PHT.StateChangeEvent, G), Quad(other, PHT.eventTime, _time(minute), G),
                  Quad(other, PHT.aboutTrain, train, G), Quad(other, PHT.toState, PHT.Running, G)]
        row = (datetime.fromisoformat(_time(minute).value), identifier, execution.value if execution else "")
        rows[NO_FILTER].append(row)
        rows[requester].append(row)
    store.oxigraph.extend(quads)
    for listed in rows.values():
        listed.sort(key=lambda r: (-r[0].timestamp(), r[1], r[2]))
    return store, quads, rows


@pytest.fixture(params=[pytest.param("embedded"), *REMOTES])
def history(request: pytest.FixtureRequest, written: tuple[EmbeddedStore, list[Quad], dict[NamedNode, list[Row]]]
            ) -> tuple[GraphStore, dict[NamedNode, list[Row]]]:
    """The written history on each kind of store (a server gets the quads alone: the query reads no vocabulary)."""
    store, quads, rows = written
    if request.param == "embedded":
        return store, rows
    remote = _remote(request, request.param)
    drop_data_graphs(remote)
    for i in range(0, len(quads), 400):
        remote._update(f"INSERT DATA {{ {quad_block(quads[i:i + 400])} }}")  # noqa: SLF001
    return remote, rows


def _pages(store: GraphStore, requester: NamedNode) -> list[list[Row]]:
    """Every page from the first, each started after the previous page's last row (at most 10: a query that
    repeats a row would page for ever)."""
    pages: list[list[Row]] = []
    after: dict[str, Any] = dict(REJECTIONS_FIRST)
    while len(pages) < 10:
        page = [(datetime.fromisoformat(r["time"].value), r["trainId"].value if r["trainId"] else "",
                 r["execution"].value if r["execution"] else "")
                for r in store.run_query("rejections", onlyRequester=requester, **after)]
        if not page:
            return pages
        pages.append(page)
        time, train_id, execution = page[-1]
        after = {"afterTime": _time(int((time - START).total_seconds()) // 60), "afterTrainId": Literal(train_id),
                 "afterExecution": Literal(execution)}
    return pages


@pytest.mark.parametrize("who", ["everyone", "one requester"])
def test_the_pages_are_the_whole_list_in_order_whatever_the_ties(
        history: tuple[GraphStore, dict[NamedNode, list[Row]]], who: str) -> None:
    store, rows = history
    requester = NO_FILTER if who == "everyone" else NamedNode(f"{EX}bob")
    expected = rows[requester]
    pages = _pages(store, requester)
    assert [len(p) for p in pages[:-1]] == [500] * (len(pages) - 1) and 0 < len(pages[-1]) <= 500
    assert [r for p in pages for r in p] == expected
    if who == "everyone":  # page boundaries fall inside a time: its rows are split between pages, none lost
        assert any(p[-1][0] == q[0][0] for p, q in zip(pages, pages[1:]))


def test_a_train_without_an_identifier_is_listed_sorting_as_empty(
        history: tuple[GraphStore, dict[NamedNode, list[Row]]]) -> None:
    store, rows = history
    first = list(store.run_query("rejections", onlyRequester=NO_FILTER, **REJECTIONS_FIRST))
    unnamed = [r for r in first if r["trainId"] is None]
    assert unnamed and all(r["train"] is not None and r["reason"] is not None for r in unnamed)

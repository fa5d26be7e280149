"""The order of the positioned lists (trains, train definitions): each member's list position, its place in the
order the members were written.

Writing a member gives it the newest position of its list and one (:func:`position_quad`, in the write's change
set; a train's under the lifecycle's lock). The lists are newest first by position, then by identifier, and a
page is found by scanning a window of positions (:func:`window`; ``sparql_queries/trains_overview_all.rq``,
``list_definitions.rq``): Oxigraph has no range scans, so a sort of every member cost seconds at 10 million
triples where the scan costs tens of milliseconds. Two replicas writing at once may give the same position: both
members are listed, by identifier. Members written before positions existed are numbered at start-up
(:func:`number_unlisted`), oldest first, above the newest position, so that none is missing from the lists.
Each list has its own property, so that one list's scans never meet another's members.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, XSD, ChangeSet, ConflictError, GraphStore, ValidationFailed

from .page_tokens import FIRST, ListKey

__all__ = ["DEFINITIONS", "TRAINS", "PositionedList", "newest_position", "next_key", "number_unlisted",
           "position_literal", "position_quad", "window"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PositionedList:
    """A list ordered by list position: the property its members' positions are written with and the named
    queries that find its newest position and its members without one."""

    name: str
    """What the list holds, for messages ("trains")."""
    property: NamedNode
    newest_query: str
    """A query answering ``?newest``, the list's largest position (unbound when no member has one)."""
    unlisted_query: str
    """A query answering ``?member`` for each member without a position, oldest first."""


TRAINS = PositionedList("trains", PHT.listPosition, "newest_train_position", "unlisted_trains")
DEFINITIONS = PositionedList("train definitions", PHT.definitionListPosition, "newest_definition_position",
                             "unlisted_definitions")


def position_literal(position: int) -> Literal:
    """``position`` as the ``xsd:integer`` a list position (or a query's window bound) is written with."""
    return Literal(str(position), datatype=XSD.integer)


def newest_position(store: GraphStore, kind: PositionedList) -> int:
    """The list's newest position; 0 when no member has one."""
    row = next(iter(store.run_query(kind.newest_query)), None)
    newest = None if row is None else row["newest"]
    return 0 if newest is None else int(newest.value)


def position_quad(store: GraphStore, member: NamedNode, kind: PositionedList) -> Quad:
    """The list position a new ``member`` of the list takes: the newest one's and one. Write the quad in the
    member's change set (under the lock that serialises those writes, if there is one)."""
    return Quad(member, kind.property, position_literal(newest_position(store, kind) + 1), CENTRAL_GRAPH)


def window(store: GraphStore, kind: PositionedList, after: ListKey, span: int) -> tuple[ListKey, int]:
    """The window of positions a page after ``after`` scans: ``after`` itself (the first page's: above the newest
    position) and the lowest position below the window, ``span`` positions down (never below 0)."""
    if after == FIRST:
        after = ListKey(newest_position(store, kind) + 1, "")
    return after, max(0, after.position - span)


def next_key(last: ListKey | None, lowest: int) -> ListKey | None:
    """The key of the page after one that scanned down to ``lowest``: after its ``last`` member when a member
    followed the page, else below the window if positions remain there, else none (the last page)."""
    return last if last is not None else ListKey(lowest, "") if lowest > 0 else None


def number_unlisted(store: GraphStore, kind: PositionedList) -> int:
    """Give every member of the list without a position one, oldest first, above the newest (start-up: members
    written before positions existed); returns how many. Costs two scans when every member has one. A refused
    write (another replica numbered them first: a second position is refused by the shapes) is logged, not
    raised: the service starts, and the next start-up tries again."""
    unlisted = [row["member"] for row in store.run_query(kind.unlisted_query)]
    if not unlisted:
        return 0
    newest = newest_position(store, kind)
    try:
        store.apply(ChangeSet(insert=[Quad(member, kind.property, position_literal(newest + i), CENTRAL_GRAPH)
                                      for i, member in enumerate(unlisted, start=1)]))
    except (ConflictError, ValidationFailed) as refused:
        log.warning("could not number %d %s without a list position (they are missing from their list until a "
                    "start-up numbers them): %s", len(unlisted), kind.name, refused)
        return 0
    return len(unlisted)

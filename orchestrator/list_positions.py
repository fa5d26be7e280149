"""The trains list's order: each train's ``pht:listPosition``, its place in the order trains were submitted.

A submission gives its train the newest position and one (:func:`position_quad`, in the submission's change set,
under the lifecycle's lock). The lists are newest first by position, then by identifier, and an operator's page
is found by scanning a window of positions (``sparql_queries/trains_overview_all.rq``): Oxigraph has no range
scans, so a sort of every train by creation time cost seconds at 10 million triples where the scan costs tens of
milliseconds. Two replicas submitting at once may give the same position: both trains are listed, by identifier.
Trains written before positions existed are numbered at start-up (:func:`number_unlisted`), oldest first, above
the newest position, so that none is missing from the lists.
"""

from __future__ import annotations

import logging

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, PHT, XSD, ChangeSet, ConflictError, GraphStore, ValidationFailed

__all__ = ["newest_position", "number_unlisted", "position_literal", "position_quad"]

log = logging.getLogger(__name__)


def position_literal(position: int) -> Literal:
    """``position`` as the ``xsd:integer`` a list position (or a query's window bound) is written with."""
    return Literal(str(position), datatype=XSD.integer)


def newest_position(store: GraphStore) -> int:
    """The newest train's list position; 0 when no train has one (``newest_train_position.rq``)."""
    row = next(iter(store.run_query("newest_train_position")), None)
    newest = None if row is None else row["newest"]
    return 0 if newest is None else int(newest.value)


def position_quad(store: GraphStore, train: NamedNode) -> Quad:
    """The list position a newly submitted ``train`` takes: the newest one's and one. Call it under the lock that
    serialises submissions and write the quad in the submission's change set."""
    return Quad(train, PHT.listPosition, position_literal(newest_position(store) + 1), CENTRAL_GRAPH)


def number_unlisted(store: GraphStore) -> int:
    """Give every train without a list position one, oldest first, above the newest (start-up: trains written
    before positions existed); returns how many. Costs two scans when every train has one (``unlisted_trains.rq``).
    A refused write (another replica numbered them first: a second position is refused by the shapes) is logged,
    not raised: the service starts, and the next start-up tries again."""
    unlisted = [row["train"] for row in store.run_query("unlisted_trains")]
    if not unlisted:
        return 0
    newest = newest_position(store)
    try:
        store.apply(ChangeSet(insert=[Quad(train, PHT.listPosition, position_literal(newest + i), CENTRAL_GRAPH)
                                      for i, train in enumerate(unlisted, start=1)]))
    except (ConflictError, ValidationFailed) as refused:
        log.warning("could not number %d trains without a list position (they are missing from the trains "
                    "list until a start-up numbers them): %s", len(unlisted), refused)
        return 0
    return len(unlisted)

"""Keyset page tokens of the positioned lists (trains, train definitions: ``list_positions.py``): the place (list
position, identifier) after which the next page starts, as an opaque URL-safe string the API and the web view hand
out and take back. A keyset page costs the same wherever it is in the list (``sparql_queries/trains_overview.rq``,
``trains_overview_all.rq``, ``list_definitions.rq``), where an offset costs every row before it; the token is not a
secret and grants nothing (each page is still filtered by who asks). A researcher's trains list and an operator's
take the same tokens (both are ordered by list position, then identifier)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from pyoxigraph import Literal

from graph_store import XSD

from .errors import InvalidValue

__all__ = ["FIRST", "REJECTIONS_FIRST", "ListKey", "decode", "encode"]


@dataclass(frozen=True)
class ListKey:
    """A place in a positioned list (newest first by list position, then by identifier): the last member of a
    page, or (``id`` empty) the place above every member of a position."""

    position: int
    """The member's list position (a train's ``pht:listPosition``, a definition's ``pht:definitionListPosition``)."""
    id: str


FIRST = ListKey(2**62, "")
"""Before every member: the key of the first page (no member has a position this large)."""

REJECTIONS_FIRST: dict[str, Literal] = {
    "afterTime": Literal("9999-12-31T23:59:59Z", datatype=XSD.dateTime),
    "afterTrainId": Literal(""), "afterExecution": Literal("")}
"""The key of the first page of ``sparql_queries/rejections.rq`` (newest first: before every event)."""


def encode(key: ListKey) -> str:
    """The token of the page after ``key``."""
    return _encode([str(key.position), key.id])


def decode(token: str) -> ListKey:
    """The key a token names; InvalidValue (422, one sentence) for anything this service did not hand out (a token
    of the lists before they were ordered by list position included)."""
    position, member_id = _decode(token, 2)
    if not _POSITION.fullmatch(position) or int(position) > FIRST.position:
        raise _not_ours()
    return ListKey(int(position), member_id)


_POSITION = re.compile(r"[0-9]{1,19}")


def _encode(parts: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def _decode(token: str, n: int) -> list[str]:
    """The ``n`` strings (each at most 200 characters) a token holds."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _not_ours() from None
    if not (isinstance(parts, list) and len(parts) == n
            and all(isinstance(p, str) and len(p) <= 200 for p in parts)):
        raise _not_ours()
    return parts


def _not_ours() -> InvalidValue:
    return InvalidValue("the page token is not one this service handed out; "
                        "start from the first page (leave 'after' out)")

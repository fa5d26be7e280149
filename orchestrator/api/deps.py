"""What the routers are built with: the services and the role-checking dependency (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Query

from graph_store import GraphStore

from ..auth import RequireRoles
from ..lifecycle import Lifecycle
from ..readable_graph import ReadableGraphs
from ..reads import Reads, text
from ..registry import Registry
from ..settings import Settings

__all__ = ["Services", "page", "text"]


@dataclass(frozen=True)
class Services:
    store: GraphStore
    settings: Settings
    lifecycle: Lifecycle
    registry: Registry
    require: RequireRoles
    reads: Reads
    """What every route and page reads, with who may see it (``reads.py``)."""
    readable: ReadableGraphs
    """What SPARQL and the Graph Store Protocol evaluate a caller's reads over (``readable_graph.py``)."""


Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
After = Annotated[str | None, Query(max_length=400, description="the `next` of the page before (keyset pages)")]


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """One page of an already ordered list (the named queries order their results)."""
    return {"items": items[offset:offset + limit], "total": len(items), "limit": limit, "offset": offset}

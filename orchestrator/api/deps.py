"""What the routers are built with: the services and the role-checking dependency (no globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def page(items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """One page of an already ordered list (the named queries order their results)."""
    return {"items": items[offset:offset + limit], "total": len(items), "limit": limit, "offset": offset}

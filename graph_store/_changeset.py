"""A change set: quads to delete, quads to insert, and the quads that must exist for it to apply.

Literals are canonicalised on construction the way the store will keep them (see ``_convert.canonical``).

The guard turns a write into a compare-and-set: a lifecycle step guards on the current state, so of two
clients racing for the same step exactly one wins and the other gets :class:`ConflictError`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field

from pyoxigraph import BlankNode, DefaultGraph, Quad

from ._convert import canonical_all
from ._errors import InvalidInputError

__all__ = ["ChangeSet"]


def _frozen(quads: Iterable[Quad], what: str) -> frozenset[Quad]:
    """The quads, checked and canonical. Each term is read from its Quad once: every read makes a new Python
    object, which matters for a station's batch of thousands of quads."""
    parts = []
    for q in quads:
        if not isinstance(q, Quad):
            raise InvalidInputError(f"{what} must contain pyoxigraph Quads, got {type(q).__name__}")
        s, o, g = q.subject, q.object, q.graph_name
        if isinstance(g, DefaultGraph):
            raise InvalidInputError(f"{what}: {q} is in the default graph; every write names its graph")
        if isinstance(s, BlankNode) or isinstance(o, BlankNode) or isinstance(g, BlankNode):
            raise InvalidInputError(
                f"{what}: {q} uses a blank node; give the resource an IRI so that it can be referenced, "
                "deleted and pushed idempotently"
            )
        parts.append((q, s, o, g))
    forms = canonical_all(o for _, _, o, _ in parts)
    return frozenset(q if forms[o] is o else Quad(s, q.predicate, forms[o], g) for q, s, o, g in parts)


@dataclass(frozen=True)
class ChangeSet:
    """Quads to delete and to insert, applied atomically if every ``guard`` quad is present.

    >>> from pyoxigraph import NamedNode, Quad
    >>> g = NamedNode("https://example.org/g")
    >>> s, p, o = (NamedNode(f"https://example.org/{x}") for x in "spo")
    >>> q = Quad(s, p, o, g)
    >>> ChangeSet(insert=[q]).is_empty()
    False
    """

    delete: frozenset[Quad] = field(default_factory=frozenset)
    insert: frozenset[Quad] = field(default_factory=frozenset)
    guard: frozenset[Quad] = field(default_factory=frozenset)

    def __init__(self, *, delete: Iterable[Quad] = (), insert: Iterable[Quad] = (), guard: Iterable[Quad] = ()) -> None:
        ins = _frozen(insert, "insert")
        dele = _frozen(delete, "delete") - ins  # deleting and re-inserting the same quad is a no-op
        object.__setattr__(self, "delete", dele)
        object.__setattr__(self, "insert", ins)
        object.__setattr__(self, "guard", _frozen(guard, "guard"))

    @classmethod
    def merged(cls, changes: Iterable[ChangeSet], *,
               keep_delete: Callable[[frozenset[Quad]], Collection[Quad]] | None = None,
               guard_deletions: bool = False) -> ChangeSet:
        """The union of change sets, which are already checked and canonical, so not checked again.

        ``keep_delete`` is given all the deletions and returns those to keep (e.g. those that exist, asked of a
        remote store in one request); with ``guard_deletions`` the kept deletions join the guard, making the
        merged change a compare-and-set on what it deletes.
        """
        parts = list(changes)
        insert = frozenset().union(*(c.insert for c in parts))
        delete = frozenset().union(*(c.delete for c in parts)) - insert
        if keep_delete is not None and delete:
            delete = delete & frozenset(keep_delete(delete))
        guard = frozenset().union(*(c.guard for c in parts))
        result = cls.__new__(cls)
        object.__setattr__(result, "delete", delete)
        object.__setattr__(result, "insert", insert)
        object.__setattr__(result, "guard", guard | delete if guard_deletions else guard)
        return result

    def restricted(self, graphs: Collection[object]) -> ChangeSet:
        """The part of the change set that writes (or guards) ``graphs``, not checked again."""
        result = ChangeSet.__new__(ChangeSet)
        for name in ("delete", "insert", "guard"):
            object.__setattr__(result, name, frozenset(q for q in getattr(self, name) if q.graph_name in graphs))
        return result

    def is_empty(self) -> bool:
        """True if applying the change set would change nothing."""
        return not self.delete and not self.insert

    def graphs(self) -> frozenset[object]:
        """The named graphs the change set writes to."""
        return frozenset(q.graph_name for q in self.delete | self.insert)

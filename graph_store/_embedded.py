"""The embedded back-end: pyoxigraph in this process, on disk (RocksDB) or in memory.

Only one process may open a store directory for writing (RocksDB's LOCK); the central service is that
process. Opening a locked directory raises InvalidInputError with that explanation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pyoxigraph import BlankNode, DefaultGraph, NamedNode, Quad, RdfFormat, Store

from ._changeset import ChangeSet
from ._errors import InvalidInputError
from ._schema import Schema
from ._sizes import COUNTED, replacement
from ._store import GraphStore, QueryResult
from ._vocab import SIZES_GRAPH

__all__ = ["EmbeddedStore"]


class EmbeddedStore(GraphStore):
    """pyoxigraph store at ``path`` (created if missing), or in memory if ``path`` is None.

    >>> store = EmbeddedStore()
    >>> store.load_vocabulary()
    >>> bool(store.query("ASK { GRAPH ?g { ?s ?p ?o } }"))
    True
    """

    def __init__(self, path: Path | str | None = None, *, schema: Schema | None = None) -> None:
        super().__init__(schema)
        try:
            if path is not None:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._store = Store(str(path)) if path is not None else Store()
        except OSError as e:
            hint = (" (it is already open: only one process, and one store object, may open a store directory "
                    "at a time)") \
                if "lock" in str(e).lower() else ""
            raise InvalidInputError(f"cannot open the store at {path}: {e}{hint}") from None
        self.path = Path(path) if path is not None else None
        self._types_cache = {}  # this process is the store's only writer (RocksDB lock)
        self._quads_cache = {}

    @property
    def oxigraph(self) -> Store:
        """The underlying pyoxigraph Store, for bulk loading trusted data (benchmarks, restores) and dumps.

        Writing through it bypasses validation; taking it forgets the store's caches, so that later
        validated writes see whatever it changed, and tells the :meth:`on_bypass` listeners (copies of the
        store rebuild themselves from it at their next use: write right after taking it, do not keep it).
        """
        with self._write_lock:
            self._clear_caches()
            if COUNTED in self._store:  # whatever is written through it is not counted: no counts rather than wrong ones
                self._store.update(f"DROP SILENT GRAPH {SIZES_GRAPH}")
            self._forget_sizes()
            self._bypassed()
        return self._store

    def snapshot(self) -> bytes:
        """The whole store as N-Quads, read from one consistent snapshot (to seed a copy of it)."""
        dump = self._store.dump(format=RdfFormat.N_QUADS)  # without an output: the bytes
        assert dump is not None
        return dump

    def contains(self, quad: Quad) -> bool:
        return quad in self._store

    def _match(self, s: Any, p: Any, o: Any, g: Any = None) -> Iterable[Quad]:
        return self._store.quads_for_pattern(s, p, o, g)

    def _query(self, text: str, *, default_graph: list[NamedNode] | None, named_graphs: list[NamedNode] | None,
               union_default_graph: bool) -> QueryResult:
        # pyoxigraph's parameters are lists of wider types (lists are invariant): copies typed as such
        default: list[NamedNode | BlankNode | DefaultGraph] | None = \
            None if default_graph is None else list(default_graph)
        named: list[NamedNode | BlankNode] | None = None if named_graphs is None else list(named_graphs)
        try:
            return self._store.query(text, default_graph=default, named_graphs=named,
                                     use_default_graph_as_union=union_default_graph)
        except SyntaxError as e:
            raise InvalidInputError(f"malformed SPARQL query: {e}") from None

    def _update(self, text: str) -> None:
        try:
            self._store.update(text)
        except SyntaxError as e:
            raise InvalidInputError(f"malformed SPARQL update: {e}") from None

    def _commit(self, change: ChangeSet, sizes: Mapping[NamedNode, int]) -> None:
        """One atomic write without re-checking the guard: apply() has just checked it under the write lock,
        and this store object is the directory's only writer (RocksDB's LOCK), so a WHERE repeating the
        guard would find what the check found (measured 10 % faster). The graphs' new sizes are read and
        written here (``_sizes.py``), in the same request. A change that changes no size and inserts only goes in
        as one ``Store.extend``, which is transactional too and spares writing and parsing SPARQL text."""
        counts = self._known_sizes() if sizes else None
        try:
            if counts is not None:
                old, new, after = replacement(counts, sizes)
                self._update(self._commit_text(change, guarded=False, counts=(old, new)))
                self._sizes = after
            elif change.delete:
                self._update(self._commit_text(change, guarded=False))
            else:
                self._store.extend(change.insert)
        except BaseException:
            self._forget_sizes()
            raise

    def __len__(self) -> int:
        """The quads of the data and vocabulary graphs, as a remote store counts them (not the sizes graph)."""
        return len(self._store) - sum(1 for _ in self._store.quads_for_pattern(None, None, None, SIZES_GRAPH))

    def close(self) -> None:
        self._store.flush() if self.path is not None else None
        del self._store

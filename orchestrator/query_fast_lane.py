"""The fast lane of ``/sparql``: a point query (one triple pattern with a fixed subject) is answered in the
service's own process, over the dataset a worker would use; every other query goes to a worker
(``query_runner.py``).

Why: a worker's round trip costs a point query about 1.2 ms of its 4 ms (two idle processes woken, the job and
its answer pickled), and a point query is what researchers and dashboards send most. Why it may run here, when
the workers exist because pyoxigraph can neither survive every parse nor cancel a query:

- **It cannot crash the parser.** Before any parser sees it, the text must match a grammar of a few tokens
  (:func:`is_point_query`): a prologue, ``SELECT`` or ``ASK``, one triple pattern, at most one ``GRAPH``, an
  optional ``LIMIT``. Its nesting is 2; the parser's known crashes need hundreds (``query_text.py``).
- **Its cost is bounded.** A fixed subject is one range of the subject index; the pattern's variables are
  distinct, so every quad in the range is a row, and evaluation stops after ``LANE_ROWS`` rows. A longer answer
  is left to a worker.
- **It reads what the worker would.** The dataset comes from ``query_dataset``, the one rule of what a caller
  may read; a caller who is not an operator is evaluated over their :class:`ReadableGraphs` view, the same one
  the Graph Store Protocol's reads use. The lane takes a view only if it is built and current: otherwise the
  query goes to a worker, and a worker builds the view (over its replica, as for its own queries) and sends
  it as N-Quads, which this process loads without holding the GIL; at most ``BUILD_SHARE`` of the time goes to
  building views (``BUILD_BURST_S`` at once). So the event loop never waits for a build, and the service's
  process never walks the store from Python (which held the GIL for hundreds of milliseconds).

Only for an embedded store: a remote store's query is a request to its server, whose time nothing bounds here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict

from pyoxigraph import RdfFormat
from starlette.concurrency import run_in_threadpool

from graph_store import EmbeddedStore, GraphStore

from .principal import Principal
from .query_eval import Serialised, evaluate_at, query_dataset, serialised
from .query_text import MAX_TEXT_CHARS
from .query_worker import Job
from .query_workers import WorkerDied, WorkerPool
from .readable_graph import ReadableGraphs, reads_everything
from .sparql_http import HttpError, readable_everything

__all__ = ["BUILD_SHARE", "LANE_ROWS", "PointQueryLane", "is_point_query"]

LANE_ROWS = 1_000
"""Most rows a point query may have to be answered in the lane (about 1 ms of evaluation); more go to a worker."""
BUILD_SHARE = 0.2
"""Most of the time views are built for the lane, over time (a budget: ``_build_views``)."""
BUILD_BURST_S = 1.0
"""Building time that may be spent at once after a rest (the first views of a few callers)."""
LANE_TEXT_CHARS = 4_096
"""Longest text the lane looks at (a point query with a few prefixes is a few hundred characters)."""

log = logging.getLogger(__name__)

_IRIREF = r'<[^<>"{}|^`\\\x00-\x20]*>'
_PNAME = r"(?:[A-Za-z][A-Za-z0-9_-]*)?:[A-Za-z0-9_](?:[A-Za-z0-9_-]*)"
_IRI = rf"(?:{_IRIREF}|{_PNAME})"
_VAR = r"\?[A-Za-z_][A-Za-z0-9_]*"
_POINT_QUERY = re.compile(
    rf"""\s*(?:(?:PREFIX\s+(?:[A-Za-z][A-Za-z0-9_-]*)?:\s*{_IRIREF}|BASE\s*{_IRIREF})\s*)*
    (?:SELECT\s+(?:\*|{_VAR}(?:\s*{_VAR})*)\s*|ASK\s*)(?:WHERE\s*)?
    \{{\s*(?:GRAPH\s+(?P<g>{_VAR}|{_IRI})\s*\{{\s*)?
    {_IRI}\s+(?P<p>{_VAR}|{_IRI}|a)\s+(?P<o>{_VAR}|{_IRI})\s*\.?\s*
    (?(g)\}}\s*)\}}
    \s*(?:LIMIT\s+[0-9]{{1,9}}\s*)?""",
    re.IGNORECASE | re.VERBOSE)


def is_point_query(text: str) -> bool:
    """True if ``text`` is a point query the lane may answer: one triple pattern with a fixed subject (an IRI)
    and distinct variables, optionally in one GRAPH, as SELECT or ASK, optionally with a LIMIT; no comments.

    >>> is_point_query("SELECT ?p ?o WHERE { GRAPH ?g { <https://x.example/t> ?p ?o } }")
    True
    >>> is_point_query("SELECT * WHERE { ?s ?p ?o }")  # no fixed subject: a scan of the store
    False
    >>> is_point_query("SELECT ?p WHERE { <https://x.example/t> ?p ?p }")  # a repeated variable filters rows
    False
    """
    if len(text) > min(LANE_TEXT_CHARS, MAX_TEXT_CHARS):
        return False
    match = _POINT_QUERY.fullmatch(text)
    if match is None:
        return False
    variables = [term for term in match.group("g", "p", "o") if term and term.startswith("?")]
    return len(set(variables)) == len(variables)


class PointQueryLane:
    """Answers point queries in the service's process (see the module's docstring); None means "ask a worker"."""

    def __init__(self, store: GraphStore, readable: ReadableGraphs, pool: WorkerPool, *, timeout_s: float) -> None:
        self.store, self.readable, self.pool, self.timeout_s = store, readable, pool, timeout_s
        self._wanted: OrderedDict[tuple[str, frozenset[str], str | None], Principal] = OrderedDict()
        self._builder: asyncio.Task[None] | None = None
        self._closed = False

    def answer(self, who: Principal, text: str, default_uris: list[str], named_uris: list[str],
               accept: str | None, *, row_limit: int, max_bytes: int, base: str | None) -> Serialised | None:
        """The serialised answer if ``text`` (as the caller sent it) is a point query whose dataset is at hand
        and whose answer has at most LANE_ROWS rows; else None (the caller asks a worker). Called on the event
        loop (a missing view is asked for there)."""
        if not is_point_query(text):
            return None
        view: GraphStore | None = None
        if readable_everything(who) and not reads_everything(who):
            view = self.readable.cached(who)
            if view is None:
                self._want(who)
                return None
        dataset = query_dataset(who, text, default_uris, named_uris,
                                lambda _who: view if view is not None else self.store)
        limit = min(LANE_ROWS, row_limit)
        answer = evaluate_at(self.store, text, dataset, limit, base)
        if answer.truncated and row_limit > LANE_ROWS:
            return None  # a worker collects the whole answer
        return serialised(answer, accept, row_limit, max_bytes)

    def open(self) -> None:
        """Build views again after :meth:`close` (a service's lifespan may run again)."""
        self._closed = False

    def close(self) -> None:
        """Stop building views."""
        self._closed = True
        if self._builder is not None:
            self._builder.cancel()

    def _want(self, who: Principal) -> None:
        """Ask for ``who``'s view (the latest wish first; one wish per caller)."""
        if self._closed:
            return
        key = ReadableGraphs.key(who)
        self._wanted[key] = who
        self._wanted.move_to_end(key, last=False)
        if self._builder is None or self._builder.done():
            self._builder = asyncio.get_running_loop().create_task(self._build_views())

    async def _build_views(self) -> None:
        """Build the wished views, within a budget of building time: it grows by BUILD_SHARE of every second
        up to BUILD_BURST_S (a few callers' first views are built at once) and a build spends it; while it is
        spent the builder rests (writes that keep making views stale cannot keep a worker building them)."""
        budget, last = BUILD_BURST_S, time.monotonic()
        while self._wanted and not self._closed:
            owed = -(budget + (time.monotonic() - last) * BUILD_SHARE)
            if owed > 0:
                await asyncio.sleep(owed / BUILD_SHARE)
                continue
            _, who = self._wanted.popitem(last=False)
            started = time.monotonic()
            budget = min(BUILD_BURST_S, budget + (started - last) * BUILD_SHARE)
            try:
                await self._build(who)
            except (HttpError, WorkerDied, OSError) as e:  # the lane stays with the workers; a later wish retries
                log.warning("building %s's readable view for the SPARQL fast lane failed: %s", who.subject, e)
            last = time.monotonic()
            budget -= last - started

    async def _build(self, who: Principal) -> None:
        """``who``'s view from a worker (which builds it, or has it, over its replica) as N-Quads, loaded here.
        Labelled with the generation before the job was sent: the worker has caught up with every commit before
        it, and a view that may hold a later one is only thought older than it is (then stale, never served)."""
        generation = self.readable.generation
        dump = await self.pool.call(Job("view", "", who), time.monotonic() + self.timeout_s,
                                    lambda: HttpError(503, "the view was not built within the deadline"))
        if not isinstance(dump, bytes):
            raise TypeError("a worker answered a view with something else than N-Quads")
        view = await run_in_threadpool(_loaded, dump)
        self.readable.install(who, view, generation)


def _loaded(dump: bytes) -> EmbeddedStore:
    """An in-memory store of ``dump`` (N-Quads). pyoxigraph parses without holding the GIL, so the event loop
    keeps answering meanwhile; walking the store from Python to build a view here held it for hundreds of ms."""
    store = EmbeddedStore()
    store.oxigraph.load(dump, format=RdfFormat.N_QUADS)
    return store

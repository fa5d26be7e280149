"""Prometheus metrics of the central service, at ``GET /metrics``, in a registry of the app's own.

=========================================  ==========  =================================================
``pht_trains{state}``                      gauge       trains by lifecycle state (every train state, 0 too)
``pht_executions{state}``                  gauge       executions by lifecycle state
``pht_store_up``                           gauge       1 if the store answered the last scrape's queries
``pht_store_triples{graph}``               gauge       triples per named graph (ontology, shapes, central, one
                                                       per station), as every write keeps them in the store
``pht_lifecycle_steps_total{kind,to}``     counter     steps committed (kind: train / execution)
``pht_http_request_duration_seconds``      histogram   latency by ``method``, ``route`` (the template, e.g.
                                                       ``/api/trains/{train_id}``) and ``status``
``pht_metadata_batches_total``             counter     MPU batches by ``station`` and ``outcome``
                                                       (``accepted`` or the refusal's status code)
``pht_metadata_events_total{station}``     counter     events written to station graphs
``pht_metadata_triples_total{station}``    counter     triples written to station graphs
=========================================  ==========  =================================================

Labels are bounded: states and kinds are the chart's, routes are templates (never raw paths: ids would make a
series per train), statuses and stations are few. The state gauges are read from the store on scrape with the
named queries ``trains_by_state`` / ``executions_by_state``, at most once per ``cache_s``, so scraping cannot
load the store. The graph sizes (``graph_sizes``) are read with them: each write keeps them in the store's sizes
graph (``graph_store/_sizes.py``), so reading them is a lookup, not a count of every quad.

``/metrics`` needs a bearer token: an operator's JWT, or ``Settings.metrics_token`` (``PHT_METRICS_TOKEN``, a
shared secret that reads the metrics and nothing else, for Prometheus: the shipped
``dashboards/prometheus/prometheus.yml`` sends it from a ``credentials_file``). The metrics are aggregates: no
train, execution, person or dataset identifier is a label value (station ids and route templates are);
``tests/security/test_tokens.py`` checks that a train's id and its requester never appear in the exposition.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fastapi.routing
from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pyoxigraph import NamedNode
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph_store import GraphStore, GraphStoreError

from .api.deps import Services
from .auth import AuthError, TokenVerifier, VerificationUnavailable, _invalid_token_challenge
from .chart import Chart
from .principal import Role

__all__ = ["CentralMetrics", "install_metrics"]

log = logging.getLogger("orchestrator.metrics")
TEMPLATE_MEMO_SIZE = 1024
"""Request paths whose route template :class:`HttpMetrics` remembers (the most recently used)."""
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CentralMetrics:
    """The central service's metrics; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self, store: GraphStore, chart: Chart, *, cache_s: float = 5.0) -> None:
        r = self.registry = CollectorRegistry()
        self.steps = Counter("pht_lifecycle_steps", "Lifecycle steps committed, by chart and new state",
                             ["kind", "to"], registry=r)
        self.latency = Histogram("pht_http_request_duration_seconds", "HTTP request latency by route template",
                                 ["method", "route", "status"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batches = Counter("pht_metadata_batches", "Metadata batches pushed by station MPUs, by outcome",
                               ["station", "outcome"], registry=r)
        self.events = Counter("pht_metadata_events", "Events written to station graphs", ["station"], registry=r)
        self.triples = Counter("pht_metadata_triples", "Triples written to station graphs", ["station"],
                               registry=r)
        r.register(_StateCollector(store, chart, cache_s))

    def count_step(self, kind: str, to: str) -> None:
        self.steps.labels(kind, to).inc()

    def metadata_pushed(self, station: str, events: int, triples: int) -> None:
        self.batches.labels(station, "accepted").inc()
        self.events.labels(station).inc(events)
        self.triples.labels(station).inc(triples)

    def metadata_refused(self, station: str, status: int) -> None:
        self.batches.labels(station, str(status)).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Trains and executions by state and the graph sizes, read from the store on scrape (cached for
    ``cache_s``)."""

    def __init__(self, store: GraphStore, chart: Chart, cache_s: float) -> None:
        self.store, self.chart, self.cache_s = store, chart, cache_s
        self.kinds = {kind: sorted({chart.token(s) for (k, frm, to) in chart.transitions if k == kind
                                    for s in (frm, to)}) for kind in ("train", "execution")}
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # computed on scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                self._cached = (now, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily("pht_store_up", "1 if the graph store answered the last scrape's queries")
        metrics: list[Metric] = []
        try:
            for kind, query, column in (("train", "trains_by_state", "trains"),
                                        ("execution", "executions_by_state", "executions")):
                counts = {self.chart.token(r["state"]): int(r[column].value)
                          for r in self.store.run_query(query) if isinstance(r["state"], NamedNode)}
                family = GaugeMetricFamily(f"pht_{kind}s", f"{kind.capitalize()}s by lifecycle state",
                                           labels=["state"])
                for state in sorted(set(self.kinds[kind]) | set(counts)):
                    family.add_metric([state], counts.get(state, 0))
                metrics.append(family)
            metrics.append(self._graph_sizes())
            up.add_metric([], 1)
        except (GraphStoreError, OSError) as e:
            log.warning("metrics: the store did not answer: %s", e)
            metrics = []
            up.add_metric([], 0)
        return [*metrics, up]

    def _graph_sizes(self) -> Metric:
        """``pht_store_triples{graph}`` from ``graph_sizes.rq`` (none while the store's counts are not complete:
        after a bulk load, until ``GraphStore.recount``)."""
        family = GaugeMetricFamily("pht_store_triples", "Triples in each named graph of the store", labels=["graph"])
        for row in self.store.run_query("graph_sizes"):
            family.add_metric([row["graph"].value], int(row["triples"].value))
        return family


class HttpMetrics:
    """ASGI middleware: the latency of every request, labelled with the route's template (not its path).

    The templates are read from the app's routes (included routers' prefixes too) on the first request and
    matched here, so the label does not depend on how a FastAPI version records the matched route.
    """

    def __init__(self, app: ASGIApp, metrics: CentralMetrics, routes: Callable[[], Iterable[Any]]) -> None:
        self.app, self.metrics, self._routes = app, metrics, routes
        self._templates: list[tuple[re.Pattern[str], frozenset[str], str]] | None = None
        # a dashboard's or a client's requests repeat their paths: match each once (bounded: paths hold ids)
        self.template = functools.lru_cache(maxsize=TEMPLATE_MEMO_SIZE)(self._match)

    def _match(self, method: str, path: str) -> str:
        """The route template serving ``method path``, or ``unmatched``."""
        if self._templates is None:
            iterate = getattr(fastapi.routing, "iter_route_contexts", None)  # FastAPI >= 0.16x nests routers
            routes = list(iterate(self._routes())) if iterate is not None else list(self._routes())
            self._templates = [(compile_path(r.path)[0], frozenset(getattr(r, "methods", None) or ()), r.path)
                               for r in routes if getattr(r, "path", None)]
        fallback = "unmatched"
        for regex, methods, template in self._templates:
            if regex.match(path):
                if not methods or method in methods:
                    return template
                fallback = template
        return fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope.get("method", "?")
            self.metrics.latency.labels(method, self.template(method, scope.get("path", "")), str(status)).observe(
                time.perf_counter() - start)


_bearer = HTTPBearer(auto_error=False, description="An operator's JWT, or the metrics token (PHT_METRICS_TOKEN).")


def metrics_reader(verifier: TokenVerifier, metrics_token: str | None) -> Any:
    """A FastAPI dependency admitting the metrics token or an operator's token: 401 without a (valid) token,
    403 for any other role, 503 if revocations cannot be read."""

    def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:  # noqa: B008
        if credentials is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"},
                                detail="/metrics needs a bearer token: an operator's, or the metrics token")
        given = credentials.credentials
        if metrics_token is not None and hmac.compare_digest(given.encode(), metrics_token.encode()):
            return
        try:
            principal = verifier.verify(given)
        except VerificationUnavailable as e:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(e)) from None
        except AuthError as e:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=str(e),
                                headers={"WWW-Authenticate": _invalid_token_challenge(str(e))}) from None
        if not principal.has(Role.OPERATOR):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail="/metrics needs the operator role or the metrics token")

    return authorize


def install_metrics(app: FastAPI, services: Services, verifier: TokenVerifier) -> CentralMetrics:
    """Add ``/metrics`` (operator or metrics token), the latency middleware and the lifecycle's step counter."""
    metrics = CentralMetrics(services.store, services.lifecycle.chart)
    services.lifecycle.step_observer = metrics.count_step
    app.state.metrics = metrics
    app.add_middleware(HttpMetrics, metrics=metrics, routes=lambda: app.routes)
    reader = metrics_reader(verifier, services.settings.metrics_token)

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(reader)])
    def prometheus_metrics() -> Response:
        """Prometheus exposition of the metrics above (aggregates only, see the module)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics

"""Settings of the central service: one frozen object, read once at start-up (the only place that reads
the environment), validated there so that a misconfiguration stops the service with one clear sentence."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from graph_store import DEFAULT_BASE_IRI

__all__ = ["Settings", "SettingsError", "DEMO_SECRET", "STATION_TOKEN_TTL_S"]

DEMO_SECRET = "pht-demo-secret-change-me-0123456789abcdef"
"""HS256 key of the embedded demo. Refused unless ``demo=True``."""
STATION_TOKEN_TTL_S = 12 * 3600
"""Default lifetime of a station token: 12 hours. Agents renew theirs at half its life
(``POST /api/tokens/renew``), so the agent survives a central-service outage of up to six hours without an
operator; a token copied off a station (a log, a backup) without the agent renewing it is dead within half a
day. Revocation (``POST /api/tokens/revocations``) is what stops a known compromise, within seconds."""
OBJECT_STORE_SCHEMES = frozenset({"file", "s3", "s3+https", "s3+http"})
"""The URL schemes ``station.objects.object_store_from_url`` reads (not imported: stations are another package)."""


class SettingsError(ValueError):
    """The configuration cannot work; the message says which setting and why."""


@dataclass(frozen=True)
class Settings:
    """Everything the central service needs to know.

    Store: ``store_path`` (embedded pyoxigraph on disk) or ``store_query_url`` (+ update URL, user, password)
    for a remote SPARQL 1.1 server; a store only in memory (lost at exit) only when ``store_in_memory`` says so
    (``PHT_STORE_IN_MEMORY=1``), never by forgetting the path (:func:`orchestrator.app.open_store` refuses).
    Tokens: HS256 with ``jwt_secret`` (local tokens issued by ``pht token``) and/or RS256/ES256 from
    ``jwks_url`` (Keycloak or any OIDC provider), which then needs ``jwt_issuer`` and ``jwt_audience``: without
    them a token the provider issued to any other client of the realm would be accepted.
    """

    store_path: Path | None = None
    store_query_url: str | None = None
    store_update_url: str | None = None
    store_user: str | None = None
    store_password: str | None = None
    store_lock_ttl_s: float = 10.0
    """How long a writer's claim on a remote store's cross-process write lock counts (``PHT_STORE_LOCK_TTL_S``,
    ``graph_store/_write_lock.py``): replicas sharing the store wait at most this long for the writes of a replica
    that was killed mid-write. 0 turns the lock off (about 10 ms less per write): only for a deployment with one
    service process writing the store, as with the embedded store."""
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_body_bytes: int = 1_000_000
    query_timeout_s: float = 10.0
    query_result_limit: int = 10_000
    query_workers: int = 4
    """Worker processes evaluating callers' queries (``PHT_QUERY_WORKERS``); each holds a replica of an embedded
    store (see docs/architecture.md for the memory this costs). More than ``query_per_principal``, so that one
    caller's queries always leave workers to the others."""
    query_per_principal: int = 2
    """Queries one caller may run at a time (``PHT_QUERY_PER_PRINCIPAL``); one more waits for one of them."""
    query_queue_s: float = 2.0
    """How long a caller's query beyond ``query_per_principal`` waits for one of theirs to finish
    (``PHT_QUERY_QUEUE_S``) before it is answered 429: a dashboard's panels queue, a flood is refused."""
    query_result_max_bytes: int = 50_000_000
    """Largest serialised answer (``PHT_QUERY_RESULT_MAX_BYTES``); a larger one is cut to fewer rows, announced
    by ``X-PHT-Result-Truncated: true`` like the row limit."""
    base_iri: str = DEFAULT_BASE_IRI
    station_timeout_s: float = 3600.0  #: fail executions a station has not moved for this long (0: never)
    # -- released results (orchestrator/results.py): the service reads them, researchers get expiring links
    results_store_url: str | None = None
    """The object store the stations release outputs to (``PHT_RESULTS_STORE_URL``, a URL as ``station/objects.py``
    reads them; read-only credentials suffice). Only the service holds it: a train's requester (or an operator)
    asks ``GET /api/trains/{id}/result`` for a link that reads that one result; None: results are not served."""
    result_link_ttl_s: float = 300.0
    """How long a result link reads its object (``PHT_RESULT_LINK_TTL_S``, 1 s to 1 hour)."""
    store_in_memory: bool = False
    """Keep the store in memory only (``PHT_STORE_IN_MEMORY=1``): everything is lost when the service stops."""
    station_token_ttl_s: int = STATION_TOKEN_TTL_S
    """Lifetime of station tokens the service issues or renews (``PHT_STATION_TOKEN_TTL_S``)."""
    revocation_cache_s: float = 2.0
    """How long the verifier reuses what it read of a token's revocations (``PHT_REVOCATION_CACHE_S``, at most 5 s):
    a revocation recorded in the graph refuses its tokens within this time."""
    metrics_token: str | None = None
    """A bearer token (not a JWT, at least 32 characters) that may read ``GET /metrics`` and nothing else
    (``PHT_METRICS_TOKEN``), for Prometheus; operator tokens read it too."""
    require_signed_trains: bool = True
    """Refuse a train submitted without the researcher's signed request (on by default; ``PHT_REQUIRE_SIGNED_TRAINS=0``
    turns it off). A signed request is verified and stored whenever one is sent; this only decides about unsigned
    ones. Stations refuse unsigned trains whatever this says (``station/signed_requests.py``), so turning it off
    only lets an unsigned train be submitted and then fail at its first station."""
    demo: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store_path is not None and self.store_query_url is not None:
            raise SettingsError("set either PHT_STORE_PATH (embedded) or PHT_STORE_QUERY_URL (remote), not both")
        if not self.jwt_secret and not self.jwks_url:
            raise SettingsError("no way to verify tokens: set PHT_JWT_SECRET or PHT_JWKS_URL")
        if self.jwks_url and (not self.jwt_issuer or not self.jwt_audience):
            raise SettingsError("PHT_JWKS_URL needs PHT_JWT_ISSUER and PHT_JWT_AUDIENCE (the provider's issuer and "
                                "this service's client id), so that tokens issued for other clients are refused")
        if self.store_in_memory and (self.store_path is not None or self.store_query_url is not None):
            raise SettingsError("PHT_STORE_IN_MEMORY=1 keeps the store in memory; do not set PHT_STORE_PATH or "
                                "PHT_STORE_QUERY_URL with it")
        if not 60 <= self.station_token_ttl_s <= 7 * 86400:
            raise SettingsError("PHT_STATION_TOKEN_TTL_S must be between 60 seconds and 7 days")
        if not 0 <= self.revocation_cache_s <= 5:
            raise SettingsError("PHT_REVOCATION_CACHE_S must be between 0 and 5 seconds")
        if self.metrics_token is not None and len(self.metrics_token) < 32:
            raise SettingsError("PHT_METRICS_TOKEN must be at least 32 characters long")
        if self.jwt_secret == DEMO_SECRET and not self.demo:
            raise SettingsError("PHT_JWT_SECRET is the demo secret; choose your own (at least 32 characters)")
        if self.jwt_secret and len(self.jwt_secret) < 32:
            raise SettingsError("PHT_JWT_SECRET must be at least 32 characters long")
        if self.max_body_bytes <= 0 or self.query_timeout_s <= 0 or self.query_result_limit <= 0:
            raise SettingsError("PHT_MAX_BODY_BYTES, PHT_QUERY_TIMEOUT_S and PHT_QUERY_RESULT_LIMIT must be positive")
        if not 1 <= self.query_per_principal < self.query_workers:
            raise SettingsError("PHT_QUERY_PER_PRINCIPAL must be at least 1 and less than PHT_QUERY_WORKERS, so that "
                                "one caller's queries leave a worker to the others")
        if not 0 <= self.query_queue_s <= 60:
            raise SettingsError("PHT_QUERY_QUEUE_S must be between 0 and 60 seconds")
        if self.query_result_max_bytes < 1000:
            raise SettingsError("PHT_QUERY_RESULT_MAX_BYTES must be at least 1000")
        if self.store_lock_ttl_s != 0 and not 1 <= self.store_lock_ttl_s <= 300:
            raise SettingsError("PHT_STORE_LOCK_TTL_S must be 0 (one writing process) or 1 to 300 seconds")
        if self.station_timeout_s < 0:
            raise SettingsError("PHT_STATION_TIMEOUT_S must be 0 (off) or a positive number of seconds")
        if self.results_store_url is not None and \
                urlsplit(self.results_store_url).scheme.lower() not in OBJECT_STORE_SCHEMES:
            raise SettingsError("PHT_RESULTS_STORE_URL must be an object store URL: file:///folder, or s3://, "
                                "s3+https:// or s3+http:// ACCESS:SECRET@host:port/bucket")
        if not 1 <= self.result_link_ttl_s <= 3600:
            raise SettingsError("PHT_RESULT_LINK_TTL_S must be between 1 second and 1 hour")
        if not self.base_iri.endswith(("/", "#")):
            raise SettingsError("PHT_BASE_IRI must end with '/' or '#'")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``PHT_*`` variables (``os.environ`` by default)."""
        e = os.environ if env is None else env

        def num(name: str, default: float) -> float:
            try:
                return float(e.get(name, default))
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {e[name]!r}") from None

        if e.get("PHT_RESEARCHER_OBJECTS_URL"):  # it handed every researcher the bucket's credentials
            raise SettingsError("PHT_RESEARCHER_OBJECTS_URL is no longer read: researchers get expiring links to "
                                "their own results; set PHT_RESULTS_STORE_URL for the service instead")
        path = e.get("PHT_STORE_PATH")
        return cls(
            store_path=Path(path) if path else None,
            store_query_url=e.get("PHT_STORE_QUERY_URL") or None,
            store_update_url=e.get("PHT_STORE_UPDATE_URL") or None,
            store_user=e.get("PHT_STORE_USER") or None,
            store_password=e.get("PHT_STORE_PASSWORD") or None,
            store_lock_ttl_s=num("PHT_STORE_LOCK_TTL_S", 10.0),
            jwt_secret=e.get("PHT_JWT_SECRET") or None,
            jwks_url=e.get("PHT_JWKS_URL") or None,
            jwt_issuer=e.get("PHT_JWT_ISSUER") or None,
            jwt_audience=e.get("PHT_JWT_AUDIENCE") or None,
            max_body_bytes=int(num("PHT_MAX_BODY_BYTES", 1_000_000)),
            query_timeout_s=num("PHT_QUERY_TIMEOUT_S", 10.0),
            query_result_limit=int(num("PHT_QUERY_RESULT_LIMIT", 10_000)),
            query_workers=int(num("PHT_QUERY_WORKERS", 4)),
            query_per_principal=int(num("PHT_QUERY_PER_PRINCIPAL", 2)),
            query_queue_s=num("PHT_QUERY_QUEUE_S", 2.0),
            query_result_max_bytes=int(num("PHT_QUERY_RESULT_MAX_BYTES", 50_000_000)),
            base_iri=e.get("PHT_BASE_IRI", DEFAULT_BASE_IRI),
            station_timeout_s=num("PHT_STATION_TIMEOUT_S", 3600.0),
            results_store_url=e.get("PHT_RESULTS_STORE_URL") or None,
            result_link_ttl_s=num("PHT_RESULT_LINK_TTL_S", 300.0),
            store_in_memory=e.get("PHT_STORE_IN_MEMORY", "") == "1",
            station_token_ttl_s=int(num("PHT_STATION_TOKEN_TTL_S", STATION_TOKEN_TTL_S)),
            revocation_cache_s=num("PHT_REVOCATION_CACHE_S", 2.0),
            metrics_token=e.get("PHT_METRICS_TOKEN") or None,
            require_signed_trains=e.get("PHT_REQUIRE_SIGNED_TRAINS", "1") != "0",
            demo=e.get("PHT_DEMO", "") == "1",
        )

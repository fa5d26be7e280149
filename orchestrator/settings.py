"""Settings of the central service: one frozen object, read once at start-up (the only place that reads
the environment), validated there so that a misconfiguration stops the service with one clear sentence."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from graph_store import DEFAULT_BASE_IRI

__all__ = ["Settings", "SettingsError", "DEMO_SECRET"]

DEMO_SECRET = "pht-demo-secret-change-me-0123456789abcdef"
"""HS256 key of the embedded demo. Refused unless ``demo=True``."""
OBJECT_STORE_SCHEMES = frozenset({"file", "s3", "s3+https", "s3+http"})
"""The URL schemes ``station.objects.object_store_from_url`` reads (not imported: stations are another package)."""


class SettingsError(ValueError):
    """The configuration cannot work; the message says which setting and why."""


@dataclass(frozen=True)
class Settings:
    """Everything the central service needs to know.

    Store: ``store_path`` (embedded pyoxigraph, the default) or ``store_query_url`` (+ update URL, user,
    password) for a remote SPARQL 1.1 server. Tokens: HS256 with ``jwt_secret`` (local tokens issued by
    ``pht token``) and/or RS256/ES256 from ``jwks_url`` (Keycloak or any OIDC provider).
    """

    store_path: Path | None = None
    store_query_url: str | None = None
    store_update_url: str | None = None
    store_user: str | None = None
    store_password: str | None = None
    jwt_secret: str | None = None
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    max_body_bytes: int = 1_000_000
    query_timeout_s: float = 10.0
    query_result_limit: int = 10_000
    base_iri: str = DEFAULT_BASE_IRI
    station_timeout_s: float = 3600.0  #: fail executions a station has not moved for this long (0: never)
    # -- released results (orchestrator/results.py): the service reads them, researchers get expiring links
    results_store_url: str | None = None
    """The object store the stations release outputs to (``PHT_RESULTS_STORE_URL``, a URL as ``station/objects.py``
    reads them; read-only credentials suffice). Only the service holds it: a train's requester (or an operator)
    asks ``GET /api/trains/{id}/result`` for a link that reads that one result; None: results are not served."""
    result_link_ttl_s: float = 300.0
    """How long a result link reads its object (``PHT_RESULT_LINK_TTL_S``, 1 s to 1 hour)."""
    demo: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store_path is not None and self.store_query_url is not None:
            raise SettingsError("set either PHT_STORE_PATH (embedded) or PHT_STORE_QUERY_URL (remote), not both")
        if not self.jwt_secret and not self.jwks_url:
            raise SettingsError("no way to verify tokens: set PHT_JWT_SECRET or PHT_JWKS_URL")
        if self.jwt_secret == DEMO_SECRET and not self.demo:
            raise SettingsError("PHT_JWT_SECRET is the demo secret; choose your own (at least 32 characters)")
        if self.jwt_secret and len(self.jwt_secret) < 32:
            raise SettingsError("PHT_JWT_SECRET must be at least 32 characters long")
        if self.max_body_bytes <= 0 or self.query_timeout_s <= 0 or self.query_result_limit <= 0:
            raise SettingsError("PHT_MAX_BODY_BYTES, PHT_QUERY_TIMEOUT_S and PHT_QUERY_RESULT_LIMIT must be positive")
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
            jwt_secret=e.get("PHT_JWT_SECRET") or None,
            jwks_url=e.get("PHT_JWKS_URL") or None,
            jwt_issuer=e.get("PHT_JWT_ISSUER") or None,
            jwt_audience=e.get("PHT_JWT_AUDIENCE") or None,
            max_body_bytes=int(num("PHT_MAX_BODY_BYTES", 1_000_000)),
            query_timeout_s=num("PHT_QUERY_TIMEOUT_S", 10.0),
            query_result_limit=int(num("PHT_QUERY_RESULT_LIMIT", 10_000)),
            base_iri=e.get("PHT_BASE_IRI", DEFAULT_BASE_IRI),
            station_timeout_s=num("PHT_STATION_TIMEOUT_S", 3600.0),
            results_store_url=e.get("PHT_RESULTS_STORE_URL") or None,
            result_link_ttl_s=num("PHT_RESULT_LINK_TTL_S", 300.0),
            demo=e.get("PHT_DEMO", "") == "1",
        )

"""Settings of the MPU: one frozen object, read once at start-up from ``PHT_MPU_*`` (the only environment reads),
validated there so that a misconfiguration stops the MPU with one clear sentence."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from graph_store import DEFAULT_BASE_IRI, station_graph

__all__ = ["MpuSettings", "MpuSettingsError", "DEFAULT_POLICY"]

DEFAULT_POLICY = Path(__file__).resolve().parent / "default-policy.ttl"
"""The safe default filter policy shipped with the MPU."""


class MpuSettingsError(ValueError):
    """The configuration cannot work; the message says which setting and why."""


@dataclass(frozen=True)
class MpuSettings:
    """Everything one station's MPU needs.

    Pushing needs ``central_url``, ``private_key_path`` (the station's Ed25519 key, PEM) and a station token
    (``token`` or ``token_file``, re-read when it changes); without ``central_url`` events only queue up.
    ``base_iri`` must equal the central service's ``PHT_BASE_IRI`` (event IRIs name its trains).
    """

    station_id: str
    data_dir: Path = Path("var/mpu")
    central_url: str | None = None
    private_key_path: Path | None = None
    token: str | None = None
    token_file: Path | None = None
    policy_path: Path = DEFAULT_POLICY
    base_iri: str = DEFAULT_BASE_IRI
    station_iri: str | None = None
    sample_interval_s: float = 10.0
    """Docker stats sampling interval; 0 turns sampling off."""
    batch_max_events: int = 500
    batch_max_bytes: int = 900_000
    outbox_max_bytes: int | None = None
    keep_received: int = 10_000
    ingest_token: str | None = None
    """If set, ``POST`` calls to the MPU need ``Authorization: Bearer <ingest_token>``."""
    metrics_token: str | None = None
    """``GET /metrics`` needs ``Authorization: Bearer <metrics_token>``; unset, ``/metrics`` answers 401 to all."""
    secret_file: Path | None = None
    """The station's HMAC key for digests that leave (default: ``station-secret.key`` in ``data_dir``)."""
    max_events_per_post: int = 5_000
    push_timeout_s: float = 30.0
    max_backoff_s: float = 30.0
    policy_check_interval_s: float = 1.0

    @property
    def secret_path(self) -> Path:
        """Where the station's HMAC key is kept (made on the MPU's first start)."""
        return self.secret_file if self.secret_file is not None else Path(self.data_dir) / "station-secret.key"

    def __post_init__(self) -> None:
        try:
            station_graph(self.station_id)
        except ValueError as e:
            raise MpuSettingsError(f"PHT_MPU_STATION: {e}") from None
        if self.central_url is not None:
            if not self.central_url.startswith(("http://", "https://")):
                raise MpuSettingsError("PHT_MPU_CENTRAL_URL must be an http:// or https:// URL")
            if self.private_key_path is None:
                raise MpuSettingsError("pushing to the central service needs the station's private key: set "
                                       "PHT_MPU_PRIVATE_KEY")
            if not self.token and self.token_file is None:
                raise MpuSettingsError("pushing to the central service needs a station token: set PHT_MPU_TOKEN "
                                       "or PHT_MPU_TOKEN_FILE")
        if not self.base_iri.endswith(("/", "#")):
            raise MpuSettingsError("PHT_MPU_BASE_IRI must end with '/' or '#'")
        if self.sample_interval_s < 0 or self.push_timeout_s <= 0 or self.max_backoff_s <= 0 \
                or self.policy_check_interval_s <= 0:
            raise MpuSettingsError("intervals and time-outs must be positive (PHT_MPU_SAMPLE_INTERVAL_S may be 0)")
        if min(self.batch_max_events, self.batch_max_bytes, self.max_events_per_post) <= 0:
            raise MpuSettingsError("batch and post limits must be positive")
        if self.outbox_max_bytes is not None and self.outbox_max_bytes < 64 * 1024:
            raise MpuSettingsError("PHT_MPU_OUTBOX_MAX_BYTES must be at least 65536")
        if self.metrics_token is not None and len(self.metrics_token) < 16:
            raise MpuSettingsError("PHT_MPU_METRICS_TOKEN must have at least 16 characters (it guards /metrics)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> MpuSettings:
        """Read ``PHT_MPU_*`` variables (``os.environ`` by default); ``overrides`` (not None) win."""
        e = os.environ if env is None else env

        def num(name: str, default: float) -> float:
            try:
                return float(e.get(name, default))
            except ValueError:
                raise MpuSettingsError(f"{name} must be a number, got {e[name]!r}") from None

        def path(name: str) -> Path | None:
            return Path(e[name]) if e.get(name) else None

        quota = e.get("PHT_MPU_OUTBOX_MAX_BYTES")
        values: dict[str, object] = dict(
            station_id=e.get("PHT_MPU_STATION", ""),
            data_dir=path("PHT_MPU_DATA_DIR") or Path("var/mpu"),
            central_url=e.get("PHT_MPU_CENTRAL_URL") or None,
            private_key_path=path("PHT_MPU_PRIVATE_KEY"),
            token=e.get("PHT_MPU_TOKEN") or None,
            token_file=path("PHT_MPU_TOKEN_FILE"),
            policy_path=path("PHT_MPU_POLICY") or DEFAULT_POLICY,
            base_iri=e.get("PHT_MPU_BASE_IRI", DEFAULT_BASE_IRI),
            station_iri=e.get("PHT_MPU_STATION_IRI") or None,
            sample_interval_s=num("PHT_MPU_SAMPLE_INTERVAL_S", 10.0),
            batch_max_events=int(num("PHT_MPU_BATCH_MAX_EVENTS", 500)),
            outbox_max_bytes=int(num("PHT_MPU_OUTBOX_MAX_BYTES", 0)) if quota else None,
            ingest_token=e.get("PHT_MPU_INGEST_TOKEN") or None,
            metrics_token=e.get("PHT_MPU_METRICS_TOKEN") or None,
            secret_file=path("PHT_MPU_SECRET_FILE"),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]  # each value was read above as its field's type

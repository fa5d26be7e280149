"""What happens at the station, told to its metadata processing unit (``station_mpu``) over loopback HTTP.

The agent never imports the MPU: it posts JSON events (schema in docs/mpu.md) and carries on whatever the
answer. Delivery to the central graph is the MPU's job (its on-disk outbox); the lifecycle itself does not
depend on these events, because every step already went through the central service.
"""

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from client import WorkItem

log = logging.getLogger("pht.station.events")


class _Result(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def logs(self) -> bytes: ...
    @property
    def failure(self) -> str | None: ...


class EventSink:
    """Posts events to the MPU at ``mpu_url`` (``None``: the station runs without one; events are logged), with
    ``Authorization: Bearer <ingest_token>`` when the MPU has one (``PHT_MPU_INGEST_TOKEN``, where the
    loopback is shared)."""

    def __init__(self, mpu_url: str | None, station_id: str, *, ingest_token: str | None = None,
                 timeout_s: float = 2.0) -> None:
        self.url = mpu_url.rstrip("/") + "/events" if mpu_url else None
        self.station_id = station_id
        headers = {"Authorization": f"Bearer {ingest_token}"} if ingest_token else None
        self._http = httpx.Client(timeout=timeout_s, headers=headers) if self.url else None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _post(self, event: dict[str, Any]) -> None:
        event.setdefault("time", datetime.now(UTC).isoformat())
        if self._http is None or self.url is None:
            log.debug("event (no MPU configured): %s", event)
            return
        try:
            response = self._http.post(self.url, json=[event])
            if response.status_code >= 400:
                log.warning("the MPU refused an event (%s): %s", response.status_code, response.text[:300])
        except httpx.HTTPError as e:
            log.warning("the MPU at %s is unreachable, event not recorded: %s", self.url, e)

    def state_change(self, work: WorkItem, to: str, reason: str, *, from_state: str | None = None) -> None:
        self._post({"kind": "state-change", "train": work.train, "execution": work.execution,
                    "from_state": from_state, "to_state": to, "role": "station", "reason": reason[:4000] or None})

    def error(self, work: WorkItem, message: str) -> None:
        self._post({"kind": "error", "train": work.train, "execution": work.execution,
                    "message": message[:4000] or "unknown error"})

    def started_running(self, work: WorkItem) -> None:
        self._post({"kind": "started-running", "train": work.train, "execution": work.execution})

    def finished_running(self, work: WorkItem, result: _Result) -> None:
        self._post({"kind": "finished-running", "train": work.train, "execution": work.execution,
                    "success": result.ok})
        self._post({"kind": "log", "train": work.train, "execution": work.execution,
                    "log_sha256": hashlib.sha256(result.logs).hexdigest(),
                    "message": result.logs[-1000:].decode("utf-8", "replace").strip() or None})

"""Pushing batches of filtered events to the central service: signed by the station, authenticated as it.

``POST {central}/api/stations/{station}/metadata`` with the batch as N-Triples and the signature headers of
:mod:`graph_store._signed_batch`. The answer decides what happens to the batch (see :class:`PushResult`):
2xx delivered; 400 / 422 refused for good (with the events the central side names); 413 too large (split);
anything else -- the central service down, 5xx, an expired token, an unregistered key -- is retried later,
because it is not the events' fault and nothing may be lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from graph_store import BATCH_HEADER, BATCH_MEDIA_TYPE, KEY_ID_HEADER, SIGNATURE_HEADER, key_id, sign_batch

from ._outbox import Pending

__all__ = ["Pusher", "PushResult", "TokenFile", "load_private_key"]


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """The station's Ed25519 private key from a PEM file (unencrypted PKCS#8); ValueError with a sentence."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read the station's private key {path}: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path} is not an unencrypted PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} holds a {type(key).__name__}, but stations sign with Ed25519 keys")
    return key


class TokenFile:
    """The station's bearer token, read from a file and re-read when the file changes (token rotation)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def __call__(self) -> str:
        try:
            st = os.stat(self.path)
            if (st.st_mtime_ns, st.st_size) != self._stamp:
                self._token = self.path.read_text().strip()
                self._stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            pass  # keep the last token; the central service will say if it is no good
        return self._token


@dataclass(frozen=True)
class PushResult:
    """``delivered`` (acknowledged), ``refused`` (for good: ``refused`` names events and reasons when the
    central side did) or ``retry`` (later; ``smaller`` if the batch was too large)."""

    outcome: Literal["delivered", "refused", "retry"]
    status: int | None
    detail: str
    refused: dict[str, str] = field(default_factory=dict)
    smaller: bool = False


class Pusher:
    """Signs and sends batches for one station."""

    def __init__(self, *, central_url: str, station_id: str, private_key: Ed25519PrivateKey,
                 token: Callable[[], str], client: httpx.Client | None = None, timeout_s: float = 30.0) -> None:
        self.url = central_url.rstrip("/") + f"/api/stations/{station_id}/metadata"
        self.station_id = station_id
        self._key = private_key
        self.key_id = key_id(private_key.public_key())
        self._token = token
        self._client = client if client is not None else httpx.Client(timeout=timeout_s)

    def push(self, batch: Sequence[Pending]) -> PushResult:
        """Send one batch; never raises for what the network or the central service does."""
        body = b"".join(p.body for p in batch)
        batch_id = f"b{batch[0].seq}-{batch[-1].seq}-{len(batch)}"
        headers = {"Content-Type": BATCH_MEDIA_TYPE, "Authorization": f"Bearer {self._token()}",
                   BATCH_HEADER: batch_id, KEY_ID_HEADER: self.key_id,
                   SIGNATURE_HEADER: sign_batch(self._key, self.station_id, batch_id, body)}
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as e:
            return PushResult("retry", None, f"the central service cannot be reached: {type(e).__name__}: {e}")
        status = response.status_code
        detail = _detail(response)
        if 200 <= status < 300:
            return PushResult("delivered", status, detail)
        if status in (400, 422):
            refused = {}
            try:
                for item in response.json().get("refused", []) or []:
                    refused[str(item["subject"])] = str(item["reason"])
            except (ValueError, KeyError, TypeError, AttributeError):
                refused = {}
            return PushResult("refused", status, detail, refused)
        return PushResult("retry", status, detail, smaller=status == 413)

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", ""))[:500]
    except (ValueError, AttributeError):
        return response.text[:500]

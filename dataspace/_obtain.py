"""Obtaining one dataset from a provider, for a participant that is not a connector deployment (a station).

A station that runs a data-space train negotiates for the declared datasets with its own identity and pulls them
before the run. It needs the consumer side only: :class:`DataspaceConsumer` keeps an in-memory connector whose
callback endpoints (``{callback_url}/callback/...``, where providers send agreements and transfer starts) are
served on ``listen_host:listen_port`` while it is open. Its identity token is read from a file at each message
(so the station admin can renew it); neither that token nor the single-use pull token is ever returned, stored,
logged or written to a graph: the caller receives the bytes only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from graph_store import EmbeddedStore

from ._app import connector_app
from ._connector import Connector
from ._consumer import TransferFailed
from ._core import ConnectorSettings
from ._identity import TrustedIssuers, load_issuer_key
from ._messages import SHA256_KEY

__all__ = ["ConsumerSettings", "DataspaceConsumer"]


@dataclass(frozen=True)
class ConsumerSettings:
    """A consumer-only participant: its id, where providers reach its callbacks (empty: on loopback at the port
    chosen when serving, for tests), whom it trusts, its token file."""

    participant_id: str
    callback_url: str
    issuer: str
    issuer_key: Ed25519PublicKey
    identity_token_file: Path
    data_dir: Path
    listen_host: str = "0.0.0.0"
    listen_port: int = 8091
    wait_timeout_s: float = 30.0
    max_bytes: int = 1024**3  #: the largest dataset accepted (the catalog's size is checked first, then the bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], prefix: str, data_dir: Path) -> ConsumerSettings | None:
        """Read ``{prefix}PARTICIPANT_ID``, ``ISSUER``, ``ISSUER_KEY`` (PEM file), ``IDENTITY_TOKEN_FILE`` and
        optionally ``CALLBACK_URL`` (where providers reach the callbacks; unset: loopback, for a provider on the same
        host only), ``LISTEN`` (``host:port``, default ``0.0.0.0:8091``) and ``MAX_BYTES`` (the largest dataset
        accepted, default 1 GiB); None when no participant id is set.

        :raises ValueError: one sentence naming the variable that is missing or wrong.
        """
        if not env.get(prefix + "PARTICIPANT_ID", "").strip():
            return None

        def need(name: str) -> str:
            value = env.get(prefix + name, "").strip()
            if not value:
                raise ValueError(f"{prefix}{name} is required when {prefix}PARTICIPANT_ID is set.")
            return value

        key = load_issuer_key(Path(need("ISSUER_KEY")), prefix + "ISSUER_KEY")
        token_file = Path(need("IDENTITY_TOKEN_FILE"))
        host, _, port = env.get(prefix + "LISTEN", "0.0.0.0:8091").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{prefix}LISTEN must be host:port.")
        max_bytes = env.get(prefix + "MAX_BYTES", str(cls.max_bytes)).strip()
        if not max_bytes.isdigit() or int(max_bytes) < 1:
            raise ValueError(f"{prefix}MAX_BYTES must be a positive number of bytes.")
        return cls(participant_id=need("PARTICIPANT_ID"), callback_url=env.get(prefix + "CALLBACK_URL", "").strip(),
                   issuer=need("ISSUER"),
                   issuer_key=key, identity_token_file=token_file, data_dir=data_dir, listen_host=host,
                   listen_port=int(port), max_bytes=int(max_bytes))


class DataspaceConsumer:
    """Negotiates and pulls datasets as ``settings.participant_id``; serves its callbacks until :meth:`close`."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.settings = settings
        self._store = EmbeddedStore(None)
        self._store.load_vocabulary()
        token_file = settings.identity_token_file
        self._connector = Connector(
            ConnectorSettings(participant_id=settings.participant_id, base_url=settings.callback_url,
                              data_dir=settings.data_dir, wait_timeout_s=settings.wait_timeout_s),
            self._store, trusted=TrustedIssuers({settings.issuer: settings.issuer_key}),
            identity_token=lambda: token_file.read_text(encoding="utf-8").strip())
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def obtain(self, provider_url: str, dataset_id: str) -> bytes:
        """The bytes of ``dataset_id`` from the provider at ``provider_url``: its catalog entry, an agreement under
        its offer, one pull with a single-use token, checked against the catalog's SHA-256.

        :raises TransferFailed: one sentence: the provider is unreachable, does not offer the dataset, refuses the
            negotiation or transfer (policy, withdrawn), or sent other bytes.
        """
        if not self.settings.identity_token_file.is_file():
            raise TransferFailed("The station's data-space identity token file does not exist.")
        self._serve()
        consumer = self._connector.consumer
        try:
            catalog = consumer.request_catalog(provider_url)
            datasets = [d for d in _as_list(catalog.get("dataset")) if d.get("@id") == dataset_id]
            if not datasets:
                raise TransferFailed(f"The provider at {provider_url} does not offer dataset {dataset_id}.")
            dataset = datasets[0]
            size = dataset.get("dcat:byteSize")
            if isinstance(size, int) and size > self.settings.max_bytes:
                raise TransferFailed(f"Dataset {dataset_id} has {size} bytes, more than the "
                                     f"{self.settings.max_bytes} accepted here.")
            agreement = consumer.negotiate(provider_url, dataset, provider_id=catalog["participantId"])
            return consumer.pull(provider_url, agreement, sha256=dataset.get(SHA256_KEY),
                                 max_bytes=self.settings.max_bytes)
        except TransferFailed:
            raise
        except (RuntimeError, OSError, httpx.HTTPError) as e:  # refusals, unreachable, a provider that went quiet
            raise TransferFailed(f"Dataset {dataset_id} could not be obtained from {provider_url}: "
                                 f"{_first_line(e)}") from None

    def _serve(self) -> None:
        with self._lock:
            if self._server is not None:
                return
            server = uvicorn.Server(uvicorn.Config(connector_app(self._connector), host=self.settings.listen_host,
                                                   port=self.settings.listen_port, log_level="warning"))
            thread = threading.Thread(target=server.run, name="dataspace-consumer", daemon=True)
            thread.start()
            deadline = time.monotonic() + 10
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    server.should_exit = True
                    raise TransferFailed("The station's data-space callback endpoint could not be started on "
                                         f"{self.settings.listen_host}:{self.settings.listen_port}.")
                time.sleep(0.02)
            if not self.settings.callback_url:  # a port chosen at start (tests): callbacks on loopback
                self._connector.serving_at(f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}")
            self._server, self._thread = server, thread

    def close(self) -> None:
        """Stop serving callbacks and close the connector."""
        with self._lock:
            if self._server is not None and self._thread is not None:
                self._server.should_exit = True
                self._thread.join(timeout=10)
            self._server = self._thread = None
        self._connector.close()
        self._store.close()


def _as_list(value: Any) -> list[dict[str, Any]]:
    return value if isinstance(value, list) else [value] if isinstance(value, dict) else []


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__

"""One participant's connector: the provider and consumer sides over one graph and one identity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx

from graph_store import GraphStore

from ._consumer import Consumer
from ._core import ConnectorSettings, Core
from ._identity import TrustedIssuers
from ._provider import Provider

__all__ = ["Connector"]


class Connector:
    """``provider`` publishes and answers DSP requests; ``consumer`` asks other connectors and takes callbacks.

    ``store`` must have the vocabulary loaded (``store.load_vocabulary()``); the connector writes only its own
    graph (``DATASPACE_GRAPH``). ``identity_token`` returns this participant's current token.
    """

    def __init__(self, settings: ConnectorSettings, store: GraphStore, *, trusted: TrustedIssuers,
                 identity_token: Callable[[], str], http: httpx.Client | None = None) -> None:
        self.core = Core(settings, store, trusted, identity_token, http or httpx.Client(timeout=30.0))
        self.provider = Provider(self.core)
        self.consumer = Consumer(self.core)

    @property
    def settings(self) -> ConnectorSettings:
        return self.core.settings

    def serving_at(self, base_url: str) -> None:
        """Set the URL the connector is reachable at, once its server listens (a port chosen at start)."""
        self.core.settings = replace(self.core.settings, base_url=base_url)

    def close(self) -> None:
        """Close the HTTP client."""
        self.core.http.close()

"""Two dataspace connectors (provider and consumer) served by uvicorn on loopback, for the DSP tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dataspace import Connector, ConnectorSettings, IdentityIssuer, TrustedIssuers, connector_app
from graph_store import EmbeddedStore
from local_platform.platform import Served, serve_in_thread

CONSORTIUM = "urn:consortium:breast-cancer-network"
PURPOSE = "cancer-research"
TRAIN = "https://pht.example.org/id/trains/train-0001"


@dataclass
class Participant:
    connector: Connector
    served: Served
    store: EmbeddedStore

    @property
    def url(self) -> str:
        return self.served.url


@contextmanager
def participant(workdir: Path, name: str, issuer: IdentityIssuer, *, memberships: tuple[str, ...] = (),
                purposes: tuple[str, ...] = (), **settings: float) -> Iterator[Participant]:
    """A connector for ``name`` (``urn:participant:<name>``), its own in-memory store, served on loopback."""
    store = EmbeddedStore(None)
    store.load_vocabulary()
    pid = f"urn:participant:{name}"
    token = issuer.issue(pid, memberships=memberships, purposes=purposes)
    connector = Connector(
        ConnectorSettings(participant_id=pid, base_url="http://unset", data_dir=workdir / name,
                          base_iri=f"https://{name}.example.org/id/", **settings),  # type: ignore[arg-type]
        store, trusted=TrustedIssuers({issuer.issuer: issuer.key.public_key()}), identity_token=lambda: token)
    served = serve_in_thread(connector_app(connector), f"connector-{name}")
    connector.serving_at(served.url)
    try:
        yield Participant(connector, served, store)
    finally:
        served.stop()
        connector.close()
        store.close()

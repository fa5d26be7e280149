"""The connector as a deployable: its one settings class, read once from ``PHT_DSP_*`` at start-up.

| variable | meaning |
| --- | --- |
| ``PHT_DSP_PARTICIPANT_ID`` | this participant's id, as its identity token names it (``sub``) |
| ``PHT_DSP_BASE_URL`` | where other connectors reach this one (its DSP paths and callbacks) |
| ``PHT_DSP_STORE_PATH`` or ``PHT_DSP_STORE_IN_MEMORY=1`` | the connector's graph: a directory, or explicitly none |
| ``PHT_DSP_DATA_DIR`` | published files and received data |
| ``PHT_DSP_ADMIN_TOKEN`` | the researcher's token for publishing and withdrawing (at least 32 characters) |
| ``PHT_DSP_ISSUER``, ``PHT_DSP_ISSUER_KEY`` | the trusted credential issuer's name and its Ed25519 public key (PEM file) |
| ``PHT_DSP_IDENTITY_TOKEN_FILE`` | this participant's identity token, re-read on every message (so it can be renewed) |
| ``PHT_DSP_PORT`` | the port to listen on (default 8090) |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._core import ConnectorSettings
from ._identity import TrustedIssuers, load_issuer_key

__all__ = ["ServiceSettings"]


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``python -m dataspace`` needs, validated at start-up."""

    connector: ConnectorSettings
    store_path: Path | None
    admin_token: str
    trusted: TrustedIssuers
    identity_token_file: Path
    port: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServiceSettings:
        """Read and check the settings; :raises ValueError: one sentence naming the variable."""
        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ValueError(f"{name} is required.")
            return value

        store = env.get("PHT_DSP_STORE_PATH", "").strip()
        if not store and env.get("PHT_DSP_STORE_IN_MEMORY") != "1":
            raise ValueError("Set PHT_DSP_STORE_PATH (or PHT_DSP_STORE_IN_MEMORY=1, losing everything at a restart).")
        admin = need("PHT_DSP_ADMIN_TOKEN")
        if len(admin) < 32:
            raise ValueError("PHT_DSP_ADMIN_TOKEN must have at least 32 characters.")
        key = load_issuer_key(Path(need("PHT_DSP_ISSUER_KEY")), "PHT_DSP_ISSUER_KEY")
        token_file = Path(need("PHT_DSP_IDENTITY_TOKEN_FILE"))
        if not token_file.is_file():
            raise ValueError(f"PHT_DSP_IDENTITY_TOKEN_FILE {token_file} does not exist.")
        try:
            port = int(env.get("PHT_DSP_PORT", "8090"))
        except ValueError:
            raise ValueError("PHT_DSP_PORT must be a number.") from None
        return cls(
            connector=ConnectorSettings(participant_id=need("PHT_DSP_PARTICIPANT_ID"),
                                        base_url=need("PHT_DSP_BASE_URL"), data_dir=Path(need("PHT_DSP_DATA_DIR"))),
            store_path=Path(store) if store else None, admin_token=admin,
            trusted=TrustedIssuers({need("PHT_DSP_ISSUER"): key}), identity_token_file=token_file, port=port)

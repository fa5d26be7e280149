"""The data-space connector in the deployments: its compose service and the station's consumer settings, read as
the programs read them (the compose test does not start the ``dataspace`` profile; the Kubernetes base and overlay
are rendered and validated with the others in tests/test_deploy_kubernetes.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dataspace import ConsumerSettings, IdentityIssuer, ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def defaults(env: dict[str, str], **given: str) -> dict[str, str]:
    """``${NAME:-default}`` as compose substitutes it, with ``given`` set in the shell."""
    return {k: re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: given.get(m[1], m[2]), str(v)) for k, v in env.items()}


def issuer_files(folder: Path, issuer: IdentityIssuer, participant: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    public = issuer.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    (folder / "issuer.pub.pem").write_bytes(public)
    (folder / "dataspace-issuer.pub.pem").write_bytes(public)
    (folder / "identity.jwt").write_text(issuer.issue(participant))
    (folder / "dataspace.jwt").write_text(issuer.issue(participant))


def test_the_provider_connector_is_locked_down_on_its_own_network_and_started_only_on_request() -> None:
    service = compose()["services"]["provider-connector"]
    assert service["profiles"] == ["dataspace"] and service["command"] == ["python", "-m", "dataspace"]
    assert service["read_only"] is True and service["cap_drop"] == ["ALL"] and service["user"] == "10002:10002"
    assert set(service["networks"]) == {"dataspace-provider", "wan"}
    assert compose()["networks"]["dataspace-provider"] == {"internal": True}
    assert service["healthcheck"]["test"][:2] == ["CMD", "python"]


def test_its_environment_is_what_the_connector_reads(tmp_path: Path) -> None:
    """With the mounted files in place (here: under tmp_path), the settings from the compose environment are
    complete once the admin token is given; without it the connector refuses to start with one sentence."""
    service = compose()["services"]["provider-connector"]
    issuer = IdentityIssuer.generate("urn:issuer:data-space")
    issuer_files(tmp_path, issuer, "urn:participant:provider")
    env = {k: v.replace("/etc/pht/dataspace", str(tmp_path)) for k, v in defaults(service["environment"]).items()}
    with pytest.raises(ValueError, match="^PHT_DSP_ADMIN_TOKEN is required.$"):
        ServiceSettings.from_env(env)
    settings = ServiceSettings.from_env({**env, "PHT_DSP_ADMIN_TOKEN": "a" * 32})
    assert settings.connector.participant_id == "urn:participant:provider" and settings.port == 8090
    assert settings.connector.base_url == "http://provider-connector:8090"
    assert "urn:issuer:data-space" in settings.trusted.keys


def test_a_station_agent_has_a_data_space_identity_only_when_given_one(tmp_path: Path) -> None:
    env = compose()["services"]["aachen-agent"]["environment"]
    station = {k: v.replace("/etc/pht/keys", str(tmp_path)) for k, v in defaults(env).items()}
    assert ConsumerSettings.from_env(station, "PHT_STATION_DSP_", tmp_path) is None
    issuer = IdentityIssuer.generate("urn:issuer:data-space")
    issuer_files(tmp_path, issuer, "urn:participant:aachen")
    given = {k: v.replace("/etc/pht/keys", str(tmp_path))
             for k, v in defaults(env, PHT_AACHEN_DSP_PARTICIPANT_ID="urn:participant:aachen").items()}
    settings = ConsumerSettings.from_env(given, "PHT_STATION_DSP_", tmp_path)
    assert settings is not None and settings.participant_id == "urn:participant:aachen"
    assert (settings.callback_url, settings.listen_port) == ("http://aachen-agent:8091", 8091)
    assert settings.identity_token_file == tmp_path / "dataspace.jwt"

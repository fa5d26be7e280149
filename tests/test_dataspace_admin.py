"""A researcher publishes and withdraws through their connector's admin routes (``pht result publish`` /
``withdraw``), behind the connector's admin token; the deployable refuses missing or weak settings."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from dataspace import IdentityIssuer, ServiceSettings, admin_router
from dataspace._messages import message
from local_platform.platform import serve_in_thread
from pht_cli.main import app as pht
from dataspace_helpers import Participant, participant

ISSUER = IdentityIssuer.generate("urn:issuer:admin-tests")
ADMIN = secrets.token_urlsafe(32)
runner = CliRunner()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Participant, str]]:
    """A provider connector with its admin routes, served (second server on the same connector)."""
    from dataspace import connector_app
    with participant(tmp_path_factory.mktemp("admin"), "provider", ISSUER) as p:
        app = connector_app(p.connector)
        app.include_router(admin_router(p.connector, ADMIN))
        served = serve_in_thread(app, "connector-admin")
        try:
            yield p, served.url
        finally:
            served.stop()


def catalog_ids(p: Participant) -> set[str]:
    token = ISSUER.issue("urn:participant:reader")
    r = httpx.post(f"{p.url}/catalog/request", json=message("CatalogRequestMessage"),
                   headers={"Authorization": f"Bearer {token}"})
    return {d["@id"] for d in r.json().get("dataset", [])}


def test_publish_and_withdraw_from_the_command_line(provider, tmp_path: Path) -> None:
    p, url = provider
    f = tmp_path / "result.tar.gz"
    f.write_bytes(b"plain packed result")
    result = runner.invoke(pht, ["result", "publish", "https://pht.example.org/id/trains/t-1", "--file", str(f),
                                 "--policy", "purpose=cancer-research", "--title", "Cohort count",
                                 "--connector", url, "--connector-token", ADMIN])
    assert result.exit_code == 0, result.output
    iri = result.output.split()[1]
    assert iri in catalog_ids(p)
    result = runner.invoke(pht, ["result", "withdraw", iri, "--connector", url, "--connector-token", ADMIN])
    assert result.exit_code == 0, result.output
    assert iri not in catalog_ids(p)
    again = runner.invoke(pht, ["result", "withdraw", iri, "--connector", url, "--connector-token", ADMIN])
    assert again.exit_code == 1 and "withdrawn already" in again.output


@pytest.mark.parametrize(("args", "sentence"), [
    (["--connector-token", "wrong" * 8], "admin token is required"),
    (["--connector-token", ADMIN, "--policy", "colour=blue"], "is not purpose="),
    (["--connector-token", ADMIN, "--policy", "until=tomorrow"], "not an ISO 8601"),
])
def test_a_refused_publish_exits_1_with_one_sentence_and_publishes_nothing(provider, tmp_path: Path, args: list[str],
                                                                          sentence: str) -> None:
    p, url = provider
    f = tmp_path / "r.bin"
    f.write_bytes(b"x")
    before = catalog_ids(p)
    result = runner.invoke(pht, ["result", "publish", "urn:train:1", "--file", str(f), "--connector", url, *args])
    assert result.exit_code == 1 and sentence in result.output, result.output
    assert catalog_ids(p) == before


def test_the_deployable_refuses_missing_or_weak_settings(tmp_path: Path) -> None:
    key = tmp_path / "issuer.pem"
    key.write_bytes(ISSUER.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    token = tmp_path / "token"
    token.write_text(ISSUER.issue("urn:participant:me"))
    env = {"PHT_DSP_PARTICIPANT_ID": "urn:participant:me", "PHT_DSP_BASE_URL": "http://127.0.0.1:8090",
           "PHT_DSP_STORE_PATH": str(tmp_path / "store"), "PHT_DSP_DATA_DIR": str(tmp_path / "data"),
           "PHT_DSP_ADMIN_TOKEN": ADMIN, "PHT_DSP_ISSUER": ISSUER.issuer, "PHT_DSP_ISSUER_KEY": str(key),
           "PHT_DSP_IDENTITY_TOKEN_FILE": str(token)}
    assert ServiceSettings.from_env(env).connector.participant_id == "urn:participant:me"
    for change, sentence in [({"PHT_DSP_STORE_PATH": ""}, "PHT_DSP_STORE_PATH"),
                             ({"PHT_DSP_ADMIN_TOKEN": "short"}, "at least 32"),
                             ({"PHT_DSP_ISSUER_KEY": str(token)}, "not a readable PEM"),
                             ({"PHT_DSP_PARTICIPANT_ID": ""}, "PHT_DSP_PARTICIPANT_ID is required")]:
        with pytest.raises(ValueError, match=sentence):
            ServiceSettings.from_env({**env, **change})


def test_python_m_dataspace_serves_a_catalog(tmp_path: Path) -> None:
    """The deployable as an operator starts it: settings from the environment, an on-disk store, its catalog."""
    import os
    import socket
    import subprocess
    import sys
    import time

    key = tmp_path / "issuer.pem"
    key.write_bytes(ISSUER.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    token = tmp_path / "token"
    token.write_text(ISSUER.issue("urn:participant:me"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PHT_DSP_PARTICIPANT_ID": "urn:participant:me", "PHT_DSP_BASE_URL": f"http://127.0.0.1:{port}",
           "PHT_DSP_STORE_PATH": str(tmp_path / "store"), "PHT_DSP_DATA_DIR": str(tmp_path / "data"),
           "PHT_DSP_ADMIN_TOKEN": ADMIN, "PHT_DSP_ISSUER": ISSUER.issuer, "PHT_DSP_ISSUER_KEY": str(key),
           "PHT_DSP_IDENTITY_TOKEN_FILE": str(token), "PHT_DSP_PORT": str(port)}
    process = subprocess.Popen([sys.executable, "-m", "dataspace"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read().decode() \
                if process.poll() is not None else "no answer within 60 s"
            time.sleep(0.2)
        r = httpx.post(f"http://127.0.0.1:{port}/catalog/request", json=message("CatalogRequestMessage"),
                       headers={"Authorization": f"Bearer {token.read_text()}"})
        assert r.status_code == 200 and r.json()["participantId"] == "urn:participant:me"
    finally:
        process.terminate()
        process.wait(timeout=30)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    bad = subprocess.run([sys.executable, "-m", "dataspace"], env={**env, "PHT_DSP_ADMIN_TOKEN": "x"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "at least 32 characters" in bad.stderr and "Traceback" not in bad.stderr

"""``python -m dataspace identity``: an issuer key pair and a participant's token that a connector accepts."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dataspace import IdentityRefused, TrustedIssuers
from dataspace._identity_cli import identity_main

REPO = Path(__file__).resolve().parent.parent


def identity(*args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process (a subprocess costs seconds of imports; ``__main__`` is run once, below)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = identity_main(list(args))
    return subprocess.CompletedProcess(["identity", *args], code, out.getvalue(), err.getvalue())


def test_python_m_dataspace_identity_runs_the_command(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "dataspace", "identity", "keygen", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0 and (tmp_path / "issuer.pub.pem").is_file(), done.stderr


def test_keygen_then_issue_gives_a_token_a_connector_trusting_the_key_accepts(tmp_path: Path) -> None:
    done = identity("keygen", "--out", str(tmp_path / "issuer"))
    assert done.returncode == 0, done.stderr
    private, public = tmp_path / "issuer" / "issuer.pem", tmp_path / "issuer" / "issuer.pub.pem"
    assert private.stat().st_mode & 0o777 == 0o600
    again = identity("keygen", "--out", str(tmp_path / "issuer"))
    assert again.returncode == 1 and again.stderr.strip().endswith("remove it first or choose another folder.")
    token_file = tmp_path / "station.jwt"
    done = identity("issue", "--key", str(private), "--issuer", "urn:issuer:ds", "--participant", "urn:participant:a",
                    "--member", "urn:consortium:c", "--purpose", "cancer-research", "--purpose", "audit",
                    "--ttl-days", "7", "--out", str(token_file))
    assert done.returncode == 0 and done.stdout == "", done.stderr
    assert token_file.stat().st_mode & 0o777 == 0o600
    key = load_pem_public_key(public.read_bytes())
    assert isinstance(key, Ed25519PublicKey)
    claims = TrustedIssuers({"urn:issuer:ds": key}).verify(token_file.read_text())
    assert claims.participant == "urn:participant:a"
    assert claims.memberships == frozenset({"urn:consortium:c"})
    assert claims.purposes == frozenset({"cancer-research", "audit"})
    with pytest.raises(IdentityRefused, match="issuer is not trusted"):  # another issuer name: not this key's
        TrustedIssuers({"urn:issuer:other": key}).verify(token_file.read_text())


@pytest.mark.parametrize(("args", "sentence"), [
    (["--ttl-days", "0"], "--ttl-days must be more than 0"),
    (["--participant", "nobody"], "--participant must be a participant id"),
    (["--key", "/nonexistent.pem"], "is not a readable unencrypted PEM private key"),
])
def test_bad_input_is_one_sentence(tmp_path: Path, args: list[str], sentence: str) -> None:
    assert identity("keygen", "--out", str(tmp_path)).returncode == 0
    base = {"--key": str(tmp_path / "issuer.pem"), "--issuer": "urn:issuer:ds", "--participant": "urn:participant:a"}
    base.update(dict(zip(args[::2], args[1::2])))
    done = identity("issue", *[x for kv in base.items() for x in kv])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and sentence in lines[0] and "Traceback" not in done.stderr

"""``python -m dataspace obtain``: a consumer obtains a published dataset from a provider connector over HTTP."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from dataspace import IdentityIssuer, Policy
from dataspace._obtain_cli import obtain_main
from dataspace_helpers import CONSORTIUM, PURPOSE, TRAIN, participant

ISSUER = IdentityIssuer.generate("urn:issuer:data-space")


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = obtain_main(argv, env)
    return code, out.getvalue(), err.getvalue()


def test_a_consumer_obtains_a_dataset_and_a_refusal_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "issuer.pub.pem").write_bytes(
        ISSUER.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "me.jwt").write_text(ISSUER.issue("urn:participant:lab", memberships=(CONSORTIUM,),
                                                  purposes=(PURPOSE,)))
    env = {"PHT_DSP_PARTICIPANT_ID": "urn:participant:lab", "PHT_DSP_CALLBACK_URL": "",
           "PHT_DSP_LISTEN": "127.0.0.1:0", "PHT_DSP_ISSUER": ISSUER.issuer,
           "PHT_DSP_ISSUER_KEY": str(tmp_path / "issuer.pub.pem"), "PHT_DSP_IDENTITY_TOKEN_FILE": str(tmp_path / "me.jwt")}
    with participant(tmp_path, "provider", ISSUER) as provider:
        (tmp_path / "result.csv").write_bytes(b"site,n\naachen,12\n")
        result = provider.connector.provider.publish(
            train=TRAIN, title="Counts", data=tmp_path / "result.csv",
            policy=Policy.parse(f"purpose={PURPOSE},member={CONSORTIUM}"))
        code, out, err = run([provider.url, result.iri.value, "--out", str(tmp_path / "got.csv")], env)
        assert code == 0, err
        assert (tmp_path / "got.csv").read_bytes() == b"site,n\naachen,12\n" and "SHA-256 checked" in out
        code, _, err = run([provider.url, result.iri.value, "--out", str(tmp_path / "big.csv")],
                           {**env, "PHT_DSP_MAX_BYTES": "5"})
        assert code == 1 and err == f"error: Dataset {result.iri.value} has 17 bytes, more than the 5 accepted here.\n"
        provider.connector.provider.withdraw(result.iri)
        code, _, err = run([provider.url, result.iri.value, "--out", str(tmp_path / "again.csv")], env)
        assert code == 1 and err == f"error: The provider at {provider.url} does not offer dataset {result.iri.value}.\n"
        assert not (tmp_path / "again.csv").exists()
    code, _, err = run(["http://127.0.0.1:9", "urn:x:1", "--out", str(tmp_path / "x")],
                       {k: v for k, v in env.items() if k != "PHT_DSP_PARTICIPANT_ID"})
    assert code == 1 and err == "error: PHT_DSP_PARTICIPANT_ID is required.\n"

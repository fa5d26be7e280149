"""``python -m dataspace identity ...``: the data space's credential issuer on the command line.

``identity keygen --out DIR`` writes a new issuer key pair (``issuer.pem``, the private key, mode 0600, and
``issuer.pub.pem``, the public key every connector and station trusts as ``PHT_DSP_ISSUER_KEY`` /
``PHT_STATION_DSP_ISSUER_KEY``); ``identity issue`` signs one participant's identity token with it and writes it to
``--out`` (mode 0600) or prints it. The key is loaded and saved with ``cryptography``, the token signed by PyJWT
(:class:`IdentityIssuer`): nothing here is hand-made crypto. Mistakes exit 1 with one sentence.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)

from ._identity import IdentityIssuer

__all__ = ["identity_main"]

MAX_TTL_DAYS = 366


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dataspace identity",
                                     description="The data space's credential issuer: keys and identity tokens.")
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="write a new issuer key pair (issuer.pem, issuer.pub.pem) into a folder")
    keygen.add_argument("--out", type=Path, required=True, help="folder for the key pair (created; files not replaced)")
    issue = sub.add_parser("issue", help="sign a participant's identity token")
    issue.add_argument("--key", type=Path, required=True, help="the issuer's private key (issuer.pem)")
    issue.add_argument("--issuer", required=True, help="the issuer's name (iss), as connectors trust it")
    issue.add_argument("--participant", required=True, help="the participant id (sub), e.g. urn:participant:x")
    issue.add_argument("--member", action="append", default=[], help="a consortium it belongs to (repeatable)")
    issue.add_argument("--purpose", action="append", default=[], help="a purpose it is approved for (repeatable)")
    issue.add_argument("--ttl-days", type=float, default=30, help=f"validity in days (at most {MAX_TTL_DAYS})")
    issue.add_argument("--out", type=Path, help="write the token to this file (mode 0600) instead of printing it")
    return parser


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _keygen(out: Path) -> str:
    private, public = out / "issuer.pem", out / "issuer.pub.pem"
    if private.exists() or public.exists():
        raise ValueError(f"{out} already holds an issuer key; remove it first or choose another folder.")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    _write_private(private, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return f"wrote {private} (keep it secret) and {public} (give it to every connector and station)"


def _issue(args: argparse.Namespace) -> str | None:
    if not 0 < args.ttl_days <= MAX_TTL_DAYS:
        raise ValueError(f"--ttl-days must be more than 0 and at most {MAX_TTL_DAYS}.")
    if not args.participant.strip() or ":" not in args.participant:
        raise ValueError("--participant must be a participant id such as urn:participant:clinic-a.")
    try:
        key = load_pem_private_key(args.key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(f"--key {args.key} is not a readable unencrypted PEM private key ({e}).") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"--key {args.key} is not an Ed25519 key.")
    token = IdentityIssuer(args.issuer, key).issue(args.participant, memberships=args.member,
                                                   purposes=args.purpose, ttl_s=int(args.ttl_days * 86400))
    if args.out is None:
        return token
    if args.out.exists():
        args.out.unlink()  # a renewal replaces the old token; created again with mode 0600
    _write_private(args.out, token.encode("utf-8"))
    return None


def identity_main(argv: Sequence[str]) -> int:
    """Run ``identity`` with ``argv`` (after the word ``identity``); the exit code."""
    args = _parser().parse_args(list(argv))
    try:
        text = _keygen(args.out) if args.command == "keygen" else _issue(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if text is not None:
        print(text)
    return 0

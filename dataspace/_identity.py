"""Participants' identity tokens: who sends a DSP message, and the claims a policy is evaluated against.

DSP leaves the token's semantics open ("the semantics of such tokens are not part of this specification").
Here a token is a JWT (EdDSA, PyJWT) issued by a credential issuer the connector trusts (the data space's
authority: consortium membership, approved purposes); ``sub`` is the participant id, ``memberOf`` and
``purpose`` are the claims. A token is checked on every message: signature, issuer, expiry, audience-free.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ._policy import Claims

__all__ = ["IdentityIssuer", "IdentityRefused", "TrustedIssuers", "load_issuer_key"]


def load_issuer_key(path: Path, variable: str) -> Ed25519PublicKey:
    """The trusted issuer's public key from a PEM file (the setting ``variable`` names it).

    :raises ValueError: one sentence naming the variable: unreadable, not PEM, not Ed25519.
    """
    try:
        key = load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as e:
        raise ValueError(f"{variable} {path} is not a readable PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{variable} {path} is not an Ed25519 key.")
    return key


class IdentityRefused(ValueError):
    """A missing, malformed, expired or untrusted identity token; ``str()`` is one sentence."""


@dataclass(frozen=True)
class IdentityIssuer:
    """A credential issuer of the data space (one Ed25519 key); issues participants' identity tokens."""

    issuer: str
    key: Ed25519PrivateKey

    @classmethod
    def generate(cls, issuer: str) -> IdentityIssuer:
        """A new issuer with a fresh key (tests, a local data space)."""
        return cls(issuer, Ed25519PrivateKey.generate())

    def issue(self, participant: str, *, memberships: Iterable[str] = (), purposes: Iterable[str] = (),
              ttl_s: int = 3600) -> str:
        """A token naming ``participant`` with its claims, valid for ``ttl_s`` seconds."""
        now = int(time.time())
        payload = {"iss": self.issuer, "sub": participant, "iat": now, "exp": now + ttl_s,
                   "memberOf": sorted(memberships), "purpose": sorted(purposes)}
        return jwt.encode(payload, self.key, algorithm="EdDSA")


@dataclass(frozen=True)
class TrustedIssuers:
    """The issuers whose tokens a connector accepts, by issuer name."""

    keys: Mapping[str, Ed25519PublicKey]

    def verify(self, authorization: str | None) -> Claims:
        """The claims of the token in an ``Authorization`` header (``Bearer`` optional).

        :raises IdentityRefused: no token, a bad signature, an unknown issuer, expired, claims malformed.
        """
        if not authorization:
            raise IdentityRefused("The request carries no identity token (Authorization header).")
        token = authorization.removeprefix("Bearer ").strip()
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            key = self.keys.get(issuer) if isinstance(issuer, str) else None
            if key is None:
                raise IdentityRefused("The identity token's issuer is not trusted here.")
            claims: dict[str, Any] = jwt.decode(token, key, algorithms=["EdDSA"], issuer=issuer,
                                                options={"require": ["exp", "sub", "iss"]})
        except jwt.PyJWTError as e:
            raise IdentityRefused(f"The identity token is not valid: {e}.") from None
        members, purposes = claims.get("memberOf", []), claims.get("purpose", [])
        if not all(isinstance(x, list) and all(isinstance(v, str) for v in x) for x in (members, purposes)):
            raise IdentityRefused("The identity token's memberOf and purpose claims must be lists of strings.")
        return Claims(claims["sub"], frozenset(members), frozenset(purposes))

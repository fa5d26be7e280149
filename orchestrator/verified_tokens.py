"""Tokens this process has verified, kept briefly so that a client's next request skips the JWT work.

Decoding and checking a JWT (PyJWT parses the token twice and checks it character by character) is most of
what an authenticated quick request costs the service: a ``/sparql`` point query spends more on its token than
on its query. A verified token is reused for what it stands for until it expires, and never for more than
``max_age_s`` (a key the OIDC provider withdraws stops verifying within that time, well inside the JWKS cache's
five minutes). Only the checks that depend on the token alone are reused: revocations are still checked on
every request (``auth.TokenVerifier``). Keys are SHA-256 digests of the tokens, so the memo holds no tokens and
stays small (``size`` entries at most, the oldest dropped first).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .principal import Principal

__all__ = ["VerifiedTokens"]


class VerifiedTokens:
    """A bounded memo: token → (its principal, its claims), each entry valid until the token's ``exp`` and at
    most ``max_age_s`` after it was verified. Thread-safe."""

    def __init__(self, *, size: int = 4096, max_age_s: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.size, self.max_age_s, self._clock = size, max_age_s, clock
        self._entries: dict[bytes, tuple[float, Principal, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def get(self, token: str) -> tuple[Principal, Mapping[str, Any]] | None:
        """What ``token`` was verified to stand for, if that is still valid here."""
        key = self._key(token)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[key]
                return None
            return entry[1], entry[2]

    def put(self, token: str, principal: Principal, claims: Mapping[str, Any]) -> None:
        """Remember a token that has just passed every check that depends on the token alone."""
        now = self._clock()
        expires = claims.get("exp")
        until = now + self.max_age_s
        if isinstance(expires, (int, float)) and not isinstance(expires, bool):
            until = min(until, float(expires))
        if until <= now:
            return
        key = self._key(token)
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (until, principal, claims)

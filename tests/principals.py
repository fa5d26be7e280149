"""Principals and registration data shared by the engine-level tests (lifecycle, provenance)."""

from __future__ import annotations

from orchestrator.principal import Principal, Role

OPERATOR = Principal("ops", frozenset({Role.OPERATOR}))
ALICE = Principal("alice", frozenset({Role.RESEARCHER}))
BOB = Principal("bob", frozenset({Role.RESEARCHER}))
KEY = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADw+5Be8pE6f1TCQ5ILUvhMbG4vSCtzKjLvFYye8Qd6M=\n-----END PUBLIC KEY-----\n"
DIGEST = "sha256:" + "ab" * 32
STATIONS = ("aachen", "leipzig", "cologne")


def station(sid: str) -> Principal:
    """The token principal of station ``sid``'s software."""
    return Principal(f"station-{sid}", frozenset({Role.STATION}), sid)


def admin(sid: str) -> Principal:
    """The token principal of station ``sid``'s administrator."""
    return Principal(f"admin-{sid}", frozenset({Role.STATION_ADMIN}), sid)

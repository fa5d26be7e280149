"""The agent's station token: short-lived (12 hours by default), so a running agent renews it at half its life
(``POST /api/tokens/renew``) and, when the token came from a file, writes the new one there, where the
station's MPU reads it (``PHT_MPU_TOKEN_FILE``, re-read when it changes). A token whose renewal fails is
retried at the next round; once it has expired or been revoked, the station's admin must give the agent a new
one (``pht token issue --role station``, written to the token file), which it then renews by itself.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from client import CentralClient, ClientError

__all__ = ["TokenRenewal", "renewal_time"]

log = logging.getLogger("pht.station")


def renewal_time(token: str) -> float | None:
    """When ``token`` is half through its life (Unix seconds), read from its own ``iat`` and ``exp`` claims
    (not verified: the central service does that; a wrong value only makes the renewal early or late); None if
    the token says neither (then it is not renewed)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        issued, expires = float(claims["iat"]), float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None
    return issued + (expires - issued) / 2


class TokenRenewal:
    """Renews ``client``'s token when it is due; writes each new token to ``token_file`` (mode 0600) if set."""

    def __init__(self, client: CentralClient, token: str, token_file: Path | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.token_file, self.clock = client, token_file, clock
        self.due_at = renewal_time(token)

    def renew_if_due(self) -> bool:
        """Renew the token if it is past half its life; True if it was renewed. A refusal is logged and retried
        at the next call (the central service may be down); it never stops the agent."""
        if self.due_at is None or self.clock() < self.due_at:
            return False
        try:
            token = self.client.renew_token()
        except ClientError as e:
            log.warning("the station token could not be renewed (retrying; if it expired or was revoked, the "
                        "station's admin must give the agent a new one): %s", e)
            return False
        self.due_at = renewal_time(token)
        if self.token_file is not None:
            partial = self.token_file.with_name(self.token_file.name + ".new")
            partial.touch(mode=0o600)
            partial.write_text(token + "\n")
            os.replace(partial, self.token_file)
        log.info("the station token was renewed")
        return True

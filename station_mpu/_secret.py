"""The station's secret for the digests that leave it: HMAC-SHA-256, so a digest cannot be checked against guesses.

A plain SHA-256 of something the train controls (its log, an error message) lets anyone who reads the digest
confirm a guess of the content, e.g. a small count a filter policy denied, by hashing candidates. Keyed with a
secret only the station holds, the same digest still lets the station admin match it with the local log (same
content, same key: same digest), and tells nobody else anything.

The key is 32 random bytes, hex-encoded in a file of mode 0600: by default ``station-secret.key`` in the MPU's
data directory, made on the MPU's first start; ``PHT_MPU_SECRET_FILE`` names another (e.g. a secrets mount).
Rotating it: stop the MPU, replace the file (or delete it: a new one is made), start the MPU; digests made
after differ from those made before, so keep the old file to match older digests. Each use names its purpose
(``log``, ``hash-value``, ``event-key``), so one digest can never be passed off as another's.
"""

from __future__ import annotations

import os
import secrets
import stat
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac

__all__ = ["StationSecret", "SecretError", "process_secret"]

_KEY_BYTES = 32


class SecretError(ValueError):
    """The station secret cannot be read or made (the message says which file and why)."""


class StationSecret:
    """A station's HMAC key; :meth:`digest` is the only thing done with it."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _KEY_BYTES:
            raise SecretError(f"a station secret has at least {_KEY_BYTES} bytes, this one {len(key)}")
        self._key = key

    def __repr__(self) -> str:
        return "StationSecret(<hidden>)"

    def digest(self, purpose: str, value: str | bytes) -> str:
        """HMAC-SHA-256 of ``purpose`` and ``value`` under the station's key, as 64 lower-case hex digits."""
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(purpose.encode() + b"\n")
        mac.update(value.encode() if isinstance(value, str) else value)
        return mac.finalize().hex()

    @classmethod
    def generate(cls) -> StationSecret:
        """A fresh random key (nothing stored)."""
        return cls(secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def load_or_create(cls, path: Path | str) -> StationSecret:
        """The key in ``path``, made (mode 0600) if the file does not exist; SecretError if it cannot be read,
        is not hex of at least 32 bytes, or others than its owner may read it."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        except OSError as e:
            raise SecretError(f"cannot make the station secret {path}: {e.strerror or e}") from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(_KEY_BYTES) + "\n")
                f.flush()
                os.fsync(f.fileno())
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as e:
            raise SecretError(f"cannot read the station secret {path}: {e.strerror or e}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(f"the station secret {path} may be read by others (mode {stat.S_IMODE(mode):o}); "
                              f"make it private: chmod 600 {path}")
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise SecretError(f"{path} does not hold a station secret (hex digits, at least {_KEY_BYTES} bytes); "
                              "delete it to have a new one made") from None


@lru_cache(maxsize=1)
def process_secret() -> StationSecret:
    """A random key for this process only: what tools that run the MPU's pipeline without its data directory
    (``pht mpu policy check``, previews of a file of events) use. Nothing can be matched with its digests."""
    return StationSecret.generate()

"""Released results for their requesters only: the central service reads them from the object store with
credentials it never hands out, and gives a requester a link that reads exactly one object for a few minutes.

A link is ``/api/results/{sha256}?expires=UNIX-SECONDS&signature=HEX``: an HMAC-SHA256 (``cryptography``) over
the digest and the expiry, keyed with 32 random bytes drawn when the service starts (links die with the
process; they live ``PHT_RESULT_LINK_TTL_S`` seconds anyway). Changing the digest or the expiry breaks the
signature, so a link reads its one object and nothing else, and only until it expires. The service checks the
link and streams the object from the store, so the store needs no endpoint researchers can reach and its
credentials stay here; a folder store (the demo's) works the same as S3.

Why links this service signs rather than the store's own presigned URLs: the promise then rests on a check
the tests can run against a real S3 API; the S3 server of the tests (moto) checks no signature and no expiry
(measured: a presigned URL with another key, a forged signature or past its expiry reads, and so does an
unsigned request), so a presigned URL's scope could not be proved there.

The object layout is the stations' (``station/objects.py``, not imported: stations are another package):
``ROOT/sha256/ab/<hex>`` in a folder, ``sha256/<hex>`` in a bucket; objects are released outputs, addressed by
the SHA-256 of their bytes.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from .errors import Forbidden, NotFound, Unavailable
from .settings import Settings, SettingsError

__all__ = ["FolderResults", "Link", "ResultAccess", "ResultObject", "ResultStore", "S3Results", "result_store_from_url"]

_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})
_S3_SCHEMES = {"s3": True, "s3+https": True, "s3+http": False}  # scheme -> secure (HTTPS), as station/objects.py


@dataclass
class ResultObject:
    """An object opened for reading: its bytes in chunks (the source is closed when they are read or
    :meth:`close` is called) and its size if the store says it."""

    chunks: Iterator[bytes]
    size: int | None
    close: Callable[[], None]


class ResultStore(Protocol):
    """Where the stations put released outputs, read by digest."""

    def open(self, sha256: str) -> ResultObject:
        """The object *sha256* (a checked digest); :class:`NotFound` if it is not stored, :class:`Unavailable`
        if the store fails."""
        ...

    def describe(self) -> str:
        """Where the store is, for messages and logs (never a credential)."""
        ...


def _file_chunks(fh: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := fh.read(_CHUNK):
            yield chunk
    finally:
        fh.close()


class FolderResults:
    """Objects as files ``root/sha256/ab/<hex>`` (the stations' local object store)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return f"the result folder {str(self.root)!r}"

    def open(self, sha256: str) -> ResultObject:
        try:
            fh = open(self.root / "sha256" / sha256[:2] / sha256, "rb")
        except FileNotFoundError:
            raise NotFound(f"result {sha256} is not in the object store") from None
        except OSError as e:
            raise Unavailable(f"cannot read result {sha256} from {self.describe()}: {e.strerror or e}") from None
        return ResultObject(_file_chunks(fh), os.fstat(fh.fileno()).st_size, fh.close)


class S3Results:
    """Objects under the key ``sha256/<hex>`` of an S3 bucket, read with the ``minio`` client."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, *, secure: bool,
                 region: str) -> None:
        from minio import Minio  # imported here: a folder store needs no S3 client

        self.endpoint, self.bucket, self.secure = endpoint, bucket, secure
        try:
            self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        except ValueError as e:
            raise SettingsError(f"PHT_RESULTS_STORE_URL names an invalid S3 endpoint {endpoint!r}: {e}") from None

    def describe(self) -> str:
        return f"S3 bucket {self.bucket!r} at {'https' if self.secure else 'http'}://{self.endpoint}"

    def open(self, sha256: str) -> ResultObject:
        from minio.error import S3Error

        try:
            response = self._client.get_object(self.bucket, f"sha256/{sha256}")
        except S3Error as e:
            if e.code in _MISSING:
                raise NotFound(f"result {sha256} is not in the object store") from None
            raise Unavailable(f"reading result {sha256} from {self.describe()} failed ({e.code})") from None
        except Exception as e:  # connection refused, time-out: the store is down
            raise Unavailable(f"reading result {sha256} from {self.describe()} failed ({type(e).__name__})") from None
        length = response.headers.get("Content-Length")

        def close() -> None:
            response.close()
            response.release_conn()

        def chunks() -> Iterator[bytes]:
            try:
                yield from response.stream(_CHUNK)
            finally:
                close()

        return ResultObject(chunks(), int(length) if length and length.isdigit() else None, close)


def result_store_from_url(url: str) -> ResultStore:
    """The store an object store URL names (``file:///folder`` or ``s3[+http[s]]://ACCESS:SECRET@host:port/bucket``
    with ``?region=``, as ``station/objects.py`` reads them); :class:`SettingsError` naming what is wrong, never
    the secret."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise SettingsError("PHT_RESULTS_STORE_URL must look like file:///absolute/folder")
        return FolderResults(Path(urllib.parse.unquote(parts.path)))
    if scheme in _S3_SCHEMES:
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise SettingsError("PHT_RESULTS_STORE_URL has an invalid port") from None
        bucket = parts.path.strip("/")
        if not host or parts.username is None or parts.password is None or not bucket or "/" in bucket:
            raise SettingsError(f"PHT_RESULTS_STORE_URL must look like {scheme}://ACCESS:SECRET@host:port/bucket")
        endpoint = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
        region = urllib.parse.parse_qs(parts.query).get("region", ["us-east-1"])[-1]
        return S3Results(endpoint, urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password),
                         bucket, secure=_S3_SCHEMES[scheme], region=region)
    raise SettingsError("PHT_RESULTS_STORE_URL must be an object store URL: file:///folder, or s3://, s3+https:// "
                        "or s3+http:// ACCESS:SECRET@host:port/bucket")


@dataclass(frozen=True)
class Link:
    """What a link carries besides the digest: when it expires (Unix seconds) and its signature (hex)."""

    sha256: str
    expires: int
    signature: str


class ResultAccess:
    """Signs and checks result links and opens the objects they name; ``store`` is None when the operator
    named no object store (then every result request is a 503 saying so)."""

    def __init__(self, store: ResultStore | None, ttl_s: float, *, clock: Callable[[], float] = time.time,
                 key: bytes | None = None) -> None:
        self.store, self.ttl_s, self._clock = store, ttl_s, clock
        self._key = key if key is not None else secrets.token_bytes(32)

    @classmethod
    def from_settings(cls, settings: Settings) -> ResultAccess:
        url = settings.results_store_url
        return cls(None if url is None else result_store_from_url(url), settings.result_link_ttl_s)

    def _mac(self, sha256: str, expires: int) -> hmac.HMAC:
        mac = hmac.HMAC(self._key, hashes.SHA256())
        mac.update(f"pht-result-link\n{sha256}\n{expires}".encode())
        return mac

    def _require_store(self) -> ResultStore:
        if self.store is None:
            raise Unavailable("this central service has no object store for results (its operator sets "
                              "PHT_RESULTS_STORE_URL)")
        return self.store

    def link(self, sha256: str) -> Link:
        """A link to object *sha256* that expires ``ttl_s`` seconds from now."""
        self._require_store()
        if not _DIGEST.fullmatch(sha256):
            raise Unavailable(f"the recorded output digest {sha256[:80]!r} is not a SHA-256 digest")
        expires = math.ceil(self._clock() + self.ttl_s)
        return Link(sha256, expires, self._mac(sha256, expires).finalize().hex())

    def check(self, sha256: str, expires: int, signature: str) -> None:
        """Refuse (403) a link whose signature is not this service's for exactly this digest and expiry, or
        that has expired. The signature is checked first and in constant time."""
        mac = self._mac(sha256, expires)
        try:
            mac.verify(bytes.fromhex(signature))
        except (ValueError, InvalidSignature):
            raise Forbidden("this result link is not valid: it was not issued for this object and expiry "
                            "(ask the central service for a new one)") from None
        if self._clock() > expires:
            raise Forbidden("this result link has expired; ask the central service for a new one "
                            "(pht train results does)")

    def open(self, link: Link) -> ResultObject:
        """The object of a checked link."""
        self.check(link.sha256, link.expires, link.signature)
        return self._require_store().open(link.sha256)

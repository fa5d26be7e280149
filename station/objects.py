"""Content-addressed object store: released train outputs, addressed by the SHA-256 of their bytes.

Stations hand outputs to each other and to researchers by digest, so a reader never has to trust the
store: :meth:`ObjectStore.get_file` recomputes the digest of what it downloaded and refuses (deletes) a
file whose bytes differ (:class:`DigestMismatch`). Digests are checked to be 64 lower-case hex digits
before they touch a path or a key, so a hostile digest (``../../etc``) cannot address anything else.

Two back-ends: :class:`LocalObjectStore` (a folder, possibly shared by several processes) and
:class:`S3ObjectStore` (any S3 API: MinIO, AWS, moto in the tests). :func:`object_store_from_url` picks
one from a URL::

    file:///var/lib/pht/objects                        local folder
    s3://ACCESS:SECRET@minio.example.org:9000/bucket   S3 over HTTPS
    s3+https://ACCESS:SECRET@host:9000/bucket          the same, explicit
    s3+http://ACCESS:SECRET@127.0.0.1:9000/bucket      S3 over plain HTTP (loopback, tests)

Access key and secret are percent-decoded (write ``/`` in a secret as ``%2F``); ``?region=eu-west-1``
sets the region (default ``us-east-1``). Plain ``s3://`` means HTTPS so that a secret is not sent in
clear text by accident.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import tempfile
import urllib.parse
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from .archive import extract

__all__ = [
    "DigestMismatch",
    "InvalidDigest",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "fetch_unpacked",
    "file_sha256",
    "new_staging_key",
    "object_store_from_url",
    "validate_digest",
]

_DIGEST = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1024 * 1024
DEFAULT_REGION = "us-east-1"


class ObjectStoreError(Exception):
    """An object store operation failed; the message is one sentence saying which object and why."""


class InvalidDigest(ObjectStoreError, ValueError):
    """The digest is not 64 lower-case hex digits (it would not be safe as a path or key)."""


class ObjectNotFound(ObjectStoreError, LookupError):
    """No object with this digest is stored."""


class DigestMismatch(ObjectStoreError):
    """The bytes obtained do not have the digest they were asked for (corrupt or tampered object)."""


def validate_digest(sha256: object) -> str:
    """Return *sha256* if it is 64 lower-case hex digits, else raise :class:`InvalidDigest`."""
    if not isinstance(sha256, str) or not _DIGEST.fullmatch(sha256):
        shown = repr(sha256)[:80]
        raise InvalidDigest(f"{shown} is not a SHA-256 digest (64 lower-case hex digits).")
    return sha256


_STAGING_KEY = re.compile(r"[0-9a-f]{32}")


def new_staging_key() -> str:
    """A fresh random staging key (32 hex digits): a staged output is found by neither its digest nor its
    execution, only by the station that staged it."""
    return secrets.token_hex(16)


def _validate_staging_key(key: object) -> str:
    if not isinstance(key, str) or not _STAGING_KEY.fullmatch(key):
        raise InvalidDigest(f"{repr(key)[:80]} is not a staging key (32 lower-case hex digits).")
    return key


def _copy_hashing(source: BinaryIO, target: BinaryIO) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of the file at *path*, read in chunks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync_dir(directory: Path) -> None:
    """Make a rename in *directory* durable (the entry itself, not only the file's data)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_beside(target: Path) -> Path:
    """A new empty temporary file in *target*'s folder (same file system, so ``os.replace`` is atomic)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        raise ObjectStoreError(f"cannot write to {str(target.parent)!r}: {exc}.") from exc
    os.close(fd)
    return Path(name)


def _unlink_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _verify_and_place(temp: Path, target: Path, sha256: str, where: str, actual: str | None = None) -> None:
    """Move the downloaded *temp* to *target* if its digest (*actual*, computed if not given) is *sha256*;
    else delete it and raise :class:`DigestMismatch`, leaving *target* as it was."""
    if actual is None:
        actual = file_sha256(temp)
    if actual != sha256:
        _unlink_quietly(temp)
        raise DigestMismatch(f"object {sha256} in {where} has different content (its digest is {actual}).")
    os.replace(temp, target)


@runtime_checkable
class ObjectStore(Protocol):
    """Where released outputs live, addressed by the SHA-256 hex digest of their bytes."""

    def put_file(self, path: Path) -> str:
        """Store the file's bytes; return their SHA-256 hex digest. Storing the same bytes again is a no-op."""
        ...

    def get_file(self, sha256: str, target: Path) -> None:
        """Write object *sha256* to *target*, verified: on a digest mismatch no file is left and
        :class:`DigestMismatch` is raised; :class:`ObjectNotFound` if there is no such object."""
        ...

    def exists(self, sha256: str) -> bool:
        """Whether object *sha256* is stored."""
        ...

    def stage_file(self, path: Path, key: str) -> str:
        """Store the file's bytes under the staging key *key* (see :func:`new_staging_key`), not under their
        digest, so that nobody finds them by digest yet; return their SHA-256 hex digest."""
        ...

    def promote(self, key: str, sha256: str) -> None:
        """Make the staged object *key* readable as object *sha256* (verified) and remove the staged copy;
        a no-op if it was promoted already."""
        ...

    def discard(self, key: str) -> None:
        """Remove the staged object *key*, if it is there."""
        ...

    def describe(self) -> str:
        """Where this store is, for messages (never includes a secret)."""
        ...


class LocalObjectStore:
    """Objects as files ``root/sha256/ab/<hex>`` (``ab``: the first two hex digits); staged objects (a release
    in progress, not yet readable by digest) as ``root/staging/<key>``, private to the station's user.

    Writes go to a temporary file in ``root/tmp``, are fsynced, and are renamed into place with
    ``os.replace``, so readers in other processes see either no object or the complete one, and
    concurrent writers of the same object do not disturb each other (both rename identical bytes).
    A crash can leave a stray file in ``root/tmp``, never a partial object.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, sha256: str) -> Path:
        """Where object *sha256* lives (whether or not it exists)."""
        validate_digest(sha256)
        return self.root / "sha256" / sha256[:2] / sha256

    def describe(self) -> str:
        return f"local object store {str(self.root)!r}"

    def put_file(self, path: Path) -> str:
        """Copy *path* into the store while hashing it, so the digest is that of the bytes stored."""
        try:
            source = open(path, "rb")
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {str(path)!r} to store it: {exc.strerror or exc}.") from exc
        temp: Path | None = None
        try:
            with source:
                tmp_dir = self.root / "tmp"
                tmp_dir.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=tmp_dir, prefix="put-", suffix=".part")
                temp = Path(name)
                with open(fd, "wb", closefd=True) as out:
                    sha256 = _copy_hashing(source, out)
                    out.flush()
                    os.fchmod(out.fileno(), 0o644)
                    os.fsync(out.fileno())
            final = self.path_for(sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Replacing an existing object is harmless (same bytes) and repairs a damaged copy.
            os.replace(temp, final)
            temp = None
            _fsync_dir(final.parent)
        except OSError as exc:
            raise ObjectStoreError(f"cannot store {str(path)!r} in {self.describe()}: {exc}.") from exc
        finally:
            if temp is not None:
                _unlink_quietly(temp)
        return sha256

    def staged_path(self, key: str) -> Path:
        """Where the staged object *key* lives (whether or not it exists)."""
        return self.root / "staging" / _validate_staging_key(key)

    def stage_file(self, path: Path, key: str) -> str:
        staged = self.staged_path(key)
        try:
            with open(path, "rb") as source:
                staged.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(dir=staged.parent, prefix=".stage-", suffix=".part")
                try:
                    with open(fd, "wb", closefd=True) as out:
                        sha256 = _copy_hashing(source, out)
                        out.flush()
                        os.fchmod(out.fileno(), 0o600)
                        os.fsync(out.fileno())
                    os.replace(name, staged)
                finally:
                    _unlink_quietly(Path(name))
            _fsync_dir(staged.parent)
        except OSError as exc:
            raise ObjectStoreError(f"cannot stage {str(path)!r} in {self.describe()}: {exc}.") from exc
        return sha256

    def promote(self, key: str, sha256: str) -> None:
        staged, final = self.staged_path(key), self.path_for(sha256)
        if not staged.is_file():
            if final.is_file():
                return  # promoted before (a release resumed after a crash)
            raise ObjectNotFound(f"staged object {key} is not in {self.describe()}.")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(staged, 0o644)
            _verify_and_place(staged, final, sha256, self.describe())
            _fsync_dir(final.parent)
        except OSError as exc:
            raise ObjectStoreError(f"cannot promote staged object {key} in {self.describe()}: {exc}.") from exc

    def discard(self, key: str) -> None:
        _unlink_quietly(self.staged_path(key))

    def get_file(self, sha256: str, target: Path) -> None:
        source_path = self.path_for(sha256)
        try:
            source = open(source_path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"object {sha256} is not in {self.describe()}.") from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read object {sha256} in {self.describe()}: {exc}.") from exc
        with source:
            temp = _temp_beside(target)
            try:
                with open(temp, "wb") as out:
                    actual = _copy_hashing(source, out)
                _verify_and_place(temp, target, sha256, self.describe(), actual)
            except OSError as exc:
                raise ObjectStoreError(f"cannot write object {sha256} to {str(target)!r}: {exc}.") from exc
            finally:
                _unlink_quietly(temp)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()


class S3ObjectStore:
    """Objects in an S3 bucket under the key ``sha256/<hex>`` (staged ones under ``staging/<key>``), via the
    ``minio`` client (streaming).

    The bucket is created on the first :meth:`put_file` if it is missing; reading from a missing bucket
    is "not found". :meth:`put_file` hashes the file, skips the upload if the object exists, else streams
    it with ``fput_object``; the file must not change meanwhile (any difference would still be caught by
    :meth:`get_file`, which verifies every download).
    """

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = DEFAULT_REGION,
    ) -> None:
        from minio import Minio  # imported here: the local store needs no S3 client

        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.region = region
        try:
            self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure, region=region)
        except ValueError as exc:  # malformed endpoint
            raise ObjectStoreError(f"invalid S3 endpoint {endpoint!r}: {exc}.") from exc
        self._bucket_ready = False

    @staticmethod
    def key_for(sha256: str) -> str:
        """The object key of *sha256* in the bucket."""
        return f"sha256/{validate_digest(sha256)}"

    def describe(self) -> str:
        scheme = "https" if self.secure else "http"
        return f"S3 bucket {self.bucket!r} at {scheme}://{self.endpoint}"

    def _failure(self, what: str, exc: Exception) -> ObjectStoreError:
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            detail = f"{exc.code}: {exc.message}"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return ObjectStoreError(f"{what} in {self.describe()} failed ({detail}).")

    def _ensure_bucket(self) -> None:
        from minio.error import S3Error

        if self._bucket_ready:
            return
        try:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:  # another process created it meanwhile
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
        except Exception as exc:
            raise self._failure(f"creating bucket {self.bucket!r}", exc) from exc
        self._bucket_ready = True

    def exists(self, sha256: str) -> bool:
        from minio.error import S3Error

        key = self.key_for(sha256)
        try:
            self._client.stat_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"):
                return False
            raise self._failure(f"looking up object {sha256}", exc) from exc
        except Exception as exc:
            raise self._failure(f"looking up object {sha256}", exc) from exc
        return True

    def put_file(self, path: Path) -> str:
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {str(path)!r} to store it: {exc.strerror or exc}.") from exc
        self._ensure_bucket()
        if self.exists(sha256):
            return sha256
        try:
            self._client.fput_object(self.bucket, self.key_for(sha256), str(path))
        except Exception as exc:
            raise self._failure(f"uploading {str(path)!r} as object {sha256}", exc) from exc
        return sha256

    @staticmethod
    def staging_key_for(key: str) -> str:
        """The object key of the staged object *key* in the bucket."""
        return f"staging/{_validate_staging_key(key)}"

    def stage_file(self, path: Path, key: str) -> str:
        staged = self.staging_key_for(key)
        try:
            sha256 = file_sha256(path)
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {str(path)!r} to stage it: {exc.strerror or exc}.") from exc
        self._ensure_bucket()
        try:
            self._client.fput_object(self.bucket, staged, str(path))
        except Exception as exc:
            raise self._failure(f"staging {str(path)!r}", exc) from exc
        return sha256

    def promote(self, key: str, sha256: str) -> None:
        """Server-side copy to ``sha256/<hex>``, then delete the staged object. The copy is not re-hashed here;
        every reader verifies the digest (:meth:`get_file`)."""
        from minio.commonconfig import CopySource
        from minio.error import S3Error

        staged = self.staging_key_for(key)
        try:
            self._client.copy_object(self.bucket, self.key_for(sha256), CopySource(self.bucket, staged))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound") and self.exists(sha256):
                return  # promoted before (a release resumed after a crash)
            raise self._failure(f"promoting staged object {key}", exc) from exc
        except Exception as exc:
            raise self._failure(f"promoting staged object {key}", exc) from exc
        self.discard(key)

    def discard(self, key: str) -> None:
        staged = self.staging_key_for(key)
        try:
            self._client.remove_object(self.bucket, staged)  # S3 answers a missing key with success
        except Exception as exc:
            raise self._failure(f"removing staged object {key}", exc) from exc

    def get_file(self, sha256: str, target: Path) -> None:
        from minio.error import S3Error

        key = self.key_for(sha256)
        temp = _temp_beside(target)
        minio_part = temp.with_name(temp.name + ".minio")  # fget_object writes here, then renames to temp
        try:
            try:
                self._client.fget_object(self.bucket, key, str(temp), tmp_file_path=str(minio_part))
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"):
                    raise ObjectNotFound(f"object {sha256} is not in {self.describe()}.") from None
                raise self._failure(f"downloading object {sha256}", exc) from exc
            except Exception as exc:
                raise self._failure(f"downloading object {sha256}", exc) from exc
            _verify_and_place(temp, target, sha256, self.describe())
        except OSError as exc:
            raise ObjectStoreError(f"cannot write object {sha256} to {str(target)!r}: {exc}.") from exc
        finally:
            _unlink_quietly(temp, minio_part)


_S3_SCHEMES = {"s3": True, "s3+https": True, "s3+http": False}  # scheme -> secure (HTTPS)


def object_store_from_url(url: str) -> ObjectStore:
    """The store a URL names: ``file:///path``, or ``s3://``, ``s3+https://``, ``s3+http://``
    ``ACCESS:SECRET@host:port/bucket[?region=...]`` (see the module docstring)."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ObjectStoreError(f"object store URL {url!r} must look like file:///absolute/path.")
        return LocalObjectStore(Path(urllib.parse.unquote(parts.path)))
    if scheme in _S3_SCHEMES:
        redacted = f"{scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"  # without the credentials
        try:
            host, port = parts.hostname, parts.port
        except ValueError as exc:
            raise ObjectStoreError(f"object store URL {redacted!r} has an invalid port.") from exc
        bucket = parts.path.strip("/")
        if not host or parts.username is None or parts.password is None or not bucket or "/" in bucket:
            raise ObjectStoreError(
                f"object store URL {redacted!r} must look like {scheme}://ACCESS:SECRET@host:port/bucket."
            )
        query = urllib.parse.parse_qs(parts.query)
        region = query.get("region", [DEFAULT_REGION])[-1]
        endpoint = f"[{host}]" if ":" in host else host
        if port:
            endpoint += f":{port}"
        return S3ObjectStore(
            endpoint,
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password),
            bucket,
            secure=_S3_SCHEMES[scheme],
            region=region,
        )
    raise ObjectStoreError(
        f"unsupported object store URL scheme {parts.scheme!r}; use file, s3, s3+https or s3+http."
    )


def fetch_unpacked(store: ObjectStore, sha256: str, target: Path, *, max_bytes: int, max_files: int) -> Path:
    """Download the archive ``sha256`` (verified), unpack it safely into ``target`` (which must not hold
    anything yet) and delete the download; returns ``target``. Raises ObjectStoreError or ArchiveError."""
    packed = target.with_name(target.name + ".tar.gz")
    try:
        store.get_file(sha256, packed)
        extract(packed, target, max_bytes=max_bytes, max_files=max_files)
    finally:
        packed.unlink(missing_ok=True)
    return target

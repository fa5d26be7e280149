"""station.objects: content-addressed stores, local and S3 (a real moto server), always verified on read."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import servers
from minio import Minio

from station.archive import extract, pack_to
from station.objects import (
    DigestMismatch,
    InvalidDigest,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    S3ObjectStore,
    object_store_from_url,
    validate_digest,
)

HOSTILE_DIGESTS = [
    "../../../../etc/passwd",
    "../" + "a" * 61,
    "A" * 64,  # upper case: two spellings of one digest would be two objects
    "a" * 63,
    "a" * 65,
    "a" * 64 + "\n",
    "g" * 64,
    "",
    "sha256:" + "a" * 64,
]


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- behaviour every store shares


def _round_trip(store: ObjectStore, tmp_path: Path) -> str:
    data = os.urandom(100_000)
    digest = store.put_file(_write(tmp_path / "in.bin", data))
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.exists(digest)
    assert store.put_file(tmp_path / "in.bin") == digest  # idempotent
    target = tmp_path / "down" / "out.bin"  # parent folder created on demand
    store.get_file(digest, target)
    assert target.read_bytes() == data
    assert list(target.parent.iterdir()) == [target], "no temporary files may be left beside the target"
    return digest


def _not_found(store: ObjectStore, tmp_path: Path) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(missing)
    target = tmp_path / "missing.bin"
    with pytest.raises(ObjectNotFound, match=f"object {missing} is not in") as info:
        store.get_file(missing, target)
    assert "\n" not in str(info.value)
    assert not target.exists() and not list(tmp_path.glob(".missing.bin*"))


def _hostile_digests(store: ObjectStore, tmp_path: Path) -> None:
    before = _files_under(tmp_path)
    for digest in [*HOSTILE_DIGESTS, None, 42]:
        with pytest.raises(InvalidDigest, match="is not a SHA-256 digest"):
            store.exists(digest)  # type: ignore[arg-type]
        with pytest.raises(InvalidDigest):
            store.get_file(digest, tmp_path / "x")  # type: ignore[arg-type]
    assert _files_under(tmp_path) == before


# --------------------------------------------------------------------------- local store


def test_validate_digest() -> None:
    good = hashlib.sha256(b"").hexdigest()
    assert validate_digest(good) == good
    for bad in HOSTILE_DIGESTS:
        with pytest.raises(InvalidDigest):
            validate_digest(bad)
    assert issubclass(InvalidDigest, ValueError) and issubclass(ObjectNotFound, ObjectStoreError)


def test_local_round_trip_layout_and_idempotence(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    assert isinstance(store, ObjectStore)
    work = tmp_path / "work"
    work.mkdir()
    digest = _round_trip(store, work)
    assert _files_under(tmp_path / "objects") == [tmp_path / "objects" / "sha256" / digest[:2] / digest]


def test_local_digest_mismatch_detected_and_no_file_left(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_file(_write(tmp_path / "in.txt", b"the released result"))
    store.path_for(digest).write_bytes(b"the released resulT")  # bit rot or tampering on disk
    (tmp_path / "down").mkdir()
    target = tmp_path / "down" / "out.txt"
    with pytest.raises(DigestMismatch, match=f"object {digest} .* has different content"):
        store.get_file(digest, target)
    assert list((tmp_path / "down").iterdir()) == []


def test_local_mismatch_leaves_an_existing_target_untouched(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_file(_write(tmp_path / "in.txt", b"good"))
    store.path_for(digest).write_bytes(b"evil")
    target = _write(tmp_path / "out.txt", b"previous")
    with pytest.raises(DigestMismatch):
        store.get_file(digest, target)
    assert target.read_bytes() == b"previous"


def test_local_put_repairs_a_damaged_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    digest = store.put_file(_write(tmp_path / "in.txt", b"good"))
    store.path_for(digest).write_bytes(b"evil")
    assert store.put_file(tmp_path / "in.txt") == digest
    store.get_file(digest, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"good"


def test_local_not_found_and_hostile_digests(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    _not_found(store, tmp_path)
    _hostile_digests(store, tmp_path)


def test_local_put_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ObjectStoreError, match="cannot read .*nope.* No such file"):
        store.put_file(tmp_path / "nope")


def test_local_concurrent_puts_of_the_same_object(tmp_path: Path) -> None:
    """Writers sharing one folder: every put succeeds, one intact object, no temporary files left."""
    store = LocalObjectStore(tmp_path / "objects")
    data = os.urandom(2 * 1024 * 1024)
    source = _write(tmp_path / "in.bin", data)
    results: list[str] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            results.append(LocalObjectStore(tmp_path / "objects").put_file(source))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(results) == {hashlib.sha256(data).hexdigest()}
    assert store.path_for(results[0]).read_bytes() == data
    assert list((tmp_path / "objects" / "tmp").iterdir()) == []


def test_archive_through_the_store_end_to_end(tmp_path: Path) -> None:
    """What a station does: pack the output, store it, another party fetches it by digest and extracts."""
    out = tmp_path / "output"
    (out / "tables").mkdir(parents=True)
    (out / "tables" / "counts.csv").write_text("site,n\nA,12\n")
    digest, _ = pack_to(out, tmp_path / "output.tar.gz")
    store = LocalObjectStore(tmp_path / "objects")
    assert store.put_file(tmp_path / "output.tar.gz") == digest
    store.get_file(digest, tmp_path / "fetched.tar.gz")
    extract(tmp_path / "fetched.tar.gz", tmp_path / "input0", max_bytes=1024, max_files=10)
    assert (tmp_path / "input0" / "tables" / "counts.csv").read_text() == "site,n\nA,12\n"


# --------------------------------------------------------------------------- URLs


def test_object_store_from_url(tmp_path: Path) -> None:
    local = object_store_from_url(f"file://{tmp_path}/my%20objects")
    assert isinstance(local, LocalObjectStore) and local.root == tmp_path / "my objects"

    s3 = object_store_from_url("s3+http://AKIA:se%2Fcret@127.0.0.1:9000/outputs?region=eu-west-1")
    assert isinstance(s3, S3ObjectStore)
    assert (s3.endpoint, s3.bucket, s3.secure, s3.region) == ("127.0.0.1:9000", "outputs", False, "eu-west-1")
    assert s3.describe() == "S3 bucket 'outputs' at http://127.0.0.1:9000"

    for url in ("s3://AKIA:secret@minio.example.org/outputs", "s3+https://AKIA:secret@minio.example.org/outputs"):
        secure = object_store_from_url(url)
        assert isinstance(secure, S3ObjectStore) and secure.secure and secure.endpoint == "minio.example.org"


@pytest.mark.parametrize("url", [
    "s3+http://AKIA:topsecret@127.0.0.1:9000/",  # no bucket
    "s3+http://127.0.0.1:9000/outputs",  # no credentials
    "s3+http://AKIA:topsecret@127.0.0.1:9000/a/b",  # a key prefix, not a bucket
    "s3+http://AKIA:topsecret@127.0.0.1:99999/outputs",  # bad port
    "ftp://AKIA:topsecret@example.org/outputs",
    "file://otherhost/var/objects",
    "relative/path",
])
def test_object_store_from_url_refuses_bad_urls_without_echoing_the_secret(url: str) -> None:
    with pytest.raises(ObjectStoreError) as info:
        object_store_from_url(url)
    assert "topsecret" not in str(info.value)


# --------------------------------------------------------------------------- S3 (real moto server)


@pytest.fixture
def s3_url(s3_endpoint: servers.S3Server) -> str:
    """A URL for a fresh, not yet existing bucket on the session's moto server."""
    return f"s3+http://{s3_endpoint.access_key}:{s3_endpoint.secret_key}@{s3_endpoint.endpoint}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def minio_client(s3_endpoint: servers.S3Server) -> Iterator[Minio]:
    yield Minio(s3_endpoint.endpoint, access_key=s3_endpoint.access_key, secret_key=s3_endpoint.secret_key,
                secure=False, region="us-east-1")


@pytest.mark.real_component("s3")
def test_s3_round_trip_creates_the_bucket(s3_url: str, minio_client: Minio, tmp_path: Path) -> None:
    store = object_store_from_url(s3_url)
    assert isinstance(store, S3ObjectStore)
    assert not minio_client.bucket_exists(store.bucket)
    digest = _round_trip(store, tmp_path)
    keys = [o.object_name for o in minio_client.list_objects(store.bucket, recursive=True)]
    assert keys == [f"sha256/{digest}"], "idempotent put must store one object"


@pytest.mark.real_component("s3")
def test_s3_multipart_sized_file(s3_url: str, tmp_path: Path) -> None:
    """Large enough for fput_object to upload in parts."""
    store = object_store_from_url(s3_url)
    data = os.urandom(11 * 1024 * 1024)
    digest = store.put_file(_write(tmp_path / "big.bin", data))
    store.get_file(digest, tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest == hashlib.sha256(data).hexdigest()


@pytest.mark.real_component("s3")
def test_s3_digest_mismatch_detected_and_no_file_left(s3_url: str, minio_client: Minio, tmp_path: Path) -> None:
    store = object_store_from_url(s3_url)
    assert isinstance(store, S3ObjectStore)
    digest = store.put_file(_write(tmp_path / "in.txt", b"the released result"))
    other = b"tampered result"
    minio_client.put_object(store.bucket, f"sha256/{digest}", io.BytesIO(other), len(other))
    down = tmp_path / "down"
    down.mkdir()
    with pytest.raises(DigestMismatch, match=f"object {digest} in S3 bucket .* has different content"):
        store.get_file(digest, down / "out.txt")
    assert list(down.iterdir()) == []


@pytest.mark.real_component("s3")
def test_s3_not_found_and_hostile_digests(s3_url: str, tmp_path: Path) -> None:
    store = object_store_from_url(s3_url)
    _not_found(store, tmp_path)  # the bucket does not even exist yet
    store.put_file(_write(tmp_path / "in.txt", b"x"))  # now it does
    _not_found(store, tmp_path)
    _hostile_digests(store, tmp_path)


@pytest.mark.real_component("s3")
def test_s3_store_shared_by_two_clients(s3_url: str, tmp_path: Path) -> None:
    """A station puts, a researcher with its own client gets: the bucket is the only shared state."""
    digest = object_store_from_url(s3_url).put_file(_write(tmp_path / "in.txt", b"hand-over"))
    reader = object_store_from_url(s3_url)
    assert reader.exists(digest)
    reader.get_file(digest, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"hand-over"

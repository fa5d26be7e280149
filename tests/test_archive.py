"""station.archive: deterministic packing, and extraction that refuses every kind of hostile archive.

Every refusal test snapshots the whole temporary tree (next to the target: a sentinel file and an
"outside" folder) before extracting and checks afterwards that nothing outside the target changed and
that the target holds nothing (what was extracted before the refusal is removed again).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from station.archive import (
    MAX_EXTENDED_HEADER,
    ArchiveError,
    CorruptArchive,
    UnpackableEntry,
    UnsafeArchive,
    extract,
    pack,
    pack_to,
)

MiB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


def _tree(root: Path) -> dict[str, object]:
    """Relative path -> file bytes / "dir" / "link->..." for everything under *root*."""
    result: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                result[rel] = f"link->{os.readlink(path)}"
            elif path.is_dir():
                result[rel] = "dir"
            else:
                result[rel] = path.read_bytes()
    return result


def _tgz(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], fmt: int = tarfile.PAX_FORMAT) -> Path:
    """Write a .tar.gz with exactly these members (whatever they claim)."""
    with tarfile.open(path, "w:gz", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.devmajor, info.devminor = 1, 3
    return info, None


@pytest.fixture
def scene(tmp_path: Path) -> dict[str, Path]:
    """``work/`` with a sentinel file and an ``outside/`` folder next to the (not yet existing) target."""
    work = tmp_path / "work"
    (work / "outside").mkdir(parents=True)
    (work / "sentinel.txt").write_bytes(b"do not touch")
    (work / "outside" / "keep.txt").write_bytes(b"keep")
    return {"root": tmp_path, "work": work, "target": work / "target", "outside": work / "outside",
            "archives": tmp_path / "archives"}


def _assert_refused(
    scene: dict[str, Path],
    build: Callable[[Path], Path],
    *,
    match: str,
    max_bytes: int = MiB,
    max_files: int = 100,
    error: type[Exception] = UnsafeArchive,
) -> str:
    scene["archives"].mkdir(exist_ok=True)
    archive = build(scene["archives"] / "evil.tar.gz")
    before = _tree(scene["work"])
    with pytest.raises(error, match=match) as info:
        extract(archive, scene["target"], max_bytes=max_bytes, max_files=max_files)
    assert not scene["target"].exists(), "a target created by extract must be removed on refusal"
    assert _tree(scene["work"]) == before, "nothing outside the target may change"
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- packing


def _make_output(root: Path, *, reverse: bool = False, mtime: int = 1_700_000_000, file_mode: int = 0o644) -> Path:
    files = {
        "result.json": b'{"mean": 4.2}\n',
        "plots/hist.bin": bytes(range(256)) * 40,
        "plots/deep/er/x.txt": b"nested\n",
        "run.sh": b"#!/bin/sh\necho hi\n",
        "caf\u00e9-\u00fcnicode.txt": b"utf-8 name\n",
        "long/" + "n" * 150 + ".txt": b"long name needs a pax header\n",
    }
    root.mkdir(parents=True)
    (root / "empty-dir").mkdir()
    for rel, data in sorted(files.items(), reverse=reverse):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o755 if rel == "run.sh" else file_mode)
        os.utime(path, (mtime, mtime))
    return root


def test_pack_is_deterministic_whatever_the_creation_order_times_and_modes(tmp_path: Path) -> None:
    a = _make_output(tmp_path / "a")
    b = _make_output(tmp_path / "b", reverse=True, mtime=1_000, file_mode=0o600)
    digest_a1, size_a1 = pack_to(a, tmp_path / "a1.tar.gz")
    digest_a2, size_a2 = pack_to(a, tmp_path / "a2.tar.gz")
    digest_b, _ = pack_to(b, tmp_path / "b.tar.gz")
    assert (digest_a1, size_a1) == (digest_a2, size_a2) == (digest_b, size_a1)
    assert (tmp_path / "a1.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    assert hashlib.sha256((tmp_path / "a1.tar.gz").read_bytes()).hexdigest() == digest_a1
    assert size_a1 == (tmp_path / "a1.tar.gz").stat().st_size
    assert hashlib.sha256(pack(a)).hexdigest() == digest_a1

    (a / "result.json").write_bytes(b'{"mean": 4.3}\n')
    assert pack_to(a, tmp_path / "a3.tar.gz")[0] != digest_a1


def test_packed_members_carry_no_owner_time_or_machine_details(tmp_path: Path) -> None:
    out = _make_output(tmp_path / "out")
    data = pack(out)
    assert data[4:8] == b"\0\0\0\0", "gzip header mtime must be 0"
    assert not data[3] & 0x08, "gzip header must not carry a file name"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))  # depth first, sorted per folder
    assert "empty-dir" in names and not any(n.startswith(("/", "./")) for n in names)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.type in (tarfile.REGTYPE, tarfile.DIRTYPE)
        assert m.mode == (0o755 if m.isdir() or m.name == "run.sh" else 0o644)


@pytest.mark.parametrize("kind", ["symlink-out", "symlink-in", "fifo"])
def test_pack_refuses_links_and_special_files(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_text("a")
    if kind == "symlink-out":
        (out / "sub" / "evil").symlink_to("/etc/passwd")
    elif kind == "symlink-in":
        (out / "sub" / "evil").symlink_to("../a.txt")
    else:
        os.mkfifo(out / "sub" / "evil")
    target = tmp_path / "out.tar.gz"
    with pytest.raises(UnpackableEntry, match=r"'sub/evil' is a (symbolic link|fifo)"):
        pack_to(out, target)
    assert not target.exists(), "a failed pack must not leave a partial archive"


def test_every_refusal_is_an_unsafe_archive() -> None:
    """Callers (the station agent) catch UnsafeArchive alone to refuse an input or an output."""
    assert issubclass(UnpackableEntry, UnsafeArchive) and issubclass(CorruptArchive, UnsafeArchive)
    assert issubclass(UnsafeArchive, ArchiveError) and issubclass(ArchiveError, ValueError)


def test_pack_refuses_to_write_the_archive_into_the_folder_it_packs(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(ArchiveError, match="inside the folder"):
        pack_to(tmp_path, tmp_path / "self.tar.gz")


def test_pack_of_hard_linked_files_stores_plain_copies(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("same")
    os.link(out / "a.txt", out / "b.txt")
    with tarfile.open(fileobj=io.BytesIO(pack(out)), mode="r:gz") as tar:
        assert [(m.name, m.type, m.size) for m in tar] == [("a.txt", tarfile.REGTYPE, 4), ("b.txt", tarfile.REGTYPE, 4)]


# --------------------------------------------------------------------------- extraction: valid archives


def test_round_trip_extracts_exactly_the_packed_tree(tmp_path: Path) -> None:
    out = _make_output(tmp_path / "out")
    archive = tmp_path / "out.tar.gz"
    pack_to(out, archive)
    target = tmp_path / "restored"
    extract(archive, target, max_bytes=MiB, max_files=100)
    assert _tree(target) == _tree(out)
    assert os.stat(target / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(target / "result.json").st_mode & 0o777 == 0o644


def test_extract_into_an_existing_empty_folder_and_of_dot_slash_names(tmp_path: Path) -> None:
    archive = _tgz(tmp_path / "dot.tar.gz", [
        _special("./", tarfile.DIRTYPE), _file("./a/b.txt", b"b"), _file("./c.txt", b"c"),
    ])
    target = tmp_path / "empty"
    target.mkdir()
    extract(archive, target, max_bytes=10, max_files=3)
    assert _tree(target) == {"a": "dir", "a/b.txt": b"b", "c.txt": b"c"}


def test_limits_are_inclusive(tmp_path: Path) -> None:
    archive = _tgz(tmp_path / "ok.tar.gz", [_file("a", b"12345"), _file("b", b"67890")])
    extract(archive, tmp_path / "t", max_bytes=10, max_files=2)
    assert _tree(tmp_path / "t") == {"a": b"12345", "b": b"67890"}


def test_extract_refuses_a_non_empty_target(tmp_path: Path) -> None:
    archive = _tgz(tmp_path / "ok.tar.gz", [_file("a")])
    target = tmp_path / "t"
    target.mkdir()
    (target / "mine").write_text("mine")
    with pytest.raises(ArchiveError, match="must be an empty folder"):
        extract(archive, target, max_bytes=10, max_files=10)
    assert _tree(target) == {"mine": b"mine"}


# --------------------------------------------------------------------------- extraction: hostile archives


def test_absolute_path_refused(scene: dict[str, Path]) -> None:
    evil = str(scene["outside"] / "evil.txt")
    message = _assert_refused(scene, lambda p: _tgz(p, [_file("ok.txt"), _file(evil)]), match="absolute path")
    assert evil in message


@pytest.mark.parametrize("name", ["../sentinel.txt", "sub/../../outside/evil.txt", "a/../../../x", ".."])
def test_dot_dot_refused(scene: dict[str, Path], name: str) -> None:
    _assert_refused(scene, lambda p: _tgz(p, [_file("ok.txt"), _file(name)]), match=r"'\.\.' component")


@pytest.mark.parametrize("link_target", ["OUTSIDE", "../outside", "inside.txt"])
def test_symlink_refused(scene: dict[str, Path], link_target: str) -> None:
    link_target = link_target.replace("OUTSIDE", str(scene["outside"]))

    def build(p: Path) -> Path:
        return _tgz(p, [
            _file("inside.txt"),
            _special("link", tarfile.SYMTYPE, link_target),
            _file("link/evil.txt", b"written through the link"),
        ])

    _assert_refused(scene, build, match="'link' is a symbolic link")


@pytest.mark.parametrize("link_target", ["SENTINEL", "../sentinel.txt", "inside.txt"])
def test_hard_link_refused(scene: dict[str, Path], link_target: str) -> None:
    link_target = link_target.replace("SENTINEL", str(scene["work"] / "sentinel.txt"))

    def build(p: Path) -> Path:
        return _tgz(p, [_file("inside.txt"), _special("hl", tarfile.LNKTYPE, link_target), _file("hl", b"overwrite")])

    _assert_refused(scene, build, match="'hl' is a hard link")


@pytest.mark.parametrize(("kind", "what"), [
    (tarfile.CHRTYPE, "device"), (tarfile.BLKTYPE, "device"), (tarfile.FIFOTYPE, "fifo"),
])
def test_devices_and_fifos_refused(scene: dict[str, Path], kind: bytes, what: str) -> None:
    _assert_refused(scene, lambda p: _tgz(p, [_file("ok.txt"), _special("dev", kind)]), match=f"'dev' is a {what}")


def test_declared_size_too_big_refused_before_reading_the_data(scene: dict[str, Path]) -> None:
    def build(p: Path) -> Path:
        # Only the header: it claims 10 GiB that are not even there. Refused on the header alone.
        info = tarfile.TarInfo("huge.bin")
        info.size = 10 * 1024**3
        with gzip.open(p, "wb") as gz:
            gz.write(info.tobuf(tarfile.PAX_FORMAT))
        return p

    _assert_refused(scene, build, match="'huge.bin' brings the declared content size to 10737418240 bytes")


def test_total_declared_size_too_big_refused_and_earlier_files_removed(scene: dict[str, Path]) -> None:
    build = lambda p: _tgz(p, [_file("a.bin", b"a" * 600), _file("b.bin", b"b" * 600)])  # noqa: E731
    _assert_refused(scene, build, max_bytes=1000, match="'b.bin' brings the declared content size to 1200")


def test_too_many_members_refused(scene: dict[str, Path]) -> None:
    build = lambda p: _tgz(p, [_file(f"f{i:02}") for i in range(11)])  # noqa: E731
    _assert_refused(scene, build, max_files=10, match="more than 10 members.*'f10'")


def test_gzip_bomb_refused_by_real_decompressed_size(scene: dict[str, Path]) -> None:
    """A small valid tar followed by 64 MiB of zeros: ~64 KiB compressed, every member within the limits."""

    def build(p: Path) -> Path:
        tar_bytes = io.BytesIO()
        with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
            info, data = _file("small.txt", b"hello")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        with gzip.open(p, "wb", compresslevel=9) as gz:
            gz.write(tar_bytes.getvalue())
            zeros = bytes(MiB)
            for _ in range(64):
                gz.write(zeros)
        assert p.stat().st_size < 200 * 1024
        return p

    _assert_refused(scene, build, max_bytes=MiB, max_files=10, match="decompresses to more than")


def test_huge_extended_header_refused(scene: dict[str, Path]) -> None:
    """A pax header is held in memory by tarfile; a large one is refused whatever max_bytes allows."""

    def build(p: Path) -> Path:
        info, data = _file("a.txt", b"a")
        info.pax_headers = {"comment": "x" * (MAX_EXTENDED_HEADER + 1)}
        return _tgz(p, [(info, data)])

    _assert_refused(scene, build, max_bytes=100 * MiB, match="extended header of")


def test_duplicate_member_refused(scene: dict[str, Path]) -> None:
    _assert_refused(scene, lambda p: _tgz(p, [_file("a.txt", b"1"), _file("a.txt", b"2")]), match="occurs twice")


def test_file_below_a_file_refused(scene: dict[str, Path]) -> None:
    _assert_refused(scene, lambda p: _tgz(p, [_file("a", b"1"), _file("a/b", b"2")]), match="below a file")


def test_corrupt_archives_refused_and_cleaned_up(scene: dict[str, Path]) -> None:
    out = _make_output(scene["root"] / "src")
    good = pack(out)

    def truncated(p: Path) -> Path:
        p.write_bytes(good[: len(good) // 2])
        return p

    def bad_crc(p: Path) -> Path:
        p.write_bytes(good[:-8] + bytes(b ^ 0xFF for b in good[-8:-4]) + good[-4:])
        return p

    def not_gzip(p: Path) -> Path:
        p.write_bytes(b"this is not an archive")
        return p

    for build in (truncated, bad_crc, not_gzip):
        _assert_refused(scene, build, error=CorruptArchive, match="is not a readable .tar.gz")


def test_refusal_empties_an_existing_target_but_keeps_it(scene: dict[str, Path]) -> None:
    scene["target"].mkdir()
    scene["archives"].mkdir()
    archive = _tgz(scene["archives"] / "evil.tar.gz", [_file("d/ok.txt"), _file("../sentinel.txt", b"pwned")])
    with pytest.raises(UnsafeArchive):
        extract(archive, scene["target"], max_bytes=MiB, max_files=10)
    assert scene["target"].is_dir() and not any(scene["target"].iterdir())
    assert (scene["work"] / "sentinel.txt").read_bytes() == b"do not touch"


def test_extracted_modes_are_normalised(tmp_path: Path) -> None:
    info, data = _file("setuid", b"x")
    info.mode = 0o4777
    archive = _tgz(tmp_path / "modes.tar.gz", [(info, data)])
    extract(archive, tmp_path / "t", max_bytes=10, max_files=10)
    assert stat.S_IMODE(os.stat(tmp_path / "t" / "setuid").st_mode) == 0o755

"""Deterministic packing and safe extraction of train outputs (``.tar.gz``).

A released output travels between stations and to researchers as one gzip-compressed tar, stored under
its SHA-256 digest (``station.objects``). Two properties matter:

* **Determinism** (:func:`pack_to`, :func:`pack`): the same folder gives the same bytes, hence the same
  digest, whoever packs it and whenever: entries sorted, mtime 0, uid/gid 0, no owner names, modes reduced
  to ``0644``/``0755``, gzip header without name or time. Only regular files and directories are packed;
  a symlink, device, fifo or socket in an output folder is refused, since its meaning depends on the
  machine that packed it. (The bytes are stable for one zlib implementation; the digest is always
  verified against the stored bytes, never recomputed from the folder.)
* **Safe extraction** (:func:`extract`): an archive comes from another party (a train wrote it, another
  station stored it), so it is treated as hostile: nothing may land outside the target folder, and its
  size, member count and decompressed size are bounded before they can fill a disk or memory.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "ArchiveError",
    "CorruptArchive",
    "UnpackableEntry",
    "UnsafeArchive",
    "extract",
    "pack",
    "pack_to",
]

#: deepest folder nesting :func:`pack_to` follows (a hostile output could nest deeper than the stack allows)
MAX_DEPTH = 256
#: largest pax / GNU long-name header accepted: tarfile holds such a header in memory while parsing it
MAX_EXTENDED_HEADER = 64 * 1024
#: decompressed bytes allowed per member beyond its content (header block, padding, long-name records)
_PER_MEMBER_OVERHEAD = 8 * 1024
#: decompressed bytes allowed for the end-of-archive blocks and record padding
_TRAILER_ALLOWANCE = 64 * 1024
_CHUNK = 1024 * 1024
_GZIP_LEVEL = 6  # part of the determinism contract: changing it changes every digest


class ArchiveError(ValueError):
    """An archive cannot be made or read; the message is one sentence naming the culprit."""


class UnsafeArchive(ArchiveError):
    """The archive (or the folder to pack) cannot be used safely: it tries to write outside the target,
    holds links or special files, is too large, or is damaged. Catch this one to refuse an input/output."""


class UnpackableEntry(UnsafeArchive):
    """The folder to pack holds something other than regular files and directories."""


class CorruptArchive(UnsafeArchive):
    """The archive is not a readable gzip-compressed tar (truncated, bad checksum, garbage)."""


# --------------------------------------------------------------------------- packing


class _HashingWriter:
    """File-like sink that hashes and counts what passes through to *out*."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _normalised_mode(mode: int, is_dir: bool) -> int:
    return 0o755 if is_dir or mode & 0o111 else 0o644


def _tarinfo(name: str, *, is_dir: bool, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode = _normalised_mode(mode, is_dir)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_tree(tar: tarfile.TarFile, dir_fd: int, prefix: str, depth: int) -> None:
    """Add the contents of the open directory *dir_fd*, sorted, depth first.

    Everything is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so a symlink swapped in
    while packing is refused instead of followed.
    """
    if depth > MAX_DEPTH:
        raise UnpackableEntry(f"folder {prefix.rstrip('/')!r} is nested deeper than {MAX_DEPTH} levels.")
    with os.scandir(dir_fd) as it:
        names = sorted(entry.name for entry in it)
    for name in names:
        rel = prefix + name
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise UnpackableEntry(f"{rel!r} is a symbolic link; an output may hold only files and folders.")
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                tar.addfile(_tarinfo(rel, is_dir=True, size=0, mode=st.st_mode))
                _add_tree(tar, fd, rel + "/", depth + 1)
            finally:
                os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            # O_NONBLOCK: if a fifo was swapped in after the stat, open() must not hang on it.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            with open(fd, "rb", closefd=True) as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise UnpackableEntry(f"{rel!r} stopped being a regular file while it was packed.")
                try:
                    tar.addfile(_tarinfo(rel, is_dir=False, size=st.st_size, mode=st.st_mode), fh)
                except OSError as exc:  # tarfile's "unexpected end of data": the file shrank meanwhile
                    raise UnpackableEntry(f"{rel!r} changed while it was packed ({exc}).") from exc
        else:
            kind = "a device" if stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode) else (
                "a fifo" if stat.S_ISFIFO(st.st_mode) else "a socket or other special file")
            raise UnpackableEntry(f"{rel!r} is {kind}; an output may hold only files and folders.")


def _pack_stream(directory: Path, out: BinaryIO) -> tuple[str, int]:
    if not directory.is_dir():
        raise UnpackableEntry(f"{str(directory)!r} is not a folder.")
    sink = _HashingWriter(out)
    root_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # filename="" and mtime=0: the gzip header carries neither the file's name nor the time.
        with gzip.GzipFile(filename="", mode="wb", fileobj=sink, compresslevel=_GZIP_LEVEL, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_tree(tar, root_fd, "", 0)
    finally:
        os.close(root_fd)
    sink.flush()
    return sink.sha256.hexdigest(), sink.size


def pack_to(directory: Path, target_file: Path | BinaryIO) -> tuple[str, int]:
    """Write the deterministic ``.tar.gz`` of *directory*'s contents to *target_file*; return ``(sha256_hex, size)``.

    Streams: a large output never sits in memory. Entry names are relative (``a.txt``, ``sub/b.csv``);
    the folder itself is not an entry. A symlink, device, fifo or socket inside raises
    :class:`UnpackableEntry` (an :class:`UnsafeArchive`). A *target_file* given as a path is removed again
    if packing fails, and may not lie inside *directory* (the archive would contain itself).
    """
    if not isinstance(target_file, Path):
        return _pack_stream(directory, target_file)
    if target_file.resolve().is_relative_to(directory.resolve()):
        raise ArchiveError(f"the archive {str(target_file)!r} may not be written inside the folder it packs.")
    try:
        with open(target_file, "wb") as out:
            result = _pack_stream(directory, out)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            target_file.unlink()
        raise
    return result


def pack(directory: Path) -> bytes:
    """The deterministic ``.tar.gz`` of *directory* as bytes; for small folders (see :func:`pack_to`)."""
    buffer = io.BytesIO()
    _pack_stream(directory, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- extraction


class _LimitedReader:
    """Reads the decompressed tar stream and refuses to deliver more than *limit* bytes (gzip bombs)."""

    def __init__(self, raw: BinaryIO | gzip.GzipFile, limit: int, archive_name: str) -> None:
        self._raw = raw
        self._limit = limit
        self._name = archive_name
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        allowed = self._limit - self.count + 1  # one byte more than allowed proves the excess
        data = self._raw.read(allowed if size is None or size < 0 else min(size, allowed))
        self.count += len(data)
        if self.count > self._limit:
            raise UnsafeArchive(
                f"archive {self._name!r} decompresses to more than {self._limit} bytes (gzip bomb or oversized)."
            )
        return data


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses huge pax / GNU long-name headers before tarfile reads them into memory.

    ``_proc_member`` is tarfile's (private, long-stable) hook per header block; should a future Python
    rename it, this check silently disappears and the decompressed-size cap still bounds the header.
    """

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                    tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in extended and self.size > MAX_EXTENDED_HEADER:
            raise UnsafeArchive(
                f"archive has an extended header of {self.size} bytes (more than {MAX_EXTENDED_HEADER} allowed)."
            )
        member: tarfile.TarInfo = super()._proc_member(tarfile_)  # type: ignore[misc]  # a private hook typeshed leaves out
        return member


def _member_parts(member: tarfile.TarInfo) -> list[str]:
    """The path components of *member*, or :class:`UnsafeArchive` if the name could leave the target."""
    name = member.name
    if not name or "\x00" in name:
        raise UnsafeArchive(f"member {name!r} has an empty or invalid name.")
    if name.startswith("/"):
        raise UnsafeArchive(f"member {name!r} has an absolute path.")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"member {name!r} contains a '..' component.")
    return parts


def _check_kind(member: tarfile.TarInfo) -> None:
    name = member.name
    if member.issym():
        raise UnsafeArchive(f"member {name!r} is a symbolic link (to {member.linkname!r}); links are not allowed.")
    if member.islnk():
        raise UnsafeArchive(f"member {name!r} is a hard link (to {member.linkname!r}); links are not allowed.")
    if member.ischr() or member.isblk():
        raise UnsafeArchive(f"member {name!r} is a device file; only files and folders are allowed.")
    if member.isfifo():
        raise UnsafeArchive(f"member {name!r} is a fifo; only files and folders are allowed.")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE) or member.issparse():
        raise UnsafeArchive(
            f"member {name!r} has unsupported type {member.type!r}; only files and folders are allowed."
        )


def _prepare_target(target: Path) -> bool:
    """Make sure *target* is a fresh empty folder; return True if it was created here."""
    if target.is_symlink():
        raise ArchiveError(f"extraction target {str(target)!r} is a symbolic link.")
    if target.exists():
        if not target.is_dir() or any(target.iterdir()):
            raise ArchiveError(f"extraction target {str(target)!r} must be an empty folder or not exist.")
        return False
    target.mkdir(parents=True)
    return True


def _clean_target(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():  # only what this extraction wrote: the folder was empty before
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                child.unlink()


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, root: Path, parts: list[str]) -> None:
    if not parts:
        if member.isdir():
            return  # "./": the target itself
        raise UnsafeArchive(f"member {member.name!r} is a file without a name.")
    path = root.joinpath(*parts)
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UnsafeArchive(f"member {member.name!r} lies below a file that was already extracted.") from None
    # We create only plain folders and files, so a parent that resolves elsewhere means a bug or a race.
    if not Path(os.path.realpath(parent)).is_relative_to(root):
        raise UnsafeArchive(f"member {member.name!r} would be written outside the target.")
    if member.isdir():
        if path.exists() and (path.is_symlink() or not path.is_dir()):
            raise UnsafeArchive(f"member {member.name!r} is a folder where a file was already extracted.")
        path.mkdir(mode=0o755, exist_ok=True)
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise UnsafeArchive(f"member {member.name!r} occurs twice or clashes with a folder.") from None
    with open(fd, "wb", closefd=True) as out:
        source = tar.extractfile(member)
        assert source is not None  # regular file
        shutil.copyfileobj(source, out, _CHUNK)
    os.chmod(path, _normalised_mode(member.mode, is_dir=False))


def extract(archive_file: Path, target: Path, *, max_bytes: int, max_files: int) -> None:
    """Extract the ``.tar.gz`` *archive_file* into the fresh folder *target*, refusing anything unsafe.

    Refused with :class:`UnsafeArchive` (one sentence naming the member): absolute paths, ``..``
    components, symbolic and hard links, devices, fifos and other special members, more than *max_files*
    members, file contents declared larger than *max_bytes* in total, a decompressed stream larger than
    *max_bytes* plus tar's own overhead (a gzip bomb, trailing garbage, a huge extended header), an extended
    header over :data:`MAX_EXTENDED_HEADER`, and a path that occurs twice. A damaged archive raises
    :class:`CorruptArchive`, a subclass (the gzip checksum is verified by reading the stream to its end).
    On any failure everything written into *target* is removed again; *target* must be empty or not exist
    (else :class:`ArchiveError`). Errors of the station's own disk (``OSError``, e.g. disk full) are not
    the archive's fault and propagate unchanged, after the same clean-up.

    Why our own checks and not just ``tarfile.data_filter`` (Python 3.11.4+): that filter allows links
    that stay inside the target, knows no size, count or decompression limits, is missing from older
    3.11 releases, and its errors do not say what the caller needs. It is still applied to every member
    after our checks, as a second line of defence against a mistake in them. Files are then written by
    this function itself (``O_CREAT | O_EXCL | O_NOFOLLOW``, modes 0644/0755, no owners, no times), never
    by ``TarFile.extract``.
    """
    if max_bytes < 0 or max_files < 0:
        raise ValueError("max_bytes and max_files must not be negative.")
    created = _prepare_target(target)
    root = Path(os.path.realpath(target))
    name = archive_file.name
    stream_limit = max_bytes + _PER_MEMBER_OVERHEAD * (max_files + 1) + _TRAILER_ALLOWANCE
    try:
        with open(archive_file, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            limited = _LimitedReader(gz, stream_limit, name)
            # a stream ("r|") is only read; typeshed asks every fileobj for a whole file's methods
            with tarfile.open(fileobj=limited, mode="r|", tarinfo=_BoundedTarInfo) as tar:  # type: ignore[call-overload]  # see above
                _extract_members(tar, root, max_bytes=max_bytes, max_files=max_files)
            # Read to the end: counts trailing data against the limit and makes gzip verify its CRC and length.
            while limited.read(_CHUNK):
                pass
    except BaseException as exc:
        _clean_target(target, created)
        if isinstance(exc, ArchiveError):
            raise
        if isinstance(exc, (tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error)):
            raise CorruptArchive(f"archive {name!r} is not a readable .tar.gz ({exc}).") from exc
        raise


def _extract_members(tar: tarfile.TarFile, root: Path, *, max_bytes: int, max_files: int) -> None:
    count = 0
    declared = 0
    for member in tar:
        count += 1
        if count > max_files:
            raise UnsafeArchive(f"archive has more than {max_files} members (at {member.name!r}).")
        parts = _member_parts(member)
        _check_kind(member)
        if member.isfile():
            declared += member.size
            if declared > max_bytes:
                raise UnsafeArchive(
                    f"member {member.name!r} brings the declared content size to {declared} bytes, "
                    f"more than the {max_bytes} allowed."
                )
        if hasattr(tarfile, "data_filter"):
            try:
                tarfile.data_filter(member, str(root))
            except tarfile.FilterError as exc:
                raise UnsafeArchive(f"member {member.name!r} refused by tarfile's data filter ({exc}).") from exc
        _write_member(tar, member, root, parts)

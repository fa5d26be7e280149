"""Moving a train's output from the sandbox to the station's host folder, without trusting the train.

The train controls every byte and every name in its output. Before anything lands on the host we check each
entry ourselves (not ``tarfile``'s extraction filters, whose behaviour differs between Python versions):
only regular files and folders, relative names without ``..``, nothing through a symlink, and never more
than the output limit written to the host disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

_CHUNK = 1024 * 1024


class OutputRejected(Exception):
    """The output breaks a rule (too big, a link, a device, a bad name); the message is one sentence."""


def too_big(limit: int) -> OutputRejected:
    return OutputRejected(f"the output is larger than the limit of {limit} bytes")


def _safe_relative(name: str, strip: str | None) -> PurePosixPath | None:
    """The member's path below the output root, or None for the root itself; refuses escaping names."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\x00" in name:
        raise OutputRejected(f"the output contains an unsafe path {name!r}")
    parts = [p for p in path.parts if p != "."]
    if strip is not None:
        if not parts or parts[0] != strip:
            raise OutputRejected(f"the output contains an unexpected path {name!r}")
        parts = parts[1:]
    return PurePosixPath(*parts) if parts else None


def _open_new_file(path: Path) -> IO[bytes]:
    """Create ``path`` exclusively and without following a symlink (the folders above are ours)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb")


def extract_tar(stream: IO[bytes], dest: Path, *, max_bytes: int, strip: str | None = None) -> int:
    """Extract a tar stream into the empty folder ``dest``; return the bytes written.

    ``strip`` is the expected first path component (``docker cp`` puts everything below ``output/``).
    Raises :class:`OutputRejected` on the first bad member and stops writing at ``max_bytes``; the caller
    empties ``dest`` then.
    """
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            relative = _safe_relative(member.name, strip)
            if member.isdir():
                if relative is not None:
                    try:
                        (dest / relative).mkdir(parents=True, exist_ok=True)
                    except (FileExistsError, NotADirectoryError) as exc:
                        raise OutputRejected(f"the output contains {member.name!r} as a file and a folder") from exc
                continue
            if not member.isreg() or relative is None:
                raise OutputRejected(f"the output contains {member.name!r}, which is neither a file nor a folder")
            if written + member.size > max_bytes:
                raise too_big(max_bytes)
            target = dest / relative
            source = archive.extractfile(member)
            assert source is not None  # a regular member always has data
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                out = _open_new_file(target)
            except (FileExistsError, NotADirectoryError) as exc:
                raise OutputRejected(f"the output contains {member.name!r} twice or below a file") from exc
            with out:
                shutil.copyfileobj(source, out, _CHUNK)
            written += member.size
    return written


def tree_size(root: Path) -> int:
    """Bytes a folder occupies (the larger of apparent and allocated size per file, so sparse files count)."""
    total = 0
    stack = [root]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                stack.append(Path(entry.path))
            total += max(info.st_size, info.st_blocks * 512)
    return total


def copy_tree(source: Path, dest: Path, *, max_bytes: int) -> int:
    """Copy a folder the train wrote into the empty folder ``dest`` with the same rules as :func:`extract_tar`."""
    dest.mkdir(parents=True, exist_ok=True)
    written = 0
    for current, dirs, files in os.walk(source, followlinks=False):
        here = Path(current)
        rel_dir = here.relative_to(source)
        for name in sorted(dirs + files):
            path = here / name
            info = path.lstat()
            if stat.S_ISDIR(info.st_mode):
                (dest / rel_dir / name).mkdir(exist_ok=True)
                continue
            if not stat.S_ISREG(info.st_mode):
                shown = (rel_dir / name).as_posix()
                raise OutputRejected(f"the output contains {shown!r}, which is neither a file nor a folder")
            if written + info.st_size > max_bytes:
                raise too_big(max_bytes)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as src, _open_new_file(dest / rel_dir / name) as out:
                # copy at most what was announced + 1 byte: a file growing meanwhile cannot push us past the limit
                remaining = max_bytes - written
                copied = 0
                while chunk := src.read(min(_CHUNK, remaining - copied + 1)):
                    copied += len(chunk)
                    if copied > remaining:
                        raise too_big(max_bytes)
                    out.write(chunk)
            written += copied
    return written


def empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (after a failed or rejected run nothing partial stays)."""
    if not folder.exists():
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()

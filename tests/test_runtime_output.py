"""Output extraction refuses whatever a hostile train could put in its output archive or folder."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from station.runtimes.output import OutputRejected, copy_tree, extract_tar


def archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buffer.seek(0)
    return buffer


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def test_extracts_files_and_folders(tmp_path: Path) -> None:
    data = archive((member("output", tarfile.DIRTYPE), None), (member("output/a.txt"), b"a"),
                   (member("output/sub", tarfile.DIRTYPE), None), (member("output/sub/b.txt"), b"bb"))
    assert extract_tar(data, tmp_path / "out", max_bytes=10, strip="output") == 3
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"bb"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((member("output/link", tarfile.SYMTYPE, "/etc/passwd"), None), "neither a file nor a folder"),
        ((member("output/hard", tarfile.LNKTYPE, "output/a.txt"), None), "neither a file nor a folder"),
        ((member("output/dev", tarfile.CHRTYPE), None), "neither a file nor a folder"),
        ((member("output/fifo", tarfile.FIFOTYPE), None), "neither a file nor a folder"),
        ((member("output/../escape.txt"), b"x"), "unsafe path"),
        ((member("/etc/cron.d/x"), b"x"), "unsafe path"),
        ((member("elsewhere/x"), b"x"), "unexpected path"),
        ((member("output/a.txt"), b"again"), "twice"),
        ((member("output/big"), b"x" * 100), "larger than the limit"),
    ],
)
def test_refuses(tmp_path: Path, bad: tuple[tarfile.TarInfo, bytes | None], message: str) -> None:
    data = archive((member("output/a.txt"), b"a"), bad)
    with pytest.raises(OutputRejected, match=message):
        extract_tar(data, tmp_path / "out", max_bytes=50, strip="output")
    assert not (tmp_path / "escape.txt").exists()


def test_copy_tree_refuses_links_and_size(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("hello")
    assert copy_tree(source, tmp_path / "ok", max_bytes=5) == 5
    assert (tmp_path / "ok" / "sub" / "a.txt").read_text() == "hello"
    with pytest.raises(OutputRejected, match="larger than the limit"):
        copy_tree(source, tmp_path / "small", max_bytes=4)
    os.symlink("/etc/passwd", source / "sub" / "link")
    with pytest.raises(OutputRejected, match="neither a file nor a folder"):
        copy_tree(source, tmp_path / "linked", max_bytes=100)

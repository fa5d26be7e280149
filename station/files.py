"""Writing the station's small state files (an execution's review, cohort, held spend, record draft) atomically.

A crash leaves the old file or the new one, never half of one: the data goes to a temporary file beside it, is
flushed to disk, and replaces the file in one rename (same folder, so same file system).
"""

import os
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)

"""Print DIST and every installed distribution that nothing but DIST needs (through the project ``pht-kg``), one a
line, for ``pip uninstall``: ``python only_needed_by.py kubernetes``. Requirements are followed with their markers
and extras evaluated (pip's own ``packaging``: run it with pip's wheel on ``sys.path``)."""

from __future__ import annotations

import importlib.metadata as md
import sys

from pip._vendor.packaging.requirements import Requirement
from pip._vendor.packaging.utils import canonicalize_name


def needed(roots: list[Requirement], skip: str) -> set[str]:
    """The distributions ``roots`` pull in, with extras, not going through ``skip``."""
    seen: set[tuple[str, str]] = set()
    todo = [(r, "") for r in roots]
    while todo:
        req, extra = todo.pop()
        name = canonicalize_name(req.name)
        if name == skip or (req.marker is not None and not req.marker.evaluate({"extra": extra})):
            continue
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            try:
                dist = md.distribution(name)
            except md.PackageNotFoundError:
                continue
            todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return {name for name, _ in seen}


def main(dist: str) -> int:
    project = [Requirement(r) for r in md.distribution("pht-kg").requires or []]
    project = [r for r in project if r.marker is None or r.marker.evaluate({"extra": ""})]
    everything = needed(project, skip="")
    rest = needed(project, skip=canonicalize_name(dist))
    print("\n".join(sorted(everything - rest)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

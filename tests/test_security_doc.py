"""docs/security.md maps each promise to the tests that prove it: every test it names exists, and every test
under tests/security/ is named there (a new attack test without its promise, or a renamed test, fails here)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"


def named_tests() -> set[tuple[str, str]]:
    """(file, test function) pairs the page names: ``tests/x.py::name`` and the ``::name`` that follow it."""
    pairs: set[tuple[str, str]] = set()
    for cell in DOC.read_text().split("|"):
        current = None
        for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", cell):
            current = match.group(1) or current
            if match.group(2):
                assert current, f"a test is named without its file in: {cell.strip()[:120]}"
                pairs.add((current, match.group(2)))
    return pairs


def test_every_test_the_page_names_exists() -> None:
    missing = [f"{file}::{name}" for file, name in sorted(named_tests())
               if not re.search(rf"^(async )?def {name}\(", (ROOT / file).read_text(), re.M)]
    assert not missing, "docs/security.md names tests that do not exist:\n" + "\n".join(missing)


def test_every_attack_test_is_mapped_to_its_promise() -> None:
    named = named_tests()
    unnamed = [f"{path.relative_to(ROOT)}::{name}" for path in sorted((ROOT / "tests" / "security").glob("test_*.py"))
               for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)
               if (str(path.relative_to(ROOT)), name) not in named]
    assert not unnamed, "tests under tests/security/ that docs/security.md does not map:\n" + "\n".join(unnamed)

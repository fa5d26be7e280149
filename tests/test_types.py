"""Types are checked: mypy runs on every package with the configuration in pyproject.toml (``[tool.mypy]``:
``strict`` for every package, see docs/architecture.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "pyproject.toml"
PACKAGES = ["graph_store", "trust", "client", "orchestrator", "station", "station_mpu", "local_platform", "pht_cli"]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    """mypy with the project's configuration (its cache is ``.mypy_cache`` of the checkout)."""
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(CONFIG),
                           "--cache-dir", str(ROOT / ".mypy_cache"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_every_package_type_checks() -> None:
    result = mypy(*PACKAGES)
    assert result.returncode == 0, f"mypy found type errors:\n{result.stdout}{result.stderr}"
    assert f"in {sum(1 for p in PACKAGES for _ in (ROOT / p).rglob('*.py'))} source files" in result.stdout


def test_a_deliberate_type_error_fails_the_check(tmp_path: Path) -> None:
    """A wrong type, a function without annotations, and (strict) an ``Any`` returned as an ``int``."""
    module = tmp_path / "deliberate_error.py"
    module.write_text('from typing import Any\n\n\ndef answer() -> int:\n    return "forty-two"\n\n\n'
                      'def untyped(x):\n    return x\n\n\ndef loaded(raw: Any) -> int:\n    return raw\n')
    result = mypy(str(module))
    assert result.returncode == 1, result.stdout + result.stderr
    for line, error in ((5, 'Incompatible return value type (got "str", expected "int")  [return-value]'),
                        (8, "Function is missing a type annotation  [no-untyped-def]"),
                        (13, 'Returning Any from function declared to return "int"  [no-any-return]')):
        assert f"deliberate_error.py:{line}: error: {error}" in result.stdout, result.stdout
    assert "Found 3 errors in 1 file" in result.stdout


_IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<rest>.*)$")


def test_every_type_ignore_names_its_error_and_why() -> None:
    """``# type: ignore[code]  # reason`` on the same line (mypy itself refuses one without a code)."""
    bare = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                found = _IGNORE.search(line)
                if found and (not found["codes"] or not re.match(r"\s+#\s*\S", found["rest"])):
                    bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "type: ignore without an error code and a reason:\n" + "\n".join(bare)

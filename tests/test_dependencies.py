"""The packages' dependency rules (docs/architecture.md): import-linter's contracts in pyproject.toml hold, a
deliberate violation of each breaks it, and each package declares its public names in ``__all__``."""

from __future__ import annotations

import ast
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["graph_store", "trust", "client", "orchestrator", "station", "station_mpu", "dataspace", "local_platform",
            "pht_cli"]
CONTRACTS = ["layers", "independent-services", "dataspace-consumers", "dataspace-public", "nothing-imports-the-cli",
             "private-modules"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """Run import-linter on ``cwd``'s pyproject.toml; the packages are imported from ``cwd`` (first on the path)."""
    selected = [a for c in contracts for a in ("--contract", c)]
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *selected], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_dependency_contracts_hold() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout, result.stdout


VIOLATIONS = {
    # contract: (module written into a copy of the packages, its text, the import the report must name)
    "layers": ("client/_upward.py", "import orchestrator\n", "client._upward -> orchestrator"),
    "independent-services": ("station/uses_central.py", "from orchestrator import settings\n",
                             "station.uses_central -> orchestrator"),
    "dataspace-consumers": ("orchestrator/dataspace_user.py", "import dataspace\n",
                            "orchestrator.dataspace_user -> dataspace"),
    "dataspace-public": ("station/dataspace_peek.py", "from dataspace._obtain import DataspaceConsumer\n",
                         "station.dataspace_peek -> dataspace._obtain"),
    "nothing-imports-the-cli": ("local_platform/cli_user.py", "import pht_cli\n", "local_platform.cli_user -> pht_cli"),
    "private-modules": ("station_mpu/peek.py", "from graph_store._validator import PostChangeView\n",
                        "station_mpu.peek -> graph_store._validator"),
}


@pytest.fixture(scope="module")
def copy_of_the_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_copy_keeps_the_contracts(copy_of_the_packages: Path) -> None:
    """The copy the violations go into is clean, so each break below is the violation's."""
    result = lint_imports(copy_of_the_packages)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("contract", CONTRACTS)
def test_a_deliberate_violation_breaks_its_contract(copy_of_the_packages: Path, contract: str) -> None:
    path, text, named = VIOLATIONS[contract]
    module = copy_of_the_packages / path
    module.write_text(text)
    try:
        result = lint_imports(copy_of_the_packages, contract)
    finally:
        module.unlink()
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout and named in result.stdout, result.stdout


def imports_of(package: str) -> set[str]:
    found = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found


def test_the_mpu_the_station_and_the_orchestrator_never_import_each_other() -> None:
    """The same rule read straight from the source (every import statement, however guarded), without import-linter."""
    assert not imports_of("station_mpu") & {"station", "orchestrator", "pht_cli"}
    assert "station_mpu" not in imports_of("orchestrator")
    assert "station_mpu" not in imports_of("station")
    assert not imports_of("orchestrator") & {"station", "pht_cli"}
    assert not imports_of("station") & {"orchestrator", "pht_cli"}
    assert not imports_of("dataspace") & {"orchestrator", "station", "station_mpu", "local_platform", "pht_cli"}
    # the station obtains a data-space train's inputs through the package's public names only
    assert "dataspace" not in imports_of("orchestrator") | imports_of("station_mpu")
    for package in PACKAGES:
        if package != "pht_cli":
            assert "pht_cli" not in imports_of(package), package


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_exports_its_public_names(package: str) -> None:
    """pht_cli exports nothing: nothing imports it, its face is the ``pht`` command."""
    module = importlib.import_module(package)
    names = module.__all__
    assert (names == []) if package == "pht_cli" else (names and sorted(names) == names), names
    for name in names:
        assert hasattr(module, name), name
        assert not name.startswith("_"), name

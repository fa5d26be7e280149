"""The examples in the packages' docstrings run (a docstring example is part of the contract)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dataspace
import graph_store
import orchestrator
import trust

MODULES = sorted(
    m.name for pkg in (graph_store, trust, orchestrator, dataspace)
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")
    if not m.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed"


def test_the_examples_exist() -> None:
    examples = sum(doctest.testmod(importlib.import_module(n)).attempted for n in MODULES)
    assert examples >= 5

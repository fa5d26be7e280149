"""The ``pht`` command line: its face is the ``pht`` console script (``pht_cli.main:app``), not Python names.

The top of the dependency graph: it uses every package and nothing imports it (an import-linter contract,
``tests/test_dependencies.py``). It exports nothing, and its package import stays empty so that
``python -m pht_cli.main`` runs the module once (the tests start the CLI that way).
"""

__all__: list[str] = []

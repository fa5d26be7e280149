"""A whole platform in one process: the central service and several station agents, on this machine.

For ``pht demo``, the end-to-end tests and the benchmarks. A top-level package of its own because it is
the one place allowed to use both sides (``orchestrator`` and ``station``), which never import each
other; it only wires them together over real HTTP on 127.0.0.1, exactly as separate hosts would talk.
"""

from .data import read_pooled, split_breast_cancer
from .platform import LocalPlatform, StationSpec, TrainImage, detect_runtime
from .setup import setup_stations

__all__ = ["LocalPlatform", "StationSpec", "TrainImage", "detect_runtime", "read_pooled", "setup_stations",
           "split_breast_cancer"]

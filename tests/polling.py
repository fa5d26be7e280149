"""Waiting for something another process or thread does: one loop for the tests that need it."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 30, interval_s: float = 0.1) -> object:
    """``check()``'s first truthy value within ``timeout_s``; an AssertionError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"not within {timeout_s} s: {what}")

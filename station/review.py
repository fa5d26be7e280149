"""Automatic checks of a train's output before anything leaves the station.

Each check gives (name, passed, one sentence). The report stays at the station (the held output's
``review.json``, shown by ``pht station pending``/``review`` on the station host): the sentences name the train's
files, so they never leave; a release may send the checks' names and results if the policy says so
(``pht:sharesCheckNames``). No sentence contains the value a check protects: the minimum cell count check says
where a small count is, never the count. The checks are a safety net for the admin, not a proof of anonymity: an
output that passes can still be withheld by hand.
"""

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .policy import StationPolicy

CHECKER_VERSION = "pht-station-review/2"  #: named in each disclosure-control record; raised when a check changes
MAX_SCANNED_BYTES = 20 * 1024**2  #: small-cell scanning reads at most this much per file
COUNT_KEYS = ("count", "n")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def review(output: Path, policy: StationPolicy) -> list[Check]:
    """Run every check the policy configures on the folder ``output`` (always at least the file listing)."""
    files = sorted(p for p in output.rglob("*") if p.is_file())
    sizes = {p: p.stat().st_size for p in files}
    total = sum(sizes.values())
    checks = [Check("file-list", True, f"{len(files)} file(s), {total} bytes: "
                    + (", ".join(str(p.relative_to(output)) for p in files[:20]) or "no files")
                    + (" ..." if len(files) > 20 else ""))]
    if policy.max_output_bytes is not None:
        ok = total <= policy.max_output_bytes
        checks.append(Check("max-output-bytes", ok, f"The output has {total} bytes, "
                            + ("within" if ok else "above") + f" the limit of {policy.max_output_bytes}."))
    if policy.max_file_bytes is not None:
        big = [p for p in files if sizes[p] > policy.max_file_bytes]
        checks.append(Check("max-file-bytes", not big,
                            f"No file is larger than {policy.max_file_bytes} bytes." if not big else
                            f"{len(big)} file(s) exceed {policy.max_file_bytes} bytes, e.g. "
                            f"{big[0].relative_to(output)} ({sizes[big[0]]} bytes)."))
    if policy.allowed_file_types:
        odd = [p for p in files if p.suffix.lstrip(".").lower() not in policy.allowed_file_types]
        allowed = ", ".join(sorted(policy.allowed_file_types))
        checks.append(Check("allowed-file-types", not odd,
                            f"Every file is of an allowed type ({allowed})." if not odd else
                            f"{odd[0].relative_to(output)} is not of an allowed type ({allowed})."))
    if policy.min_cell_count is not None:
        # where, never the value: the detail must not carry the count it protects
        small = next((f"{p.relative_to(output)} {where}"
                      for p in files if sizes[p] <= MAX_SCANNED_BYTES
                      for where, _ in _small_cells(p, policy.min_cell_count)), None)
        checks.append(Check("min-cell-count", small is None,
                            f"No count below {policy.min_cell_count} was found." if small is None else
                            f"{small} holds a count below the minimum cell count {policy.min_cell_count}."))
    return checks


def _small_cells(path: Path, minimum: int) -> Iterator[tuple[str, int]]:
    """Whole numbers 1..minimum-1 in CSV cells, and in JSON under count-like keys."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8", errors="replace") as f:
                for row_no, row in enumerate(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), 1):
                    for col_no, cell in enumerate(row, 1):
                        value = _whole(cell.strip())
                        if value is not None and 0 < value < minimum:
                            yield f"row {row_no} column {col_no}", value
        elif suffix == ".json":
            yield from _json_counts(json.loads(path.read_text(encoding="utf-8")), "", minimum)
    except (OSError, ValueError, RecursionError):
        return


def _json_counts(node: Any, where: str, minimum: int) -> Iterator[tuple[str, int]]:
    if isinstance(node, dict):
        for key, value in node.items():
            name = str(key).lower()
            if isinstance(value, int) and not isinstance(value, bool) and (
                    name in COUNT_KEYS or name.endswith("_count")) and 0 < value < minimum:
                yield f"key {where}{key}", value
            else:
                yield from _json_counts(value, f"{where}{key}.", minimum)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _json_counts(value, f"{where}{i}.", minimum)


def _whole(text: str) -> int | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None

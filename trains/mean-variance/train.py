"""Incremental mean and variance of chosen columns (uses only the train I/O contract).

Parameters: COLUMNS (comma-separated column names of the station's CSV files).
Each station merges its rows into the running moments it received (input 0, if any) with Chan et al.'s
pairwise update of (n, mean, M2), which is exact in exact arithmetic and numerically stable, unlike
summing squares. Output: result.json {"columns": {name: {"n", "mean", "m2", "variance", "sample_variance"}}}.
"""

import csv
import json
import os
import pathlib
import sys


def moments(values: list[float]) -> tuple[int, float, float]:
    n = len(values)
    if n == 0:
        return 0, 0.0, 0.0
    mean = sum(values) / n
    return n, mean, sum((v - mean) ** 2 for v in values)


def merge(a: tuple[int, float, float], b: tuple[int, float, float]) -> tuple[int, float, float]:
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    if n == 0:
        return 0, 0.0, 0.0
    delta = mb - ma
    return n, ma + delta * nb / n, m2a + m2b + delta * delta * na * nb / n


def main() -> int:
    params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())
    columns = [c.strip() for c in params["COLUMNS"].split(",") if c.strip()]
    values: dict[str, list[float]] = {c: [] for c in columns}
    for path in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                for c in columns:
                    values[c].append(float(row[c]))
    previous = {}
    first_input = pathlib.Path(os.environ["PHT_INPUT_DIR"]) / "0" / "result.json"
    if first_input.exists():
        previous = json.loads(first_input.read_text())["columns"]
    result = {}
    for c in columns:
        before = previous.get(c, {"n": 0, "mean": 0.0, "m2": 0.0})
        n, mean, m2 = merge((before["n"], before["mean"], before["m2"]), moments(values[c]))
        result[c] = {"n": n, "mean": mean, "m2": m2, "variance": m2 / n if n else None,
                     "sample_variance": m2 / (n - 1) if n > 1 else None}
    pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps({"columns": result}))
    print(f"station {os.environ.get('PHT_STATION')}: {len(values[columns[0]]) if columns else 0} rows merged")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Federated logistic regression with FedAvg; numpy only (uses only the train I/O contract).

One image plays both roles (``PHT_ROLE``):

* round 1, station: share per-feature count, sum and sum of squares (no model yet), so that every station
  standardises with the same global mean and standard deviation;
* round 1, aggregator: combine them into the global mean/std and the initial model (zeros);
* round r > 1, station: start from the aggregator's model (input 0), run LOCAL_EPOCHS epochs of full-batch
  gradient descent on the standardised local data, share the weights and the row count;
* round r > 1, aggregator: average the stations' weights, weighted by their row counts (FedAvg).

Parameters: TARGET (0/1 label column), LOCAL_EPOCHS (default 20), LEARNING_RATE (default 0.5).
Features are every other numeric column except the first (an id). Output: model.json.
"""

import csv
import json
import os
import pathlib
import sys

import numpy as np


def load(target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rows, labels, names = [], [], []
    for path in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv")):
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            names = [c for c in (reader.fieldnames or [])[1:] if c != target]
            for row in reader:
                rows.append([float(row[c]) for c in names])
                labels.append(float(row[target]))
    return np.array(rows, dtype=float).reshape(-1, len(names)), np.array(labels), names


def inputs() -> list[dict]:
    root = pathlib.Path(os.environ["PHT_INPUT_DIR"])
    count = int(os.environ.get("PHT_INPUT_COUNT", "0"))
    return [json.loads((root / str(i) / "model.json").read_text()) for i in range(count)]


def write(document: dict) -> None:
    pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "model.json").write_text(json.dumps(document))


def station(params: dict, round_: int) -> None:
    x, y, names = load(params.get("TARGET", "benign"))
    if round_ == 1:
        write({"kind": "stats", "features": names, "n": len(y), "sum": x.sum(axis=0).tolist(),
               "sumsq": (x * x).sum(axis=0).tolist()})
        return
    model = inputs()[0]
    mean, std = np.array(model["mean"]), np.array(model["std"])
    z = (x - mean) / std
    w, b = np.array(model["weights"]), float(model["bias"])
    rate, epochs = float(params.get("LEARNING_RATE", "0.5")), int(params.get("LOCAL_EPOCHS", "20"))
    for _ in range(epochs):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w = w - rate * (z.T @ (p - y)) / len(y)
        b = b - rate * float(np.mean(p - y))
    write({"kind": "update", "features": names, "n": len(y), "mean": model["mean"], "std": model["std"],
           "weights": w.tolist(), "bias": b})


def aggregator(round_: int) -> None:
    parts = inputs()
    if round_ == 1:
        n = sum(p["n"] for p in parts)
        total = np.sum([p["sum"] for p in parts], axis=0)
        squares = np.sum([p["sumsq"] for p in parts], axis=0)
        mean = total / n
        std = np.sqrt(np.maximum(squares / n - mean * mean, 1e-12))
        write({"kind": "model", "features": parts[0]["features"], "round": 1, "n": n, "mean": mean.tolist(),
               "std": std.tolist(), "weights": [0.0] * len(mean), "bias": 0.0})
        return
    n = sum(p["n"] for p in parts)
    weights = sum(np.array(p["weights"]) * p["n"] for p in parts) / n
    bias = sum(p["bias"] * p["n"] for p in parts) / n
    write({"kind": "model", "features": parts[0]["features"], "round": round_, "n": n, "mean": parts[0]["mean"],
           "std": parts[0]["std"], "weights": weights.tolist(), "bias": bias})


def main() -> int:
    params = json.loads(pathlib.Path(os.environ["PHT_PARAMS_FILE"]).read_text())
    round_ = int(os.environ["PHT_ROUND"])
    if os.environ["PHT_ROLE"] == "aggregator":
        aggregator(round_)
    else:
        station(params, round_)
    print(f"{os.environ['PHT_ROLE']} {os.environ.get('PHT_STATION')}: round {round_} done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

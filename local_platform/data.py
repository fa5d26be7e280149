"""The Wisconsin breast cancer data (shipped inside scikit-learn, no download) split across stations."""

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TARGET = "benign"  #: 1 = benign, 0 = malignant (scikit-learn's target)


def _load() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_breast_cancer
    data = load_breast_cancer()
    return data.data, data.target, [n.replace(" ", "_") for n in data.feature_names]


def split_breast_cancer(target: Path, stations: Sequence[str], *, seed: int = 7) -> dict[str, Path]:
    """Write one folder per station with ``patients.csv`` (an uneven, shuffled, disjoint split of the 569
    patients: station *i* of *n* gets a share proportional to *i* + 1); returns station -> folder."""
    x, y, names = _load()
    order = np.random.default_rng(seed).permutation(len(y))
    weights = np.arange(1, len(stations) + 1, dtype=float)
    cuts = np.round(np.cumsum(weights / weights.sum())[:-1] * len(y)).astype(int)
    folders: dict[str, Path] = {}
    for sid, rows in zip(stations, np.split(order, cuts), strict=True):
        folder = target / sid
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "patients.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["patient", *names, TARGET])
            for i in sorted(rows):
                writer.writerow([f"{sid}-{i}", *(repr(float(v)) for v in x[i]), int(y[i])])
        folders[sid] = folder
    return folders


def read_pooled(folders: Sequence[Path]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All stations' rows together (the oracle: what a central analysis would see)."""
    xs, ys, names = [], [], []
    for folder in folders:
        with (folder / "patients.csv").open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader)
            names = header[1:-1]
            for row in reader:
                xs.append([float(v) for v in row[1:-1]])
                ys.append(int(row[-1]))
    return np.array(xs), np.array(ys), names

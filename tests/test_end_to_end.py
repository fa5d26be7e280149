"""Issue 5's oracle: each example train through the whole platform (central service, three station agents
and an aggregator station, real Docker, the object store) gives what the same analysis gives centrally on
the pooled data."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import require_component

from local_platform import LocalPlatform, StationSpec, read_pooled, split_breast_cancer
from local_platform.platform import TrainImage

pytestmark = pytest.mark.real_component("docker")
REPO = Path(__file__).resolve().parent.parent
STATIONS = ("aachen", "leipzig", "cologne")
COLUMNS = ("mean_radius", "mean_texture", "worst_area")


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    require_component("docker")
    tmp = tmp_path_factory.mktemp("e2e")
    folders = split_breast_cancer(tmp / "data", STATIONS)
    (tmp / "data" / "aggregator").mkdir()
    specs = [StationSpec(sid, folders[sid]) for sid in STATIONS] + [StationSpec("aggregator", tmp / "data" / "aggregator")]
    with LocalPlatform(tmp / "platform", specs, runtime="docker") as p:
        yield p


@pytest.fixture(scope="module")
def pooled(platform: LocalPlatform) -> tuple[np.ndarray, np.ndarray, list[str]]:
    return read_pooled([s.dataset for s in platform.stations if s.id in STATIONS])


def image(platform: LocalPlatform, name: str) -> TrainImage:
    return platform.build_image(REPO / "trains" / name, f"pht-trains/{name}:test")


def define(platform: LocalPlatform, did: str, img: TrainImage, params: list[str], **extra: object) -> None:
    researcher = platform.client("alice")
    researcher.register_definition({"id": did, "title": did, "image_name": img.name, "image_digest": img.digest,
                                    "mode": "incremental", "route": list(STATIONS),
                                    "parameters": [{"name": p} for p in params], **extra})


def final_output(platform: LocalPlatform, train: dict, tmp: Path) -> Path:
    assert train["state"] == "finished", train
    last = train["executions"][-1]
    return platform.fetch(last["output_sha256"], tmp / train["id"])


def test_incremental_cohort_count_equals_the_pooled_count(platform: LocalPlatform, pooled, tmp_path: Path) -> None:
    define(platform, "cohort-count", image(platform, "cohort-count"), ["COLUMN", "OP", "VALUE", "MIN_CELL"])
    alice = platform.client("alice")
    tid = alice.submit("cohort-count", {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "15", "MIN_CELL": "5"})
    result = json.loads((final_output(platform, alice.wait(tid), tmp_path) / "result.json").read_text())
    x, _, names = pooled
    expected = int((x[:, names.index("mean_radius")] > 15).sum())
    assert result == {"count": expected, "stations": 3, "suppressed": 0}


def test_incremental_mean_and_variance_equal_the_pooled_ones(platform: LocalPlatform, pooled, tmp_path: Path) -> None:
    define(platform, "mean-variance", image(platform, "mean-variance"), ["COLUMNS"])
    alice = platform.client("alice")
    tid = alice.submit("mean-variance", {"COLUMNS": ",".join(COLUMNS)})
    result = json.loads((final_output(platform, alice.wait(tid), tmp_path) / "result.json").read_text())
    x, _, names = pooled
    for c in COLUMNS:
        column = x[:, names.index(c)]
        got = result["columns"][c]
        assert got["n"] == len(column)
        assert got["mean"] == pytest.approx(column.mean(), rel=1e-9, abs=1e-9)
        assert got["variance"] == pytest.approx(column.var(), rel=1e-9, abs=1e-9)
        assert got["sample_variance"] == pytest.approx(column.var(ddof=1), rel=1e-9, abs=1e-9)


def test_federated_logistic_regression_is_within_two_points_of_central_training(
        platform: LocalPlatform, pooled, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    img = image(platform, "fedavg-logreg")
    researcher = platform.client("alice")
    researcher.register_definition({
        "id": "fedavg", "title": "FedAvg logistic regression", "image_name": img.name, "image_digest": img.digest,
        "mode": "federated", "route": list(STATIONS), "rounds": 6, "aggregator": "aggregator",
        "parameters": [{"name": "TARGET"}, {"name": "LOCAL_EPOCHS"}, {"name": "LEARNING_RATE"}]})
    tid = researcher.submit("fedavg", {"TARGET": "benign", "LOCAL_EPOCHS": "20", "LEARNING_RATE": "0.5"})
    train = researcher.wait(tid, timeout_s=300)
    assert train["executions"][-1]["stop"] is None and train["executions"][-1]["round"] == 6, "aggregation last"
    model = json.loads((final_output(platform, train, tmp_path) / "model.json").read_text())
    x, y, names = pooled
    assert model["kind"] == "model" and model["round"] == 6 and model["features"] == names
    z = (x - np.array(model["mean"])) / np.array(model["std"])
    federated = float((((z @ np.array(model["weights"]) + model["bias"]) > 0).astype(int) == y).mean())
    central = LogisticRegression(max_iter=5000).fit(StandardScaler().fit_transform(x), y)
    central_accuracy = float(central.score(StandardScaler().fit_transform(x), y))
    assert abs(federated - central_accuracy) <= 0.02, (federated, central_accuracy)
    rounds = {e["round"] for e in train["executions"]}
    assert rounds == set(range(1, 7)) and sum(e["stop"] is None for e in train["executions"]) == 6


def test_station_events_reach_each_stations_own_graph_through_its_mpu(platform: LocalPlatform) -> None:
    """The agents told their MPUs what happened; the MPUs pushed it, signed, into the stations' graphs."""
    import time

    from pyoxigraph import NamedNode

    from graph_store import station_graph
    alice = platform.client("alice")
    define(platform, "count-for-events", image(platform, "cohort-count"), ["COLUMN", "OP", "VALUE", "MIN_CELL"])
    tid = alice.submit("count-for-events", {"COLUMN": "mean_radius", "OP": "gt", "VALUE": "10", "MIN_CELL": "5"})
    assert alice.wait(tid)["state"] == "finished"
    train = NamedNode(alice.train(tid)["iri"])
    query = ("PREFIX pht: <https://w3id.org/pht-kg/vocab#> SELECT (COUNT(DISTINCT ?e) AS ?n) WHERE { GRAPH $g { "
             "?e pht:aboutTrain $train ; pht:toState ?to } }")
    deadline = time.monotonic() + 30
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        assert platform.store is not None
        counts = {sid: int(next(iter(platform.store.query(
            query, bindings={"g": station_graph(sid), "train": train})))["n"].value) for sid in STATIONS}
        if all(counts.values()):
            break
        time.sleep(0.5)
    assert all(n >= 4 for n in counts.values()), counts  # approved, pulling, running, under review, released

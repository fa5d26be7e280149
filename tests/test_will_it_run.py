""""Will it run?" through real stations: the central check before dispatch and the station's re-check.

A central service, three station agents with their MPUs (signed pushes) and the process runtime. Each station
describes its dataset's variables from its CSV headers, except ``liar``, whose admin's description file claims a
column its data lacks. A train whose input shapes need an integer ``age``:

* on a route through ``partial`` (no ``age``) is refused at submission naming station and variable; its train is
  failed with that reason and nothing is dispatched, not even to ``full``, the station before it;
* at ``liar`` passes the central check (the description says ``age``) and is stopped by the station's re-check
  against its real data before the train starts;
* at ``full`` runs and finishes (the check does not stop what may run).

Input shapes that are not SHACL are refused at registration with one sentence, and nothing is registered.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_for
from pyoxigraph import Literal, NamedNode
from self_releasing_platform import DOCKERFILE

from client import ClientError
from client.input_shapes import EXAMPLE
from graph_store import PHT, station_graph
from local_platform import LocalPlatform, StationSpec
from station import StationPolicy
from station.agent import Holding
from station.runtimes.process import IsolationWarning, folder_digest

TRAIN = """import csv, json, os, pathlib
rows = [r for p in sorted(pathlib.Path(os.environ["PHT_DATA_DIR"]).glob("*.csv"))
        for r in csv.DictReader(p.open(newline=""))]
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps({"mean_age": sum(int(r["age"]) for r in rows) / len(rows)}))
"""
AUTO = StationPolicy(requires_approval=False, requires_output_review=False, min_cell_count=3)
WITH_AGE = "age,sex\n" + "".join(f"{30 + i},{'F' if i % 2 else 'M'}\n" for i in range(10))
WITHOUT_AGE = "sex\n" + "".join(f"{'F' if i % 2 else 'M'}\n" for i in range(10))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalPlatform, Path]]:
    tmp = tmp_path_factory.mktemp("will-it-run")
    specs = []
    for sid, table in (("full", WITH_AGE), ("partial", WITHOUT_AGE), ("liar", WITHOUT_AGE)):
        data = tmp / "data" / sid
        data.mkdir(parents=True)
        (data / "patients.csv").write_text(table)
        description = None
        if sid == "liar":  # the admin's description file claims an integer age the data does not have
            description = tmp / "liar-description.json"
            description.write_text(json.dumps({"datasets": [{"id": "liar-data", "variables": [
                {"name": "age", "datatype": "integer", "unit": "a"}, {"name": "sex", "datatype": "string"}]}]}))
        specs.append(StationSpec(sid, data, AUTO, description=description))
    train = tmp / "mean-age"
    train.mkdir()
    (train / "Dockerfile").write_text(DOCKERFILE)
    (train / "train.py").write_text(TRAIN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IsolationWarning)
        platform = LocalPlatform(tmp / "platform", specs, runtime="process", poll_interval_s=0.05)
        platform.start()
    try:
        assert platform.store is not None
        store = platform.store
        for sid in ("full", "partial", "liar"):  # each station's description arrives through its MPU's signed push
            wait_for(f"station {sid} publishes its variables",
                     functools.partial(store.quads, None, PHT.variableName, None, station_graph(sid)), timeout_s=60)
        yield platform, train
    finally:
        platform.stop()


def definition(train: Path, ident: str, route: list[str], inputs: str | None = EXAMPLE) -> dict[str, object]:
    body: dict[str, object] = {"id": ident, "title": "mean age", "image_name": str(train),
                               "image_digest": folder_digest(train), "mode": "incremental", "route": route}
    if inputs is not None:
        body["inputs"] = inputs
    return body


def test_the_stations_publish_names_and_types_only(platform: tuple[LocalPlatform, Path]) -> None:
    p, _ = platform
    assert p.store is not None
    graph = station_graph("full")
    names = {str(q.object.value) for q in p.store.quads(None, PHT.variableName, None, graph)
             if isinstance(q.object, Literal)}
    assert names == {"age", "sex"}
    types = {q.object.value.rsplit("#", 1)[-1] for q in p.store.quads(None, PHT.variableDatatype, None, graph)
             if isinstance(q.object, NamedNode)}
    assert types == {"integer", "string"}
    values = {q.object.value for q in p.store.quads(None, None, None, graph) if isinstance(q.object, Literal)}
    assert not values & {"30", "31", "F", "M"}  # no value of the data left the station


def test_a_route_station_lacking_a_variable_is_refused_centrally_and_nothing_is_dispatched(
        platform: tuple[LocalPlatform, Path]) -> None:
    p, train = platform
    alice = p.client("alice")
    alice.register_definition(definition(train, "mean-age-partial", ["full", "partial"]))
    with pytest.raises(ClientError, match=r"station partial lacks variable age \(xsd:integer\) \(required by the "
                                          r"train's input shape\)") as refused:
        alice.submit("mean-age-partial")
    assert refused.value.status == 422
    train_id = str(refused.value).split("train ", 1)[1].split()[0]
    seen = alice.train(train_id)
    assert seen["state"] == "failed" and seen["executions"] == []  # recorded; not even full got it
    assert any("station partial lacks variable age" in (e.get("reason") or "") for e in alice.events(train_id))


def test_a_description_that_lies_is_caught_by_the_station_before_the_train_starts(
        platform: tuple[LocalPlatform, Path]) -> None:
    p, train = platform
    alice = p.client("alice")
    alice.register_definition(definition(train, "mean-age-liar", ["liar"]))
    train_id = alice.submit("mean-age-liar")  # the central check believes the published description
    done = alice.wait(train_id, timeout_s=90)
    assert done["state"] == "failed"
    (execution,) = done["executions"]
    assert execution["state"] == "failed"
    reasons = " ".join(e.get("reason") or "" for e in alice.events(train_id))
    assert "station liar's data lacks variable age (xsd:integer" in reasons
    hold = Holding(p.workdir / "stations" / "liar", execution["id"])
    assert not hold.params.exists() and not hold.output.exists()  # the run was never prepared, let alone started


def test_a_route_whose_stations_have_the_variables_runs(platform: tuple[LocalPlatform, Path], tmp_path: Path) -> None:
    p, train = platform
    alice = p.client("alice")
    alice.register_definition(definition(train, "mean-age-full", ["full"]))
    train_id = alice.submit("mean-age-full")
    done = alice.wait(train_id, timeout_s=90)
    assert done["state"] == "finished", alice.events(train_id)
    folder = p.fetch(done["executions"][0]["output_sha256"], tmp_path / "result")
    assert json.loads((folder / "result.json").read_text()) == {"mean_age": 34.5}


@pytest.mark.parametrize("inputs, says", [
    ("not turtle at all", "the input shapes are not Turtle"),
    (EXAMPLE.replace("sh:qualifiedMinCount 1", 'sh:qualifiedMinCount "many"'), "the input shapes are not valid SHACL"),
])
def test_input_shapes_that_are_not_shacl_are_refused_and_nothing_is_registered(
        platform: tuple[LocalPlatform, Path], inputs: str, says: str) -> None:
    p, train = platform
    alice = p.client("alice")
    with pytest.raises(ClientError, match=says) as refused:
        alice.register_definition(definition(train, "mean-age-bad", ["full"], inputs))
    assert refused.value.status is not None and 400 <= refused.value.status < 500
    assert "\n" not in str(refused.value)
    assert "mean-age-bad" not in {d["id"] for d in alice.definitions()}

"""The station reads a data-space train's inputs from the signed request and refuses malformed ones itself."""

from __future__ import annotations

from pathlib import Path

from pyoxigraph import RdfFormat, serialize

from client import WorkItem
from client.train_request import DataspaceInputSpec, DefinitionSpec, definition_triples
from graph_store import ResourceIris
from station.dataspace_inputs import declared_inputs, obtain_inputs

IRIS = ResourceIris("https://pht.example.org/id/")


def work_with(*inputs: DataspaceInputSpec) -> WorkItem:
    spec = DefinitionSpec("ds", "ds", "pht/x", "sha256:" + "0" * 64, "incremental", ["a"], dataspace_inputs=inputs)
    text = serialize(definition_triples(IRIS, spec), format=RdfFormat.N_TRIPLES).decode()
    return WorkItem(execution="t.r1-s0", state="pulling", train="t", round=1, stop=0, image_name="pht/x",
                    image_digest=spec.image_digest, entrypoint=None, inputs=[], definition="ds", request=text)


def test_declared_inputs_are_read_from_the_signed_definition() -> None:
    inputs = (DataspaceInputSpec("b", "https://p.example.org/dsp", "urn:x:2"),
              DataspaceInputSpec("a", "http://127.0.0.1:9/", "https://p.example.org/id/results/1"))
    assert declared_inputs(work_with(*inputs)) == sorted(inputs, key=lambda i: i.name)
    assert declared_inputs(work_with()) == []


def test_a_mount_name_that_leaves_its_folder_is_refused_before_anything_is_fetched(tmp_path: Path) -> None:
    for bad in (DataspaceInputSpec("../../etc", "https://p.example.org/dsp", "urn:x:1"),
                DataspaceInputSpec("ok", "file:///etc/passwd", "urn:x:1")):
        problem = obtain_inputs(work_with(bad), None, tmp_path / "ds", "a")
        assert problem == f"the data-space input {bad.name!r} of train t is malformed"
        assert not (tmp_path / "ds").exists()


def test_without_a_data_space_identity_the_station_says_so(tmp_path: Path) -> None:
    work = work_with(DataspaceInputSpec("a", "https://p.example.org/dsp", "urn:x:1"))
    assert obtain_inputs(work, None, tmp_path / "ds", "a") == (
        "train t reads data-space inputs, but station a has no data-space identity (PHT_STATION_DSP_PARTICIPANT_ID)")
    assert obtain_inputs(work_with(), None, tmp_path / "ds", "a") is None

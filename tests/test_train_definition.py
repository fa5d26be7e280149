"""Train definitions as a documented, versioned contract: the JSON Schemas the API serves (generated from the
models it validates with), the example, documented and generated train files that validate against them, the
help examples' files, immutable definitions, and a definition submitted with its train in one write."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from central_store import new_central_store
import pytest
import typer
from api_helpers import ALICE, DIGEST, SETTINGS, register_world, service, signed
from central_thread import Central, central_service
from fastapi.testclient import TestClient
from rich.console import Console

from orchestrator.api.models import DefinitionIn, TrainIn
from orchestrator.app import create_app
from station import contract
from station.runtimes.base import Limits, RunSpec
from station.runtimes.process import DEFAULT_PATH, IsolationWarning, ProcessRuntime, folder_digest

REPO = Path(__file__).resolve().parent.parent
PHT = [sys.executable, "-m", "pht_cli.main"]
OTHER_DIGEST = "sha256:" + "cd" * 32
DOC = REPO / "docs" / "train-definition.md"


def pht(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if token is not None:
        env["PHT_TOKEN"] = token
    return subprocess.run([*PHT, *args], capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def one_sentence_error(done: subprocess.CompletedProcess[str]) -> str:
    """The refusal's stderr, checked to be exit code 1 with one ``error:`` line and no traceback."""
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def definition(did: str, **changes: Any) -> dict[str, Any]:
    """A definition over the api_helpers world's stations, with a required integer parameter N."""
    return {"id": did, "title": did, "image_name": "pht/x", "image_digest": DIGEST, "mode": "incremental",
            "route": ["aachen"], "parameters": [{"name": "N", "datatype": "integer", "required": True}], **changes}


@pytest.fixture(scope="module")
def schemas() -> dict[str, dict[str, Any]]:
    """The two JSON Schemas as the service serves them."""
    with TestClient(create_app(SETTINGS, store=new_central_store())) as client:
        return {name: client.get(f"/api/schemas/{name}").json() for name in ("train-definition", "train-file")}


def validator(schemas: dict[str, dict[str, Any]], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schemas[name])


# ---------------------------------------------------------------------------- the schemas and the files


def test_the_schemas_are_served_with_a_versioned_id_and_generated_from_the_api_models() -> None:
    with TestClient(create_app(SETTINGS, store=new_central_store())) as client:
        for name, model in (("train-definition", DefinitionIn), ("train-file", TrainIn)):
            r = client.get(f"/api/schemas/{name}")  # no token: it documents the API, like /openapi.json
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/schema+json")
            schema = r.json()
            assert schema["$id"] == f"https://w3id.org/pht-kg/schemas/{name}/v1"
            jsonschema.Draft202012Validator.check_schema(schema)
            assert schema["properties"] == model.model_json_schema()["properties"]
        r = client.get("/api/schemas/nope")
        assert r.status_code == 404 and "train-definition, train-file" in r.json()["detail"]


def example_train_files() -> list[Path]:
    return sorted(REPO.glob("trains/*/train.json"))


def test_the_example_train_files_validate(schemas: dict[str, dict[str, Any]]) -> None:
    files = example_train_files()
    assert {f.parent.name for f in files} == {"cohort-count", "mean-variance", "fedavg-logreg"}
    for path in files:
        validator(schemas, "train-file").validate(json.loads(path.read_text()))
    with pytest.raises(jsonschema.ValidationError):  # the validator does refuse: a parameter value must be a string
        validator(schemas, "train-file").validate({"definition": "cohort-count", "parameters": {"VALUE": 15}})


def test_the_documented_examples_validate(schemas: dict[str, dict[str, Any]]) -> None:
    """Every JSON block of docs/train-definition.md is a train file or a definition the schemas accept."""
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]
    assert len(blocks) >= 3
    for block in blocks:
        validator(schemas, "train-file" if "definition" in block else "train-definition").validate(block)
    for path in re.findall(r"`(trains/[\w.-]+/train\.json)`", DOC.read_text()):
        assert (REPO / path).is_file(), f"docs/train-definition.md cites {path}, which does not exist"


class _Recorded(Exception):
    pass


class _Recorder:
    """The demo's researcher client, recording what the demo registers and submits."""

    def __init__(self) -> None:
        self.definitions: dict[str, dict[str, Any]] = {}
        self.submitted: dict[str, dict[str, str]] = {}

    def register_definition(self, body: dict[str, Any]) -> None:
        self.definitions[body["id"]] = body

    def submit(self, did: str, parameters: dict[str, str]) -> str:
        self.submitted[did] = dict(parameters)
        return did

    def watch(self, *_: Any, **__: Any) -> Iterator[Any]:
        raise _Recorded


def test_the_example_train_files_name_the_definitions_and_parameters_the_demo_registers() -> None:
    """trains/*/train.json submit by id to a `pht demo --serve` platform: the demo registers those ids and
    submits them with the same parameters."""
    from local_platform.platform import TrainImage
    from pht_cli import demo

    recorder = _Recorder()

    class Platform:
        runtime = "docker"

        def client(self, *_: Any) -> _Recorder:
            return recorder

        def build_image(self, folder: Path, tag: str) -> TrainImage:
            return TrainImage(tag, DIGEST)

    with pytest.raises(_Recorded):
        demo._run_trains(Console(file=io.StringIO()), Platform())  # type: ignore[arg-type]
    for path in example_train_files():
        train = json.loads(path.read_text())
        assert train["definition"] in recorder.definitions, path
        assert train["parameters"] == recorder.submitted[train["definition"]], path
        declared = {p["name"] for p in recorder.definitions[train["definition"]]["parameters"]}
        assert set(train["parameters"]) <= declared


def help_examples() -> list[tuple[str, str]]:
    """(command, example) of every command's help (a line ending in a backslash continues)."""
    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        subs = getattr(command, "commands", None)
        if subs is None:
            yield " ".join(path), command
            return
        for name, sub in subs.items():
            yield from walk(sub, [*path, name])

    from pht_cli.main import app
    found = []
    for name, command in walk(typer.main.get_command(app), []):
        text = (command.help or "").replace("\\\n", " ")
        found += [(name, example) for example in re.findall(r"Example: (.*)", text)]
    return found


#: suffixes of files an example may name
FILE_SUFFIXES = {".json", ".ttl", ".rq", ".nt", ".jsonld", ".csv", ".py", ".pem", ".token"}


def test_every_file_a_help_example_names_exists() -> None:
    """Relative paths in the examples name files and folders of this repository. Not checked, by design:
    absolute paths (a station host's, e.g. /etc/pht/aachen.pem), var/... (the state folders the commands
    create), URLs, the values of --out, --ro-crate and --padme (outputs: must not exist) and of --tag (an image
    name), and image names with a tag
    (pht train push IMAGE:TAG REGISTRY/REPOSITORY:TAG)."""
    checked = []
    for command, example in help_examples():
        tokens = example.replace('"', " ").split()
        for before, token in zip(["", *tokens], tokens):
            if (token.startswith(("-", "$", "/", "var/")) or "=" in token or "://" in token
                    or before in ("--out", "--ro-crate", "--padme", "--tag") or re.fullmatch(r"[\w.:/-]+:[\w.-]+", token)):
                continue
            if "/" in token or Path(token).suffix in FILE_SUFFIXES:
                assert (REPO / token).exists(), f"`pht {command} --help` cites {token}, which does not exist"
                checked.append(token)
    assert "trains/cohort-count/train.json" in checked and len(checked) >= 4, checked


def test_the_schema_states_what_the_registry_and_the_shapes_check(schemas: dict[str, dict[str, Any]]) -> None:
    federated = definition("fed", mode="federated", route=["aachen", "leipzig"], parameters=[])
    bad_digest = definition("bad-digest", image_digest="latest")
    for body in (federated, bad_digest, definition("spaced", image_name="my image")):
        with pytest.raises(jsonschema.ValidationError):
            validator(schemas, "train-definition").validate(body)
    validator(schemas, "train-definition").validate({**federated, "aggregator": "cologne"})
    with service() as client:
        r = client.post("/api/definitions", headers=ALICE, json=federated)
        assert r.status_code == 400 and "needs an aggregator" in r.json()["detail"]
        r = client.post("/api/definitions", headers=ALICE, json=bad_digest)
        assert r.status_code == 422 and r.json()["report"]


# ---------------------------------------------------------------------------- pht train new


@pytest.fixture
def open_root() -> Iterator[Path]:
    """A folder uid 10001 can traverse: as root, the unisolated train drops to uid 10001 and reaches its
    dataset and work folder by path (pytest's tmp folders are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="pht-test-train-new-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_spec(root: Path, name: str, folder: Path, params: dict[str, str], input_dir: Path | None) -> RunSpec:
    """A station run of ``folder`` over a 2-row CSV dataset, with ``input_dir`` as input 0 if given."""
    for sub in ("dataset", "inputs"):
        (root / name / sub).mkdir(parents=True)
        (root / name / sub).chmod(0o755)
    dataset = root / name / "dataset"
    (dataset / "patients.csv").write_text("id,age\n1,42\n2,57\n")
    if input_dir is not None:
        shutil.copytree(input_dir, root / name / "inputs" / "0")
        for path in (root / name / "inputs", root / name / "inputs" / "0"):
            path.chmod(0o755)
    params_file = root / name / "params.json"
    params_file.write_text(json.dumps(params))
    params_file.chmod(0o644)
    return RunSpec(name=f"{name}-{os.getpid()}", image=str(folder), image_digest=folder_digest(folder),
                   dataset_dir=dataset, input_dir=root / name / "inputs" if input_dir is not None else None,
                   params_file=params_file, output_dir=root / name / "output",
                   environment=contract.run_environment(role=contract.ROLE_STATION, round_=1, station=name,
                                                        input_count=1 if input_dir is not None else 0),
                   limits=Limits(timeout_s=60))


def test_a_new_train_runs_as_generated_and_its_train_file_validates(
        open_root: Path, schemas: dict[str, dict[str, Any]]) -> None:
    done = pht("train", "new", "my-count", "--dir", str(open_root))
    assert done.returncode == 0, done.stderr
    folder = open_root / "my-count"
    assert sorted(p.name for p in folder.iterdir()) == ["Dockerfile", "train.json", "train.py"]
    assert "FROM pht/python-base:bookworm" in (folder / "Dockerfile").read_text()
    assert f"pht station build-image {folder} --tag pht-trains/my-count:1" in done.stdout
    train = json.loads((folder / "train.json").read_text())
    validator(schemas, "train-file").validate(train)
    assert train["definition"]["image_name"] == "pht-trains/my-count:1"

    with pytest.warns(IsolationWarning, match="NO ISOLATION"):
        runtime = ProcessRuntime(bwrap=None, work_root=open_root / "work", unisolated_path=DEFAULT_PATH)
    first = run_spec(open_root, "aachen", folder, {"MIN_CELL": "2"}, None)
    result = runtime.run(first)
    assert result.ok, (result.failure, result.logs)
    assert json.loads((first.output_dir / "result.json").read_text()) == {"rows": 2, "stations": 1, "suppressed": 0}
    second = run_spec(open_root, "leipzig", folder, {}, first.output_dir)  # default MIN_CELL 5: suppressed
    result = runtime.run(second)
    assert result.ok, (result.failure, result.logs)
    assert json.loads((second.output_dir / "result.json").read_text()) == {"rows": 2, "stations": 2, "suppressed": 1}
    assert b"station leipzig: 2 rows (suppressed)" in result.logs


def test_train_new_refuses_an_existing_folder_and_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    assert "exists already" in one_sentence_error(pht("train", "new", "taken", "--dir", str(tmp_path)))
    for bad in ("My Train", "../escape", "x-", "a" * 61):
        assert "cannot name a train" in one_sentence_error(pht("train", "new", bad, "--dir", str(tmp_path)))
    assert "is not a folder" in one_sentence_error(pht("train", "new", "ok", "--dir", str(tmp_path / "missing")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


# ---------------------------------------------------------------------------- immutable definitions (API)


def test_the_same_definition_again_is_accepted_and_other_content_is_409_naming_what_differs() -> None:
    store = new_central_store()
    with service(store) as client:
        body = definition("d1", route=["aachen", "leipzig"])
        assert client.post("/api/definitions", headers=ALICE, json=body).status_code == 201
        before = len(store)
        again = client.post("/api/definitions", headers=ALICE, json=body)
        assert again.status_code == 200 and again.json()["id"] == "d1"
        assert len(store) == before
        changed = client.post("/api/definitions", headers=ALICE,
                              json={**body, "image_digest": OTHER_DIGEST, "route": ["aachen"]})
        assert changed.status_code == 409
        detail = changed.json()["detail"]
        assert "'d1'" in detail and f"image_digest (registered {DIGEST}, given {OTHER_DIGEST})" in detail
        assert "route (registered aachen, leipzig, given aachen)" in detail and "title" not in detail
        # inline in a train: the same content is reused, other content refused alike
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": body, "parameters": {"N": "1"}}))
        assert r.status_code == 201, r.text
        after_train = len(store)
        r = client.post("/api/trains", headers=ALICE, json={"definition": {**body, "parameters": []}})
        assert r.status_code == 409 and "parameters (registered N (integer, required), given none)" in r.json()["detail"]
        assert len(store) == after_train


def test_a_train_with_a_new_definition_is_one_write_or_none() -> None:
    store = new_central_store()
    with service(store) as client:
        before, listed = len(store), client.get("/api/definitions", headers=ALICE).json()["total"]
        for parameters, status, says in (({}, 400, "missing required parameter(s): N"),
                                         ({"N": "7" * 1001}, 422, "at most 1000 characters"),
                                         ({"N": "five"}, 422, "not a valid integer")):
            r = client.post("/api/trains", headers=ALICE, json={"definition": definition("d2"), "parameters": parameters})
            assert r.status_code == status and says in r.json()["detail"], r.text
            assert len(store) == before
        r = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": definition("d2"), "parameters": {"N": "7"}}))
        assert r.status_code == 201, r.text
        assert client.get(f"/api/trains/{r.json()['id']}", headers=ALICE).json()["definition"] == "d2"
        assert client.get("/api/definitions", headers=ALICE).json()["total"] == listed + 1


# ---------------------------------------------------------------------------- pht train submit


@pytest.fixture(scope="module")
def central(central_store_kind: str) -> Iterator[Central]:  # rebuilt for each kind of store
    with central_service() as c, httpx.Client(base_url=c.url) as http:
        register_world(http)
        yield c


def train_file(tmp_path: Path, name: str, document: dict[str, Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(document))
    return str(path)


_ALICE_KEYS: dict[str, str] = {}


def alice_keys(central: Central) -> str:
    """Alice's key folder for ``central``, made and registered with ``pht keys init`` the first time."""
    if central.url not in _ALICE_KEYS:
        folder = tempfile.mkdtemp(prefix="alice-keys-")
        done = pht("keys", "init", "--dir", folder, "--central", central.url, token=ALICE["Authorization"].split()[1])
        assert done.returncode == 0, done.stderr
        _ALICE_KEYS[central.url] = folder
    return _ALICE_KEYS[central.url]


def submit(central: Central, path: str) -> subprocess.CompletedProcess[str]:
    """``pht train submit`` as alice, signed with her keys (:func:`alice_keys`)."""
    keys = alice_keys(central)
    return pht("train", "submit", path, "--central", central.url, "--keys", keys,
               token=ALICE["Authorization"].split()[1])


def test_a_refused_submit_writes_nothing(central: Central, tmp_path: Path) -> None:
    """Before, the CLI registered the definition and then the train was refused: the definition stayed."""
    alice_keys(central)
    before = len(central.store)
    too_large = train_file(tmp_path, "large", {"definition": definition("cli-large"), "parameters": {"N": "7" * 1001}})
    assert "at most 1000 characters" in one_sentence_error(submit(central, too_large))
    missing = train_file(tmp_path, "missing", {"definition": definition("cli-missing"), "parameters": {}})
    assert "missing required parameter(s): N" in one_sentence_error(submit(central, missing))
    assert len(central.store) == before


def test_other_content_under_a_known_id_exits_1_and_the_same_again_works(central: Central, tmp_path: Path) -> None:
    """Before, the second file exited 0 and silently ran the first definition."""
    first = train_file(tmp_path, "first", {"definition": definition("cli-d"), "parameters": {"N": "1"}})
    done = submit(central, first)
    assert done.returncode == 0, done.stderr
    before = len(central.store)
    other = train_file(tmp_path, "other", {"definition": definition("cli-d", image_digest=OTHER_DIGEST,
                                                                    route=["aachen", "leipzig"]),
                                           "parameters": {"N": "1"}})
    said = one_sentence_error(submit(central, other))
    assert "'cli-d'" in said and "image_digest" in said and "route" in said and "new id" in said
    assert len(central.store) == before
    again = submit(central, first)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() != done.stdout.strip()  # a second train of the one definition
    with httpx.Client(base_url=central.url, headers=ALICE) as http:
        trains = http.get("/api/trains", params={"limit": 500}).json()["items"]
    assert {t["id"] for t in trains if t["definition"] == "cli-d"} == {done.stdout.strip(), again.stdout.strip()}


def test_the_generated_train_file_is_refused_until_its_digest_is_filled_in(central: Central, tmp_path: Path) -> None:
    assert pht("train", "new", "fresh", "--dir", str(tmp_path)).returncode == 0
    before = len(central.store)
    said = one_sentence_error(submit(central, str(tmp_path / "fresh" / "train.json")))
    assert "placeholder" in said and "pht station build-image" in said
    assert len(central.store) == before


# ---------------------------------------------------------------------------- data-space inputs

COHORT = {"name": "cohort", "connector": "https://provider.example.org/dsp",
          "dataset": "https://provider.example.org/id/results/1"}


def test_data_space_inputs_are_validated_registered_and_immutable() -> None:
    """A definition's data-space inputs (docs/dataspace.md, use case 2): bad values are refused with one sentence,
    good ones stored (SHACL-valid) and, like every field, cannot change under the same id."""
    store = new_central_store()
    with service(store) as client:
        for bad, expected in (({**COHORT, "name": "../etc"}, "should match pattern"),
                              ({**COHORT, "connector": "file:///etc/passwd"}, "should match pattern"),
                              ({**COHORT, "dataset": "not an iri"}, "should match pattern"),
                              ({**COHORT, "token": "secret"}, "Extra inputs are not permitted")):
            r = client.post("/api/definitions", headers=ALICE, json=definition("ds-bad", dataspace_inputs=[bad]))
            assert r.status_code == 422 and expected in r.text, r.text
        r = client.post("/api/definitions", headers=ALICE,
                        json=definition("ds-twice", dataspace_inputs=[COHORT, {**COHORT, "dataset": "urn:x:2"}]))
        assert r.status_code == 400 and r.json()["detail"].startswith("the names of the data-space inputs must be unique")
        assert client.post("/api/definitions", headers=ALICE,
                           json=definition("ds", dataspace_inputs=[COHORT])).status_code == 201
        other = client.post("/api/definitions", headers=ALICE,
                            json=definition("ds", dataspace_inputs=[{**COHORT, "dataset": "urn:x:other"}]))
        assert other.status_code == 409
        assert ("dataspace_inputs (registered cohort (https://provider.example.org/id/results/1 at "
                "https://provider.example.org/dsp), given cohort (urn:x:other at") in other.json()["detail"]
    assert "ds-bad" not in str(list(store.quads(None, None, None, None)))

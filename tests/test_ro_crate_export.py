"""RO-Crate export of a finished train (issue 17, item 5) and PADME compatibility export (item 6).

A real platform (central service over HTTP, three station agents, trains as local processes) runs one train; it is
exported by ``pht train export`` (digests only) and through the client with the requester's decrypted result. Each
crate is validated with roc-validator against the Provenance Run Crate profile (which builds on the Workflow Run and
Process Run Crate profiles, all checked) at REQUIRED and RECOMMENDED, and against our Five Safes 0.5 shapes
(shapes/crates/), each of which is shown to fail on a crate lacking what it requires. Bad input is one sentence.
"""

from __future__ import annotations

import copy
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import rdflib
from click.testing import Result
from pyshacl import validate
from typer.testing import CliRunner

from client.padme_export import event_types, padme_class, padme_document
from client.ro_crate_export import export_ro_crate
from local_platform import LocalPlatform
from orchestrator.principal import Role
from pht_cli.main import app
from station.runtimes.process import folder_digest
from ro_crate_validation import context_document, validation_issues
from self_releasing_platform import self_releasing_platform

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "shapes" / "crates" / "five-safes-0.5.ttl"
ROUTE = ("aachen", "bonn", "cologne")
TRAIN = """import json, os, pathlib
pathlib.Path(os.environ["PHT_OUTPUT_DIR"], "result.json").write_text(json.dumps({"ok": 1}))
"""
#: roc-validator resolves a crate's local file ids to file:// IRIs, so the main workflow (a file in the crate, as
#: Workflow RO-Crate requires) can never match this SHOULD's "^http" pattern when validated from a folder
LOCAL_FILE_QUIRK = "process-run-crate-0.5_5.1"


@dataclass
class World:
    platform: LocalPlatform
    tmp: Path
    tid: str

    def cli(self, *args: str, user: str = "alice") -> Result:
        """``pht ARGS`` in this process (a subprocess costs seconds of start-up per call on a busy machine)."""
        env = {"PHT_TOKEN": self.platform.token(user, Role.RESEARCHER), "PHT_CENTRAL_URL": self.platform.url,
               "COLUMNS": "200"}
        return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("crate")
    with self_releasing_platform(tmp, ROUTE, TRAIN) as (platform, train):
        alice = platform.client("alice")
        alice.register_definition({"id": "ok", "title": "ok", "image_name": str(train),
                                   "image_digest": folder_digest(train), "mode": "incremental",
                                   "route": list(ROUTE),
                                   "parameters": [{"name": "MIN_CELL", "datatype": "integer", "default": "5"}]})
        tid = alice.submit("ok", {"MIN_CELL": "7"})
        assert alice.wait(tid, timeout_s=120)["state"] == "finished", alice.events(tid)
        yield World(platform, tmp, tid)


def _download(world: World, tid: str, user: str = "alice") -> httpx.Response:
    return httpx.get(f"{world.platform.url}/ui/trains/{tid}/ro-crate.zip", timeout=60,
                     headers={"Authorization": f"Bearer {world.platform.token(user, Role.RESEARCHER)}"})


@pytest.fixture(scope="module")
def crates(world: World) -> dict[str, Path]:
    """The train's crate as the CLI writes it (digests only), with the requester's decrypted result (the client),
    and as the train page's download (unzipped)."""
    plain = world.tmp / "crate-cli"
    result = world.cli("train", "export", world.tid, "--ro-crate", str(plain))
    assert result.exit_code == 0, result.output
    files = export_ro_crate(world.platform.client("alice"), world.tid, world.tmp / "crate-files", with_files=True)
    page = httpx.get(f"{world.platform.url}/ui/trains/{world.tid}", timeout=30,
                     headers={"Authorization": f"Bearer {world.platform.token('alice', Role.RESEARCHER)}"})
    assert f'href="/ui/trains/{world.tid}/ro-crate.zip"' in page.text
    download = _download(world, world.tid)
    assert download.status_code == 200 and download.headers["content-type"] == "application/zip", download.text
    web = world.tmp / "crate-web"
    zipfile.ZipFile(io.BytesIO(download.content)).extractall(web)
    return {"digests": plain, "files": files, "web": web}


def _graph(document: dict[str, Any]) -> rdflib.Graph:
    data = copy.deepcopy(document)
    contexts = data["@context"] if isinstance(data["@context"], list) else [data["@context"]]
    data["@context"] = [context_document(c)["@context"] if isinstance(c, str) else c for c in contexts]
    return rdflib.Graph().parse(data=json.dumps(data), format="json-ld", publicID="https://crate.example/")


SH = rdflib.Namespace("http://www.w3.org/ns/shacl#")


def _five_safes(document: dict[str, Any]) -> tuple[set[str], str]:
    """The names of the Five Safes shapes the crate violates, and the report."""
    shapes = rdflib.Graph().parse(SHAPES)
    _, results, text = validate(_graph(document), shacl_graph=shapes, allow_warnings=False)
    failed = set()
    for source in results.objects(None, SH.sourceShape):
        node = next(shapes.subjects(SH.property, source), source)
        failed.add(str(node).rsplit("#", 1)[-1])
    return failed, str(text)


@pytest.mark.parametrize("kind", ["digests", "files"])
def test_the_crate_passes_the_run_crate_profiles(crates: dict[str, Path], kind: str) -> None:
    issues = [i for i in validation_issues(crates[kind], "provenance-run-crate-0.5", recommended=True)
              if LOCAL_FILE_QUIRK not in i]
    assert issues == []


@pytest.mark.parametrize("kind", ["digests", "files", "web"])
def test_the_crate_meets_the_five_safes_rules(crates: dict[str, Path], kind: str) -> None:
    failed, text = _five_safes(json.loads((crates[kind] / "ro-crate-metadata.json").read_text()))
    assert failed == set(), text


def test_the_crate_holds_the_history(crates: dict[str, Path], world: World) -> None:
    graph = json.loads((crates["files"] / "ro-crate-metadata.json").read_text())["@graph"]
    types = [str(e["@type"]) for e in graph]
    assert sum("AssessAction" in t for t in types) == 2 * len(ROUTE) + 1  # approvals, reviews, the chain check
    check = next(e for e in graph if e["@id"] == "#provenance-check")
    assert check["actionStatus"] == "http://schema.org/CompletedActionStatus" and "3 of 3" in check["name"]
    digests = {e["output_sha256"] for e in world.platform.client("alice").train(world.tid)["executions"]}
    assert digests <= {e.get("value") for e in graph}
    value = next(e for e in graph if e["@type"] == "PropertyValue" and e["name"] == "MIN_CELL")
    assert value["value"] == "7" and value["exampleOfWork"] == {"@id": "#parameter-MIN_CELL"}
    assert (crates["files"] / "outputs" / "result.tar.gz").stat().st_size > 0
    assert not (crates["digests"] / "outputs").exists()
    for name in ("definition.ttl", "request-proof.ttl", "provenance.nt"):
        assert (crates["digests"] / name).stat().st_size > 0


def test_the_download_is_the_exported_crate(crates: dict[str, Path]) -> None:
    """The page's ZIP is built by the same code from the store (not through /sparql): the same entities."""
    def ids(kind: str) -> set[str]:
        return {e["@id"] for e in json.loads((crates[kind] / "ro-crate-metadata.json").read_text())["@graph"]}
    assert ids("web") == ids("digests")
    assert (crates["web"] / "provenance.nt").read_text() == (crates["digests"] / "provenance.nt").read_text()


def _drop(entity: str, key: str) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        node = next(e for e in document["@graph"] if e["@id"] == entity or str(e["@type"]).find(entity) >= 0)
        node.pop(key)
    return edit


def _train_run_agent(document: dict[str, Any]) -> None:
    next(e for e in document["@graph"] if e["@id"].startswith("#train-"))["agent"] = {"@id": "#conditions-of-access"}


def _unmention_an_assessment(document: dict[str, Any]) -> None:
    root = next(e for e in document["@graph"] if e["@id"] == "./")
    root["mentions"] = [m for m in root["mentions"] if m["@id"] != "#provenance-check"]


def _unlist_the_result(document: dict[str, Any]) -> None:
    root = next(e for e in document["@graph"] if e["@id"] == "./")
    root["hasPart"] = [p for p in root["hasPart"] if not p["@id"].startswith("outputs/")]


def _untype_an_input(document: dict[str, Any]) -> None:
    for e in document["@graph"]:
        if e["@id"].startswith("#output-"):
            e.pop("@type")
            return


def _provider_less_software_agent(document: dict[str, Any]) -> None:
    next(e for e in document["@graph"] if e["@id"].endswith("/software/pht-verify")).pop("provider")


def _old_ro_crate(document: dict[str, Any]) -> None:
    next(e for e in document["@graph"] if e["@id"] == "ro-crate-metadata.json")["conformsTo"] = {
        "@id": "https://w3id.org/ro/crate/1.1"}


def _instrument_not_the_context(document: dict[str, Any]) -> None:
    run = next(e for e in document["@graph"] if e["@id"].startswith("#train-"))
    run["instrument"] = {"@id": "request-proof.ttl"}


def _result_not_an_output(document: dict[str, Any]) -> None:
    run = next(e for e in document["@graph"] if e["@id"].startswith("#run-"))
    run["result"] = {"@id": "#conditions-of-access"}


MUTATIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "ExecutionContext": _drop("./", "mainEntity"),
    "RequestedExecution": _drop("./", "mentions"),
    "RequestingAgent": _train_run_agent,
    "ResponsibleProject": _drop("./", "sourceOrganization"),
    "RoCrateVersion": _old_ro_crate,
    "Inputs": _untype_an_input,
    "AssessmentName": _drop("#provenance-check", "name"),
    "InstrumentIsExecutionContext": _instrument_not_the_context,
    "Outputs": _result_not_an_output,
    "SoftwareAgentProvider": _provider_less_software_agent,
    "PublishedMentions": _unmention_an_assessment,
    "PublishedResults": _unlist_the_result,
}


@pytest.mark.parametrize("shape", sorted(MUTATIONS))
def test_each_five_safes_shape_fails_on_a_crate_lacking_what_it_requires(crates: dict[str, Path], shape: str) -> None:
    document = json.loads((crates["files"] / "ro-crate-metadata.json").read_text())
    MUTATIONS[shape](document)
    failed, text = _five_safes(document)
    assert shape in failed, text


def test_every_shape_has_a_failing_case() -> None:
    shapes = {str(s).rsplit("#", 1)[1] for s in rdflib.Graph().parse(SHAPES).subjects(
        rdflib.RDF.type, rdflib.URIRef("http://www.w3.org/ns/shacl#NodeShape"))}
    assert shapes == set(MUTATIONS)


# -- bad input: one sentence, nothing written ----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["unknown", "not-yours", "unfinished", "target-exists", "no-target"])
def test_a_bad_export_is_one_sentence_and_writes_nothing(world: World, case: str) -> None:
    target, tid, user = world.tmp / f"bad-{case}", world.tid, "alice"
    args = ["--ro-crate", str(target)]
    if case == "unknown":
        tid = "no-such-train"
    elif case == "not-yours":
        user = "bob"
    elif case == "unfinished":
        alice = world.platform.client("alice")
        tid = alice.submit("ok")
        alice.cancel(tid, "test")
    elif case == "target-exists":
        target.mkdir()
    else:
        args = []
    result = world.cli("train", "export", tid, *args, user=user)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception  # no traceback
    assert result.stderr.strip() and result.stderr.strip().count("\n") == 0, result.stderr
    assert case == "target-exists" or not target.exists()
    assert not list(world.tmp.glob(f".bad-{case}*"))


def test_the_download_is_refused_to_others_and_for_an_unfinished_train(world: World) -> None:
    assert _download(world, world.tid, user="bob").status_code in (403, 404)
    assert _download(world, "no-such-train").status_code == 404
    alice = world.platform.client("alice")
    tid = alice.submit("ok")
    alice.cancel(tid, "test")
    refused = _download(world, tid)
    assert refused.status_code == 409 and "only a finished train" in refused.text


# -- PADME ---------------------------------------------------------------------------------------------------------

def test_every_event_type_maps_to_padme() -> None:
    assert len(event_types()) >= 10
    assert {t: padme_class(t) for t in event_types() if padme_class(t) is None} == {}
    assert padme_class("RejectionEvent") == "http://schema.padme-analytics.de#EntityRejectedExecutionEvent"


def test_the_documented_padme_mapping_is_the_codes() -> None:
    short = {"http://schema.padme-analytics.de#": "padme:", "https://github.com/LaurenzNeumann/PHTMetadata#": "padme1:"}
    rows = dict(re.findall(r"^\| `(\w+)` \| `([\w:]+)`", (REPO / "docs" / "export.md").read_text(), re.M))
    code = {}
    for t in event_types():
        iri = str(padme_class(t))
        namespace = next(n for n in short if iri.startswith(n))
        code[t] = short[namespace] + iri[len(namespace):]
    assert rows == code


def test_the_padme_export_of_a_train(world: World) -> None:
    out = world.tmp / "events.jsonld"
    result = world.cli("train", "export", world.tid, "--padme", str(out))
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    graph = rdflib.Graph().parse(data=json.dumps(document), format="json-ld")
    padme = rdflib.Namespace("http://schema.padme-analytics.de#")
    started = set(graph.subjects(rdflib.RDF.type, padme.StartedRunningEvent))
    assert len(started) == len(ROUTE)
    assert all((s, padme.eventTimestamp, None) in graph and (s, padme.eventAssociatedWithTrain, None) in graph
               for s in started)
    assert len(document["@graph"]) == len(world.platform.client("alice").events(world.tid))
    with pytest.raises(ValueError, match="no PADME counterpart"):
        padme_document({"iri": "urn:x"}, [{"event": "urn:e", "type": "NoSuchEvent", "time": "2026-01-01T00:00:00Z"}])

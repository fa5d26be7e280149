"""A finished train as a Five Safes RO-Crate (v0.5) that is also a Provenance Run Crate (v0.5).

Why: a train's history lives in our graph, in our vocabulary; a Trusted Research Environment, a repository or a
reviewer reads RO-Crates. :func:`export_ro_crate` reads what the caller may read of one finished train -- its
summary and events (REST) and its provenance (``sparql_queries/train_provenance.rq``, the same read as ``pht
verify``) -- and writes, with the ``rocrate`` library, one crate that holds:

* the definition the researcher signed (``definition.ttl``, the signed request document, the crate's
  ``mainEntity``: a ComputationalWorkflow whose steps are the route's stops) and its signature
  (``request-proof.ttl``);
* per execution: the run (a CreateAction by the station with the train image as instrument, its inputs and its
  released output: a ciphertext digest, or for the requester with ``with_files`` the decrypted result), the
  station's approval (an AssessAction, ``shp:SignOff``) and output review (``shp:DisclosureCheck``);
* the provenance chain (``provenance.nt``: signed request, station-signed records, their proofs, the registry's
  keys) and the outcome of checking it (an AssessAction, ``shp:CheckValue``, from
  :func:`client.execution_records.verify_chain`).

Refusals are :class:`ExportError` or :class:`client.ClientError` (an unknown train, one the caller may not read,
one not finished), each one sentence, and nothing is written: the crate is built in a hidden folder beside
``target`` and renamed into place whole.

>>> sorted(PROFILES)[:2]
['https://w3id.org/5s-crate/0.5', 'https://w3id.org/ro/wfrun/process/0.5']
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyoxigraph import Literal, NamedNode, RdfFormat, Triple, serialize
from rocrate.model.contextentity import ContextEntity
from rocrate.rocrate import ROCrate

from graph_store import PHT

from .central import CentralClient, ClientError
from .execution_records import ChainVerdict, ExecutionRecord, RecordError, record_node, verify_chain
from .train_request import signed_request_document

__all__ = ["ExportError", "FIVE_SAFES", "PROFILES", "build_crate", "export_ro_crate"]

FIVE_SAFES = "https://w3id.org/5s-crate/0.5"
#: the profiles every exported crate conforms to, and their names
PROFILES = {
    FIVE_SAFES: "Five Safes RO-Crate profile",
    "https://w3id.org/ro/wfrun/process/0.5": "Process Run Crate",
    "https://w3id.org/ro/wfrun/workflow/0.5": "Workflow Run Crate",
    "https://w3id.org/ro/wfrun/provenance/0.5": "Provenance Run Crate",
    "https://w3id.org/workflowhub/workflow-ro-crate/1.0": "Workflow RO-Crate",
}
SHP = "https://w3id.org/shp#"
#: the RO-Crate versions the metadata descriptor declares: the run-crate profiles build on 1.1, Five Safes v0.5
#: asks for 1.2 or later (1.2 only adds to 1.1), Workflow RO-Crate recommends naming itself there too
RO_CRATE = ("https://w3id.org/ro/crate/1.1", "https://w3id.org/ro/crate/1.2",
            "https://w3id.org/workflowhub/workflow-ro-crate/1.0")
#: Five Safes v0.5 terms that no RO-Crate context defines
FIVE_SAFES_TERMS = {term: f"https://w3id.org/5s-crate/terms#{term}" for term in ("executionType", "disclosureCheckType")}
FORMAL_PARAMETER = {"@id": "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"}
COMPLETED, FAILED = "http://schema.org/CompletedActionStatus", "http://schema.org/FailedActionStatus"
RESULT_FILE = "outputs/result.tar.gz"


class ExportError(ValueError):
    """The train cannot be exported (not finished, or the target is taken); ``str(e)`` says why in one sentence."""


def export_ro_crate(client: CentralClient, train_id: str, target: Path, *, with_files: bool = False,
                    now: datetime | None = None) -> Path:
    """Write the RO-Crate of the finished train ``train_id`` into the new folder ``target``; returns ``target``.

    ``with_files``: also fetch, verify and decrypt the train's result with the client's keys (the requester's;
    ``CentralClient(keys=...)``) into the crate; otherwise outputs are named by their ciphertext digests only.

    :raises ClientError: the service refuses (an unknown train, or one the caller may not read: 404).
    :raises ExportError: the train is not finished, or ``target`` exists.
    """
    if target.exists():
        raise ExportError(f"{target} exists; give a new folder for the crate")
    train = client.train(train_id)
    if train.get("state") != "finished":
        raise ExportError(f"train {train_id} is {train.get('state')}, not finished: only a finished train's crate "
                          "can be exported")
    statements = client.provenance(str(train["iri"]))
    events = client.events(train_id)
    moment = now or datetime.now(timezone.utc)
    verdict = verify_chain(statements, str(train["iri"]), now=moment)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        result = None
        if with_files:
            result = staging / "result.tar.gz"
            client.open_result(train_id, result)
        crate = build_crate(train, events, statements, verdict, staging, result_file=result, now=moment)
        crate.write(staging / "crate")
        (staging / "crate").rename(target)
    except OSError as e:
        raise ExportError(f"cannot write the crate of train {train_id} to {target}: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_crate(train: Mapping[str, Any], events: Sequence[Mapping[str, Any]], statements: Sequence[Triple],
                verdict: ChainVerdict, workdir: Path, *, result_file: Path | None = None,
                now: datetime) -> ROCrate:
    """The crate of ``train`` (the REST summary), ``events`` (the REST events) and ``statements`` (its provenance),
    its files staged in ``workdir``. Pure but for those files: the export and the tests build it alike."""
    return _Builder(train, events, statements, verdict, workdir, now).build(result_file)


class _Builder:
    """One crate, entity by entity; ids are fragments (``#...``) or the graph's own IRIs (outputs, agents)."""

    def __init__(self, train: Mapping[str, Any], events: Sequence[Mapping[str, Any]], statements: Sequence[Triple],
                 verdict: ChainVerdict, workdir: Path, now: datetime) -> None:
        self.train, self.events, self.statements, self.verdict = train, events, statements, verdict
        self.workdir, self.now = workdir, now
        self.crate = ROCrate(version="1.1")
        self.crate.metadata["conformsTo"] = [{"@id": iri} for iri in RO_CRATE]
        self.crate.metadata.extra_terms.update(FIVE_SAFES_TERMS)
        self.iri = NamedNode(str(train["iri"]))
        self.base = str(train["iri"])[:str(train["iri"]).rindex("/trains/")]

    def entity(self, identifier: str, properties: dict[str, Any]) -> Any:
        return self.crate.add(ContextEntity(self.crate, identifier, properties=_compact(properties)))

    def file(self, name: str, text: str | None, properties: dict[str, Any], source: Path | None = None) -> Any:
        if source is None:
            source = self.workdir / name.replace("/", "_")
            source.write_text(text or "")
        return self.crate.add_file(source, dest_path=name, properties=_compact(properties), record_size=True)

    def build(self, result_file: Path | None) -> ROCrate:
        crate, train = self.crate, self.train
        tid = str(train["id"])
        for iri, name in PROFILES.items():
            self.entity(iri, {"@type": ["CreativeWork", "Profile"], "name": name, "version": iri.rsplit("/", 1)[1]})
        central = self.entity(self.base + "/agents/central-service", {
            "@type": "Organization", "name": f"PHT-KG central service at {self.base}", "url": self.base})
        engine = self.entity(self.base + "/software/central-service", {
            "@type": "SoftwareApplication", "name": "PHT-KG central service (lifecycle engine)",
            "url": self.base, "softwareVersion": _version(), "provider": {"@id": central.id}})
        project = self.entity(f"#project-{train['definition']}", {
            "@type": "Project", "name": f"Studies run with train definition {train['definition']}",
            "identifier": str(train["definition"])})
        requester = self.entity(f"{self.base}/agents/{train['requester']}", {
            "@type": "Person", "name": str(train["requester"]), "memberOf": {"@id": project.id},
            "affiliation": {"@id": central.id}})
        project["member"] = {"@id": central.id}
        definition, image, parameters, stops = self._definition(requester.id)
        stations = {e["station"]: self.entity(f"{self.base}/stations/{e['station']}", {
            "@type": "Organization", "name": f"station {e['station']}", "identifier": e["station"],
            "url": f"{self.base}/stations/{e['station']}"})
            for e in train["executions"]}
        runs, controls, assessments = [], [], []
        outputs: dict[str, str] = {}
        records = self._records()
        for e in sorted(train["executions"], key=lambda e: (e["round"], e["stop"] if e["stop"] is not None else 1e9)):
            output = self.entity(f"#output-{e['id']}", {
                "@type": "PropertyValue", "name": f"released output of {_where(e)}: SHA-256 of its ciphertext",
                "description": f"The output {e['output']} as released, encrypted (age, X25519) to exactly its "
                               "next readers; its station signed this digest.",
                "propertyID": "sha256", "value": e["output_sha256"], "url": e["output"],
                "exampleOfWork": {"@id": "#released-output"}}) if e.get("output") else None
            record = records.get(e["id"])
            inputs = [{"@id": outputs[d]} for d in (record.input_digests if record else ()) if d in outputs]
            run = self.entity(f"#run-{e['id']}", {
                "@type": "CreateAction", "name": f"run of {_where(e)}", "instrument": {"@id": image.id},
                "description": f"Station {e['station']} ran the signed train image on its data"
                               + (f" and the outputs of {len(inputs)} hop(s) before" if inputs else "") + ".",
                "agent": {"@id": stations[e["station"]].id}, "startTime": _time(e["started"]),
                "endTime": _time(e["ended"]),
                "actionStatus": COMPLETED if e["state"] == "released" else FAILED,
                **({"object": inputs} if inputs else {}),
                **({"result": {"@id": output.id}} if output else {})})
            if output is not None:
                outputs[e["output_sha256"]] = output.id
            runs.append(run)
            stop = stops.get(e["stop"]) if e["stop"] is not None else None
            if stop is not None:
                controls.append(self.entity(f"#control-{e['id']}", {
                    "@type": "ControlAction", "name": f"orchestrate {_where(e)}", "instrument": {"@id": stop},
                    "object": {"@id": run.id}}))
            assessments += self._decisions(e, run.id, output.id if output else None, stations[e["station"]].id,
                                           record)
        result = self._result(result_file, outputs, train)
        train_run = self.entity(f"#train-{tid}", {
            "@type": "CreateAction", "name": f"train {tid}", "instrument": {"@id": definition.id},
            "description": f"{train['requester']}'s train along its route, every hop approved and released by its "
                           "station.",
            "agent": {"@id": requester.id}, "object": parameters, "actionStatus": COMPLETED,
            "startTime": _time(train["created"]), "endTime": _time(self._finished()), "result": result})
        organize = self.entity("#orchestration", {
            "@type": "OrganizeAction", "name": f"the central service orchestrating train {tid}",
            "agent": {"@id": central.id}, "instrument": {"@id": engine.id},
            "object": [{"@id": c.id} for c in controls], "result": {"@id": train_run.id},
            "description": "Queued each hop at its station in route order and moved the train along.",
            "startTime": _time(train["created"]), "endTime": _time(self._finished())})
        assessments.append(self._verification())
        root = crate.root_dataset
        root["name"] = f"Train {tid} ({train['definition']})"
        root["description"] = (f"The history of train {tid} of definition {train['definition']}, requested by "
                               f"{train['requester']}: the signed definition, its route, each station's approval and "
                               "output review, the released outputs and the station-signed provenance chain.")
        root["conformsTo"] = [{"@id": iri} for iri in PROFILES]
        root["datePublished"] = _time(self.now)
        root["publisher"] = {"@id": central.id}
        root["author"] = {"@id": requester.id}
        root["license"] = {"@id": self.entity("#conditions-of-access", {
            "@type": "CreativeWork", "name": "Conditions of access",
            "description": "The outputs are released to the train's requester only; the stations' data never "
                           "left them."}).id}
        root["mainEntity"] = {"@id": definition.id}
        root["executionType"] = "container"
        root["sourceOrganization"] = {"@id": project.id}
        root["mentions"] = [{"@id": a.id} for a in (train_run, organize, *runs, *assessments)]
        self.file("README.md", _readme(train, self.verdict), {
            "@type": "File", "name": "What this crate holds", "encodingFormat": "text/markdown",
            "about": {"@id": "./"}})
        return crate

    def _definition(self, requester: str) -> tuple[Any, Any, list[dict[str, str]], dict[int, str]]:
        """definition.ttl (the signed request, the mainEntity), its proof, the image, parameters, route stops."""
        request = next((t.object for t in self.statements if t.subject == self.iri
                        and t.predicate == PHT.signedRequest), None)
        document = signed_request_document(self.statements, request) if isinstance(request, NamedNode) else []
        proof = [t for t in self.statements if t.subject == NamedNode(str(self.train["iri"]) + "/request-proof")]

        def value(subject: object, predicate: NamedNode) -> str:
            return next((t.object.value for t in self.statements if t.subject == subject
                         and t.predicate == predicate and isinstance(t.object, NamedNode | Literal)), "")

        definition_node = next((t.object for t in document if t.predicate == PHT.ofDefinition), None)
        digest = value(definition_node, PHT.imageDigest)
        image_id = f"{self.base}/definitions/{self.train['definition']}/image"
        self.entity("#released-output", {
            "@type": "FormalParameter", "name": "released output", "additionalType": "PropertyValue",
            "conformsTo": FORMAL_PARAMETER,
            "description": "The folder a train writes (docs/train-contract.md), packed and encrypted, named by the "
                           "SHA-256 of its ciphertext."})
        language = self.entity("#pht-train-definition", {
            "@type": "ComputerLanguage", "name": "PHT-KG train definition (RDF)",
            "url": {"@id": "https://w3id.org/pht-kg/vocab"}})
        stops: dict[int, str] = {}
        for stop in sorted({t.object for t in document if t.predicate == PHT.routeStop}, key=str):
            index = int(value(stop, PHT.stopIndex) or 0)
            station = value(stop, PHT.station)
            stops[index] = self.entity(f"#stop-{index}", {
                "@type": "HowToStep", "name": f"stop {index} at {station.rsplit('/', 1)[-1]}",
                "position": str(index), "workExample": {"@id": image_id}}).id
        bindings = [t.object for t in document if t.predicate == PHT.parameterBinding]
        formal, actual = [], []
        for binding in sorted(bindings, key=str):
            name = value(binding, PHT.bindingName)
            formal.append({"@id": self.entity(f"#parameter-{name}", {
                "@type": "FormalParameter", "name": name, "additionalType": "Text",
                "conformsTo": FORMAL_PARAMETER}).id})
            actual.append({"@id": self.entity(f"#value-{name}", {
                "@type": "PropertyValue", "name": name, "value": value(binding, PHT.bindingValue),
                "exampleOfWork": {"@id": f"#parameter-{name}"}}).id})
        image = self.entity(image_id, {
            "@type": "SoftwareApplication", "name": value(definition_node, PHT.imageName) or "train image",
            "identifier": digest, "softwareVersion": digest, "url": f"{self.base}/definitions/{self.train['definition']}",
            "description": "The container image the researcher signed; every station ran exactly this image.",
            "input": formal, "output": [{"@id": "#released-output"}]})
        definition = self.file("definition.ttl", _text(document, RdfFormat.TURTLE), {
            "@type": ["File", "SoftwareSourceCode", "ComputationalWorkflow", "HowTo"],
            "name": f"train definition {self.train['definition']}, as the researcher signed it",
            "encodingFormat": "text/turtle", "programmingLanguage": {"@id": language.id},
            "conformsTo": {"@id": "https://bioschemas.org/profiles/ComputationalWorkflow/1.0-RELEASE"},
            "version": digest, "url": f"{self.base}/definitions/{self.train['definition']}",
            "dateCreated": _time(self.train["created"]), "license": {"@id": "#conditions-of-access"},
            "creator": {"@id": requester}, "input": formal, "output": [{"@id": "#released-output"}],
            "step": [{"@id": s} for _, s in sorted(stops.items())], "hasPart": [{"@id": image.id}]})
        self.file("request-proof.ttl", _text(proof, RdfFormat.TURTLE), {
            "@type": "File", "name": "the researcher's signature over the definition (eddsa-rdfc-2022)",
            "encodingFormat": "text/turtle", "description": "The proof over definition.ttl."})
        return definition, image, actual, stops

    def _records(self) -> dict[str, ExecutionRecord]:
        """The station-signed records in the provenance, by execution id (unreadable ones are the verdict's)."""
        records = {}
        for e in self.train["executions"]:
            iri = f"{self.base}/executions/{e['id']}"
            try:
                records[e["id"]] = ExecutionRecord.from_statements(self.statements, record_node(iri))
            except RecordError:
                continue
        return records

    def _decisions(self, execution: Mapping[str, Any], run: str, output: str | None, station: str,
                   record: ExecutionRecord | None) -> list[Any]:
        """The station's approval and output review of ``execution``, from the lifecycle's events."""
        found = []
        for to, kind, what in (("approved", "SignOff", "Sign-off"), ("released", "DisclosureCheck", "Output review")):
            event = next((v for v in self.events if v.get("execution") == execution["id"] and v["to_state"] == to),
                         None)
            if event is None:
                continue
            how = (record.approved_how if to == "approved" else record.released_how) if record else None
            properties: dict[str, Any] = {
                "@type": "AssessAction", "additionalType": {"@id": SHP + kind},
                "name": f"{what} of {_where(execution)}: {to}", "description": event.get("reason") or "",
                "agent": {"@id": station}, "endTime": event["time"], "actionStatus": COMPLETED,
                "object": [{"@id": "./"}, {"@id": run}] + ([{"@id": output}] if output and to == "released" else [])}
            if to == "released":
                properties["disclosureCheckType"] = {"auto": "automated", "admin": "manual"}.get(how or "", "hybrid")
                if record is not None and record.disclosure is not None:  # the station-signed disclosure control
                    properties["description"] += _rules_applied(record)
            found.append(self.entity(f"#{kind.lower()}-{execution['id']}", properties))
        return found

    def _result(self, result_file: Path | None, outputs: Mapping[str, str],
                train: Mapping[str, Any]) -> list[dict[str, str]]:
        """The train's result: the decrypted file when given, else the last released output(s) by digest."""
        final = [e for e in train["executions"] if e.get("output")]
        last_round = max((e["round"] for e in final), default=0)
        ends = [e for e in final if e["round"] == last_round]
        ends = [e for e in ends if e["stop"] is None] or ends[-1:]
        if result_file is not None:
            entity = self.file(RESULT_FILE, None, {
                "@type": "File", "name": "the train's result, decrypted with the requester's key",
                "encodingFormat": "application/gzip",
                "sameAs": [{"@id": outputs[e["output_sha256"]]} for e in ends]}, source=result_file)
            return [{"@id": entity.id}]
        return [{"@id": outputs[e["output_sha256"]]} for e in ends]

    def _verification(self) -> Any:
        """provenance.nt and the check of its signature chain (``pht verify``)."""
        verdict = self.verdict
        nt = _text(sorted(self.statements, key=str), RdfFormat.N_TRIPLES)
        self.file("provenance.nt", nt, {
            "@type": "File", "name": "the train's provenance: signed request, station-signed records, their proofs, "
                                     "the registry's public keys", "encodingFormat": "application/n-triples"})
        tool = self.entity(self.base + "/software/pht-verify", {
            "@type": "SoftwareApplication", "name": "pht verify (client.execution_records.verify_chain)",
            "url": self.base, "softwareVersion": _version(),
            "provider": {"@id": self.base + "/agents/central-service"}})
        outcome = (f"verified, {verdict.verified_hops} of {verdict.hops} hops signed by their stations"
                   if verdict.verified else f"NOT verified: {'; '.join(verdict.breaks)}")
        return self.entity("#provenance-check", {
            "@type": "AssessAction", "additionalType": {"@id": SHP + "CheckValue"},
            "name": f"Signature chain of the train's history: {outcome}", "instrument": {"@id": tool.id},
            "agent": {"@id": tool.id}, "object": [{"@id": "./"}, {"@id": "provenance.nt"}],
            "endTime": _time(self.now), "actionStatus": COMPLETED if verdict.verified else FAILED})

    def _finished(self) -> str:
        ends = [e["time"] for e in self.events if e.get("execution") is None and e["to_state"] == "finished"]
        return str(ends[-1]) if ends else str(self.train["created"])


def _rules_applied(record: ExecutionRecord) -> str:
    """The disclosure-control part of a station-signed record in words (the RDF is in provenance.nt)."""
    part = record.disclosure
    assert part is not None
    rules = "; ".join(f"{r.rule}" + (f" (threshold {r.threshold})" if r.threshold is not None else "")
                      + (": passed" if r.passed else ": failed") for r in part.rules) or "none"
    return (f" Rules applied, as the station signed them ({part.checker_version}, {part.stage}): {rules}."
            + (f" Dataset version {part.dataset_version}." if part.dataset_version else ""))


def _where(execution: Mapping[str, Any]) -> str:
    what = f"stop {execution['stop']}" if execution["stop"] is not None else "the aggregation"
    return f"{what} of round {execution['round']} at {execution['station']}"


def _time(moment: datetime | str) -> str:
    """An instant as ISO 8601 in UTC to the second, offset ``+00:00`` (the form the run-crate profiles match)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def _text(triples: Sequence[Triple], rdf_format: RdfFormat) -> str:
    """``triples`` serialised (Turtle, N-Triples) as text."""
    return (serialize(triples, format=rdf_format) or b"").decode()


def _compact(properties: dict[str, Any]) -> dict[str, Any]:
    """A one-element list as its element (RO-Crate 1.1 prefers single values to singleton arrays)."""
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in properties.items()}


def _version() -> str:
    try:
        return metadata.version("pht-kg")
    except metadata.PackageNotFoundError:
        return "unknown"


def _readme(train: Mapping[str, Any], verdict: ChainVerdict) -> str:
    """README.md: the crate in words, for a person who opens the folder."""
    state = (f"verified ({verdict.verified_hops} of {verdict.hops} hops)" if verdict.verified
             else "NOT verified: " + "; ".join(verdict.breaks))
    return (f"# Train {train['id']}\n\nAn RO-Crate (Five Safes RO-Crate 0.5, Provenance Run Crate 0.5) of train "
            f"`{train['id']}` of definition `{train['definition']}`, requested by {train['requester']}, exported "
            "from PHT-KG.\n\n* `ro-crate-metadata.json`: the runs, approvals, output reviews and outputs\n"
            "* `definition.ttl`, `request-proof.ttl`: the definition as the researcher signed it, and the signature\n"
            "* `provenance.nt`: the station-signed records of every hop, their proofs and the public keys\n\n"
            f"Signature chain when exported: {state}.\n")


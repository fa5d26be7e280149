"""The MPU's filter policy: loading (Turtle, shapes, patterns, classes), semantics, the safe default, reloading
without restart, the CLI, and a property-based proof that no triple the policy denies ever leaves the station."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import rdflib
from hypothesis import HealthCheck, given, settings
from mpu_helpers import METRICS, METRICS_TOKEN, StationKeys
from pyoxigraph import Literal, NamedNode, RdfFormat, parse
from typer.testing import CliRunner

from graph_store import load_schema
from pht_cli.mpu_commands import mpu_app
from station_mpu import (
    DEFAULT_POLICY,
    EventAdapter,
    Mpu,
    MpuSettings,
    Naming,
    PolicyError,
    StationSecret,
    apply_policy,
    coarsen,
    event_triples,
    load_policy,
    log_digest,
    read_policy,
    validated,
)
from station_mpu.app import create_mpu_app

PHT = "https://w3id.org/pht-kg/vocab#"
XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
NAMING = Naming("https://pht.example.org/id/", "aachen")
PREFIXES = "@prefix pht: <https://w3id.org/pht-kg/vocab#> .\n@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#> .\n"
T = "2026-11-27T10:42:13.250+01:00"
SECRET = StationSecret(b"k" * 32)
"""The station's secret the tests filter with (HashValue and log digests are keyed with it)."""


def policy_text(default: str, *rules: str) -> bytes:
    body = " ,\n  ".join(f"[ a pht:FilterRule ; {r} ]" for r in rules)
    return (PREFIXES + f"<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:{default}"
            + (f" ;\n pht:rule {body}" if rules else "") + " .\n").encode()


def units(*raw: dict[str, Any]) -> list[Any]:
    common = {"time": T, "train": "t1", "execution": "t1.r1-s0"}
    return validated([event_triples(m, NAMING, SECRET)
                      for m in EventAdapter.validate_python([{**common, **r} for r in raw])])


def leaving(policy: Any, *raw: dict[str, Any]) -> list[set[tuple[str, str]]]:
    """Per event: the (predicate local name, object lexical value) pairs that leave."""
    return [{(q.predicate.value.rsplit("#", 1)[-1], q.object.value) for q in f.leaving}
            for f in apply_policy(units(*raw), policy, SECRET)]


# -- semantics --------------------------------------------------------------------------------------------


def test_highest_priority_decides_and_ties_go_to_deny() -> None:
    policy = load_policy(policy_text(
        "Allow",
        "pht:effect pht:Allow ; pht:priority 5 ; pht:property pht:reason",
        "pht:effect pht:Deny ; pht:priority 5 ; pht:property pht:reason",      # tie with the Allow: Deny wins
        "pht:effect pht:Deny ; pht:priority 1 ; pht:property pht:eventTime",
        "pht:effect pht:Allow ; pht:priority 2 ; pht:property pht:eventTime"))  # higher: Allow wins
    (out,) = leaving(policy, {"kind": "state-change", "to_state": "approved", "reason": "ok"})
    assert "reason" not in {p for p, _ in out}
    assert ("eventTime", "2026-11-27T09:42:13.25Z") in out


def test_default_effect_decides_what_no_rule_matches() -> None:
    deny = load_policy(policy_text("Deny", *(f"pht:effect pht:Allow ; pht:priority 1 ; pht:property {p}" for p in (
        "rdf:type", "pht:eventTime", "pht:aboutTrain", "pht:emittedBy"))))
    (out,) = leaving(deny, {"kind": "started-running"})
    assert {p for p, _ in out} == {"type", "eventTime", "aboutTrain", "emittedBy"}  # not aboutExecution
    allow_all = load_policy(policy_text("Allow"))
    assert len(leaving(allow_all, {"kind": "started-running"})[0]) == 5


def test_a_deny_rule_without_property_drops_the_whole_event_and_classes_include_subclasses() -> None:
    policy = load_policy(policy_text("Allow", "pht:effect pht:Deny ; pht:priority 1 ; pht:eventClass pht:UsageSample",
                                     "pht:effect pht:Allow ; pht:priority 9 ; pht:property pht:eventTime"))
    cpu, rejection = apply_policy(units({"kind": "cpu-usage", "value": 50}, {"kind": "rejection", "reason": "no"}),
                                  policy)
    assert cpu.leaving == () and "denies the whole event" in (cpu.dropped_whole or "")
    assert any(d.leaves is not None for d in cpu.decisions)  # eventTime was allowed, and still does not leave
    assert len(rejection.leaving) == 6


def test_value_pattern_is_searched_in_the_lexical_form() -> None:
    policy = load_policy(policy_text("Allow", 'pht:effect pht:Deny ; pht:priority 1 ; pht:valuePattern "anonym"'))
    kept, whole = apply_policy(units({"kind": "rejection", "reason": "fine"},
                                     {"kind": "rejection", "reason": "No anonymity"}), policy)
    assert len(kept.leaving) == 6
    assert whole.leaving == ()  # the matching rule has no property: the whole event stays


def test_coarsenings() -> None:
    dt, dec, integer = (NamedNode(XSD + t) for t in ("dateTime", "decimal", "integer"))
    at = Literal(T, datatype=dt)
    assert coarsen(NamedNode(PHT + "RoundToMinute"), at).value == "2026-11-27T09:42:00Z"
    assert coarsen(NamedNode(PHT + "RoundToHour"), at).value == "2026-11-27T09:00:00Z"
    assert coarsen(NamedNode(PHT + "RoundToDay"), at).value == "2026-11-27T00:00:00Z"
    assert coarsen(NamedNode(PHT + "BucketMemory"), Literal("314572800.0", datatype=dec)).value == "268435456.0"
    assert coarsen(NamedNode(PHT + "BucketMemory"), Literal("0.5", datatype=dec)).value == "0.0"
    assert coarsen(NamedNode(PHT + "BucketPercent"), Literal("87", datatype=integer)).value == "80"
    # keyed with the station's secret: a plain SHA-256 would let anyone confirm a guessed value
    hashed = coarsen(NamedNode(PHT + "HashValue"), Literal("secret"), SECRET).value
    assert hashed == hmac.new(b"k" * 32, b"hash-value\nsecret", hashlib.sha256).hexdigest()
    assert hashed != hashlib.sha256(b"secret").hexdigest()
    assert coarsen(NamedNode(PHT + "HashValue"), Literal("secret"), StationSecret(b"j" * 32)).value != hashed
    # not applicable: None (the filter drops the triple)
    assert coarsen(NamedNode(PHT + "RoundToHour"), Literal("5", datatype=integer)) is None
    assert coarsen(NamedNode(PHT + "BucketMemory"), Literal("much")) is None
    assert coarsen(NamedNode(PHT + "RoundToHour"), Literal("2026-11-27T10:00:00", datatype=dt)) is None  # no zone


def test_a_coarsening_that_cannot_apply_drops_the_triple_and_a_broken_event_is_dropped_whole() -> None:
    policy = load_policy(policy_text(
        "Allow", "pht:effect pht:Allow ; pht:priority 1 ; pht:property pht:reason ; pht:coarsen pht:RoundToHour",
        "pht:effect pht:Allow ; pht:priority 1 ; pht:property pht:eventTime ; pht:coarsen pht:RoundToHour"))
    state_change, rejection = apply_policy(units({"kind": "state-change", "to_state": "approved", "reason": "x"},
                                                 {"kind": "rejection", "reason": "x"}), policy)
    assert ("eventTime", "2026-11-27T09:00:00Z") in {(q.predicate.value.rsplit("#")[-1], q.object.value)
                                                     for q in state_change.leaving}
    assert all(q.predicate.value != PHT + "reason" for q in state_change.leaving)  # optional there: just dropped
    assert rejection.leaving == ()  # a rejection needs its reason: without it the shapes refuse the event
    assert "violate the shapes" in (rejection.dropped_whole or "")


def test_denying_the_class_triple_drops_the_event() -> None:
    policy = load_policy(policy_text("Allow", "pht:effect pht:Deny ; pht:priority 1 ; pht:property rdf:type"))
    (f,) = apply_policy(units({"kind": "started-running"}), policy)
    assert f.leaving == () and "its class" in (f.dropped_whole or "")


def test_the_safe_default_shares_only_what_the_orchestration_needs() -> None:
    policy = read_policy(DEFAULT_POLICY, station=NAMING.station)
    state, rejection, error, log, cpu, memory, network = leaving(
        policy, {"kind": "state-change", "from_state": "queued", "to_state": "waiting-for-approval"},
        {"kind": "rejection", "reason": "No anonymity"}, {"kind": "error", "message": "patient 17 has no age"},
        {"kind": "log", "log_sha256": "a" * 64, "message": "42 patients"}, {"kind": "cpu-usage", "value": 12},
        {"kind": "memory-usage", "value": 1000}, {"kind": "network-usage", "value": 1, "direction": "in"})
    assert ("toState", PHT + "WaitingForApproval") in state and ("fromState", PHT + "Queued") in state
    assert ("reason", "No anonymity") in rejection
    assert ("errorMessage", SECRET.digest("hash-value", "patient 17 has no age")) in error  # keyed, not SHA-256
    assert not any("patient" in v for _, v in error)
    assert ("logDigest", log_digest("a" * 64, SECRET)) in log and "logMessage" not in {p for p, _ in log}
    assert ("logDigest", "a" * 64) not in log  # the log's own SHA-256 stays at the station
    assert cpu == memory == network == set()


# -- loading ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    (b"this is not turtle", "is not valid Turtle"),
    (PREFIXES.encode() + b"<urn:p> a pht:FilterPolicy .", "violates the policy shapes"),
    (PREFIXES.encode(), "exactly one pht:FilterPolicy, it holds 0"),
    (policy_text("Allow") + b"<urn:q> a pht:FilterPolicy ; pht:defaultEffect pht:Deny .", "it holds 2"),
    (policy_text("Allow", 'pht:effect pht:Deny ; pht:priority 1 ; pht:valuePattern "(unclosed"'),
     "not a regular expression"),
    (policy_text("Allow", "pht:effect pht:Deny ; pht:priority 1 ; pht:eventClass pht:Train"), "is neither pht:Event"),
    (policy_text("Allow", "pht:effect pht:Deny ; pht:priority 1.5"), "violates the policy shapes"),
    (policy_text("Allow", "pht:effect pht:Maybe ; pht:priority 1"), "violates the policy shapes"),
    (policy_text("Allow", "pht:effect pht:Deny ; pht:priority 1 ; pht:propertee pht:reason"), "violates the policy shapes"),
    (PREFIXES.encode() + b"<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:Deny ; "
     b"pht:appliesToStation <https://pht.example.org/id/stations/leipzig> .", "not to this station"),
])
def test_unusable_policies_are_refused_with_one_sentence(text: bytes, message: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(message)) as refused:
        load_policy(text, source="p.ttl", station=NAMING.station)
    assert "\n" not in str(refused.value)
    if "shapes" in message:
        assert refused.value.report is not None and not refused.value.report.conforms


def test_a_policy_for_this_station_with_named_rules_loads() -> None:
    text = (PREFIXES + "<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:Deny ; pht:rule <urn:r1> ; "
            "pht:appliesToStation <https://pht.example.org/id/stations/aachen> .\n"
            "<urn:r1> a pht:FilterRule ; pht:effect pht:Allow ; pht:priority 3 ; pht:eventClass pht:Event .").encode()
    policy = load_policy(text, station=NAMING.station)
    assert policy.station == NAMING.station and [r.name for r in policy.rules] == ["urn:r1"]


# -- the property: no denied triple ever leaves -------------------------------------------------------------


EVENT_CLASSES = [None, "Event", "StateChangeEvent", "UsageSample", "CPUUsageSample", "MemoryUsageSample",
                 "RejectionEvent", "ErrorEvent", "LogEvent", "FinishedRunningEvent"]
PROPERTIES = [None, "rdf:type", "pht:eventTime", "pht:aboutTrain", "pht:aboutExecution", "pht:emittedBy",
              "pht:reason", "pht:errorMessage", "pht:logMessage", "pht:logDigest", "pht:value", "pht:unit",
              "pht:success", "pht:toState", "pht:fromState", "pht:actingRole", "pht:direction",
              "<http://www.w3.org/ns/prov#wasAssociatedWith>"]
PATTERNS = [None, "a", "^2026", "[0-9]{3}", "Z$", "Station", "x|y", "^$", "e"]
COARSENINGS = [None, "RoundToMinute", "RoundToHour", "RoundToDay", "BucketMemory", "BucketPercent", "HashValue"]

rules = st.lists(st.fixed_dictionaries({
    "effect": st.sampled_from(["Allow", "Deny"]), "priority": st.integers(-2, 2),
    "class": st.sampled_from(EVENT_CLASSES), "property": st.sampled_from(PROPERTIES),
    "pattern": st.sampled_from(PATTERNS), "coarsen": st.sampled_from(COARSENINGS)}), max_size=6)
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip() != "")
times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))
event = st.one_of(
    st.fixed_dictionaries({"kind": st.just("state-change"), "to_state": st.sampled_from(["approved", "running"]),
                           "from_state": st.sampled_from(["queued", "pulling"]), "reason": text,
                           "role": st.sampled_from(["station", "station-admin"])}),
    st.fixed_dictionaries({"kind": st.just("rejection"), "reason": text}),
    st.fixed_dictionaries({"kind": st.just("error"), "message": text}),
    st.fixed_dictionaries({"kind": st.just("log"), "log_sha256": st.just("ab" * 32), "message": text}),
    st.fixed_dictionaries({"kind": st.sampled_from(["started-transmission", "started-running"])}),
    st.fixed_dictionaries({"kind": st.just("finished-running"), "success": st.booleans()}),
    st.fixed_dictionaries({"kind": st.sampled_from(["cpu-usage", "memory-usage"]),
                           "value": st.decimals(0, 10**12, places=2, allow_nan=False, allow_infinity=False)}),
    st.fixed_dictionaries({"kind": st.just("network-usage"), "direction": st.sampled_from(["in", "out"]),
                           "value": st.decimals(0, 10**9, places=1, allow_nan=False, allow_infinity=False)}),
)


def turtle(default: str, specs: list[dict[str, Any]]) -> bytes:
    parts = []
    for r in specs:
        conditions = [f"pht:effect pht:{r['effect']}", f"pht:priority {r['priority']}"]
        if r["class"]:
            conditions.append(f"pht:eventClass pht:{r['class']}")
        if r["property"]:
            conditions.append(f"pht:property {r['property']}")
        if r["pattern"] is not None:
            conditions.append(f'pht:valuePattern "{r["pattern"]}"')
        if r["coarsen"]:
            conditions.append(f"pht:coarsen pht:{r['coarsen']}")
        parts.append(" ; ".join(conditions))
    return policy_text(default, *parts)


SUPERCLASSES = {c: {str(x) for x in load_schema().ontology.transitive_objects(rdflib.URIRef(PHT + c), rdflib.RDFS.subClassOf)}
                for c in ("StateChangeEvent", "RejectionEvent", "ErrorEvent", "LogEvent", "StartedTransmissionEvent",
                          "StartedRunningEvent", "FinishedRunningEvent", "CPUUsageSample", "MemoryUsageSample",
                          "NetworkUsageSample")}


def expand(term: str | None) -> str | None:
    if term is None:
        return None
    return term.strip("<>") if term.startswith("<") else (RDF_TYPE if term == "rdf:type" else PHT + term[4:])


def oracle(default: str, specs: list[dict[str, Any]], cls: str, predicate: str, value: str) -> dict[str, Any]:
    """The written-out semantics, independently of the implementation: the matching rules, highest priority
    first, Deny before Allow on a tie (then a coarsening rule first, then file order); the first decides."""
    matching = [(i, r) for i, r in enumerate(specs)
                if (r["class"] is None or PHT + r["class"] in SUPERCLASSES[cls])
                and (r["property"] is None or expand(r["property"]) == predicate)
                and (r["pattern"] is None or re.search(r["pattern"], value) is not None)]
    if not matching:
        return {"allowed": default == "Allow", "whole": False, "coarsen": None}
    _, rule = min(matching, key=lambda ir: (-ir[1]["priority"], ir[1]["effect"] != "Deny", ir[1]["coarsen"] is None,
                                            ir[0]))
    return {"allowed": rule["effect"] == "Allow", "whole": rule["effect"] == "Deny" and rule["property"] is None,
            "coarsen": rule["coarsen"]}


class Wire(httpx.MockTransport):
    """The central service as seen from the station: every byte that leaves is recorded, every batch acknowledged."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        super().__init__(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request.content)
        return httpx.Response(200, json={"batch": "b", "events": 0, "described": 0, "triples": 0, "graph": "g"})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(default=st.sampled_from(["Allow", "Deny"]), specs=rules, raw=st.lists(event, min_size=1, max_size=6),
       when=times)
def test_no_triple_the_policy_denies_ever_leaves_the_station(default: str, specs: list[dict[str, Any]],
                                                             raw: list[dict[str, Any]], when: datetime) -> None:
    """Random events through a random policy and the whole MPU (validate, filter, outbox, signed push): every
    byte that reaches the wire is checked against the policy's written semantics (``oracle``)."""
    policy = load_policy(turtle(default, specs))
    key_dir = Path(tempfile.mkdtemp(prefix="mpu-prop-"))
    station_keys = StationKeys(key_dir)
    wire = Wire()
    settings_ = MpuSettings(station_id="aachen", data_dir=key_dir / "mpu", central_url="http://central",
                            private_key_path=station_keys.path("aachen"), token="t", sample_interval_s=0)
    mpu = Mpu(settings_, http=httpx.Client(transport=wire), policy=policy)
    models = EventAdapter.validate_python([{"time": when, "train": "t1", "execution": "t1.r1-s0", "id": f"e{i}", **r}
                                           for i, r in enumerate(raw)])
    mpu.ingest(models)
    assert mpu.flush(timeout_s=30)
    mpu.close()
    sent = {(t.subject.value, t.predicate.value, t.object) for body in wire.sent
            for t in parse(body, format=RdfFormat.N_TRIPLES)}
    for unit in validated([event_triples(m, NAMING, mpu.secret) for m in models]):
        cls = unit.cls.value.removeprefix(PHT)
        decisions = [(q, oracle(default, specs, cls, q.predicate.value, q.object.value)) for q in unit.quads]
        out = {(p, o) for s, p, o in sent if s == unit.iri.value}
        if any(d["whole"] for _, d in decisions if not d["allowed"]):
            assert out == set(), f"{unit.iri}: a Deny rule without property matched, yet {out} left"
        for q, d in decisions:
            if not d["allowed"]:
                assert (q.predicate.value, q.object) not in out, f"denied {q} left the station"
        expected = set()
        for q, d in decisions:
            if d["allowed"]:
                value = q.object if d["coarsen"] is None else coarsen(NamedNode(PHT + d["coarsen"]), q.object,
                                                                      mpu.secret)
                if value is not None:
                    expected.add((q.predicate.value, value))
        assert out <= expected, f"{unit.iri}: {out - expected} left but the policy does not allow it"
        if out:  # an event leaves whole-as-allowed or not at all (dropped when what is allowed breaks the shapes)
            assert out == expected


# -- reloading without restart --------------------------------------------------------------------------------


def test_a_changed_policy_file_is_used_without_restart_and_an_invalid_one_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "policy.ttl"
    path.write_bytes(policy_text("Allow"))
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path / "mpu", policy_path=path, sample_interval_s=0,
                          policy_check_interval_s=0.01, metrics_token=METRICS_TOKEN))
    client_app = create_mpu_app(mpu, background=False)
    from fastapi.testclient import TestClient

    with TestClient(client_app) as client:
        assert mpu.ingest([{"kind": "rejection", "time": T, "train": "t1", "reason": "a"}]).triples_leaving == 5
        path.write_bytes(policy_text("Deny", "pht:effect pht:Allow ; pht:priority 1 ; pht:property rdf:type"))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on a coarse clock
        time.sleep(0.02)
        assert mpu.ingest([{"kind": "rejection", "time": T, "train": "t1", "reason": "b"}]).triples_leaving == 0
        good = mpu.policy
        path.write_bytes(b"@prefix pht: <https://w3id.org/pht-kg/vocab#> . <urn:p> a pht:FilterPolicy .")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
        time.sleep(0.02)
        assert mpu.ingest([{"kind": "rejection", "time": T, "train": "t1", "reason": "c"}]).triples_leaving == 0
        assert mpu.policy is good  # the invalid file was refused, the previous policy is still active
        status = client.get("/status").json()
        assert "violates the policy shapes" in status["policy"]["error"]
        metrics = client.get("/metrics", headers=METRICS).text
        assert "pht_mpu_policy_last_load_ok 0.0" in metrics
        assert 'pht_mpu_policy_reloads_total{outcome="invalid"} 1.0' in metrics
        refused = client.post("/policy/reload")
        assert refused.status_code == 422 and "previous policy stays active" in refused.json()["detail"]
        path.write_bytes(policy_text("Allow"))
        assert client.post("/policy/reload").status_code == 200
        assert mpu.policy is not good and mpu.policy_error is None
        assert "pht_mpu_policy_last_load_ok 1.0" in client.get("/metrics", headers=METRICS).text
    mpu.close()


# -- the command line ------------------------------------------------------------------------------------------


runner = CliRunner()


def test_policy_check_accepts_the_default_and_explains_it() -> None:
    result = runner.invoke(mpu_app, ["policy", "check", str(DEFAULT_POLICY), "--station", "aachen"])
    assert result.exit_code == 0, result.output
    assert "a valid filter policy for station aachen" in result.output
    assert "memory-usage" in result.output and "nothing" in result.output


@pytest.mark.parametrize(("content", "sentence"), [
    (b"not turtle at all", "is not valid Turtle"),
    (PREFIXES.encode() + b"<urn:p> a pht:FilterPolicy ; pht:defaultEffect pht:Perhaps .", "violates the policy shapes"),
])
def test_policy_check_refuses_a_bad_policy_with_exit_1(tmp_path: Path, content: bytes, sentence: str) -> None:
    path = tmp_path / "bad.ttl"
    path.write_bytes(content)
    result = runner.invoke(mpu_app, ["policy", "check", str(path)])
    assert result.exit_code == 1
    assert sentence in result.output


def test_policy_check_of_a_missing_file_fails() -> None:
    result = runner.invoke(mpu_app, ["policy", "check", "/nonexistent/policy.ttl"])
    assert result.exit_code == 1 and "cannot read the policy" in result.output


def test_policy_preview_shows_what_leaves_and_what_stays(tmp_path: Path) -> None:
    mpu = Mpu(MpuSettings(station_id="aachen", data_dir=tmp_path / "mpu", sample_interval_s=0))
    mpu.ingest([{"kind": "log", "time": T, "train": "t1", "log_sha256": "c" * 64, "message": "SECRET-EXCERPT"},
                {"kind": "rejection", "time": T, "train": "t1", "reason": "No access right"}])
    mpu.close()
    result = runner.invoke(mpu_app, ["policy", "preview", "--station", "aachen", "--data-dir", str(tmp_path / "mpu")])
    assert result.exit_code == 0, result.output
    leave, stay = result.output.split("triples that would stay at the station")
    assert "No access right" in leave and "SECRET-EXCERPT" not in leave
    assert "SECRET-EXCERPT" in stay and "denied by rule" in stay
    assert "2 event(s): 10 triple(s) would leave, 1 would stay" in result.output


def test_policy_preview_of_an_events_file_with_another_policy(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    events.write_text('[{"kind": "memory-usage", "time": "2026-11-27T10:00:00Z", "train": "t1", "value": 314572800}]')
    policy = tmp_path / "p.ttl"
    policy.write_bytes(policy_text("Allow", "pht:effect pht:Allow ; pht:priority 1 ; pht:property pht:value ; "
                                            "pht:coarsen pht:BucketMemory"))
    result = runner.invoke(mpu_app, ["policy", "preview", "--station", "aachen", "--events", str(events),
                                     "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    assert '"268435456.0"' in result.output and "314572800" not in result.output.split("would stay")[0]


def test_policy_preview_errors_are_one_sentence(tmp_path: Path) -> None:
    result = runner.invoke(mpu_app, ["policy", "preview", "--station", "aachen", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no MPU data in" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text('[{"kind": "rejection", "time": "2026-11-27T10:00:00Z", "train": "t1"}]')
    result = runner.invoke(mpu_app, ["policy", "preview", "--station", "aachen", "--events", str(bad)])
    assert result.exit_code == 1 and "is not a JSON list of events" in result.output


def test_every_mpu_command_has_help_with_an_example() -> None:
    for args in (["policy", "check"], ["policy", "preview"], ["serve"]):
        result = runner.invoke(mpu_app, [*args, "--help"])
        assert result.exit_code == 0 and "Example: pht mpu" in result.output, args


def test_serve_refuses_a_bad_configuration_with_one_sentence(tmp_path: Path) -> None:
    result = runner.invoke(mpu_app, ["serve", "--station", "aachen", "--central", "http://central:8080",
                                     "--data-dir", str(tmp_path)], env={"PHT_MPU_TOKEN": "t"})
    assert result.exit_code == 1 and "needs the station's private key" in result.output


def test_decimal_values_keep_a_point() -> None:
    (u,) = units({"kind": "memory-usage", "value": Decimal(1024)})
    value = next(q.object for q in u.quads if q.predicate.value == PHT + "value")
    assert value.datatype.value == XSD + "decimal"

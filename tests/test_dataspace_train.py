"""A data-space train (issue 17 item 3, use case 2) through real parts: a provider connector over HTTP on loopback,
the central service, a station agent with its own data-space identity, the train run by the process runtime in
bubblewrap.

The station negotiates for the declared dataset, pulls it before the run and mounts it read-only at
``/pht/dataspace/{name}``; the train's result is computed from it. Attacker checks: the train dumps its environment
and every file it can read under ``/pht`` and finds neither the station's identity token nor any pull token the
provider issued; the central graph, the station's state folder and the MPU's data hold neither either. A provider
that refuses (policy not satisfied, dataset withdrawn) or is down fails the execution before the train runs, with
one sentence as the failure reason.
"""

from __future__ import annotations

import json
import secrets
import socket
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyoxigraph import NamedNode

from dataspace import ConsumerSettings, IdentityIssuer, Policy, PublishedResult
from local_platform import LocalPlatform
from station.runtimes.process import folder_digest
from dataspace_helpers import CONSORTIUM, PURPOSE, TRAIN, Participant, participant
from self_releasing_platform import self_releasing_platform

pytestmark = pytest.mark.real_component("bubblewrap")

ISSUER = IdentityIssuer.generate("urn:issuer:data-space")
STATION = "ds-clinic"
COHORT = b"id,age\n1,54\n2,61\n3,47\n"
TRAIN_SOURCE = """import hashlib, json, os, pathlib
data = pathlib.Path(os.environ["PHT_DATASPACE_DIR"], "cohort", "data").read_bytes()
seen = {"env": dict(os.environ), "files": {}}
for root in ("/pht", "/tmp"):
    for f in pathlib.Path(root).rglob("*"):
        try:
            if f.is_file() and not str(f).startswith(os.environ["PHT_OUTPUT_DIR"]):
                seen["files"][str(f)] = f.read_bytes().decode("latin-1")
        except OSError as e:
            seen["files"][str(f)] = "unreadable: " + str(e)
out = pathlib.Path(os.environ["PHT_OUTPUT_DIR"])
(out / "result.json").write_text(json.dumps({"rows": data.count(b"\\n") - 1,
                                             "sha256": hashlib.sha256(data).hexdigest()}))
(out / "seen.json").write_text(json.dumps(seen))
"""


@dataclass
class World:
    platform: LocalPlatform
    provider: Participant
    train_folder: Path
    tmp: Path
    station_token: str
    pull_tokens: list[str]

    def run(self, did: str, connector: str, dataset: str) -> dict:
        alice = self.platform.client("alice")
        alice.register_definition({
            "id": did, "title": did, "image_name": str(self.train_folder),
            "image_digest": folder_digest(self.train_folder), "mode": "incremental", "route": [STATION],
            "dataspace_inputs": [{"name": "cohort", "connector": connector, "dataset": dataset}]})
        return alice.wait(alice.submit(did), timeout_s=120)


def publish(provider: Participant, tmp: Path, data: bytes, policy: str) -> PublishedResult:
    f = tmp / f"{secrets.token_hex(4)}.csv"
    f.write_bytes(data)
    return provider.connector.provider.publish(train=TRAIN, title="Cohort", data=f, policy=Policy.parse(policy))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from conftest import require_component
    require_component("bubblewrap")
    tmp = tmp_path_factory.mktemp("dstrain")
    issued: list[str] = []
    import dataspace._provider as provider_module

    def recording(n: int) -> str:  # every pull token the provider issues, to look for it where it must not be
        token = secrets.token_urlsafe(n)
        issued.append(token)
        return token

    mp = pytest.MonkeyPatch()
    mp.setattr(provider_module, "secrets", types.SimpleNamespace(token_urlsafe=recording))
    secret_dir = tmp / "station-admin"  # outside the station's state folder, as a station admin keeps it
    secret_dir.mkdir()
    token = ISSUER.issue(f"urn:participant:{STATION}", memberships=(CONSORTIUM,), purposes=(PURPOSE,))
    (secret_dir / "identity.jwt").write_text(token)
    settings = ConsumerSettings(participant_id=f"urn:participant:{STATION}", callback_url="", issuer=ISSUER.issuer,
                                issuer_key=ISSUER.key.public_key(), identity_token_file=secret_dir / "identity.jwt",
                                data_dir=tmp / "consumer", listen_host="127.0.0.1", listen_port=0)
    try:
        with participant(tmp, "provider", ISSUER) as provider, \
                self_releasing_platform(tmp, [STATION], TRAIN_SOURCE, dataspace=settings) as (platform, train):
            yield World(platform, provider, train, tmp, token, issued)
    finally:
        mp.undo()


def test_the_station_pulls_the_dataset_and_the_train_reads_it_mounted(world: World) -> None:
    result = publish(world.provider, world.tmp, COHORT, f"purpose={PURPOSE},member={CONSORTIUM}")
    train = world.run("ds-count", world.provider.url, result.iri.value)
    assert train["state"] == "finished", [e["reason"] for e in world.platform.client("alice").events(train["id"])]
    out = world.platform.fetch(train["executions"][-1]["output_sha256"], world.tmp / "out")
    assert json.loads((out / "result.json").read_text()) == {"rows": 3, "sha256": result.sha256}
    seen = json.loads((out / "seen.json").read_text())
    assert seen["files"]["/pht/dataspace/cohort/data"] == COHORT.decode()
    assert [f for f in seen["files"] if f.startswith("/pht/dataspace")] == ["/pht/dataspace/cohort/data"]
    assert world.pull_tokens, "the provider issued no pull token"
    # the train sees neither the station's identity nor the pull token: not in its environment, not in a file
    dumped = json.dumps(seen)
    for secret in (world.station_token, *world.pull_tokens):
        assert secret not in dumped
    assert not any("DSP" in k or "TOKEN" in k for k in seen["env"])
    # nor does the central graph (every named graph), nor anything the station or its MPU keeps
    store = world.platform.store
    assert store is not None
    graph = "\n".join(str(q) for q in store.oxigraph.quads_for_pattern(None, None, None, None))
    assert result.iri.value in graph  # the input is declared in the definition, bound by the signed request
    kept = [world.platform.workdir / "stations" / STATION, world.platform.workdir / "mpu" / STATION]
    texts = [graph] + [p.read_bytes().decode("latin-1") for root in kept for p in root.rglob("*") if p.is_file()]
    for secret in (world.station_token, *world.pull_tokens):
        assert not any(secret in text for text in texts)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _failed_before_running(world: World, train: dict) -> str:
    assert train["state"] == "failed", train
    events = world.platform.client("alice").events(train["id"])
    assert not any(e["execution"] and e["to_state"] == "running" for e in events), [(e["from_state"], e["to_state"], e["reason"]) for e in events]  # never started
    reasons = [e["reason"] for e in events if e["to_state"] == "failed" and e["reason"]]
    assert reasons, events
    assert not any(secret in json.dumps(events) for secret in (world.station_token, *world.pull_tokens))
    return str(reasons[-1])


def test_a_policy_the_station_does_not_satisfy_fails_before_the_run(world: World) -> None:
    result = publish(world.provider, world.tmp, b"x\n", f"purpose={PURPOSE},member=urn:consortium:other")
    reason = _failed_before_running(world, world.run("ds-policy", world.provider.url, result.iri.value))
    assert "data-space input 'cohort' could not be obtained, so the train did not run" in reason
    assert reason.endswith("answered 403: Refused: the policy allows use only by members of urn:consortium:other.")


def test_a_withdrawn_dataset_fails_before_the_run(world: World) -> None:
    result = publish(world.provider, world.tmp, b"y\n", f"purpose={PURPOSE},member={CONSORTIUM}")
    world.provider.connector.provider.withdraw(NamedNode(result.iri.value))
    reason = _failed_before_running(world, world.run("ds-withdrawn", world.provider.url, result.iri.value))
    assert f"does not offer dataset {result.iri.value}" in reason


def test_a_provider_that_is_down_fails_before_the_run(world: World) -> None:
    reason = _failed_before_running(
        world, world.run("ds-down", f"http://127.0.0.1:{_closed_port()}", "urn:uuid:0b5e4f2c-0000-4000-8000-000000000001"))
    assert "could not be obtained from http://127.0.0.1:" in reason

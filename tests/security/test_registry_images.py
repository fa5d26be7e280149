"""A station runs only the signed, approved image, pulled from a REAL registry by its manifest digest (issue 16).

A real central service (HTTP), a real station agent with the real Docker runtime, and the real Distribution
registry (``tests/servers.py::registry_server``): the researcher pushes, signs a definition naming
``registry/repository@sha256:<manifest digest>`` and the image ID, and the station pulls with its own read-only
credentials (``PHT_STATION_REGISTRY_AUTH``, a Docker config.json). Each attack ends in a failed execution whose
reason says why, and no container ran.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker
import pytest
from api_helpers import token
from release_gate_world import RecordingEvents, World, open_world, station_settings
from servers import RegistryServer, free_port

from orchestrator.principal import Role
from station.agent import StationAgent
from station.image_registry import DigestReference, push_image
from station.images import build_train_image
from station.policy import StationPolicy
from station.runtimes.base import RunResult, RunSpec
from station.runtimes.docker import DockerRuntime

pytestmark = pytest.mark.real_component("registry", "docker")

AUTO = StationPolicy(requires_approval=False, requires_output_review=False)
TRIVIAL = Path(__file__).resolve().parents[2] / "benchmarks" / "trivial-train"
TERMINAL = {"released", "failed", "rejected", "withheld", "cancelled"}


class CountingDockerRuntime(DockerRuntime):
    """The real Docker runtime, counting the runs it was asked for."""

    def __init__(self, client: docker.DockerClient) -> None:
        super().__init__(client=client)
        self.runs: list[str] = []

    def run(self, spec: RunSpec) -> RunResult:
        self.runs.append(spec.image_digest)
        return super().run(spec)


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[World]:
    with open_world(tmp_path) as w:
        yield w


def pushed_image(registry: RegistryServer, client: docker.DockerClient, tmp_path: Path) -> tuple[str, str]:
    """(station reference, image ID) of a fresh tiny train pushed by the researcher and removed from the engine."""
    folder = tmp_path / f"train-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    (folder / "Dockerfile").write_text((TRIVIAL / "Dockerfile").read_text()
                                       + f"LABEL pht.test.nonce={uuid.uuid4().hex}\n")
    image_id = build_train_image(folder, f"pht-test/registry-{folder.name}:1", client)
    pushed = push_image(client, image_id, f"{registry.push_host}/trains/{folder.name}:1", registry.researcher_auth())
    client.images.remove(image_id, force=True)
    return str(DigestReference(registry.pull_host, pushed.reference.repository, pushed.reference.digest)), image_id


def auth_file(tmp_path: Path, host: str, user: str, password: str) -> Path:
    path = tmp_path / f"registry-auth-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    return path


def run_train(world: World, runtime: CountingDockerRuntime, *, image_name: str, image_digest: str,
              credentials: Path) -> tuple[dict[str, Any], list[str]]:
    """Define (signed by alice with the submission), submit and let station aachen work until the execution ends."""
    did = f"reg-{uuid.uuid4().hex[:8]}"
    body = {"id": did, "title": did, "image_name": image_name, "image_digest": image_digest,
            "mode": "incremental", "route": ["aachen"],
            "parameters": [{"name": "MIN", "datatype": "integer", "required": True}]}
    r = world.http.post("/api/definitions", headers=token("alice", Role.RESEARCHER), json=body)
    assert r.status_code == 201, r.text
    tid = world.submit(did, MIN="1")
    settings = replace(station_settings(world.tmp, world.central.url, "aachen"), registry_auth_file=credentials)
    agent = StationAgent(settings, runtime=runtime, objects=world.objects, events=RecordingEvents("aachen"),
                         policy_loader=lambda: AUTO)
    world.clients.append(agent)
    for _ in range(10):
        agent.poll_once()
        execution = world.train(tid)["executions"][0]
        if execution["state"] in TERMINAL:
            break
    return execution, world.reasons(tid)


def test_the_station_pulls_the_signed_digest_with_its_own_credentials_and_runs_it(
        world: World, registry_endpoint: RegistryServer, docker_client: docker.DockerClient,
        probe_image: tuple[str, str]) -> None:
    reference, image_id = pushed_image(registry_endpoint, docker_client, world.tmp)
    credentials = auth_file(world.tmp, registry_endpoint.pull_host, "station-a",
                            registry_endpoint.stations["station-a"])
    runtime = CountingDockerRuntime(docker_client)
    execution, reasons = run_train(world, runtime, image_name=reference, image_digest=image_id,
                                   credentials=credentials)
    assert execution["state"] == "released", (execution, reasons)
    assert runtime.runs == [image_id]
    assert docker_client.images.get(reference).id == image_id  # it came from the registry, by that digest
    docker_client.images.remove(image_id, force=True)


@pytest.mark.parametrize("attack", ["another image under the signed reference", "wrong station password",
                                    "registry down", "a tag instead of a digest"])
def test_the_station_runs_nothing_but_the_approved_digest(
        world: World, registry_endpoint: RegistryServer, docker_client: docker.DockerClient,
        probe_image: tuple[str, str], attack: str) -> None:
    reference, image_id = pushed_image(registry_endpoint, docker_client, world.tmp)
    user, password = "station-a", registry_endpoint.stations["station-a"]
    approved, host = image_id, registry_endpoint.pull_host
    if attack == "another image under the signed reference":
        # the researcher signs the reference of one image and the ID of another (or the registry serves another
        # image under that digest's name): pulled, then refused because its ID is not the approved one
        _, approved = pushed_image(registry_endpoint, docker_client, world.tmp)
        expected = f"here is {image_id}, not the approved {approved}"
    elif attack == "wrong station password":
        password = "not-the-password"
        expected = f"pulling {reference} from {host} failed: unauthorized"
    elif attack == "registry down":
        host = f"127.0.0.1:{free_port()}"
        reference = reference.replace(registry_endpoint.pull_host, host)
        expected = f"pulling {reference} from {host} failed: "
    else:
        reference = reference.split("@")[0] + ":1"
        expected = "is not present on this station"
    runtime = CountingDockerRuntime(docker_client)
    execution, reasons = run_train(world, runtime, image_name=reference, image_digest=approved,
                                   credentials=auth_file(world.tmp, host, user, password))
    assert execution["state"] == "failed", (execution, reasons)
    found = [r for r in reasons if expected in r]
    assert found and "\n" not in found[0], reasons
    assert password not in " ".join(reasons)
    assert runtime.runs == [], "nothing ran"
    for leftover in (image_id, approved):
        try:
            docker_client.images.remove(leftover, force=True)
        except docker.errors.ImageNotFound:
            pass

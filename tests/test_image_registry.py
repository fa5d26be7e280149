"""Train images through a REAL registry (Debian's CNCF Distribution, htpasswd) and the REAL Docker engine.

The researcher pushes (``pht train push``: ``station/image_registry.py``); a station pulls exactly the signed
manifest digest with its own read-only credentials and runs the image only if its ID is the approved one. The
registry is two ``docker-registry`` processes on one storage folder (``tests/servers.py::registry_server``): the
writable one knows only the researcher, the read-only one (maintenance mode) only the stations.

Researcher and station share this machine's engine, so each test removes the pushed image from the engine before
the station pulls: what runs came from the registry.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path

import docker
import docker.errors
import pytest
from runtime_helpers import make_spec
from servers import RegistryServer, free_port
from typer.testing import CliRunner

from pht_cli.main import app
from station.image_registry import (
    DigestReference,
    RegistryError,
    parse_reference,
    push_image,
    registry_credentials,
)
from station.images import build_train_image
from station.runtimes.base import ImageRefused
from station.runtimes.docker import DockerRuntime
from station.runtimes.process import ProcessRuntime
from station.settings import StationSettings, StationSettingsError

pytestmark = pytest.mark.real_component("registry", "docker")

TRIVIAL = Path(__file__).resolve().parent.parent / "benchmarks" / "trivial-train"


@pytest.fixture()
def registry(registry_endpoint: RegistryServer) -> RegistryServer:
    return registry_endpoint


def fresh_image(client: docker.DockerClient, tmp_path: Path, output: str = "1") -> tuple[str, str]:
    """(tag, image ID) of a tiny train writing ``output``, unique to this test (a label), so removing it from the
    engine touches no other image."""
    folder = tmp_path / f"train-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    dockerfile = (TRIVIAL / "Dockerfile").read_text().replace("write('1')", f"write({output!r})")
    (folder / "Dockerfile").write_text(dockerfile + f"LABEL pht.test.nonce={uuid.uuid4().hex}\n")
    tag = f"pht-test/registry-{folder.name}:1"
    return tag, build_train_image(folder, tag, client)


def forget(client: docker.DockerClient, image_id: str) -> None:
    """Remove the image (every tag of it) from the engine: the station must fetch it from the registry."""
    client.images.remove(image_id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(image_id)


def at_station(registry: RegistryServer, pushed: DigestReference) -> str:
    """The reference a station pulls: the same repository and manifest digest on the read-only endpoint."""
    return str(DigestReference(registry.pull_host, pushed.repository, pushed.digest))


def test_a_pushed_train_is_pulled_by_digest_with_station_credentials_and_runs(
        registry: RegistryServer, docker_client: docker.DockerClient, probe_image: tuple[str, str],
        tmp_path: Path) -> None:
    tag, image_id = fresh_image(docker_client, tmp_path)
    pushed = push_image(docker_client, tag, f"{registry.push_host}/trains/count:1", registry.researcher_auth())
    assert pushed.image_id == image_id
    assert pushed.reference.host == registry.push_host and pushed.reference.repository == "trains/count"
    forget(docker_client, image_id)
    reference = at_station(registry, pushed.reference)
    runtime = DockerRuntime(client=docker_client)
    with pytest.raises(ImageRefused, match="is not present on this station"):
        runtime.check_image(reference, image_id)
    runtime.pull(reference, registry.station_auth("station-a"))
    runtime.check_image(reference, image_id)  # the pulled image's ID is the approved one
    spec = make_spec(tmp_path, name="registry-run", image=reference, digest=image_id, params={})
    result = runtime.run(spec)
    assert result.ok, result
    assert (spec.output_dir / "result.txt").read_text() == "1"
    forget(docker_client, image_id)


def test_an_image_other_than_the_approved_one_is_refused_before_it_runs(
        registry: RegistryServer, docker_client: docker.DockerClient, probe_image: tuple[str, str],
        tmp_path: Path) -> None:
    """The registry serves, under the signed name, another image than the approved ID (the researcher's tag was
    overwritten, or the reference names another manifest): pulled, but refused before anything runs."""
    approved_tag, approved = fresh_image(docker_client, tmp_path, output="approved")
    other_tag, other = fresh_image(docker_client, tmp_path, output="other")
    target = f"{registry.push_host}/trains/swap:1"
    push_image(docker_client, approved_tag, target, registry.researcher_auth())
    swapped = push_image(docker_client, other_tag, target, registry.researcher_auth())  # same tag, other image
    forget(docker_client, approved)
    forget(docker_client, other)
    reference = at_station(registry, swapped.reference)
    runtime = DockerRuntime(client=docker_client)
    runtime.pull(reference, registry.station_auth("station-a"))
    with pytest.raises(ImageRefused, match=f"here is {other}, not the approved {approved}"):
        runtime.check_image(reference, approved)
    forget(docker_client, other)


def test_wrong_passwords_and_unknown_accounts_are_refused(
        registry: RegistryServer, docker_client: docker.DockerClient, probe_image: tuple[str, str],
        tmp_path: Path) -> None:
    tag, image_id = fresh_image(docker_client, tmp_path)
    target = f"{registry.push_host}/trains/auth:1"
    wrong = {"username": registry.researcher[0], "password": "not-the-password"}
    with pytest.raises(RegistryError, match="^pushing .* failed: .*(unauthorized|authentication required)"):
        push_image(docker_client, tag, target, wrong)
    with pytest.raises(RegistryError, match="no basic auth credentials"):
        push_image(docker_client, tag, target, None)  # anonymous
    pushed = push_image(docker_client, tag, target, registry.researcher_auth())
    forget(docker_client, image_id)
    reference = at_station(registry, pushed.reference)
    runtime = DockerRuntime(client=docker_client)
    for auth in ({"username": "station-a", "password": "not-the-password"}, None,
                 registry.researcher_auth()):  # the researcher's account is not known to the stations' endpoint
        with pytest.raises(ImageRefused, match=f"^pulling {reference} from {registry.pull_host} failed: .+\\.$"):
            runtime.pull(reference, auth)
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(image_id)


def test_station_credentials_cannot_push_anywhere(
        registry: RegistryServer, docker_client: docker.DockerClient, probe_image: tuple[str, str],
        tmp_path: Path) -> None:
    """Read-only station accounts: the read-only endpoint accepts them and refuses every write; the writable one
    does not know them. Checked afterwards: nothing of the station's push reached the storage."""
    tag, image_id = fresh_image(docker_client, tmp_path)
    station = registry.station_auth("station-b")
    with pytest.raises(RegistryError, match="^pushing .* failed: .*HTTP 405"):  # read-only mode: method not allowed
        push_image(docker_client, tag, f"{registry.pull_host}/trains/by-station:1", station)
    with pytest.raises(RegistryError, match="unauthorized|authentication required"):
        push_image(docker_client, tag, f"{registry.push_host}/trains/by-station:1", station)
    assert not (registry.storage / "docker" / "registry" / "v2" / "repositories" / "trains" / "by-station").exists()
    forget(docker_client, image_id)


def test_tags_unreachable_registries_and_malformed_references_fail_with_one_sentence(
        registry: RegistryServer, docker_client: docker.DockerClient) -> None:
    runtime = DockerRuntime(client=docker_client)
    digest = "sha256:" + "ab" * 32
    with pytest.raises(ImageRefused, match="never pull by tag"):
        runtime.pull(f"{registry.pull_host}/trains/count:1", registry.station_auth("station-a"))
    down = f"127.0.0.1:{free_port()}/trains/count@{digest}"  # nothing listens there
    with pytest.raises(ImageRefused, match=f"^pulling {down} from 127.0.0.1:\\d+ failed: .+\\.$"):
        runtime.pull(down, registry.station_auth("station-a"))
    missing = f"{registry.pull_host}/trains/none@{digest}"  # the registry has no such manifest
    with pytest.raises(ImageRefused, match=f"^pulling {missing} from .* failed: .+\\.$"):
        runtime.pull(missing, registry.station_auth("station-a"))
    for bad in (f"trains/count@{digest}", f"{registry.pull_host}/trains/count@sha256:abc",
                f"{registry.pull_host}/trains/count:1@{digest}"):
        with pytest.raises(ImageRefused, match="is not a registry reference of the form"):
            parse_reference(bad)
    assert parse_reference("pht/count:1") is None  # a local name: the offline path
    with pytest.raises(ImageRefused, match="cannot pull the container image"):
        ProcessRuntime().pull(f"{registry.pull_host}/trains/count@{digest}", None)


def test_station_credentials_file_is_read_per_registry_host(tmp_path: Path) -> None:
    """The station's PHT_STATION_REGISTRY_AUTH file: Docker's config.json (a Kubernetes dockerconfigjson)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {
        "harbor.example.org": {"auth": base64.b64encode(b"robot$station-a:s3cret:with-colon").decode()},
        "https://127.0.0.1:5000/v1/": {"username": "station-a", "password": "pw"},
        "broken.example.org": {"auth": "not base64!"}}}))
    assert registry_credentials(path, "harbor.example.org") == {"username": "robot$station-a",
                                                                "password": "s3cret:with-colon"}
    assert registry_credentials(path, "127.0.0.1:5000") == {"username": "station-a", "password": "pw"}
    assert registry_credentials(path, "elsewhere.example.org") is None
    assert registry_credentials(None, "harbor.example.org") is None
    with pytest.raises(RegistryError, match="^the entry for broken.example.org in .* has neither"):
        registry_credentials(path, "broken.example.org")
    path.write_text("{")
    with pytest.raises(RegistryError, match="is not JSON$"):
        registry_credentials(path, "harbor.example.org")
    env = {"PHT_STATION_ID": "a", "PHT_CENTRAL_URL": "http://127.0.0.1:1", "PHT_STATION_TOKEN": "t",
           "PHT_STATION_DATASETS": f"d={tmp_path}", "PHT_STATION_STATE_DIR": str(tmp_path / "state"),
           "PHT_OBJECTS_URL": f"file://{tmp_path}", "PHT_STATION_REGISTRY_AUTH": str(path)}
    assert StationSettings.from_env(env).registry_auth_file == path
    with pytest.raises(StationSettingsError, match="^PHT_STATION_REGISTRY_AUTH: .* is not a file$"):
        StationSettings.from_env({**env, "PHT_STATION_REGISTRY_AUTH": str(tmp_path / "none.json")}).check()


def test_pht_train_push_prints_the_reference_and_the_image_id_and_never_the_password(
        registry: RegistryServer, docker_client: docker.DockerClient, probe_image: tuple[str, str],
        tmp_path: Path) -> None:
    tag, image_id = fresh_image(docker_client, tmp_path)
    user, password = registry.researcher
    runner = CliRunner()
    done = runner.invoke(app, ["train", "push", tag, f"{registry.push_host}/trains/cli:1", "--username", user,
                               "--pull-host", registry.pull_host], env={"PHT_REGISTRY_PASSWORD": password})
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"image_name: {registry.pull_host}/trains/cli@sha256:"), lines
    assert lines[1] == f"image_digest: {image_id}"
    assert password not in done.output
    reference = lines[0].removeprefix("image_name: ")
    forget(docker_client, image_id)
    DockerRuntime(client=docker_client).pull(reference, registry.station_auth("station-a"))
    assert docker_client.images.get(reference).id == image_id
    forget(docker_client, image_id)
    for args, env, sentence in (
            (["pht-test/no-such-image:1", f"{registry.push_host}/trains/cli:1"], {},
             "there is no image pht-test/no-such-image:1 in the local engine"),
            ([probe_image[0], f"127.0.0.1:{free_port()}/trains/cli:1"], {}, "failed: "),
            ([probe_image[0], f"{registry.push_host}/trains/cli:1", "--username", user],
             {"PHT_REGISTRY_PASSWORD": "wrong-password"}, "failed: "),
            ([probe_image[0], f"{registry.push_host}/trains/cli:1", "--username", user], {"PHT_REGISTRY_PASSWORD": ""},
             "--username needs a password"),
            ([probe_image[0], "trains/cli:1"], {}, "is not registry/repository:tag")):
        bad = runner.invoke(app, ["train", "push", *args], env=env)
        assert bad.exit_code == 1, (args, bad.output)
        assert sentence in bad.stderr, (args, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.output, bad.output
        assert "wrong-password" not in bad.output


def test_the_offline_path_stays_a_local_name_without_any_registry(
        docker_client: docker.DockerClient, probe_image: tuple[str, str]) -> None:
    """A station that builds the train itself names it locally: nothing is pulled, the image ID is checked."""
    tag, image_id = probe_image
    assert parse_reference(tag) is None
    DockerRuntime(client=docker_client).check_image(tag, image_id)

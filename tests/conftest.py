"""Shared fixtures.

Real-server fixtures (one server per test session, started lazily on first use):

* ``oxigraph_endpoint`` -> :class:`servers.OxigraphServer` (``.query_url``, ``.update_url``, ``.store_url``)
* ``virtuoso_endpoint`` -> :class:`servers.VirtuosoServer` (``.query_url``, ``.update_url``,
  ``.user``, ``.password``, ``.isql(...)``)
* ``registry_endpoint`` -> :class:`servers.RegistryServer` (``.push_host``, ``.pull_host``, ``.researcher_auth()``,
  ``.station_auth(name)``): an OCI registry; mark its tests ``@pytest.mark.real_component("registry")``
* ``s3_endpoint`` -> :class:`servers.S3Server` (``.endpoint`` ``127.0.0.1:PORT``, ``.access_key``,
  ``.secret_key``): a moto S3 server; mark its tests ``@pytest.mark.real_component("s3")``

When a component is missing these fixtures skip, except under ``CI=true`` where they fail:
CI must exercise the real components.  Likewise, under ``CI=true`` a test marked
``@pytest.mark.real_component(...)`` that ends up skipped for any reason is reported as failed.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Protocol, TypeVar

import pytest
import servers


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where real components are mandatory."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_component(name: str) -> None:
    """Skip the requesting test if component *name* is unusable here (fail under CI)."""
    reason = servers.available(name)
    if reason is None:
        return
    message = f"real component {name!r} unavailable: {reason}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: real components must not be skipped)", pytrace=False)
    pytest.skip(message)


class _Closable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closable)


class Closing(Protocol):
    """The ``closing`` fixture's type."""

    def __call__(self, resource: _C, /) -> _C: ...


@pytest.fixture
def closing() -> Iterator[Closing]:
    """``closing(store)`` hands ``store`` back and closes it when the test ends. A store client left to the garbage
    collector warns of its unclosed sockets in whichever test runs when it is collected, failing that test."""
    opened: list[_Closable] = []

    def keep(resource: _C) -> _C:
        opened.append(resource)
        return resource
    yield keep
    for resource in reversed(opened):
        resource.close()


@pytest.fixture(scope="session")
def oxigraph_endpoint() -> Iterator[servers.OxigraphServer]:
    """A real Oxigraph server (empty on-disk store) shared by the whole session."""
    require_component("oxigraph")
    with servers.oxigraph_server() as server:
        yield server


@pytest.fixture(scope="session")
def virtuoso_endpoint() -> Iterator[servers.VirtuosoServer]:
    """A real Virtuoso 7 server (fresh database) shared by the whole session."""
    require_component("virtuoso")
    with servers.virtuoso_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[servers.S3Server]:
    """A real S3 API server (moto, in memory) shared by the whole session; use a fresh bucket per test."""
    require_component("s3")
    with servers.s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def registry_endpoint() -> Iterator[servers.RegistryServer]:
    """A real OCI registry (Debian's docker-registry, htpasswd): a writable endpoint for the researcher and a
    read-only one for the stations on one storage folder, shared by the session; use a fresh repository per test."""
    require_component("registry")
    with servers.registry_server() as server:
        yield server


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true, turn a skip of a ``real_component`` test into a failure."""
    report = yield
    marker = item.get_closest_marker("real_component")
    if report.skipped and marker is not None and in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        component = ", ".join(map(str, marker.args)) or "?"
        report.outcome = "failed"
        report.longrepr = (
            f"test needing real component ({component}) was skipped under CI=true, "
            f"which counts as a failure. Skip reason: {reason}"
        )
    return report


# --------------------------------------------------------------------------- container engines

import docker  # noqa: E402 - appended section; docker is a dependency of the project
import docker.errors  # noqa: E402


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A ``docker.DockerClient`` for the local engine (component "docker": skips, or fails under CI=true)."""
    require_component("docker")
    client = docker.from_env()
    yield client
    client.close()


#: the probe train (tests/fixtures/trains/probe): reports what it can do inside a runtime, see its probe.py
PROBE_TRAIN_DIR = os.path.join(os.path.dirname(__file__), "fixtures", "trains", "probe")
PROBE_TAG = "pht-test/probe:latest"


@pytest.fixture(scope="session")
def probe_image(docker_client: docker.DockerClient) -> tuple[str, str]:
    """``(tag, image ID)`` of the probe train image, built once per session from ``PROBE_TRAIN_DIR``.

    Needs the base image ``pht/python-base:bookworm`` (scripts/build-base-image.sh): without it the tests
    skip, or fail under CI=true where CI set-up builds it.
    """
    from pathlib import Path

    from station.images import BASE_IMAGE, BASE_IMAGE_HINT, build_train_image

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        message = f"base image {BASE_IMAGE} is missing: {BASE_IMAGE_HINT}"
        if in_ci():
            pytest.fail(f"{message} (CI=true: real components must not be skipped)", pytrace=False)
        pytest.skip(message)
    return PROBE_TAG, build_train_image(Path(PROBE_TRAIN_DIR), PROBE_TAG, docker_client)


# --------------------------------------------------------------------------- the central service's store

import central_store  # noqa: E402 - appended section


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module marked ``central_stores`` runs on every kind of store (tests/central_store.py), or on the kinds the
    marker names, grouped by module; a test marked ``central_stores_except(kinds, reason=...)`` leaves those
    kinds out."""
    marker = metafunc.definition.get_closest_marker("central_stores")
    if marker is None:
        return
    excepted = metafunc.definition.get_closest_marker("central_stores_except")
    left_out = set(excepted.args) if excepted is not None else set()
    if excepted is not None and not excepted.kwargs.get("reason"):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: central_stores_except needs its reason=")
    kinds = [pytest.param(kind, id=kind, marks=() if kind == "embedded" else pytest.mark.real_component(kind))
             for kind in marker.args or central_store.KINDS if kind not in left_out]
    metafunc.parametrize("central_store_kind", kinds, indirect=True, scope="module")


@pytest.fixture(scope="module", autouse=True)
def central_store_kind(request: pytest.FixtureRequest) -> Iterator[central_store.StoreKind]:
    """The kind of store the module's central services run on (``embedded`` unless the module is marked
    ``central_stores``); a module-scoped fixture that builds a service must request it, to be rebuilt per kind."""
    kind: central_store.StoreKind = getattr(request, "param", "embedded")
    if kind != "embedded":
        require_component(kind)
    central_store.select(kind)
    yield kind
    central_store.select("embedded")


@pytest.fixture(scope="session", autouse=True)
def _central_store_servers() -> Iterator[None]:
    """Stops the servers the central services' stores were opened on, at the session's end."""
    yield
    central_store.stop_servers()

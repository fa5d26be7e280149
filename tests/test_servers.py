"""Smoke tests of the real SPARQL servers started by tests/servers.py, through SPARQLWrapper."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import urllib.error
import uuid
from pathlib import Path
from typing import Any

import pytest
import servers
from SPARQLWrapper import DIGEST, JSON, POST, SPARQLWrapper
from SPARQLWrapper.SPARQLExceptions import EndPointInternalError

EX = "http://example.org/pht-test/"


def _client(endpoint: servers.OxigraphServer | servers.VirtuosoServer, *, timeout: int = 10) -> SPARQLWrapper:
    """A SPARQLWrapper set up for *endpoint*: queries by GET, updates by form-encoded POST."""
    client = SPARQLWrapper(endpoint.query_url, updateEndpoint=endpoint.update_url)
    client.setReturnFormat(JSON)  # also makes SPARQLWrapper send an Accept header (Virtuoso needs one)
    client.setTimeout(timeout)
    if isinstance(endpoint, servers.VirtuosoServer):
        client.setHTTPAuth(DIGEST)
        client.setCredentials(endpoint.user, endpoint.password)
    return client


def _update(client: SPARQLWrapper, update: str) -> None:
    client.setMethod(POST)  # form-encoded "update=" body, never application/sparql-update by GET
    client.setQuery(update)
    assert client.isSparqlUpdateRequest()
    result = client.query()
    try:
        assert 200 <= result.response.status < 300
    finally:
        result.response.close()


def _query(client: SPARQLWrapper, query: str) -> Any:
    client.setMethod("GET")
    client.setQuery(query)
    return client.queryAndConvert()


def _insert_select_ask(endpoint: servers.OxigraphServer | servers.VirtuosoServer) -> None:
    graph = f"{EX}graph/{uuid.uuid4()}"
    client = _client(endpoint)
    _update(
        client,
        f'INSERT DATA {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> "héllo"@en, 42 . }} }}',
    )

    result = _query(client, f"SELECT ?o WHERE {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> ?o }} }} ORDER BY ?o")
    assert result["head"]["vars"] == ["o"]
    bindings = result["results"]["bindings"]
    values = sorted((b["o"]["value"], b["o"].get("xml:lang"), b["o"].get("datatype")) for b in bindings)
    assert values == [
        ("42", None, "http://www.w3.org/2001/XMLSchema#integer"),
        ("héllo", "en", None),
    ]

    assert _query(client, f'ASK {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> "héllo"@en }} }}')["boolean"] is True
    assert _query(client, f'ASK {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> "absent" }} }}')["boolean"] is False

    _update(client, f"DELETE DATA {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> 42 }} }}")
    assert _query(client, f"ASK {{ GRAPH <{graph}> {{ <{EX}s> <{EX}p> 42 }} }}")["boolean"] is False


@pytest.mark.real_component("oxigraph")
def test_oxigraph_insert_select_ask(oxigraph_endpoint: servers.OxigraphServer) -> None:
    assert oxigraph_endpoint.query_url.startswith("http://127.0.0.1:")
    assert oxigraph_endpoint.store_url == oxigraph_endpoint.base_url + "/store"
    _insert_select_ask(oxigraph_endpoint)


@pytest.mark.real_component("virtuoso")
def test_virtuoso_insert_select_ask(virtuoso_endpoint: servers.VirtuosoServer) -> None:
    assert virtuoso_endpoint.query_url.startswith("http://127.0.0.1:")
    assert virtuoso_endpoint.update_url.endswith("/sparql-auth")
    _insert_select_ask(virtuoso_endpoint)


@pytest.mark.real_component("virtuoso")
def test_virtuoso_isql(virtuoso_endpoint: servers.VirtuosoServer) -> None:
    assert virtuoso_endpoint.isql("SELECT 40 + 2").split() == ["42"]
    with pytest.raises(RuntimeError, match="SQ200"):
        virtuoso_endpoint.isql("SELECT no_such_column")


@pytest.mark.real_component("virtuoso")
def test_virtuoso_rejects_anonymous_update(virtuoso_endpoint: servers.VirtuosoServer) -> None:
    """Updates need /sparql-auth: the anonymous /sparql endpoint refuses them (SR186)."""
    client = SPARQLWrapper(virtuoso_endpoint.query_url)
    client.setMethod(POST)
    client.setQuery(f"INSERT DATA {{ GRAPH <{EX}anon> {{ <{EX}s> <{EX}p> <{EX}o> }} }}")
    with pytest.raises(EndPointInternalError, match="SR186"):
        client.query()


def _assert_down_quickly(endpoint: servers.OxigraphServer | servers.VirtuosoServer) -> None:
    client = _client(endpoint, timeout=5)
    started = time.monotonic()
    with pytest.raises(urllib.error.URLError) as info:
        _query(client, "ASK {}")
    elapsed = time.monotonic() - started
    assert isinstance(info.value.reason, ConnectionRefusedError), info.value
    assert elapsed < 1.0, f"connection refusal took {elapsed:.2f} s"


def _skip_unless_available(name: str) -> None:
    # Under CI=true the conftest hook turns this skip into a failure (real_component marker).
    reason = servers.available(name)
    if reason is not None:
        pytest.skip(reason)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.real_component("oxigraph")
def test_stopped_oxigraph_refuses_connections_quickly() -> None:
    _skip_unless_available("oxigraph")
    with servers.oxigraph_server() as endpoint:
        assert isinstance(_query(_client(endpoint), "ASK { ?s ?p ?o }")["boolean"], bool)
    assert not endpoint.location.parent.exists(), "temporary directory left behind"
    assert not _pid_alive(endpoint.pid), "server process left behind"
    _assert_down_quickly(endpoint)


@pytest.mark.real_component("virtuoso")
def test_stopped_virtuoso_refuses_connections_quickly() -> None:
    _skip_unless_available("virtuoso")
    with servers.virtuoso_server() as endpoint:
        assert isinstance(_query(_client(endpoint), "ASK { ?s ?p ?o }")["boolean"], bool)
    assert not endpoint.directory.exists(), "temporary directory left behind"
    assert not _pid_alive(endpoint.pid), "server process left behind"
    _assert_down_quickly(endpoint)


@pytest.mark.real_component("oxigraph")
def test_start_failure_reports_log_tail_and_cleans_up(monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_unless_available("oxigraph")
    created: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(prefix: str) -> str:
        created.append(real_mkdtemp(prefix=prefix))
        return created[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused, binding fails
        monkeypatch.setattr(servers, "free_port", lambda: busy.getsockname()[1])
        with pytest.raises(servers.ServerStartError, match="(?s)exited with code 1.*Address already in use"):
            with servers.oxigraph_server(attempts=2):
                pytest.fail("oxigraph started on a port that is already bound")
    assert len(created) == 2  # one per attempt
    assert not any(Path(d).exists() for d in created), "temporary directory left behind"


def test_available_rejects_unknown_component() -> None:
    with pytest.raises(ValueError, match="unknown component"):
        servers.available("no-such-server")

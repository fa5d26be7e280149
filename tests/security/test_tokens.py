"""Tokens and defaults (issue 13, item 6), each promise played by an attacker:

* a JWKS configuration without audience and issuer does not start, so no provider token issued for another
  client of the realm is ever accepted;
* station tokens are short-lived (a 30-day one, as ``pht setup`` used to write, is refused) and revocable:
  one token by its id, or all of a station's issued before a cut-off, refused within seconds, also by another
  instance of the service on the same store; a running agent renews its own and hands it to its MPU's file;
* the central ``/metrics`` needs an operator's token or the metrics token, and names no train or researcher;
* the service does not start without a store unless told to keep everything in memory.

Every refusal is a 4xx (or an exit status) with one sentence, writes nothing, and the service keeps serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
from central_store import new_central_store
import pytest
from api_helpers import ALICE, OPS, SETTINGS, admin, register_world, service, signed, station
from central_thread import central_service
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from pyoxigraph import Literal, NamedNode, Quad

from client import CentralClient
from graph_store import CENTRAL_GRAPH, DEFAULT_BASE_IRI, PHT, RDF_TYPE, XSD, ChangeSet, EmbeddedStore, GraphStore
from orchestrator.app import create_app
from orchestrator.auth import AuthError, TokenVerifier, issue_token
from orchestrator.naming import Iris
from orchestrator.principal import Role
from orchestrator.revocations import Revocations, RevocationSet
from orchestrator.settings import DEMO_SECRET, STATION_TOKEN_TTL_S, Settings, SettingsError
from station.token import TokenRenewal

REPO = Path(__file__).resolve().parents[2]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def station_token(sid: str, **kwargs: Any) -> str:
    return issue_token(DEMO_SECRET, subject=f"station-{sid}", roles=[Role.STATION], station=sid, **kwargs)


def revocations(store: GraphStore) -> int:
    return len(store.quads(None, RDF_TYPE, PHT.TokenRevocation, CENTRAL_GRAPH))


def one_sentence(response: httpx.Response) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, response.text
    return detail


# -- JWKS mode requires audience and issuer -------------------------------------------------------------------


@pytest.fixture()
def jwks() -> Iterator[tuple[str, rsa.RSAPrivateKey]]:
    """A real JWKS endpoint on 127.0.0.1 with one RS256 key (kid ``k1``)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = json.dumps({"keys": [{**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1",
                                 "use": "sig", "alg": "RS256"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/certs", key
    finally:
        httpd.shutdown()
        httpd.server_close()


def provider_token(key: rsa.RSAPrivateKey, *, iss: str, aud: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "mallory", "iss": iss, "aud": aud, "iat": now, "exp": now + 300,
                       "realm_access": {"roles": ["operator"]}}, key, algorithm="RS256", headers={"kid": "k1"})


@pytest.mark.parametrize("missing", ["PHT_JWT_ISSUER", "PHT_JWT_AUDIENCE"])
def test_a_jwks_configuration_without_audience_or_issuer_does_not_start(
        jwks: tuple[str, rsa.RSAPrivateKey], missing: str) -> None:
    url, _ = jwks
    env = {"PHT_JWKS_URL": url, "PHT_JWT_ISSUER": "https://idp/realms/pht", "PHT_JWT_AUDIENCE": "pht-central",
           "PHT_STORE_IN_MEMORY": "1"}
    del env[missing]
    with pytest.raises(SettingsError, match=missing):
        Settings.from_env(env)
    done = subprocess.run([sys.executable, "-m", "orchestrator"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), **env})
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and missing in done.stderr, done.stderr


def test_a_provider_token_for_another_client_or_issuer_is_refused(jwks: tuple[str, rsa.RSAPrivateKey]) -> None:
    url, key = jwks
    verifier = TokenVerifier(Settings.from_env({"PHT_JWKS_URL": url, "PHT_JWT_ISSUER": "https://idp/realms/pht",
                                                "PHT_JWT_AUDIENCE": "pht-central"}))
    assert verifier.verify(provider_token(key, iss="https://idp/realms/pht", aud="pht-central")).subject == "mallory"
    with pytest.raises(AuthError, match="audience is not accepted"):
        verifier.verify(provider_token(key, iss="https://idp/realms/pht", aud="wiki"))
    with pytest.raises(AuthError, match="issuer is not accepted"):
        verifier.verify(provider_token(key, iss="https://idp/realms/other", aud="pht-central"))


# -- station tokens are short-lived ------------------------------------------------------------------------------


def test_a_long_lived_station_token_is_refused() -> None:
    month = station_token("aachen", ttl_s=30 * 86400)  # what pht setup used to hand out
    with service() as client:
        r = client.get("/api/stations/aachen/work", headers=bearer(month))
        assert r.status_code == 401 and "at most" in one_sentence(r)
        assert client.get("/api/stations/aachen/work", headers=bearer(station_token("aachen"))).status_code == 200
    claims = jwt.decode(station_token("aachen"), options={"verify_signature": False})
    assert claims["jti"] and claims["exp"] - claims["iat"] <= STATION_TOKEN_TTL_S <= 86400


def test_pht_token_issue_writes_short_lived_station_tokens_only() -> None:
    env = {**os.environ, "PHT_DEMO": "1"}
    pht = [sys.executable, "-m", "pht_cli.main", "token", "issue", "--sub", "station-aachen", "--role", "station",
           "--station", "aachen"]
    refused = subprocess.run([*pht, "--ttl", str(30 * 86400)], cwd=REPO, capture_output=True, text=True, env=env,
                             timeout=60)
    assert refused.returncode != 0 and "at most" in refused.stderr + refused.stdout
    done = subprocess.run(pht, cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    claims = jwt.decode(done.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == STATION_TOKEN_TTL_S and claims["jti"]


# -- revocation ----------------------------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_and_others_keep_working() -> None:
    stolen, other = station_token("aachen"), station_token("aachen")
    store = new_central_store()
    with service(store) as client:
        assert client.get("/api/stations/aachen/work", headers=bearer(stolen)).status_code == 200
        jti = jwt.decode(stolen, options={"verify_signature": False})["jti"]
        r = client.post("/api/tokens/revocations", headers=OPS, json={"token_id": jti, "reason": "in a CI log"})
        assert r.status_code == 201, r.text
        refused = client.get("/api/stations/aachen/work", headers=bearer(stolen))
        assert refused.status_code == 401 and one_sentence(refused) == "token has been revoked"
        assert client.get("/api/stations/aachen/work", headers=bearer(other)).status_code == 200
        assert client.get("/api/trains", headers=ALICE).status_code == 200
        assert revocations(store) == 1
        # the web view verifies with the same revocations: a revoked operator token opens no page
        ops = issue_token(DEMO_SECRET, subject="ops-2", roles=[Role.OPERATOR])
        assert client.get("/ui/trains", headers=bearer(ops)).status_code == 200
        jti = jwt.decode(ops, options={"verify_signature": False})["jti"]
        assert client.post("/api/tokens/revocations", headers=OPS, json={"token_id": jti}).status_code == 201
        assert client.get("/ui/trains", headers=bearer(ops)).status_code == 401
        assert client.get("/metrics", headers=bearer(ops)).status_code == 401


def test_revoking_a_station_refuses_all_its_earlier_tokens_and_spares_new_ones() -> None:
    with service() as client:
        before = {"station": station("aachen"), "admin": admin("aachen")}
        for headers in before.values():
            assert client.get("/api/stations/aachen/work", headers=headers).status_code == 200
        r = client.post("/api/tokens/revocations", headers=OPS, json={"station": "aachen", "reason": "host compromised"})
        assert r.status_code == 201 and r.json()["station"] == "aachen", r.text
        for headers in before.values():
            refused = client.get("/api/stations/aachen/work", headers=headers)
            assert refused.status_code == 401 and "station aachen" in one_sentence(refused)
            renew = client.post("/api/tokens/renew", headers=headers)
            assert renew.status_code in (401, 403), "a revoked token cannot renew itself"
        assert client.get("/api/stations/cologne/work", headers=station("cologne")).status_code == 200
        time.sleep(1.1)  # a cut-off is at least as late as the second it was recorded in (iat has whole seconds)
        assert client.get("/api/stations/aachen/work", headers=bearer(station_token("aachen"))).status_code == 200


@contextmanager
def revoked_through_another_instance(store: GraphStore) -> Iterator[tuple[TestClient, str]]:
    """Two instances of the service on ``store``: a station token the first accepted, then revoked through the
    second; yields the first instance's client and the token."""
    stolen = station_token("aachen")
    with TestClient(create_app(SETTINGS, store=store)) as reader, TestClient(create_app(SETTINGS, store=store)) as ops:
        register_world(reader)
        assert reader.get("/api/stations/aachen/work", headers=bearer(stolen)).status_code == 200
        jti = jwt.decode(stolen, options={"verify_signature": False})["jti"]
        assert ops.post("/api/tokens/revocations", headers=OPS, json={"token_id": jti}).status_code == 201
        yield reader, stolen


def test_a_revocation_recorded_elsewhere_takes_effect_within_seconds() -> None:
    """Two instances of the service on one store: the one that did not record the revocation refuses the token
    within its cache time (``PHT_REVOCATION_CACHE_S``, 2 s by default, at most 5)."""
    with revoked_through_another_instance(new_central_store()) as (reader, stolen):
        start = time.monotonic()
        while reader.get("/api/stations/aachen/work", headers=bearer(stolen)).status_code == 200:
            assert time.monotonic() - start < 5, "the revocation did not take effect within 5 s"
            time.sleep(0.1)
        assert time.monotonic() - start <= SETTINGS.revocation_cache_s + 0.5


def test_on_a_store_only_the_service_writes_a_revocation_takes_effect_at_the_next_request() -> None:
    """The embedded store: every write passes the store object's commit listeners, so the verifier of another app
    on the same store reads the revocations again at once instead of after its cache time."""
    with revoked_through_another_instance(EmbeddedStore()) as (reader, stolen):
        refused = reader.get("/api/stations/aachen/work", headers=bearer(stolen))
        assert refused.status_code == 401 and one_sentence(refused) == "token has been revoked"


def test_the_revocations_are_read_again_only_after_a_write_that_may_change_them() -> None:
    """No request waits for a read of the revocations while nothing changed them (it cost tens of ms every
    2 s on the event loop); a write of a revocation, or of a station's identifier, is read at the next check."""
    store = EmbeddedStore()
    cache = Revocations(store, Iris(DEFAULT_BASE_IRI), cache_s=0)  # 0: the old rule read at every check
    reads = 0
    read = cache._read

    def counting(jti: str | None, station: str | None) -> RevocationSet:
        nonlocal reads
        reads += 1
        return read(jti, station)

    cache._read = counting  # type: ignore[method-assign]  # counts the store reads
    ex = "https://example.org/"
    token = {"jti": "jti-1"}
    cache.check(token), cache.check(token)
    assert reads == 1
    assert cache.check({}) is None and reads == 1, "a token no revocation can name needs no read"
    store.apply(ChangeSet(insert=[Quad(NamedNode(ex + "train"), NamedNode(ex + "state"), NamedNode(ex + "running"),
                                       CENTRAL_GRAPH)]))
    cache.check(token)
    assert reads == 1, "a write that cannot change the revocations made the verifier read them again"
    revocation = NamedNode(ex + "revocation")
    recorded = [Quad(revocation, RDF_TYPE, PHT.TokenRevocation, CENTRAL_GRAPH),
                Quad(revocation, PHT.revokesToken, Literal("jti-1"), CENTRAL_GRAPH),
                Quad(revocation, PHT.revokedAt, Literal("2026-12-04T10:00:00Z", datatype=XSD.dateTime), CENTRAL_GRAPH),
                Quad(revocation, PHT.revokedBy, Literal("ops"), CENTRAL_GRAPH)]
    store.apply(ChangeSet(insert=recorded))
    assert cache.check(token) == "token has been revoked" and reads == 2
    store.apply(ChangeSet(delete=recorded))
    assert cache.check(token) is None and reads == 3


@pytest.mark.parametrize(("headers", "body", "status"), [
    (ALICE, {"station": "aachen"}, 403),
    (None, {"station": "aachen"}, 403),  # the station itself
    (OPS, {}, 400),
    (OPS, {"station": "aachen", "token_id": "x"}, 400),
    (OPS, {"token_id": "x", "issued_before": "2026-01-01T00:00:00Z"}, 400),
    (OPS, {"station": "nowhere"}, 404),
    (OPS, {"station": "aachen", "issued_before": "2999-01-01T00:00:00Z"}, 422),
    (OPS, {"station": "aachen", "issued_before": "2026-01-01T00:00:00"}, 422),  # no time zone
    (OPS, {"station": "aachen", "reason": "x" * 501}, 422),
])
def test_revocation_refusals_write_nothing(headers: dict[str, str] | None, body: dict[str, Any], status: int) -> None:
    store = new_central_store()
    with service(store) as client:
        r = client.post("/api/tokens/revocations", headers=headers or station("aachen"), json=body)
        assert r.status_code == status, r.text
        one_sentence(r)
        assert revocations(store) == 0
        assert client.get("/api/stations/aachen/work", headers=station("aachen")).status_code == 200


# -- renewal -------------------------------------------------------------------------------------------------------


def test_a_station_renews_its_own_token_and_nobody_else_can() -> None:
    with service() as client:
        r = client.post("/api/tokens/renew", headers=station("aachen"))
        assert r.status_code == 200, r.text
        fresh = r.json()["token"]
        claims = jwt.decode(fresh, options={"verify_signature": False})
        assert (claims["roles"], claims["station"]) == (["station"], "aachen")
        assert claims["exp"] - claims["iat"] == STATION_TOKEN_TTL_S
        assert client.get("/api/stations/aachen/work", headers=bearer(fresh)).status_code == 200
        assert client.get("/api/stations/cologne/work", headers=bearer(fresh)).status_code == 403
        for headers in (ALICE, admin("aachen"), OPS):
            assert client.post("/api/tokens/renew", headers=headers).status_code == 403


def test_a_running_agent_renews_its_token_into_the_mpu_token_file(tmp_path: Path) -> None:
    """An agent's token at half its life is renewed and written where the MPU reads it (PHT_MPU_TOKEN_FILE);
    the agent's client goes on with the new token (the old one, revoked, no longer matters)."""
    token_file = tmp_path / "station.token"
    with central_service() as central:
        with CentralClient(central.url, OPS["Authorization"][7:]) as ops:
            ops.register_station({"id": "aachen", "title": "a", "owner": "h", "public_keys": [
                "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEADw+5Be8pE6f1TCQ5ILUvhMbG4vSCtzKjLvFYye8Qd6M=\n"
                "-----END PUBLIC KEY-----\n"]})
        short = station_token("aachen", ttl_s=60)  # issued once the service is up: its life starts now
        token_file.write_text(short)
        with CentralClient(central.url, short) as agent_client:
            skipped = [0.0]  # the agent's clock, moved on instead of waiting (a loaded machine stays in time)
            renewal = TokenRenewal(agent_client, short, token_file, clock=lambda: time.time() + skipped[0])
            assert not renewal.renew_if_due()  # not yet half through its life
            skipped[0] = 31.0
            assert renewal.renew_if_due()
            renewed = token_file.read_text().strip()
            assert renewed != short and (token_file.stat().st_mode & 0o777) == 0o600
            jti = jwt.decode(short, options={"verify_signature": False})["jti"]
            with CentralClient(central.url, OPS["Authorization"][7:]) as ops:
                ops.revoke_tokens({"token_id": jti})
            assert agent_client.work("aachen") == []  # the agent's client uses the renewed token
        r = httpx.get(f"{central.url}/api/stations/aachen/work", headers=bearer(short), timeout=10)
        assert r.status_code == 401 and r.json()["detail"] == "token has been revoked"


# -- metrics -------------------------------------------------------------------------------------------------------


def test_the_central_metrics_need_an_operator_or_the_metrics_token() -> None:
    metrics_token = "m" * 40
    settings = Settings(jwt_secret=DEMO_SECRET, demo=True, store_in_memory=True, metrics_token=metrics_token)
    with TestClient(create_app(settings, store=new_central_store())) as client:
        register_world(client)
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        one_sentence(anonymous)
        for headers in (ALICE, station("aachen"), admin("aachen")):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 403 and "operator" in one_sentence(r)
        assert client.get("/metrics", headers=bearer("m" * 39 + "x")).status_code == 401
        for headers in (OPS, bearer(metrics_token)):
            r = client.get("/metrics", headers=headers)
            assert r.status_code == 200 and "pht_trains" in r.text
        assert client.get("/api/trains", headers=bearer(metrics_token)).status_code == 401, "it reads metrics only"


def test_the_central_metrics_name_no_train_and_no_researcher() -> None:
    with service() as client:
        train = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "count", "parameters": {"MIN": "1"}}))
        assert train.status_code == 201, train.text
        tid = train.json()["id"]
        client.get(f"/api/trains/{tid}", headers=ALICE)
        text = client.get("/metrics", headers=OPS).text
        labels = " ".join(line.split("}")[0] for line in text.splitlines() if "{" in line and not line.startswith("#"))
        assert tid not in text and "alice" not in labels


# -- the store ---------------------------------------------------------------------------------------------------


def test_the_service_does_not_start_without_a_store_unless_told_to_keep_it_in_memory() -> None:
    with pytest.raises(SettingsError, match="PHT_STORE_PATH"):
        create_app(Settings(jwt_secret=DEMO_SECRET, demo=True))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "PHT_DEMO": "1", "PHT_JWT_SECRET": DEMO_SECRET}
    done = subprocess.run([sys.executable, "-m", "orchestrator"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "PHT_STORE_PATH" in done.stderr and "PHT_STORE_IN_MEMORY=1" in done.stderr
    with TestClient(create_app(Settings(jwt_secret=DEMO_SECRET, demo=True, store_in_memory=True))) as client:
        assert client.get("/health").json() == {"status": "ok"}

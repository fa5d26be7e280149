"""Tokens: local HS256 tokens, provider tokens from a REAL JWKS endpoint (stdlib HTTP server on 127.0.0.1),
the attacks a verifier must refuse, and the FastAPI dependencies (401 / 403 / 200)."""

# No ``from __future__ import annotations``: the routes below annotate with local dependencies.

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import Depends, FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from orchestrator.auth import AuthError, TokenVerifier, issue_token, principal_dependency, require_roles
from orchestrator.principal import Principal, Role
from orchestrator.settings import Settings
from orchestrator.verified_tokens import VerifiedTokens

with warnings.catch_warnings():
    # Starlette asks for the ``httpx2`` package and warns (an error under our filterwarnings) with ``httpx``.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

SECRET = "unit-test-secret-0123456789abcdef-xyz"
OTHER_SECRET = "another-secret-0123456789abcdef-uvw"
CLIENT = "pht-central"


# --- helpers ------------------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A JWT assembled by hand (PyJWT refuses to produce the forgeries we need); ``sign(bytes) -> bytes``."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = b64url(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def fresh_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def local_verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, **settings))


@dataclass
class JwksServer:
    """A real JWKS endpoint: ``keys`` is served as ``{"keys": [...]}`` at ``url``; ``hits`` counts fetches."""

    url: str
    issuer: str
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    garbage: bool = False


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def enc_key() -> rsa.RSAPublicKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()


@pytest.fixture
def jwks(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, enc_key: rsa.RSAPublicKey
) -> Iterator[JwksServer]:
    """A Keycloak-like JWKS (an RS256 signing key, an ES256 signing key, an RSA-OAEP encryption key)."""
    keys = [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa-1", "use": "sig", "alg": "RS256"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1", "use": "sig", "alg": "ES256"},
        {**RSAAlgorithm.to_jwk(enc_key, as_dict=True), "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP"},
    ]
    state: list[JwksServer] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            server = state[0]
            server.hits += 1
            body = b"<html>not json" if server.garbage else json.dumps({"keys": server.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of the base class)
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = httpd.server_address[1]
    base = f"http://127.0.0.1:{port}"
    issuer = f"{base}/realms/pht"
    state.append(JwksServer(url=f"{issuer}/protocol/openid-connect/certs", issuer=issuer, keys=keys))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def keycloak_claims(issuer: str, **extra: Any) -> dict[str, Any]:
    """Claims shaped like a Keycloak access token for client ``pht-central``."""
    now = int(time.time())
    return {
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "iss": issuer,
        "aud": [CLIENT, "account"],
        "sub": "f7d4c1e2-0000-4000-8000-000000000001",
        "typ": "Bearer",
        "azp": CLIENT,
        "scope": "openid profile email",
        "preferred_username": "alice",
        "realm_access": {"roles": ["offline_access", "uma_authorization", "default-roles-pht", "researcher"]},
        "resource_access": {
            CLIENT: {"roles": ["operator"]},
            "account": {"roles": ["manage-account", "view-profile", "station-admin"]},
        },
        **extra,
    }


def provider_verifier(server: JwksServer, **settings: Any) -> TokenVerifier:
    options: dict[str, Any] = {"jwks_url": server.url, "jwt_issuer": server.issuer, "jwt_audience": CLIENT}
    return TokenVerifier(Settings(**{**options, **settings}), jwks_timeout_s=2.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- issuing ------------------------------------------------------------------------------------------


def test_local_token_round_trip() -> None:
    token = issue_token(SECRET, subject="st-7", roles=[Role.STATION, Role.RESEARCHER], station="st-7")
    principal = local_verifier().verify(token)
    assert principal == Principal(subject="st-7", roles=frozenset({Role.STATION, Role.RESEARCHER}), station="st-7")


def test_issued_claims() -> None:
    before = int(time.time())
    token = issue_token(SECRET, subject="bob", roles=["operator"], ttl_s=120, issuer="https://pht", audience="pht")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert set(claims) == {"sub", "roles", "iat", "exp", "jti", "iss", "aud"}
    assert len(claims["jti"]) == 32 and claims["jti"] != jwt.decode(
        issue_token(SECRET, subject="bob", roles=["operator"]), options={"verify_signature": False})["jti"]
    assert claims["roles"] == ["operator"]
    assert before <= claims["iat"] <= before + 2 and claims["exp"] == claims["iat"] + 120
    assert (claims["iss"], claims["aud"]) == ("https://pht", "pht")
    assert "station" not in claims


def test_issuer_and_audience_are_checked_on_local_tokens_too() -> None:
    verifier = local_verifier(jwt_issuer="https://pht", jwt_audience="pht")
    good = issue_token(SECRET, subject="bob", roles=[Role.OPERATOR], issuer="https://pht", audience="pht")
    assert verifier.verify(good).subject == "bob"
    with pytest.raises(AuthError, match="issuer is not accepted"):
        verifier.verify(issue_token(SECRET, subject="bob", roles=[Role.OPERATOR], issuer="https://x", audience="pht"))
    with pytest.raises(AuthError, match="lacks the required claim 'iss'"):
        verifier.verify(issue_token(SECRET, subject="bob", roles=[Role.OPERATOR], audience="pht"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"roles": [Role.STATION]}, "needs a station"),
        ({"roles": [Role.STATION_ADMIN, Role.RESEARCHER]}, "needs a station"),
        ({"roles": ["admin"]}, "unknown role 'admin'"),
        ({"roles": []}, "at least one role"),
        ({"roles": [Role.OPERATOR], "ttl_s": 0}, "ttl_s must be positive"),
        ({"roles": [Role.OPERATOR], "subject": ""}, "subject"),
    ],
)
def test_issue_refuses(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        issue_token(SECRET, **{"subject": "x", **kwargs})


def test_issue_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        issue_token("short", subject="x", roles=[Role.OPERATOR])


# --- local tokens refused -----------------------------------------------------------------------------


def test_expired_token() -> None:
    token = jwt.encode(fresh_claims(roles=["researcher"], exp=int(time.time()) - 120), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="expired"):
        local_verifier().verify(token)


def test_small_clock_skew_is_tolerated() -> None:
    token = jwt.encode(fresh_claims(roles=["researcher"], exp=int(time.time()) - 5), SECRET, algorithm="HS256")
    assert local_verifier().verify(token).subject == "alice"


def test_wrong_secret() -> None:
    token = issue_token(OTHER_SECRET, subject="alice", roles=[Role.OPERATOR])
    with pytest.raises(AuthError, match="signature"):
        local_verifier().verify(token)


def test_tampered_payload() -> None:
    token = issue_token(SECRET, subject="alice", roles=[Role.RESEARCHER])
    header, _, signature = token.split(".")
    forged_claims = fresh_claims(roles=["operator"])
    forged = f"{header}.{b64url(json.dumps(forged_claims).encode())}.{signature}"
    with pytest.raises(AuthError, match="signature"):
        local_verifier().verify(forged)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(alg: str) -> None:
    token = hand_made_token({"alg": alg, "typ": "JWT"}, fresh_claims(roles=["operator"]))
    with pytest.raises(AuthError, match="not accepted"):
        local_verifier().verify(token)


def test_other_hmac_algorithms_are_refused() -> None:
    token = jwt.encode(fresh_claims(roles=["operator"]), SECRET + SECRET, algorithm="HS512")
    with pytest.raises(AuthError, match="'HS512' is not accepted"):
        local_verifier().verify(token)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "a.b", "....", "x" * 20_000, "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "é.é.é"],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(AuthError):
        local_verifier().verify(token)


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_required_claims(missing: str) -> None:
    claims = fresh_claims(roles=["operator"])
    del claims[missing]
    with pytest.raises(AuthError, match=f"'{missing}'"):
        local_verifier().verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_token_from_the_future_is_refused() -> None:
    claims = fresh_claims(roles=["operator"], nbf=int(time.time()) + 3600)
    with pytest.raises(AuthError, match="not yet valid"):
        local_verifier().verify(jwt.encode(claims, SECRET, algorithm="HS256"))


# --- roles and station --------------------------------------------------------------------------------


def test_unknown_role_strings_are_ignored() -> None:
    token = jwt.encode(fresh_claims(roles=["admin", "researcher", "superuser"]), SECRET, algorithm="HS256")
    assert local_verifier().verify(token).roles == frozenset({Role.RESEARCHER})


@pytest.mark.parametrize(
    "claims",
    [
        {"roles": ["admin", "offline_access"]},
        {"roles": []},
        {},
        {"realm_access": {"roles": ["uma_authorization"]}},
        {"resource_access": {"some-other-client": {"roles": ["operator"]}}},
    ],
)
def test_token_without_platform_role(claims: dict[str, Any]) -> None:
    token = jwt.encode(fresh_claims(**claims), SECRET, algorithm="HS256")
    with_audience = jwt.encode(fresh_claims(aud=CLIENT, **claims), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="token grants no platform role"):
        local_verifier(jwt_audience=CLIENT).verify(with_audience)
    with pytest.raises(AuthError, match="token grants no platform role"):
        local_verifier().verify(token)


@pytest.mark.parametrize("roles", ["operator", {"operator": True}, ["operator", 3]])
def test_roles_claim_must_be_a_list_of_strings(roles: Any) -> None:
    token = jwt.encode(fresh_claims(roles=roles), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="'roles' must be a list of strings"):
        local_verifier().verify(token)


def test_roles_are_the_union_of_all_role_claims() -> None:
    claims = fresh_claims(
        aud=CLIENT,
        roles=["researcher"],
        realm_access={"roles": ["operator", "offline_access"]},
        resource_access={CLIENT: {"roles": ["station-admin"]}, "account": {"roles": ["station"]}},
        station="st-1",
    )
    principal = local_verifier(jwt_audience=CLIENT).verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert principal.roles == frozenset({Role.RESEARCHER, Role.OPERATOR, Role.STATION_ADMIN})


def test_client_roles_need_a_configured_audience() -> None:
    claims = fresh_claims(resource_access={CLIENT: {"roles": ["operator"]}})
    with pytest.raises(AuthError, match="no platform role"):
        local_verifier().verify(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("role", ["station", "station-admin"])
def test_station_roles_need_a_station(role: str) -> None:
    without = jwt.encode(fresh_claims(roles=[role]), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="names no station"):
        local_verifier().verify(without)
    with_station = jwt.encode(fresh_claims(roles=[role], station="st-9"), SECRET, algorithm="HS256")
    assert local_verifier().verify(with_station).station == "st-9"


@pytest.mark.parametrize("station", ["", 42, ["st-1"]])
def test_station_claim_must_be_a_non_empty_string(station: Any) -> None:
    token = jwt.encode(fresh_claims(roles=["station"], station=station), SECRET, algorithm="HS256")
    with pytest.raises(AuthError, match="'station'"):
        local_verifier().verify(token)


# --- provider tokens from a real JWKS -----------------------------------------------------------------


def test_keycloak_rs256_token(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    principal = provider_verifier(jwks).verify(token)
    assert principal.subject == "f7d4c1e2-0000-4000-8000-000000000001"
    # realm role researcher + client role operator; the account client's station-admin is not ours
    assert principal.roles == frozenset({Role.RESEARCHER, Role.OPERATOR})
    assert principal.station is None


def test_es256_token(jwks: JwksServer, ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert provider_verifier(jwks).verify(token).roles == frozenset({Role.RESEARCHER, Role.OPERATOR})


def test_jwks_keys_are_cached(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = provider_verifier(jwks)
    for _ in range(3):
        token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
        verifier.verify(token)
    assert jwks.hits == 1


def test_unknown_kid(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "rotated-away"})
    with pytest.raises(AuthError, match="key id is unknown"):
        provider_verifier(jwks).verify(token)


def test_made_up_kids_do_not_flood_the_provider(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = provider_verifier(jwks)
    for n in range(5):
        token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": f"made-up-{n}"})
        with pytest.raises(AuthError, match="key id is unknown"):
            verifier.verify(token)
    assert jwks.hits == 1


def test_missing_kid(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256")
    with pytest.raises(AuthError, match="no key id"):
        provider_verifier(jwks).verify(token)


def test_encryption_key_cannot_verify(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "enc-1"})
    with pytest.raises(AuthError, match="key id is unknown"):
        provider_verifier(jwks).verify(token)


def test_token_signed_by_another_key_with_a_known_kid(jwks: JwksServer) -> None:
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(keycloak_claims(jwks.issuer), attacker, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match="signature"):
        provider_verifier(jwks).verify(token)


def test_token_algorithm_must_match_the_key_type(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "ec-1"})
    with pytest.raises(AuthError, match="does not match its key"):
        provider_verifier(jwks).verify(token)


@pytest.mark.parametrize("with_secret", [False, True])
def test_algorithm_confusion_is_refused(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, with_secret: bool) -> None:
    """An HS256 token whose HMAC key is the provider's public key PEM (which anybody can download)."""
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = keycloak_claims(jwks.issuer)
    for kid in ("rsa-1", None):
        header = {"alg": "HS256", "typ": "JWT", **({"kid": kid} if kid else {})}
        token = hand_made_token(header, claims, lambda data: hmac.new(public_pem, data, hashlib.sha256).digest())
        verifier = provider_verifier(jwks, jwt_secret=SECRET if with_secret else None)
        with pytest.raises(AuthError, match="signature is invalid" if with_secret else "HS256 tokens are not accepted"):
            verifier.verify(token)


def test_local_tokens_still_work_next_to_a_jwks(jwks: JwksServer) -> None:
    verifier = provider_verifier(jwks, jwt_secret=SECRET)
    token = issue_token(SECRET, subject="cli", roles=[Role.OPERATOR], issuer=jwks.issuer, audience=CLIENT)
    assert verifier.verify(token).roles == frozenset({Role.OPERATOR})
    assert jwks.hits == 0


def test_provider_token_without_jwks_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    token = jwt.encode(fresh_claims(roles=["operator"]), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match="no JWKS URL"):
        local_verifier().verify(token)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"iss": "https://evil.example.org/realms/pht"}, "issuer"),
        ({"aud": ["account"]}, "audience"),
        ({"aud": None}, "'aud'"),
    ],
)
def test_wrong_issuer_or_audience(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, override: dict[str, Any], message: str
) -> None:
    claims = {key: value for key, value in {**keycloak_claims(jwks.issuer), **override}.items() if value is not None}
    token = jwt.encode(claims, rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match=message):
        provider_verifier(jwks).verify(token)


def test_jwks_unreachable(rsa_key: rsa.RSAPrivateKey) -> None:
    url = f"http://127.0.0.1:{free_port()}/certs"
    verifier = TokenVerifier(Settings(jwks_url=url, jwt_issuer="https://idp", jwt_audience=CLIENT), jwks_timeout_s=2.0)
    token = jwt.encode(fresh_claims(roles=["operator"]), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    started = time.monotonic()
    with pytest.raises(AuthError, match="JWKS endpoint is unreachable"):
        verifier.verify(token)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("missing", ["jwt_issuer", "jwt_audience"])
def test_a_jwks_url_needs_issuer_and_audience(missing: str) -> None:
    options = {"jwks_url": "https://idp/certs", "jwt_issuer": "https://idp", "jwt_audience": CLIENT}
    del options[missing]
    with pytest.raises(ValueError, match="PHT_JWKS_URL needs PHT_JWT_ISSUER and PHT_JWT_AUDIENCE"):
        Settings(**options)


def test_jwks_garbage(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    jwks.garbage = True
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match="usable key set"):
        provider_verifier(jwks).verify(token)


def test_jwks_without_signing_keys(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    jwks.keys = [key for key in jwks.keys if key["use"] == "enc"]
    token = jwt.encode(keycloak_claims(jwks.issuer), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match="usable key set"):
        provider_verifier(jwks).verify(token)


# --- FastAPI ------------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    verifier = local_verifier()
    authenticate = principal_dependency(verifier)
    require = require_roles(authenticate)
    app = FastAPI()

    @app.get("/whoami")
    def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.post("/operate")
    def operate(principal: Annotated[Principal, Depends(require(Role.OPERATOR, Role.STATION_ADMIN))]) -> dict[str, str]:
        return {"subject": principal.subject}

    with TestClient(app) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic YWxpY2U6c2VjcmV0"}, {"Authorization": "Bearer"}])
def test_no_bearer_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/whoami", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in response.json()["detail"]


def test_bad_token_is_401(client: TestClient) -> None:
    expired = jwt.encode(fresh_claims(roles=["operator"], exp=int(time.time()) - 600), SECRET, algorithm="HS256")
    for token, reason in [("not-a-jwt", "malformed"), (expired, "expired")]:
        response = client.post("/operate", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["detail"] == f"token {'is malformed' if reason == 'malformed' else 'has expired'}"
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer error="invalid_token", error_description="')
        assert reason in challenge


def test_challenge_description_is_quoted_safely(client: TestClient) -> None:
    token = jwt.encode(fresh_claims(roles=["operator"]), SECRET * 2, algorithm="HS512")  # reason quotes 'HS512'
    response = client.get("/whoami", headers=bearer(token))
    assert response.status_code == 401
    description = response.headers["WWW-Authenticate"].split('error_description="', 1)[1]
    assert description.endswith('"') and '"' not in description[:-1]


def test_wrong_role_is_403(client: TestClient) -> None:
    token = issue_token(SECRET, subject="alice", roles=[Role.RESEARCHER])
    response = client.post("/operate", headers=bearer(token))
    assert response.status_code == 403
    assert response.json()["detail"] == "this call needs one of the roles: operator, station-admin"


@pytest.mark.parametrize(
    ("roles", "station"), [([Role.OPERATOR], None), ([Role.STATION_ADMIN, Role.RESEARCHER], "st-1")]
)
def test_right_role_is_200(client: TestClient, roles: list[Role], station: str | None) -> None:
    token = issue_token(SECRET, subject="carol", roles=roles, station=station)
    response = client.post("/operate", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"subject": "carol"}
    assert client.get("/whoami", headers=bearer(token)).json() == {"subject": "carol"}


def test_openapi_documents_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemes = spec["components"]["securitySchemes"]
    assert [scheme["scheme"].lower() for scheme in schemes.values()] == ["bearer"]
    assert spec["paths"]["/operate"]["post"]["security"] == [{name: []} for name in schemes]


def test_require_needs_a_role() -> None:
    require = require_roles(principal_dependency(local_verifier()))
    with pytest.raises(ValueError, match="at least one role"):
        require()


# -- the memo of verified tokens -----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_verified_token_is_reused_only_until_it_expires_and_at_most_max_age() -> None:
    clock = FakeClock()
    memo = VerifiedTokens(max_age_s=60, clock=clock)
    alice = Principal(subject="alice", roles=frozenset({Role.RESEARCHER}))
    memo.put("short", alice, {"exp": clock.now + 10})
    memo.put("long", alice, {"exp": clock.now + 3600})
    assert memo.get("short") == (alice, {"exp": clock.now + 10}) and memo.get("other") is None
    clock.now += 10  # the short token's exp: verified again (and refused after the leeway) from now on
    assert memo.get("short") is None and memo.get("long") is not None
    clock.now += 50  # 60 s after verifying: even an unexpired token is verified again
    assert memo.get("long") is None
    memo.put("expired", alice, {"exp": clock.now - 1})  # accepted within the leeway: never remembered
    assert memo.get("expired") is None


def test_the_memo_of_verified_tokens_stays_bounded() -> None:
    memo = VerifiedTokens(size=3, clock=FakeClock())
    who = Principal(subject="s", roles=frozenset({Role.RESEARCHER}))
    for k in range(5):
        memo.put(f"t{k}", who, {})
    assert [memo.get(f"t{k}") is not None for k in range(5)] == [False, False, True, True, True]


def test_a_token_verified_once_is_refused_once_revoked() -> None:
    """The memo skips the JWT work, never the revocation check."""
    revoked: set[str] = set()
    verifier = TokenVerifier(Settings(jwt_secret=SECRET), revoked=lambda claims: "token has been revoked"
                             if claims.get("jti") in revoked else None)
    token = issue_token(SECRET, subject="alice", roles=[Role.RESEARCHER])
    assert verifier.verify(token).subject == "alice"
    assert verifier.verify(token).subject == "alice"  # from the memo
    revoked.add(jwt.decode(token, options={"verify_signature": False})["jti"])
    with pytest.raises(AuthError, match="revoked"):
        verifier.verify(token)

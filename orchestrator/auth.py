"""Bearer tokens: issue local ones, verify any, and turn the result into a :class:`Principal` for FastAPI.

Token format
------------
A token is a JWT (RFC 7519) carried as ``Authorization: Bearer <token>``. Two kinds are accepted:

* **Local tokens**, HS256-signed with ``Settings.jwt_secret`` (``pht token issue``, the embedded demo, tests).
  :func:`issue_token` writes them with these claims::

      {"sub": "alice", "roles": ["researcher"], "iat": 1767225600, "exp": 1767229200, "jti": "9f1c..."}
      {"sub": "st-1", "roles": ["station"], "station": "st-1", "iat": ..., "exp": ..., "jti": ...,
       "iss": ..., "aud": ...}

  ``jti`` is a random token id: an operator revokes one token by it (``POST /api/tokens/revocations``).

* **Provider tokens** (Keycloak or any OIDC provider), RS256 or ES256-signed with a key published at
  ``Settings.jwks_url`` and chosen by the token's ``kid`` header. The key set is cached for five minutes
  (so a withdrawn key stops verifying within five minutes); an unknown ``kid`` triggers at most one
  re-fetch per PyJWT's cooldown, so a flood of made-up key ids does not flood the provider.

Which algorithm verifies a token is decided by the *key*, never by the token alone: HS256 only with the
configured secret, RS256/ES256 only with a JWKS key whose own type is that algorithm. ``none``, other
algorithms, and an HS256 token "signed" with a public key (algorithm confusion) are refused.

Claims checked: signature, ``exp`` (required, 30 s leeway), ``sub`` (required), ``iss`` and ``aud`` when
``Settings.jwt_issuer`` / ``Settings.jwt_audience`` are set (for both kinds of token; pass them to
:func:`issue_token` when both are configured). A JWKS URL cannot be configured without both
(:class:`Settings` refuses), so provider tokens are always checked for issuer and audience: a realm's token for
another client is refused.

Station tokens (role ``station``) are short-lived: one that lives longer than
``Settings.station_token_ttl_s`` (``exp - iat``, 12 hours by default) is refused, as is one without ``iat``.
Revocations (``orchestrator/revocations.py``, recorded in the graph) are checked on every token: a revoked
``jti``, or a token naming a station whose tokens issued before a cut-off were revoked, is refused.

Roles are the union of the claim ``roles`` (a list of strings), Keycloak's ``realm_access.roles``, and
``resource_access.<jwt_audience>.roles`` (client roles, read only when an audience is configured). Strings
that are not a :class:`Role` value (``offline_access``, ...) are ignored; a token left with no platform
role is refused. ``station`` and ``station-admin`` tokens must carry the claim ``station``.

Every failure is an :class:`AuthError` with one readable sentence; the FastAPI dependencies turn it into
401 (with ``WWW-Authenticate``) and a missing role into 403.

FastAPI
-------
No global state: the app factory builds the verifier from the settings and hands the dependencies to the
routers::

    verifier = TokenVerifier(settings)
    authenticate = principal_dependency(verifier)   # Depends(authenticate) -> Principal, or 401
    require = require_roles(authenticate)           # Depends(require(Role.OPERATOR)) -> Principal, or 401/403

    def build_router(require: RequireRoles) -> APIRouter:
        router = APIRouter()

        @router.post("/stations")
        def register_station(
            principal: Annotated[Principal, Depends(require(Role.OPERATOR))],
        ) -> ...: ...

        return router

A short example of a round trip:

>>> secret = "a-local-secret-of-at-least-32-characters"
>>> token = issue_token(secret, subject="alice", roles=[Role.RESEARCHER])
>>> TokenVerifier(Settings(jwt_secret=secret)).verify(token)
Principal(subject='alice', roles=frozenset({<Role.RESEARCHER: 'researcher'>}), station=None)
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies' annotations at run time,
# and those of the closures below refer to local variables.

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Annotated, Any, Protocol

import jwt
from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrator.principal import Principal, Role
from orchestrator.settings import Settings
from orchestrator.verified_tokens import VerifiedTokens

__all__ = [
    "AuthError",
    "RevocationCheck",
    "VerificationUnavailable",
    "PrincipalDependency",
    "RequireRoles",
    "TokenVerifier",
    "issue_token",
    "principal_dependency",
    "require_roles",
]

LOCAL_ALGORITHM = "HS256"
"""The algorithm of local tokens (signed with ``Settings.jwt_secret``)."""

PROVIDER_ALGORITHMS = ("RS256", "ES256")
"""The algorithms accepted from JWKS keys; the key's own type must match the token's ``alg``."""

MIN_SECRET_BYTES = 32
"""HS256 needs a key at least as long as its 256-bit hash (RFC 7518, section 3.2)."""

LEEWAY_S = 30.0
"""Clock skew tolerated on ``exp``, ``nbf`` and ``iat``."""

MAX_TOKEN_CHARS = 16_384
"""Longer "tokens" are refused before any parsing."""

STATION_ROLES = frozenset({Role.STATION, Role.STATION_ADMIN})
"""Roles that act for one station, and therefore need the claim ``station``."""

PrincipalDependency = Callable[..., Principal | Awaitable[Principal]]
"""A FastAPI dependency returning the authenticated :class:`Principal` (a plain or an ``async`` function)."""


class RequireRoles(Protocol):
    """``require(*roles)``: a dependency returning the principal if it holds one of ``roles``, else 403."""

    def __call__(self, *roles: Role) -> PrincipalDependency: ...


class AuthError(Exception):
    """A token was refused; ``str(error)`` says why in one sentence (the API answers 401 with it)."""


class VerificationUnavailable(AuthError):
    """A token cannot be checked now (the revocations cannot be read); the API answers 503, not 401: the
    token may be good, and the caller should retry rather than ask for a new one."""


RevocationCheck = Callable[[Mapping[str, Any]], str | None]
"""Given a verified token's claims, why it is revoked (one sentence) or None; may raise
:class:`VerificationUnavailable`. ``orchestrator.revocations.Revocations.check`` is the one the app uses."""


# --- issuing ------------------------------------------------------------------------------------------


def issue_token(
    secret: str,
    *,
    subject: str,
    roles: Iterable[Role],
    station: str | None = None,
    ttl_s: int = 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A local HS256 token for ``subject`` with ``roles``, valid for ``ttl_s`` seconds.

    :raises ValueError: the secret is shorter than 32 bytes, the subject is empty, ``ttl_s`` is not
        positive, there is no role, a role is not a :class:`Role` (or its value), or a station or
        station-admin role comes without ``station``.

    >>> issue_token("x" * 32, subject="s", roles=[Role.STATION])
    Traceback (most recent call last):
    ...
    ValueError: a token with role station or station-admin needs a station
    """
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes long")
    if not subject:
        raise ValueError("a token needs a subject")
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s}")
    granted = _known_roles(roles)
    if not granted:
        raise ValueError("a token needs at least one role")
    if granted & STATION_ROLES and not station:
        raise ValueError("a token with role station or station-admin needs a station")
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "roles": sorted(role.value for role in granted),
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if station:
        claims["station"] = station
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=LOCAL_ALGORITHM)


def _known_roles(roles: Iterable[Role]) -> frozenset[Role]:
    """``roles`` as :class:`Role` members; a string must be a role's value."""
    known = set()
    for role in roles:
        try:
            known.add(Role(role))
        except ValueError:
            choices = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {role!r} (known roles: {choices})") from None
    return frozenset(known)


# --- verifying ----------------------------------------------------------------------------------------


class TokenVerifier:
    """Verifies bearer tokens against the settings: HS256 with ``jwt_secret``, RS256/ES256 with the keys
    at ``jwks_url`` (fetched lazily on the first provider token, then cached).

    Thread-safe: FastAPI calls :meth:`verify` from its thread pool.
    """

    def __init__(self, settings: Settings, *, jwks_timeout_s: float = 5.0,
                 revoked: RevocationCheck | None = None) -> None:
        self._revoked = revoked
        self._verified = VerifiedTokens()  # what a client's next request would verify again
        self._station_ttl_s = settings.station_token_ttl_s
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._jwks = (
            # The key set is cached for five minutes; no per-kid cache without expiry, so that a key the
            # provider withdraws stops verifying within five minutes.
            jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=True, lifespan=300, timeout=jwks_timeout_s)
            if settings.jwks_url
            else None
        )

    @property
    def fetches_keys(self) -> bool:
        """True if verifying may fetch a JWKS over the network (a provider is configured)."""
        return self._jwks is not None

    def verify(self, token: str) -> Principal:
        """The principal a valid token stands for.

        :raises AuthError: the token is malformed, expired, not yet valid, badly signed, signed with an
            algorithm or key that is not accepted, from another issuer or audience, grants no platform
            role, or grants a station role without a station; or the JWKS cannot be fetched.
        """
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token is malformed")
        verified = self._verified.get(token)
        if verified is not None:
            principal, claims = verified
        else:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                raise AuthError("token is malformed") from None
            claims = self._decode(token, header.get("alg"), header.get("kid"))
            principal = _principal(claims, self._audience)
            if Role.STATION in principal.roles:
                self._check_short_lived(claims)
            self._verified.put(token, principal, claims)
        if self._revoked is not None:  # on every request: a revocation takes effect within its cache time
            reason = self._revoked(claims)
            if reason is not None:
                raise AuthError(reason)
        return principal

    def _check_short_lived(self, claims: Mapping[str, Any]) -> None:
        """A station token must say when it was issued and live at most ``station_token_ttl_s``."""
        issued, expires = claims.get("iat"), claims.get("exp")
        if not isinstance(issued, (int, float)) or isinstance(issued, bool):
            raise AuthError("station tokens must carry the claim 'iat' (when they were issued)")
        if not isinstance(expires, (int, float)) or expires - issued > self._station_ttl_s + LEEWAY_S:
            raise AuthError(f"station tokens may live at most {self._station_ttl_s} seconds; this one lives "
                            f"longer (issue a new one, or let the agent renew it)")

    def _decode(self, token: str, alg: object, kid: object) -> dict[str, Any]:
        key: str | jwt.PyJWK
        if alg == LOCAL_ALGORITHM:
            if not self._secret:
                raise AuthError("HS256 tokens are not accepted here (no local secret is configured)")
            key = self._secret
        elif alg in PROVIDER_ALGORITHMS:
            key = self._provider_key(str(alg), kid)
        else:
            accepted = ", ".join(self._algorithms())
            raise AuthError(f"token algorithm {alg!r} is not accepted (accepted: {accepted})")
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[str(alg)],
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_S,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "verify_iss": self._issuer is not None,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as error:
            raise AuthError(_reason(error)) from None

    def _provider_key(self, alg: str, kid: object) -> jwt.PyJWK:
        """The JWKS key named ``kid``, provided its own algorithm is ``alg``."""
        if self._jwks is None:
            raise AuthError(f"{alg} tokens are not accepted here (no JWKS URL is configured)")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id ('kid' header), so no JWKS key can verify it")
        try:
            key = self._jwks.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, OSError):
            raise AuthError("the JWKS endpoint is unreachable, so provider tokens cannot be verified") from None
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError) as error:
            # PyJWT raises the same class for an unknown kid and for a key set without signing keys.
            if "Unable to find a signing key" in str(error):
                raise AuthError("token key id is unknown to the JWKS endpoint") from None
            raise AuthError("the JWKS endpoint did not return a usable key set") from None
        if key.algorithm_name != alg:
            raise AuthError(f"token algorithm {alg} does not match its key (a {key.algorithm_name} key)")
        return key

    def _algorithms(self) -> list[str]:
        return ([LOCAL_ALGORITHM] if self._secret else []) + (list(PROVIDER_ALGORITHMS) if self._jwks else [])


def _reason(error: jwt.PyJWTError) -> str:
    """One sentence for a PyJWT failure (most specific classes first: they subclass each other)."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "token has expired"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token is not yet valid"
    if isinstance(error, jwt.InvalidSignatureError):
        return "token signature is invalid"
    if isinstance(error, jwt.InvalidIssuerError):
        return "token issuer is not accepted"
    if isinstance(error, jwt.InvalidAudienceError):
        return "token audience is not accepted"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"token lacks the required claim {error.claim!r}"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "token algorithm is not accepted for its key"
    if isinstance(error, jwt.InvalidKeyError):
        return "the configured key cannot verify this token"
    return "token is malformed"


def _principal(claims: Mapping[str, Any], audience: str | None) -> Principal:
    """The principal of verified ``claims``."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("token claim 'sub' must be a non-empty string")
    roles = _granted_roles(claims, audience)
    if not roles:
        raise AuthError("token grants no platform role")
    station = claims.get("station")
    if station is not None and (not isinstance(station, str) or not station):
        raise AuthError("token claim 'station' must be a non-empty string")
    if roles & STATION_ROLES and station is None:
        raise AuthError("token grants a station or station-admin role but names no station (claim 'station')")
    return Principal(subject=subject, roles=roles, station=station)


def _granted_roles(claims: Mapping[str, Any], audience: str | None) -> frozenset[Role]:
    """Platform roles from ``roles``, ``realm_access.roles`` and ``resource_access.<audience>.roles``."""
    names = _string_list(claims.get("roles"), "roles")
    realm_access = claims.get("realm_access")
    if isinstance(realm_access, Mapping):
        names += _string_list(realm_access.get("roles"), "realm_access.roles")
    resource_access = claims.get("resource_access")
    if audience and isinstance(resource_access, Mapping):
        client = resource_access.get(audience)
        if isinstance(client, Mapping):
            names += _string_list(client.get("roles"), f"resource_access.{audience}.roles")
    values = {role.value: role for role in Role}
    return frozenset(values[name] for name in names if name in values)


def _string_list(value: object, claim: str) -> list[str]:
    """``value`` if it is a list of strings, ``[]`` if absent."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise AuthError(f"token claim '{claim}' must be a list of strings")
    return value


# --- FastAPI ------------------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="A JWT: a local HS256 token or one from the OIDC provider.")


def principal_dependency(verifier: TokenVerifier) -> PrincipalDependency:
    """A FastAPI dependency: the :class:`Principal` of the request's bearer token.

    Answers 401 with ``WWW-Authenticate: Bearer`` when there is no bearer token, and with
    ``WWW-Authenticate: Bearer error="invalid_token", error_description="<reason>"`` when it is refused.
    Synchronous (run in FastAPI's thread pool) when a JWKS may have to be fetched; with local tokens only,
    verifying is pure computation and runs on the event loop, sparing every request a thread hop.
    """

    def principal_of(credentials: HTTPAuthorizationCredentials | None) -> Principal:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="this call needs a bearer token (header 'Authorization: Bearer <token>')",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return verifier.verify(credentials.credentials)
        except VerificationUnavailable as error:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
        except AuthError as error:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail=str(error),
                headers={"WWW-Authenticate": _invalid_token_challenge(str(error))},
            ) from None

    if verifier.fetches_keys:
        def authenticate(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            return principal_of(credentials)

        return authenticate

    async def authenticate_locally(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        return principal_of(credentials)

    return authenticate_locally


def require_roles(authenticate: PrincipalDependency) -> RequireRoles:
    """Bind ``authenticate`` (from :func:`principal_dependency`) into ``require(*roles)``, a factory of
    dependencies that return the principal if it holds at least one of ``roles`` and answer 403 otherwise.

    :raises ValueError: (from ``require``) when called without roles.
    """

    def require(*roles: Role) -> PrincipalDependency:
        if not roles:
            raise ValueError("require() needs at least one role")
        needed = ", ".join(Role(role).value for role in roles)

        async def authorize(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
            if not principal.has(*roles):
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this call needs one of the roles: {needed}")
            return principal

        return authorize

    return require


def _invalid_token_challenge(reason: str) -> str:
    """An RFC 6750 challenge; the description is restricted to the characters that RFC allows."""
    description = "".join(c for c in reason if c.isascii() and c.isprintable() and c not in '"\\')
    return f'Bearer error="invalid_token", error_description="{description}"'

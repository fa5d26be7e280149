"""Who is looking at the web view: the API's bearer tokens, carried by a cookie a browser can keep.

Browsers cannot attach ``Authorization`` headers to links and forms, so ``/ui/login`` takes a token (pasted
by the user), verifies it with the API's :class:`~orchestrator.auth.TokenVerifier` and keeps it in an
``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/ui``. Every page verifies the cookie (or an
``Authorization`` header, for scripts) exactly as the API verifies a bearer token, so roles, expiry and
issuers are the API's. Forms that change something also check that they come from this origin (``Origin``,
else ``Referer``): ``SameSite=Strict`` already keeps the cookie off cross-site requests, and the origin check
also stops a forged login.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ..auth import AuthError, TokenVerifier
from ..principal import Principal

__all__ = ["COOKIE", "LoginRequired", "PageError", "clear_login", "keep_login", "same_origin", "safe_next",
           "web_principal"]

COOKIE = "pht_token"
"""Name of the cookie holding the bearer token."""

PATH = "/ui"
"""The cookie is sent to the web view only, never to the API (which wants the header)."""


class LoginRequired(Exception):
    """No usable token: the browser is sent to the login page (a script with a bad header gets 401)."""

    def __init__(self, reason: str | None = None, *, from_header: bool = False) -> None:
        super().__init__(reason or "log in with a token")
        self.reason = reason
        self.from_header = from_header


class PageError(Exception):
    """A refusal shown as an HTML page with ``status``: one title, one sentence."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def web_principal(verifier: TokenVerifier) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the principal of the request's ``Authorization`` header or login cookie."""

    async def principal(request: Request) -> Principal:
        header = _bearer(request)
        token = header or request.cookies.get(COOKIE)
        if not token:
            raise LoginRequired()
        try:
            if verifier.fetches_keys:  # a JWKS may have to be fetched: off the event loop
                who = await run_in_threadpool(verifier.verify, token)
            else:
                who = verifier.verify(token)
        except AuthError as error:
            raise LoginRequired(str(error), from_header=header is not None) from None
        request.state.principal = who  # for the header of an error page
        return who

    return principal


def keep_login(response: Response, token: str, *, secure: bool) -> None:
    """Store the verified token in the login cookie (a session cookie: the token's own expiry still rules)."""
    response.set_cookie(COOKIE, token, path=PATH, httponly=True, samesite="strict", secure=secure)


def clear_login(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")


def same_origin(request: Request) -> bool:
    """True if a form was sent from a page of this service (``Origin``, else ``Referer``, names our host).

    The host is compared, not the scheme: behind a TLS-terminating proxy the service sees plain HTTP.
    """
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    return urlsplit(source).netloc.lower() == request.headers.get("host", "").lower()


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of the web view, never another site (open redirect)."""
    if not value or not value.startswith(PATH + "/") or value.startswith("//") or "\\" in value:
        return PATH + "/"
    if any(ord(c) < 0x21 for c in value):
        return PATH + "/"
    return value

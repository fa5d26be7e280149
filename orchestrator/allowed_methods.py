"""Which methods a path supports, for the whole app: ``Allow`` on every 405, and HEAD wherever GET is.

Starlette answers a method no route of a path has with a 405 naming only the methods of the *first* route
that matched the path (``OPTIONS /api/datasets`` said ``allow: POST`` although ``GET /api/datasets`` exists
on another route), and FastAPI routes answer GET but not HEAD, which RFC 9110 §9.1 asks of every
general-purpose server. Here the methods of *every* route matching the path count, and a HEAD no route
handles is answered as the GET it stands for, without the body.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import fastapi.routing
from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["HeadAsGet", "allowed_methods", "install_allowed_methods"]

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _templates(routes: Iterable[BaseRoute]) -> list[tuple[re.Pattern[str], frozenset[str]]]:
    """Each route's path pattern and methods; routers included in FastAPI >= 0.16x are nested, so they are
    flattened the way ``metrics.py`` reads route templates."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    flat: list[Any] = list(iterate(list(routes))) if iterate is not None else list(routes)
    return [(compile_path(r.path)[0], frozenset(getattr(r, "methods", None) or ()))
            for r in flat if getattr(r, "path", None)]


def _declared(routes: Iterable[BaseRoute], path: str) -> set[str]:
    """The methods the routes matching ``path`` declare."""
    return {m for regex, methods in _templates(routes) if regex.match(path) for m in methods}


def allowed_methods(routes: Iterable[BaseRoute], path: str) -> list[str]:
    """The methods some route in ``routes`` answers at ``path`` (HEAD with GET), in a stable order."""
    methods = _declared(routes, path)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))


class HeadAsGet:
    """Answer a HEAD that no route handles but a GET route does as that GET, without the body.

    The headers are the GET's (Content-Length included, as RFC 9110 §9.3.2 asks). Once the headers are
    sent the request reads as disconnected, so a streaming GET (the train page's server-sent events) ends.
    """

    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        declared = _declared(self.routes(), scope["path"])
        if "HEAD" in declared or "GET" not in declared:  # a HEAD route of its own, or the path's 405 / 404
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        finished = False

        async def headers_only(message: Message) -> None:
            nonlocal finished
            if finished:
                return
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body":
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def until_answered() -> Message:
            if finished:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(as_get, until_answered, headers_only)


def install_allowed_methods(app: FastAPI) -> None:
    """Every 405 of ``app`` lists all methods its path supports; HEAD is answered wherever GET is."""

    @app.exception_handler(HTTPException)
    async def http_exception(request: Request, exc: HTTPException) -> Response:
        if exc.status_code != 405:
            return await http_exception_handler(request, exc)
        allowed = allowed_methods(app.routes, request.url.path)
        return JSONResponse({"detail": f"{request.method} is not allowed here; this path supports "
                                       f"{', '.join(allowed)}"},
                            status_code=405, headers={**(exc.headers or {}), "Allow": ", ".join(allowed)})

    app.add_middleware(HeadAsGet, routes=lambda: app.routes)

"""Request bodies are taken as sent: one with a ``Content-Encoding`` (gzip, deflate, br...) is refused with 415.

Why refuse rather than decompress: every size limit of the service (``max_body_bytes``, the RDF expansion bound
of ``graph_store.parse_rdf``, the SPARQL text limits) is about the bytes a handler reads; a compressed body
would let 1 MB on the wire become a gigabyte in memory (a decompression bomb) unless each reader decompressed
in bounded steps. No client of the platform compresses request bodies, so the simplest safe rule is the one
RFC 9110 §15.5.16 gives: 415 with ``Accept-Encoding: identity``. Applies to every route (the middleware wraps
the whole app), before any handler reads a byte.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["RefuseEncodedBodies"]


class RefuseEncodedBodies:
    """ASGI middleware: 415 for a request whose ``Content-Encoding`` is anything but ``identity``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            codings = [v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"content-encoding"]
            named = {c.strip().lower() for value in codings for c in value.split(",")} - {"", "identity"}
            if named:
                response = JSONResponse(
                    {"detail": f"request bodies are accepted uncompressed only, not with Content-Encoding "
                               f"{', '.join(sorted(named))}: send the body as it is"},
                    status_code=415, headers={"Accept-Encoding": "identity"})
                await response(scope, _no_receive, send)
                return
        await self.app(scope, receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a JSONResponse does not read the request
    return {"type": "http.disconnect"}

"""The door of the fast lane: ``GET /sparql`` point queries answered before routing.

Why: a point query answered by the lane (``query_fast_lane.py``) costs about 0.25 ms; FastAPI's routing,
dependency resolution and request objects around it cost as much again, and more when the service has been
idle between queries and its code is cold in the caches. So this ASGI middleware answers the request the
lane can answer whole, with the same parts the ``/sparql`` route would call, in the same order:

- the bearer token as FastAPI's ``HTTPBearer`` reads it, verified by the same :class:`TokenVerifier` (its
  revocations included);
- the query parameters as Starlette parses them, the Accept header checked by ``accepts_an_answer``, relative
  IRIs resolved against the same ``endpoint_iri``;
- the answer from :meth:`PointQueryLane.answer`, over the caller's readable view, sent with the headers the
  route's ``Response`` would send with it.

It only ever answers success. Whatever it cannot answer whole (no or a refused token, a POST, an update, a
query the lane leaves to a worker, an Accept nothing satisfies, any error) goes on to the route unchanged,
which gives every refusal and error its answer. It sits inside the metrics and body-limit middlewares, so
those see its requests too. It is installed only where verifying a token never waits for the network (no
OIDC provider) and the store is embedded (the lane exists).
"""

from __future__ import annotations

import logging

from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import TokenVerifier
from .principal import Principal
from .query_eval import Serialised
from .query_runner import QueryRunner
from .sparql_http import accepts_an_answer, endpoint_iri

__all__ = ["PointQueryDoor"]

log = logging.getLogger(__name__)

PATH = "/sparql"


class PointQueryDoor:
    """ASGI middleware answering ``GET /sparql`` point queries from the fast lane (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, runner: QueryRunner, verifier: TokenVerifier) -> None:
        if runner.lane is None or verifier.fetches_keys:
            raise ValueError("the door needs the fast lane and tokens verified without the network")
        self.app, self.runner, self.verifier = app, runner, verifier
        self.answered = 0
        """Requests answered here (tests tell the door's answers from the route's by it)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == PATH:
            answered = self._answer(scope)
            if answered is not None:
                status, body, headers = answered
                self.answered += 1
                # the headers of the route's Response(body, status_code=status, headers=dict(headers))
                raw = [(b"content-length", str(len(body)).encode("latin-1")),
                       *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)]
                await send({"type": "http.response.start", "status": status, "headers": raw})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope) -> Serialised | None:
        """The lane's answer to this request, or None to leave it to the route."""
        params = QueryParams(scope["query_string"])
        queries = params.getlist("query")
        if len(queries) != 1 or "update" in params:
            return None
        accept = authorization = None
        for key, value in scope["headers"]:  # as Starlette's Headers reads them: the first of each wins
            if key == b"accept" and accept is None:
                accept = value.decode("latin-1")
            elif key == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
        if not accepts_an_answer(accept):
            return None
        who = self._principal(authorization)
        if who is None:
            return None
        try:
            base = endpoint_iri(scope)
            lane = self.runner.lane
            assert lane is not None  # checked in __init__
            return lane.answer(who, queries[0], params.getlist("default-graph-uri"),
                               params.getlist("named-graph-uri"), accept, row_limit=self.runner.row_limit,
                               max_bytes=self.runner.max_bytes, base=base)
        except Exception:  # noqa: BLE001 - the route answers it again and gives the error its proper answer
            log.debug("the point query door leaves a request to the route", exc_info=True)
            return None

    def _principal(self, authorization: str | None) -> Principal | None:
        """The caller, as ``HTTPBearer`` and the verifier would find them; None for anything the route refuses."""
        scheme, credentials = get_authorization_scheme_param(authorization)
        if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
            return None
        try:
            return self.verifier.verify(credentials)
        except Exception:  # noqa: BLE001 - AuthError, VerificationUnavailable: the route answers 401 / 503
            return None

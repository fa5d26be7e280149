"""The connector's own operator: publish and withdraw results (``pht result publish``/``withdraw``).

Not DSP: these routes are for the researcher who runs the connector, behind the connector's admin token
(compared in constant time). A published file arrives as the request body, already decrypted by the
researcher (docs/dataspace.md: why the plaintext, from the researcher's own connector).
"""

from __future__ import annotations

import hmac
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from pyoxigraph import NamedNode
from starlette.concurrency import run_in_threadpool

from graph_store import GraphStoreError

from ._connector import Connector
from ._policy import Policy, PolicyInvalid

__all__ = ["MAX_PUBLISH_BYTES", "admin_router"]

MAX_PUBLISH_BYTES = 1 << 30


def admin_router(connector: Connector, admin_token: str) -> APIRouter:
    """``POST /admin/results?train=&title=&policy=`` (body: the file) and ``POST /admin/results/withdraw?result=``."""
    router = APIRouter(prefix="/admin")

    def check(request: Request) -> None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), admin_token.encode()):
            raise HTTPException(401, "The connector's admin token is required.")

    @router.post("/results", status_code=201)
    async def publish(request: Request, train: str, title: str, policy: str = "") -> dict[str, str]:
        check(request)
        try:
            parsed = Policy.parse(policy)
        except PolicyInvalid as e:
            raise HTTPException(422, str(e)) from None
        if not train.startswith(("http://", "https://", "urn:")):
            raise HTTPException(422, "The train must be named by its IRI (http(s):// or urn:).")
        body = await request.body()
        if len(body) > MAX_PUBLISH_BYTES:
            raise HTTPException(413, f"A published result may have at most {MAX_PUBLISH_BYTES} bytes.")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "result"
            path.write_bytes(body)
            try:
                result = await run_in_threadpool(connector.provider.publish, train=train, title=title, data=path,
                                                 policy=parsed)
            except GraphStoreError as e:
                raise HTTPException(422, f"The result cannot be published: {str(e).splitlines()[0]}") from None
        return {"@id": result.iri.value, "sha256": result.sha256}

    @router.post("/results/withdraw", status_code=204)
    async def withdraw(request: Request, result: str) -> Response:
        check(request)
        try:
            await run_in_threadpool(connector.provider.withdraw, NamedNode(result))
        except (KeyError, ValueError) as e:
            raise HTTPException(404, f"{result} is not a result published here.") from e
        except GraphStoreError:
            raise HTTPException(409, f"{result} was withdrawn already.") from None
        return Response(status_code=204)

    return router

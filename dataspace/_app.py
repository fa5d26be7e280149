"""The connector served over HTTP: DSP 2025-1 provider paths, the consumer's callback paths, the data plane.

Handlers are thin: read the body (JSON, at most ``MAX_MESSAGE_BYTES``), hand it with the ``Authorization``
header to the provider or consumer side in the thread pool, answer with its reply or its DSP error, then run
the reply's follow-up (the next message to the other side) after the answer is sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from graph_store import GraphStoreError

from ._connector import Connector
from ._core import ProtocolError, Reply

__all__ = ["MAX_MESSAGE_BYTES", "connector_app"]

MAX_MESSAGE_BYTES = 1_000_000
MAX_PUSH_BYTES = 1 << 30

_NEGOTIATION_KINDS = {"request": "ContractRequestMessage", "events": "ContractNegotiationEventMessage",
                      "agreement/verification": "ContractAgreementVerificationMessage",
                      "termination": "ContractNegotiationTerminationMessage"}
_TRANSFER_KINDS = {"start": "TransferStartMessage", "completion": "TransferCompletionMessage",
                   "suspension": "TransferSuspensionMessage", "termination": "TransferTerminationMessage"}


def _answer(reply: Reply) -> Response:
    task = BackgroundTask(reply.then) if reply.then is not None else None
    if reply.encoded is not None:
        return Response(reply.encoded, status_code=reply.status, media_type="application/json", background=task)
    if reply.body is None:
        return Response(status_code=reply.status, background=task)
    return JSONResponse(reply.body, status_code=reply.status, background=task)


async def _body(request: Request, family: str) -> object:
    raw = await request.body()
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError(413, f"A DSP message may have at most {MAX_MESSAGE_BYTES} bytes.", family=family)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(400, "The body is not JSON.", family=family) from None


async def _call(family: str, fn: Callable[..., Reply], *args: Any) -> Response:
    try:
        return _answer(await run_in_threadpool(fn, *args))
    except GraphStoreError as e:  # e.g. a pid longer than the shapes allow: refused, nothing written
        raise ProtocolError(400, f"The message cannot be recorded: {str(e).splitlines()[0][:300]}",
                            family=family) from None


def _message_route(family: str, handler: Callable[..., Reply], kind: str | None) -> Callable[..., Any]:
    """A POST route for one message ``kind`` (None: the handler knows it) addressed to a process ``{pid}``."""
    async def route(pid: str, request: Request) -> Response:
        body = await _body(request, family)
        args = (pid, kind, body) if kind is not None else (pid, body)
        return await _call(family, handler, request.headers.get("authorization"), *args)
    return route


def _request_route(family: str, handler: Callable[..., Reply]) -> Callable[..., Any]:
    """A POST route for a message that starts something (no process id in the path)."""
    async def route(request: Request) -> Response:
        body = await _body(request, family)
        return await _call(family, handler, request.headers.get("authorization"), body)
    return route


def _get_route(family: str, handler: Callable[..., Reply]) -> Callable[..., Any]:
    """A GET route reading one thing by ``{pid}``."""
    async def route(pid: str, request: Request) -> Response:
        return await _call(family, handler, request.headers.get("authorization"), pid)
    return route


def connector_app(connector: Connector) -> FastAPI:
    """The FastAPI app of ``connector`` (provider and consumer paths in one app, as one participant's)."""
    app = FastAPI(title="PHT-KG dataspace connector (DSP 2025-1)")
    provider, consumer = connector.provider, connector.consumer

    @app.exception_handler(ProtocolError)
    async def protocol_error(_: Request, e: ProtocolError) -> JSONResponse:
        return JSONResponse(e.body, status_code=e.status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    routes: list[tuple[str, str, str, Callable[..., Any]]] = [
        ("POST", "/catalog/request", "catalog_request", _request_route("catalog", provider.catalog_request)),
        ("GET", "/catalog/datasets/{pid:path}", "catalog_dataset", _get_route("catalog", provider.dataset)),
        ("POST", "/negotiations/request", "negotiation_request",
         _request_route("negotiation", provider.negotiation_request)),
        ("GET", "/negotiations/{pid}", "negotiation_get", _get_route("negotiation", provider.negotiation_get)),
        ("POST", "/transfers/request", "transfer_request", _request_route("transfer", provider.transfer_request)),
        ("GET", "/transfers/{pid}", "transfer_get", _get_route("transfer", provider.transfer_get)),
    ]
    routes += [("POST", f"/negotiations/{{pid}}/{path}", f"negotiation_{path.replace('/', '_')}",
                _message_route("negotiation", provider.negotiation_message, kind))
               for path, kind in _NEGOTIATION_KINDS.items()]
    routes += [("POST", f"/transfers/{{pid}}/{path}", f"transfer_{path}",
                _message_route("transfer", provider.transfer_message, kind)) for path, kind in _TRANSFER_KINDS.items()]
    routes += [("POST", "/callback/negotiations/{pid}/agreement", "callback_agreement",
                _message_route("negotiation", consumer.agreement, None))]
    routes += [("POST", f"/callback/negotiations/{{pid}}/{path}", f"callback_negotiation_{path}",
                _message_route("negotiation", consumer.negotiation_message, kind))
               for path, kind in (("events", "ContractNegotiationEventMessage"),
                                  ("termination", "ContractNegotiationTerminationMessage"))]
    routes += [("POST", f"/callback/transfers/{{pid}}/{path}", f"callback_transfer_{path}",
                _message_route("transfer", consumer.transfer_message, kind)) for path, kind in _TRANSFER_KINDS.items()]
    for method, path, name, endpoint in routes:
        app.add_api_route(path, endpoint, methods=[method], name=name)

    @app.get("/data/{pid}")
    async def data(pid: str, request: Request) -> Response:
        path = await run_in_threadpool(provider.data, request.headers.get("authorization"), pid)
        return FileResponse(path, media_type="application/octet-stream")

    @app.put("/sink/{cpid}")
    async def sink(cpid: str, request: Request) -> Response:
        raw = await request.body()
        if len(raw) > MAX_PUSH_BYTES:
            raise ProtocolError(413, "The pushed data is too large.", family="transfer", consumer_pid=cpid)
        await run_in_threadpool(consumer.sink, request.headers.get("authorization"), cpid, iter([raw]))
        return Response(status_code=204)

    return app

"""What the provider and consumer sides of a connector share: settings, the graph, identity, sending messages.

Threads: FastAPI runs each handler and each follow-up (a message sent after the answer, as DSP's asynchronous
callbacks are) in its thread pool; the graph is the only shared state besides the consumer's in-memory
credentials, and every state change is a guarded write, so no lock is needed beyond the store's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pyoxigraph import NamedNode

from graph_store import PHT, GraphStore

from ._identity import IdentityRefused, TrustedIssuers
from ._messages import error
from ._policy import Claims
from ._records import OutOfOrder, Process, Records
from ._schemas import MessageInvalid, validate_message

__all__ = ["ConnectorSettings", "Core", "ProtocolError", "Reply", "join", "refusal_reason"]

@dataclass(frozen=True)
class ConnectorSettings:
    """One connector: who it is, where it answers, where it mints IRIs and keeps bytes."""

    participant_id: str
    base_url: str
    data_dir: Path
    base_iri: str = "https://pht.example.org/id/"
    pull_token_ttl_s: float = 60.0
    wait_timeout_s: float = 10.0


class ProtocolError(Exception):
    """A refused DSP request: its HTTP status and the DSP error body (one reason)."""

    def __init__(self, status: int, reason: str, *, family: str, provider_pid: str | None = "",
                 consumer_pid: str | None = "", code: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.body = error(family, reason, code=code or str(status), provider_pid=provider_pid or "",
                          consumer_pid=consumer_pid or "")


@dataclass(frozen=True)
class Reply:
    """A handler's answer, and what to do after it is sent (a callback message to the other side)."""

    status: int
    body: dict[str, Any] | None
    then: Callable[[], None] | None = None
    encoded: bytes | None = None  # the body already serialised (a cached catalog: rendering 1,000 datasets costs)


@dataclass
class Core:
    """The shared parts; ``identity_token`` is this connector's own token, sent with every message."""

    settings: ConnectorSettings
    store: GraphStore
    trusted: TrustedIssuers
    identity_token: Callable[[], str]
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30.0))
    records: Records = field(init=False)
    _changed: threading.Condition = field(init=False, default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.records = Records(self.store, self.settings.base_iri)

    # -- identity ---------------------------------------------------------------------------------------------

    def claims(self, authorization: str | None, family: str) -> Claims:
        """The verified claims of a request's sender (401 if it has none)."""
        try:
            return self.trusted.verify(authorization)
        except IdentityRefused as e:
            raise ProtocolError(401, str(e), family=family) from None

    @staticmethod
    def own(process: Process | None, claims: Claims, family: str, pid: str) -> Process:
        """``process`` if it exists and the sender is its other side; else 404 (DSP: unauthorized is 404)."""
        if process is None or process.counterparty != claims.participant:
            raise ProtocolError(404, f"No process {pid} is known for this participant.", family=family,
                                provider_pid=pid)
        return process

    def received(self, process_class: NamedNode, role: NamedNode, family: str, authorization: str | None,
                 pid: str, kind: str | None = None, body: object = None) -> tuple[Process, dict[str, Any]]:
        """The sender's own process with this connector's id ``pid`` (404 otherwise) and, with ``kind``, the
        message, schema-checked and naming the process's ids (400 otherwise)."""
        claims = self.claims(authorization, family)
        key = {"provider_pid": pid} if role == PHT.ProviderRole else {"consumer_pid": pid}
        process = self.own(self.records.process(process_class, role=role, **key), claims, family, pid)
        if kind is None:
            return process, {}
        msg = self.accept(body, kind, family)
        self.same_pids(msg, process, family)
        return process, msg

    @staticmethod
    def accept(body: object, kind: str | tuple[str, ...], family: str) -> dict[str, Any]:
        """A received message after its schema check (400 with the DSP error otherwise)."""
        try:
            return validate_message(body, kind)
        except MessageInvalid as e:
            pids = body if isinstance(body, dict) else {}
            raise ProtocolError(400, str(e), family=family, provider_pid=str(pids.get("providerPid", "")),
                                consumer_pid=str(pids.get("consumerPid", ""))) from None

    @staticmethod
    def same_pids(message: dict[str, Any], process: Process, family: str) -> None:
        """The message names the process's own ids (400 otherwise)."""
        for key, ours in (("consumerPid", process.consumer_pid), ("providerPid", process.provider_pid)):
            if ours is not None and message.get(key) != ours:
                raise ProtocolError(400, f"The message's {key} is not this process's.", family=family,
                                    provider_pid=process.provider_pid, consumer_pid=process.consumer_pid)

    def step(self, process: Process, message: str, family: str, **kw: Any) -> None:
        """Advance ``process`` by ``message`` (400 with the DSP error if out of order), then wake waiters."""
        try:
            self.records.advance(process, message, **kw)
        except OutOfOrder as e:
            raise ProtocolError(400, str(e), family=family, provider_pid=process.provider_pid,
                                consumer_pid=process.consumer_pid) from None
        self.notify()

    # -- messages out -----------------------------------------------------------------------------------------

    def send(self, url: str, body: dict[str, Any], *, expect: tuple[int, ...] = (200,)) -> httpx.Response:
        """POST a DSP message (checked against its schema first) with this connector's identity token.

        :raises RuntimeError: the other side refused it (its status and DSP error in the sentence).
        """
        validate_message(body, body["@type"])
        response = self.http.post(url, json=body, headers={"Authorization": f"Bearer {self.identity_token()}"})
        if response.status_code not in expect:
            raise RuntimeError(f"{url} answered {response.status_code}: {refusal_reason(response)}")
        return response

    # -- waiting ----------------------------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake everyone waiting for a process to change."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], Any], what: str) -> Any:
        """The first truthy value of ``predicate``, re-checked at each change (TimeoutError after the wait limit)."""
        deadline = time.monotonic() + self.settings.wait_timeout_s
        with self._changed:
            while not (value := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"Gave up waiting for {what}.")
                self._changed.wait(min(left, 0.25))
            return value


def refusal_reason(response: httpx.Response) -> str:
    """The reason a DSP error body gives (its ``reason`` list joined), else the start of the body."""
    try:
        body = response.json()
        reasons = body.get("reason") if isinstance(body, dict) else None
    except ValueError:
        reasons = None
    if isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons):
        return " ".join(reasons)[:300]
    return response.text[:300]


def join(base: str, path: str) -> str:
    """``path`` under a callback or endpoint base URL, with or without its trailing slash."""
    return base.rstrip("/") + "/" + path.lstrip("/")

"""``CentralClient``: the REST API of the central service as typed Python calls."""

import hashlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError
from pyoxigraph import BlankNode, Literal, NamedNode, RdfFormat, Triple, parse

from graph_store import ResourceIris
from trust import PartyKeys, SealError, encode_multikey, open_sealed_file

from .key_claims import prove_possession
from .train_request import (
    DefinitionSpec,
    RequestSignature,
    RequestTerms,
    TrainRequest,
    definition_triples,
    new_request_id,
    now_created,
    sign_request,
)
from .wire import CheckIn, LeaseIn, OutputIn, StepIn, WorkItem

#: the train states with no way out (``pht:isTerminal`` in ontology/lifecycle.ttl)
TERMINAL_STATES = frozenset({"finished", "failed", "cancelled", "rejected", "withheld"})
RELEASE_GRACE_S = 10.0
"""How long a reader waits for a released output to appear under its digest: the station promotes its staged copy
right after the central service records the release (``station.agent.release``), so a train can be finished a
moment before its last output is readable."""


class ClientError(Exception):
    """The service refused a call, or could not be reached. ``str(e)`` is one sentence for people."""

    def __init__(self, message: str, *, status: int | None = None, report: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.report = report


def _term(value: Mapping[str, str]) -> Any:
    """An RDF term from its SPARQL JSON results form."""
    if value["type"] == "uri":
        return NamedNode(value["value"])
    if value["type"] == "bnode":
        return BlankNode(value["value"])
    if "xml:lang" in value:
        return Literal(value["value"], language=value["xml:lang"])
    return Literal(value["value"], datatype=NamedNode(value["datatype"]) if "datatype" in value else None)


def _first_problem(e: ValidationError) -> str:
    """Pydantic's first complaint as a clause for people: where and what (``0.stop: Input should be ...``)."""
    first = e.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f"; {e.error_count() - 1} more" if e.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


@contextmanager
def _not_sent(what: str) -> Iterator[None]:
    """Turn an invalid request body (a wire model refusing the caller's values) into a :class:`ClientError` of
    one sentence; nothing was sent, so it has no ``status``. The service would have refused it the same way."""
    try:
        yield
    except ValidationError as e:
        raise ClientError(f"{what} was not sent: it is invalid ({_first_problem(e)})") from None


class CentralClient:
    """A connection to one central service as one principal (the token decides who you are).

    ``transport`` lets tests pass an in-process ASGI app; ``timeout`` applies to every request. ``keys``: the
    caller's own keys (a researcher's, as ``pht keys init`` saved and registered them): with them every train this
    client submits is signed, and results encrypted to the caller are opened with them.
    """

    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None, keys: PartyKeys | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.party_keys = keys
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"} if token else {})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CentralClient":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the central service at {self.base_url}: {e}") from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text.strip()[:500] or response.reason_phrase}
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ClientError(str(detail or f"HTTP {response.status_code}"), status=response.status_code,
                              report=body.get("report") if isinstance(body, dict) else None)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def _object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`_call` for an answer that is a JSON object."""
        body = self._call(method, path, **kwargs)
        if not isinstance(body, dict):
            raise ClientError(f"the central service answered {method} {path} with {type(body).__name__}, "
                              "not a JSON object")
        return body

    def _text(self, method: str, path: str, key: str, **kwargs: Any) -> str:
        """The string ``key`` of :meth:`_object`'s answer."""
        value = self._object(method, path, **kwargs).get(key)
        if not isinstance(value, str):
            raise ClientError(f"the central service answered {method} {path} without a string {key!r}")
        return value

    def _pages(self, path: str, params: Mapping[str, Any] | None = None, *, page: int = 200) -> Iterator[Any]:
        """Every item of a paged list: by offset, or by the answer's ``next`` token where the list gives one."""
        offset, after = 0, None
        while True:
            position = {"after": after} if after else {"offset": offset}
            body = self._call("GET", path, params={**(params or {}), "limit": page, **position})
            yield from body["items"]
            offset += len(body["items"])
            if body.get("next"):  # a keyset-paged list (GET /api/trains): the next page starts after this
                after = body["next"]
                continue
            if after or not body["items"] or offset >= body["total"]:
                return

    # -- tokens -------------------------------------------------------------------------------------------

    def revoke_tokens(self, revocation: Mapping[str, Any]) -> dict[str, Any]:
        """Revoke one token (``token_id``) or a station's tokens issued before a cut-off (``station``,
        ``issued_before``) as an operator; returns the recorded revocation."""
        return self._object("POST", "/api/tokens/revocations", json=dict(revocation))

    def renew_token(self) -> str:
        """A new station token for this client's station (station tokens are short-lived); this client uses
        it from now on. Returns it, for whoever else needs it (the station's MPU reads a token file)."""
        token = self._text("POST", "/api/tokens/renew", "token")
        self._http.headers["Authorization"] = f"Bearer {token}"
        return token

    # -- registry -----------------------------------------------------------------------------------------

    def register_station(self, station: Mapping[str, Any]) -> dict[str, str]:
        """Register a station; returns its ``id`` and ``iri``."""
        return self._object("POST", "/api/stations", json=dict(station))

    def register_dataset(self, dataset: Mapping[str, Any]) -> dict[str, str]:
        """Register a dataset; returns its ``id`` and ``iri``."""
        return self._object("POST", "/api/datasets", json=dict(dataset))

    def register_definition(self, definition: Mapping[str, Any]) -> dict[str, str]:
        """Register a definition; returns its ``id`` and ``iri``."""
        return self._object("POST", "/api/definitions", json=dict(definition))

    def stations(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/stations"))

    def datasets(self) -> list[dict[str, Any]]:
        return list(self._pages("/api/datasets"))

    def definitions(self) -> list[dict[str, Any]]:
        """Every registered definition, newest first (the order they were registered)."""
        return list(self._pages("/api/definitions"))

    # -- keys ---------------------------------------------------------------------------------------------

    def keys(self, *, station: str | None = None, researcher: str | None = None) -> dict[str, Any]:
        """A party's public keys (``party``: its IRI; ``keys``: each with use, Multikey, created, expires,
        revoked); without a party, the caller's own (a researcher's, or the token's station's)."""
        params = {k: v for k, v in (("station", station), ("researcher", researcher)) if v is not None}
        return self._object("GET", "/api/keys", params=params)

    def register_keys(self, keys: PartyKeys, party: str | None = None) -> dict[str, Any]:
        """Register this researcher's first public keys, proving possession of ``keys`` (``party``: the caller's
        IRI, asked of the service when not given); returns the party's keys."""
        party = party or self._text("GET", "/api/keys", "party")
        return self._object("POST", "/api/keys", json=prove_possession(keys, party).model_dump())

    def rotate_keys(self, keys: PartyKeys, *, station: str | None = None,
                    researcher: str | None = None) -> dict[str, Any]:
        """Rotate a party's keys to ``keys`` (the caller's own without a party; a station admin: its station; an
        operator: any); the old ones keep verifying older signatures. Returns the party's keys."""
        party = self.keys(station=station, researcher=researcher)["party"]
        body = {**prove_possession(keys, party).model_dump(), "station": station, "researcher": researcher}
        return self._object("POST", "/api/keys/rotate", json=body)

    def revoke_key(self, key: str) -> dict[str, Any]:
        """Revoke the key with IRI ``key`` (its holder or an operator): it verifies nothing from now on."""
        return self._object("POST", "/api/keys/revoke", json={"key": key})

    def enrollment_token(self, station: str, *, valid_for_s: int | None = None) -> dict[str, Any]:
        """A one-time enrollment token for ``station`` (operator): ``token`` (shown once), ``expires``."""
        body = {"valid_for_s": valid_for_s} if valid_for_s is not None else None
        return self._object("POST", f"/api/stations/{quote(station, safe='')}/enrollments", json=body)

    def enroll(self, station: str, token: str, keys: PartyKeys, *, station_iri: str) -> dict[str, Any]:
        """Enroll ``station``'s public keys with a one-time enrollment ``token`` (no bearer token needed),
        proving possession of ``keys`` for ``station_iri`` (the station's IRI at the service:
        ``graph_store.ResourceIris(base).station(id)``). Returns the station's keys."""
        body = {**prove_possession(keys, station_iri).model_dump(), "token": token}
        return self._object("POST", f"/api/stations/{quote(station, safe='')}/enroll", json=body)

    # -- trains (researchers) -----------------------------------------------------------------------------

    def submit(self, definition: str, parameters: Mapping[str, str] | None = None) -> str:
        """Submit a train of a registered definition, signed if this client holds the caller's keys; returns the
        train id."""
        return self.submit_train({"definition": definition, "parameters": dict(parameters or {})})

    def submit_train_file(self, document: Mapping[str, Any]) -> str:
        """Submit a train file's content (docs/train-definition.md): a definition id or a whole definition, which
        the service registers in the same write as the train or not at all, and the parameters; returns the
        train id. Signed if this client holds the caller's keys (see :meth:`submit_train`)."""
        return self.submit_train(document)

    def submit_train(self, document: Mapping[str, Any], keys: PartyKeys | None = None) -> str:
        """Submit a train file's content (see :meth:`submit_train_file`), signed with ``keys`` (the researcher's,
        as ``pht keys init`` saved and registered them) when given: the train request (``client.train_request``)
        of this definition and these parameters, with a new request id, signed by the registered signing key
        that is ``keys.signing`` and naming the current encryption key as the result's recipient. Returns the
        train id; ``ClientError`` if the keys are not registered (or no longer current) or the service refuses.
        Without ``keys``, the client's own (``CentralClient(keys=...)``) sign it; with neither it goes unsigned."""
        body = dict(document)
        keys = keys or self.party_keys
        if keys is not None:
            body["signature"] = self._sign(body, keys).model_dump()
        return self._text("POST", "/api/trains", "id", json=body)

    def _sign(self, document: Mapping[str, Any], keys: PartyKeys) -> RequestSignature:
        mine = self.keys()
        party, registered = str(mine.get("party")), mine.get("keys") or []

        def current(key: Any, what: str) -> str:
            multibase = encode_multikey(key.public_key())
            for record in registered:
                if record.get("multibase") == multibase and not record.get("expires") and not record.get("revoked"):
                    return str(record["iri"])
            raise ClientError(f"your {what} key {multibase} is not a current key of yours at the central service; "
                              "register it with pht keys init (or pht keys rotate)")

        signing, recipient = current(keys.signing, "signing"), current(keys.encryption, "encryption")
        iris = ResourceIris(party[:party.rindex("agents/")])  # the service names its callers {base}agents/{subject}
        definition = document.get("definition")
        parameters = {str(k): str(v) for k, v in (document.get("parameters") or {}).items()}
        try:
            if isinstance(definition, Mapping):
                spec = DefinitionSpec.from_wire(definition)
                content, definition_id = definition_triples(iris, spec), spec.id
            else:
                definition_id = str(definition)
                content = self._definition_content(iris.definition(definition_id))
            request = TrainRequest(new_request_id(), definition_id, requester=party, created=now_created(),
                                   parameters=parameters, recipient=recipient, terms=RequestTerms.from_wire(document))
            return sign_request(iris, content, request, keys.signing, verification_method=signing)
        except (KeyError, TypeError, ValueError) as e:
            raise ClientError(f"the train request could not be signed: the definition is incomplete or invalid "
                              f"({e})") from None

    def _definition_content(self, definition: NamedNode) -> list[Triple]:
        """A registered definition's content triples, as ``definition_content.rq`` reads them at the service."""
        rows = self.named_query("definition_content", definition=definition)["results"]["bindings"]
        if not rows:
            raise ClientError(f"there is no train definition {definition.value} to sign a request for")
        return [Triple(_term(row["s"]), _term(row["p"]), _term(row["o"])) for row in rows]

    def train(self, train_id: str) -> dict[str, Any]:
        return self._object("GET", f"/api/trains/{train_id}")

    def trains(self, state: str | None = None) -> list[dict[str, Any]]:
        return list(self._pages("/api/trains", {"state": state} if state else None))

    def watch(self, train_ids: Sequence[str], *, timeout_s: float = 120,
              interval_s: float = 0.2) -> Iterator[dict[str, dict[str, Any]]]:
        """Poll the trains until every one is terminal, yielding ``{train id: train}`` after each poll in
        which one of them changed (its state or an execution's); TimeoutError when time is up first."""
        deadline, last = time.monotonic() + timeout_s, None
        trains: dict[str, dict[str, Any]] = {}
        while True:
            trains = {tid: trains[tid] if trains.get(tid, {}).get("state") in TERMINAL_STATES else self.train(tid)
                      for tid in train_ids}
            snapshot = {tid: (t["state"], tuple(e["state"] for e in t["executions"])) for tid, t in trains.items()}
            if snapshot != last:
                last = snapshot
                yield trains
            if all(t["state"] in TERMINAL_STATES for t in trains.values()):
                return
            if time.monotonic() > deadline:
                busy = ", ".join(f"{tid} ({t['state']})" for tid, t in trains.items()
                                 if t["state"] not in TERMINAL_STATES)
                raise TimeoutError(f"train(s) {busy} did not end within {timeout_s:g} s")
            time.sleep(interval_s)

    def wait(self, train_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """The train once it is in a terminal state (TimeoutError if it is not within ``timeout_s``)."""
        for trains in self.watch([train_id], timeout_s=timeout_s):
            last = trains[train_id]
        return last

    def events(self, train_id: str) -> list[dict[str, Any]]:
        return list(self._pages(f"/api/trains/{train_id}/events", page=500))

    def cancel(self, train_id: str, reason: str = "") -> str:
        return self._text("POST", f"/api/trains/{train_id}/cancel", "state", json={"reason": reason})

    def sparql(self, query: str) -> dict[str, Any]:
        """Run a SPARQL query; returns the SPARQL JSON results (SELECT/ASK)."""
        return self._object("POST", "/sparql", data={"query": query},
                            headers={"Accept": "application/sparql-results+json"})

    def named_query(self, name: str, **parameters: Any) -> dict[str, Any]:
        """Run ``sparql_queries/NAME.rq`` at the service, its ``$parameters`` bound here as RDF terms
        (pyoxigraph ``NamedNode``/``Literal``): values are never formatted into the query text."""
        from graph_store import GraphStoreError, bind, named_query
        try:
            text = bind(named_query(name).text, parameters)
        except GraphStoreError as e:
            raise ClientError(str(e)) from None
        return self.sparql(text)

    def provenance(self, train: str) -> list[Triple]:
        """The history of the train with IRI ``train`` as ``sparql_queries/train_provenance.rq`` gives it (what
        ``client.execution_records.verify_chain`` checks), over what the caller may read."""
        from graph_store import GraphStoreError, bind, named_query
        try:
            text = bind(named_query("train_provenance").text, {"train": NamedNode(train)})
        except (GraphStoreError, ValueError) as e:
            raise ClientError(str(e)) from None
        try:
            response = self._http.post("/sparql", data={"query": text}, headers={"Accept": "application/n-triples"})
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the central service at {self.base_url}: {e}") from None
        if response.status_code >= 400:
            raise ClientError(f"the provenance of {train} was refused: HTTP {response.status_code}",
                              status=response.status_code)
        try:
            return [Triple(q.subject, q.predicate, q.object)
                    for q in parse(response.content, format=RdfFormat.N_TRIPLES)]
        except SyntaxError as e:
            raise ClientError(f"the central service answered the provenance of {train} with malformed N-Triples: "
                              f"{str(e).splitlines()[0]}") from None

    def result_link(self, train_id: str, execution: str | None = None) -> dict[str, Any]:
        """A link to one released output of your train (``url``, ``sha256``, ``execution``, ``expires``): by default
        the finished train's result, else ``execution``'s output. Only the requester and operators get one."""
        return self._object("GET", f"/api/trains/{train_id}/result",
                            params={"execution": execution} if execution else None)

    def download_result(self, train_id: str, target: Path, *, execution: str | None = None) -> str:
        """Download a released output (see :meth:`result_link`) to the file ``target``, verified: it is written only
        if its bytes have the SHA-256 the graph records, which is returned. The link is its own credential, so
        the bearer token is not sent with it (the link may point at another host)."""
        link = self.result_link(train_id, execution)
        sha256, url = link.get("sha256"), link.get("url")
        if not isinstance(sha256, str) or not isinstance(url, str):
            raise ClientError(f"the central service answered the result of train {train_id} without a link")
        request = self._http.build_request("GET", url)
        del request.headers["Authorization"]
        temp = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        deadline = time.monotonic() + RELEASE_GRACE_S
        while True:
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as e:
                raise ClientError(f"cannot download the result of train {train_id}: {e}") from None
            if response.status_code != 404 or time.monotonic() >= deadline:
                break
            response.close()  # released, not yet promoted by its station (RELEASE_GRACE_S)
            time.sleep(0.1)
        try:
            if response.status_code >= 400:
                response.read()
                try:
                    detail = response.json().get("detail")
                except ValueError:
                    detail = None
                raise ClientError(f"the result link of train {train_id} was refused: "
                                  f"{detail or f'HTTP {response.status_code}'}", status=response.status_code)
            with open(temp, "wb") as out:
                for chunk in response.iter_bytes():
                    digest.update(chunk)
                    out.write(chunk)
        except (OSError, httpx.HTTPError) as e:
            temp.unlink(missing_ok=True)
            raise ClientError(f"cannot download the result of train {train_id} to {target}: {e}") from None
        finally:
            response.close()
        if digest.hexdigest() != sha256:
            temp.unlink(missing_ok=True)
            raise ClientError(f"the result of train {train_id} has different content than recorded (sha256 "
                              f"{digest.hexdigest()}, not {sha256}); nothing was kept")
        os.replace(temp, target)
        return sha256

    def open_result(self, train_id: str, target: Path, *, execution: str | None = None) -> str:
        """Download a released output (:meth:`download_result`: verified against the ciphertext digest the graph
        records) and open it with this client's encryption key (``CentralClient(keys=...)``) into the file
        ``target``: the plain packed output. ``target`` appears only if all of it decrypted; the ciphertext is not
        kept. Returns the ciphertext's digest. ``ClientError`` (one sentence) without keys, or when the output is
        not encrypted to this key (an intermediate output is encrypted to the next station, not to you)."""
        sealed = target.with_name(f".{target.name}.age")
        try:
            sha256 = self.download_result(train_id, sealed, execution=execution)  # the service's refusals first
            if self.party_keys is None:
                raise ClientError(f"the result of train {train_id} is encrypted to its requester, and this client "
                                  "holds no keys to open it (pht keys init creates them; pass --keys)")
            open_sealed_file(sealed, target, self.party_keys.encryption)
        except SealError as e:
            raise ClientError(f"the result of train {train_id} cannot be opened with your key: {e}") from None
        except OSError as e:
            raise ClientError(f"cannot write the result of train {train_id} to {target}: {e}") from None
        finally:
            sealed.unlink(missing_ok=True)
        return sha256

    # -- station side ---------------------------------------------------------------------------------------

    def take_lease(self, station_id: str, holder: str, period_s: float) -> dict[str, Any]:
        """Take or renew the station's lease for ``holder`` (one running agent per station): its ``holder``,
        ``expires`` and ``held``; ``ClientError`` with status 409 naming the agent that holds it."""
        with _not_sent(f"the lease request of station {station_id}"):
            body = LeaseIn(holder=holder, period_s=period_s)
        return self._object("PUT", f"/api/stations/{station_id}/lease", json=body.model_dump(mode="json"))

    def release_lease(self, station_id: str, holder: str) -> None:
        """Release ``holder``'s lease of the station, so that another agent may start at once."""
        self._call("DELETE", f"/api/stations/{station_id}/lease", params={"holder": holder})

    def work(self, station_id: str) -> list[WorkItem]:
        """The station's unfinished executions, each checked against :class:`~client.wire.WorkItem` (a malformed
        one is a ``ClientError``)."""
        path = f"/api/stations/{station_id}/work"
        items = self._call("GET", path)
        if not isinstance(items, list):
            raise ClientError(f"the central service answered GET {path} with {type(items).__name__}, not a JSON list")
        work = []
        for i, item in enumerate(items):
            try:
                work.append(WorkItem.model_validate(item))
            except ValidationError as e:
                raise ClientError(f"the central service answered GET {path} with a malformed work item (item {i}, "
                                  f"{_first_problem(e)})") from None
        return work

    def step(self, execution_id: str, to: str, *, reason: str = "", used: Sequence[str] = (),
             output: OutputIn | None = None) -> str:
        """Fire one lifecycle step of an execution; ``ClientError`` with status 409 if it is not allowed now.
        ``output``: only with ``to="released"``, the released output, recorded together with the release."""
        with _not_sent(f"the step of execution {execution_id} to {to!r}"):
            body = StepIn(to=to, reason=reason, used=list(used), output=output)
        return self._text("POST", f"/api/executions/{execution_id}/steps", "state",
                          json=body.model_dump(mode="json", exclude_none=True))

    def add_output(self, execution_id: str, *, sha256: str, byte_size: int, title: str = "",
                   checks: Sequence[CheckIn | Mapping[str, Any]] = ()) -> None:
        """Record an output before its release, with the station's automatic checks of it (``CheckIn``, or mappings of
        its fields). The station agent never calls this: it sends its output with the release step (:meth:`step`),
        so that nothing about an output under review leaves the station (docs/station.md)."""
        with _not_sent(f"the output of execution {execution_id}"):
            body = OutputIn(sha256=sha256, byte_size=byte_size, title=title,
                            checks=[CheckIn.model_validate(c) for c in checks])
        self._call("POST", f"/api/executions/{execution_id}/outputs",
                   json=body.model_dump(mode="json", exclude_none=True))

"""Revocation checks cost what one token needs (issue 16, item 6), each promise played by an attacker:

* among thousands of recorded revocations the verifier reads, per token, only what concerns it (at most two
  rows: is its jti revoked, its station's latest cut-off), and still refuses a revoked token and its station's
  earlier tokens (the latest cut-off counts, whatever time zone it was written in) and accepts the others;
* a flood of distinct signed tokens cannot grow the verifier's memory (a bounded LRU), and a token whose signature
  does not verify is never asked about;
* an answer read while a revocation commits is not kept (the embedded store keeps answers until a write);
* a store that cannot be read answers 503, never accepts;
* on a shared remote store (a REAL Oxigraph server) a revocation recorded by another replica takes effect within
  ``cache_s``, and at once for the replica that recorded it.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
import pytest
import servers
from api_helpers import SETTINGS
from conftest import Closing
from pyoxigraph import Literal, NamedNode, Quad

from graph_store import (
    CENTRAL_GRAPH,
    DEFAULT_BASE_IRI,
    PHT,
    RDF_TYPE,
    XSD,
    ChangeSet,
    EmbeddedStore,
    RemoteStore,
    parse_rdf,
)
from orchestrator.auth import AuthError, TokenVerifier, VerificationUnavailable, issue_token
from orchestrator.naming import Iris
from orchestrator.principal import Principal, Role
from orchestrator.revocations import Revocations, RevocationSet
from orchestrator.settings import DEMO_SECRET

REPO = Path(__file__).resolve().parents[2]
EX = "https://pht.example.org/id/"
RECORDED = 2000


class CountingStore(EmbeddedStore):
    """An embedded store that remembers how many rows each named query returned."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, int]] = []

    def run_query(self, name: str, **bindings: Any) -> Any:
        rows = list(super().run_query(name, **bindings))
        self.rows.append((name, len(rows)))
        return rows


def revocation(n: int, *facts: tuple[NamedNode, Any]) -> list[Quad]:
    """A valid ``pht:TokenRevocation`` ``n`` with ``facts``."""
    iri = NamedNode(f"{EX}token-revocations/bulk-{n}")
    return [Quad(iri, RDF_TYPE, PHT.TokenRevocation, CENTRAL_GRAPH),
            Quad(iri, PHT.revokedAt, Literal("2026-11-27T10:00:00Z", datatype=XSD.dateTime), CENTRAL_GRAPH),
            Quad(iri, PHT.revokedBy, Literal("ops"), CENTRAL_GRAPH),
            *(Quad(iri, p, o, CENTRAL_GRAPH) for p, o in facts)]


def jti(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["jti"])


def station_token(sid: str) -> str:
    return issue_token(DEMO_SECRET, subject=f"station-{sid}", roles=[Role.STATION], station=sid)


def refusal(verifier: TokenVerifier, token: str) -> str | None:
    try:
        verifier.verify(token)
    except AuthError as e:
        return str(e)
    return None


def test_among_thousands_of_revocations_a_check_reads_what_concerns_one_token() -> None:
    store = CountingStore()
    store.apply(ChangeSet(insert=parse_rdf(
        (REPO / "tests/fixtures/shapes/valid/stations.ttl").read_bytes(), "text/turtle", CENTRAL_GRAPH)))
    stolen, other = station_token("leipzig"), station_token("leipzig")
    aachen = station_token("aachen")
    issued = jwt.decode(aachen, options={"verify_signature": False})["iat"]
    # aachen's cut-offs: old ones, and the latest (a second after its token was issued) written in -05:00, so that
    # as text it sorts before the others: compared as text an older one would win and the token pass
    latest = datetime.fromtimestamp(issued + 1, timezone.utc).astimezone(timezone(timedelta(hours=-5)))
    cutoffs = [latest] + [latest - timedelta(hours=h) for h in range(2, 11)]
    bulk = [q for n in range(RECORDED - len(cutoffs) - 1)
            for q in revocation(n, (PHT.revokesToken, Literal(f"{n:032x}")))]
    bulk += revocation(RECORDED, (PHT.revokesToken, Literal(jti(stolen))))
    bulk += [q for n, cutoff in enumerate(cutoffs, RECORDED + 1) for q in revocation(
        n, (PHT.revokesStation, NamedNode(f"{EX}station-aachen")),
        (PHT.revokesIssuedBefore, Literal(cutoff.isoformat(timespec="milliseconds"), datatype=XSD.dateTime)))]
    store.apply(ChangeSet(insert=bulk))  # recorded in one change set
    assert len(store.quads(None, RDF_TYPE, PHT.TokenRevocation, CENTRAL_GRAPH)) == RECORDED + 2  # the fixture's 2
    revocations = Revocations(store, Iris(DEFAULT_BASE_IRI), cache_s=2)
    verifier = TokenVerifier(SETTINGS, revoked=revocations.check)

    assert refusal(verifier, stolen) == "token has been revoked"
    assert refusal(verifier, other) is None, "leipzig's cut-off (the fixture's, 2026-11-27) is before its tokens"
    assert "station aachen" in str(refusal(verifier, aachen)), "the latest cut-off counts"
    assert refusal(verifier, station_token("cologne")) is None  # no cut-off, jti not revoked
    assert refusal(verifier, issue_token(DEMO_SECRET, subject="ops", roles=[Role.OPERATOR])) is None
    reads = [n for name, n in store.rows if name == "token_revocations"]
    assert len(reads) == 5 and max(reads) <= 2, f"rows read per check: {reads} (not the {RECORDED} recorded)"
    # a token issued at the cut-off passes; a station token without iat cannot be shown newer than it: revoked
    assert revocations.check({"station": "aachen", "iat": issued + 1}) is None
    assert revocations.check({"station": "aachen", "iat": issued + 0.5}) is not None
    assert revocations.check({"station": "aachen"}) is not None


def test_a_flood_of_distinct_tokens_cannot_grow_the_cache_and_a_forged_one_is_never_asked_about() -> None:
    store = CountingStore()
    revocations = Revocations(store, Iris(DEFAULT_BASE_IRI), cache_s=2, size=50)
    verifier = TokenVerifier(SETTINGS, revoked=revocations.check)
    kept = issue_token(DEMO_SECRET, subject="ops", roles=[Role.OPERATOR])
    assert isinstance(verifier.verify(kept), Principal)
    for n in range(400):  # distinct valid tokens, each with its own jti
        verifier.verify(issue_token(DEMO_SECRET, subject=f"flood-{n}", roles=[Role.RESEARCHER]))
        if n % 10 == 0:
            verifier.verify(kept)  # in use: an LRU keeps it
        assert len(revocations._answers) <= 50  # noqa: SLF001 - the bound is the promise
    assert sum(1 for name, _ in store.rows if name == "token_revocations") == 401, "one read per new token"
    forged = issue_token("x" * 32 + "another secret", subject="mallory", roles=[Role.OPERATOR])
    before = len(store.rows)
    with pytest.raises(AuthError):
        verifier.verify(forged)
    assert len(store.rows) == before, "a token whose signature does not verify reached the revocation check"


@pytest.mark.real_component("oxigraph")
def test_on_a_remote_store_another_replicas_revocation_takes_effect_within_cache_s(
        oxigraph_endpoint: servers.OxigraphServer, closing: Closing) -> None:
    now = [0.0]
    stores = [closing(RemoteStore(oxigraph_endpoint.query_url, oxigraph_endpoint.update_url, timeout=20))
              for _ in range(2)]
    reader = Revocations(stores[0], Iris(DEFAULT_BASE_IRI), cache_s=2, clock=lambda: now[0])
    writer = Revocations(stores[1], Iris(DEFAULT_BASE_IRI), cache_s=2, clock=lambda: now[0])
    token = issue_token(DEMO_SECRET, subject="ops", roles=[Role.OPERATOR])
    claims = {"jti": jti(token)}
    assert reader.check(claims) is None and writer.check(claims) is None
    writer.revoke(Principal("ops", frozenset({Role.OPERATOR})), token_id=claims["jti"])
    assert writer.check(claims) == "token has been revoked", "the replica that recorded it refuses at once"
    now[0] = 1.9
    assert reader.check(claims) is None  # its answer is reused within cache_s (no store read per request)
    now[0] = 2.0
    assert reader.check(claims) == "token has been revoked", "not in effect after cache_s"


def test_an_answer_read_while_a_revocation_commits_is_not_kept() -> None:
    """The embedded store keeps answers until a write may change them: one read before a revocation's commit and
    stored after it would accept the revoked token for good."""
    store = EmbeddedStore()
    revocations = Revocations(store, Iris(DEFAULT_BASE_IRI), cache_s=2)
    read = revocations._read
    token = {"jti": "stolen"}

    def read_then_revoked(jti: str | None, station: str | None) -> RevocationSet:
        answer = read(jti, station)  # not revoked yet; the revocation commits before the answer is stored
        store.apply(ChangeSet(insert=revocation(1, (PHT.revokesToken, Literal("stolen")))))
        revocations._read = read  # type: ignore[method-assign]  # once
        return answer

    revocations._read = read_then_revoked  # type: ignore[method-assign]  # a commit during the read
    assert revocations.check(token) is None  # the answer of the read that began before the commit
    assert revocations.check(token) == "token has been revoked"


def test_a_store_that_cannot_be_read_neither_accepts_nor_refuses() -> None:
    """The answer is 503 (``VerificationUnavailable``), never an acceptance: a revoked token must not pass while
    the store is down."""
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/query"
    revocations = Revocations(RemoteStore(url, url, timeout=2), Iris(DEFAULT_BASE_IRI), cache_s=2)
    verifier = TokenVerifier(SETTINGS, revoked=revocations.check)
    with pytest.raises(VerificationUnavailable, match="cannot be read now"):
        verifier.verify(issue_token(DEMO_SECRET, subject="ops", roles=[Role.OPERATOR]))

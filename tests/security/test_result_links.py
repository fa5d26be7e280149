"""Results are reachable only by their requester: the central service keeps the object store's credentials and
hands a train's requester (or an operator) a link that reads exactly that one result for a few minutes.

Before: every researcher held read credentials of the one content-addressed results bucket (``GET /api/settings``
handed out ``PHT_RESEARCHER_OBJECTS_URL``), so researcher B read researcher A's result by its digest.

The store is a real S3 API (moto); the stations' own upload code puts the objects there. moto itself checks no
signature, so every refusal below is the central service's (``orchestrator/results.py``).
"""

from __future__ import annotations

import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from api_helpers import ALICE, BOB, DIGEST, OPS, SETTINGS, admin, register_world, service, signed, station
from central_thread import central_service
from fastapi.testclient import TestClient
from servers import S3Server

from client import CentralClient, ClientError
from orchestrator.settings import Settings, SettingsError
from station.objects import object_store_from_url

pytestmark = pytest.mark.real_component("s3")

WALK = (("waiting-for-approval", station), ("approved", admin), ("pulling", station), ("running", station),
        ("output-under-review", station))


@dataclass
class World:
    client: TestClient
    s3: S3Server
    bucket: str
    alice: str  # alice's finished train
    alice_sha: str
    alice_bytes: bytes
    bob: str  # bob's finished train
    bob_sha: str
    bob_bytes: bytes


def s3_url(s3: S3Server, bucket: str) -> str:
    return f"s3+http://{s3.access_key}:{s3.secret_key}@{s3.endpoint}/{bucket}"


SOLO = {"id": "solo", "title": "one stop", "image_name": "pht/solo", "image_digest": DIGEST, "mode": "incremental",
        "route": ["aachen"]}


def finished_train(client: TestClient | httpx.Client, who: dict[str, str], url: str | None, content: bytes, tmp: Path) -> tuple[str, str]:
    """A train of ``who``'s through aachen alone, its output uploaded by the stations' own code to the store ``url``
    names (none: not uploaded) and released."""
    packed = tmp / f"{uuid.uuid4().hex}.tar.gz"
    packed.write_bytes(content)
    sha = hashlib.sha256(content).hexdigest() if url is None else object_store_from_url(url).put_file(packed)
    r = client.post("/api/trains", headers=who, json=signed(client, who, {"definition": "solo", "parameters": {}}))
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    eid = f"{tid}.r1-s0"
    for to, by in WALK:
        r = client.post(f"/api/executions/{eid}/steps", headers=by("aachen"), json={"to": to})
        assert r.status_code == 200, r.text
    r = client.post(f"/api/executions/{eid}/steps", headers=station("aachen"),
                    json={"to": "released", "output": {"sha256": sha, "byte_size": len(content)}})
    assert r.status_code == 200, r.text
    assert client.get(f"/api/trains/{tid}", headers=who).json()["state"] == "finished"
    return tid, sha


@pytest.fixture()
def make_world(s3_endpoint: S3Server, tmp_path: Path) -> Iterator[Callable[[float], World]]:
    """A service reading results from a fresh bucket, links living ``ttl_s`` seconds; alice's and bob's trains
    finished there."""
    with ExitStack() as stack:

        def make(ttl_s: float = 300) -> World:
            bucket = f"results-{uuid.uuid4().hex[:12]}"
            url = s3_url(s3_endpoint, bucket)
            client = stack.enter_context(service(settings=replace(SETTINGS, results_store_url=url,
                                                                  result_link_ttl_s=ttl_s)))
            r = client.post("/api/definitions", headers=ALICE, json=SOLO)
            assert r.status_code == 201, r.text
            alice_bytes, bob_bytes = b"alice's result: 17 patients", b"bob's result: 4 patients"
            alice, alice_sha = finished_train(client, ALICE, url, alice_bytes, tmp_path)
            bob, bob_sha = finished_train(client, BOB, url, bob_bytes, tmp_path)
            return World(client, s3_endpoint, bucket, alice, alice_sha, alice_bytes, bob, bob_sha, bob_bytes)

        yield make


def link(world: World, train: str, who: dict[str, str]) -> str:
    r = world.client.get(f"/api/trains/{train}/result", headers=who)
    assert r.status_code == 200, r.text
    return str(r.json()["url"])


def one_sentence(r: httpx.Response) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail, detail
    return detail


# -- nobody but the requester (and operators) gets a link ---------------------------------------------------------


@pytest.mark.parametrize("who", ["bob", "station aachen", "admin aachen", "station cologne", "admin cologne"])
def test_nobody_else_gets_a_link_to_a_researchers_result(make_world: Callable[[float], World], who: str) -> None:
    w = make_world(300)
    headers = {"bob": BOB, "station aachen": station("aachen"), "admin aachen": admin("aachen"),
               "station cologne": station("cologne"), "admin cologne": admin("cologne")}[who]
    for params in ({}, {"execution": f"{w.alice}.r1-s0"}):
        r = w.client.get(f"/api/trains/{w.alice}/result", headers=headers, params=params)
        assert r.status_code == 403, r.text
        one_sentence(r)
        assert w.alice_sha not in r.text and "/api/results/" not in r.text
    # the service keeps serving the requester and operators
    for owner in (ALICE, OPS):
        assert w.client.get(link(w, w.alice, owner)).content == w.alice_bytes


def test_the_requester_reads_the_result_through_the_link_alone(make_world: Callable[[float], World]) -> None:
    w = make_world(300)
    r = w.client.get(f"/api/trains/{w.alice}/result", headers=ALICE)
    assert r.status_code == 200 and r.json()["sha256"] == w.alice_sha and r.json()["execution"] == f"{w.alice}.r1-s0"
    got = w.client.get(r.json()["url"])  # no token: the link is the credential
    assert got.status_code == 200 and got.content == w.alice_bytes


# -- nothing the platform gives a researcher opens the bucket -----------------------------------------------------


def test_nothing_the_platform_gives_a_researcher_names_or_opens_the_bucket(make_world: Callable[[float], World]) -> None:
    w = make_world(300)
    answers = [w.client.get(path, headers=BOB) for path in (
        "/api/settings", f"/api/trains/{w.bob}", "/api/trains", f"/api/trains/{w.bob}/result",
        f"/api/trains/{w.bob}/events")]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    everything = "\n".join(a.text for a in answers)
    for secret in (w.s3.access_key, w.s3.secret_key, w.s3.endpoint, w.bucket, "s3+http", "s3://"):
        assert secret not in everything, f"a researcher was given {secret!r}"
    assert answers[0].json()["results_served"] is True  # and no store URL: nothing to read the bucket with
    url = answers[3].json()["url"]
    assert urlsplit(url).netloc == "testserver" and urlsplit(url).path == f"/api/results/{w.bob_sha}"
    # the link's path without a digest lists nothing
    assert w.client.get("/api/results/").status_code in (404, 405)
    assert w.client.get("/api/results").status_code in (404, 405)


def test_the_old_setting_that_handed_out_the_bucket_is_refused() -> None:
    env = {"PHT_JWT_SECRET": "x" * 40, "PHT_STORE_IN_MEMORY": "1",
           "PHT_RESEARCHER_OBJECTS_URL": "s3://READ:ONLY@minio.example.org/results"}
    with pytest.raises(SettingsError, match="PHT_RESULTS_STORE_URL"):
        Settings.from_env(env)


# -- a link reads its one object, only until it expires ----------------------------------------------------------


def test_a_link_for_one_object_does_not_read_another(make_world: Callable[[float], World]) -> None:
    w = make_world(300)
    own = link(w, w.bob, BOB)
    parts = urlsplit(own)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    other_link = urlsplit(link(w, w.alice, ALICE))
    other_signature = parse_qs(other_link.query)["signature"][0]
    forgeries = {
        "another digest": (f"/api/results/{w.alice_sha}", query),
        "a later expiry": (parts.path, {**query, "expires": str(int(query["expires"]) + 3600)}),
        "another link's signature": (parts.path, {**query, "signature": other_signature}),
        "no signature": (parts.path, {"expires": query["expires"], "signature": "0" * 64}),
    }
    for what, (path, params) in forgeries.items():
        r = w.client.get(path, params=params)
        assert r.status_code == 403, (what, r.status_code, r.text)
        assert "not valid" in one_sentence(r), what
        assert w.alice_bytes not in r.content and w.bob_bytes not in r.content, what
    assert w.client.get(own).content == w.bob_bytes  # the link itself still reads its object


def test_a_link_expires(make_world: Callable[[float], World]) -> None:
    w = make_world(1)
    url = link(w, w.alice, ALICE)
    assert w.client.get(url).content == w.alice_bytes
    expires = int(parse_qs(urlsplit(url).query)["expires"][0])
    time.sleep(max(0.0, expires - time.time()) + 1.1)
    r = w.client.get(url)
    assert r.status_code == 403 and "expired" in one_sentence(r) and w.alice_bytes not in r.content
    assert w.client.get(link(w, w.alice, ALICE)).content == w.alice_bytes  # a new link reads again


def test_a_link_to_an_object_gone_from_the_store_is_a_404(make_world: Callable[[float], World]) -> None:
    w = make_world(300)
    from minio import Minio
    url = link(w, w.bob, BOB)
    Minio(w.s3.endpoint, access_key=w.s3.access_key, secret_key=w.s3.secret_key, secure=False).remove_object(
        w.bucket, f"sha256/{w.bob_sha}")
    r = w.client.get(url)
    assert r.status_code == 404 and w.bob_sha in one_sentence(r)
    assert w.client.get(link(w, w.alice, ALICE)).content == w.alice_bytes


def test_results_are_not_served_without_an_object_store(tmp_path: Path) -> None:
    with service() as client:  # the operator set no PHT_RESULTS_STORE_URL
        assert client.post("/api/definitions", headers=ALICE, json=SOLO).status_code == 201
        running = client.post("/api/trains", headers=ALICE, json=signed(client, ALICE, {"definition": "solo", "parameters": {}})).json()["id"]
        r = client.get(f"/api/trains/{running}/result", headers=ALICE)
        assert r.status_code == 409 and "not finished" in one_sentence(r)
        tid, _ = finished_train(client, ALICE, None, b"a result", tmp_path)
        r = client.get(f"/api/trains/{tid}/result", headers=ALICE)
        assert r.status_code == 503 and "PHT_RESULTS_STORE_URL" in one_sentence(r)
        assert client.get(f"/api/trains/{tid}/result", headers=BOB).status_code == 403
        assert client.get("/api/settings", headers=ALICE).json()["results_served"] is False


def test_the_client_keeps_no_result_whose_bytes_differ_from_the_recorded_digest(s3_endpoint: S3Server,
                                                                                tmp_path: Path) -> None:
    """Whoever can write the store (a station's credentials) cannot hand the requester other bytes: the client
    verifies the download against the digest the graph records and keeps nothing else."""
    from minio import Minio

    bucket = f"results-{uuid.uuid4().hex[:12]}"
    url = s3_url(s3_endpoint, bucket)
    with central_service(settings=replace(SETTINGS, results_store_url=url)) as central, \
            httpx.Client(base_url=central.url) as http:
        register_world(http)
        assert http.post("/api/definitions", headers=ALICE, json=SOLO).status_code == 201
        tid, sha = finished_train(http, ALICE, url, b"the released result", tmp_path)
        with CentralClient(central.url, ALICE["Authorization"].split()[1]) as alice:
            assert alice.download_result(tid, tmp_path / "ok.tar.gz") == sha
            assert (tmp_path / "ok.tar.gz").read_bytes() == b"the released result"
            Minio(s3_endpoint.endpoint, access_key=s3_endpoint.access_key, secret_key=s3_endpoint.secret_key,
                  secure=False).put_object(bucket, f"sha256/{sha}", io.BytesIO(b"forged bytes"), 12)
            with pytest.raises(ClientError, match="different content"):
                alice.download_result(tid, tmp_path / "forged.tar.gz")
    assert not (tmp_path / "forged.tar.gz").exists() and not list(tmp_path.glob(".*.part"))


def test_the_client_sends_its_token_to_the_central_service_only_never_with_a_link(tmp_path: Path) -> None:
    """A link may point at another host (a store, a proxy): the researcher's bearer token must not travel there."""
    body = b"a result"
    seen: dict[str, httpx.Headers] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        seen[request.url.host] = request.headers
        if request.url.host == "central.example":
            return httpx.Response(200, json={"train": "t", "execution": "t.r1-s0", "expires": "2030-01-01T00:00:00Z",
                                             "sha256": hashlib.sha256(body).hexdigest(),
                                             "url": "https://store.example/results/x?signature=s"})
        return httpx.Response(200, content=body)

    with CentralClient("https://central.example", "the-researchers-token",
                       transport=httpx.MockTransport(answer)) as client:
        assert client.download_result("t", tmp_path / "r.tar.gz") == hashlib.sha256(body).hexdigest()
    assert seen["central.example"]["Authorization"] == "Bearer the-researchers-token"
    assert "Authorization" not in seen["store.example"]
    assert "the-researchers-token" not in str(seen["store.example"].raw)


def test_the_client_waits_a_moment_for_a_released_output_its_station_has_not_yet_promoted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A station promotes its staged copy right after the central service records the release, so the link may
    answer 404 for a moment after the train finished: the client tries again within RELEASE_GRACE_S, then gives up."""
    import client.central

    body, misses = b"a result", [2]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "central.example":
            return httpx.Response(200, json={"train": "t", "execution": "t.r1-s0", "expires": "2030-01-01T00:00:00Z",
                                             "sha256": hashlib.sha256(body).hexdigest(),
                                             "url": "https://store.example/results/x?signature=s"})
        if misses[0] > 0:
            misses[0] -= 1
            return httpx.Response(404, json={"detail": "result x is not in the object store"})
        return httpx.Response(200, content=body)

    with CentralClient("https://central.example", "t", transport=httpx.MockTransport(answer)) as client_:
        assert client_.download_result("t", tmp_path / "r.tar.gz") == hashlib.sha256(body).hexdigest()
        assert misses == [0]
        misses[0] = 10**6  # never promoted: refused once the grace has passed
        monkeypatch.setattr(client.central, "RELEASE_GRACE_S", 0.3)
        with pytest.raises(ClientError, match="not in the object store"):
            client_.download_result("t", tmp_path / "never.tar.gz")
    assert not (tmp_path / "never.tar.gz").exists()

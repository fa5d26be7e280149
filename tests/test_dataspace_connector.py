"""Two connectors over HTTP on loopback: catalog, negotiation, pull and push, and every refusal the issue lists.

Each refusal is checked for its status, a DSP error body that is schema-valid, and that nothing was written or
transferred. Attackers are participants with valid tokens of their own, or none.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from pyoxigraph import Literal

from dataspace import (
    DATASPACE_GRAPH,
    IdentityIssuer,
    Policy,
    PublishedResult,
    TransferFailed,
    validate_message,
)
from dataspace._messages import message
from dataspace._vocab import CONSUMER, PROVIDER
from graph_store import PHT
from dataspace_helpers import CONSORTIUM, PURPOSE, TRAIN, Participant, participant

ISSUER = IdentityIssuer.generate("urn:issuer:data-space")


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Participant]]:
    work = tmp_path_factory.mktemp("dataspace")
    with participant(work, "provider", ISSUER) as provider, \
            participant(work, "consumer", ISSUER, memberships=(CONSORTIUM,), purposes=(PURPOSE,)) as consumer, \
            participant(work, "outsider", ISSUER, purposes=(PURPOSE,)) as outsider:
        yield {"provider": provider, "consumer": consumer, "outsider": outsider}


def publish(p: Participant, tmp_path: Path, policy: str, size: int = 2048) -> tuple[PublishedResult, bytes]:
    data = os.urandom(size)
    f = tmp_path / f"{uuid.uuid4()}.bin"
    f.write_bytes(data)
    return p.connector.provider.publish(train=TRAIN, title="Cohort count, pooled", data=f,
                                        policy=Policy.parse(policy)), data


PROVIDER_ID = "urn:participant:provider"
STANDARD = f"purpose={PURPOSE},member={CONSORTIUM}"


def dataset_of(consumer: Participant, provider: Participant, result: PublishedResult) -> dict:
    catalog = consumer.connector.consumer.request_catalog(provider.url)
    return next(d for d in catalog["dataset"] if d["@id"] == result.iri.value)


def token_of(p: Participant) -> str:
    return p.connector.core.identity_token()


def post(url: str, body: object, who: Participant | None = None, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or token_of(who)}"} if (who or token) else {}
    return httpx.post(url, json=body, headers=headers, timeout=10)


def graph_size(p: Participant) -> int:
    return len(list(p.store.oxigraph.quads_for_pattern(None, None, None, DATASPACE_GRAPH)))


def refused(r: httpx.Response, status: int, error_type: str, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    validate_message(body, error_type)
    assert words in body["reason"][0], body


def state(p: Participant, cls: str, **pid: str) -> str:
    role = PROVIDER if p.connector.settings.participant_id.endswith("provider") else CONSUMER
    found = p.connector.core.records.process(getattr(PHT, cls), role=role, **pid)
    assert found is not None
    return found.state_name


def negotiation_pids(consumer: Participant, result: PublishedResult) -> tuple[str, str]:
    """The consumer and provider ids of the consumer's negotiation for ``result``."""
    rows = list(consumer.store.select(
        "SELECT ?cpid ?ppid WHERE { GRAPH ?g { ?n a <https://w3id.org/pht-kg/vocab#ContractNegotiation> ; "
        "<https://w3id.org/pht-kg/vocab#consumerPid> ?cpid ; <https://w3id.org/pht-kg/vocab#providerPid> ?ppid ; "
        "<https://w3id.org/pht-kg/vocab#negotiatedResult> $r } }", bindings={"r": result.iri}))
    return rows[0]["cpid"].value, rows[0]["ppid"].value


# -- catalog ------------------------------------------------------------------------------------------------------


def test_catalog_lists_published_results_with_their_offer_and_provenance(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, f"{STANDARD},until=2099-01-01T00:00:00Z")
    catalog = consumer.connector.consumer.request_catalog(provider.url)
    validate_message(catalog, "Catalog")
    assert catalog["participantId"] == "urn:participant:provider"
    d = next(d for d in catalog["dataset"] if d["@id"] == result.iri.value)
    assert d["http://www.w3.org/ns/prov#wasDerivedFrom"] == {"@id": TRAIN}
    assert d["https://w3id.org/pht-kg/vocab#sha256"] == result.sha256
    constraints = d["hasPolicy"][0]["permission"][0]["constraint"]
    assert {(c["leftOperand"], c["rightOperand"]) for c in constraints} == {
        ("purpose", PURPOSE), ("https://w3id.org/pht-kg/vocab#memberOf", CONSORTIUM),
        ("dateTime", "2099-01-01T00:00:00Z")}
    assert {x["format"] for x in d["distribution"]} == {"HttpData-PULL", "HttpData-PUSH"}


def test_a_withdrawn_result_leaves_the_catalog(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    provider.connector.provider.withdraw(result.iri)
    ids = {d["@id"] for d in consumer.connector.consumer.request_catalog(provider.url).get("dataset", [])}
    assert result.iri.value not in ids


def test_catalog_needs_a_trusted_identity(space) -> None:
    provider = space["provider"]
    request = message("CatalogRequestMessage")
    refused(post(f"{provider.url}/catalog/request", request), 401, "CatalogError", "no identity token")
    forged = IdentityIssuer.generate(ISSUER.issuer).issue("urn:participant:consumer")  # same name, other key
    refused(post(f"{provider.url}/catalog/request", request, token=forged), 401, "CatalogError", "not valid")
    refused(post(f"{provider.url}/catalog/request", {"@type": "CatalogRequestMessage"}, space["consumer"]), 400,
            "CatalogError", "@context")


# -- negotiation and transfer -------------------------------------------------------------------------------------


def test_negotiation_then_pull_then_push(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, data = publish(provider, tmp_path, STANDARD)
    c = consumer.connector.consumer
    agreement = c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    a = provider.connector.core.records.agreement(agreement, role=PROVIDER)
    assert a is not None and a.assignee == "urn:participant:consumer" and a.result == result.iri
    assert c.pull(provider.url, agreement, sha256=result.sha256) == data
    assert c.push(provider.url, agreement) == data


def test_the_negotiation_is_finalized_on_both_sides_and_only_its_consumer_reads_it(space, tmp_path) -> None:
    provider, consumer, outsider = space["provider"], space["consumer"], space["outsider"]
    result, _ = publish(provider, tmp_path, STANDARD)
    c = consumer.connector.consumer
    c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    cpid, ppid = negotiation_pids(consumer, result)
    assert state(consumer, "ContractNegotiation", consumer_pid=cpid) == "FINALIZED"
    assert state(provider, "ContractNegotiation", provider_pid=ppid) == "FINALIZED"
    r = httpx.get(f"{provider.url}/negotiations/{ppid}", headers={"Authorization": f"Bearer {token_of(consumer)}"})
    assert r.status_code == 200 and validate_message(r.json(), "ContractNegotiation")["state"] == "FINALIZED"
    # another participant neither reads it nor terminates it (DSP: unauthorized is 404)
    r = httpx.get(f"{provider.url}/negotiations/{ppid}", headers={"Authorization": f"Bearer {token_of(outsider)}"})
    refused(r, 404, "ContractNegotiationError", "No process")
    term = message("ContractNegotiationTerminationMessage", providerPid=ppid, consumerPid=cpid, code="x")
    refused(post(f"{provider.url}/negotiations/{ppid}/termination", term, outsider), 404,
            "ContractNegotiationError", "No process")
    assert state(provider, "ContractNegotiation", provider_pid=ppid) == "FINALIZED"
    # replayed or out-of-order messages on a finalized negotiation: 400, state unchanged
    verify = message("ContractAgreementVerificationMessage", providerPid=ppid, consumerPid=cpid)
    refused(post(f"{provider.url}/negotiations/{ppid}/agreement/verification", verify, consumer), 400,
            "ContractNegotiationError", "not allowed in state FINALIZED")
    accepted = message("ContractNegotiationEventMessage", providerPid=ppid, consumerPid=cpid, eventType="ACCEPTED")
    refused(post(f"{provider.url}/negotiations/{ppid}/events", accepted, consumer), 400,
            "ContractNegotiationError", "not allowed")
    assert state(provider, "ContractNegotiation", provider_pid=ppid) == "FINALIZED"


def test_a_consumer_whose_claims_do_not_satisfy_the_policy_is_refused(space, tmp_path) -> None:
    provider, outsider = space["provider"], space["outsider"]
    result, _ = publish(provider, tmp_path, STANDARD)
    size = graph_size(provider)
    with pytest.raises(TransferFailed, match=f"403.*members of {CONSORTIUM}"):
        outsider.connector.consumer.negotiate(provider.url, dataset_of(outsider, provider, result), provider_id=PROVIDER_ID)
    assert graph_size(provider) == size  # nothing written at the provider


def test_a_request_must_carry_the_published_offer(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    d = dataset_of(consumer, provider, result)
    weaker = {"@id": d["hasPolicy"][0]["@id"], "@type": "Offer", "target": result.iri.value,
              "permission": [{"action": "use"}]}  # the offer's id with its constraints dropped
    body = message("ContractRequestMessage", consumerPid=f"urn:uuid:{uuid.uuid4()}", offer=weaker,
                   callbackAddress=f"{consumer.url}/callback")
    size = graph_size(provider)
    refused(post(f"{provider.url}/negotiations/request", body, consumer), 400, "ContractNegotiationError",
            "not the one this provider publishes")
    assert graph_size(provider) == size


def test_a_replayed_initial_request_is_refused(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    d = dataset_of(consumer, provider, result)
    body = message("ContractRequestMessage", consumerPid=f"urn:uuid:{uuid.uuid4()}",
                   offer={**d["hasPolicy"][0], "target": d["@id"]}, callbackAddress=f"{consumer.url}/unused")
    first = post(f"{provider.url}/negotiations/request", body, consumer)
    assert first.status_code == 201, first.text
    refused(post(f"{provider.url}/negotiations/request", body, consumer), 400, "ContractNegotiationError",
            "exists already")
    count = provider.store.select(
        "SELECT (COUNT(?n) AS ?n_) WHERE { GRAPH ?g { ?n <https://w3id.org/pht-kg/vocab#consumerPid> $c } }",
        bindings={"c": Literal(body["consumerPid"])})
    assert int(next(iter(count))["n_"].value) == 1  # the replay created no second negotiation


def test_out_of_order_verification_before_agreement_is_refused(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    d = dataset_of(consumer, provider, result)
    cpid = f"urn:uuid:{uuid.uuid4()}"
    # a callback that never answers, so the provider stays REQUESTED -> AGREED -> TERMINATED; verify early
    body = message("ContractRequestMessage", consumerPid=cpid, offer={**d["hasPolicy"][0], "target": d["@id"]},
                   callbackAddress="http://127.0.0.1:9/nowhere")
    ppid = post(f"{provider.url}/negotiations/request", body, consumer).json()["providerPid"]
    deadline = time.monotonic() + 15  # it passes AGREED on the way: wait for the end state, not for a change
    while state(provider, "ContractNegotiation", provider_pid=ppid) != "TERMINATED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state(provider, "ContractNegotiation", provider_pid=ppid) == "TERMINATED"  # undeliverable agreement
    verify = message("ContractAgreementVerificationMessage", providerPid=ppid, consumerPid=cpid)
    refused(post(f"{provider.url}/negotiations/{ppid}/agreement/verification", verify, consumer), 400,
            "ContractNegotiationError", "not allowed in state TERMINATED")


def test_a_spoofed_callback_is_refused(space, tmp_path) -> None:
    provider, consumer, outsider = space["provider"], space["consumer"], space["outsider"]
    result, _ = publish(provider, tmp_path, STANDARD)
    c = consumer.connector.consumer
    c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    cpid, _ = negotiation_pids(consumer, result)
    event = message("ContractNegotiationTerminationMessage", providerPid="urn:x", consumerPid=cpid, code="x")
    # the outsider is not this negotiation's provider
    refused(post(f"{consumer.url}/callback/negotiations/{cpid}/termination", event, outsider), 404,
            "ContractNegotiationError", "No process")
    assert state(consumer, "ContractNegotiation", consumer_pid=cpid) == "FINALIZED"


def test_unknown_and_expired_agreements_are_refused(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    request = message("TransferRequestMessage", consumerPid=f"urn:uuid:{uuid.uuid4()}",
                      agreementId="urn:uuid:never-agreed", format="HttpData-PULL",
                      callbackAddress=f"{consumer.url}/callback")
    refused(post(f"{provider.url}/transfers/request", request, consumer), 404, "TransferError", "No agreement")
    until = (datetime.now(timezone.utc) + timedelta(seconds=2.5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result, _ = publish(provider, tmp_path, f"{STANDARD},until={until}")
    agreement = consumer.connector.consumer.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    time.sleep(max(0.0, (datetime.fromisoformat(until.replace("Z", "+00:00")) - datetime.now(timezone.utc))
                   .total_seconds()) + 0.1)
    size = graph_size(provider)
    with pytest.raises(TransferFailed, match="403.*expired"):
        consumer.connector.consumer.pull(provider.url, agreement)
    assert graph_size(provider) == size


def test_another_participant_cannot_use_an_agreement(space, tmp_path) -> None:
    provider, consumer, outsider = space["provider"], space["consumer"], space["outsider"]
    result, _ = publish(provider, tmp_path, STANDARD)
    agreement = consumer.connector.consumer.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    request = message("TransferRequestMessage", consumerPid=f"urn:uuid:{uuid.uuid4()}", agreementId=agreement,
                      format="HttpData-PULL", callbackAddress=f"{outsider.url}/callback")
    refused(post(f"{provider.url}/transfers/request", request, outsider), 404, "TransferError", "No agreement")


def test_a_transfer_for_a_withdrawn_result_is_refused(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    c = consumer.connector.consumer
    agreement = c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    provider.connector.provider.withdraw(result.iri)
    size = graph_size(provider)
    with pytest.raises(TransferFailed, match="410.*withdrawn"):
        c.pull(provider.url, agreement)
    with pytest.raises(TransferFailed, match="410.*withdrawn"):
        c.push(provider.url, agreement)
    assert graph_size(provider) == size


def _start_pull(space, tmp_path) -> tuple[str, str, bytes]:
    """A started pull transfer's data endpoint and token, as the consumer received them."""
    provider, consumer = space["provider"], space["consumer"]
    result, data = publish(provider, tmp_path, STANDARD)
    c = consumer.connector.consumer
    agreement = c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    cpid = c._request_transfer(provider.url, agreement, "HttpData-PULL", None)
    consumer.connector.core.wait_for(lambda: cpid in c._addresses, "start")
    address = c._addresses.pop(cpid)
    props = {e["name"]: e["value"] for e in address["endpointProperties"]}
    return address["endpoint"], props["authorization"], data


def test_a_pull_larger_than_accepted_is_cut_off(space, tmp_path) -> None:
    """The consumer reads at most ``max_bytes`` of what a provider sends, whatever its catalog said."""
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD, size=4096)
    c = consumer.connector.consumer
    agreement = c.negotiate(provider.url, dataset_of(consumer, provider, result), provider_id=PROVIDER_ID)
    with pytest.raises(TransferFailed, match="^The provider sent more than 1000 bytes, the most accepted here.$"):
        c.pull(provider.url, agreement, max_bytes=1000)


def test_a_pull_token_works_once(space, tmp_path) -> None:
    endpoint, token, data = _start_pull(space, tmp_path)
    assert httpx.get(endpoint).status_code == 401
    assert httpx.get(endpoint, headers={"Authorization": "Bearer guessed"}).status_code == 401
    first = httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == 200 and first.content == data
    refused(httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}), 403, "TransferError", "used already")


def test_a_pull_token_expires(space, tmp_path) -> None:
    provider = space["provider"]
    core = provider.connector.core
    core.settings = replace(core.settings, pull_token_ttl_s=0.3)
    try:
        endpoint, token, _ = _start_pull(space, tmp_path)
    finally:
        core.settings = replace(core.settings, pull_token_ttl_s=60.0)
    time.sleep(0.4)
    refused(httpx.get(endpoint, headers={"Authorization": f"Bearer {token}"}), 403, "TransferError", "expired")


def test_credentials_never_reach_either_graph(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    endpoint, token, _ = _start_pull(space, tmp_path)
    for p in (provider, consumer):
        text = "\n".join(str(q) for q in p.store.oxigraph.quads_for_pattern(None, None, None, None))
        assert token not in text
        assert hashlib.sha256(token.encode()).hexdigest() in text or p is consumer


def test_malformed_and_oversized_messages_get_the_dsp_error(space) -> None:
    provider, consumer = space["provider"], space["consumer"]
    headers = {"Authorization": f"Bearer {token_of(consumer)}"}
    r = httpx.post(f"{provider.url}/negotiations/request", content=b"{not json", headers=headers)
    refused(r, 400, "ContractNegotiationError", "not JSON")
    r = httpx.post(f"{provider.url}/transfers/request", json={"@type": "TransferRequestMessage"}, headers=headers)
    refused(r, 400, "TransferError", "invalid")
    unknown = message("ContractRequestMessage", consumerPid="x" * 2000, callbackAddress="http://x",
                   offer={"@id": "urn:o", "@type": "Offer", "target": "urn:t", "permission": [{"action": "use"}]})
    refused(post(f"{provider.url}/negotiations/request", unknown, consumer), 400, "ContractNegotiationError",
            "No dataset")
    r = httpx.post(f"{provider.url}/negotiations/request", content=b" " * 1_000_001, headers=headers)
    refused(r, 413, "ContractNegotiationError", "at most")
    not_an_iri = {**unknown, "offer": {**unknown["offer"], "target": "http://a b>c"}}
    refused(post(f"{provider.url}/negotiations/request", not_an_iri, consumer), 400, "ContractNegotiationError",
            "No dataset")
    r = httpx.get(f"{provider.url}/catalog/datasets/http:%2F%2Fa%20b", headers=headers)
    refused(r, 404, "CatalogError", "No dataset")
    too_long = message("TransferRequestMessage", consumerPid="x" * 300, agreementId="urn:a", format="HttpData-PULL",
                       callbackAddress="http://x")
    refused(post(f"{provider.url}/transfers/request", too_long, consumer), 404, "TransferError", "No agreement")


def test_a_message_the_shapes_refuse_is_a_400_and_writes_nothing(space, tmp_path) -> None:
    provider, consumer = space["provider"], space["consumer"]
    result, _ = publish(provider, tmp_path, STANDARD)
    agreement = consumer.connector.consumer.negotiate(provider.url, dataset_of(consumer, provider, result),
                                                      provider_id=PROVIDER_ID)
    request = message("TransferRequestMessage", consumerPid="x" * 300, agreementId=agreement,
                      format="HttpData-PULL", callbackAddress=f"{consumer.url}/callback")
    size = graph_size(provider)
    refused(post(f"{provider.url}/transfers/request", request, consumer), 400, "TransferError",
            "cannot be recorded")
    assert graph_size(provider) == size

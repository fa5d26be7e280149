"""The DSP 2025-1 JSON Schemas as the connector's gate: every official example passes, malformed ones do not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dataspace import DSP_DIR, MESSAGE_SCHEMAS, MessageInvalid, validate_message

EXAMPLES = sorted(p for p in DSP_DIR.rglob("example/*.json")
                  if json.loads(p.read_text()).get("@type") in MESSAGE_SCHEMAS)


def test_every_message_type_has_an_official_example() -> None:
    covered = {json.loads(p.read_text())["@type"] for p in EXAMPLES}
    assert covered == set(MESSAGE_SCHEMAS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_official_example_is_accepted(path: Path) -> None:
    message = json.loads(path.read_text())
    assert validate_message(message, message["@type"]) is message


def _load(name: str) -> dict:
    return json.loads(next(DSP_DIR.rglob(f"example/{name}")).read_text())


def _without(message: dict, key: str) -> dict:
    m = copy.deepcopy(message)
    del m[key]
    return m


MALFORMED = {
    "request without consumerPid": (_without(_load("contract-request-message_initial.json"), "consumerPid"),
                                    "consumerPid"),
    "request without context": (_without(_load("contract-request-message_initial.json"), "@context"), "@context"),
    "request with callback and providerPid missing both": (
        _without(_without(_load("contract-request-message_initial.json"), "callbackAddress"), "consumerPid"), ""),
    "offer with a prohibited operator": (
        {**_load("contract-request-message_initial.json"),
         "offer": {"@type": "Offer", "@id": "urn:o", "target": "urn:t",
                   "permission": [{"action": "use", "constraint": [
                       {"leftOperand": "purpose", "operator": "likes", "rightOperand": "x"}]}]}}, ""),
    "event with an unknown event type": ({**_load("contract-negotiation-event-message.json"), "eventType": "DONE"},
                                         "eventType"),
    "transfer request without agreement": (_without(_load("transfer-request-message.json"), "agreementId"),
                                           "agreementId"),
    "transfer process in a made-up state": ({**_load("transfer-process.json"), "state": "PAUSED"}, "state"),
    "context without the DSP context": ({**_load("catalog-request-message.json"), "@context": ["https://x"]}, ""),
    "agreement without assignee": (
        {**_load("contract-agreement-message.json"),
         "agreement": {k: v for k, v in _load("contract-agreement-message.json")["agreement"].items()
                       if k != "assignee"}}, ""),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_message_is_refused_with_one_sentence(name: str) -> None:
    message, word = MALFORMED[name]
    with pytest.raises(MessageInvalid) as refused:
        validate_message(message, message["@type"])
    assert "\n" not in str(refused.value) and word in str(refused.value)


def test_a_message_of_another_type_is_refused() -> None:
    with pytest.raises(MessageInvalid, match="Expected a ContractRequestMessage"):
        validate_message(_load("transfer-request-message.json"), "ContractRequestMessage")
    with pytest.raises(MessageInvalid, match="not a JSON object"):
        validate_message([1], "ContractRequestMessage")

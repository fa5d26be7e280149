"""roc-validator run offline: the crates' JSON-LD context served from the copy the ``rocrate`` library ships.

roc-validator fetches the RO-Crate JSON-LD context named in a crate's ``@context`` (and checks web-based data
entities) through one ``requests`` session; no test may depend on w3id.org being reachable. So that session gets a
transport adapter: the RO-Crate context URLs are answered with the context ``rocrate`` ships (RO-Crate 1.3, whose
terms include 1.1's), every other URL with 404. For 1.1's URL the four Bioschemas terms take back the IRIs RO-Crate
1.1 gave them (``BIOSCHEMAS_1_1``; the run-crate profiles check those). What the profiles check is unchanged.
"""

from __future__ import annotations

import io
import json
from importlib import resources
from pathlib import Path
from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.response import HTTPResponse

CONTEXTS = ("https://w3id.org/ro/crate/1.1/context", "https://w3id.org/ro/crate/1.2/context",
            "https://w3id.org/ro/crate/1.3/context")
#: the terms whose IRIs RO-Crate 1.1's context gives otherwise than 1.3's
BIOSCHEMAS_1_1 = {"ComputationalWorkflow": "https://bioschemas.org/ComputationalWorkflow",
                  "FormalParameter": "https://bioschemas.org/FormalParameter",
                  "input": "https://bioschemas.org/ComputationalWorkflow#input",
                  "output": "https://bioschemas.org/ComputationalWorkflow#output"}
RUN_CRATE_PROFILES = ("process-run-crate-0.5", "workflow-run-crate-0.5", "provenance-run-crate-0.5")


class _LocalContexts(BaseAdapter):
    """Answers the RO-Crate context URLs from the shipped copy, anything else 404, with no network."""

    def __init__(self) -> None:
        super().__init__()
        shipped = json.loads(resources.files("rocrate").joinpath("data/ro-crate.jsonld").read_text())
        self.contexts = {url: json.dumps({"@context": shipped["@context"]}).encode() for url in CONTEXTS}
        self.contexts[CONTEXTS[0]] = json.dumps({"@context": {**shipped["@context"], **BIOSCHEMAS_1_1}}).encode()

    def send(self, request: requests.PreparedRequest, **_: Any) -> requests.Response:
        context = self.contexts.get(str(request.url).rstrip("/"))
        known = context is not None
        raw = HTTPResponse(body=io.BytesIO(context or b"not here"), status=200 if known else 404,
                           headers={"Content-Type": "application/ld+json" if known else "text/plain"},
                           preload_content=False, request_url=str(request.url))
        return HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


def context_document(url: str) -> dict[str, Any]:
    """The JSON-LD context document the adapter serves for ``url`` (for parsing a crate here too)."""
    return dict(json.loads(_LocalContexts().contexts[url.rstrip("/")]))


def _offline() -> None:
    """Mount the adapter on the validator's session, and on each session it builds anew (it rebuilds its session
    when a validation configures its cache)."""
    from rocrate_validator.utils.http import HttpRequester
    build = getattr(HttpRequester, "__initialize_session__")
    if getattr(build, "offline_contexts", False):
        return

    def initialize_session(self: HttpRequester, *args: Any, **kwargs: Any) -> None:
        build(self, *args, **kwargs)
        _mount(self.session)

    initialize_session.offline_contexts = True  # type: ignore[attr-defined]
    setattr(HttpRequester, "__initialize_session__", initialize_session)
    _mount(HttpRequester().session)


def _mount(session: requests.Session) -> None:
    adapter = _LocalContexts()
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def validation_issues(crate: Path, profile: str, *, recommended: bool) -> list[str]:
    """roc-validator's issues for ``crate`` against ``profile`` (and the profiles it builds on), at severity
    REQUIRED, or REQUIRED and RECOMMENDED: one line each, "severity check: message (entity)"."""
    from rocrate_validator import services
    from rocrate_validator.models import Severity
    _offline()
    settings = services.ValidationSettings(
        rocrate_uri=str(crate), profile_identifier=profile, no_cache=True,
        requirement_severity=Severity.RECOMMENDED if recommended else Severity.REQUIRED)
    result = services.validate(settings)
    lines = sorted({f"{i.severity.name} {i.check.identifier} {i.check.name}: {i.message} ({i.violatingEntity})"
                    for i in result.issues})
    if not result.passed() and not lines:
        lines = [f"failed without an issue: {sorted(c.identifier for c in result.failed_checks)}"]
    return lines

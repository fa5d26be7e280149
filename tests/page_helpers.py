"""Following an API list's keyset pages to the end (the trains and definitions lists' tests)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from fastapi.testclient import TestClient


def follow(client: TestClient, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """Every page of ``GET path`` (each answer's body), following ``next`` to the last."""
    pages: list[dict[str, Any]] = []
    after = params.pop("after", None)
    while True:
        r = client.get(path, headers=headers, params={**params, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        pages.append(r.json())
        after = pages[-1]["next"]
        if after is None:
            return pages
        assert len(pages) < 2000, "the pages do not end"


def ids(pages: list[dict[str, Any]]) -> list[str]:
    """The identifiers of every item of ``pages``, in order."""
    return [item["id"] for page in pages for item in page["items"]]


def token_of(parts: Sequence[object]) -> str:
    """A page token holding ``parts`` as the service encodes its own (to forge ones it did not hand out)."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")

"""Train images through an OCI registry: a researcher pushes, a station pulls exactly the approved digest.

A train definition may name its image as ``registry/repository@sha256:<manifest digest>`` (``pht:imageName``,
signed with the rest of the definition); its ``pht:imageDigest`` stays the image ID (config digest) the admin
approves. The station pulls by the manifest digest only, never by tag (the engine checks that what the registry
sends has that digest), with its own credentials for that registry host, and then the runtime checks that the
pulled image's ID is the approved one before anything runs. A name without ``@`` is the offline path: the image
must already be on the station (built there from the train folder, ``station/images.py``).

Credentials come from a Docker ``config.json``-style file (``{"auths": {"host:port": {"auth": base64(user:pass)}}}``,
also the format of a Kubernetes ``kubernetes.io/dockerconfigjson`` secret); they are passed to the engine per pull and
never logged or put into a message.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from station.runtimes.base import ImageRefused

__all__ = ["DigestReference", "PushedImage", "RegistryError", "parse_reference", "pull_digest", "push_image",
           "registry_credentials"]

#: a registry host as Docker tells it from a repository's first part: it has a dot or a port, or is localhost
_HOST = r"(?:(?:localhost|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+)(?::[0-9]{1,5})?|[a-zA-Z0-9-]+:[0-9]{1,5})"
_REPOSITORY = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
_DIGEST_REFERENCE = re.compile(rf"(?P<host>{_HOST})/(?P<repository>{_REPOSITORY})@(?P<digest>sha256:[0-9a-f]{{64}})")
_TARGET = re.compile(rf"(?P<host>{_HOST})/(?P<repository>{_REPOSITORY}):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")
_API_ERRORS = (docker.errors.APIError, requests.exceptions.ConnectionError)


class RegistryError(Exception):
    """Pushing failed, or the credentials cannot be read: one sentence, never a password."""


@dataclass(frozen=True)
class DigestReference:
    """``host[:port]/repository@sha256:<manifest digest>``: one image in one registry, immutable."""

    host: str
    repository: str
    digest: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}@{self.digest}"


@dataclass(frozen=True)
class PushedImage:
    """What a push made available: the reference stations pull and the image ID the admin approves."""

    reference: DigestReference
    image_id: str


def parse_reference(name: str) -> DigestReference | None:
    """``name`` as a registry digest reference; None for a plain local name (the offline path).

    :raises ImageRefused: ``name`` has an ``@`` but is not ``registry/repository@sha256:<64 hex>`` (a registry host
        is required: a station never guesses one).
    """
    if "@" not in name:
        return None
    match = _DIGEST_REFERENCE.fullmatch(name)
    if match is None:
        raise ImageRefused(f"image {name} is not a registry reference of the form "
                           "registry/repository@sha256:<64 hex digits>.")
    return DigestReference(match["host"], match["repository"], match["digest"])


def registry_credentials(auth_file: Path | None, host: str) -> dict[str, str] | None:
    """The username and password for ``host`` in ``auth_file`` (a Docker ``config.json``), or None (anonymous).

    :raises RegistryError: the file cannot be read, or its entry for ``host`` is malformed.
    """
    if auth_file is None:
        return None
    try:
        config = json.loads(auth_file.read_text(encoding="utf-8"))
    except OSError as e:
        raise RegistryError(f"the registry credentials file {auth_file} cannot be read ({e.strerror})") from None
    except ValueError:
        raise RegistryError(f"the registry credentials file {auth_file} is not JSON") from None
    auths = config.get("auths") if isinstance(config, dict) else None
    if not isinstance(auths, dict):
        raise RegistryError(f"the registry credentials file {auth_file} has no \"auths\" object")
    entry = next((v for k, v in auths.items() if _host_of(str(k)) == host), None)
    if entry is None:
        return None
    if isinstance(entry, dict) and isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return {"username": entry["username"], "password": entry["password"]}
    try:
        user, sep, password = base64.b64decode(str(entry["auth"]), validate=True).decode("utf-8").partition(":")
    except (KeyError, TypeError, ValueError):
        sep, user = "", ""
    if not sep or not user:
        raise RegistryError(f"the entry for {host} in {auth_file} has neither username/password nor a base64 "
                            "\"auth\" of user:password")
    return {"username": user, "password": password}


def _host_of(key: str) -> str:
    """A config key's registry host (keys may be URLs such as ``https://host:port/v1/``)."""
    return key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]


def _stream_error(events: Iterable[Mapping[str, Any]]) -> tuple[str | None, dict[str, Any]]:
    """The first error in an engine progress stream, and the last ``aux`` object (a push's digest). The stream is
    read to its end even after an error: one left unread keeps its connection to the engine open (a leaked socket)."""
    aux: dict[str, Any] = {}
    error: str | None = None
    for event in events:
        if event.get("error") and error is None:
            error = str(event.get("error")).strip()
        if isinstance(event.get("aux"), dict) and error is None:
            aux = dict(event["aux"])
    return error, aux


def pull_digest(client: docker.DockerClient, reference: DigestReference, auth: Mapping[str, str] | None) -> str:
    """Pull exactly ``reference`` (by manifest digest: the engine refuses content with another digest) unless the
    engine has it already; return the pulled image's ID, for the caller to compare with the approved one.

    :raises ImageRefused: the registry is unreachable, refuses the credentials, or has no such manifest.
    """
    try:
        try:
            return str(client.api.inspect_image(str(reference))["Id"])
        except docker.errors.ImageNotFound:
            pass
        events = client.api.pull(f"{reference.host}/{reference.repository}", tag=reference.digest, stream=True,
                                 decode=True, auth_config=dict(auth) if auth else None)
        error, _ = _stream_error(events)
        if error is None:
            return str(client.api.inspect_image(str(reference))["Id"])
    except docker.errors.ImageNotFound:
        error = "the engine does not list the image after pulling it"
    except _API_ERRORS as e:
        error = _explain(e)
    raise ImageRefused(f"pulling {reference} from {reference.host} failed: {_sentence(error)}.")


def push_image(client: docker.DockerClient, image: str, target: str,
               auth: Mapping[str, str] | None) -> PushedImage:
    """Tag the local ``image`` (name or ID) as ``target`` (``registry/repository:tag``), push it, and return the
    digest reference the registry now serves it under and its image ID (the two a train definition names).

    :raises RegistryError: no such image, a malformed target, the registry unreachable or refusing the credentials.
    """
    match = _TARGET.fullmatch(target)
    if match is None:
        raise RegistryError(f"{target} is not registry/repository:tag (a registry host such as 127.0.0.1:5000 or "
                            "harbor.example.org comes first)")
    repository = f"{match['host']}/{match['repository']}"
    try:
        local = client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RegistryError(f"there is no image {image} in the local engine; build it first") from None
    except _API_ERRORS as e:
        raise RegistryError(f"the container engine cannot be asked for image {image}: {_sentence(_explain(e))}") \
            from None
    try:
        local.tag(repository, match["tag"])
        events = client.api.push(repository, tag=match["tag"], stream=True, decode=True,
                                 auth_config=dict(auth) if auth else None)
        error, aux = _stream_error(events)
    except _API_ERRORS as e:
        error, aux = _explain(e), {}
    if error is not None:
        raise RegistryError(f"pushing {target} failed: {_sentence(error)}")
    digest = str(aux.get("Digest", ""))
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise RegistryError(f"pushing {target} gave no manifest digest")
    return PushedImage(DigestReference(match["host"], match["repository"], digest), str(local.id))


def _explain(error: Exception) -> str:
    if isinstance(error, docker.errors.APIError):
        return str(error.explanation or error)
    return f"the container engine does not answer ({type(error).__name__})"


def _sentence(text: str) -> str:
    """An engine message as part of one sentence: one line, no trailing full stop."""
    return " ".join(text.split()).rstrip(".")

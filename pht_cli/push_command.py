"""``pht train push IMAGE TARGET``: put a built train image into an OCI registry, for stations to pull by digest."""

import os
import sys
from typing import Annotated

import docker
import docker.errors
import typer

from station.image_registry import DigestReference, RegistryError, push_image

from .output import console, errors, fail


def push(image: Annotated[str, typer.Argument(help="The local image (name or ID), e.g. as pht station build-image "
                                                   "built it.")],
         target: Annotated[str, typer.Argument(help="registry/repository:tag to push to, e.g. "
                                                    "harbor.example.org/trains/cohort-count:1.")],
         username: Annotated[str | None, typer.Option(
             "--username", envvar="PHT_REGISTRY_USER",
             help="Registry account; its password from PHT_REGISTRY_PASSWORD or --password-stdin. Without it: the "
                  "credentials docker login stored (~/.docker/config.json).")] = None,
         password_stdin: Annotated[bool, typer.Option(
             "--password-stdin", help="Read the password from standard input (first line).")] = False,
         pull_host: Annotated[str | None, typer.Option(
             "--pull-host", help="The registry host stations pull from, if it is not the one pushed to (e.g. a "
                                 "read-only endpoint).")] = None) -> None:
    """Push a train image and print what its train definition names: image_name, the registry reference by manifest
    digest that stations pull (never a tag), and image_digest, the image ID their admins approve.

    Example: PHT_REGISTRY_PASSWORD=... pht train push pht-trains/count:1 harbor.example.org/trains/count:1
    --username alice
    """
    auth = None
    if username:
        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else os.environ.get("PHT_REGISTRY_PASSWORD")
        if not password:
            raise fail("--username needs a password: set PHT_REGISTRY_PASSWORD or use --password-stdin")
        auth = {"username": username, "password": password}
    try:
        client = docker.from_env()
    except docker.errors.DockerException:
        raise fail("no container engine answers here (is dockerd running, or DOCKER_HOST set?)") from None
    try:
        pushed = push_image(client, image, target, auth)
    except RegistryError as e:
        raise fail(str(e)) from None
    finally:
        client.close()
    reference = pushed.reference
    if pull_host:
        reference = DigestReference(pull_host, reference.repository, reference.digest)
    console.print(f"image_name: {reference}", highlight=False)
    console.print(f"image_digest: {pushed.image_id}", highlight=False)
    errors.print("put both into the train definition; stations pull exactly this digest and run it only if its image "
                 "ID is the approved one", highlight=False)

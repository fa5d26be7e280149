"""``pht keys ...``: a researcher's (or a station admin's) own keys: create and register, rotate, revoke."""

import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from client import CentralClient, ClientError
from client.key_claims import keys_in
from trust import KeyFormatError, generate_keys, save_keys

from .output import console, fail

keys_app = typer.Typer(help="Your signing and encryption keys and their public halves at the central service.",
                       no_args_is_help=True)

CentralUrl = Annotated[str, typer.Option("--central", envvar="PHT_CENTRAL_URL", help="URL of the central service.")]
Token = Annotated[str, typer.Option("--token", envvar="PHT_TOKEN", help="Bearer token.")]
KeyDir = Annotated[Path, typer.Option(
    "--dir", envvar="PHT_KEYS_DIR", help="Key directory (created 0700, key files 0600).")]
DEFAULT_DIR = Path.home() / ".config" / "pht" / "keys"


def _print_keys(answer: dict[str, object]) -> None:
    keys = answer.get("keys")
    for key in keys if isinstance(keys, list) else []:
        state = ("revoked " + str(key["revoked"])) if key.get("revoked") else (
            "rotated out " + str(key["expires"])) if key.get("expires") else "current"
        console.print(f"{key['use']:<10} {key['iri']}  {state}", highlight=False)


@keys_app.command("init")
def init(central: CentralUrl, token: Token, directory: KeyDir = DEFAULT_DIR) -> None:
    """Create your keys (Ed25519 to sign, X25519 to receive encrypted results) in DIR unless they are there, and
    register their public halves as yours, with a proof that you hold them. Running it again changes nothing.

    Example: pht keys init --central http://127.0.0.1:8080 --token $RESEARCHER_TOKEN
    """
    try:
        keys, new = keys_in(directory)
        with CentralClient(central, token) as client:
            answer = client.register_keys(keys)
    except (ClientError, OSError, KeyFormatError) as e:
        raise fail(str(e)) from None
    console.print(f"{'created' if new else 'kept'} keys in {directory}; registered for {answer['party']}:",
                  highlight=False)
    _print_keys(answer)


@keys_app.command("rotate")
def rotate(central: CentralUrl, token: Token, directory: KeyDir = DEFAULT_DIR,
           station: Annotated[str | None, typer.Option(
               help="Rotate this station's keys (its admin, or an operator) rather than your own.")] = None) -> None:
    """Replace the keys in DIR by new ones and register them; the old ones are rotated out at the service (they
    keep verifying what they signed before) and kept in DIR-retired-<time> (you need the old encryption key to
    open results encrypted to it). Nothing changes if the service refuses.

    Example: pht keys rotate --central http://127.0.0.1:8080 --token $RESEARCHER_TOKEN
    """
    if not directory.is_dir():
        raise fail(f"{directory} holds no keys to rotate; create them with pht keys init")
    staged = directory.with_name(directory.name + ".new")
    if staged.exists():
        raise fail(f"{staged} exists from an interrupted rotation; remove it and run the command again")
    retired = directory.with_name(f"{directory.name}-retired-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}")
    try:
        keys = generate_keys()
        save_keys(keys, staged)
        try:
            with CentralClient(central, token) as client:
                answer = client.rotate_keys(keys, station=station)
        except ClientError:
            shutil.rmtree(staged)
            raise
        directory.rename(retired)
        staged.rename(directory)
    except (ClientError, OSError) as e:
        raise fail(str(e)) from None
    console.print(f"new keys in {directory} (the old ones in {retired}); {answer['party']} now has:", highlight=False)
    _print_keys(answer)


@keys_app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="The key's IRI (pht keys init and rotate print them).")],
           central: CentralUrl, token: Token) -> None:
    """Revoke a key (yours, your station's, or as an operator any): from now on it verifies nothing, not even what
    it signed before. Do it when a private key may have leaked; then rotate to new keys.

    Example: pht keys revoke https://pht.example.org/id/agents/alice/keys/1f5d... --token $RESEARCHER_TOKEN
    """
    try:
        with CentralClient(central, token) as client:
            answer = client.revoke_key(key)
    except ClientError as e:
        raise fail(str(e)) from None
    console.print(f"revoked {answer['iri']} at {answer['revoked']}", highlight=False)

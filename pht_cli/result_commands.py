"""``pht result publish`` / ``withdraw``: a researcher offers a released result in a data space from their own
dataspace connector (``python -m dataspace``), under an ODRL policy they pick (docs/dataspace.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from client import CentralClient, ClientError
from trust import KeyFormatError, load_keys

from .key_commands import DEFAULT_DIR
from .output import console, fail

result_app = typer.Typer(help="Offer your released results in a data space (DSP) from your own connector.",
                         no_args_is_help=True)

ConnectorUrl = Annotated[str, typer.Option("--connector", envvar="PHT_DSP_CONNECTOR_URL",
                                           help="URL of your dataspace connector.")]
ConnectorToken = Annotated[str, typer.Option("--connector-token", envvar="PHT_DSP_ADMIN_TOKEN",
                                             help="Your connector's admin token.")]


@result_app.command("publish")
def publish(train: Annotated[str, typer.Argument(help="Train id (or the train's IRI with --file).")],
            connector: ConnectorUrl, connector_token: ConnectorToken,
            policy: Annotated[str, typer.Option(help=(
                "ODRL constraints, comma-separated: purpose=P, member=CONSORTIUM-IRI, until=DATE-TIME (e.g. "
                "2027-01-01T00:00:00Z); empty: anyone in the data space"))] = "",
            title: Annotated[str | None, typer.Option(help="Title in the catalog (default: the train id).")] = None,
            file: Annotated[Path | None, typer.Option(help=(
                "Publish this file (a result you fetched already) instead of fetching it from the central "
                "service."))] = None,
            central: Annotated[str | None, typer.Option("--central", envvar="PHT_CENTRAL_URL")] = None,
            token: Annotated[str | None, typer.Option("--token", envvar="PHT_TOKEN")] = None,
            keys: Annotated[Path, typer.Option("--keys", envvar="PHT_KEYS_DIR")] = DEFAULT_DIR) -> None:
    """Fetch your train's result, decrypt it with your key, and publish the plain packed result at your connector.

    Only you can open the result (it is encrypted to you); publishing shares it, from your connector, with the
    participants whose claims satisfy the policy. The central service takes no part. Example: pht result publish
    6f0c... --policy purpose=cancer-research --connector URL --connector-token $T --central URL --token $PHT
    """
    with tempfile.TemporaryDirectory() as tmp:
        if file is None:
            if not central or not token:
                raise fail("give --central and --token to fetch the result, or --file to publish a file")
            packed = Path(tmp) / "result.tar.gz"
            try:
                with CentralClient(central, token, keys=load_keys(keys)) as client:
                    client.open_result(train, packed)
                    train_iri = str(client.train(train)["iri"])
            except (ClientError, OSError, KeyFormatError) as e:
                raise fail(str(e)) from None
        else:
            if not file.is_file():
                raise fail(f"{file} is not a file")
            packed, train_iri = file, train
        with packed.open("rb") as body:
            r = _admin_post(connector, connector_token, "results", 201, content=body,
                            params={"train": train_iri, "title": title or train, "policy": policy})
    console.print(f"published {r.json()['@id']} (sha256 {r.json()['sha256']})")


@result_app.command("withdraw")
def withdraw(result: Annotated[str, typer.Argument(help="The published result's IRI (as publish printed it).")],
             connector: ConnectorUrl, connector_token: ConnectorToken) -> None:
    """Withdraw a published result: it leaves the catalog and nothing more is transferred under any agreement.

    Example: pht result withdraw https://.../results/... --connector URL --connector-token $T
    """
    _admin_post(connector, connector_token, "results/withdraw", 204, params={"result": result})
    console.print(f"withdrew {result}")


def _admin_post(connector: str, token: str, path: str, expect: int, **request: Any) -> httpx.Response:
    """POST to the connector's admin route ``path``; exit 1 with one sentence unless it answers ``expect``."""
    try:
        r = httpx.post(f"{connector.rstrip('/')}/admin/{path}", headers={"Authorization": f"Bearer {token}"},
                       timeout=300, **request)
    except httpx.HTTPError as e:
        raise fail(f"cannot reach the connector at {connector}: {e}") from None
    if r.status_code != expect:
        try:
            detail = str(r.json().get("detail", r.text))
        except ValueError:
            detail = r.text[:200]
        raise fail(f"the connector refused ({r.status_code}): {detail}")
    return r

"""``pht verify TRAIN``: check a train's whole history from the graph, trusting no one but the signers."""

from datetime import datetime, timezone
from typing import Annotated

import typer

from client import CentralClient, ClientError
from client.execution_records import ChainVerdict, verify_chain

from .output import console, fail
from .train_commands import CentralUrl, Token


def verify(train_id: Annotated[str, typer.Argument(help="Train id.")], central: CentralUrl, token: Token) -> None:
    """Verify a train's history: the researcher's signed request, every station's signed record of what it did, and
    that each record agrees with the graph and names the records before it. Prints "verified" or every break it
    finds (an edited digest, a deleted approval, a missing hop) and exits 1 then.

    Example: pht verify 6f0c... --central URL --token $T
    """
    try:
        with CentralClient(central, token) as client:
            iri = str(client.train(train_id)["iri"])
            verdict = verify_chain(client.provenance(iri), iri, now=datetime.now(timezone.utc))
    except ClientError as e:
        raise fail(str(e)) from None
    show(train_id, verdict)
    if not verdict.verified:
        raise typer.Exit(1)


def show(train_id: str, verdict: ChainVerdict) -> None:
    """Print the verdict: one line when verified, else each break on a line of its own."""
    if verdict.verified:
        console.print(f"train {train_id}: verified ({verdict.verified_hops} of {verdict.hops} hops signed by their "
                      "stations, chained to the researcher's signed request)", highlight=False)
        return
    console.print(f"train {train_id}: NOT verified, {len(verdict.breaks)} break(s):", highlight=False)
    for line in verdict.breaks:
        console.print(f"  - {line}", highlight=False, markup=False)

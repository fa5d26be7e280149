"""The train page's download: a finished train's RO-Crate as a ZIP, the same crate ``pht train export --ro-crate``
writes (``client.ro_crate_export.build_crate``), built here from what the caller may read of the train.

Outputs are named by their ciphertext digests only: the central service holds no key to open them (the requester
puts the decrypted result into a crate with ``pht train export --with-files``).
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pyoxigraph import NamedNode

from client.execution_records import verify_chain

from ..api.deps import Services
from ..api.train_routes import event_outs, train_out
from ..principal import Principal
from ..verification import train_provenance
from .session import PageError

__all__ = ["crate_zip"]


def crate_zip(s: Services, principal: Principal, train_id: str) -> bytes:
    """The RO-Crate ZIP of ``train_id`` (404/403 as the train page; 409 if the train has not finished)."""
    from client.ro_crate_export import build_crate  # the rocrate library only when a crate is asked for

    train = train_out(s, principal, train_id)
    if train.state != "finished":
        raise PageError(409, "Not finished", f"train {train_id} is {train.state}: only a finished train's RO-Crate "
                                             "can be downloaded")
    statements = train_provenance(s.store, NamedNode(train.iri))
    now = datetime.now(timezone.utc)
    verdict = verify_chain(statements, train.iri, now=now)
    with tempfile.TemporaryDirectory(prefix="pht-crate-") as folder:
        work = Path(folder)
        crate = build_crate(train.model_dump(), [e.model_dump() for e in event_outs(s, NamedNode(train.iri))], statements,
                            verdict, work, now=now)
        crate.write_zip(work / "crate.zip")
        return (work / "crate.zip").read_bytes()

"""A data-space train's inputs (use case 2, docs/dataspace.md): obtained before the run, mounted read-only.

The inputs are read from the train's verified signed request (the definition's ``pht:dataspaceInput`` nodes), so
they are what the researcher signed and the station approved: the approval binds the request's hash, and the agent
re-checks it before pulling and running. The station negotiates and pulls each one with its own data-space identity
(``PHT_STATION_DSP_*``, the station admin's secret) through :class:`dataspace.DataspaceConsumer`; the bytes land in
``{execution folder}/dataspace/{name}/data``, mounted at ``/pht/dataspace`` read-only. The identity token and the
single-use pull token stay inside the consumer: not in the train's environment or mounts, not in a step, event or
record, not in any graph. A provider that refuses, or is down, fails the execution before the train starts, with
the consumer's one sentence.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from client import WorkItem
from client.train_request import DataspaceInputSpec, dataspace_inputs
from dataspace import DataspaceConsumer, TransferFailed

from . import contract
from .signed_requests import RequestRefused, parse_ntriples

__all__ = ["declared_inputs", "obtain_inputs"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_URL = re.compile(r"https?://\S+")
COMPLETE = "dataspace-complete"  #: next to the mounted folder, so the train does not see it


def declared_inputs(work: WorkItem) -> list[DataspaceInputSpec]:
    """The data-space inputs ``work``'s signed request declares (none for an unsigned one).

    :raises RequestRefused: an input whose name is not a safe folder name or whose connector is not an http(s) URL
        (the registry refuses both; a station does not trust that it did).
    """
    if not work.request:
        return []
    found = dataspace_inputs(parse_ntriples(work.request, "signed request"))
    for i in found:
        if not _NAME.fullmatch(i.name) or not _URL.fullmatch(i.connector) or not i.dataset:
            raise RequestRefused(f"the data-space input {i.name!r} of train {work.train} is malformed")
    return found


def obtain_inputs(work: WorkItem, consumer: DataspaceConsumer | None, folder: Path, station: str) -> str | None:
    """Fetch every declared input into ``folder/{name}/data`` (once: a completed folder is kept); None when done or
    when there are none, else the one sentence the execution fails with (nothing partial stays behind)."""
    try:
        inputs = declared_inputs(work)
    except RequestRefused as e:
        return str(e)
    done = folder.parent / COMPLETE
    if not inputs or done.exists():
        return None
    if consumer is None:
        return (f"train {work.train} reads data-space inputs, but station {station} has no data-space identity "
                "(PHT_STATION_DSP_PARTICIPANT_ID)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in inputs:
        try:
            data = consumer.obtain(i.connector, i.dataset)
        except TransferFailed as e:
            shutil.rmtree(folder, ignore_errors=True)
            return f"data-space input {i.name!r} could not be obtained, so the train did not run: {e}"
        target = folder / i.name
        target.mkdir(mode=0o755)
        (target / contract.DATASPACE_FILE).write_bytes(data)
        (target / contract.DATASPACE_FILE).chmod(0o444)
    done.touch()
    return None

"""Python client of the central service, used by the CLI, the station agent and notebooks.

Every call is one HTTP request with the caller's bearer token; every refusal becomes a
:class:`ClientError` carrying the service's one-sentence ``detail`` (and the SHACL report when a write
violated the shapes), so callers print that sentence instead of a traceback. The bodies the station and the
central service exchange (:class:`WorkItem`, :class:`StepIn`, ...) are defined once, in :mod:`client.wire`, and
both sides import them; so is the rule of who reads an execution's output (:func:`reader_parties`), which the
central service applies to name the readers and the station to check them.
"""

from .central import TERMINAL_STATES, CentralClient, ClientError
from .readers import reader_parties
from .wire import CheckIn, LeaseIn, LeaseOut, OutputIn, Reader, StepIn, StepOut, WorkItem

__all__ = [
    "CentralClient",
    "CheckIn",
    "ClientError",
    "LeaseIn",
    "LeaseOut",
    "OutputIn",
    "Reader",
    "StepIn",
    "StepOut",
    "TERMINAL_STATES",
    "WorkItem",
    "reader_parties",
]

"""Python client of the central service, used by the CLI, the station agent and notebooks.

Every call is one HTTP request with the caller's bearer token; every refusal becomes a
:class:`ClientError` carrying the service's one-sentence ``detail`` (and the SHACL report when a write
violated the shapes), so callers print that sentence instead of a traceback.
"""

from .central import TERMINAL_STATES, CentralClient, ClientError

__all__ = ["CentralClient", "ClientError", "TERMINAL_STATES"]

"""What the central service refuses, as exceptions that carry their HTTP status.

The engine, the registry, the leases and the read model raise these; the app turns each into a 4xx answer with
its one sentence (``app.py``), and the web view into an HTML page. Kept apart from the engine so that code that
only reads (``reads.py``) or only names resources need not import it.
"""

from __future__ import annotations

__all__ = ["LifecycleError", "NotFound", "Forbidden", "InvalidValue", "IllegalTransition", "Unavailable"]


class LifecycleError(Exception):
    """A refused request; ``status`` is the HTTP status the API answers with (400 unless a subclass says)."""

    status = 400


class NotFound(LifecycleError):
    status = 404


class Forbidden(LifecycleError):
    status = 403


class InvalidValue(LifecycleError):
    """A value that is not what its declared type says (HTTP 422)."""

    status = 422


class IllegalTransition(LifecycleError):
    """The resource is not in a state from which the requested step is allowed (HTTP 409)."""

    status = 409


class Unavailable(LifecycleError):
    """Something the service needs for the request is missing or down, e.g. the object store of results (HTTP 503)."""

    status = 503

"""Exceptions of the graph store.

::

    GraphStoreError                 base of everything below
    ├── InvalidInputError           input that is not RDF / not SPARQL / not an IRI (ValueError too)
    │   └── InputTooLarge           input that expands beyond a documented bound (HTTP 413, not 400)
    ├── ValidationFailed            a change set the shapes refuse; carries the SHACL report
    ├── ConflictError               a guarded write whose guard no longer holds (someone else won)
    └── StoreUnavailable            the remote SPARQL server cannot be reached or answered 5xx

Every refusal happens before anything is written, so callers never see a partial write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._report import ValidationReport

__all__ = ["GraphStoreError", "InvalidInputError", "InputTooLarge", "ValidationFailed", "ConflictError",
           "StoreUnavailable", "TransactionAborted"]


class GraphStoreError(Exception):
    """Base class of every error raised by ``graph_store``."""


class InvalidInputError(GraphStoreError, ValueError):
    """The input is not what it claims to be (malformed Turtle, bad IRI, unknown query name...)."""


class InputTooLarge(InvalidInputError):
    """Valid input that would expand beyond a bound (an RDF body whose terms far outgrow its bytes)."""


class ValidationFailed(GraphStoreError):
    """The change set violates the shapes; nothing was written. ``report`` says what and where."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.text())


class ConflictError(GraphStoreError):
    """A guarded write lost: the guard triples (for example the expected current state) are not there."""


class StoreUnavailable(GraphStoreError):
    """The store could not be reached or failed; nothing was written by this call."""


class TransactionAborted(StoreUnavailable):
    """The server aborted the request's transaction for a conflict with a concurrent one (SQLSTATE 40001, e.g.
    Virtuoso's "SR172: Transaction deadlocked"): nothing was written, and sending it again is safe."""

"""A train's history checked by the central service for its web page, with the same code as ``pht verify``.

The page says "verified" or names each break (``client.execution_records.verify_chain``); it is a convenience for
people watching a train. The central service is semi-trusted, so a researcher who must be sure runs ``pht verify``
on their own machine: it reads the same provenance and checks it with no code of the central service.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyoxigraph import NamedNode, QueryBoolean, Triple

from client.execution_records import ChainVerdict, verify_chain
from graph_store import GraphStore, named_query

__all__ = ["train_provenance", "train_verdict"]


def train_provenance(store: GraphStore, train: NamedNode) -> list[Triple]:
    """``train``'s history as ``train_provenance.rq`` gives it (what ``pht verify`` reads through ``/sparql``)."""
    answer = store.query(named_query("train_provenance").text, bindings={"train": train})
    return [t for t in answer if isinstance(t, Triple)] if not isinstance(answer, QueryBoolean) else []


def train_verdict(store: GraphStore, train: NamedNode) -> ChainVerdict:
    """Check ``train``'s history in ``store`` (:func:`train_provenance`, then :func:`verify_chain`)."""
    return verify_chain(train_provenance(store, train), train.value, now=datetime.now(timezone.utc))

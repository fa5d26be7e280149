"""Who reads an execution's output: the one rule of "every output leaves its station encrypted to exactly its next
readers", shared by the central service (which names the readers and their keys in each work item,
``orchestrator/readers.py``) and the station (which derives them again from the researcher's signed request and
refuses a work item that names others, ``station/encryption.py``). One function, so both sides cannot drift apart.

The rule (:func:`reader_parties`), following the routes of the lifecycle:

- incremental: stop *i* before the last -> the station of stop *i* + 1; the last stop of a round before the last
  -> the station of the first stop (it starts the next round); the last stop of the last round -> the requester;
- federated: a station of round *r* -> the aggregator station; the aggregation of round *r* < rounds -> every
  station of the route (they read the model in round *r* + 1); the last aggregation -> the requester.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["reader_parties"]


def reader_parties(*, federated: bool, rounds: int, round_: int, stop: int | None, route: Sequence[str],
                   aggregator: str | None, requester: str) -> list[str]:
    """The IRIs of the parties that read the output of the execution at ``stop`` (None: the aggregation) of round
    ``round_`` of a train whose definition has ``route`` (station IRIs in stop order), ``rounds`` and, if
    ``federated``, ``aggregator``; ``requester`` reads the final result. Each party once, in route order.

    :raises ValueError: a federated definition without an aggregator (no one may read its stations' outputs).

    >>> route = ["s:a", "s:b"]
    >>> reader_parties(federated=False, rounds=1, round_=1, stop=0, route=route, aggregator=None, requester="r")
    ['s:b']
    >>> reader_parties(federated=True, rounds=2, round_=1, stop=None, route=route, aggregator="s:x", requester="r")
    ['s:a', 's:b']
    """
    last_round = round_ >= rounds
    if not federated:
        index = stop or 0
        if index + 1 < len(route):
            return [route[index + 1]]
        return [requester] if last_round else [route[0]]
    if stop is not None:
        if aggregator is None:
            raise ValueError("a federated definition without an aggregator has no reader for its stations' outputs")
        return [aggregator]
    return [requester] if last_round else list(dict.fromkeys(route))

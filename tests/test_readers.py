"""client/readers.py: who reads an execution's output, for every kind of hop (the rule the central service names the
readers by and the stations check them with)."""

from __future__ import annotations

import pytest

from client.readers import reader_parties

ROUTE = ["s:a", "s:b", "s:c"]


def readers(*, federated: bool = False, rounds: int = 1, round_: int = 1, stop: int | None = 0) -> list[str]:
    return reader_parties(federated=federated, rounds=rounds, round_=round_, stop=stop, route=ROUTE,
                          aggregator="s:x" if federated else None, requester="r:alice")


def test_an_incremental_stop_is_read_by_the_next_stop_and_the_last_by_the_requester() -> None:
    assert [readers(stop=i) for i in range(3)] == [["s:b"], ["s:c"], ["r:alice"]]


def test_the_last_stop_of_an_earlier_round_is_read_by_the_first_stop_of_the_next() -> None:
    assert readers(rounds=2, round_=1, stop=2) == ["s:a"]
    assert readers(rounds=2, round_=2, stop=2) == ["r:alice"]


def test_a_federated_station_is_read_by_the_aggregator_and_an_aggregation_by_the_next_round_or_the_requester() -> None:
    assert readers(federated=True, rounds=3, round_=3, stop=1) == ["s:x"]
    assert readers(federated=True, rounds=3, round_=2, stop=None) == ROUTE
    assert readers(federated=True, rounds=3, round_=3, stop=None) == ["r:alice"]


def test_a_station_on_the_route_twice_reads_once() -> None:
    assert reader_parties(federated=True, rounds=2, round_=1, stop=None, route=["s:a", "s:a"], aggregator="s:x",
                          requester="r") == ["s:a"]


def test_a_federated_definition_without_an_aggregator_has_no_reader() -> None:
    with pytest.raises(ValueError, match="without an aggregator"):
        reader_parties(federated=True, rounds=1, round_=1, stop=0, route=ROUTE, aggregator=None, requester="r")

"""``train_positions.rq`` (the dashboards' "Where each train is"): which trains it shows and which execution of
each. It finds its trains from the non-terminal train states and a window of the newest list positions, not from
every train, so what is in and what is out is worth pinning down."""

from __future__ import annotations

from pyoxigraph import Literal, NamedNode, Quad

from graph_store import CENTRAL_GRAPH, DCTERMS, PHT, RDF_TYPE, XSD, EmbeddedStore

G = CENTRAL_GRAPH
EX = "https://pht.example.org/id/"
NEWEST = 100
"""The newest trains the query shows whatever their state (its window)."""


def _time(minute: int) -> Literal:
    return Literal(f"2026-11-27T{8 + minute // 60:02d}:{minute % 60:02d}:00Z", datatype=XSD.dateTime)


class _World:
    """Trains with executions, events and list positions, written as quads (no lifecycle: any history)."""

    def __init__(self) -> None:
        self.quads: list[Quad] = []
        for station in ("aachen", "leipzig"):
            self.quads.append(Quad(NamedNode(EX + f"station-{station}"), DCTERMS.identifier, Literal(station), G))
        self.quads += [Quad(NamedNode(EX + "def"), RDF_TYPE, PHT.TrainDefinition, G),
                       Quad(NamedNode(EX + "def"), DCTERMS.identifier, Literal("count"), G)]

    def train(self, name: str, position: int, state: NamedNode) -> NamedNode:
        train = NamedNode(EX + name)
        self.quads += [Quad(train, RDF_TYPE, PHT.Train, G), Quad(train, DCTERMS.identifier, Literal(name), G),
                       Quad(train, PHT.state, state, G), Quad(train, PHT.definition, NamedNode(EX + "def"), G),
                       Quad(train, DCTERMS.created, _time(position % 600), G),
                       Quad(train, PHT.listPosition, Literal(str(position), datatype=XSD.integer), G)]
        return train

    def execution(self, train: NamedNode, station: str, state: NamedNode, *event_minutes: int) -> None:
        execution = NamedNode(f"{train.value}/{station}")
        self.quads += [Quad(execution, RDF_TYPE, PHT.Execution, G), Quad(execution, PHT.ofTrain, train, G),
                       Quad(execution, PHT.state, state, G), Quad(execution, PHT.round, Literal(1), G),
                       Quad(execution, PHT.atStation, NamedNode(EX + f"station-{station}"), G)]
        for minute in event_minutes:
            event = NamedNode(f"{execution.value}/events/{minute}")
            self.quads += [Quad(event, RDF_TYPE, PHT.StateChangeEvent, G),
                           Quad(event, PHT.aboutExecution, execution, G), Quad(event, PHT.eventTime, _time(minute), G)]

    def positions(self) -> dict[str, list[tuple[str | None, str | None]]]:
        """Per train identifier, the (station, execution state) of each row the query answers."""
        store = EmbeddedStore()
        store.load_vocabulary()
        store.oxigraph.extend(self.quads)
        rows: dict[str, list[tuple[str | None, str | None]]] = {}
        for r in store.run_query("train_positions"):
            rows.setdefault(r["trainId"].value, []).append(
                (r["stationId"].value if r["stationId"] else None,
                 r["executionState"].value if r["executionState"] else None))
        return rows


def test_a_train_in_flight_shows_its_active_executions_however_old_and_without_an_event_yet() -> None:
    world = _World()
    oldest = world.train("oldest-running", 1, PHT.Running)
    world.execution(oldest, "aachen", PHT.Released, 5)
    world.execution(oldest, "leipzig", PHT.WaitingForApproval)  # no event yet
    for position in range(2, NEWEST + 10):
        world.execution(world.train(f"t{position}", position, PHT.Finished), "aachen", PHT.Released, position)
    rows = world.positions()
    assert rows["oldest-running"] == [("leipzig", "waiting-for-approval")]


def test_an_ended_train_shows_where_it_was_last_and_only_the_newest_ended_trains_are_shown() -> None:
    world = _World()
    last = NEWEST + 20
    for position in range(1, last + 1):
        train = world.train(f"t{position}", position, PHT.Rejected if position == last else PHT.Finished)
        world.execution(train, "aachen", PHT.Released, 10, 12)
        world.execution(train, "leipzig", PHT.Rejected if position == last else PHT.Released, 11, 30)
    rows = world.positions()
    assert set(rows) == {f"t{p}" for p in range(last - NEWEST + 1, last + 1)}
    assert rows[f"t{last}"] == [("leipzig", "rejected")]  # its latest event (minute 30) was at leipzig
    assert rows[f"t{last - 1}"] == [("leipzig", "released")]


def test_a_train_with_no_event_at_all_and_nothing_active_is_not_placed() -> None:
    world = _World()
    world.execution(world.train("silent", 1, PHT.Finished), "aachen", PHT.Released)
    world.execution(world.train("heard", 2, PHT.Finished), "aachen", PHT.Released, 3)
    assert set(world.positions()) == {"heard"}

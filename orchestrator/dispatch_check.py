""""Will it run?" before dispatch: each route station's published dataset description against the train's inputs.

A train definition may declare input shapes (``pht:inputShapes``, ``client/input_shapes.py``): the variables it
reads. Before the central service queues a train at its first stations, it reads what every route station published
about its datasets' variables (``route_dataset_variables.rq``, one query, from each station's own graph) and
refuses the train if a station lacks one: ``station S lacks variable V (required by the train's input shape)``.
The lifecycle then fails the train with that reason instead of dispatching it (``Lifecycle._queue``), so a train
whose columns a station does not have is stopped before any approval, not after it at the station. The station
re-checks its real data before running (``station/input_check.py``): a description can be out of date.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence

from pyoxigraph import Literal, NamedNode

from client.input_shapes import DescribedVariable, InputShapes, InputShapesRefused, parse_input_shapes
from graph_store import CENTRAL_GRAPH, PHT, GraphStore

__all__ = ["dispatch_refusal", "station_refusal"]


def dispatch_refusal(store: GraphStore, definition: NamedNode, stations: Sequence[str]) -> str | None:
    """None if every station of ``stations`` (the route's, in order) published a description that meets the
    definition's input shapes (or it declares none); else one sentence naming the first station and the variable
    it lacks."""
    texts = [q.object.value for q in store.quads(definition, PHT.inputShapes, None, CENTRAL_GRAPH)
             if isinstance(q.object, Literal)]
    if not texts:
        return None
    try:
        shapes = _shapes(texts[0])
    except InputShapesRefused as e:  # checked at registration; only an edit of the stored text gets here
        return f"the train's input shapes cannot be evaluated: {e}"
    described: dict[str, dict[str, list[DescribedVariable]]] = defaultdict(lambda: defaultdict(list))
    for row in store.run_query("route_dataset_variables", definition=definition):
        unit, code = row["unit"], row["codeSystem"]
        described[row["stationId"].value][row["dataset"].value].append(DescribedVariable(
            row["name"].value, row["datatype"].value, unit.value if unit is not None else None,
            code.value if code is not None else None))
    for station in dict.fromkeys(stations):
        why = station_refusal(shapes, station, described.get(station, {}))
        if why is not None:
            return why
    return None


def station_refusal(shapes: InputShapes, station: str, datasets: dict[str, list[DescribedVariable]]) -> str | None:
    """Why ``station``, whose datasets publish ``datasets`` (dataset IRI -> variables), cannot run the train."""
    lacking = shapes.missing(datasets)
    if lacking is None:
        return None
    unpublished = "" if datasets else " (it has published no variables of its datasets)"
    return f"station {station} lacks variable {lacking.text()} (required by the train's input shape){unpublished}"


@functools.lru_cache(maxsize=256)
def _shapes(text: str) -> InputShapes:
    """The stored input shapes, read once per text (the registry checked them against SHACL-for-SHACL)."""
    return parse_input_shapes(text, check_shacl=False)

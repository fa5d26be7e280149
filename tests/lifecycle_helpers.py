"""The lifecycle engine with the test world registered: stations, their datasets, an incremental and a federated
definition (tests/principals.py)."""

from __future__ import annotations

from principals import ALICE, DIGEST, KEY, OPERATOR, STATIONS

from graph_store import GraphStore
from orchestrator.lifecycle import Lifecycle
from orchestrator.registry import DatasetSpec, DefinitionSpec, ParameterSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings

UNSIGNED = Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False)
"""The lifecycle engine itself, without stations: its trains are unsigned (signing: test_signed_submissions.py)."""


def registered_lifecycle(store: GraphStore, settings: Settings = UNSIGNED) -> Lifecycle:
    """A lifecycle on ``store`` (its vocabulary loaded) with every station of STATIONS, a dataset of each,
    ``count`` (incremental over all of them, a required MIN) and ``fedavg`` (aachen and leipzig, 2 rounds,
    aggregated at cologne)."""
    life = Lifecycle(store, settings)
    reg = Registry(store, life.iris)
    for sid in STATIONS:
        reg.station(OPERATOR, StationSpec(sid, f"{sid} station", f"{sid} hospital", [KEY]))
        reg.dataset(OPERATOR, DatasetSpec(f"{sid}-data", f"{sid} data", sid))
    reg.definition(ALICE, DefinitionSpec("count", "Cohort count", "pht/count", DIGEST, "incremental",
                                         list(STATIONS), parameters=[ParameterSpec("MIN", "integer", True)]))
    reg.definition(ALICE, DefinitionSpec("fedavg", "FedAvg", "pht/fedavg", DIGEST, "federated",
                                         ["aachen", "leipzig"], rounds=2, aggregator="cologne"))
    return life

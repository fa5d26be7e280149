"""The service's step queue (``orchestrator/step_batches.py``): on a store that writes a group in the round trips
of one (a remote store), the steps of clients acting at once are grouped, none waits for a group to fill, and
each client gets its own answer; on the embedded store a step runs at once, on the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest
from central_store import new_central_store
from principals import ALICE, DIGEST, KEY, OPERATOR, station

from orchestrator.errors import IllegalTransition
from orchestrator.lifecycle import Lifecycle, StepRequest
from orchestrator.registry import DefinitionSpec, Registry, StationSpec
from orchestrator.settings import DEMO_SECRET, Settings
from orchestrator.step_batches import StepBatches

pytestmark = pytest.mark.central_stores("oxigraph")  # a store that groups writes (test_store_contract: both servers)


@pytest.fixture()
def engine() -> Lifecycle:
    store = new_central_store()
    store.load_vocabulary()
    life = Lifecycle(store, Settings(jwt_secret=DEMO_SECRET, demo=True, require_signed_trains=False))
    reg = Registry(store, life.iris)
    reg.station(OPERATOR, StationSpec("aachen", "aachen station", "aachen hospital", [KEY]))
    reg.definition(ALICE, DefinitionSpec("count", "Cohort count", "pht/count", DIGEST, "incremental", ["aachen"]))
    return life


class _HeldFirstGroup:
    """``step_many`` of the engine, recording each group's size; the first group is held until released."""

    def __init__(self, engine: Lifecycle) -> None:
        self.engine, self.step_many = engine, engine.step_many
        self.sizes: list[int] = []
        self.release = threading.Event()

    def __call__(self, requests: Sequence[StepRequest]) -> list[str | Exception]:
        self.sizes.append(len(requests))
        if len(self.sizes) == 1:
            assert self.release.wait(10)
        return self.step_many(requests)


def test_steps_queued_while_a_group_is_written_form_the_next_group(engine: Lifecycle) -> None:
    """The first step starts at once, alone; the seven that arrive while it is written go as one group; each
    client gets its own answer, an illegal step its own error, and a client that went away none."""
    trains = [engine.submit(ALICE, definition_id="count", parameters={}) for _ in range(7)]
    held = _HeldFirstGroup(engine)
    engine.step_many = held  # type: ignore[method-assign]
    batches = StepBatches(engine)

    async def clients() -> list[object]:
        requests = [StepRequest(station("aachen"), f"{t}.r1-s0", "waiting-for-approval") for t in trains]
        requests.insert(3, StepRequest(station("aachen"), f"{trains[0]}.r1-s0", "released"))
        tasks = [asyncio.create_task(batches.step(requests[0]))]
        while not held.sizes:  # the first is being written, alone
            await asyncio.sleep(0.01)
        tasks += [asyncio.create_task(batches.step(r)) for r in requests[1:]]
        gone = asyncio.create_task(batches.step(StepRequest(station("aachen"), f"{trains[1]}.r1-s0", "pulling")))
        await asyncio.sleep(0.1)  # every client is waiting now: the first in the held group, the others queued
        gone.cancel()
        held.release.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    results = asyncio.run(clients())
    assert held.sizes == [1, 7], "one alone at once, then every step queued meanwhile (the one gone left out)"
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == \
        ["waiting-for-approval"] * 3 + ["IllegalTransition"] + ["waiting-for-approval"] * 4
    assert isinstance(results[3], IllegalTransition) and "cannot become released" in str(results[3])
    states = {engine.chart.token(r["state"]) for t in trains
              for r in engine.store.run_query("train_executions", train=engine.iris.train(t))}
    assert states == {"waiting-for-approval"}, "the client that went away was not stepped"


def test_a_failing_group_fails_each_of_its_steps_with_that_error(engine: Lifecycle) -> None:
    """Should ``step_many`` itself fail (not a step's refusal: its own error), every client of the group gets that
    error; the queue goes on with the next group."""
    train = engine.submit(ALICE, definition_id="count", parameters={})
    calls: list[int] = []
    step_many = engine.step_many

    def failing_once(requests: Sequence[StepRequest]) -> list[str | Exception]:
        calls.append(len(requests))
        if len(calls) == 1:
            raise RuntimeError("the engine failed")
        return step_many(requests)
    engine.step_many = failing_once  # type: ignore[method-assign]
    batches = StepBatches(engine)

    async def client() -> tuple[object, str]:
        request = StepRequest(station("aachen"), f"{train}.r1-s0", "waiting-for-approval")
        first = await asyncio.gather(batches.step(request), return_exceptions=True)
        return first[0], await batches.step(request)

    failed, second = asyncio.run(client())
    assert isinstance(failed, RuntimeError) and str(failed) == "the engine failed"
    assert second == "waiting-for-approval"


@pytest.mark.central_stores("embedded")
def test_on_a_store_that_writes_each_step_alone_a_step_runs_at_once_on_the_event_loop(engine: Lifecycle) -> None:
    """The embedded store has no round trips to save: a step is not handed to a thread (which cost 12 % of the
    steps per second), and its refusal reaches its client."""
    assert not engine.store.groups_writes
    train = engine.submit(ALICE, definition_id="count", parameters={})
    threads: list[int] = []
    step_many = engine.step_many

    def recorded(requests: Sequence[StepRequest]) -> list[str | Exception]:
        threads.append(threading.get_ident())
        return step_many(requests)
    engine.step_many = recorded  # type: ignore[method-assign]
    batches = StepBatches(engine)

    async def client() -> tuple[str, object, int]:
        request = StepRequest(station("aachen"), f"{train}.r1-s0", "waiting-for-approval")
        stepped = await batches.step(request)
        again = await asyncio.gather(batches.step(request), return_exceptions=True)
        return stepped, again[0], threading.get_ident()

    stepped, again, loop_thread = asyncio.run(client())
    assert stepped == "waiting-for-approval"
    assert isinstance(again, IllegalTransition)
    assert threads == [loop_thread, loop_thread]

"""Embedded write path details: the cross-change rdf:type cache never lets a stale type through."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyoxigraph import NamedNode, Quad, RdfFormat, parse

from graph_store import CENTRAL_GRAPH, PHT, RDF_TYPE, ChangeSet, EmbeddedStore, ValidationFailed

VALID = sorted((Path(__file__).parent / "fixtures" / "shapes" / "valid").glob("*.ttl"))
EX = "https://pht.example.org/id/"


@pytest.fixture()
def store() -> EmbeddedStore:
    s = EmbeddedStore()
    s.load_vocabulary()
    quads = []
    for f in VALID:
        quads += [Quad(t.subject, t.predicate, t.object, CENTRAL_GRAPH) for t in parse(path=f, format=RdfFormat.TURTLE)]
    s.apply(ChangeSet(insert=quads))
    return s


def _state_step(execution: NamedNode, old: NamedNode, new: NamedNode) -> ChangeSet:
    g = CENTRAL_GRAPH
    return ChangeSet(guard=[Quad(execution, PHT.state, old, g)], delete=[Quad(execution, PHT.state, old, g)],
                     insert=[Quad(execution, PHT.state, new, g)])


def test_retyping_a_referenced_node_is_seen_after_its_type_was_cached(store: EmbeddedStore) -> None:
    execution, station = NamedNode(EX + "exec-0002-aachen-r2"), NamedNode(EX + "station-aachen")
    state = store.quads(execution, PHT.state)[0].object
    other = PHT.Failed if state != PHT.Failed else PHT.Cancelled
    store.apply(_state_step(execution, state, other))  # validates the execution: caches the station's type
    retype = ChangeSet(delete=[Quad(station, RDF_TYPE, PHT.Station, CENTRAL_GRAPH)])
    with pytest.raises(ValidationFailed) as refused:
        store.apply(retype)  # every execution at the station would point to a non-station
    assert any(r.component_name == "ClassConstraintComponent" for r in refused.value.report.results)


def _copy_of(store: EmbeddedStore, node: NamedNode, name: str) -> ChangeSet:
    """Insert a new node with the same description as ``node`` (validated whole: it gets its types)."""
    new = NamedNode(EX + name)
    return ChangeSet(insert=[Quad(new, q.predicate, q.object, q.graph_name) for q in store.quads(node)])


def test_a_type_removed_through_the_raw_store_is_not_served_from_the_cache(store: EmbeddedStore) -> None:
    execution, station = NamedNode(EX + "exec-0002-aachen-r2"), NamedNode(EX + "station-aachen")
    store.apply(_copy_of(store, execution, "exec-copy-1"))  # sh:class on its station: caches the station's type
    store.oxigraph.remove(Quad(station, RDF_TYPE, PHT.Station, CENTRAL_GRAPH))  # an unvalidated raw write
    with pytest.raises(ValidationFailed) as refused:
        store.apply(_copy_of(store, execution, "exec-copy-2"))
    assert {r.focus_node for r in refused.value.report.results} == {NamedNode(EX + "exec-copy-2")}


def test_a_step_is_checked_on_the_paths_it_changes_only(store: EmbeddedStore) -> None:
    """Incremental validation relies on the store conforming before each write: a lifecycle step re-checks the
    state it changes, not the rest of the execution (an audit, validate_everything, finds the rest)."""
    execution, station = NamedNode(EX + "exec-0002-aachen-r2"), NamedNode(EX + "station-aachen")
    state = store.quads(execution, PHT.state)[0].object
    other = PHT.Failed if state != PHT.Failed else PHT.Cancelled
    store.oxigraph.remove(Quad(station, RDF_TYPE, PHT.Station, CENTRAL_GRAPH))  # an unvalidated raw write
    report = store.apply(_state_step(execution, state, other))
    assert report.conforms and report.focus_nodes_checked == 1
    assert store.quads(execution, PHT.state)[0].object == other
    audit = store.validate_everything()
    assert execution in {r.focus_node for r in audit.results}, "the audit must still see the broken station link"
    with pytest.raises(ValidationFailed):  # and the state path itself is still checked
        store.apply(ChangeSet(insert=[Quad(execution, PHT.state, state, CENTRAL_GRAPH)]))


def test_view_ignores_the_shared_type_cache_for_nodes_the_change_retypes(store: EmbeddedStore) -> None:
    from graph_store._validator import PostChangeView

    station = NamedNode(EX + "station-aachen")
    cache = {station: frozenset({PHT.Station})}
    removed = Quad(station, RDF_TYPE, PHT.Station, CENTRAL_GRAPH)
    view = PostChangeView(store.quads, delete={removed}, types_cache=cache)
    assert view.objects(station, RDF_TYPE) == frozenset()
    added = Quad(station, RDF_TYPE, PHT.Execution, CENTRAL_GRAPH)
    view = PostChangeView(store.quads, insert=[added], types_cache=cache)
    assert view.objects(station, RDF_TYPE) == frozenset({PHT.Station, PHT.Execution})
    untouched = PostChangeView(store.quads, types_cache={})
    assert untouched.objects(station, RDF_TYPE) == frozenset({PHT.Station})


def test_cached_quads_follow_commits_and_forget_raw_writes(store: EmbeddedStore) -> None:
    execution = NamedNode(EX + "exec-0002-aachen-r2")
    state = store.quads(execution, PHT.state)[0].object
    other = PHT.Failed if state != PHT.Failed else PHT.Cancelled
    store.apply(_state_step(execution, state, other))  # caches the execution's quads, post-change
    store.apply(_state_step(execution, other, state))  # must see `other` as the one state, not both
    assert [q.object for q in store.quads(execution, PHT.state)] == [state]
    (train,) = store.quads(execution, PHT.ofTrain)
    store.oxigraph.remove(train)  # raw write behind the validator's back: the execution loses its train
    retype = Quad(execution, RDF_TYPE, NamedNode("http://www.w3.org/ns/prov#Activity"), CENTRAL_GRAPH)
    with pytest.raises(ValidationFailed) as refused:  # a type change re-checks every path of the execution
        store.apply(ChangeSet(insert=[retype]))
    # the train it lost (read from the store, not from the stale cache), and the second type itself (a holder of a
    # state has exactly one, phts:LifecycleStateHolderShape)
    assert {(r.focus_node, r.path, r.component_name) for r in refused.value.report.results} == {
        (execution, PHT.ofTrain, "MinCountConstraintComponent"), (execution, RDF_TYPE, "InConstraintComponent"),
        (execution, RDF_TYPE, "MaxCountConstraintComponent")}


def test_tuning_the_garbage_collector_raises_its_threshold_and_freezes_start_up_objects() -> None:
    """Bulk RDF work allocates a term object per read; the services' entry points collect less often
    (graph_store._gc explains the measurements)."""
    import gc

    from graph_store import tune_garbage_collection
    from graph_store._gc import YOUNG_THRESHOLD

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # Python's default (a test that ran an entry point in-process changed it)
        survivor = [object()]  # alive at "start-up"
        assert any(o is survivor for o in gc.get_objects())
        tune_garbage_collection()
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700
        assert not any(o is survivor for o in gc.get_objects()), "start-up objects must be frozen out of collections"
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_failing_commit_listener_does_not_make_a_committed_change_look_failed(
        store: EmbeddedStore, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[ChangeSet] = []

    def broken(change: ChangeSet) -> None:
        raise RuntimeError("listener bug")

    store.on_commit(broken)
    store.on_commit(seen.append)
    execution = NamedNode(EX + "exec-0002-aachen-r2")
    state = store.quads(execution, PHT.state)[0].object
    other = PHT.Failed if state != PHT.Failed else PHT.Cancelled
    change = _state_step(execution, state, other)
    assert store.apply(change).conforms
    assert store.quads(execution, PHT.state)[0].object == other
    assert seen == [change], "later listeners still hear of the change"
    assert "commit listener failed" in caplog.text


def test_unstored_data_is_validated_as_a_store_holding_only_its_context_would(store: EmbeddedStore) -> None:
    """validate_unstored: no store, the same report an empty store gives, and the context counts as stored."""
    from graph_store import validate_unstored

    execution, station = NamedNode(EX + "exec-0002-aachen-r2"), NamedNode(EX + "station-aachen")
    alone = ChangeSet(insert=store.quads(execution))
    report = validate_unstored(alone)
    with EmbeddedStore() as empty:
        assert report.results == empty.validate(alone).results
    assert ("ClassConstraintComponent", PHT.atStation) in {(r.component_name, r.path) for r in report.results}
    known = store.quads(station)
    with_station = validate_unstored(alone, context=known)
    assert not any(r.path == PHT.atStation for r in with_station.results)
    assert len(with_station.results) < len(report.results)

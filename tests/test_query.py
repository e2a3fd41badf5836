"""ecs/query.py and ecs/changes.py: matching, caching, zero-copy batches, changed=/added=.

Change semantics under test (API.md "Queries", ecs/changes.py): a query object's changed=[C]
reports each row whose C was written (set, set_batch, spawn, add) since *that object* last
iterated, exactly once, independent of every other query object; added=[C] reports rows where
C was added or spawned; changed includes added; marks follow rows through archetype moves and
swap-removes; despawned rows are never reported; count() and entities() do not consume.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from tests.components import Frozen, Health, Mass, Position, Tint, Velocity


def seen(query: ecs.Query) -> list[int]:
    """Iterate the query once; the sorted ids of the selected rows (all rows when unfiltered)."""
    out: list[int] = []
    for batch in query:
        ids = batch.entities if batch.rows is None else batch.entities[batch.rows]
        out += ids.tolist()
    return sorted(out)


# ---------------------------------------------------------------- matching
def test_query_matches_tables_with_every_required_component_and_no_excluded_one(world: ecs.World) -> None:
    moving = world.spawn_batch(3, Position(x=0, y=0), Velocity(x=1, y=1))
    frozen = world.spawn_batch(2, Position(x=0, y=0), Velocity(x=1, y=1), Frozen())
    still = world.spawn_batch(4, Position(x=0, y=0))
    heavy = world.spawn_batch(1, Position(x=0, y=0), Velocity(x=0, y=0), Mass())
    world.spawn_batch(5, Health())
    assert seen(world.query(Position, Velocity)) == sorted([*moving, *frozen, *heavy])
    assert seen(world.query(Position, Velocity, without=[Frozen])) == sorted([*moving, *heavy])
    assert seen(world.query(Position, without=[Velocity])) == sorted(still)
    assert seen(world.query(Position, without=[Frozen, Mass])) == sorted([*moving, *still])
    assert world.query(Position).count() == 10
    assert world.query().count() == 15
    assert world.query(Tint).count() == 0 and seen(world.query(Tint)) == []


def test_query_yields_one_batch_per_non_empty_table(world: ecs.World) -> None:
    world.spawn_batch(3, Position(x=0, y=0))
    world.spawn_batch(2, Position(x=0, y=0), Frozen())
    gone = world.spawn_batch(2, Position(x=0, y=0), Health())
    world.despawn_batch(gone)
    batches = list(world.query(Position))
    assert sorted(len(b) for b in batches) == [2, 3]
    assert all(b.rows is None for b in batches)


def test_query_cache_picks_up_tables_created_after_the_query(world: ecs.World) -> None:
    first = world.spawn_batch(2, Position(x=0, y=0))
    query = world.query(Position, without=[Frozen])
    assert query.count() == 2
    second = world.spawn_batch(3, Position(x=0, y=0), Health())
    world.spawn_batch(4, Position(x=0, y=0), Frozen())
    moved = world.spawn(Position(x=0, y=0), Velocity(x=0, y=0))
    world.add(moved, Mass())
    assert query.count() == 6
    assert seen(query) == sorted([*first, *second, moved])
    assert query.entities().tolist() == [*first, *second, moved]


def test_query_entities_lists_ids_table_by_table(world: ecs.World) -> None:
    a = world.spawn_batch(3, Position(x=0, y=0))
    b = world.spawn_batch(2, Position(x=0, y=0), Health())
    ids = world.query(Position).entities()
    assert ids.dtype == np.int64 and ids.tolist() == [*a, *b]
    assert world.query(Tint).entities().dtype == np.int64


def test_query_rejects_non_components_and_bare_classes_as_filters(world: ecs.World) -> None:
    with pytest.raises(TypeError, match="is not a component class"):
        world.query(int)
    with pytest.raises(TypeError, match=r"without= takes a list of component classes"):
        world.query(Position, without=Frozen)
    with pytest.raises(TypeError, match=r"changed= takes a list of component classes"):
        world.query(Position, changed=Position)


# ---------------------------------------------------------------- batches
def test_batch_views_are_zero_copy_and_writable(world: ecs.World) -> None:
    ids = world.spawn_batch(4, Position(x=np.arange(4), y=0), Tint(rgb=[1, 2, 3]))
    (batch,) = world.query(Position, Tint)
    assert batch.entities.tolist() == ids.tolist()
    assert batch[Position].x.tolist() == [0, 1, 2, 3]
    assert batch[Position].x.dtype == np.float32 and batch[Tint].rgb.shape == (4, 3)
    batch[Position].x[:] *= 10
    batch[Position].y[2] = -1
    batch[Tint].rgb[1] = [7, 8, 9]
    assert world.get(ids[3], Position) == Position(x=30, y=0)
    assert world.get(ids[2], Position) == Position(x=20, y=-1)
    assert world.get(ids[1], Tint).rgb.tolist() == [7, 8, 9]
    world.set(int(ids[0]), Position(x=5, y=5))
    assert batch[Position].x[0] == 5   # and world writes show through the same views


def test_batch_entities_match_the_rows_of_the_columns(world: ecs.World) -> None:
    ids = world.spawn_batch(6, Position(x=np.arange(6), y=0))
    world.despawn_batch(ids[[0, 2]])
    (batch,) = world.query(Position)
    for entity, x in zip(batch.entities, batch[Position].x, strict=True):
        assert world.get(entity, Position).x == x


def test_batch_entities_are_read_only(world: ecs.World) -> None:
    """A write to the id column would corrupt the entity index (and the next despawn)."""
    ids = world.spawn_batch(4, Position(x=0, y=0))
    (batch,) = world.query(Position)
    with pytest.raises(ValueError, match="read-only"):
        batch.entities[3] = 12345
    with pytest.raises(ValueError, match="cannot set WRITEABLE flag"):   # the flag cannot be set back
        batch.entities.flags.writeable = True
    world.despawn(int(ids[0]))
    assert world.query(Position).entities().tolist() == [ids[3], ids[1], ids[2]]


def test_batch_of_a_component_outside_its_table_raises_key_error(world: ecs.World) -> None:
    world.spawn(Position(x=0, y=0))
    (batch,) = world.query(Position)
    with pytest.raises(KeyError, match=r"this batch's table has no Velocity \(it has Position\)"):
        batch[Velocity]


# ---------------------------------------------------------------- changed= / added=
def test_first_iteration_sees_every_existing_row_as_changed_and_added(world: ecs.World) -> None:
    ids = world.spawn_batch(5, Position(x=0, y=0))
    other = world.spawn(Position(x=0, y=0), Health())
    changed = world.query(Position, changed=[Position])
    added = world.query(Position, added=[Position])
    assert seen(changed) == sorted([*ids, other])
    assert seen(added) == sorted([*ids, other])
    assert seen(changed) == [] and seen(added) == []


def test_a_query_created_before_its_first_iteration_starts_at_that_iteration(world: ecs.World) -> None:
    changed = world.query(Position, changed=[Position])
    ids = world.spawn_batch(3, Position(x=0, y=0))
    assert seen(changed) == sorted(ids)
    assert seen(changed) == []


def test_filtered_batches_carry_the_selected_rows(world: ecs.World) -> None:
    ids = world.spawn_batch(100, Position(x=np.arange(100), y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set_batch(ids[[70, 3, 64]], Position(x=-1, y=-1))
    (batch,) = changed
    assert batch.rows.dtype == np.int64 and batch.rows.tolist() == [3, 64, 70]
    assert (batch[Position].x[batch.rows] == -1).all()
    assert len(batch) == 100   # the views still cover the whole table


@pytest.mark.parametrize("writer", ["set", "set_batch", "add_existing"])
def test_writes_are_reported_once(world: ecs.World, writer: str) -> None:
    ids = world.spawn_batch(10, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    targets = [int(ids[1]), int(ids[7])]
    for entity in targets:
        if writer == "set":
            world.set(entity, Position(x=1, y=1))
        elif writer == "add_existing":
            world.add(entity, Position(x=1, y=1))
    if writer == "set_batch":
        world.set_batch(targets, Position(x=1, y=1))
    assert seen(changed) == sorted(targets)
    assert seen(changed) == []


def test_writing_the_same_row_twice_reports_it_once(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set(int(ids[0]), Position(x=1, y=1))
    world.set_batch(ids[:2], Position(x=2, y=2))
    assert seen(changed) == sorted(ids[:2])


def test_spawn_and_add_mark_changed_and_added(world: ecs.World) -> None:
    old = world.spawn_batch(3, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    added = world.query(Position, added=[Position])
    seen(changed), seen(added)
    spawned = world.spawn(Position(x=1, y=1))
    batch = world.spawn_batch(2, Position(x=1, y=1), Health())
    gained = world.spawn(Health())
    world.add(gained, Position(x=2, y=2))
    expected = sorted([spawned, *batch, gained])
    assert seen(changed) == expected
    assert seen(added) == expected
    assert not set(expected) & set(old.tolist())


def test_set_is_not_an_addition(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    added = world.query(Position, added=[Position])
    seen(added)
    world.set(int(ids[0]), Position(x=1, y=1))
    world.set_batch(ids, Position(x=1, y=1))
    assert seen(added) == []


def test_changed_includes_added(world: ecs.World) -> None:
    entity = world.spawn(Position(x=0, y=0))
    health_changed = world.query(Health, changed=[Health])
    seen(health_changed)
    world.add(entity, Health(hp=3))
    assert seen(health_changed) == [entity]


def test_adding_another_component_is_not_a_change_of_the_first(world: ecs.World) -> None:
    entity = world.spawn(Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.add(entity, Health())
    world.remove(entity, Health)
    assert seen(changed) == []


def test_each_query_object_sees_each_change_once_independently(world: ecs.World) -> None:
    ids = world.spawn_batch(10, Position(x=0, y=0))
    fast = world.query(Position, changed=[Position])
    slow = world.query(Position, changed=[Position])
    seen(fast), seen(slow)
    world.set(int(ids[2]), Position(x=1, y=1))
    assert seen(fast) == [ids[2]]
    world.set(int(ids[5]), Position(x=1, y=1))
    assert seen(fast) == [ids[5]]
    assert seen(fast) == []
    assert seen(slow) == sorted([ids[2], ids[5]])   # fast's looks stole nothing from slow
    late = world.query(Position, changed=[Position])
    assert seen(late) == sorted(ids)                # a new object starts from everything
    world.set(int(ids[9]), Position(x=1, y=1))
    assert seen(slow) == [ids[9]] and seen(fast) == [ids[9]] and seen(late) == [ids[9]]


def test_a_reader_at_any_rate_sees_every_write_once(world: ecs.World) -> None:
    ids = world.spawn_batch(50, Position(x=0, y=0))
    readers = {rate: world.query(Position, changed=[Position]) for rate in (1, 2, 3, 7)}
    pending = {rate: set() for rate in readers}
    for reader in readers.values():
        seen(reader)
    rng = np.random.default_rng(30)
    for frame in range(30):
        targets = rng.choice(ids, size=int(rng.integers(0, 6)), replace=False)
        world.set_batch(targets, Position(x=frame, y=frame))
        for rate, reader in readers.items():
            pending[rate] |= set(targets.tolist())
            if frame % rate == 0:
                assert seen(reader) == sorted(pending[rate])
                pending[rate].clear()


def test_changed_marks_survive_an_archetype_move(world: ecs.World) -> None:
    ids = world.spawn_batch(5, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set(int(ids[1]), Position(x=1, y=1))
    world.add(int(ids[1]), Health())
    assert seen(changed) == [ids[1]]
    assert seen(changed) == []
    world.set(int(ids[3]), Position(x=1, y=1))
    world.add(int(ids[3]), Health(), Frozen())
    world.remove(int(ids[3]), Health)
    assert seen(changed) == [ids[3]]


def test_pending_changes_of_a_reader_survive_an_archetype_move(world: ecs.World) -> None:
    ids = world.spawn_batch(4, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    other = world.query(Position, changed=[Position])
    seen(changed), seen(other)
    world.set(int(ids[0]), Position(x=1, y=1))
    assert seen(other) == [ids[0]]   # flushes the mark into `changed`'s pending bits
    world.add(int(ids[0]), Mass())
    world.remove(int(ids[0]), Mass)
    assert seen(changed) == [ids[0]]


def test_a_change_then_despawn_is_never_reported(world: ecs.World) -> None:
    ids = world.spawn_batch(10, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set(int(ids[3]), Position(x=1, y=1))
    world.despawn(int(ids[3]))              # the unchanged last row is swapped into row 3
    assert seen(changed) == []
    world.set(int(ids[9]), Position(x=1, y=1))
    world.despawn(int(ids[9]))              # the changed entity was the last row itself
    assert seen(changed) == []


def test_the_row_swapped_into_a_despawned_row_keeps_its_own_change(world: ecs.World) -> None:
    ids = world.spawn_batch(10, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set(int(ids[2]), Position(x=1, y=1))
    world.set(int(ids[9]), Position(x=1, y=1))
    world.despawn(int(ids[2]))              # ids[9] (changed) moves into row 2
    assert seen(changed) == [ids[9]]
    world.set(int(ids[8]), Position(x=1, y=1))
    world.despawn_batch(ids[[0, 1]])        # ids[8] (changed) and ids[7] (not) fill the holes
    assert seen(changed) == [ids[8]]


def test_despawned_rows_of_a_pending_reader_are_never_reported(world: ecs.World) -> None:
    ids = world.spawn_batch(70, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    flusher = world.query(Position, changed=[Position])
    seen(changed), seen(flusher)
    world.set_batch(ids[[5, 64, 69]], Position(x=1, y=1))
    seen(flusher)                           # the marks now sit in `changed`'s pending bits
    world.despawn_batch(ids[[5, 69]])
    world.despawn(int(ids[64]))
    assert seen(changed) == []


def test_a_slot_reused_after_despawn_reports_only_the_new_entity(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    world.set(int(ids[2]), Position(x=1, y=1))
    world.despawn(int(ids[2]))
    again = world.spawn(Position(x=2, y=2))
    assert seen(changed) == [again]


def test_count_and_entities_do_not_consume_changes(world: ecs.World) -> None:
    ids = world.spawn_batch(6, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    assert changed.count() == 6
    assert sorted(changed.entities().tolist()) == sorted(ids)
    assert changed.count() == 6
    assert seen(changed) == sorted(ids)
    assert changed.count() == 0 and changed.entities().tolist() == []
    world.set(int(ids[4]), Position(x=1, y=1))
    assert changed.count() == 1 and changed.entities().tolist() == [ids[4]]
    assert seen(changed) == [ids[4]]


def test_a_query_with_several_filters_selects_the_union(world: ecs.World) -> None:
    ids = world.spawn_batch(6, Position(x=0, y=0), Velocity(x=0, y=0))
    query = world.query(Position, changed=[Position, Velocity], added=[Health])
    seen(query)
    world.set(int(ids[0]), Position(x=1, y=1))
    world.set(int(ids[1]), Velocity(x=1, y=1))
    world.add(int(ids[2]), Health())
    world.add(int(ids[3]), Mass())
    assert seen(query) == sorted(ids[:3])


def test_filter_on_a_component_the_query_does_not_require(world: ecs.World) -> None:
    with_velocity = world.spawn_batch(2, Position(x=0, y=0), Velocity(x=0, y=0))
    world.spawn_batch(2, Position(x=0, y=0))
    query = world.query(Position, changed=[Velocity])
    assert seen(query) == sorted(with_velocity)
    world.set(int(with_velocity[1]), Velocity(x=1, y=1))
    assert seen(query) == [with_velocity[1]]


def test_writes_through_batch_views_are_not_change_tracked(world: ecs.World) -> None:
    world.spawn_batch(3, Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    for batch in world.query(Position):
        batch[Position].x[:] = 9
    assert seen(changed) == []


def test_changes_in_tables_created_after_the_first_look_are_reported(world: ecs.World) -> None:
    world.spawn(Position(x=0, y=0))
    changed = world.query(Position, changed=[Position])
    seen(changed)
    later = world.spawn_batch(2, Position(x=0, y=0), Tint(rgb=[1, 1, 1]))
    assert seen(changed) == sorted(later)
    world.set(int(later[0]), Position(x=1, y=1))
    assert seen(changed) == [later[0]]


def test_many_readers_can_come_and_go(world: ecs.World) -> None:
    ids = world.spawn_batch(5, Position(x=0, y=0))
    for _ in range(600):   # more than a table's change slots: dropped queries give theirs back
        query = world.query(Position, changed=[Position])
        assert seen(query) == sorted(ids)
        del query


def test_a_query_that_lists_a_component_twice_is_refused(world: ecs.World) -> None:
    """Its Arrow export would hold every column of it twice."""
    world.spawn(Position(x=1, y=2))
    with pytest.raises(ecs.InvalidArgumentError, match=r"^world.query\(\) lists Position twice$"):
        world.query(Position, Position)
    assert world.query(Position).count() == 1


def test_a_batch_stays_one_moment_of_its_table_after_a_structural_change(world: ecs.World) -> None:
    """Views made after a despawn or spawn in the same table have the batch's row count, as its
    ids and rows do: stale, never of two lengths."""
    ids = world.spawn_batch(6, Position(x=np.arange(6), y=0))
    query = world.query(Position, changed=[Position])
    for batch in query:
        world.despawn_batch(ids[:3])
        assert len(batch) == batch.entities.shape[0] == batch[Position].x.shape[0] == 6
        assert batch.rows is not None and batch[Position].x[batch.rows].shape == (6,)
    for batch in world.query(Position):
        world.spawn_batch(2, Position(x=0, y=0))
        assert len(batch) == batch.entities.shape[0] == batch[Position].y.shape[0] == 3

"""ecs/world.py: spawn, get/set, add/remove, despawn, batches, errors, resources, close()."""

from __future__ import annotations

import mmap

import numpy as np
import pytest

import ecs
from ecs import ComponentValueError, DeadEntityError, MissingComponentError, WorldClosedError
from tests import introspect
from tests.components import ALL, Frozen, Health, Mass, Position, Tint, Velocity, plain


def observe(world: ecs.World, ids) -> dict:
    """Everything a user can see of these ids: len, liveness, values, table membership and order."""
    state: dict = {
        "len": len(world),
        "order": world.query().entities().tolist(),
        "counts": {cls.__name__: world.query(cls).count() for cls in ALL},
    }
    for entity in map(int, ids):
        if not world.is_alive(entity):
            state[entity] = None
            continue
        state[entity] = {cls.__name__: plain(world.get(entity, cls)) for cls in ALL if world.has(entity, cls)}
    return state


def populated(world: ecs.World) -> np.ndarray:
    """Entities in three archetypes, with distinct values; returns every id."""
    a = world.spawn_batch(5, Position(x=np.arange(5), y=np.arange(5) * 2), Velocity(x=1, y=-1))
    b = world.spawn_batch(4, Position(x=np.arange(10, 14), y=0), Health(hp=np.arange(4)))
    c = world.spawn_batch(3, Tint(rgb=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]), Frozen())
    return np.concatenate([a, b, c])


# ---------------------------------------------------------------- spawn / get / has
def test_spawn_returns_an_id_whose_values_read_back(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Velocity(x=0.5, y=0))
    assert isinstance(entity, int)
    assert world.get(entity, Position) == Position(x=1, y=2)
    assert world.get(entity, Velocity) == Velocity(x=0.5, y=0)
    assert world.is_alive(entity)
    assert len(world) == 1


def test_get_returns_numpy_scalars_that_are_a_copy(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Tint(rgb=[1, 2, 3]))
    pos = world.get(entity, Position)
    assert type(pos.x) is np.float32
    world.set(entity, Position(x=5, y=6))
    assert pos.x == 1.0  # the earlier value did not follow the column
    tint = world.get(entity, Tint)
    assert tint.rgb.dtype == np.uint8 and tint.rgb.tolist() == [1, 2, 3]


def test_has_answers_per_component(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Frozen())
    assert world.has(entity, Position)
    assert world.has(entity, Frozen)
    assert not world.has(entity, Velocity)


def test_a_tag_reads_back_as_an_empty_value(world: ecs.World) -> None:
    entity = world.spawn(Frozen())
    assert world.get(entity, Frozen) == Frozen()


def test_an_entity_may_have_no_components(world: ecs.World) -> None:
    entity = world.spawn()
    assert world.is_alive(entity) and len(world) == 1
    assert not world.has(entity, Position)
    world.add(entity, Health())
    assert world.get(entity, Health).hp == 100


def test_defaults_apply_when_spawning(world: ecs.World) -> None:
    entity = world.spawn(Health(), Mass())
    assert world.get(entity, Health).hp == 100
    assert world.get(entity, Mass).kg == 1.0


def test_spawn_rejects_array_values(world: ecs.World) -> None:
    with pytest.raises(ComponentValueError,
                       match=r"Position = '<arrays of length 2>': spawn\(\) takes scalar"):
        world.spawn(Position(x=[1, 2], y=0))
    assert len(world) == 0


def test_spawn_rejects_a_component_given_twice(world: ecs.World) -> None:
    with pytest.raises(ComponentValueError, match=r"spawn\(\) got Position twice"):
        world.spawn(Position(x=1, y=2), Position(x=3, y=4))
    assert len(world) == 0


def test_spawn_rejects_a_component_class_instead_of_a_value(world: ecs.World) -> None:
    with pytest.raises(TypeError,
                       match=r"Position is a component class; pass a value such as Position\(...\)"):
        world.spawn(Position)


# ---------------------------------------------------------------- ids
def test_id_zero_is_never_issued(world: ecs.World) -> None:
    ids = world.spawn_batch(1000, Position(x=0, y=0))
    ids = np.concatenate([ids, [world.spawn(Health())]])
    assert 0 not in ids and (ids > 0).all()
    assert not world.is_alive(0)
    with pytest.raises(DeadEntityError,
                       match="entity 0 is not alive: no entity was ever spawned with this id"):
        world.get(0, Position)


@pytest.mark.parametrize("entity", [2**63, 2**64 + 1])
def test_an_id_past_int64_was_never_spawned_in_every_call(world: ecs.World, entity: int) -> None:
    world.spawn_batch(3, Position(x=0, y=0))
    message = f"entity {entity} is not alive: no entity was ever spawned with this id"
    for call in (lambda: world.despawn(entity), lambda: world.get(entity, Position),
                 lambda: world.remove(entity, Position), lambda: world.despawn_batch([entity])):
        with pytest.raises(DeadEntityError, match=message):
            call()
    assert len(world) == 3


def test_ids_are_unique(world: ecs.World) -> None:
    ids = np.concatenate([world.spawn_batch(500, Position(x=0, y=0)), world.spawn_batch(500, Health())])
    assert np.unique(ids).shape[0] == 1000


def test_despawn_frees_slot_for_reuse_with_a_bumped_generation(world: ecs.World) -> None:
    first = world.spawn(Position(x=1, y=2))
    world.despawn(first)
    second = world.spawn(Position(x=3, y=4))
    assert second & 0xFFFFFFFF == first & 0xFFFFFFFF
    assert second >> 32 == (first >> 32) + 1
    assert not world.is_alive(first)
    assert world.is_alive(second)
    with pytest.raises(DeadEntityError, match=rf"entity {first} is not alive: its slot is at generation 1; "
                                              r"an id kept across despawn\(\) refers to nothing"):
        world.get(first, Position)


def test_ids_of_despawned_entities_are_never_alive_again(world: ecs.World) -> None:
    dead: list[int] = []
    for _ in range(20):
        ids = world.spawn_batch(50, Position(x=0, y=0))
        world.despawn_batch(ids[::2])
        dead += ids[::2].tolist()
        world.despawn(int(ids[1]))
        dead.append(int(ids[1]))
        assert not any(world.is_alive(e) for e in dead)
    assert len(world) == 20 * 24


def test_a_slot_whose_generation_is_exhausted_is_retired(world: ecs.World) -> None:
    entity = world.spawn(Position(x=0, y=0))
    index = entity & 0xFFFFFFFF
    world.despawn(entity)
    introspect.entity_index(world).generation[index] = (1 << 31) - 1   # as if despawned 2**31 - 2 more times
    last = world.spawn(Position(x=0, y=0))
    assert last == ((1 << 31) - 1) << 32 | index
    world.despawn(last)
    after = world.spawn(Position(x=0, y=0))
    assert after & 0xFFFFFFFF != index
    assert not world.is_alive(last) and not world.is_alive(entity)


def test_dead_and_foreign_ids_raise_dead_entity_error(world: ecs.World) -> None:
    entity = world.spawn(Position(x=0, y=0))
    for bad in (-1, 12345, entity + (1 << 32)):
        assert not world.is_alive(bad)
        with pytest.raises(DeadEntityError, match=rf"entity {bad} is not alive"):
            world.get(bad, Position)
    world.despawn(entity)
    for call in (lambda: world.get(entity, Position), lambda: world.set(entity, Position(x=1, y=1)),
                 lambda: world.has(entity, Position), lambda: world.add(entity, Health()),
                 lambda: world.remove(entity, Position), lambda: world.despawn(entity)):
        with pytest.raises(DeadEntityError, match=rf"entity {entity} is not alive"):
            call()


def test_dead_entity_error_is_a_lookup_error(world: ecs.World) -> None:
    with pytest.raises(LookupError):
        world.despawn(99)


def test_numpy_integer_ids_are_accepted(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=np.arange(3), y=0))
    assert world.get(ids[2], Position).x == 2.0
    assert world.is_alive(ids[0])
    world.despawn(ids[1])
    assert len(world) == 2


# ---------------------------------------------------------------- set / add / remove
def test_set_overwrites_one_component(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Velocity(x=3, y=4))
    world.set(entity, Position(x=5, y=6))
    assert world.get(entity, Position) == Position(x=5, y=6)
    assert world.get(entity, Velocity) == Velocity(x=3, y=4)


def test_set_of_a_missing_component_raises_missing_component_error(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Frozen())
    with pytest.raises(MissingComponentError,
                       match=rf"entity {entity} has no Health component \(it has Position, Frozen\); "
                             r"add it with world.add\(entity, Health\(...\)\) first"):
        world.set(entity, Health(hp=3))
    with pytest.raises(MissingComponentError, match="has no Velocity component"):
        world.get(entity, Velocity)
    with pytest.raises(MissingComponentError, match="has no Velocity component"):
        world.remove(entity, Velocity)
    with pytest.raises(LookupError):
        world.get(entity, Velocity)


def test_set_rejects_array_values(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2))
    with pytest.raises(ComponentValueError, match=r"Position = '<arrays of length 2>': set\(\) takes scalar"):
        world.set(entity, Position(x=[1, 2], y=0))
    assert world.get(entity, Position) == Position(x=1, y=2)


def test_add_moves_the_entity_and_keeps_every_other_value(world: ecs.World) -> None:
    ids = world.spawn_batch(4, Position(x=np.arange(4), y=np.arange(4) + 10), Velocity(x=7, y=8))
    world.add(int(ids[1]), Health(hp=42), Frozen())
    assert world.get(ids[1], Position) == Position(x=1, y=11)
    assert world.get(ids[1], Velocity) == Velocity(x=7, y=8)
    assert world.get(ids[1], Health).hp == 42
    assert world.has(ids[1], Frozen)
    for other, x in ((0, 0), (2, 2), (3, 3)):   # the row swapped into the hole keeps its values too
        assert world.get(ids[other], Position) == Position(x=x, y=x + 10)
        assert not world.has(ids[other], Health)


def test_add_of_a_component_it_has_overwrites_it_in_place(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Health(hp=1))
    world.add(entity, Health(hp=2), Velocity(x=3, y=4))
    assert world.get(entity, Health).hp == 2
    assert world.get(entity, Velocity) == Velocity(x=3, y=4)
    assert world.get(entity, Position) == Position(x=1, y=2)


def test_remove_moves_the_entity_and_keeps_every_other_value(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=np.arange(3), y=0), Velocity(x=1, y=1), Tint(rgb=[9, 8, 7]))
    world.remove(int(ids[0]), Velocity)
    assert not world.has(ids[0], Velocity)
    assert world.get(ids[0], Position) == Position(x=0, y=0)
    assert world.get(ids[0], Tint).rgb.tolist() == [9, 8, 7]
    assert world.get(ids[2], Velocity) == Velocity(x=1, y=1)
    world.remove(int(ids[0]), Position, Tint)
    assert world.is_alive(ids[0]) and not any(world.has(ids[0], c) for c in ALL)


def test_remove_then_add_back_restores_the_original_archetype(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Velocity(x=3, y=4))
    tables = len(introspect.tables(world))
    world.remove(entity, Velocity)
    world.add(entity, Velocity(x=5, y=6))
    assert world.get(entity, Velocity) == Velocity(x=5, y=6)
    assert world.get(entity, Position) == Position(x=1, y=2)
    assert len(introspect.tables(world)) == tables + 1


def test_removing_a_component_listed_twice_removes_it_once(world: ecs.World) -> None:
    entity = world.spawn(Position(x=1, y=2), Velocity(x=3, y=4))
    world.remove(entity, Velocity, Velocity)
    assert not world.has(entity, Velocity)
    other = world.spawn(Position(x=5, y=6))
    world.add(other, Velocity(x=7, y=8))   # the archetype graph is intact
    assert world.get(other, Velocity) == Velocity(x=7, y=8)
    assert world.get(other, Position) == Position(x=5, y=6)
    assert world.query(Position, Velocity).entities().tolist() == [other]


def test_moves_through_many_archetypes_keep_values(world: ecs.World) -> None:
    entity = world.spawn(Mass(kg=2.5))
    bystanders = world.spawn_batch(3, Mass(kg=np.array([1.0, 2.0, 3.0])))
    world.add(entity, Position(x=1, y=1))
    world.add(entity, Tint(rgb=[1, 1, 1]))
    world.remove(entity, Position)
    world.add(entity, Health(hp=-5), Frozen())
    world.remove(entity, Tint, Frozen)
    assert world.get(entity, Mass).kg == 2.5
    assert world.get(entity, Health).hp == -5
    assert [world.get(e, Mass).kg for e in bystanders] == [1.0, 2.0, 3.0]


# ---------------------------------------------------------------- batches
def test_spawn_batch_takes_arrays_and_broadcasts_scalars(world: ecs.World) -> None:
    xs = np.linspace(0, 1, 7, dtype=np.float32)
    ids = world.spawn_batch(7, Position(x=xs, y=3.0), Velocity(x=0.0, y=np.arange(7)), Frozen())
    assert ids.dtype == np.int64 and ids.shape == (7,)
    for k, entity in enumerate(ids):
        assert world.get(entity, Position) == Position(x=xs[k], y=3)
        assert world.get(entity, Velocity) == Velocity(x=0, y=k)
        assert world.has(entity, Frozen)
    assert len(world) == 7


def test_spawn_batch_takes_vector_fields_as_rows_or_one_broadcast_vector(world: ecs.World) -> None:
    rows = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    ids = world.spawn_batch(2, Tint(rgb=rows))
    assert [world.get(e, Tint).rgb.tolist() for e in ids] == rows.tolist()
    ids = world.spawn_batch(3, Tint(rgb=[7, 8, 9]))
    assert [world.get(e, Tint).rgb.tolist() for e in ids] == [[7, 8, 9]] * 3


def test_spawn_batch_of_zero_returns_an_empty_id_array(world: ecs.World) -> None:
    ids = world.spawn_batch(0, Position(x=0, y=0))
    assert ids.dtype == np.int64 and ids.shape == (0,)
    ids = world.spawn_batch(0, Position(x=np.empty(0), y=np.empty(0)))
    assert ids.shape == (0,) and len(world) == 0


def test_spawn_batch_returns_ids_that_are_not_views_of_the_table(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    kept = ids.copy()
    world.despawn(int(ids[0]))
    assert ids.tolist() == kept.tolist()


def test_spawn_batch_reuses_freed_slots_then_fresh_ones(world: ecs.World) -> None:
    first = world.spawn_batch(10, Position(x=0, y=0))
    world.despawn_batch(first[:4])
    second = world.spawn_batch(6, Health())
    reused = second[:4]
    assert sorted((reused & 0xFFFFFFFF).tolist()) == sorted((first[:4] & 0xFFFFFFFF).tolist())
    assert ((reused >> 32) == 1).all()   # same slots, next generation
    assert not set((second[4:] & 0xFFFFFFFF).tolist()) & set((first & 0xFFFFFFFF).tolist())
    assert len(world) == 12
    assert all(world.is_alive(e) for e in second) and not any(world.is_alive(e) for e in first[:4])


def test_spawn_batch_checks_array_lengths_against_n(world: ecs.World) -> None:
    with pytest.raises(ComponentValueError,
                       match=r"Position.x = '<array of length 3>': batch length 3 differs from n=5"):
        world.spawn_batch(5, Position(x=[1, 2, 3], y=0))


@pytest.mark.parametrize("n", [-1, 2.0, True, "3"])
def test_spawn_batch_rejects_a_bad_count(world: ecs.World, n) -> None:
    with pytest.raises(ValueError, match=r"spawn_batch\(n=.*\): n must be an int >= 0"):
        world.spawn_batch(n, Position(x=0, y=0))


def test_despawn_batch_removes_entities_from_several_tables(world: ecs.World) -> None:
    ids = populated(world)
    doomed = ids[[0, 3, 4, 5, 8, 11]]
    world.despawn_batch(doomed)
    assert len(world) == len(ids) - len(doomed)
    for entity in ids:
        assert world.is_alive(entity) == (entity not in doomed)
    survivors = [e for e in ids if e not in doomed]
    assert sorted(world.query().entities().tolist()) == sorted(int(e) for e in survivors)
    assert world.get(ids[1], Position) == Position(x=1, y=2)
    assert world.get(ids[2], Position) == Position(x=2, y=4)
    assert world.get(ids[6], Health).hp == 1
    assert world.get(ids[10], Tint).rgb.tolist() == [4, 5, 6]


def test_despawn_batch_of_a_whole_table_and_of_nothing(world: ecs.World) -> None:
    ids = world.spawn_batch(130, Position(x=np.arange(130), y=0))
    world.despawn_batch([])
    world.despawn_batch(np.empty(0, np.int64))
    assert len(world) == 130
    world.despawn_batch(ids)
    assert len(world) == 0 and world.query(Position).count() == 0


def test_despawn_batch_rejects_duplicates(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    with pytest.raises(ValueError, match=rf"despawn_batch: entity {ids[1]} is listed more than once"):
        world.despawn_batch([ids[0], ids[1], ids[1]])


def test_set_batch_writes_arrays_and_broadcast_scalars(world: ecs.World) -> None:
    ids = world.spawn_batch(5, Position(x=0, y=0))
    world.set_batch(ids[[4, 0, 2]], Position(x=[40, 0.5, 20], y=9))
    assert [world.get(e, Position).x for e in ids] == [0.5, 0, 20, 0, 40]
    assert [world.get(e, Position).y for e in ids] == [9, 0, 9, 0, 9]


def test_set_batch_spans_several_tables(world: ecs.World) -> None:
    ids = populated(world)
    targets = ids[[8, 0, 5, 3]]    # Position in two tables, interleaved
    world.set_batch(targets, Position(x=[1, 2, 3, 4], y=-1))
    assert [world.get(e, Position).x for e in targets] == [1, 2, 3, 4]
    assert world.get(ids[1], Position) == Position(x=1, y=2)
    assert world.get(ids[6], Health).hp == 1


def test_set_batch_writes_vector_fields(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Tint(rgb=[0, 0, 0]))
    world.set_batch(ids[:2], Tint(rgb=[[1, 2, 3], [4, 5, 6]]))
    world.set_batch(ids[2:], Tint(rgb=[7, 7, 7]))
    assert [world.get(e, Tint).rgb.tolist() for e in ids] == [[1, 2, 3], [4, 5, 6], [7, 7, 7]]


def test_set_batch_checks_lengths_against_the_ids(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Position(x=0, y=0))
    with pytest.raises(ComponentValueError,
                       match=r"Position.x = '<array of length 2>': "
                             r"batch length 2 differs from the 3 entities"):
        world.set_batch(ids, Position(x=[1, 2], y=0))


def test_batch_calls_reject_non_id_arrays(world: ecs.World) -> None:
    world.spawn_batch(3, Position(x=0, y=0))
    with pytest.raises(TypeError, match="expected a 1-D sequence of entity ids"):
        world.despawn_batch(np.array([1.0, 2.0]))
    with pytest.raises(TypeError, match="expected a 1-D sequence of entity ids"):
        world.set_batch(np.array([[1, 2]]), Position(x=0, y=0))
    with pytest.raises(TypeError, match=r"got bool array of shape \(2,\) \(first value True\)"):
        world.despawn_batch([True, False])
    assert len(world) == 3


# ---------------------------------------------------------------- a call that raises changes nothing
FAILING_CALLS = {
    "spawn_batch with a short array": (
        lambda w, ids: w.spawn_batch(4, Position(x=[1, 2, 3], y=0), Health()), ComponentValueError),
    "spawn_batch with a component twice": (
        lambda w, ids: w.spawn_batch(2, Health(), Health()), ComponentValueError),
    "spawn_batch with a negative count": (
        lambda w, ids: w.spawn_batch(-2, Health()), ValueError),
    "spawn with arrays": (
        lambda w, ids: w.spawn(Position(x=[1, 2], y=0)), ComponentValueError),
    "set_batch with a dead id last": (
        lambda w, ids: w.set_batch([ids[0], ids[5], 999], Position(x=7, y=7)), DeadEntityError),
    "set_batch where one table lacks the component": (
        lambda w, ids: w.set_batch([ids[0], ids[5], ids[9]], Position(x=7, y=7)), MissingComponentError),
    "set_batch where a later table lacks the component": (
        lambda w, ids: w.set_batch([ids[5], ids[0]], Health(hp=7)), MissingComponentError),
    "set_batch with a short array": (
        lambda w, ids: w.set_batch(ids[:3], Position(x=[1, 2], y=0)), ComponentValueError),
    "set of a missing component": (
        lambda w, ids: w.set(ids[0], Health(hp=1)), MissingComponentError),
    "despawn_batch with a dead id in the middle": (
        lambda w, ids: w.despawn_batch([ids[0], ids[5], (1 << 32) | 3, ids[9]]), DeadEntityError),
    "despawn_batch with a duplicate": (
        lambda w, ids: w.despawn_batch([ids[0], ids[5], ids[0]]), ValueError),
    "despawn of a dead id": (
        lambda w, ids: w.despawn(12345), DeadEntityError),
    "add to a dead id": (
        lambda w, ids: w.add((1 << 32) | int(ids[0]), Health()), DeadEntityError),
    "add of a component twice": (
        lambda w, ids: w.add(ids[0], Health(), Health()), ComponentValueError),
    "add of arrays": (
        lambda w, ids: w.add(ids[0], Health(hp=[1, 2])), ComponentValueError),
    "add of a class": (
        lambda w, ids: w.add(ids[0], Health(), Frozen), TypeError),
    "remove with one missing component": (
        lambda w, ids: w.remove(ids[0], Velocity, Health), MissingComponentError),
    "remove of a non-component": (
        lambda w, ids: w.remove(ids[0], int), TypeError),
}


@pytest.mark.parametrize("case", list(FAILING_CALLS))
def test_a_call_that_raises_changes_nothing(world: ecs.World, case: str) -> None:
    ids = populated(world)
    call, error = FAILING_CALLS[case]
    before = observe(world, ids)
    with pytest.raises(error):
        call(world, ids)
    assert observe(world, ids) == before
    # and the world still works
    more = world.spawn_batch(2, Position(x=1, y=1), Health())
    world.despawn_batch(more)
    assert observe(world, ids) == before


def test_ids_that_are_not_live_raise_after_the_one_entity_paths_exist(world: ecs.World) -> None:
    """add, remove and despawn of one entity take the path of the table that the entity index
    names for the id's slot, whose kernel checks the id itself: an id it must not take (dead,
    of another generation, never spawned, slot 0, outside int64, not an int) still raises the
    checked call's error and changes nothing, and a live id of another table takes that
    table's path."""
    blank = [world.spawn() for _ in range(5)]   # the world's first table (id 0): no components
    ids = populated(world)
    for _ in range(2):                          # compiled at the first call, taken from the next
        world.add(blank[1], Mass(kg=2.0))       # add's path from it to it + Mass, remove's back
        world.remove(blank[1], Mass)
    world.despawn(blank[4])                     # despawn's path for it
    world.despawn(blank[0])
    blank = blank[:4]
    everyone = [*ids, *blank]
    before = observe(world, everyone)
    never = 1 << 20   # a slot never handed out: past the high water, it reads as table 0, generation 0
    for bad in (blank[0], blank[0] + (5 << 32), blank[2] + (1 << 32), never, 1 << 32, 0, -3, 2**63,
                2**64 + blank[2], -(2**70)):
        for call, args in ((world.add, (bad, Mass(kg=1.0))), (world.remove, (bad, Mass)), (world.despawn, (bad,))):
            with pytest.raises(DeadEntityError, match=rf"entity {bad} is not alive"):
                call(*args)
    for bad in (True, 2.0, "3"):
        for call, args in ((world.add, (bad, Mass(kg=1.0))), (world.remove, (bad, Mass)), (world.despawn, (bad,))):
            with pytest.raises(TypeError, match="an entity id is an int, got"):
                call(*args)
    assert observe(world, everyone) == before
    other, third = int(ids[0]), int(ids[5])      # live, in tables a and b: not the paths' table
    world.add(other, Mass(kg=3.0))
    world.add(np.int64(third), Mass(kg=4.0))    # numpy ids take the same paths
    world.remove(other, Velocity)
    world.despawn(np.int64(blank[3]))
    world.despawn(third)
    assert world.get(other, Mass) == Mass(kg=3.0) and not world.has(other, Velocity)
    assert plain(world.get(other, Position)) == before[other]["Position"] and not world.is_alive(third)
    assert not world.is_alive(blank[3]) and world.is_alive(blank[2]) and len(world) == len(everyone) - 3


def test_spawn_past_max_entities_changes_nothing() -> None:
    with ecs.World(max_entities=64) as world:
        ids = world.spawn_batch(60, Position(x=np.arange(60), y=0))
        before = observe(world, ids)
        with pytest.raises(MemoryError, match=r"World\(max_entities=64\)"):
            world.spawn_batch(10, Position(x=0, y=0))
        assert observe(world, ids) == before
        world.spawn_batch(4, Position(x=0, y=0))
        assert len(world) == 64


def test_spawn_past_max_rows_changes_nothing() -> None:
    with ecs.World(max_rows=64) as world:
        ids = world.spawn_batch(60, Position(x=np.arange(60), y=0))
        before = observe(world, ids)
        with pytest.raises(MemoryError, match=r"cannot hold 65 rows: World\(max_rows=64\)"):
            world.spawn_batch(5, Position(x=0, y=0))
        assert observe(world, ids) == before
        world.spawn_batch(4, Position(x=0, y=0))
        assert len(world) == 64
        with pytest.raises(MemoryError):
            world.spawn(Position(x=0, y=0))
        assert len(world) == 64


@pytest.mark.parametrize(("name", "value"), [("workers", -1), ("workers", "many"), ("max_rows", 10),
                                             ("max_entities", 1.5)])
def test_world_rejects_bad_settings(name: str, value) -> None:
    with pytest.raises(ValueError, match=rf"World\({name}="):
        ecs.World(**{name: value})


# ---------------------------------------------------------------- close
def test_context_manager_closes_the_world() -> None:
    with ecs.World() as world:
        entity = world.spawn(Position(x=1, y=2))
    with pytest.raises(WorldClosedError, match=r"world.get\(\) called after world.close\(\)"):
        world.get(entity, Position)


def test_an_exception_inside_with_closes_the_world_and_propagates() -> None:
    with pytest.raises(KeyError, match="boom"), ecs.World() as world:
        world.spawn(Position(x=1, y=2))
        raise KeyError("boom")
    with pytest.raises(WorldClosedError):
        world.spawn(Position(x=1, y=2))


def test_close_is_idempotent_and_every_call_after_it_raises_world_closed_error() -> None:
    world = ecs.World()
    entity = world.spawn(Position(x=1, y=2))
    world.close()
    world.close()
    calls = {
        "spawn": lambda: world.spawn(Position(x=1, y=2)),
        "spawn_batch": lambda: world.spawn_batch(2, Position(x=1, y=2)),
        "despawn": lambda: world.despawn(entity),
        "despawn_batch": lambda: world.despawn_batch([entity]),
        "is_alive": lambda: world.is_alive(entity),
        "has": lambda: world.has(entity, Position),
        "get": lambda: world.get(entity, Position),
        "set": lambda: world.set(entity, Position(x=1, y=2)),
        "set_batch": lambda: world.set_batch([entity], Position(x=1, y=2)),
        "add": lambda: world.add(entity, Health()),
        "remove": lambda: world.remove(entity, Position),
        "query": lambda: world.query(Position),
    }
    for name, call in calls.items():
        with pytest.raises(WorldClosedError, match=rf"world\.{name}\(\) called after world\.close\(\); "
                                                   r"the world's memory is released"):
            call()
    with pytest.raises(RuntimeError):
        world.spawn()
    assert "closed" in repr(world)


def test_a_query_made_before_close_raises_world_closed_error() -> None:
    world = ecs.World()
    world.spawn(Position(x=1, y=2))
    query = world.query(Position)
    changed = world.query(Position, changed=[Position])
    world.close()
    for call in (lambda: list(query), query.count, query.entities, lambda: list(changed)):
        with pytest.raises(WorldClosedError):
            call()


def test_setting_a_resource_after_close_raises_world_closed_error() -> None:
    world = ecs.World()
    world.close()
    with pytest.raises(WorldClosedError, match=r"world.resources"):
        world.resources["grid"] = np.zeros(3)
    with pytest.raises(WorldClosedError, match=r"world.resources"):
        world.resources["g"] = 9.81


# ---------------------------------------------------------------- resources
def test_scalar_resources_are_kept_as_given(world: ecs.World) -> None:
    world.resources["gravity"] = -9.81
    world.resources["frames"] = 3
    world.resources["paused"] = False
    world.resources["scale"] = np.float32(0.5)
    assert world.resources["gravity"] == -9.81 and type(world.resources["gravity"]) is float
    assert world.resources["frames"] == 3 and world.resources["paused"] is False
    assert type(world.resources["scale"]) is np.float32
    assert sorted(world.resources) == ["frames", "gravity", "paused", "scale"]
    assert len(world.resources) == 4


def _buffer_owner(array: np.ndarray) -> object:
    owner = array
    while isinstance(owner, np.ndarray):
        owner = owner.base
    return owner.obj if isinstance(owner, memoryview) else owner


def test_array_resources_are_copied_into_shared_memory(world: ecs.World) -> None:
    grid = np.arange(12, dtype=np.int32).reshape(3, 4)
    world.resources["grid"] = grid
    shared = world.resources["grid"]
    assert shared is not grid and not np.shares_memory(shared, grid)
    assert isinstance(_buffer_owner(shared), mmap.mmap)
    assert shared.dtype == np.int32 and shared.shape == (3, 4)
    np.testing.assert_array_equal(shared, grid)
    grid[0, 0] = 100
    assert world.resources["grid"][0, 0] == 0   # a copy, not the caller's array
    shared[1, 1] = -7
    assert world.resources["grid"][1, 1] == -7  # writes through the returned array are the resource


def test_an_array_resource_of_the_other_byte_order_is_kept_in_this_machines(world: ecs.World) -> None:
    """numba compiles no kernel for a non-native array; the values are kept, not the order."""
    other = np.arange(6, dtype=np.float32).astype(np.dtype(np.float32).newbyteorder())
    world.resources["grid"] = other
    assert world.resources["grid"].dtype == np.float32 and world.resources["grid"].dtype.isnative
    assert world.resources["grid"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_replacing_and_deleting_array_resources(world: ecs.World) -> None:
    world.resources["grid"] = np.ones(5, np.float64)
    world.resources["grid"] = np.zeros((2, 2), np.bool_)
    assert world.resources["grid"].shape == (2, 2) and world.resources["grid"].dtype == np.bool_
    world.resources["empty"] = np.zeros(0, np.int8)
    assert world.resources["empty"].shape == (0,)
    del world.resources["grid"]
    assert "grid" not in world.resources
    with pytest.raises(KeyError):
        del world.resources["grid"]
    world.resources["grid"] = np.full(3, 2, np.uint16)
    assert world.resources["grid"].tolist() == [2, 2, 2]


@pytest.mark.parametrize("value", ["text", [1, 2], None, np.array(["a"]), np.array([object()]),
                                   np.zeros(2, np.complex64), {"a": 1}])
def test_resources_of_other_types_raise_type_error(world: ecs.World, value) -> None:
    with pytest.raises(TypeError, match="resource 'thing': "):
        world.resources["thing"] = value
    assert "thing" not in world.resources


def test_resource_names_must_be_identifiers(world: ecs.World) -> None:
    with pytest.raises(KeyError, match="resource names are identifiers"):
        world.resources["not a name"] = 1.0


def test_calls_with_numpy_scalar_values_build_their_fast_path_once(world: ecs.World,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Values that are not plain Python scalars take the checked path at every call; the fast path
    it leaves behind (generated code, ~0.1 ms to build) is made once per table and types."""
    import ecs.access
    import ecs.store

    built: list[str] = []
    for module, name in ((ecs.store, "compile_spawn"), (ecs.access, "compile_access")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _f=original, _n=name: (built.append(_n), _f(*args))[1])
    ids = [world.spawn(Position(x=np.float64(k), y=np.float32(1.0))) for k in range(5)]
    for e in ids:
        world.set(e, Position(x=np.float64(2.0), y=np.array(3.0)))
    assert built.count("compile_spawn") == 1 and built.count("compile_access") == 1
    assert [plain(world.get(e, Position)) for e in ids] == [{"x": 2.0, "y": 3.0}] * 5

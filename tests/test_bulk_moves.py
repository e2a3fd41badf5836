"""add_batch / remove_batch: the same world as the one-entity calls in a loop (values, tables,
order of ids within tables aside, change bits seen by readers, removed= journals), and the same
errors with nothing changed."""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from tests.components import Frozen, Health, Mass, Position, Tint, Velocity, plain

COMPONENTS = (Position, Velocity, Health, Mass, Frozen)


def populated(seed: int) -> tuple[ecs.World, np.ndarray, list[ecs.Query]]:
    rng = np.random.default_rng(seed)
    world = ecs.World()
    ids = [world.spawn_batch(40, Position(x=rng.random(40, np.float32), y=0.0)),
           world.spawn_batch(30, Position(x=1.0, y=2.0), Velocity(x=rng.random(30, np.float32), y=0.0)),
           world.spawn_batch(30, Position(x=3.0, y=4.0), Health(hp=rng.integers(0, 9, 30)), Frozen())]
    readers = [world.query(c, changed=[c]) for c in (Position, Health, Mass)]
    readers += [world.query(c, added=[c]) for c in (Health, Mass, Frozen)]
    readers += [world.query(removed=[c]) for c in (Health, Frozen, Velocity)]
    for query in readers[:6]:
        list(query)
    return world, np.concatenate(ids), readers


def state(world: ecs.World, ids: np.ndarray, readers: list[ecs.Query]) -> dict:
    """What a user sees: each entity's components and values, and what each reader reports."""
    out: dict = {int(e): {c.__name__: plain(world.get(int(e), c)) for c in COMPONENTS if world.has(int(e), c)}
                 for e in ids}
    out["changed"] = [sorted(q.entities().tolist()) for q in readers[:6]]
    out["removed"] = [q.removed().tolist() for q in readers[6:]]
    return out


@pytest.mark.parametrize("seed", range(6))
def test_add_batch_and_remove_batch_equal_the_one_entity_calls(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    bulk, ids, bulk_readers = populated(seed)
    loop, _, loop_readers = populated(seed)
    try:
        for _ in range(4):
            chosen = rng.choice(ids, size=int(rng.integers(0, 60)), replace=False)
            hps = rng.integers(0, 100, chosen.shape[0])
            bulk.add_batch(chosen, Health(hp=hps), Mass(kg=2.5))
            for e, hp in zip(chosen, hps, strict=True):
                loop.add(int(e), Health(hp=int(hp)), Mass(kg=2.5))
            holders = np.array([e for e in ids if loop.has(int(e), Health) and loop.has(int(e), Mass)], np.int64)
            gone = rng.choice(holders, size=int(rng.integers(0, len(holders) + 1)), replace=False) \
                if len(holders) else holders
            bulk.remove_batch(gone, Health, Mass)
            for e in gone:
                loop.remove(int(e), Health, Mass)
            assert state(bulk, ids, bulk_readers) == state(loop, ids, loop_readers)
    finally:
        bulk.close()
        loop.close()


def test_bulk_errors_change_nothing_and_name_the_entity() -> None:
    world, ids, readers = populated(0)
    try:
        before = state(world, ids, readers[:6])
        dead = int(ids[3])
        world.despawn(dead)
        before = state(world, np.delete(ids, 3), readers[:6])
        lacking = int(ids[0])            # Position only
        cases = [
            (lambda: world.add_batch([int(ids[1]), dead], Mass()), ecs.DeadEntityError, f"entity {dead} is not alive"),
            (lambda: world.add_batch([int(ids[1]), int(ids[1])], Mass()), ecs.InvalidArgumentError,
             rf"add_batch: entity {int(ids[1])} is listed more than once"),
            (lambda: world.add_batch(ids[:2], Health(hp=[1, 2, 3])), ecs.ComponentValueError, "batch length 3"),
            (lambda: world.remove_batch([int(ids[45]), lacking], Velocity), ecs.MissingComponentError,
             rf"entity {lacking} has no Velocity component"),
            (lambda: world.remove_batch([int(ids[45]), int(ids[45])], Velocity), ecs.InvalidArgumentError,
             "listed more than once"),
        ]
        for call, error, message in cases:
            with pytest.raises(error, match=message):
                call()
            assert state(world, np.delete(ids, 3), readers[:6]) == before
    finally:
        world.close()


@pytest.mark.parametrize("seed", range(4))
def test_one_component_calls_equal_the_batch_calls_while_readers_come_and_go(seed: int) -> None:
    """add(e, C) / remove(e, C) of one component take paths cached per table after the first
    move; readers registered later (a removed= journal, change slots) must be honoured by them."""
    rng = np.random.default_rng(200 + seed)
    bulk, ids, bulk_readers = populated(seed)
    loop, _, loop_readers = populated(seed)
    late: dict[ecs.World, list[ecs.Query]] = {bulk: [], loop: []}
    try:
        for round_ in range(4):
            chosen = rng.choice(ids, size=int(rng.integers(1, 60)), replace=False)
            bulk.add_batch(chosen, Mass(kg=1.5))
            for e in chosen:
                loop.add(int(e), Mass(kg=1.5))
            if round_ == 1:
                for world in (bulk, loop):
                    late[world] += [world.query(removed=[Mass]), world.query(Mass, changed=[Mass])]
            holders = np.array([e for e in ids if loop.has(int(e), Mass)], np.int64)
            gone = rng.choice(holders, size=int(rng.integers(0, len(holders) + 1)), replace=False)
            bulk.remove_batch(gone, Mass)
            for e in gone:
                loop.remove(int(e), Mass)
            assert state(bulk, ids, bulk_readers) == state(loop, ids, loop_readers)
            assert [q.removed().tolist() for q in late[bulk][:1]] == [q.removed().tolist() for q in late[loop][:1]]
            assert [sorted(q.entities().tolist()) for q in late[bulk][1:]] == \
                [sorted(q.entities().tolist()) for q in late[loop][1:]]
        assert late[loop][0].removed().tolist() == [] and len(late[loop]) == 2
    finally:
        bulk.close()
        loop.close()


@pytest.mark.parametrize("seed", range(4))
def test_despawns_one_by_one_equal_despawn_batch_while_readers_come_and_go(seed: int) -> None:
    """despawn(e) takes a path cached per table after the first; the rows that fill the holes
    keep their values and change bits, and readers registered later (a removed= journal,
    change slots) are honoured by it."""
    rng = np.random.default_rng(300 + seed)
    bulk, ids, bulk_readers = populated(seed)
    loop, _, loop_readers = populated(seed)
    late: dict[ecs.World, list[ecs.Query]] = {bulk: [], loop: []}
    live = ids.tolist()
    try:
        for round_ in range(4):
            touched = rng.choice(live, size=len(live) // 3, replace=False)
            chosen = rng.choice(live, size=int(rng.integers(1, len(live) // 3)), replace=False)
            for world in (bulk, loop):
                world.set_batch(touched, Position(x=float(round_), y=1.0))
            bulk.despawn_batch(chosen)
            for e in chosen:
                loop.despawn(int(e))
            if round_ == 1:
                for world in (bulk, loop):
                    late[world] += [world.query(removed=[Position]), world.query(Position, changed=[Position])]
            gone = set(chosen.tolist())
            live = [e for e in live if e not in gone]
            assert not any(loop.is_alive(int(e)) for e in gone) and len(loop) == len(bulk) == len(live)
            assert state(bulk, np.array(live), bulk_readers) == state(loop, np.array(live), loop_readers)
            assert [sorted(q.removed().tolist()) for q in late[bulk][:1]] == \
                [sorted(q.removed().tolist()) for q in late[loop][:1]]
            assert [sorted(q.entities().tolist()) for q in late[bulk][1:]] == \
                [sorted(q.entities().tolist()) for q in late[loop][1:]]
        assert len(late[loop]) == 2
    finally:
        bulk.close()
        loop.close()


def test_one_entity_moves_carry_vector_fields_and_the_bits_of_many_readers() -> None:
    """The one-row move kernel takes columns of any width and any number of change-tracking
    slots: 30 changed= readers (each its own slot, each having looked at a different time)
    see the same rows after one-by-one adds, removes and despawns as after the batch calls."""
    rng = np.random.default_rng(7)
    worlds, seen = [], []
    for _ in ("one by one", "batch"):
        world = ecs.World()
        ids = world.spawn_batch(60, Position(x=np.arange(60, dtype=np.float32), y=0.0),
                                Tint(rgb=np.arange(180).reshape(60, 3) % 251), Mass(kg=np.arange(60) * 1e10))
        readers = [world.query(Position, changed=[Position]) for _ in range(30)]
        worlds.append((world, ids, readers))
    picks = [rng.choice(60, size=20, replace=False) for _ in range(4)]
    try:
        for world, ids, readers in worlds:
            for group in range(3):   # readers 10g..10g+9 look before write g, then no more
                for reader in readers[10 * group:]:
                    list(reader)
                world.set_batch(ids[picks[group]], Position(x=1.0, y=float(group)))
        (loop, ids, loop_readers), (bulk, _, bulk_readers) = worlds
        chosen, gone = ids[picks[3]], ids[picks[1][:7]]
        for e in chosen:
            loop.add(int(e), Health(hp=3))
        bulk.add_batch(chosen, Health(hp=3))
        for e in chosen[::2]:
            loop.remove(int(e), Position)
        bulk.remove_batch(chosen[::2], Position)
        for e in gone:
            loop.despawn(int(e))
        bulk.despawn_batch(gone)
        for world, _, readers in worlds:
            live = [int(e) for e in ids if world.is_alive(int(e))]
            seen.append(({e: (plain(world.get(e, Tint)), plain(world.get(e, Mass)), world.has(e, Position),
                              world.has(e, Health)) for e in live},
                         [sorted(q.entities().tolist()) for q in readers]))
        assert seen[0] == seen[1]
        assert len({tuple(r) for r in seen[0][1]}) == 3   # the readers saw three different sets
    finally:
        for world, _, _ in worlds:
            world.close()


def test_one_component_adds_of_array_values_take_the_checked_call_after_a_path_exists() -> None:
    """A value built from 0-d arrays has no scalar fast-path form: the checked add writes it,
    and the path cached by an earlier scalar add is neither used nor compiled again for it."""
    with ecs.World() as world:
        ids = world.spawn_batch(10, Mass(kg=1.0)).tolist()
        world.add(ids[0], Health(hp=3))                          # caches the path of this edge
        for k, e in enumerate(ids[1:], start=1):
            world.add(e, Health(hp=np.array(k * 10, np.int32)))
        world.add(ids[1], Frozen())
        world.remove(ids[1], Health)
        assert [plain(world.get(e, Health)) if world.has(e, Health) else None for e in ids] == \
            [{"hp": 3}, None] + [{"hp": k * 10} for k in range(2, 10)]
        assert world.has(ids[1], Frozen) and world.has(ids[1], Mass)


def test_batch_calls_given_views_of_the_worlds_own_columns_act_on_the_entities_named_at_the_call() -> None:
    """A query batch's `entities` (and its columns) are views of the table: the moves a batch
    call makes rewrite them, so each call must read them as they were when it was called."""
    world, ids, readers = populated(1)
    twin, twin_ids, twin_readers = populated(1)          # the same world, given copies
    try:
        for w in (world, twin):
            batch = next(iter(w.query(Position, Velocity)))
            given = batch.entities[1:4] if w is world else batch.entities[1:4].copy()
            speeds = batch[Velocity].x[1:4] if w is world else batch[Velocity].x[1:4].copy()
            w.add_batch(given, Mass(kg=speeds))
            batch = next(iter(w.query(Position, Velocity, Mass)))
            given = batch.entities[:2] if w is world else batch.entities[:2].copy()
            w.remove_batch(given, Velocity)
            batch = next(iter(w.query(Position, without=[Velocity, Mass, Health])))
            given = batch.entities[5:9] if w is world else batch.entities[5:9].copy()
            w.despawn_batch(given)
        survivors = [e for e in ids if twin.is_alive(int(e))]
        assert len(survivors) == len(ids) - 4
        assert [world.is_alive(int(e)) for e in ids] == [twin.is_alive(int(e)) for e in twin_ids]
        assert state(world, np.array(survivors), readers) == state(twin, np.array(survivors), twin_readers)
    finally:
        world.close()
        twin.close()


def test_ids_past_2_63_are_named_as_given() -> None:
    with ecs.World() as world:
        world.spawn_batch(3, Position(x=0, y=0))
        for ids in (np.array([1, 2**64 - 1], np.uint64), [2**63, 1], [1, -(2**63) - 1]):
            past = next(int(e) for e in ids if not -(2**63) <= int(e) < 2**63)
            with pytest.raises(ecs.DeadEntityError, match=rf"entity {past} is not alive"):
                world.despawn_batch(ids)
        assert len(world) == 3
        ids = world.spawn_batch(2, Position(x=0, y=0))
        world.despawn_batch([np.uint64(ids[0]), np.int64(ids[1])])   # numpy makes floats of these
        assert len(world) == 3


def test_a_batch_move_into_a_full_table_raises_before_any_entity_moved() -> None:
    """The ids lie in two tables; the first table's entities would fit, the second's not."""
    with ecs.World(max_rows=64) as world:
        world.spawn_batch(60, Position(x=0, y=0), Mass(kg=1), Frozen())
        world.spawn_batch(62, Position(x=0, y=0), Mass(kg=1))
        bare, massive = world.spawn_batch(3, Position(x=1, y=0)), world.spawn_batch(3, Position(x=2, y=0), Frozen())
        moving = world.spawn_batch(3, Position(x=3, y=0), Velocity(x=0, y=0))
        heavy = world.spawn_batch(3, Position(x=4, y=0), Velocity(x=0, y=0), Mass())
        removed = world.query(removed=[Velocity])
        removed.removed()
        with pytest.raises(ecs.CapacityError, match=r"table \(Position, Mass, Frozen\) cannot hold 66 rows"):
            world.add_batch(np.concatenate([bare, massive]), Mass(kg=5), Frozen())
        with pytest.raises(ecs.CapacityError, match=r"table \(Position, Mass\) cannot hold 65 rows"):
            world.remove_batch(np.concatenate([moving, heavy]), Velocity)
        assert not any(world.has(int(e), Mass) for e in np.concatenate([bare, massive]))
        assert all(world.has(int(e), Velocity) for e in np.concatenate([moving, heavy]))
        assert removed.removed().tolist() == []
        assert [len(t) for t in (bare, massive, moving, heavy)] == [3] * 4 and len(world) == 134


def test_a_value_made_of_one_row_of_a_column_keeps_that_rows_values() -> None:
    """Tint(rgb=batch[Tint].rgb[0]) is given a view of a row that the add's move refills."""
    with ecs.World() as world:
        ids = world.spawn_batch(3, Tint(rgb=[[0, 1, 2], [3, 4, 5], [6, 7, 8]]), Position(x=0, y=0))
        first = next(iter(world.query(Tint)))[Tint].rgb[0]
        value = Tint(rgb=first)
        world.add(int(ids[0]), Mass(), value)           # ids[0] leaves its table, the last row fills it
        world.add_batch(ids[1:2], Frozen(), Tint(rgb=next(iter(world.query(Tint, without=[Mass])))[Tint].rgb[1]))
        assert world.get(int(ids[0]), Tint).rgb.tolist() == [0, 1, 2] and value.rgb.tolist() == [0, 1, 2]
        assert world.get(int(ids[1]), Tint).rgb.tolist() == [3, 4, 5]

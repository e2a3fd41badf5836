"""ecs/commands.py, kernels/commands.py: structural changes queued from kernels (`ecs.Commands`)
and from Python (`world.defer()`), applied after the frame in (system, table, row) order.

The scenario world holds a table of more than SPLIT_MIN_ROWS rows, so with workers its rows
(and so its commands) really are split across processes; the result must not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

import ecs
from ecs import ComponentValueError, DeadEntityError, MissingComponentError
from ecs.plan import SPLIT_MIN_ROWS
from tests import introspect
from tests.command_systems import (
    COMPONENTS,
    LIFE_T,
    LIFE_VICTIM,
    SPOT_X,
    TALLY_N,
    Armor,
    Burning,
    Color,
    Heat,
    Life,
    Spot,
    Tally,
    Template,
    Wet,
    add_armor,
    bad_set,
    burn_wet,
    cool,
    despawn_odd,
    despawn_victims,
    drop_heat,
    heat_the_prefab_copy,
    keep_child_placeholder,
    lifecycle,
    set_all,
    set_x_later,
    set_x_twice,
    spawn_alternately,
    spawn_children,
    spawn_heated,
    spawn_then_fail,
    spawn_with_adds,
    toggle_tags,
    touch_life,
    wet_burning,
)

BIG = SPLIT_MIN_ROWS + 4_464        # 70,000 rows: split across the workers
SEGMENTS = (1, 3, 1, 2, 1)          # frames per call: single steps and multi-frame runs


def archetype(world: ecs.World, entity: int) -> set[str]:
    return {c.__name__ for c in COMPONENTS if world.has(entity, c)}


def count_moves(world: ecs.World, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the entity index of every archetype move the world makes."""
    return introspect.spy_on_moves(world, monkeypatch)


# ---------------------------------------------------------------- the same world for any worker count
def build_scenario(world: ecs.World) -> None:
    prefab = world.spawn(Life(t=4), Spot(x=100, y=-1), Color(rgb=[9, 8, 7]), Template())
    k = np.arange(BIG)
    short = k % 61 == 0                        # ~1,150 short-lived entities among long-lived ones
    t = np.where(short, 1 + k % 9, 1000 + k % 13)
    ids = world.spawn_batch(BIG, Life(t=t), Spot(x=k, y=0), Color(rgb=np.stack([k % 256, k % 7, k % 3], 1)))
    world.set_batch(ids, Life(t=t, victim=np.roll(ids, 61)))   # a short one's victim: the previous one
    m = 3_000                                  # a second, small table (whole to one worker)
    small = world.spawn_batch(m, Life(t=1 + np.arange(m) % 11), Spot(x=-np.arange(m), y=2))
    world.despawn_batch(small[::7])            # free slots: spawns reuse them
    world.resources["prefab"] = prefab


def observe(world: ecs.World) -> dict:
    """Every id, archetype and column byte, the id allocator's state and the next id issued."""
    tables = {}
    for table in introspect.tables(world):
        names = tuple(sorted(info.name for info in table.components))
        state = {"entities": table.entities.tobytes()}
        for info in table.components:
            for field in info.fields:
                state[f"{info.name}.{field}"] = table.column(info, field).tobytes()
        tables[table.id] = (names, state)
    high = introspect.entity_index(world).high_water
    generations = introspect.entity_index(world).generation[:high].tobytes()
    return {"len": len(world), "tables": tables, "generations": generations,
            "next": [world.spawn(Life(t=0)) for _ in range(3)]}


def run_scenario(workers: int) -> dict:
    with ecs.World(workers=workers) as world:
        for s in (lifecycle, cool):
            world.add_system(s)
        build_scenario(world)
        for frames in SEGMENTS:
            if frames == 1:
                world.step()
            else:
                world.run(frames)
        if workers > 1:      # the big table's rows, and their commands, are cut into several units
            plan = introspect.plan(world)
            big = introspect.table_for(world, Life, Spot, Color)
            chunks = [task for task in plan.tasks() if task.table == big.id and task.system == 0]
            assert len(chunks) > workers
        return observe(world)


@pytest.fixture(scope="module")
def reference() -> dict:
    return run_scenario(0)


def test_scenario_does_real_work(reference: dict) -> None:
    sizes = {names: len(state["entities"]) // 8 for names, state in reference["tables"].values()}
    assert sizes[("Color", "Life", "Spot", "Wet")] > 100                  # children, Template swapped
    assert sizes[("Burning", "Color", "Heat", "Life", "Spot")] > 100      # two adds, one move
    assert sizes[("Burning", "Color", "Life", "Spot", "Wet")] > 100       # Heat cooled into Wet
    assert sizes[("Color", "Heat", "Life", "Spot")] > 100                 # Burning removed
    assert sizes[("Life", "Spot")] == 0                                   # the small table all died
    assert reference["len"] < BIG + 3_000 - 429 + 1                       # more deaths than births


@pytest.mark.parametrize("workers", [1, 2])
def test_kernel_commands_give_the_same_world_for_any_worker_count(reference: dict, workers: int) -> None:
    observed = run_scenario(workers)
    assert observed["len"] == reference["len"]
    assert observed["next"] == reference["next"]
    assert observed["generations"] == reference["generations"]
    assert observed["tables"].keys() == reference["tables"].keys()
    for table_id, (names, state) in reference["tables"].items():
        assert observed["tables"][table_id][0] == names
        for key, data in state.items():
            assert observed["tables"][table_id][1][key] == data, (names, key)


# ---------------------------------------------------------------- one command kind at a time
@pytest.fixture
def small() -> Iterator[tuple[ecs.World, int, np.ndarray]]:
    """A prefab and six entities with t = 1..6, x = 10..15, each one's victim the one before."""
    with ecs.World() as world:
        prefab = world.spawn(Life(t=4, victim=0), Spot(x=100, y=-1), Color(rgb=[9, 8, 7]), Template())
        ids = world.spawn_batch(6, Life(t=np.arange(1, 7)), Spot(x=np.arange(10, 16), y=0))
        world.set_batch(ids, Life(t=np.arange(1, 7), victim=np.roll(ids, 1)))
        world.resources["prefab"] = prefab
        yield world, prefab, ids


def test_cmd_despawn_takes_effect_after_the_frame(small) -> None:
    world, prefab, ids = small
    world.add_system(touch_life)                     # t += 100, in an earlier stage of the frame
    world.add_system(despawn_odd)
    world.step()
    assert [world.is_alive(int(e)) for e in ids] == [False, True, False, True, False, True]
    assert len(world) == 1 + 3
    assert world.get(int(ids[1]), Life).t == 102     # the frame's kernel writes are kept
    world.step()
    assert len(world) == 4


def test_despawning_a_dead_or_twice_despawned_entity_is_not_an_error(small) -> None:
    world, prefab, ids = small
    world.despawn(int(ids[0]))                       # ids[1]'s victim is dead already
    world.add_system(despawn_victims)                # ids[k] despawns ids[k - 1]; the prefab's victim is 0
    world.add_system(despawn_odd)                    # ids[2], ids[4]: despawned by both systems
    world.step()
    assert [world.is_alive(int(e)) for e in ids] == [False] * 5 + [True]
    assert world.is_alive(prefab) and len(world) == 2
    world.step()                                     # ids[5]'s victim is dead now: still no error
    assert len(world) == 2


def test_cmd_spawn_copies_the_prefab_and_cmd_set_writes_the_copy(small) -> None:
    world, prefab, ids = small
    world.add_system(spawn_children)
    freed = int(world.spawn_batch(1, Life(t=0))[0])  # a free slot: the first spawn reuses it
    world.despawn(freed)
    world.step()
    children = set(world.query(Life, Spot, without=[Template]).entities().tolist()) - set(ids.tolist())
    assert len(children) == 6
    by_parent = {int(world.get(c, Life).victim): c for c in children}
    assert sorted(by_parent) == sorted(ids.tolist())
    for row, parent in enumerate(ids.tolist()):
        child = by_parent[parent]
        assert world.get(child, Life).t == 10 * (row + 1)
        assert world.get(child, Spot).x == pytest.approx(10 + row + 0.25)
        assert world.get(child, Spot).y == -1                     # copied from the prefab
        assert world.get(child, Color).rgb.tolist() == [9, 8, 7]  # a vector field, copied
        assert archetype(world, child) == {"Life", "Spot", "Color"}
    assert world.get(prefab, Life).t == 4 and world.has(prefab, Template)   # the prefab is untouched
    # spawns are applied in row order: the first row's child reuses the freed slot, the others
    # take fresh slots in order
    indices = [by_parent[p] & 0xFFFFFFFF for p in ids.tolist()]
    assert indices[0] == freed & 0xFFFFFFFF
    assert by_parent[int(ids[0])] != freed and not world.is_alive(freed)
    assert indices[1:] == sorted(indices[1:]) and min(indices[1:]) > max(e & 0xFFFFFFFF for e in ids.tolist())


def children_by_parent(world: ecs.World, prefab: int, ids: np.ndarray) -> dict[int, int]:
    return {int(world.get(c, Life).victim): int(c) for c in world.query(Life).entities()
            if int(c) != prefab and int(c) not in ids.tolist()}


def test_copies_that_all_add_one_component_land_in_its_table_with_defaults_and_no_move(small, monkeypatch) -> None:
    world, prefab, ids = small
    world.add_system(spawn_heated)
    moves = count_moves(world, monkeypatch)
    added = world.query(Life, added=[Heat])
    list(added)
    world.step()
    children = children_by_parent(world, prefab, ids)
    assert sorted(children) == sorted(ids.tolist())
    for e in ids.tolist():
        assert archetype(world, children[e]) == {"Life", "Spot", "Color", "Template", "Heat"}
        assert world.get(children[e], Heat).deg == 7                            # Heat's default
        assert world.get(children[e], Color).rgb.tolist() == [9, 8, 7]          # copied from the prefab
    assert set(added.entities().tolist()) == set(children.values())
    assert moves == []                                                         # placed, not moved
    indices = [children[e] & 0xFFFFFFFF for e in ids.tolist()]
    assert indices == sorted(indices)                                          # ids in row order


def test_copies_of_one_prefab_with_different_changes_are_moved_and_keep_row_order_ids(small, monkeypatch) -> None:
    world, prefab, ids = small
    world.add_system(spawn_with_adds)
    moves = count_moves(world, monkeypatch)
    world.step()
    children = children_by_parent(world, prefab, ids)
    assert sorted(children) == sorted(ids[:5].tolist())          # t == 6's child was despawned
    kept = {"Life", "Spot", "Color", "Template"}
    assert [archetype(world, children[int(e)]) for e in ids[:5]] == [
        kept | {"Heat"}, kept | {"Heat", "Burning"}, kept | {"Heat"}, kept - {"Template"}, kept]
    for e in ids[:3]:
        assert world.get(children[int(e)], Heat).deg == 7
    # one copy adds a component the others do not: spawned together, then moved (t = 1..4, 6)
    assert len(moves) == 5 and {children[int(e)] & 0xFFFFFFFF for e in ids[:4]} <= set(moves)
    indices = [children[int(e)] & 0xFFFFFFFF for e in ids[:5]]
    assert indices == sorted(indices)


def test_an_add_after_a_set_on_a_copy_that_has_the_component_gives_its_default() -> None:
    with ecs.World() as world:
        ids = world.spawn_batch(3, Life(t=[1, 2, 3]), Heat(deg=[10, 20, 30]))
        world.add_system(heat_the_prefab_copy)
        world.step()
        children = set(world.query(Heat).entities().tolist()) - set(ids.tolist())
        assert len(children) == 3 and all(world.get(c, Heat).deg == 7 for c in children)
        assert sorted(int(world.get(c, Life).t) for c in children) == [1, 2, 3]


def test_a_new_structure_every_frame_leaves_the_tasks_of_two_plans_cached_at_most(small) -> None:
    world, prefab, ids = small
    world.add_system(spawn_with_adds)           # a child per entity per frame: a new plan each frame
    for _ in range(12):
        world.step()
    assert len(world) > 2 ** 12
    per_plan = len(introspect.plan(world, 0).tasks())
    assert 0 < introspect.cached_tasks(world) <= 2 * 2 * per_plan   # tasks and units of two plans


def test_commands_are_seen_by_change_readers(small) -> None:
    world, prefab, ids = small
    added = world.query(Life, added=[Life])
    changed = world.query(Spot, changed=[Spot])
    list(added), list(changed)                       # first look: everything; consumed
    world.add_system(spawn_children)
    world.step()
    children = set(world.query(Life, without=[Template]).entities().tolist()) - set(ids.tolist())
    assert set(added.entities().tolist()) == children
    assert set(changed.entities().tolist()) == children


def test_tags_are_added_and_removed_by_commands(small) -> None:
    world, prefab, ids = small
    world.add_system(toggle_tags)
    world.step()
    assert [archetype(world, int(e)) for e in ids[:4]] == [
        {"Life", "Spot", "Burning", "Wet"},       # t == 1
        {"Life", "Spot"},                          # t == 2: removing Burning it lacks changes nothing
        {"Life", "Spot", "Burning", "Heat"},       # t == 3: Heat gets its default
        {"Life", "Spot"},                          # t == 4
    ]
    assert world.get(int(ids[2]), Heat).deg == 7
    world.set_batch(ids[:3], Life(t=[3, 1, 2]))
    world.step()
    assert archetype(world, int(ids[0])) == {"Life", "Spot", "Burning", "Heat"}   # Wet removed
    assert archetype(world, int(ids[1])) == {"Life", "Spot", "Burning", "Wet"}
    assert archetype(world, int(ids[2])) == {"Life", "Spot", "Heat"}              # Burning removed
    assert world.get(int(ids[2]), Spot).x == 12                                   # values move along


def test_several_commands_on_one_entity_make_one_archetype_move(small, monkeypatch) -> None:
    world, prefab, ids = small
    world.add(int(ids[2]), Wet())                   # t == 3: add Burning, add Heat, remove Wet
    x = world.get(int(ids[2]), Spot).x
    moves = count_moves(world, monkeypatch)
    world.add_system(toggle_tags)
    world.step()
    assert moves.count(int(ids[2]) & 0xFFFFFFFF) == 1
    assert archetype(world, int(ids[2])) == {"Life", "Spot", "Burning", "Heat"}
    assert world.get(int(ids[2]), Spot).x == x
    assert sorted(moves) == sorted(int(e) & 0xFFFFFFFF for e in (ids[0], ids[2]))   # t == 1 and t == 3


def test_later_commands_for_the_same_field_win_in_system_then_row_order() -> None:
    with ecs.World() as world:
        ids = world.spawn_batch(3, Spot(x=0, y=0))
        world.add_system(set_x_twice)
        world.step()
        assert [float(world.get(int(e), Spot).x) for e in ids] == [2.0] * 3
        world.add_system(set_x_later)                # registered later: its commands apply later
        world.step()
        assert [float(world.get(int(e), Spot).x) for e in ids] == [3.0] * 3


def test_cmd_add_of_a_component_without_defaults_raises_and_applies_nothing(small) -> None:
    world, prefab, ids = small
    world.add_system(add_armor)                      # despawns everything, adds Armor to row 0
    with pytest.raises(ComponentValueError, match=r"^a command of system 'add_armor' \(table \d+, row 0, entity \d+\): "
                                                  r"Armor\.level = None: cmd_add cannot fill this field: "
                                                  r"it has no default$"):
        world.step()
    assert len(world) == 7
    assert all(world.is_alive(int(e)) and not world.has(int(e), Armor) for e in ids)


@pytest.mark.parametrize(("key", "value", "message"), [
    (LIFE_T, float("nan"), "does not fit int32"),
    (LIFE_T, 2.0**31, "does not fit int32"),
    (LIFE_T, 1.5, "does not fit int32"),
    (SPOT_X, 1e300, "does not fit float32"),
])
def test_cmd_set_with_a_value_that_does_not_fit_raises_and_applies_nothing(small, key, value,
                                                                          message) -> None:
    world, prefab, ids = small
    world.add_system(bad_set)                        # despawn all, add Burning, set the first one
    where = r"a command of system 'bad_set' \(table \d+, row 0, entity \d+\): "   # who, where, on what
    with pytest.raises(ComponentValueError, match=where + ".*" + message) as caught:
        world.step(value=value, key=key)
    assert caught.value.component in ("Life", "Spot")                      # still the value's own error
    assert len(world) == 7
    assert [int(world.get(int(e), Life).t) for e in ids] == [1, 2, 3, 4, 5, 6]
    assert not any(world.has(int(e), Burning) for e in ids)
    world.step(value=42.0, key=LIFE_T)               # the buffers were emptied: the next frame works
    assert len(world) == 0


@pytest.mark.parametrize("workers", [0, 2])
def test_a_frame_over_the_command_limit_is_refused_on_every_worker_count(workers: int, monkeypatch) -> None:
    """The limit is the frame's, not a process's: with a buffer of BUFFER_CAPACITY per process,
    2 workers sharing 100k sets each held theirs, one process could not. Both refuse the frame
    now, applying none of it, and both take one under the limit."""
    monkeypatch.setattr(ecs.commands, "BUFFER_CAPACITY", 60_000)    # read when the buffers are made
    with ecs.World(workers=workers, step_timeout=60.0 if workers else None) as world:
        ids = world.spawn_batch(BIG + 30_000, Life(t=1))            # 100k rows: split over the workers
        world.add_system(set_all)
        with pytest.raises(ecs.CapacityError, match=r"^a frame's kernel commands: 100,000 records: at most 60,000 "
                                                     r"a frame on any number of workers; issue fewer a frame"):
            world.step(key=LIFE_VICTIM, value=5)
        assert not any(int(world.get(int(e), Life).victim) for e in ids[::997])
        world.despawn_batch(ids[50_000:])
        world.step(key=LIFE_VICTIM, value=5)
        assert all(int(world.get(int(e), Life).victim) == 5 for e in ids[:50_000:997])


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("value", [2**53 + 1, -2**63, 2**63 - 1, np.int32(-7), True, 2.0])
def test_cmd_set_carries_an_integer_value_exactly(workers: int, value: object) -> None:
    """An integer travels as an int64, not through a float64 (which rounds past 2**53: an entity
    id whose slot was reused 2**21 times)."""
    with ecs.World(workers=workers, step_timeout=60.0 if workers else None) as world:
        ids = world.spawn_batch(3, Life(t=1))
        world.add_system(set_all)
        world.step(key=LIFE_VICTIM, value=value)
        assert [int(world.get(int(e), Life).victim) for e in ids] == [int(value)] * 3  # type: ignore[call-overload]


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("value", [np.uint64(2**64 - 1), np.uint64(2**63), np.uint64(2**53 + 1), np.uint64(7)])
def test_cmd_set_carries_a_uint64_value_exactly(workers: int, value: np.uint64) -> None:
    with ecs.World(workers=workers, step_timeout=60.0 if workers else None) as world:
        ids = world.spawn_batch(3, Life(t=1), Tally())
        world.add_system(set_all)
        world.step(key=TALLY_N, value=value)
        assert [int(world.get(int(e), Tally).n) for e in ids] == [int(value)] * 3


@pytest.mark.parametrize(("key", "value", "message"), [
    (LIFE_VICTIM, np.uint64(2**63), "Life.victim = 9223372036854775808: does not fit int64"),
    (LIFE_T, np.uint64(2**31), "Life.t = 2147483648: does not fit int32"),
])
def test_a_uint64_cmd_set_that_does_not_fit_names_its_exact_value(key: int, value: np.uint64, message: str) -> None:
    with ecs.World() as world:
        world.spawn_batch(3, Life(t=1))
        world.add_system(set_all)
        with pytest.raises(ComponentValueError, match=r"^a command of system 'set_all' \(table 0, row 0, entity 1\): "
                                                      + re.escape(message)):
            world.step(key=key, value=value)
        world.step(key=LIFE_T, value=np.uint64(5))
        assert [int(world.get(int(e), Life).t) for e in world.query(Life).entities()] == [5] * 3


def test_an_integer_cmd_set_that_does_not_fit_names_its_exact_value() -> None:
    with ecs.World() as world:
        world.spawn_batch(3, Life(t=1))
        world.add_system(set_all)
        with pytest.raises(ComponentValueError, match=r"^a command of system 'set_all' \(table 0, row 0, entity 1\): "
                                                      r"Life\.t = 2147483649: does not fit int32"):
            world.step(key=LIFE_T, value=2**31 + 1)


def test_cmd_set_of_a_component_the_entity_lacks_raises(small) -> None:
    world, prefab, ids = small
    world.add_system(bad_set)
    with pytest.raises(MissingComponentError, match=r"^a command of system 'bad_set' \(table \d+, row 0, entity "
                                                    r"\d+\): entity \d+ has no Heat component") as caught:
        world.step(value=1.0, key=ecs.field_key(Heat, "deg"))
    assert caught.value.component == "Heat" and f"entity {caught.value.entity}): " in str(caught.value)
    assert len(world) == 7


@pytest.mark.parametrize("workers", [0, 1])
def test_the_commands_of_a_frame_that_failed_are_dropped(workers: int) -> None:
    with ecs.World(workers=workers) as world:
        prefab = world.spawn(Spot(x=1))
        world.spawn_batch(3, Life(t=1))
        world.resources["prefab"] = prefab
        world.add_system(spawn_then_fail)                # queues 3 spawns, then raises
        with pytest.raises(ecs.KernelError, match="failing after queueing commands"):
            world.step(fail=True)
        assert len(world) == 4
        world.step(fail=False)                           # only this frame's 3 spawns
        assert len(world) == 7
        with pytest.raises(ecs.KernelError):
            world.run(3, fail=True)
        world.run(2, fail=False)
        assert len(world) == 7 + 2 * 3


def test_a_placeholder_as_the_prefab_of_cmd_spawn_is_refused_and_nothing_applied(small) -> None:
    world, prefab, ids = small
    world.add_system(touch_life)
    world.add_system(spawn_children)
    with pytest.raises(ValueError, match=r"spawn_children.* copies -1, a placeholder: the prefab of cmd_"):
        world.step(prefab=-1)
    assert len(world) == 7


def test_a_placeholder_kept_and_used_by_another_system_is_refused_and_nothing_applied(small) -> None:
    """A placeholder names a slot of its process's command buffer, not an entity: used by another
    kernel row (here another system, which may run on another process) it would name another
    spawn, so it is refused on every worker count."""
    world, prefab, ids = small
    world.add_system(keep_child_placeholder)
    world.add_system(despawn_victims)
    with pytest.raises(ecs.CommandError, match=r"^a command of system 'despawn_victims' \(table \d+, row 0, "
                                               r"entity -1\) names placeholder -1, which no cmd_spawn of its "
                                               r"kernel row made"):
        world.step()
    assert len(world) == 7 and all(world.is_alive(int(e)) for e in ids)


@pytest.mark.parametrize("spawns", [False, True])
def test_a_placeholder_that_no_cmd_spawn_made_is_a_command_error_and_nothing_applied(small, spawns: bool) -> None:
    """A negative target (a placeholder) with no spawn of that number in its process: in a frame
    with no cmd_spawn at all, and in one whose spawns number fewer."""
    world, prefab, ids = small
    world.set(int(ids[2]), Life(t=3, victim=-50))
    world.add_system(despawn_victims)
    if spawns:
        world.add_system(spawn_children)
    with pytest.raises(ecs.CommandError, match=r"^a command of system 'despawn_victims' \(table \d+, row 2, "
                                               r"entity -50\) names placeholder -50, which no cmd_spawn of its "
                                               r"kernel row made \(a placeholder is valid only in the "
                                               r"commands of the row that spawned it, in the same call; it "
                                               r"is not an id to keep\)$"):
        world.step()
    assert len(world) == 7 and all(world.is_alive(int(e)) for e in ids)


def test_field_and_component_keys_name_what_is_wrong() -> None:
    with pytest.raises(KeyError, match="Life has no field 'age'; it has t, victim"):
        ecs.field_key(Life, "age")
    with pytest.raises(ValueError, match="vector field"):
        ecs.field_key(Color, "rgb")
    assert ecs.component_key(Life) != ecs.component_key(Spot)
    assert ecs.field_key(Life, "t") != ecs.field_key(Life, "victim")


# ---------------------------------------------------------------- world.defer()
def test_defer_spawns_adds_removes_and_despawns_at_the_end_of_the_block(world: ecs.World) -> None:
    a = world.spawn(Life(t=1), Spot(x=1, y=1))
    b = world.spawn(Life(t=2), Spot(x=2, y=2), Wet())
    c = world.spawn(Life(t=3))
    with world.defer() as d:
        first = d.spawn(Life(t=7, victim=a), Spot(x=7, y=-7), Color(rgb=[1, 2, 3]))
        second = d.spawn(Spot(x=8, y=8))
        d.add(a, Heat(deg=30), Life(t=11, victim=0))       # a new component and an overwrite
        d.remove(b, Wet)
        d.despawn(c)
        d.add(first, Burning())                            # placeholders work in the same block
        d.add(second, Heat())
        d.remove(first, Color)
        assert first < 0 and second < 0
        assert len(world) == 3 and world.is_alive(c)       # nothing happens before the end
        assert not world.has(a, Heat) and world.has(b, Wet)
    assert len(d.spawned) == 2
    one, two = (int(e) for e in d.spawned)
    assert len(world) == 4
    assert archetype(world, one) == {"Life", "Spot", "Burning"}
    assert world.get(one, Life).t == 7 and world.get(one, Life).victim == a
    assert world.get(one, Spot).y == -7
    assert archetype(world, two) == {"Spot", "Heat"} and world.get(two, Heat).deg == 7
    assert archetype(world, a) == {"Life", "Spot", "Heat"}
    assert world.get(a, Heat).deg == 30 and world.get(a, Life).t == 11
    assert archetype(world, b) == {"Life", "Spot"}
    assert not world.is_alive(c)


def test_defer_set_writes_values_and_marks_them_changed(world: ecs.World) -> None:
    a = world.spawn(Life(t=1), Color(rgb=[0, 0, 0]))
    changed = world.query(Color, changed=[Color])
    list(changed)
    with world.defer() as d:
        d.set(a, Color(rgb=[4, 5, 6]))
        child = d.spawn(Life(t=2), Spot(x=0, y=0))
        d.set(child, Spot(x=3, y=4))                    # a placeholder's queued values
        with pytest.raises(MissingComponentError, match="Heat"):
            d.set(a, Heat(deg=1))
        assert world.get(a, Color).rgb.tolist() == [0, 0, 0]
    assert world.get(a, Color).rgb.tolist() == [4, 5, 6]
    assert world.get(int(d.spawned[0]), Spot).y == 4
    assert changed.entities().tolist() == [a]


def test_defer_makes_one_archetype_move_per_entity(world: ecs.World, monkeypatch) -> None:
    e = world.spawn(Life(t=1), Wet())
    moves = count_moves(world, monkeypatch)
    with world.defer() as d:
        d.add(e, Burning())
        d.add(e, Heat())
        d.remove(e, Wet)
    assert len(moves) == 1
    assert archetype(world, e) == {"Life", "Burning", "Heat"}


def test_defer_applies_nothing_when_the_block_raises(world: ecs.World) -> None:
    a = world.spawn(Life(t=1), Spot(x=1, y=1))
    b = world.spawn(Life(t=2), Wet())
    with pytest.raises(RuntimeError, match="boom"), world.defer() as d:
        d.spawn(Life(t=5))
        d.add(a, Heat(deg=1))
        d.remove(b, Wet)
        d.despawn(a)
        raise RuntimeError("boom")
    assert len(d.spawned) == 0
    assert len(world) == 2 and world.is_alive(a)
    assert archetype(world, a) == {"Life", "Spot"} and archetype(world, b) == {"Life", "Wet"}
    assert world.spawn(Life(t=0)) == 3               # the queued spawn consumed no id


@pytest.mark.parametrize("use", ["add", "remove", "despawn", "set"])
def test_defer_refuses_a_negative_id_that_is_not_one_of_its_placeholders(world: ecs.World, use: str) -> None:
    a = world.spawn(Life(t=1))
    with pytest.raises(ValueError, match=r"-2 is not a placeholder of this queue \(it has 1 spawns\)"), \
            world.defer() as d:
        d.spawn(Spot(x=0, y=0))
        d.add(a, Wet())
        calls = {"add": lambda: d.add(-2, Wet()), "remove": lambda: d.remove(-2, Wet),
                 "despawn": lambda: d.despawn(-2), "set": lambda: d.set(-2, Spot(x=1, y=1))}
        calls[use]()
    assert len(world) == 1 and not world.has(a, Wet)


def test_defer_refuses_bad_input_when_it_is_queued(world: ecs.World) -> None:
    a = world.spawn(Life(t=1))
    world.despawn(a)
    with pytest.raises(DeadEntityError), world.defer() as d:
        d.spawn(Life(t=2))
        d.despawn(a)
    with pytest.raises(DeadEntityError), world.defer() as d:
        d.add(a, Wet())
    with pytest.raises(ComponentValueError, match="scalar values"), world.defer() as d:
        d.spawn(Life(t=[1, 2]))
    with pytest.raises(ComponentValueError, match="does not fit"), world.defer() as d:
        d.spawn(Life(t=2**40))
    assert len(world) == 0


def test_defer_refuses_what_the_worlds_own_calls_refuse(world: ecs.World) -> None:
    a = world.spawn(Life(t=1))
    with world.defer() as d:
        with pytest.raises(MissingComponentError, match=rf"entity {a} has no Wet component"):
            d.remove(a, Wet)
        with pytest.raises(ComponentValueError, match=r"defer\(\)\.add\(\) got Heat twice"):
            d.add(a, Heat(deg=1), Heat(deg=2))
        with pytest.raises(ComponentValueError, match=r"defer\(\)\.spawn\(\) got Life twice"):
            d.spawn(Life(t=1), Life(t=2))
        with pytest.raises(ecs.ArgumentTypeError, match="an entity id is an int, got None"):
            d.despawn(None)
        d.add(a, Wet())
        d.remove(a, Wet)                      # what this block adds, it may remove: the last wins
    assert archetype(world, a) == {"Life"} and len(world) == 1


def test_defer_checks_again_at_the_end_what_the_world_did_inside_the_block(world: ecs.World) -> None:
    a = world.spawn(Life(t=1), Spot(x=1, y=1))
    b = world.spawn(Life(t=2))
    with pytest.raises(MissingComponentError, match=rf"entity {a} has no Spot component"), world.defer() as d:
        d.spawn(Life(t=3))
        d.set(a, Spot(x=5, y=5))
        world.remove(a, Spot)                 # the world's own call, inside the block
    with pytest.raises(DeadEntityError, match=rf"entity {b} is not alive"), world.defer() as d:
        d.spawn(Life(t=4))
        d.add(b, Wet())
        world.despawn(b)
    assert len(world) == 1 and archetype(world, a) == {"Life"}


def test_a_defer_block_without_room_for_its_moves_applies_nothing() -> None:
    with ecs.World(max_rows=64) as world:
        world.spawn_batch(64, Life(t=1), Wet())
        a, b = world.spawn(Life(t=2)), world.spawn(Life(t=3), Heat())
        with pytest.raises(ecs.CapacityError, match=r"table \(Life, Wet\) cannot hold 65 rows"), world.defer() as d:
            d.spawn(Spot(x=0, y=0))
            d.add(b, Burning())                   # room enough in (Life, Heat, Burning)
            d.add(a, Wet())                       # none in (Life, Wet)
        assert len(world) == 66 and archetype(world, a) == {"Life"} and archetype(world, b) == {"Life", "Heat"}


def test_a_defer_block_applies_only_what_it_queued_itself(world: ecs.World) -> None:
    d = world.defer()
    with pytest.raises(RuntimeError, match="boom"), d:
        d.spawn(Life(t=1))
        raise RuntimeError("boom")
    with d:
        pass                                  # the aborted block's spawn is gone
    assert len(world) == 0 and len(d.spawned) == 0
    with d:
        d.spawn(Life(t=2))
    with d:
        d.spawn(Life(t=3))                    # the first block's spawn is not made again
    assert len(world) == 2 and [world.get(int(e), Life).t for e in d.spawned] == [3]


def test_defer_after_close_raises_world_closed_error() -> None:
    world = ecs.World()
    a = world.spawn(Life(t=1))
    with pytest.raises(ecs.WorldClosedError, match=r"world\.defer\(\)\.spawn\(\) called after world\.close\(\)"), \
            world.defer() as d:
        world.close()
        d.spawn(Life(t=2))
    with pytest.raises(ecs.WorldClosedError, match=r"world\.defer\(\) called after world\.close\(\)"):
        world.defer()
    with pytest.raises(ecs.WorldClosedError, match=r"world\.stats\(\) called after world\.close\(\)"):
        world.stats()
    assert a == 1


@pytest.mark.parametrize("moves", ["one change each", "several changes each"])
def test_cmd_moves_without_room_for_all_apply_nothing_of_the_frame(moves: str) -> None:
    """The first source table's entities would fit in their target, the second's not."""
    with ecs.World(max_rows=64) as world:
        if moves == "one change each":       # two batches into one table: Wet for some, Burning for others
            world.spawn_batch(62, Life(t=5), Burning(), Wet())
            fits, overflows = world.spawn_batch(2, Life(t=5), Burning()), world.spawn_batch(2, Life(t=5), Wet())
            world.add_system(wet_burning)
            world.add_system(burn_wet)
            full = "Life, Burning, Wet"
        else:
            world.spawn_batch(63, Life(t=5), Wet())
            fits = overflows = world.spawn_batch(2, Life(t=5), Heat(deg=1))
            world.add_system(cool)
            full = "Life, Wet"
        before = {int(e): archetype(world, int(e)) for e in np.concatenate([fits, overflows])}
        with pytest.raises(ecs.CapacityError, match=rf"^the commands of this frame \(0 spawns, \d+ component changes, "
                                                     rf"from system .*\): table \({full}\) cannot hold 6\d rows"):
            world.step()
        assert {int(e): archetype(world, int(e)) for e in np.concatenate([fits, overflows])} == before


def test_cmd_spawns_into_two_tables_without_room_for_all_apply_none() -> None:
    """The copies of the first prefab's table would fit, those of the second's not."""
    with ecs.World(max_rows=64) as world:
        first = world.spawn(Life(t=100), Spot(x=0, y=0))
        world.spawn_batch(60, Life(t=100), Spot(x=0, y=0), Template())
        second = world.spawn(Life(t=100), Spot(x=0, y=0), Template())
        world.add_system(spawn_alternately)
        with pytest.raises(ecs.CapacityError, match=r"^the commands of this frame \(62 spawns, 0 component changes, "
                                                     r"from system 'spawn_alternately'\): table \(Life, Spot, "
                                                     r"Template\) cannot hold 91 rows"):
            world.step(first=first, second=second)
        assert len(world) == 62
        assert len(list(world.query(Life, without=[Template]).entities())) == 1


def _interrupt_inside(monkeypatch, module, name: str) -> None:
    """The next call of module.name delivers a real SIGINT (a Ctrl-C) to this process before it runs."""
    import os
    import signal
    original = getattr(module, name)

    def interrupted(*args):
        monkeypatch.setattr(module, name, original)
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args)
    monkeypatch.setattr(module, name, interrupted)


def test_a_ctrl_c_while_a_frames_commands_are_applied_lands_after_them(monkeypatch) -> None:
    """A Ctrl-C inside a bulk archetype move (rows copied, not yet taken from their table) left
    entities in two tables; it is held back until the frame's commands are applied."""
    from ecs.kernels import bits
    with ecs.World() as world:
        ids = world.spawn_batch(50, Life(t=np.arange(50)), Heat())
        world.add_system(drop_heat)
        _interrupt_inside(monkeypatch, bits, "transfer_rows_bits")
        with pytest.raises(KeyboardInterrupt):
            world.step()
        everyone = world.query(Life).entities()
        assert len(world) == everyone.shape[0] == np.unique(everyone).shape[0] == 40   # 10 despawned, once each
        assert world.query(Heat).count() == 30                                          # 10 lost Heat
        _interrupt_inside(monkeypatch, bits, "transfer_rows_bits")
        with pytest.raises(KeyboardInterrupt):
            world.add_batch(ids[::5], Heat())                                           # a batch call too
        assert world.query(Heat).count() == 40 and len(world) == 40


def test_a_frame_whose_commands_were_interrupted_while_taken_leaves_none_to_the_next(monkeypatch) -> None:
    from ecs import memory
    with ecs.World() as world:
        world.spawn_batch(20, Life(t=1), Heat())
        world.add_system(drop_heat)
        original = memory.Arena.view_of

        def interrupted(self, spec):
            monkeypatch.setattr(memory.Arena, "view_of", original)
            raise KeyboardInterrupt
        monkeypatch.setattr(memory.Arena, "view_of", interrupted)
        with pytest.raises(KeyboardInterrupt):
            world.step()          # t % 5 == 1: every entity would be despawned
        world.remove_system(drop_heat)
        world.step()              # issues nothing: the interrupted frame's despawns must not apply now
        assert len(world) == 20


def test_a_ctrl_c_in_a_bulk_call_that_then_fails_is_still_raised(monkeypatch) -> None:
    """The held-back Ctrl-C wins over an error the block ends in (chained to it): a caller that
    catches that error still gets the user's interrupt."""
    import os
    import signal

    from ecs import store as store_module

    def failing(self, n, parts):
        os.kill(os.getpid(), signal.SIGINT)
        raise ecs.CapacityError("a test's failure", "none", "none")
    monkeypatch.setattr(store_module.Store, "spawn_batch", failing)
    with ecs.World() as world:
        with pytest.raises(KeyboardInterrupt) as caught:
            world.spawn_batch(3, Life(t=1))
        assert isinstance(caught.value.__context__, ecs.CapacityError)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

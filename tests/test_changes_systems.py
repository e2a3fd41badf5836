"""Change detection seen through systems (ecs/changes.py), checked against a plain Python model.

Detected: kernel writes to Mut components (every row given with mark="auto", rows passed to
ecs.mark_changed with mark="manual"), World.set/set_batch, spawn, add. Not detected: writes
through a raw numpy view. Every reader sees each change exactly once, whoever wrote it and
whatever the order and rates of writers and readers; a despawned row is never reported.
"""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from ecs import Mut, Rows, component, i64, plan, system
from tests import introspect
from tests.components import Frozen, Health, Position
from tests.systems_common import (
    Counter,
    Value,
    echo_position,
    echo_then_scribble,
    fresh_logs,
    increment_n,
    index_of,
    mark_odd_manual,
    read_health_added,
    read_health_changed,
    read_value_changed_or_health_added,
    read_value_every1,
    read_value_every2,
    read_value_every3,
    read_value_every5,
    read_value_unfrozen,
    record_rows_given,
    seen_counter,
    seen_ids,
    touch_auto,
    touch_unfrozen_every4,
    write_masked_after,
    write_masked_before,
    write_masked_middle,
)

LOG = 4096


def indices(ids) -> dict[int, int]:
    """{entity index: 1} for each id: what a reader that saw each id once has logged."""
    return {index_of(e): 1 for e in ids}


# ---------------------------------------------------------------- the model
class Model:
    """What each reader should see: per reader, the set of ids changed since it last looked."""

    VALUE_READERS = ("every1", "every2", "every3", "every5", "unfrozen", "query")

    def __init__(self) -> None:
        self.alive: set[int] = set()
        self.frozen: set[int] = set()
        self.health: set[int] = set()
        self.pending: dict[str, set[int]] = {name: set() for name in (*self.VALUE_READERS, "echo")}

    def value_written(self, ids) -> None:
        for name in self.VALUE_READERS:
            self.pending[name] |= set(ids)

    def spawned(self, ids, frozen: bool, health: bool) -> None:
        ids = {int(e) for e in ids}
        self.alive |= ids
        if frozen:
            self.frozen |= ids
        if health:
            self.health |= ids
        self.value_written(ids)
        self.pending["echo"] |= ids

    def despawned(self, ids) -> None:
        for e in ids:
            self.alive.discard(e)
            self.frozen.discard(e)
            self.health.discard(e)
            for pending in self.pending.values():
                pending.discard(e)

    def masked(self, mask: np.ndarray) -> set[int]:
        return {e for e in self.alive if mask[index_of(e)]}

    def take(self, name: str, matching: set[int] | None = None) -> set[int]:
        seen = self.pending[name] if matching is None else self.pending[name] & matching
        self.pending[name] = self.pending[name] - seen
        return seen

    def step(self, frame: int, masks: dict[str, np.ndarray]) -> dict[str, set[int]]:
        """The frame in registration order; returns what each due system reader sees."""
        seen = {}
        self.value_written(self.masked(masks["mask_before"]))
        seen["every1"] = self.take("every1")
        if frame % 3 == 0:
            seen["every3"] = self.take("every3")
        self.value_written(self.masked(masks["mask_middle"]))
        self.value_written(self.take("echo"))
        if frame % 2 == 0:
            seen["every2"] = self.take("every2")
        if frame % 5 == 0:
            seen["every5"] = self.take("every5")
        seen["unfrozen"] = self.take("unfrozen", self.alive - self.frozen)
        self.value_written(self.masked(masks["mask_after"]))
        if frame % 4 == 0:
            self.value_written(self.alive - self.frozen)
        return seen


SYSTEM_ORDER = (write_masked_before, read_value_every1, read_value_every3, write_masked_middle, echo_position,
                read_value_every2, read_value_every5, read_value_unfrozen, write_masked_after,
                touch_unfrozen_every4)
MASKS = ("mask_before", "mask_middle", "mask_after")
LOG_OF = {"every1": "seen_every1", "every2": "seen_every2", "every3": "seen_every3", "every5": "seen_every5",
          "unfrozen": "seen_unfrozen"}


def _parts(frozen: bool, health: bool) -> list:
    tags = ([Frozen()] if frozen else []) + ([Health()] if health else [])
    return [Value(v=0), Position(x=0.0, y=0.0), *tags]


def _spawn(world: ecs.World, model: Model, rng: np.random.Generator, n: int) -> None:
    frozen, health = bool(rng.random() < 0.3), bool(rng.random() < 0.3)
    model.spawned(world.spawn_batch(n, *_parts(frozen, health)), frozen, health)


def _pick(rng: np.random.Generator, ids, k: int) -> list[int]:
    ids = sorted(ids)
    if not ids:
        return []
    return [int(e) for e in rng.choice(ids, size=min(k, len(ids)), replace=False)]


def _python_changes(world: ecs.World, model: Model, rng: np.random.Generator, frame: int) -> None:
    """Between frames: Python writes, spawns, despawns and archetype moves, mirrored in the model."""
    written = _pick(rng, model.alive, 8)
    if written:
        world.set_batch(written, Value(v=rng.integers(0, 100, len(written))))
        model.value_written(written)
    for e in _pick(rng, model.alive, 1):
        world.set(e, Value(v=-1))
        model.value_written([e])
    moved = _pick(rng, model.alive, 6)
    if moved:
        world.set_batch(moved, Position(x=float(frame), y=0.0))
        model.pending["echo"] |= set(moved)
    doomed = _pick(rng, model.alive, 3)
    if frame % 2:
        world.despawn_batch(doomed)
    else:
        for e in doomed:
            world.despawn(e)
    model.despawned(doomed)
    _spawn(world, model, rng, int(rng.integers(0, 5)))
    for e in _pick(rng, model.alive - model.frozen, 2):
        world.add(e, Frozen())
        model.frozen.add(e)
    for e in _pick(rng, model.frozen, 1):
        world.remove(e, Frozen)
        model.frozen.discard(e)
    for e in _pick(rng, model.alive - model.health, 2):
        world.add(e, Health(hp=3))
        model.health.add(e)
    for e in _pick(rng, model.health, 1):
        world.remove(e, Health)
        model.health.discard(e)
    if frame % 5 == 1:   # a short-lived change reader comes and goes; it steals nothing
        temporary = world.query(Value, changed=[Value])
        assert temporary.count() == len(model.alive)
        for _ in temporary:
            pass
        del temporary


@pytest.mark.parametrize(("seed", "workers", "rows"), [(1, 0, 150), (2, 0, 150), (3, 2, 1500)])
def test_every_reader_sees_each_change_exactly_once_at_any_rate_and_registration_order(
        seed: int, workers: int, rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # with workers, split the big table across them (in 512-row ranges) as a million rows would be
    monkeypatch.setattr(plan, "SPLIT_MIN_ROWS", 1024)
    rng = np.random.default_rng(seed)
    model = Model()
    with ecs.World(workers=workers) as world:
        for frozen, health, n in ((False, False, rows), (True, False, 60), (False, True, 40),
                                  (True, True, 5)):
            model.spawned(world.spawn_batch(n, *_parts(frozen, health)), frozen, health)
        fresh_logs(world, LOG)
        for name in MASKS:
            world.resources[name] = np.zeros(LOG, bool)
        for s in SYSTEM_ORDER:
            world.add_system(s)
        query = world.query(Value, changed=[Value])
        assert {int(e) for batch in query for e in batch.entities[batch.rows]} == model.alive
        model.pending["query"] = set()

        for frame in range(60):
            if frame:
                _python_changes(world, model, rng, frame)
            masks = {name: rng.random(LOG) < 0.08 for name in MASKS}
            for name, mask in masks.items():
                world.resources[name][:] = mask     # shared arrays: workers see them too
            expected = model.step(frame, masks)
            world.step()
            for reader, log in LOG_OF.items():
                got = seen_ids(world, log)
                want = indices(expected.get(reader, ()))
                wrong = sorted(set(got) ^ set(want))
                assert got == want, f"frame {frame}: reader {reader} saw entity indices {wrong} wrongly"
            if frame % 7 == 6:
                got = [int(e) for batch in query for e in batch.entities[batch.rows]]
                assert len(got) == len(set(got))
                assert set(got) == model.take("query"), f"frame {frame}: the Python query reader"
        if workers:
            tasks = introspect.plan(world, workers).tasks()
            assert any(task.start > 0 for task in tasks)     # the big table was split
        stats = world.stats()
        assert stats["read_value_every1"]["calls"] == 60
        assert stats["read_value_every3"]["calls"] == 20
        assert stats["read_value_every5"]["calls"] == 12


# ---------------------------------------------------------------- first run, added, union
def test_a_systems_first_run_sees_every_existing_row(world: ecs.World) -> None:
    plain = world.spawn_batch(5, Value(), Position(x=0.0, y=0.0))
    frozen = world.spawn_batch(3, Value(), Frozen())
    fresh_logs(world, LOG)
    world.add_system(write_masked_before)
    for _ in range(3):
        world.step(mask_before=np.zeros(LOG, bool))
    world.add_system(read_value_every2)      # added at frame 3; first due at frame 4
    world.step(mask_before=np.zeros(LOG, bool))
    assert seen_ids(world, "seen_every2") == {}
    world.step(mask_before=np.zeros(LOG, bool))
    assert seen_ids(world, "seen_every2") == indices([*plain, *frozen])
    world.step(mask_before=np.zeros(LOG, bool))
    world.step(mask_before=np.zeros(LOG, bool))
    assert seen_ids(world, "seen_every2") == {}


def test_added_filter_sees_spawns_and_adds_but_not_sets_while_changed_sees_all(world: ecs.World) -> None:
    born_with = world.spawn(Health(hp=1), Value())
    given_later = world.spawn(Value())
    untouched = world.spawn(Health(hp=2), Value())
    fresh_logs(world, LOG)
    world.add_system(read_health_added)
    world.add_system(read_health_changed)
    world.step()
    assert seen_ids(world, "seen_added") == indices([born_with, untouched])
    assert seen_ids(world, "seen_changed") == indices([born_with, untouched])
    world.add(given_later, Health(hp=5))
    world.set(born_with, Health(hp=9))
    spawned = world.spawn(Health(), Value())
    world.step()
    assert seen_ids(world, "seen_added") == indices([given_later, spawned])
    assert seen_ids(world, "seen_changed") == indices([given_later, born_with, spawned])
    world.add(untouched, Health(hp=7))       # already has Health: a write, not an addition
    world.step()
    assert seen_ids(world, "seen_added") == {}
    assert seen_ids(world, "seen_changed") == indices([untouched])
    world.step()
    assert seen_ids(world, "seen_added") == {} and seen_ids(world, "seen_changed") == {}


def test_reader_with_changed_and_added_terms_sees_the_union_once(world: ecs.World) -> None:
    a, b, c, d = (int(e) for e in world.spawn_batch(4, Value(), Health()))
    later = world.spawn(Value())
    fresh_logs(world, LOG)
    world.add_system(read_value_changed_or_health_added)
    world.step()
    assert seen_ids(world, "seen_union") == indices([a, b, c, d])
    world.set(a, Value(v=1))                  # changed only
    world.set(b, Value(v=1))
    world.set(b, Health(hp=1))                # changed Value, Health written (not added)
    world.add(later, Health())                # Health added: now matches, seen once
    world.set(later, Value(v=3))
    world.step()
    assert seen_ids(world, "seen_union") == indices([a, b, later])


# ---------------------------------------------------------------- marks
def test_auto_marks_every_row_the_kernel_was_given(world: ecs.World) -> None:
    ids = [*world.spawn_batch(70, Counter()), *world.spawn_batch(3, Counter(), Frozen())]
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.add_system(touch_auto)
    for _ in range(3):
        world.step()
        assert seen_ids(world, "seen_counter_log") == indices(ids)


def test_manual_marks_only_the_rows_the_kernel_marks(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(130, Counter())]
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.add_system(mark_odd_manual)
    world.step()
    assert seen_ids(world, "seen_counter_log") == indices(ids)    # first run: every row
    world.step()
    odd = [e for e in ids if index_of(e) & 1]
    assert seen_ids(world, "seen_counter_log") == indices(odd)
    assert {int(world.get(e, Counter).n) for e in ids} == {2}   # every row was written, only odd ones marked


def test_filtered_writer_with_auto_marks_marks_only_its_selected_rows(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(100, Value(), Position(x=0.0, y=0.0))]
    fresh_logs(world, LOG)
    world.add_system(echo_position)
    world.add_system(read_value_every1)
    world.step()
    seen_ids(world, "seen_every1")
    world.set_batch([ids[5], ids[70]], Position(x=1.0, y=1.0))
    world.step()
    assert seen_ids(world, "seen_every1") == indices([ids[5], ids[70]])
    assert [int(world.get(e, Value).v) for e in (ids[5], ids[6], ids[70])] == [2000, 1000, 2000]


@pytest.mark.parametrize("driven", [True, False], ids=["driver", "python path"])
@pytest.mark.parametrize("scribble", [7, 2**25 + 3, 2**40])
def test_auto_marks_are_of_the_rows_given_even_when_the_kernel_overwrote_them(
        world: ecs.World, monkeypatch: pytest.MonkeyPatch, driven: bool, scribble: int) -> None:
    if not driven:
        introspect.without_drivers(monkeypatch)
    ids = [int(e) for e in world.spawn_batch(100, Value(), Position(x=0.0, y=0.0))]
    world.add_system(echo_then_scribble)
    values, added = world.query(Value, changed=[Value]), world.query(Value, added=[Value])
    world.step(scribble=scribble)
    list(values), list(added)
    world.set_batch([ids[5], ids[70]], Position(x=1.0, y=1.0))
    world.step(scribble=scribble)
    assert [int(e) for b in values for e in b.entities[b.rows]] == [ids[5], ids[70]]
    assert [int(e) for b in added for e in b.entities[b.rows]] == []


def test_writes_through_a_raw_query_view_are_not_detected(world: ecs.World) -> None:
    world.spawn_batch(4, Counter())
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.step()
    seen_ids(world, "seen_counter_log")
    for batch in world.query(Counter):
        batch[Counter].n[:] = 9
    world.step()
    assert seen_ids(world, "seen_counter_log") == {}


# ---------------------------------------------------------------- Python writes and readers
def test_python_set_and_set_batch_are_seen_once_by_system_readers(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(200, Value())]
    fresh_logs(world, LOG)
    world.add_system(read_value_every1)
    world.add_system(read_value_every3)
    world.step()      # frame 0: both readers' first run sees every row
    assert seen_ids(world, "seen_every1") == seen_ids(world, "seen_every3") == indices(ids)
    world.set(ids[0], Value(v=1))
    world.set_batch(ids[60:70], Value(v=2))
    world.step()      # frame 1: every3 is not due
    assert seen_ids(world, "seen_every1") == indices([ids[0], *ids[60:70]])
    world.set_batch([ids[199], ids[0]], Value(v=3))
    world.step()      # frame 2
    assert seen_ids(world, "seen_every1") == indices([ids[199], ids[0]])
    assert seen_ids(world, "seen_every3") == {}
    world.step()      # frame 3: every3 sees both frames' writes, each id once
    assert seen_ids(world, "seen_every1") == {}
    assert seen_ids(world, "seen_every3") == indices([ids[0], *ids[60:70], ids[199]])


def test_python_query_reader_and_system_readers_do_not_steal_changes(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(10, Value())]
    fresh_logs(world, LOG)
    query = world.query(Value, changed=[Value])
    list(query)
    world.add_system(read_value_every1)
    world.step()
    seen_ids(world, "seen_every1")
    world.set(ids[4], Value(v=4))
    assert [int(e) for b in query for e in b.entities[b.rows]] == [ids[4]]
    world.step()
    assert seen_ids(world, "seen_every1") == indices([ids[4]])
    assert list(query) == []


def test_reader_before_a_writer_sees_its_write_next_frame_and_one_after_it_the_same_frame(
        world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(8, Value())]
    fresh_logs(world, LOG)
    world.add_system(read_value_every1)      # before the writer
    world.add_system(write_masked_middle)
    world.add_system(read_value_unfrozen)    # after the writer
    none = np.zeros(LOG, bool)
    world.step(mask_middle=none)
    seen_ids(world, "seen_every1"), seen_ids(world, "seen_unfrozen")
    mask = none.copy()
    mask[index_of(ids[2])] = True
    world.step(mask_middle=mask)
    assert seen_ids(world, "seen_every1") == {}
    assert seen_ids(world, "seen_unfrozen") == indices([ids[2]])
    world.step(mask_middle=none)
    assert seen_ids(world, "seen_every1") == indices([ids[2]])
    assert seen_ids(world, "seen_unfrozen") == {}


def test_changed_filter_sees_each_write_once_when_reader_runs_every_third_frame(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(64, Value())]
    fresh_logs(world, LOG)
    world.add_system(write_masked_before)
    world.add_system(read_value_every3)
    mask = np.zeros(LOG, bool)
    world.step(mask_before=mask)
    seen_ids(world, "seen_every3")
    for e in (ids[0], ids[63], ids[10]):   # frames 1, 2 and 3
        mask = np.zeros(LOG, bool)
        mask[index_of(e)] = True
        world.step(mask_before=mask)
    assert seen_ids(world, "seen_every3") == indices([ids[0], ids[63], ids[10]])
    assert [int(world.get(e, Value).v) for e in (ids[0], ids[63], ids[10])] == [1, 1, 1]


# ---------------------------------------------------------------- structure: moves, despawns, tables
def test_archetype_move_keeps_a_change_not_yet_flushed(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(100, Counter())]
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.step()
    seen_ids(world, "seen_counter_log")
    world.set(ids[20], Counter(n=1))          # write, then move to another table
    world.add(ids[20], Frozen())
    world.add(ids[99], Frozen())              # a move without a write is not a change of Counter
    world.step()
    assert seen_ids(world, "seen_counter_log") == indices([ids[20]])
    world.step()
    assert seen_ids(world, "seen_counter_log") == {}


def test_archetype_move_keeps_a_change_already_flushed_to_the_reader(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(100, Counter())]
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.add_system(mark_odd_manual)         # writes after the reader: seen next frame
    world.step()
    seen_ids(world, "seen_counter_log")
    query = world.query(Counter, changed=[Counter])
    list(query)                               # flushes the marks into every reader's pending bits
    odd = [e for e in ids if index_of(e) & 1]
    for e in odd[:5]:
        world.add(e, Frozen())
    world.remove(odd[0], Frozen)              # and back again
    world.despawn(odd[-1])
    world.step()
    assert seen_ids(world, "seen_counter_log") == indices(odd[:-1])


def test_despawned_row_is_never_reported(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(100, Value())]
    fresh_logs(world, LOG)
    world.add_system(read_value_every1)
    world.step()
    seen_ids(world, "seen_every1")
    world.set(ids[10], Value(v=1))
    world.despawn(ids[10])                    # the last row moves into row 10, unchanged
    world.step()
    assert seen_ids(world, "seen_every1") == {}
    world.set(ids[99], Value(v=1))            # the last row changes, then moves into row 11
    world.set_batch([ids[30], ids[31]], Value(v=2))
    world.despawn(ids[11])
    world.despawn_batch([ids[30], ids[50]])
    world.step()
    assert seen_ids(world, "seen_every1") == indices([ids[99], ids[31]])


def test_despawned_entity_whose_index_is_reused_reports_only_the_new_entity(world: ecs.World) -> None:
    old = world.spawn(Value())
    fresh_logs(world, LOG)
    world.add_system(read_value_every1)
    world.step()
    seen_ids(world, "seen_every1")
    world.set(old, Value(v=1))
    world.despawn(old)
    new = world.spawn(Value())
    assert index_of(new) == index_of(old) and new != old
    world.resources["ids_log"] = np.zeros(4, np.int64)
    world.resources["rows_log"] = np.zeros(4, np.int64)
    world.resources["log_len"] = np.zeros(1, np.int64)
    world.add_system(record_rows_given)
    world.step()
    assert seen_ids(world, "seen_every1") == indices([new])
    log = world.resources["ids_log"]
    assert world.resources["log_len"][0] == 1 and log[0] == new


def test_rows_of_one_table_do_not_leak_into_another(world: ecs.World) -> None:
    plain = [int(e) for e in world.spawn_batch(100, Value())]
    frozen = [int(e) for e in world.spawn_batch(100, Value(), Frozen())]
    healthy = [int(e) for e in world.spawn_batch(100, Value(), Health())]
    world.resources["rows_log"] = np.zeros(400, np.int64)
    world.resources["ids_log"] = np.zeros(400, np.int64)
    world.resources["log_len"] = np.zeros(1, np.int64)
    world.add_system(record_rows_given)
    world.step()
    assert world.resources["log_len"][0] == 300
    world.resources["log_len"][0] = 0
    world.set(plain[3], Value(v=1))
    world.set(frozen[64], Value(v=1))
    world.set(frozen[65], Value(v=1))
    world.step()
    n = int(world.resources["log_len"][0])
    pairs = sorted(zip(world.resources["rows_log"][:n].tolist(), world.resources["ids_log"][:n].tolist(),
                       strict=True))
    assert pairs == sorted([(3, plain[3]), (64, frozen[64]), (65, frozen[65])])
    assert healthy[3] not in world.resources["ids_log"][:n]


def test_readers_survive_a_table_created_after_they_registered(world: ecs.World) -> None:
    ids = [int(e) for e in world.spawn_batch(5, Counter())]
    world.resources["seen_counter_log"] = np.zeros(LOG, np.int64)
    world.add_system(seen_counter)
    world.add_system(increment_n)
    world.step()
    seen_ids(world, "seen_counter_log")
    world.add(ids[0], Health())              # a new table (Counter, Health)
    newcomer = world.spawn(Counter(), Frozen())  # and another
    world.step()
    assert seen_ids(world, "seen_counter_log") == indices([*ids, newcomer])
    world.step()
    assert seen_ids(world, "seen_counter_log") == indices([*ids, newcomer])


# ---------------------------------------------------------------- readers of one run
@component
class SeenEvery1:
    n: i64 = 0


@component
class SeenEvery3:
    n: i64 = 0


@system
def bump_value(value: Mut[Value]):
    for i in range(value.v.shape[0]):
        value.v[i] += 1


@system(changed=[Value])
def count_seen_every1(rows: Rows, seen: Mut[SeenEvery1]):
    for i in rows:
        seen.n[i] += 1


@system(changed=[Value], every=3)
def count_seen_every3(rows: Rows, seen: Mut[SeenEvery3]):
    for i in rows:
        seen.n[i] += 1


@pytest.mark.parametrize("runs", [[10], [1, 9], [1] * 10])
def test_two_filtered_systems_of_one_component_see_every_change_in_the_first_run(runs: list[int]) -> None:
    """The plan of a world's first run names every filtered system's reader in each flush: the
    system registered later (every=3) is not left out of the earlier one's flushes for that run."""
    with ecs.World() as world:
        ids = world.spawn_batch(4, Value(), SeenEvery1(), SeenEvery3())
        for s in (bump_value, count_seen_every1, count_seen_every3):
            world.add_system(s)
        for frames in runs:
            world.run(frames=frames)
        assert [int(world.get(int(e), SeenEvery1).n) for e in ids] == [10] * 4
        assert [int(world.get(int(e), SeenEvery3).n) for e in ids] == [4] * 4    # frames 0, 3, 6 and 9

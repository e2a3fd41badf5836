"""Running systems: registration order, every=N, stats, run() against step(), failures, plans."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

import ecs
from ecs import KernelError
from ecs.plan import stages_of
from tests import introspect
from tests.components import Frozen, Position, Velocity
from tests.systems_common import (
    Counter,
    add_amount,
    double_n,
    fail_at,
    fail_every2,
    fall,
    histogram_x,
    increment_n,
    increment_n_every3,
    integrate,
    seen_counter,
    tick_every1,
    tick_every2,
    tick_every3,
    touch_auto,
)


def counters(world: ecs.World, ids) -> list[int]:
    return [int(world.get(int(e), Counter).n) for e in ids]


def columns(world: ecs.World) -> dict:
    """Every column of every entity, keyed by id, for bit-for-bit comparisons."""
    out = {}
    for component in (Position, Velocity, Counter):
        for batch in world.query(component):
            view = batch[component]
            for row, e in enumerate(batch.entities):
                out[int(e), component.__name__] = tuple(getattr(view, f)[row].tobytes()
                                                        for f in component.fields)
    return out


# ---------------------------------------------------------------- order
def test_conflicting_systems_run_in_registration_order() -> None:
    with ecs.World() as doubled_first, ecs.World() as incremented_first:
        a = doubled_first.spawn(Counter(n=3))
        b = incremented_first.spawn(Counter(n=3))
        doubled_first.add_system(double_n)
        doubled_first.add_system(increment_n)
        incremented_first.add_system(increment_n)
        incremented_first.add_system(double_n)
        doubled_first.step()
        incremented_first.step()
        assert counters(doubled_first, [a]) == [7]
        assert counters(incremented_first, [b]) == [8]


def test_reader_registered_after_a_writer_sees_that_frames_write() -> None:
    with ecs.World() as writer_first, ecs.World() as reader_first:
        for world, order in ((writer_first, (fall, integrate)), (reader_first, (integrate, fall))):
            world.spawn(Position(x=0.0, y=0.0), Velocity(x=0.0, y=0.0))
            world.resources["gravity"] = -1.0
            for s in order:
                world.add_system(s)
            world.step(dt=1.0)
        e = int(writer_first.query(Position).entities()[0])
        assert (writer_first.get(e, Velocity).y, writer_first.get(e, Position).y) == (-1.0, -1.0)
        e = int(reader_first.query(Position).entities()[0])
        assert (reader_first.get(e, Velocity).y, reader_first.get(e, Position).y) == (-1.0, 0.0)


def test_stages_keep_conflicting_systems_in_order_and_group_independent_ones(world: ecs.World) -> None:
    world.spawn(Position(x=0.0, y=0.0), Velocity(x=0.0, y=0.0), Counter())
    world.resources["gravity"] = 0.0
    world.resources["grid"] = np.zeros(4, np.int64)
    world.resources["seen_counter_log"] = np.zeros(4, np.int64)
    for s in (double_n, integrate, increment_n, fall, histogram_x, seen_counter):
        world.add_system(s)
    stages = stages_of(introspect.bound_systems(world))
    # double_n | integrate share a stage; increment_n follows double_n; fall follows integrate
    # (which reads Velocity); histogram_x reads Position after integrate writes it; the changed=
    # reader of Counter follows both Counter writers.
    assert stages == [[0, 1], [2, 3, 4], [5]]


# ---------------------------------------------------------------- every=N
def test_every_n_runs_on_frames_divisible_by_n(world: ecs.World) -> None:
    world.spawn(Counter())
    for name in ("ticks1", "ticks2", "ticks3"):
        world.resources[name] = np.zeros(12, np.int64)
    for s in (tick_every1, tick_every2, tick_every3):
        world.add_system(s)
    for frame in range(12):
        world.step(frame=frame)
    assert world.resources["ticks1"].tolist() == [1] * 12
    assert np.flatnonzero(world.resources["ticks2"]).tolist() == [0, 2, 4, 6, 8, 10]
    assert np.flatnonzero(world.resources["ticks3"]).tolist() == [0, 3, 6, 9]
    assert world.resources["ticks3"].max() == 1


def test_every_n_counts_frames_from_the_worlds_first_step_not_from_add_system(world: ecs.World) -> None:
    world.spawn(Counter())
    world.resources["ticks1"] = np.zeros(12, np.int64)
    world.resources["ticks3"] = np.zeros(12, np.int64)
    world.add_system(tick_every1)
    for frame in range(4):
        world.step(frame=frame)
    world.add_system(tick_every3)
    for frame in range(4, 12):
        world.step(frame=frame)
    assert np.flatnonzero(world.resources["ticks3"]).tolist() == [6, 9]
    assert world.stats()["tick_every3"]["calls"] == 2


def test_run_continues_the_frame_count_of_step(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n_every3)
    world.step()          # frame 0: runs
    world.step()          # frame 1
    world.run(frames=5)   # frames 2..6: runs at 3 and 6
    assert counters(world, [e]) == [3]
    world.step()          # frame 7
    world.run(frames=2)   # frames 8, 9: runs at 9
    assert counters(world, [e]) == [4]
    assert world.stats()["increment_n_every3"]["calls"] == 4


# ---------------------------------------------------------------- run() and step()
def _physics_world() -> ecs.World:
    world = ecs.World()
    rng = np.random.default_rng(5)
    n = 300
    world.spawn_batch(n, Position(x=rng.random(n, np.float32), y=rng.random(n, np.float32)),
                      Velocity(x=rng.random(n, np.float32), y=0.0), Counter())
    world.spawn_batch(70, Position(x=1.0, y=2.0), Velocity(x=-0.5, y=0.25), Counter(), Frozen())
    world.resources["gravity"] = -9.81
    world.resources["seen_counter_log"] = np.zeros(512, np.int64)
    for s in (fall, integrate, increment_n_every3, seen_counter, double_n):
        world.add_system(s)
    return world


def test_run_gives_the_same_result_as_repeated_step() -> None:
    with _physics_world() as stepped, _physics_world() as ran:
        for _ in range(10):
            stepped.step(dt=1 / 60)
        ran.run(frames=10, dt=1 / 60)
        assert columns(stepped) == columns(ran)
        assert stepped.resources["seen_counter_log"].tolist() == ran.resources["seen_counter_log"].tolist()
        figures = ("calls", "kernel_calls", "rows")
        assert ({k: {f: v[f] for f in figures} for k, v in stepped.stats().items()}
                == {k: {f: v[f] for f in figures} for k, v in ran.stats().items()})
        assert introspect.frame(stepped) == introspect.frame(ran) == 10


def test_run_passes_its_keyword_values_to_every_frame(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(add_amount)
    world.run(frames=4, amount=3)
    assert counters(world, [e]) == [12]


def test_run_of_zero_frames_runs_nothing(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n)
    world.run(frames=0)
    assert counters(world, [e]) == [0]
    assert world.stats()["increment_n"]["calls"] == 0


@pytest.mark.parametrize("frames", [-1, 2.0, True, "3"])
def test_run_refuses_frames_that_are_not_a_count(world: ecs.World, frames: object) -> None:
    with pytest.raises(ValueError, match=r"run\(frames=.*\): expected an int >= 0"):
        world.run(frames=frames)


def test_run_takes_a_numpy_integer_count(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n)
    world.run(frames=np.int64(3))
    assert counters(world, [e]) == [3]


def test_step_without_systems_advances_nothing_but_the_frame(world: ecs.World) -> None:
    e = world.spawn(Counter(n=5))
    world.step()
    world.run(frames=3)
    assert counters(world, [e]) == [5]
    assert world.stats() == {}


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_run_with_progress_draws_a_bar_on_a_terminal(world: ecs.World,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    world.spawn(Counter())
    world.add_system(increment_n)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    world.run(frames=5, progress=True)
    text = terminal.getvalue()
    assert "5/5 frames" in text
    assert text.startswith("\r[") and text.endswith("\n")
    assert counters(world, world.query(Counter).entities()) == [5]


def test_run_with_progress_is_silent_when_stderr_is_not_a_terminal(world: ecs.World,
                                                                   capsys: pytest.CaptureFixture) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n)
    world.run(frames=3, progress=True)
    assert capsys.readouterr().err == ""
    assert counters(world, [e]) == [3]


# ---------------------------------------------------------------- stats
def test_stats_count_frames_kernel_calls_and_rows_per_system(world: ecs.World) -> None:
    world.spawn_batch(3, Counter())
    world.spawn_batch(70, Counter(), Frozen())
    world.add_system(increment_n)
    world.add_system(increment_n_every3)
    assert world.stats() == {
        "increment_n": {"calls": 0, "kernel_calls": 0, "rows": 0, "seconds": 0.0},
        "increment_n_every3": {"calls": 0, "kernel_calls": 0, "rows": 0, "seconds": 0.0},
    }
    world.run(frames=7)
    stats = world.stats()
    assert {k: v for k, v in stats["increment_n"].items() if k != "seconds"} == \
        {"calls": 7, "kernel_calls": 14, "rows": 73 * 7}
    assert {k: v for k, v in stats["increment_n_every3"].items() if k != "seconds"} == \
        {"calls": 3, "kernel_calls": 6, "rows": 73 * 3}
    assert all(isinstance(v["seconds"], float) and v["seconds"] >= 0.0 for v in stats.values())


def test_stats_of_a_filtered_system_count_only_the_rows_it_was_given(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Counter())
    world.spawn_batch(70, Counter(), Frozen())
    world.resources["seen_counter_log"] = np.zeros(128, np.int64)
    world.add_system(seen_counter)
    world.step()                       # first run: every row of both tables
    world.step()                       # nothing changed: the kernel is not called
    world.set(int(ids[1]), Counter(n=4))
    world.step()                       # one row of one table
    stats = world.stats()["seen_counter"]
    assert (stats["calls"], stats["kernel_calls"], stats["rows"]) == (3, 3, 74)


def test_system_with_no_rows_is_counted_as_run_but_its_kernel_is_not_called(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.despawn(e)
    world.add_system(increment_n)
    world.run(frames=2)
    stats = world.stats()["increment_n"]
    assert (stats["calls"], stats["kernel_calls"], stats["rows"]) == (2, 0, 0)


# ---------------------------------------------------------------- structure between steps
def test_systems_see_entities_spawned_and_despawned_between_steps(world: ecs.World) -> None:
    first = world.spawn(Counter())
    world.add_system(increment_n)
    world.step()
    second = world.spawn(Counter())
    more = world.spawn_batch(2, Counter(), Frozen())
    world.step()
    world.despawn(first)
    world.step()
    assert counters(world, [second, *more]) == [2, 2, 2]
    assert world.stats()["increment_n"]["rows"] == 1 + 4 + 3


def test_plan_is_reused_until_the_structure_changes(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n)
    world.step()
    world.step()
    plan = introspect.plan(world, 0)
    world.set(e, Counter(n=1))          # values change, structure does not
    world.step()
    assert introspect.plan(world, 0) is plan
    world.spawn(Counter())
    assert introspect.plan(world, 0) is not plan


def test_a_structural_change_that_keeps_every_row_count_keeps_the_plan(world: ecs.World, monkeypatch) -> None:
    ids = world.spawn_batch(4, Counter(n=np.arange(4)))
    world.add_system(increment_n)
    world.step()
    plan = introspect.plan(world, 0)
    builds = introspect.count_plan_builds(monkeypatch)
    world.despawn(int(ids[0]))
    world.spawn(Counter(n=10))           # as many rows as before, in the same table
    assert introspect.plan(world, 0) is plan and builds == []     # not even rebuilt to compare
    world.step()
    assert sorted(world.get(e, Counter).n for e in world.query(Counter).entities().tolist()) == [3, 4, 5, 11]
    world.add(int(ids[1]), Frozen())     # a row moves to another table: the plan is new
    assert introspect.plan(world, 0) is not plan


# ---------------------------------------------------------------- kernel errors
def test_kernel_error_names_the_system_and_chains_the_kernel_exception(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Counter(n=np.array([0, 1, 2])))
    world.add_system(fail_at)
    world.add_system(double_n)
    with pytest.raises(KernelError,
                       match=r"system 'fail_at' raised ValueError: counter hit the failure value") as info:
        world.step(fail_value=2)
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ecs.EcsError)
    assert info.value.system == "fail_at"
    assert isinstance(info.value.__cause__, ValueError)
    assert str(info.value.__cause__) == "counter hit the failure value"
    # rows the failed kernel wrote keep what it wrote; the system after it did not run
    assert counters(world, ids) == [1, 2, 2]
    world.step(fail_value=-1)
    assert counters(world, ids) == [4, 6, 6]
    assert world.is_alive(int(ids[0])) and len(world) == 3


def test_rows_given_to_a_failed_kernel_are_still_marked_changed(world: ecs.World) -> None:
    ids = world.spawn_batch(3, Counter(n=np.array([0, 1, 2])))
    world.resources["seen_counter_log"] = np.zeros(8, np.int64)
    world.add_system(seen_counter)
    world.add_system(fail_at)
    world.step(fail_value=-1)           # reader's first run: every row
    world.resources["seen_counter_log"][:] = 0
    with pytest.raises(KernelError):
        world.step(fail_value=3)        # the reader saw the last frame's writes; fail_at raises at row 1
    world.resources["seen_counter_log"][:] = 0
    world.step(fail_value=-1)
    seen = world.resources["seen_counter_log"]
    assert [int(seen[int(e) & 0xFFFFFFFF]) for e in ids] == [1, 1, 1]


def test_failed_step_still_counts_as_a_frame_for_every_n(world: ecs.World) -> None:
    e = world.spawn(Counter())
    world.add_system(increment_n_every3)
    world.add_system(fail_every2)
    with pytest.raises(KernelError, match="system 'fail_every2' raised RuntimeError: asked to fail"):
        world.step(fail=True)           # frame 0: increment_n_every3 ran before the failure
    assert counters(world, [e]) == [1]
    world.step(fail=False)              # frame 1
    world.step(fail=False)              # frame 2
    assert counters(world, [e]) == [1]
    world.step(fail=False)              # frame 3
    assert counters(world, [e]) == [2]
    assert world.stats()["increment_n_every3"]["calls"] == 2
    assert world.stats()["fail_every2"]["calls"] == 2


def test_touching_system_with_auto_marks_changes_no_values(world: ecs.World) -> None:
    ids = world.spawn_batch(2, Counter(n=np.array([4, 5])))
    world.add_system(touch_auto)
    world.run(frames=3)
    assert counters(world, ids) == [4, 5]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_system_of_values_only_runs_once_per_frame_whatever_the_tables(workers) -> None:
    from tests.systems_common import Counter, Value, count_frames

    with ecs.World(workers=workers) as world:
        world.resources["frame_count"] = np.zeros(1, np.int64)
        world.add_system(count_frames)
        world.step()                                   # no entities, no tables: still one run
        world.spawn(Counter())
        world.spawn(Value(v=1.0))
        world.spawn(Counter(), Value(v=2.0))           # three tables now
        world.run(frames=4)
        assert int(world.resources["frame_count"][0]) == 5
        assert world.stats()["count_frames"]["calls"] == 5

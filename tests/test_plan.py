"""Claim units (plan.py) and their tickets (claims.py): how a frame's work is cut, which process
calls which range home, and the ticket of every unit of a run."""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from ecs.claims import Epochs
from ecs.plan import ALIGN, SPLIT_MIN_ROWS, Plan, SystemValues, Task, due, due_frames, home_cuts, split_rows
from tests import introspect
from tests.worker_systems import Charge, Hits, Hp, Pos, Vel, count_hits, decay, histogram, integrate


def unit(rows: int) -> tuple[Task, ...]:
    return (Task(0, 0, 0, rows, (), None, ()),)


@pytest.mark.parametrize("n", [0, 1, SPLIT_MIN_ROWS - 1, SPLIT_MIN_ROWS, 1_000_003, 10_000_000])
@pytest.mark.parametrize("processes", [1, 2, 3, 16])
def test_split_rows_covers_every_row_once_in_aligned_chunks(n: int, processes: int) -> None:
    chunks = split_rows(n, processes)
    assert [start for start, _ in chunks] == [0, *(stop for _, stop in chunks[:-1])][:len(chunks)]
    assert (chunks[-1][1] if chunks else 0) == n
    assert all(start % ALIGN == 0 for start, _ in chunks)
    if processes == 1 or n < SPLIT_MIN_ROWS:
        assert len(chunks) == (1 if n else 0)
    else:
        assert len(chunks) >= min(processes, n // (SPLIT_MIN_ROWS // 4))     # something for everyone
        assert all(stop - start >= SPLIT_MIN_ROWS // 4 for start, stop in chunks[:-1])


def test_home_ranges_balance_rows_and_leave_extra_processes_empty() -> None:
    assert home_cuts(tuple(unit(10) for _ in range(8)), 2) == (0, 4, 8)
    assert home_cuts(tuple(unit(10) for _ in range(8)), 3) == (0, 3, 5, 8)
    assert home_cuts((unit(100), unit(10), unit(10), unit(10)), 2) == (0, 1, 4)   # by rows, not units
    assert home_cuts((unit(10), unit(10)), 3) == (0, 1, 1, 2)
    assert home_cuts((), 2) == (0, 0, 0)


@pytest.fixture
def world() -> ecs.World:
    with ecs.World(workers=0) as world:
        yield world


def test_a_big_table_is_cut_into_chunks_and_small_tables_are_grouped(world: ecs.World) -> None:
    world.add_system(integrate)
    world.spawn_batch(SPLIT_MIN_ROWS * 2, Pos(x=0, y=0), Vel(x=1, y=1))
    for extra in ((Hp(),), (Charge(),), (Hp(), Charge())):   # three small tables of 7,000 rows
        world.spawn_batch(7_000, Pos(x=0, y=0), Vel(x=1, y=1), *extra)
    plan = introspect.plan(world, 2)
    units = plan.units[0]
    big = [u for u in units if u[0].table == introspect.tables(world)[0].id]
    assert len(big) == len(split_rows(SPLIT_MIN_ROWS * 2, plan.processes)) and all(len(u) == 1 for u in big)
    small = [u for u in units if u not in big]
    assert sum(len(u) for u in small) == len(introspect.tables(world)) - 1
    assert all(sum(t.stop - t.start for t in u[:-1]) < SPLIT_MIN_ROWS // 4 for u in small)
    rows = [sum(t.stop - t.start for t in u) for u in units]
    assert rows == sorted(rows, reverse=True)                # biggest first
    assert introspect.plan(world, 0).width() == 1            # one process: one unit per system


def test_a_plan_rebuilt_as_rows_and_readers_change_is_the_plan_built_afresh(world: ecs.World) -> None:
    world.add_system(integrate)
    world.add_system(count_hits)           # a changed= filter: its tasks hold the readers' bitset slots

    def assert_plans_as_built_afresh() -> None:
        for workers in (0, 2):
            plan = introspect.plan(world, workers)
            assert plan == introspect.plan_afresh(world, plan.processes)

    for rows in (10, SPLIT_MIN_ROWS * 2, 5):
        world.spawn_batch(rows, Pos(x=0, y=0), Vel(x=1, y=1), Hp(), Hits())
        world.step(dt=0.1)
        assert_plans_as_built_afresh()
    reader = world.query(Hp, changed=[Hp])   # a new change reader: the filtered task's flush targets change
    reader.count()
    world.spawn_batch(3, Pos(x=0, y=0), Vel(x=1, y=1), Hp(), Hits())
    assert_plans_as_built_afresh()
    reader.close()                           # and change back
    world.spawn_batch(3, Pos(x=0, y=0), Vel(x=1, y=1), Hp(), Hits())
    assert_plans_as_built_afresh()


def test_a_system_writing_a_resource_array_is_one_unit(world: ecs.World) -> None:
    world.resources["grid"] = np.zeros(16, np.int64)
    world.add_system(histogram)
    world.spawn_batch(SPLIT_MIN_ROWS * 2, Pos(x=0, y=0), Vel(x=1, y=1))
    world.spawn_batch(10, Pos(x=0, y=0))
    plan = introspect.plan(world, 2)
    assert [len(u) for stage in plan.units for u in stage] == [2]


def test_every_unit_of_a_run_has_one_ticket_frame_by_frame(world: ecs.World) -> None:
    world.add_system(integrate)
    world.add_system(decay)                                  # every=3
    world.spawn_batch(SPLIT_MIN_ROWS * 2, Pos(x=0, y=0), Vel(x=1, y=1))
    world.spawn_batch(SPLIT_MIN_ROWS * 2, Charge(kg=1.0))
    plan = introspect.plan(world, 1)
    values, _ = introspect.schedule(world).values({"dt": 1.0}, 6)
    epochs = Epochs(plan, values, 1, 6)                      # frames 1..6: decay is due at 3 and 6
    seen = []
    while epochs.advance():
        seen.append((epochs.frame, epochs.base, epochs.end, {u[0].system for u in epochs.units}))
    chunks = len(split_rows(SPLIT_MIN_ROWS * 2, plan.processes))
    per_frame = [chunks * (2 if frame % 3 == 0 else 1) for frame in range(1, 7)]
    assert [frame for frame, *_ in seen] == list(range(1, 7))
    assert [end - base for _, base, end, _ in seen] == per_frame
    assert all(a[2] == b[1] for a, b in zip(seen, seen[1:], strict=False))   # consecutive tickets
    assert epochs.end == sum(per_frame) == Epochs(plan, values, 1, 6).total()
    for first, frames in ((0, 1), (2, 10), (3, 3), (7, 0), (5, 100)):     # counted, not walked
        walker = Epochs(plan, values, first, frames)
        while walker.advance():
            pass
        assert Epochs(plan, values, first, frames).total() == walker.end
    assert Epochs(plan, values, 1, 6).frames_done(per_frame[0] + per_frame[1]) == 2


@pytest.mark.parametrize("every", [1, 2, 3, 7])
@pytest.mark.parametrize("offset", [0, 1, 5])
def test_due_frames_counts_what_due_says_frame_by_frame(every: int, offset: int) -> None:
    plan = Plan((("m", "f"),), (every,), (), 1, (offset,), (False,), ())
    rows, removed = Task(0, 0, 0, 10, (), None, ()), Task(0, -1, 0, 0, (), None, ())
    ids = np.arange(3, dtype=np.int64)
    for first in range(0, 12):
        for frames in (0, 1, 2, 5, 13):
            span = range(first, first + frames)
            for task, values in ((rows, SystemValues({})), (removed, SystemValues({}, ids, first + 1)),
                                 (removed, SystemValues({}, ids[:0], first)), (removed, SystemValues({}, ids, None))):
                expected = sum(due(plan, task, frame, values) for frame in span)
                assert due_frames(plan, task, first, frames, values) == expected, (task.table, first, frames)

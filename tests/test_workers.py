"""ecs/workers.py, plan.py, executor.py: the same frames give the same bits for any worker count,
and tables may grow under workers that already attached to the arena.

Tables hold more than SPLIT_MIN_ROWS rows, so one system's rows really are split across the
workers (asserted through the plan, not assumed). Worker start-up costs ~0.3-0.8 s per world
on a 2-core machine, so each world is built once per module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import ecs
from ecs import SystemDefinitionError
from ecs.plan import SPLIT_MIN_ROWS, split_rows
from ecs.schedule import CLAIM_SEED_VARIABLE
from tests import introspect
from tests.components import Tint
from tests.worker_systems import (
    COMPONENTS,
    FRAME_SYSTEMS,
    Charge,
    Hits,
    Hp,
    Pos,
    Sleeping,
    Vel,
    count_pushes,
    count_removed,
    histogram,
    integrate,
)

BIG = SPLIT_MIN_ROWS + 4_464         # 70,000 rows: split across every worker
GRID = 97
FRAMES = 30
# frames per call between structural changes: single steps and multi-frame runs, crossing every=3
SEGMENTS = (1, 1, 2, 3, 1, 4, 5, 1, 2, 6, 1, 3)
assert sum(SEGMENTS) == FRAMES


# ---------------------------------------------------------------- the scenario
def spawn_start(world: ecs.World) -> None:
    n = BIG
    world.spawn_batch(n, Pos(x=np.arange(n) % 1000, y=np.arange(n) * 0.5),
                      Vel(x=(np.arange(n) % 7) - 3, y=0.25), Hp(hp=1000 + np.arange(n) % 13), Hits(),
                      Charge(kg=np.arange(n) * 0.001))
    m = 3_000                        # a second table, below the split size: goes whole to one worker
    world.spawn_batch(m, Pos(x=np.arange(m), y=1.0), Vel(x=1.5, y=-0.5), Hp(), Hits())
    world.resources["grid"] = np.zeros(GRID, np.int64)


def change_structure(world: ecs.World, rng: np.random.Generator, segment: int) -> None:
    """Spawns, despawns, archetype moves and Python writes between frames, all chosen by `rng`
    from what the world holds (identical worlds make identical choices)."""
    k = int(rng.integers(0, 2_500))
    world.spawn_batch(k, Pos(x=rng.integers(0, 500, k), y=rng.random(k)), Vel(x=rng.integers(-3, 4, k), y=1),
                      Hp(hp=rng.integers(500, 1500, k)), Hits(), Charge(kg=rng.random(k)))
    if segment % 3 == 1:             # a new or small archetype: no Charge
        world.spawn_batch(500, Pos(x=7, y=7), Vel(x=-1, y=2), Hp(), Hits())
    alive = world.query(Pos).entities()
    doomed = rng.choice(alive, size=min(len(alive), int(rng.integers(0, 2_000))), replace=False)
    world.despawn_batch(doomed)
    alive = world.query(Pos).entities()
    for entity in rng.choice(alive, size=20, replace=False):
        world.add(int(entity), Sleeping())
    sleeping = world.query(Pos, Sleeping).entities()
    for entity in rng.choice(sleeping, size=min(len(sleeping), 8), replace=False):
        world.remove(int(entity), Sleeping)
    charged = world.query(Charge).entities()
    for entity in rng.choice(charged, size=5, replace=False):
        world.remove(int(entity), Charge)
    alive = world.query(Pos, Vel).entities()
    pushed = rng.choice(alive, size=300, replace=False)
    world.set_batch(pushed, Vel(x=rng.integers(-2, 3, 300), y=-1.0))
    for entity in rng.choice(world.query(Hp).entities(), size=10, replace=False):
        world.set(int(entity), Hp(hp=int(rng.integers(0, 2000))))


def run_scenario(workers: int, check: Callable[[ecs.World], None] | None = None) -> dict:
    rng = np.random.default_rng(20240601)
    with ecs.World(workers=workers) as world:
        for s in FRAME_SYSTEMS:
            world.add_system(s)
        spawn_start(world)
        for segment, frames in enumerate(SEGMENTS):
            if frames == 1:
                world.step(dt=0.5)
            else:
                world.run(frames, dt=0.5)
            if check is not None and segment == 0:
                check(world)
            change_structure(world, rng, segment)
        world.run(2, dt=0.5)
        return observe(world)


def observe(world: ecs.World) -> dict:
    """Every bit a user can see: per table, ids and every column's bytes; the resource; stats."""
    tables = {}
    for table in introspect.tables(world):
        state = {"entities": table.entities.tobytes()}
        for info in table.components:
            for field in info.fields:
                state[f"{info.name}.{field}"] = table.column(info, field).tobytes()
        tables[table.id] = state
    stats = {name: (s["calls"], s["rows"]) for name, s in world.stats().items()}
    return {"len": len(world), "tables": tables, "grid": world.resources["grid"].tobytes(), "stats": stats,
            "sample": {int(e): (world.get(int(e), Pos).x, world.get(int(e), Hits).n)
                       for e in world.query(Pos, Hits).entities()[::997]}}


def assert_splits_big_table(world: ecs.World) -> None:
    """The plan cuts the big table into aligned chunks for the per-row systems, several per process."""
    plan = introspect.plan(world)
    big = introspect.tables(world)[0]
    assert big.n >= SPLIT_MIN_ROWS
    integrate_index = next(b.index for b in introspect.bound_systems(world) if b.system is integrate)
    chunks = [unit for stage in plan.units for unit in stage
              if unit[0].system == integrate_index and unit[0].table == big.id]
    assert all(len(unit) == 1 for unit in chunks)
    ranges = sorted((unit[0].start, unit[0].stop) for unit in chunks)
    assert ranges == split_rows(big.n, plan.processes)
    # this process takes units too where the workers leave it a core
    assert plan.processes == world.workers + int(world.workers < len(os.sched_getaffinity(0)))
    assert len(ranges) > plan.processes
    assert all(start % 512 == 0 for start, _ in ranges)
    histogram_index = next(b.index for b in introspect.bound_systems(world) if b.system is histogram)
    units = [unit for stage in plan.units for unit in stage if unit[0].system == histogram_index]
    assert len(units) == 1         # a system writing a resource array is not split


@pytest.fixture(scope="module")
def reference() -> dict:
    return run_scenario(0)


# ---------------------------------------------------------------- identical results
def test_reference_scenario_does_real_work(reference: dict) -> None:
    stats = reference["stats"]
    assert stats["integrate"][0] == FRAMES + 2
    assert stats["decay"][0] == len(range(0, FRAMES + 2, 3))
    assert 0 < stats["count_hits"][1] < stats["damage"][1]      # the manual marks select a few rows
    assert 0 < stats["count_pushes"][1] < stats["integrate"][1]
    assert np.frombuffer(reference["grid"], np.int64).sum() == stats["histogram"][1]
    assert len(reference["tables"]) >= 4                         # spawns, tags and removals made archetypes


@pytest.mark.parametrize(("workers", "claim_seed"), [(1, None), (2, None), (3, None), (0, 7), (1, 8), (2, 9),
                                                     (3, 10)])
def test_every_column_id_and_stat_is_identical_for_any_worker_count_and_claim_order(
        reference: dict, workers: int, claim_seed: int | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if claim_seed is not None:     # units claimed in a shuffled order, a new one every frame and stage
        monkeypatch.setenv(CLAIM_SEED_VARIABLE, str(claim_seed))
    check = assert_splits_big_table if workers > 1 else None
    result = run_scenario(workers, check)
    assert result["len"] == reference["len"]
    assert result["tables"].keys() == reference["tables"].keys()
    for table_id, state in reference["tables"].items():
        for name, data in state.items():
            assert result["tables"][table_id][name] == data, f"table {table_id} column {name} differs"
    assert result["grid"] == reference["grid"]
    assert result["stats"] == reference["stats"]
    assert result["sample"] == reference["sample"]


def test_runs_switching_between_the_workers_and_this_process_change_no_result(
        reference: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's choice (its load rules, then the measured choice of ecs/runchoice.py) may send
    any run to either side; forced to alternate, every run after the first (which starts the
    workers) switching, the scenario ends exactly as on one process. The choice itself is
    replaced, so that a loaded machine (which keeps every run here) cannot skip the test."""
    from ecs.pool import WorkerPool

    ways: list[bool] = []

    def alternate(self: WorkerPool, frames: int, stages: int = 1, scale: int = 0) -> bool:
        ways.append(not ways[-1] if ways else False)
        return ways[-1]

    monkeypatch.setattr(WorkerPool, "helps", alternate)
    result = run_scenario(2)
    assert True in ways and False in ways
    for table_id, state in reference["tables"].items():
        for name, data in state.items():
            assert result["tables"][table_id][name] == data, f"table {table_id} column {name} differs"
    assert (result["grid"], result["stats"], result["sample"]) == (reference["grid"], reference["stats"],
                                                                   reference["sample"])


# ---------------------------------------------------------------- growth under workers
@pytest.fixture(scope="module")
def growing() -> Iterator[ecs.World]:
    # a step_timeout no frame reaches: every run goes to the workers, small tables too (without
    # one, a world too small to share runs in this process and the workers start later)
    with ecs.World(workers=2, step_timeout=120.0) as world:
        world.add_system(integrate)
        world.add_system(count_pushes)
        world.add_system(histogram)
        world.resources["grid"] = np.zeros(GRID, np.int64)
        yield world


def positions(world: ecs.World, *components: type) -> tuple[np.ndarray, np.ndarray]:
    batches = list(world.query(Pos, *components))
    return (np.concatenate([b.entities for b in batches]), np.concatenate([b[Pos].x for b in batches]))


def test_tables_grow_under_attached_workers_and_keep_what_they_wrote(growing: ecs.World) -> None:
    world = growing
    spawned: list[tuple[np.ndarray, np.ndarray]] = []      # (ids, initial x)
    frames_since = np.zeros(0, np.int64)

    def spawn(n: int, first_x: int) -> None:
        nonlocal frames_since
        ids = world.spawn_batch(n, Pos(x=np.arange(first_x, first_x + n), y=0), Vel(x=1, y=0), Hits())
        spawned.append((ids, np.arange(first_x, first_x + n, dtype=np.float32)))
        frames_since = np.concatenate([frames_since, np.zeros(n, np.int64)])

    def run(frames: int) -> None:
        nonlocal frames_since
        if frames == 1:
            world.step(dt=1.0)
        else:
            world.run(frames, dt=1.0)
        frames_since = frames_since + frames

    spawn(100, 0)                                  # the first 1024 rows are committed
    table = introspect.tables(world)[0]
    first_capacity = table.capacity
    run(2)
    pids = introspect.worker_pids(world)
    spawn(2_000, 100)                              # past the first committed capacity
    assert table.capacity > first_capacity
    run(1)
    spawn(BIG + 30_000, 2_100)                     # grows again, now split across both workers
    assert table.n >= SPLIT_MIN_ROWS and table.capacity >= table.n
    run(3)
    world.spawn_batch(SPLIT_MIN_ROWS, Pos(x=5, y=5), Vel(x=2, y=0), Charge())   # a table newer than workers
    run(1)
    assert introspect.worker_pids(world) == pids            # the same workers served every run

    ids = np.concatenate([ids for ids, _ in spawned])
    want = np.concatenate([x0 for _, x0 in spawned]) + frames_since
    entities, x = positions(world, Hits)
    assert np.array_equal(np.sort(entities), np.sort(ids))
    order = np.argsort(ids)
    np.testing.assert_array_equal(x, want[order][np.searchsorted(ids[order], entities)])
    late, late_x = positions(world, Charge)
    assert len(late) == SPLIT_MIN_ROWS and (late_x == 7.0).all()

    # change bits grew with the rows: each spawned row was seen changed exactly once
    hits = np.concatenate([b[Hits].n for b in world.query(Hits)])
    assert (hits == 1000).all()
    pushed = entities[::37]
    world.set_batch(pushed, Vel(x=1, y=0))
    world.resources["grid"] = np.zeros(2 * GRID, np.int64)    # a new region, after the workers started
    world.step(dt=0.0)
    hits_by_id = dict(zip(np.concatenate([b.entities for b in world.query(Hits)]).tolist(),
                          np.concatenate([b[Hits].n for b in world.query(Hits)]).tolist(), strict=True))
    assert {e for e, n in hits_by_id.items() if n == 2000} == set(pushed.tolist())
    assert {n for n in hits_by_id.values()} == {1000, 2000}
    assert world.resources["grid"].sum() == world.query(Pos).count()   # written in place by a worker


# ---------------------------------------------------------------- shipping systems
def test_a_system_defined_in_a_function_is_refused_by_a_world_with_workers() -> None:
    @ecs.system
    def local(pos: ecs.Mut[Pos]):
        for i in range(pos.x.shape[0]):
            pos.x[i] += 1

    refused = "defined inside a function.*define it at module level"
    with ecs.World(workers=1) as world, pytest.raises(SystemDefinitionError, match=refused):
        world.add_system(local)
    with ecs.World(workers=0) as world:            # in-process worlds run it
        world.add_system(local)
        entity = world.spawn(Pos(x=1, y=0))
        world.step()
        assert world.get(entity, Pos).x == 2


def test_components_of_this_module_are_all_distinct() -> None:
    assert len({c.__name__ for c in COMPONENTS}) == len(COMPONENTS)


def test_auto_makes_one_working_process_per_core() -> None:
    cores = len(os.sched_getaffinity(0))
    with ecs.World(workers="auto") as world:               # this process takes units too
        assert world.workers == cores - 1
    with ecs.World(workers="auto", step_timeout=5.0) as world:   # this process only supervises
        assert world.workers == cores


def test_a_world_too_small_to_share_builds_no_plan_for_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    # births every frame change the row counts, so each frame plans afresh: only this process's
    # plan, since no stage reaches SPLIT_MIN_ROWS rows (the workers' plan would not be taken)
    with ecs.World(workers=2) as world:
        world.add_system(integrate)
        world.spawn_batch(1_000, Pos(x=0, y=0), Vel(x=1, y=1))
        world.step(dt=0.1)
        builds = introspect.count_plan_builds(monkeypatch)
        for _ in range(3):
            world.spawn_batch(10, Pos(x=0, y=0), Vel(x=1, y=1))
            world.run(frames=2, dt=0.1)
        assert builds == [1, 1, 1]
        assert introspect.worker_pool(world) is None                 # nothing was ever handed over
        world.spawn_batch(SPLIT_MIN_ROWS, Pos(x=0, y=0), Vel(x=1, y=1))
        world.step(dt=0.1)
        assert max(builds) > 1                                       # big enough: the workers' plan too


@ecs.system
def brighten(tint: ecs.Mut[Tint]):
    for i in range(tint.rgb.shape[0]):
        tint.rgb[i, 0] += 1


def test_a_process_maps_in_every_row_of_a_vector_column_its_tasks_cover(monkeypatch) -> None:
    """Executor.map_in maps a task's rows of each column before its kernels run (a page fault
    per 4 KiB otherwise): for a vector field, rows of several items each."""
    from ecs.executor import Executor
    with ecs.World() as world:
        world.spawn_batch(SPLIT_MIN_ROWS * 2, Tint(rgb=[1, 2, 3]))
        world.add_system(brighten)
        arena = introspect.arena(world)
        mapped: list[tuple[int, int]] = []
        monkeypatch.setattr(arena, "populate", lambda offset, nbytes: mapped.append((offset, offset + nbytes)))
        tasks = [task for stage in introspect.plan(world, 2).units for unit in stage for task in unit]
        Executor(arena).map_in(tasks)
        column = next(iter(world.query(Tint)))[Tint].rgb
        start = column.ctypes.data - arena.base
        covered = start
        for lo, hi in sorted(mapped):          # the tasks' pieces, joined
            if lo <= covered < hi:
                covered = hi
        assert covered >= start + column.nbytes, (start, column.nbytes, mapped)


def test_an_array_outside_the_world_is_refused_on_every_run_of_a_world_with_workers() -> None:
    """A keyword array in private memory cannot reach a worker: refused whichever side the pool
    would send the run to (small runs stay in this process), every time, not only when shared."""
    with ecs.World(workers=2) as world:
        world.spawn_batch(10, Pos(x=np.arange(10.0), y=0.0))
        world.add_system(histogram)
        for _ in range(3):
            with pytest.raises(SystemDefinitionError, match=r"^system 'histogram', parameter 'grid': arrays given "
                                                            r"to systems that run on workers must live in the "
                                                            r"world's shared memory: store it with "
                                                            r"world.resources\['grid'\] = array and pass nothing"):
                world.step(grid=np.zeros(GRID, np.int64))
        world.resources["grid"] = np.zeros(GRID, np.int64)
        world.step()                                       # from the resources: the same memory everywhere
        assert world.resources["grid"].sum() == 10


@pytest.mark.parametrize("frames", [1, 3])
def test_a_run_whose_message_exceeds_the_pipe_buffer_is_given_and_runs(frames: int) -> None:
    """50,000 pending removed ids (400 KB of values) to a worker: the message was sent before the
    run was announced, and the worker read its pipe only after the announcement (a hang)."""
    with ecs.World(workers=1, step_timeout=60.0) as world:   # with a step_timeout every unit runs there
        ids = world.spawn_batch(200_000, Pos(x=0, y=0), Vel(x=1, y=0), Hp())
        world.resources["removed_log"] = np.zeros(1, np.int64)
        world.add_system(integrate)
        world.add_system(count_removed)
        world.step(dt=1.0)
        world.despawn_batch(ids[:50_000])
        world.run(frames, dt=1.0)
        assert int(world.resources["removed_log"][0]) == 50_000
        assert world.stats()["count_removed"]["kernel_calls"] == 1
        assert float(next(iter(world.query(Pos)))[Pos].x[0]) == 1.0 + frames

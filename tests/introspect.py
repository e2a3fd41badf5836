"""The one place tests look inside a World: every reach past the public API goes through here,
so a change of internals touches this file, not the tests that state behaviour.

Use only where a behaviour cannot be observed through the public API (plans and stages, the
structure version that snapshots rely on, worker process ids, the arena's size).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import ecs
from ecs import mailbox as _mailbox
from ecs import snapshot as _snapshot
from ecs.schema import info_of


def store(world: ecs.World) -> Any:
    """The world's store (store.py): arena, entity index, tables, change tracker."""
    return world._store


def tables(world: ecs.World) -> list[Any]:
    return world._store.tables


def table_for(world: ecs.World, *components: type) -> Any:
    """The table of exactly these components (created if none exists yet)."""
    return world._store.archetypes.table_for(tuple(info_of(c) for c in components))


def entity_index(world: ecs.World) -> Any:
    return world._store.entities


def structure_version(world: ecs.World) -> int:
    return world._store.structure_version


def arena(world: ecs.World) -> Any:
    return world._store.arena


def frame(world: ecs.World) -> int:
    """The frame the next step() runs."""
    return world._schedule.frame


def schedule(world: ecs.World) -> Any:
    return world._schedule


def bound_systems(world: ecs.World) -> list[Any]:
    return world._schedule.systems


def plan(world: ecs.World, workers: int | None = None) -> Any:
    """The frame plan for `workers` executors (default: the world's own count)."""
    return world._schedule.plan(world.workers if workers is None else workers)


def plan_afresh(world: ecs.World, processes: int) -> Any:
    """The plan for `processes` processes built from nothing (no task parts kept from earlier
    plans), to compare with the schedule's."""
    from ecs.plan import build_plan
    return build_plan(world._schedule.systems, processes)


def worker_pool(world: ecs.World) -> Any:
    return world._schedule.pool


def worker_pids(world: ecs.World) -> list[int]:
    return world._schedule.pool.pids()


def worker_sentinel(world: ecs.World, w: int) -> int:
    """Worker w's process sentinel: readable once its death is known to this process (the
    forkserver reaped it and wrote its status), which is what the pool polls before a run."""
    return int(world._schedule.pool._handles[w].process.sentinel)


def worker_holds_a_unit(world: ecs.World, w: int) -> bool:
    """Whether worker w still holds a unit of any run (it clears it once it is done with it)."""
    pool = world._schedule.pool
    return bool(pool.control[_mailbox.line_of(w) + _mailbox.HOLDING] != 0)


def worker_in_kernel(world: ecs.World, w: int) -> bool:
    """Whether worker w holds a unit of the pool's latest run and is running one of its tasks."""
    pool = world._schedule.pool
    running = pool.control[_mailbox.line_of(w) + _mailbox.CURRENT_SYSTEM] >= 0
    return running and _mailbox.holds(pool.control, w, pool._run_id)


def removal_journal(world: ecs.World, component: type) -> Any:
    return world._store.changes._journals[info_of(component).id]


def forget_shared_structure(world: ecs.World) -> None:
    """Make the next restore take the full path (as if no snapshot shared the world's structure)."""
    _snapshot._structure_seen.pop(world._store, None)


def last_spawn_fast_path(world: ecs.World) -> Callable[..., Any]:
    return world._store._last_spawn


def spawn_fast_path(world: ecs.World, *components: type) -> Callable[..., Any] | None:
    return world._store._spawn_paths.get(components)


def spy_on_moves(world: ecs.World, monkeypatch: Any) -> list[int]:
    """Record the entity slot index of every archetype move the world makes from now on, one
    entry per entity moved (one-entity moves and bulk moves alike)."""
    moves: list[int] = []
    store_ = world._store
    original_one, original_rows = store_._move, store_.move_rows

    def spy_one(index: int, source: Any, row: int, target: Any) -> int:
        moves.append(index)
        return original_one(index, source, row, target)

    def spy_rows(source: Any, rows: Any, target: Any) -> Any:
        moves.extend(int(e) & 0xFFFFFFFF for e in source.entities_all[rows])
        return original_rows(source, rows, target)

    monkeypatch.setattr(store_, "_move", spy_one)
    monkeypatch.setattr(store_, "move_rows", spy_rows)
    return moves


def count_plan_builds(monkeypatch: Any) -> list[int]:
    """Record the process count of every frame plan built from now on (ecs.plan.build_plan)."""
    from ecs import schedule
    builds: list[int] = []
    original = schedule.build_plan

    def spy(systems: Any, processes: int, *args: Any) -> Any:
        builds.append(processes)
        return original(systems, processes, *args)

    monkeypatch.setattr(schedule, "build_plan", spy)
    return builds


def without_drivers(monkeypatch: Any) -> None:
    """Run every unit task by task from Python, as before drivers (ecs/driver.py) existed."""
    from ecs import executor
    monkeypatch.setattr(executor, "drivable", lambda system, unit: False)


def break_driver_compile(monkeypatch: Any) -> None:
    """Make every driver fail to compile, as numba would for a kernel it cannot call."""
    import numba

    from ecs import driver

    def fail(*args: Any) -> Any:
        raise numba.core.errors.NumbaError("driver cannot be compiled (test)")
    monkeypatch.setattr(driver, "_compile", fail)


def driver_files_in(monkeypatch: Any, directory: str) -> None:
    """Write generated driver sources to `directory` from now on."""
    from ecs import driver
    monkeypatch.setattr(driver, "_DRIVER_DIR", directory)
    for name in [name for name in sys.modules if name.startswith("ecs_driver_")]:
        monkeypatch.delitem(sys.modules, name)


def driver_compiled_here(world: ecs.World, system: ecs.System) -> bool:
    """Whether this process holds a compiled driver of `system` (ecs/driver.py)."""
    executor = world._schedule._executor
    driver = None if executor is None else executor._drivers.get(system)
    return driver is not None and driver._compiled is not None


def refuse_private_arenas(monkeypatch: Any) -> None:
    """Make private arenas fail to map, as under strict overcommit (memory.py then maps a memfd)."""
    from ecs import memory
    monkeypatch.setattr(memory, "_map_private", lambda size: None)


def without_huge_pages(monkeypatch: Any) -> None:
    """Behave as on a kernel built without transparent huge pages (madvise refused)."""
    from ecs import memory
    monkeypatch.setattr(memory, "_huge_pages_supported", False)


def release_spare_arena() -> None:
    """Unmap the spare arena (a closed private arena kept for the next world), if any."""
    from ecs import memory

    memory.release_spare()


def spare_arena_base() -> int | None:
    """Where the spare arena (a closed private arena kept for the next world) starts, if any."""
    from ecs import memory
    return None if memory._spare is None else memory._address(memory._spare.map)


def arena_mappings(pid: int | str = "self") -> int:
    """Arenas (memory.py) mapped in a process, as the kernel lists them in /proc/PID/maps.

    A world with workers maps its memfd (named "ecs-world"; one line, or one per mapping). A world
    without workers maps private memory: one run of anonymous read-write lines of 4 GiB or more
    (huge-page advice splits it into several) that ends at the arena's one-page PROT_NONE guard.
    In this process, the spare (a closed private arena kept for the next world) is not counted."""
    from ecs.memory import ARENA_BYTES_MIN, PAGE, spare_mappings
    count, run_bytes, run_end = 0, 0, -1
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "memfd:ecs-world" in line:
                count += 1
            anonymous = len(fields) < 6
            if anonymous and fields[1] == "---p" and end - start == PAGE and start == run_end \
                    and run_bytes >= ARENA_BYTES_MIN:
                count += 1
            if anonymous and fields[1] == "rw-p":
                run_bytes = run_bytes + end - start if start == run_end else end - start
                run_end = end
            else:
                run_bytes, run_end = 0, -1
    return count - (spare_mappings() if pid == "self" else 0)


def check_records_both_ways(world: ecs.World, records: Any, owners: Any) -> tuple[bool, Any, Exception | None, Any]:
    """What the compiled check of command records (plan_records) and the checks written in
    Python say of the same records: (compiled passed, its targets, the Python checks' error or
    None, their targets). Applies nothing."""
    passed, compiled, error, python = plan_records_both_ways(world, records, owners)
    return passed, compiled["targets"] if passed else None, error, None if python is None else python["targets"]


def plan_records_both_ways(world: ecs.World, records: Any, owners: Any) -> tuple[bool, dict, Exception | None, Any]:
    """(compiled passed, its plan, the Python checks' error or None, their plan) for the same
    records, a plan being what applying them reads: targets, prefabs, change and despawn
    positions, the tables placed with an added component, and the set groups as (component,
    field, positions of the last set of each target, values, whether its targets differ from the
    group before). Applies nothing."""
    import numpy as np

    from ecs import commands as _commands
    from ecs.record_lookups import RecordLookups
    store_ = world._store
    names = [f"system{k}" for k in range(8)]
    lookups = RecordLookups(store_).current()

    def plan(batch: Any) -> dict:
        return {"targets": batch.resolved(np.arange(records.shape[0])), "prefabs": batch.prefabs,
                "changes": batch.changes, "despawn_at": batch.despawn_at,
                "added": {t: info.name for t, info in batch.added.items()},
                "sets": [(info.name, field, positions, values, fresh)
                         for info, field, positions, values, fresh in batch.field_groups]}

    compiled = _commands._RecordBatch(store_, records, owners, names)
    passed = compiled.verified(lookups)
    python = _commands._RecordBatch(store_, records, owners, names)
    try:
        python.check(lookups)
    except Exception as exc:
        return passed, plan(compiled) if passed else {}, exc, None
    return passed, plan(compiled) if passed else {}, None, plan(python)


def cached_tasks(world: ecs.World) -> int:
    """How many tasks (and units) this process's executor keeps prepared for the world."""
    executor = world._schedule._executor
    return 0 if executor is None else len(executor._prepared) + len(executor._units)


def kernel_arguments(world: ecs.World, task: Any, values: Any) -> list[object]:
    """The arguments this process's executor calls a task's kernel with (no rows, frame 0)."""
    schedule_ = world._schedule
    executor = schedule_._executor
    prepared = executor._prepare(schedule_.systems[task.system].system, task)
    return executor._arguments(prepared, task, None, values, 0)  # type: ignore[no-any-return]


def heap_pad_asked() -> bool:
    """Whether this process asked glibc to keep freed heap yet (ecs/heap.py: the first World does)."""
    from ecs import heap

    return heap._asked

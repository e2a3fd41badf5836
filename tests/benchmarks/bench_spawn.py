"""Scenario "spawn": create entities with Position(x, y) + Velocity(x, y) (f32 fields).

Targets (issue 2), each against a baseline measured here in the same run:
- `spawn_batch` of 1,000,000 entities takes at most 3x "shm bulk": 4 multiprocessing SharedMemory
  blocks of 4 MB created and filled from numpy arrays (the anchors' spawn.py; unlinked in the
  untimed teardown). Both include first-touch page faults: that is the real cost of new memory.
- `spawn_batch` is at least 100x faster than esper's per-entity `create_entity`, measured at
  100k entities and scaled per entity (esper is linear in N; 1M would take ~3 s per repetition).
- One-by-one `world.spawn(Position(a, b), Velocity(c, d))` from Python costs at most esper's
  `create_entity(Position(a, b), Velocity(c, d))` per entity; both construct the component values
  inside the timed loop.
Every repetition starts from a fresh World / esper world (setup and teardown untimed; the teardown
closes the world and collects garbage so the next repetition starts from released memory).
"""

from __future__ import annotations

import gc
from multiprocessing import shared_memory

import numpy as np

import ecs

from .common import (
    EsperPosition,
    EsperVelocity,
    LoadMeter,
    Position,
    Row,
    Velocity,
    fmt_stats,
    source_arrays,
    timed_fresh,
)

N_BATCH = 1_000_000
N_ONE = 100_000
SCENARIO = "spawn"


def _world_setup() -> ecs.World:
    return ecs.World()


def _world_teardown(world: ecs.World, out: object) -> None:
    world.close()
    del out
    gc.collect()


def measure_spawn_batch(arrs: np.ndarray):
    n = arrs.shape[1]

    def fn(world: ecs.World) -> np.ndarray:
        return world.spawn_batch(n, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))

    world = ecs.World()          # correctness check, untimed
    ids = fn(world)
    assert ids.shape == (n,) and len(world) == n
    assert world.get(int(ids[-1]), Velocity).y == arrs[3, -1]
    world.close()
    return timed_fresh(_world_setup, fn, _world_teardown)


def measure_shm_bulk(arrs: np.ndarray):
    """The anchors' "shm bulk": 4 new SharedMemory blocks filled from the arrays, plus the ids."""
    n = arrs.shape[1]

    def fn(_: None):
        shms = [shared_memory.SharedMemory(create=True, size=n * 4) for _ in range(4)]
        for s, a in zip(shms, arrs, strict=True):
            np.ndarray((n,), np.float32, buffer=s.buf)[:] = a
        return shms, np.arange(n, dtype=np.int64)

    def teardown(_: None, out) -> None:
        for s in out[0]:
            s.close()
            s.unlink()

    return timed_fresh(lambda: None, fn, teardown)


def measure_esper(src: list[list[float]]):
    import esper

    def setup() -> None:
        esper.switch_world("bench-spawn")

    def fn(_: None) -> list[int]:
        create = esper.create_entity
        return [create(EsperPosition(a, b), EsperVelocity(c, d)) for a, b, c, d in zip(*src, strict=True)]

    def teardown(_: None, out: object) -> None:
        esper.switch_world("default")
        esper.delete_world("bench-spawn")
        gc.collect()

    return timed_fresh(setup, fn, teardown)


def measure_spawn_one_by_one(src: list[list[float]]):
    def fn(world: ecs.World) -> list[int]:
        spawn = world.spawn
        return [spawn(Position(a, b), Velocity(c, d)) for a, b, c, d in zip(*src, strict=True)]

    world = ecs.World()          # correctness check, untimed
    ids = fn(world)
    assert len(world) == len(src[0]) and world.get(ids[-1], Velocity).y == np.float32(src[3][-1])
    world.close()
    return timed_fresh(_world_setup, fn, _world_teardown)


def run() -> list[Row]:
    rows = []
    arrs = source_arrays(N_BATCH)
    src = [a.tolist() for a in source_arrays(N_ONE)]

    with LoadMeter() as load:
        ours = measure_spawn_batch(arrs)
        shm = measure_shm_bulk(arrs)
    rows.append(Row(SCENARIO, f"spawn_batch {N_BATCH:,} (Position+Velocity, f32)", fmt_stats(ours),
                    f"shm bulk: {fmt_stats(shm)}", ours.median / shm.median, "x shm", "<= 3x shm bulk",
                    ours.median <= 3 * shm.median, load.load))

    with LoadMeter() as load:
        esper_st = measure_esper(src)
    esper_1m = esper_st.scaled(N_BATCH / N_ONE)
    rows.append(Row(SCENARIO, f"spawn_batch {N_BATCH:,} vs esper create_entity", fmt_stats(ours),
                    f"esper {N_ONE // 1000}k x{N_BATCH // N_ONE}: {fmt_stats(esper_1m)}",
                    esper_1m.median / ours.median, "x faster", ">= 100x faster than esper",
                    esper_1m.median >= 100 * ours.median, load.load))

    with LoadMeter() as load:
        one = measure_spawn_one_by_one(src)
    rows.append(Row(SCENARIO, f"spawn() one by one, {N_ONE // 1000}k, per entity", fmt_stats(one, N_ONE),
                    f"esper: {fmt_stats(esper_st, N_ONE)}", one.median / esper_st.median, "x esper",
                    "<= 1x esper per entity", one.median <= esper_st.median, load.load))
    return rows

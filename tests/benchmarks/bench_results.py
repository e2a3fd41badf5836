"""Scenario "results": recording while a world runs, and ensembles of runs.

1. Recording (world.record): a world of 100,000 entities with Position (x, y f32) and Velocity
   (x, y f32) and no systems, so run(frames=K) costs only what recording adds. Ours: a fresh
   recorder of both components, every=1, over run(frames=K), per frame (its samples are kept,
   as a recording must: K x 1.6 MB). Baseline: the same bytes copied with numpy and kept, per
   frame: `[c.copy() for c in columns]` appended to a list. Both start from an empty process
   heap each call (the copies are dropped after it), timed in alternation (paired.bench_paired);
   target <= 1.5x. Context: np.copyto into preallocated arrays (hot memory, nothing kept); the
   `move` system with and without the recorder, per frame.
2. Ensemble (informational): 16 replicates of a small physics-like world (200,000 bodies under
   gravity with floor bounces, 1,000 frames, workers=0) run one after the other in this process,
   against ecs.ensemble on a local Dask cluster of 2 worker processes (one thread each),
   started and warmed up once, untimed (its start-up is printed), and on the default local pool
   (ensemble(executor=None): its start is included, as a user meets it). Then the engine's overhead
   per run: 16 runs of an empty world with frames=0, through the cluster and through the
   default local pool (whose start is included), against the same loop in this process.
"""

from __future__ import annotations

import time

import numpy as np

import ecs
from ecs import Mut, system
from tests.results_worlds import Body, Bounces  # the components the ensemble tests use

from . import bench_systems_defs as defs
from .common import Position, Row, Stats, Velocity, fmt_s, fmt_stats, source_arrays
from .paired import TreeLoadMeter as LoadMeter
from .paired import bench_paired

SCENARIO = "results"
N = 100_000
FRAMES = 20
REPLICATES = 16
BODIES = 200_000
BODY_FRAMES = 1000
ENSEMBLE_REPS = 3


# ---------------------------------------------------------------- the ensemble's world (module level:
# the cluster's processes import build, observe and the system by name)
@system
def fall_and_bounce(body: Mut[Body], bounces: Mut[Bounces], gravity: float, dt: float):
    g = np.float32(gravity * dt)
    d = np.float32(dt)
    for i in range(body.x.shape[0]):
        body.vy[i] += g
        body.x[i] += body.vx[i] * d
        body.y[i] += body.vy[i] * d
        if body.y[i] < 0.0:
            body.y[i] = -body.y[i]
            body.vy[i] = -np.float32(0.9) * body.vy[i]
            bounces.n[i] += 1


def build(seed: int, n: int = BODIES) -> ecs.World:
    rng = np.random.default_rng(seed)
    world = ecs.World()
    world.spawn_batch(n, Body(x=rng.random(n, dtype=np.float32), y=rng.random(n, dtype=np.float32) * 10,
                              vx=rng.standard_normal(n, dtype=np.float32), vy=0.0), Bounces())
    world.resources["gravity"] = -9.81
    world.resources["dt"] = 1 / 60
    world.add_system(fall_and_bounce)
    return world


def observe(world: ecs.World) -> dict:
    table = world.query(Body, Bounces).to_arrow()
    return {"mean_y": float(table["Body.y"].to_numpy().mean()), "bounces": int(table["Bounces.n"].to_numpy().sum())}


def build_empty(seed: int) -> ecs.World:
    return ecs.World()


def observe_nothing(world: ecs.World) -> dict:
    return {"alive": len(world)}


def sequential(build_fn, runs: list[dict], frames: int, observe_fn) -> list[dict]:
    out = []
    for params in runs:
        world = build_fn(**params)
        world.run(frames=frames)
        out.append(observe_fn(world))
        world.close()
    return out


# ---------------------------------------------------------------- 1. recording
def recording_rows() -> list[Row]:
    arrs = source_arrays(N)
    world = ecs.World()
    world.spawn_batch(N, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    batch = next(iter(world.query(Position, Velocity)))
    columns = [batch[Position].x, batch[Position].y, batch[Velocity].x, batch[Velocity].y]
    targets = [np.empty_like(c) for c in columns]

    def recorded() -> None:
        recorder = world.record(Position, Velocity, every=1)
        world.run(frames=FRAMES)
        recorder.close()
        assert len(recorder) == FRAMES + 1     # a fresh recorder samples the start too

    def kept_copies() -> None:
        kept = []
        for _ in range(FRAMES):
            kept.append([c.copy() for c in columns])

    def copyto() -> None:
        for _ in range(FRAMES):
            for target, column in zip(targets, columns, strict=True):
                np.copyto(target, column)

    with LoadMeter() as load:
        ours, base, hot = bench_paired([recorded, kept_copies, copyto])
    # per sample: a fresh recorder takes FRAMES + 1 samples (the start, then after each frame)
    ours_f, base_f, hot_f = ours.scaled(1 / (FRAMES + 1)), base.scaled(1 / FRAMES), hot.scaled(1 / FRAMES)
    ratio = ours_f.median / base_f.median

    world.add_system(defs.move)

    def move_recorded() -> None:
        recorder = world.record(Position, Velocity, every=1)
        world.run(frames=FRAMES, dt=0.01)
        recorder.close()

    with LoadMeter() as load2:
        move_rec, move_plain = bench_paired([move_recorded, lambda: world.run(frames=FRAMES, dt=0.01)])
    world.close()
    mb = sum(c.nbytes for c in columns) / 1e6
    return [
        Row(SCENARIO, f"record 4 f32 fields of {N:,} entities every frame (per frame)", fmt_stats(ours_f),
            f"numpy copies kept, {mb:.1f} MB per frame: {fmt_stats(base_f)}", ratio, "x numpy copy",
            "<= 1.5x", ratio <= 1.5, load.load),
        Row(SCENARIO, "  the same vs np.copyto into preallocated arrays", fmt_stats(ours_f),
            f"np.copyto, 4 columns: {fmt_stats(hot_f)}", ours_f.median / hot_f.median, "x copyto",
            "(context)", None, load.load),
        Row(SCENARIO, "  move system with the recorder vs without (per frame)", fmt_stats(move_rec.scaled(1 / FRAMES)),
            f"move alone: {fmt_stats(move_plain.scaled(1 / FRAMES))}", move_rec.median / move_plain.median,
            "x move alone", "(context)", None, load2.load),
    ]


# ---------------------------------------------------------------- 2. ensembles
def timed(fn, reps: int = ENSEMBLE_REPS) -> Stats:
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return Stats(samples)


def ensemble_rows() -> list[Row]:
    try:
        import distributed
    except ImportError:
        print(f"note ({SCENARIO}): distributed is not installed: the ensemble rows are skipped")
        return []
    runs = [{"seed": seed} for seed in range(REPLICATES)]
    expected = sequential(build, runs, BODY_FRAMES, observe)   # also compiles here, first
    t0 = time.perf_counter()
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        executor = client.get_executor()
        started = time.perf_counter() - t0
        ecs.ensemble(build, runs[:2], frames=1, observe=observe, executor=executor, progress=False)   # warm-up
        ecs.ensemble(build_empty, runs[:2], frames=0, observe=observe_nothing, executor=executor, progress=False)
        warmed = time.perf_counter() - t0

        def on_cluster():
            table = ecs.ensemble(build, runs, frames=BODY_FRAMES, observe=observe, executor=executor, progress=False)
            assert table.drop_columns(["run", "seed", "error"]).to_pylist() == expected

        def on_pool():
            table = ecs.ensemble(build, runs, frames=BODY_FRAMES, observe=observe, progress=False)
            assert table.drop_columns(["run", "seed", "error"]).to_pylist() == expected

        with LoadMeter() as load:
            alone_s = timed(lambda: sequential(build, runs, BODY_FRAMES, observe))
            cluster_s = timed(on_cluster)
            pool_s = timed(on_pool)
        with LoadMeter() as load2:
            empty_alone = timed(lambda: sequential(build_empty, runs, 0, observe_nothing))
            empty_cluster = timed(lambda: ecs.ensemble(build_empty, runs, frames=0, observe=observe_nothing,
                                                       executor=executor, progress=False))
            empty_pool = timed(lambda: ecs.ensemble(build_empty, runs, frames=0, observe=observe_nothing,
                                                    progress=False))
    per_run = (empty_cluster.median - empty_alone.median) / REPLICATES
    per_run_pool = (empty_pool.median - empty_alone.median) / REPLICATES
    print(f"note ({SCENARIO}): the Dask LocalCluster (2 processes) started in {fmt_s(started)}, and was warm "
          f"(workers imported ecs and loaded the kernels) after {fmt_s(warmed)}; neither is in the timings.")
    return [
        Row(SCENARIO, f"{REPLICATES} replicates, {BODIES:,} bodies x {BODY_FRAMES} frames: ensemble on Dask",
            fmt_stats(cluster_s), f"one after the other here: {fmt_stats(alone_s)}",
            alone_s.median / cluster_s.median, "x faster", "(info)", None, load.load),
        Row(SCENARIO, "  the same on the default local pool (its start included)", fmt_stats(pool_s),
            f"one after the other here: {fmt_stats(alone_s)}", alone_s.median / pool_s.median, "x faster",
            "(info)", None, load.load),
        Row(SCENARIO, "  engine overhead per run, Dask cluster (empty world, frames=0)", fmt_s(per_run),
            f"{REPLICATES} empty runs here: {fmt_stats(empty_alone)}", empty_cluster.median / empty_alone.median,
            "x in-process", "(info)", None, load2.load),
        Row(SCENARIO, "  engine overhead per run, default local pool (its start included)", fmt_s(per_run_pool),
            f"{REPLICATES} empty runs here: {fmt_stats(empty_alone)}", empty_pool.median / empty_alone.median,
            "x in-process", "(info)", None, load2.load),
    ]


def run() -> list[Row]:
    return recording_rows() + ensemble_rows()


if __name__ == "__main__":
    from .common import results_table
    print(results_table(run()))
